"""The Cluster facade over the state its layers share: settings users may change change what
is submitted; what they may not change says so; options that skip a check skip its cost."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import add

import slurmscope
from slurmscope.testing import FakeBackend


class NodesUnreachable(FakeBackend):
    """A scheduler whose node list cannot be read (``sinfo`` failing, say)."""

    asked = 0

    def node_hosts(self) -> Sequence[str] | None:
        NodesUnreachable.asked += 1
        raise RuntimeError("the node list cannot be read")


def test_check_shared_root_false_never_asks_for_the_nodes(tmp_path: Path) -> None:
    NodesUnreachable.asked = 0
    with pytest.raises(RuntimeError, match="node list"):
        slurmscope.Cluster(NodesUnreachable(), root=tmp_path / "a", set_as_default=False)
    assert NodesUnreachable.asked == 1
    cluster = slurmscope.Cluster(
        NodesUnreachable(), root=tmp_path / "b", set_as_default=False, check_shared_root=False
    )
    assert NodesUnreachable.asked == 1  # not asked again: the check is off
    assert add.on(cluster)(1, 2).get_result(timeout=30) == 3
    cluster.close()


def test_settings_users_change_reach_the_next_submission(tmp_path: Path) -> None:
    backend = FakeBackend()
    cluster = slurmscope.Cluster(backend, root=tmp_path, set_as_default=False)
    cluster.defaults = slurmscope.Resources(mem="3G", partition="short")
    job = add.on(cluster)(1, 2)
    asked = backend.job(job).resources
    assert (asked.mem, asked.partition) == ("3G", "short")
    with pytest.raises(slurmscope.InvalidInputError, match="Resources"):
        cluster.defaults = {"mem": "1G"}  # type: ignore[assignment]
    cluster.max_item_bytes = 10
    with pytest.raises(slurmscope.InvalidInputError, match="over the limit"):
        add.on(cluster)("x" * 100, "y")
    cluster.close()


def test_root_and_backend_cannot_be_swapped_under_a_cluster(tmp_path: Path) -> None:
    cluster = slurmscope.Cluster(FakeBackend(), root=tmp_path / "one", set_as_default=False)
    with pytest.raises(AttributeError):
        cluster.root = tmp_path / "two"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cluster.backend = FakeBackend()  # type: ignore[misc]
    job = add.on(cluster)(2, 2)
    assert job.directory.parent == tmp_path / "one"
    assert job.get_result(timeout=30) == 4
    cluster.close()
