#!/usr/bin/env python
# Copyright (c) mmsniper contributors. All rights reserved.
import os
import os.path as osp
import shutil
import sys
import warnings

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def readme():
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


def get_version():
    scope = {}
    with open(osp.join(HERE, 'mmsniper', 'version.py')) as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname):
    """Read a requirements file, skipping comments and ``-r`` includes."""
    reqs = []
    with open(osp.join(HERE, fname)) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line and not line.startswith('-'):
                reqs.append(line)
    return reqs


def add_mim_extension():
    """Expose configs/, tools/ and model-index.yml as ``mmsniper/.mim``.

    This is what lets ``mim`` and mmengine's ``mmsniper::sniper/...`` config
    inheritance find our configs. Editable installs symlink, wheels copy.
    """
    if any(cmd in sys.argv for cmd in ('develop', 'editable_wheel')):
        mode = 'symlink'
    elif any(cmd in sys.argv
             for cmd in ('sdist', 'bdist_wheel', 'build', 'install')):
        mode = 'copy'
    else:
        return

    mim_path = osp.join(HERE, 'mmsniper', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src = osp.join(HERE, name)
        tar = osp.join(mim_path, name)
        if osp.islink(tar) or osp.isfile(tar):
            os.remove(tar)
        elif osp.isdir(tar):
            shutil.rmtree(tar)
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, mim_path), tar)
                continue
            except OSError:
                warnings.warn(f'Cannot symlink {src}; copying it instead.')
        if osp.isdir(src):
            shutil.copytree(src, tar)
        else:
            shutil.copyfile(src, tar)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmsniper',
        version=get_version(),
        description='SNIPER and AutoFocus multi-scale training and '
        'inference for MMDetection 3.x',
        long_description=readme(),
        long_description_content_type='text/markdown',
        keywords='computer vision, object detection, multi-scale, SNIPER',
        packages=find_packages(exclude=('configs', 'tools', 'tests',
                                        'benchmarks')),
        include_package_data=True,
        package_data={
            'mmsniper':
            ['.mim/configs/**/*', '.mim/tools/*', '.mim/model-index.yml']
        },
        python_requires='>=3.8',
        license='Apache License 2.0',
        classifiers=[
            'License :: OSI Approved :: Apache Software License',
            'Operating System :: OS Independent',
            'Programming Language :: Python :: 3',
            'Programming Language :: Python :: 3.11',
        ],
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require={
            'tests': parse_requirements('requirements/tests.txt'),
        },
        zip_safe=False)
