"""A three-stage pipeline written for slurm-sdk's lazy arrays: the input of tests/test_migrate.py.

`slurmscope migrate` turns it into sdk_pipeline.migrated.py, which the tests run on the
embedded scheduler and on the Slurm test cluster. Usage: python sdk_pipeline.py JOB_ROOT
"""

import sys

from slurm import Cluster, task
from slurm.array_job import ArrayJob
from slurm.job import Job


@task(time="00:05:00", memory="256M", name="make-chunks")
def make_chunks(n: int) -> list[dict]:
    """Split 0..10*n into n chunks (each a dict of keyword arguments)."""
    return [{"lo": 10 * i, "hi": 10 * (i + 1)} for i in range(n)]


@task(time="00:05:00", cpus_per_task=1)
def chunk_sum(lo: int, hi: int) -> int:
    return sum(range(lo, hi))


@task(time="00:05:00", mem="256M")
def square(x: int) -> int:
    return x * x


@task(time="00:05:00")
def report(total: int, squares: list) -> str:
    return f"total={total} squares={squares}"


def main(root: str) -> None:
    with Cluster(backend_type="local", job_base_dir=root) as cluster:
        prep: Job = make_chunks(2)
        chunks = prep.get_result()

        # The array waits for prep (lazy in slurm-sdk: dependencies added after the map).
        sums: ArrayJob = chunk_sum.map(
            chunks,  # one dict per chunk
            max_concurrent=2,
        ).after(prep)
        squares = square.map([1, 2, 3]).after(prep).after(sums).get_results()

        final = cluster.submit(report)(sum(sums.get_results()), squares)
        print(final.get_result())
        late = square(4).after(prep, sums)
        print("late:", late.get_result())


if __name__ == "__main__":
    main(sys.argv[1])
