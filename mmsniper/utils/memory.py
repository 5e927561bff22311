# Copyright (c) mmsniper contributors. All rights reserved.
"""This process's peak resident memory, for memory bounds (tests, benchmarks).

``resource.getrusage(...).ru_maxrss`` is not this process's own peak on
Linux: it survives fork + exec, so a child starts at its parent's RSS (a
script run from pytest reports pytest's memory). The kernel's ``VmHWM``
(``/proc/self/status``) is the peak of this process's address space, and
``/proc/self/clear_refs`` can restart it.
"""
import sys

__all__ = ['peak_rss_bytes', 'reset_peak_rss']


def reset_peak_rss() -> bool:
    """Restart the peak mark at the current RSS (Linux: ``clear_refs`` 5).

    Returns:
        bool: Whether it could (False where there is no ``/proc``).
    """
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak RSS of this process (since :func:`reset_peak_rss`), in bytes:
    ``VmHWM``, or ``ru_maxrss`` where there is no ``/proc``."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == 'darwin' else peak * 1024  # macOS: bytes
