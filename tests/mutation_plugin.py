# Copyright (c) mmsniper contributors. All rights reserved.
"""Pytest plugin for ``make mutation`` (loaded with ``-p mutation_plugin``).

The mutation tool runs pytest several times in one process and forks it
per mutant, so Hypothesis must (a) accept a test called from several
executors and (b) draw the same examples for every mutant: a survivor is
then a property the fixed examples miss, not bad luck. No example
database either, so a failure found on one mutant is not replayed on the
next.
"""
from hypothesis import HealthCheck, settings

settings.register_profile(
    'mutation',
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.differing_executors])
settings.load_profile('mutation')
