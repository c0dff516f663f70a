"""The benchmark task for slurm-sdk, whose runner finds a task by module and name."""

from __future__ import annotations

from slurm.decorators import task


def echo(x):
    """Return the item (the same task as ``bench_tasks.echo``)."""
    return x


echo_sdk = task(time="00:10:00")(echo)


def burn(x, ms=10.0):
    """``bench_tasks.burn``, for slurm-sdk."""
    import time

    end = time.process_time() + ms / 1000.0
    while time.process_time() < end:
        pass
    return x


burn_sdk = task(time="00:10:00")(burn)
