"""Submit latency of one 1,000-item map on each backend: local, sbatch and pyslurm.

What is timed: ``task.map(range(N))`` from the call to its return, i.e. everything an eager
submission does (pickling the items, writing the job directory, merging dependencies, and
the submission itself: ten arrays at MaxArraySize 101). Each backend first submits one
single job, untimed, so that one-time costs (imports, the first connection) are left out.
Everything submitted is cancelled right after it is timed.

The baseline, measured in the same run, is the floor of one Slurm CLI round trip: one raw
``sbatch --array=0-99 --parsable`` of a trivial script. Each backend is shown in seconds and
as a multiple of that baseline.

The pyslurm backend runs on a real pyslurm where one imports, else through the pyslurm TEST
DOUBLE of tests/pyslurm_double, where every pyslurm RPC is itself a Slurm CLI call; the output
says which. Its numbers then measure the backend's code path, not pyslurm's in-process RPCs.

Run (the Slurm test cluster up, ``SLURM_CONF`` set):

    python benchmarks/submit_latency.py            # 1,000 items, about 20 s
    python benchmarks/submit_latency.py --quick    # 200 items
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import slurmscope
from slurmscope.backends import sbatch as sbatch_backend

DOUBLE_DIR = Path(__file__).resolve().parent.parent / "tests" / "pyslurm_double"
MAX_ARRAY_SIZE = 101  # the local backend splits like the test cluster


def trivial(x: int) -> int:
    return x


def baseline(workdir: Path) -> float:
    """One raw ``sbatch --array=0-99 --parsable`` of a trivial script; cancelled at once."""
    args = [
        "sbatch",
        "--parsable",
        "--array=0-99",
        "--job-name=baseline",
        f"--output={workdir}/%A_%a.out",
        f"--chdir={workdir}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(args, input="#!/bin/sh\ntrue\n", capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"baseline sbatch failed: {proc.stderr.strip()}")
    subprocess.run(["scancel", proc.stdout.strip().split(";")[0]], check=False)
    return elapsed


def pyslurm_flavour(choice: str) -> str:
    """``"real"`` or ``"double"``; puts the double on sys.path when it is used."""
    if choice != "double" and importlib.util.find_spec("pyslurm") is not None:
        return "real"
    if choice == "real":
        raise SystemExit("--pyslurm=real, but no pyslurm is installed")
    sys.path.insert(0, str(DOUBLE_DIR))
    return "double"


def measure(backend: str, items: int, root: Path) -> tuple[float, int]:
    """Seconds for one ``map`` of ``items`` trivial items, and how many arrays it made."""
    options = {"max_array_size": MAX_ARRAY_SIZE} if backend == "local" else {}
    cluster = slurmscope.Cluster(backend, root=root / backend, set_as_default=False, **options)
    try:
        task = cluster.task(trivial)
        warm = task(0)  # one-time costs, untimed
        warm.cancel()
        start = time.perf_counter()
        array = task.map(range(items))
        elapsed = time.perf_counter() - start
        array.cancel()
        return elapsed, len(array.job_ids)
    finally:
        cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 items instead of 1,000")
    parser.add_argument("--items", type=int, default=None, help="items in the map")
    parser.add_argument(
        "--pyslurm",
        choices=("auto", "real", "double"),
        default="auto",
        help="a real pyslurm (auto: where one is installed) or the test double",
    )
    args = parser.parse_args()
    items = args.items or (200 if args.quick else 1000)

    slurm_ok, why = sbatch_backend.reachable()
    with tempfile.TemporaryDirectory(prefix="slurmscope-bench-") as tmp:
        root = Path(tmp)
        print(f"slurmscope submit latency: one map of {items} trivial items")
        print(
            f"host {socket.gethostname()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, slurmscope {slurmscope.__version__}"
        )
        base = None
        if slurm_ok:
            version = subprocess.run(["sbatch", "--version"], capture_output=True, text=True)
            print(f"Slurm: {version.stdout.strip()}, {why}")
            base = baseline(root)
            print(f"baseline: one raw `sbatch --array=0-99 --parsable`: {base:.3f} s")
        else:
            print(f"no Slurm cluster ({why}): local only, no baseline")
        print()
        print(f"{'backend':<40} {'seconds':>8} {'x baseline':>11} {'arrays':>7}")
        rows = [("local", "local")]
        if slurm_ok:
            rows.append(("sbatch", "sbatch"))
            flavour = pyslurm_flavour(args.pyslurm)
            label = "pyslurm" if flavour == "real" else "pyslurm (TEST DOUBLE: RPCs via Slurm CLI)"
            rows.append((label, "pyslurm"))
        for label, backend in rows:
            elapsed, arrays = measure(backend, items, root)
            ratio = f"{elapsed / base:.1f}" if base else "-"
            print(f"{label:<40} {elapsed:>8.3f} {ratio:>11} {arrays:>7}")
        if slurm_ok and flavour == "double":
            print()
            print(
                "pyslurm ran through the test double (no pyslurm matches this Slurm): each "
                "RPC is one CLI call, so it measures the backend's path, not pyslurm's speed."
            )
    if shutil.which("squeue") and slurm_ok:
        left = subprocess.run(
            ["squeue", "--noheader", "--name=baseline,trivial", "--states=PENDING,RUNNING"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if left:
            print(f"still queued after cancelling (should be empty):\n{left}")


if __name__ == "__main__":
    main()
