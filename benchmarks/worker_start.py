"""What one task's process costs, from its start to its outcome written: an imported task and
one defined in the driver script, for each Python environment given (say, slurmscope before
and after a change, each installed in a virtual environment of its own), against
``python -c pass`` and ``python -S -c pass`` in the same run.

    python benchmarks/worker_start.py [--repeats 60] PYTHON [PYTHON ...]

Each environment writes the job directories of two 10-item maps with its own slurmscope (on
``slurmscope.testing.FakeBackend``, which runs nothing), one of ``bench_tasks.echo`` and one
of the same function defined in the driver script (shipped by value); then every command
runs task 3 of them, as a job would (``SLURM_ARRAY_TASK_ID=3``), with its outcome removed
before each run, all commands interleaved, ``--repeats`` times. A task runs the command its
environment's driver gives the job (``slurmscope.bootstrap.command`` where it exists) and,
for comparison, ``python -m slurmscope.worker``. It prints medians and their ratio to
``python -c pass`` of the first environment. No cluster needed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

MAKE = """
import json, sys
sys.path.insert(0, {here!r})
import bench_tasks
import slurmscope
from slurmscope.testing import FakeBackend


def echo(x):
    return x


cluster = slurmscope.Cluster(FakeBackend(run=False), root=sys.argv[1], set_as_default=False)
dirs = [str(cluster.task(f).map(list(range(10))).directory) for f in (bench_tasks.echo, echo)]
try:
    from slurmscope.bootstrap import command
    commands = [list(command(d, 0)) for d in dirs]
except ImportError:  # a slurmscope from before the bootstrap
    commands = [[sys.executable, "-m", "slurmscope.worker", d] for d in dirs]
cluster.close()
print(json.dumps({{"dirs": dirs, "commands": commands}}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pythons", nargs="+")
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["SLURM_ARRAY_TASK_ID"] = "3"
    root = tempfile.mkdtemp(prefix="worker-start-")
    first = args.pythons[0]
    commands: dict[str, list[str]] = {
        "python -c pass": [first, "-c", "pass"],
        "python -S -c pass": [first, "-S", "-c", "pass"],
    }
    for number, python in enumerate(args.pythons):
        made = json.loads(
            subprocess.run(
                [python, "-c", MAKE.format(here=HERE), os.path.join(root, str(number))],
                capture_output=True,
                text=True,
                check=True,
                env=env,
                cwd=root,  # not this checkout: each environment's own slurmscope
            ).stdout.splitlines()[-1]
        )
        for form, directory, command in zip(
            ("imported", "script"), made["dirs"], made["commands"], strict=True
        ):
            commands[f"{python}: {form}, {' '.join(command[1:3])}"] = command
            old = [python, "-m", "slurmscope.worker", directory]
            if command != old:
                commands[f"{python}: {form}, -m slurmscope.worker"] = old
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():
            for path in glob.glob(os.path.join(root, "*", "*", "results", "*.pkl")):
                os.unlink(path)
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, cwd=root)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["python -c pass"])
    print(f"median of {args.repeats}, ratio to python -c pass")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {median * 1e3:7.1f} ms  {median / base:5.2f}x  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
