# Copyright (c) mmsniper contributors. All rights reserved.
from .autofocus import AutoFocusDetector

__all__ = ['AutoFocusDetector']
