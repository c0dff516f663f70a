"""What the job-directory checks (slurmscope.payload_guard) cost a ``get_results()`` of a
10,000-item map: the same read path timed with the checks on and off, in one run.

    .venv/bin/python benchmarks/guard_cost.py [--items 10000] [--rounds 15]

The map runs on the in-process fake scheduler (``slurmscope.testing.FakeBackend``: each task
through the real worker, writing its real result file), so the read path is exactly what
``get_results()`` does on any backend. Then ``get_results()`` is timed ``--rounds`` times
with the checks on and as many with them off (``payload_guard.CHECKS``, an internal switch
for this measurement only: off, the same system calls are made but the checks' own, the
``fstat`` of each file and the directory checks), alternating, the per-directory cache cleared before each checked
round so that every one pays the directory checks too. It prints both times (the minimum and
the median of the rounds) and their ratio, twice: with the job directory private (the
default), where ``get_results()`` checks the directories once and no file one by one, and
group-readable (as ``share_with_group=True`` makes it; the same holds in a root others can
write into, with ``allow_writable_root=True``), where each file is checked too (one
``fstat``). Exit status 1 when the median ratio of the default is over ``--limit`` (default
1.05).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import slurmscope
from slurmscope import payload_guard
from slurmscope.testing import FakeBackend


def square(x: int) -> int:
    return x * x


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--limit", type=float, default=1.05)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slurmscope-guard-") as tmp:
        cluster = slurmscope.Cluster(FakeBackend(workers=2), root=Path(tmp) / "jobs")
        try:
            started = time.perf_counter()
            job = slurmscope.task(square).map(range(args.items))
            expected = [x * x for x in range(args.items)]
            assert job.get_results(timeout=600, progress=False) == expected
            print(f"ran {args.items} tasks in {time.perf_counter() - started:.1f} s")
            private = time_rounds(job, expected, args.rounds)
            # Group-readable, as share_with_group makes it: the group can reach the files,
            # so each one is checked (fstat) too; the same in a root others can write into.
            for path in (job.directory, job.directory / "results"):
                path.chmod(0o750)
            shared = time_rounds(job, expected, args.rounds)
        finally:
            payload_guard.CHECKS = True
            cluster.close()
    print(f"get_results() of {args.items} items, {args.rounds} rounds of each:")
    worst = 0.0
    for name, (off, on), limited in (
        ("private (default)", private, True),
        ("group-readable", shared, False),
    ):
        median = statistics.median(a / b for a, b in zip(on, off, strict=True))
        if limited:
            worst = max(worst, median)
        print(
            f"  {name:<18} checks off: min {min(off) * 1e3:6.1f} ms, median "
            f"{statistics.median(off) * 1e3:6.1f} ms; on: min {min(on) * 1e3:6.1f} ms, median "
            f"{statistics.median(on) * 1e3:6.1f} ms; on/off: {median:.3f} (median of rounds)"
        )
    return 0 if worst <= args.limit else 1


def time_rounds(
    job: slurmscope.ArrayJob[int], expected: list[int], rounds: int
) -> tuple[list[float], list[float]]:
    """``get_results()`` timed ``rounds`` times with the checks off and on, alternating."""
    on: list[float] = []
    off: list[float] = []
    for _ in range(rounds):
        for checks, times in ((False, off), (True, on)):
            payload_guard.CHECKS = checks
            payload_guard._checked.clear()
            t0 = time.perf_counter()
            results = job.get_results(progress=False)
            times.append(time.perf_counter() - t0)
            assert results == expected
    return off, on


if __name__ == "__main__":
    sys.exit(main())
