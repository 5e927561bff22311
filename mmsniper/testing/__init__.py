# Copyright (c) mmsniper contributors. All rights reserved.
"""Helpers for tests and the demo, kept out of the runtime packages (as
mmdet keeps ``mmdet.testing``): :mod:`mmsniper.testing.synthetic` renders
the demo's synthetic aerial dataset."""
