# Copyright (c) mmsniper contributors. All rights reserved.
"""mmsniper: SNIPER and AutoFocus for MMDetection 3.x.

Importing this package registers its components into mmdet's registries.
"""
import mmcv
import mmdet
import mmengine
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.utils import digit_version

from .version import __version__, version_info

mmcv_minimum_version = '2.0.0rc4'
mmcv_maximum_version = '2.2.0'
mmcv_version = digit_version(mmcv.__version__)

mmengine_minimum_version = '0.7.1'
mmengine_maximum_version = '1.0.0'
mmengine_version = digit_version(mmengine.__version__)

mmdet_minimum_version = '3.0.0'
mmdet_maximum_version = '3.4.0'
mmdet_version = digit_version(mmdet.__version__)

assert (digit_version(mmcv_minimum_version) <= mmcv_version
        < digit_version(mmcv_maximum_version)), \
    f'MMCV=={mmcv.__version__} is used but incompatible. ' \
    f'Please install mmcv>={mmcv_minimum_version}, <{mmcv_maximum_version}.'

assert (digit_version(mmengine_minimum_version) <= mmengine_version
        < digit_version(mmengine_maximum_version)), \
    f'MMEngine=={mmengine.__version__} is used but incompatible. ' \
    f'Please install mmengine>={mmengine_minimum_version}, ' \
    f'<{mmengine_maximum_version}.'

assert (digit_version(mmdet_minimum_version) <= mmdet_version
        < digit_version(mmdet_maximum_version)), \
    f'MMDetection=={mmdet.__version__} is used but incompatible. ' \
    f'Please install mmdet>={mmdet_minimum_version}, ' \
    f'<{mmdet_maximum_version}.'

# Let mmengine resolve ``mmsniper::sniper/...`` config paths once mmsniper is
# imported (its table of external packages is fixed otherwise).
MODULE2PACKAGE.setdefault('mmsniper', 'mmsniper')

from . import chips, datasets, engine, models  # noqa: E402,F401  registers

__all__ = ['__version__', 'version_info', 'digit_version']
