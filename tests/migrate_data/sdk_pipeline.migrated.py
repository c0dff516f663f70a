"""A three-stage pipeline written for slurm-sdk's lazy arrays: the input of tests/test_migrate.py.

`slurmscope migrate` turns it into sdk_pipeline.migrated.py, which the tests run on the
embedded scheduler and on the Slurm test cluster. Usage: python sdk_pipeline.py JOB_ROOT
"""

import sys

from slurmscope import ArrayJob, Cluster, Job, task


@task(time="00:05:00", mem="256M", job_name="make-chunks")
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
    with Cluster("sbatch", root=root) as cluster:
        prep: Job = make_chunks(2)
        chunks = prep.get_result()

        # The array waits for prep (lazy in slurm-sdk: dependencies added after the map).
        sums: ArrayJob = chunk_sum.after(prep).map(
            chunks,  # one dict per chunk
            max_concurrent=2,
        )
        squares = square.after(prep).after(sums).map([1, 2, 3]).get_results()

        final = report.on(cluster)(sum(sums.get_results()), squares)
        print(final.get_result())
        late = square.after(prep, sums)(4)
        print("late:", late.get_result())


if __name__ == "__main__":
    main(sys.argv[1])
