"""The trivial task every library runs in the benchmarks.

It lives in a module of its own, importable by each library's worker inside the jobs
(``bench.py`` puts this directory on ``PYTHONPATH``), so that every library ships the
function by reference, the way an application's functions usually are. slurm-sdk's
decorated twin is in ``bench_tasks_sdk`` so that no other worker imports slurm-sdk.
"""

from __future__ import annotations


def echo(x):
    """Return the item: the smallest task that still has a result to collect."""
    return x


def burn(x, ms=10.0):
    """Spend ``ms`` milliseconds of this process's CPU time, then return the item: the
    short task of the many-small-tasks benchmark (CPU work, not sleep, so that the ideal
    is the work divided by the CPUs)."""
    import time

    end = time.process_time() + ms / 1000.0
    while time.process_time() < end:
        pass
    return x
