"""Issue 12, item 1: blocks exited out of order never come back, on every backend.

Each case leaves ``cluster.dependencies()`` blocks in an order other than the reverse of
entering (by hand, generators closed in creation order, ``ExitStack``s closed in creation
order, a block left from another thread) and then submits: the submission must depend on
the blocks still open and on nothing else, in ``job.dependencies`` and in what the
scheduler recorded. The upstream jobs sleep, so the scheduler holds every dependency.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import add, expected_pairs, recorded, sleep

import slurmscope
from slurmscope import scope


def _deps(job: Any) -> list[str | None]:
    return [d.target_id for d in job.dependencies]


def _check(cl: slurmscope.Cluster, job: Any, *upstream: Any) -> None:
    want = [u.job_id for u in upstream]
    assert _deps(job) == want
    assert recorded(cl, job.job_id) == expected_pairs(job) == {("afterok", i) for i in want}


@pytest.fixture
def upstream(cluster: slurmscope.Cluster) -> Iterator[tuple[Any, Any]]:
    a, b = sleep.on(cluster)(60), sleep.on(cluster)(60)
    yield a, b
    for job in (a, b):
        job.cancel()


def test_blocks_left_out_of_order_leave_no_stale_dependency(
    cluster: slurmscope.Cluster,
    upstream: tuple[Any, Any],
) -> None:
    a, b = upstream
    first, second = cluster.dependencies(a), cluster.dependencies(b)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # out of order: the outer block first
    inner = add.on(cluster)(1)
    second.__exit__(None, None, None)
    after_both = add.on(cluster)(2)
    _check(cluster, inner, b)
    _check(cluster, after_both)
    assert scope.current() == ()


def test_generators_closed_in_creation_order(
    cluster: slurmscope.Cluster,
    upstream: tuple[Any, Any],
) -> None:
    a, b = upstream

    def stage(job: Any) -> Iterator[None]:
        with cluster.dependencies(job):
            yield

    one, two = stage(a), stage(b)
    next(one)
    next(two)
    both = add.on(cluster).map([1, 2])
    one.close()
    only_b = add.on(cluster).map([3])
    two.close()
    none = add.on(cluster)(4)
    _check(cluster, both, a, b)
    _check(cluster, only_b, b)
    _check(cluster, none)
    assert none.get_result(timeout=120) == 5


def test_exit_stacks_closed_in_creation_order_and_a_block_left_in_a_thread(
    cluster: slurmscope.Cluster,
    upstream: tuple[Any, Any],
) -> None:
    a, b = upstream
    outer, inner = contextlib.ExitStack(), contextlib.ExitStack()
    outer.enter_context(cluster.dependencies(a))
    inner.enter_context(cluster.dependencies(b))
    outer.close()
    only_b = add.on(cluster)(1)
    inner.close()
    none = add.on(cluster)(2)
    _check(cluster, only_b, b)
    _check(cluster, none)

    block = cluster.dependencies(a)
    block.__enter__()
    thread = threading.Thread(target=block.__exit__, args=(None, None, None))
    thread.start()
    thread.join(timeout=30)
    left_elsewhere = add.on(cluster)(3)  # the block was left, if from another thread
    _check(cluster, left_elsewhere)
    assert scope.current() == ()
