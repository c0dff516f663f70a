"""What a user's code looks like to a type checker: checked by ``mypy --strict`` in
tests/test_typing.py (never run)."""

from __future__ import annotations

from typing_extensions import assert_type

import slurmscope
from slurmscope.errors import JobError

cluster = slurmscope.Cluster("local", root="/tmp/never-used")


@slurmscope.task(time="00:01:00")
def add(a: int, b: int) -> int:
    return a + b


@cluster.task
def name_of(n: int) -> str:
    return str(n)


@cluster.task(mem="1G")
def halve(x: float) -> float:
    return x / 2


job = add(1, 2)
assert_type(job, slurmscope.Job[int])
assert_type(job.get_result(), int)
assert_type(job.result(timeout=1.0), int)
array = add.map([(1, 2), (3, 4)])
assert_type(array, slurmscope.ArrayJob[int])
assert_type(array.get_results(), list[int])
assert_type(array.get_results(return_exceptions=True), list[int | JobError])
assert_type(array[0], slurmscope.Job[int])
assert_type(array[0:2], list[slurmscope.Job[int]])
assert_type(name_of(3).get_result(), str)
assert_type(halve.options(mem="2G").after(job).map([1.0]).get_results(), list[float])
with cluster.dependencies(job, array):
    assert_type(halve(2.0), slurmscope.Job[float])
later = add.options(after=[array]).on(cluster)
assert_type(later(1, 2), slurmscope.Job[int])
for element in array:
    assert_type(element, slurmscope.Job[int])
add(1, "2")  # type: ignore[arg-type]  # the function's signature is kept for calls
with job.cluster.dependencies(job):  # a handle's cluster is typed with what users call on it
    pass
assert_type(job.cluster.name, str)
job.cluster.close()
