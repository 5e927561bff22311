# Copyright (c) mmsniper contributors. All rights reserved.
"""Register every mmsniper component into mmdet's registries.

Importing this module checks the mmcv / mmengine / mmdet versions and
imports :mod:`mmsniper.datasets`, :mod:`mmsniper.models` and
:mod:`mmsniper.engine`, whose classes register themselves. Nobody needs
to import it by hand: ``import mmsniper`` adds it to the import
``locations`` of mmdet's DATASETS, DATA_SAMPLERS, TRANSFORMS, MODELS,
TASK_UTILS and HOOKS registries, so mmengine imports it the first time
one of them looks a name up (a build, ``get``, ``in``); see
:func:`mmsniper._upstream.register_lazily`.
"""
import mmcv
import mmdet
import mmengine
from mmengine.utils import digit_version

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

from . import datasets, engine, models  # noqa: E402,F401  registers modules
