"""Wall time of a checkpointing task through requeues against the same task with no limit.

    python benchmarks/requeue_walltime.py [BACKEND [ROOT]]

Submits, at the same time, 75 seconds of work (75 steps of 1 s, each saved with
``save_checkpoint``) under a 1-minute time limit warned 10 seconds before, and the same work
with no time limit, to the cluster ``$SLURM_CONF`` names (BACKEND: sbatch, default; pyslurm;
local), then prints when each result arrived, in seconds after the submission, and the
requeues. On Slurm each requeue costs the cluster's ``requeue_delay`` (``AuthInfo``'s
``cred_expire``, 120 s, by default) before the task may start again.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import slurmscope


def count_to(n: int, step: float = 1.0) -> tuple[int, int, int]:
    """``n`` steps of ``step`` seconds; returns (count, requeues, steps of the last run)."""
    start = done = slurmscope.load_checkpoint(0)
    while done < n:
        time.sleep(step)
        done += 1
        slurmscope.save_checkpoint(done)
    return done, slurmscope.requeue_count(), done - start


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "sbatch"
    root = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="requeue-walltime-")
    cluster = slurmscope.Cluster(backend, root=root)
    started = time.time()
    limited = cluster.task(count_to, time="1", checkpoint_warning=10, max_requeues=10)(75)
    free = cluster.task(count_to)(75)
    out = {}
    for name, job in (("no_limit", free), ("1min_limit", limited)):
        result = job.get_result()
        ended = (job.directory / "results" / "0.pkl").stat().st_mtime - started
        out[name] = {"result": result, "seconds": round(ended, 1), "requeues": job.requeues}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
