# Copyright (c) mmsniper contributors. All rights reserved.
"""Moved: the demo's dataset renderer is :mod:`mmsniper.testing.synthetic`.

This module only forwards to it, with a ``DeprecationWarning``.
"""
import warnings

from mmsniper.testing import synthetic as _synthetic
from mmsniper.testing.synthetic import *  # noqa: F401,F403

warnings.warn(
    'mmsniper.datasets.synthetic moved to mmsniper.testing.synthetic; '
    'import it from there', DeprecationWarning, stacklevel=2)


def __getattr__(name):  # the module's private names too
    return getattr(_synthetic, name)
