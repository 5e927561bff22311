# Copyright (c) mmsniper contributors. All rights reserved.
from .focus_head import FocusPixelHead

__all__ = ['FocusPixelHead']
