"""Issue 12, items 9, 10 and 11: what a new user types, on every backend.

Unknown Cluster options, a function that captures large data, sizes in messages, attach()
with an int or garbage, map([]), a dependency on another cluster's job given by .after(),
call sites of submissions handed to a thread by asyncio, and logging through the standard
library with a structlog context bound.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog
import tasks
from conftest import add, identity, job_dirs

import slurmscope
from slurmscope.errors import DependencyError, InvalidInputError, JobNotFoundError
from slurmscope.sizes import human_size, parse_size


def here() -> int:
    return sys._getframe(1).f_lineno


# -- item 9: unknown options ------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["local", "sbatch", "pyslurm", "auto"])
def test_unknown_options_are_refused_before_anything_is_created(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLURMSCOPE_BACKEND", raising=False)
    root = tmp_path / "never"
    with pytest.raises(InvalidInputError, match="unknown Cluster option") as info:
        slurmscope.Cluster(backend, root=root, set_as_default=False, bogus=1)
    text = str(info.value)
    assert "bogus=" in text and "Nothing was created" in text
    assert "partition" in text and "max_item_size" in text  # names what is valid
    if backend != "auto":
        assert f"the {backend} backend" in text
    assert not root.exists()


def test_option_of_another_backend_and_typos(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLURMSCOPE_BACKEND", raising=False)
    with pytest.raises(InvalidInputError, match=r"cpus= \(an option of the local backend\)"):
        slurmscope.Cluster("sbatch", root=tmp_path / "a", cpus=2)
    with pytest.raises(InvalidInputError, match=r"partiton= \(did you mean partition=\?\)"):
        slurmscope.Cluster("local", root=tmp_path / "b", partiton="debug")
    monkeypatch.setenv("SLURMSCOPE_BACKEND", "pyslurm")
    with pytest.raises(InvalidInputError, match="the pyslurm backend"):
        slurmscope.Cluster(root=tmp_path / "c", command_timeout=5)
    local = slurmscope.Cluster("local", root=tmp_path / "d", set_as_default=False)
    try:
        with pytest.raises(InvalidInputError, match="given as an object"):
            slurmscope.Cluster(local.backend, root=tmp_path / "e", cpus=1)
    finally:
        local.close()
    assert not any((tmp_path / n).exists() for n in "abce")


# -- item 10 and sizes: the function is a payload too -----------------------------------------
def test_a_function_capturing_large_data_is_refused(cluster: slurmscope.Cluster) -> None:
    cluster.max_item_bytes = 2**20
    blob = b"x" * 2_000_000

    def uses_blob(x: int) -> int:
        return len(blob) + x

    before = job_dirs(cluster)
    for submit in (lambda: cluster.task(uses_blob)(1), lambda: cluster.task(uses_blob).map([1])):
        with pytest.raises(InvalidInputError) as info:
            submit()
        text = str(info.value)
        assert "the function of task uses_blob pickles to 1.91 MiB (" in text, text
        assert "over the limit of 1.00 MiB (1,048,576 bytes)" in text
        assert "closure variable 'blob' (1.91 MiB)" in text
        assert "Nothing was submitted" in text
    with pytest.raises(InvalidInputError, match=r"partial argument 0 \(1.91 MiB\)"):
        cluster.task(functools.partial(tasks.identity, blob))()
    assert job_dirs(cluster) == before
    # within the limit it runs
    small = b"y" * 1000

    def uses_small(x: int) -> int:
        return len(small) + x

    assert cluster.task(uses_small)(1).get_result(timeout=120) == 1001


def test_sizes_in_messages_are_human(
    cluster: slurmscope.Cluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLURMSCOPE_MAX_ITEM_SIZE", "1K")
    assert parse_size("1K") == 1024
    cluster.max_item_bytes = parse_size("1K")
    with pytest.raises(InvalidInputError) as info:
        identity.on(cluster).map([b"z" * 2000])
    text = str(info.value)
    assert "item 0 of task identity pickles to 1.9" in text
    assert "over the limit of 1.00 KiB (1,024 bytes)" in text
    assert "0.0 MiB" not in text
    with pytest.raises(InvalidInputError, match="the arguments of task identity pickle to"):
        identity.on(cluster)(b"z" * 2000)
    assert [human_size(n) for n in (0, 1023, 1024, 1126, 3 * 2**20 + 1)] == [
        "0 bytes",
        "1,023 bytes",
        "1.00 KiB (1,024 bytes)",
        "1.10 KiB (1,126 bytes)",
        "3.00 MiB (3,145,729 bytes)",
    ]


# -- item 11 ----------------------------------------------------------------------------------
def test_attach_takes_an_int_and_refuses_garbage(cluster: slurmscope.Cluster) -> None:
    job = add.on(cluster)(1)
    array = add.on(cluster).map([1, 2, 3])
    assert job.get_result(timeout=120) == 2 and array.get_results(timeout=120) == [2, 3, 4]
    assert cluster.attach(int(job.job_id)).get_result(timeout=60) == 2
    assert cluster.attach(int(array.job_id)).get_results(timeout=60) == [2, 3, 4]
    assert cluster.attach(f"{array.job_id}_2").get_result(timeout=60) == 4
    for bad in (3.5, None, ["1"], "12x", "", "-3", True):
        with pytest.raises(InvalidInputError, match="job id"):
            cluster.attach(bad)  # type: ignore[arg-type]
    with pytest.raises(JobNotFoundError, match="has no task"):
        cluster.attach(f"{array.job_id}_3")
    with pytest.raises(JobNotFoundError, match="single job, not an array"):
        cluster.attach(f"{job.job_id}_0")
    with pytest.raises(JobNotFoundError):
        cluster.attach(987654321)


def test_an_empty_map_writes_nothing_and_is_a_satisfied_dependency(
    cluster: slurmscope.Cluster,
) -> None:
    calls = dict(getattr(cluster.backend, "calls", {}))
    empty = add.on(cluster).map([])
    assert len(empty) == 0 and list(empty) == [] and empty.job_ids == ()
    assert empty.wait(timeout=5).get_results() == []
    assert job_dirs(cluster) == []  # nothing for `slurmscope status` to list
    assert getattr(cluster.backend, "calls", {}) == calls  # nothing reached the scheduler
    assert empty.get_results_dir().is_dir() and list(empty.get_results_dir().iterdir()) == []
    after = add.on(cluster).after(empty)(1)
    data = identity.on(cluster)(empty)
    assert after.get_result(timeout=120) == 2
    assert data.get_result(timeout=120) == []


def test_foreign_jobs_are_refused_with_provenance(
    cluster: slurmscope.Cluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("other")
    other = slurmscope.Cluster("local", root=root, set_as_default=False)
    try:
        foreign = add.on(other)(1)
        cases = [
            ("explicit .after()", here(), lambda: add.on(cluster).after(foreign)),
            ("with cluster.dependencies() block", here(), lambda: cluster.dependencies(foreign)),
            ("after= argument", here(), lambda: add.on(cluster).map([1], after=[foreign])),
            ("job passed as argument", here(), lambda: identity.on(cluster)(foreign)),
        ]
        for how, line, call in cases:
            with pytest.raises(DependencyError, match="across clusters") as info:
                call()
            assert f"{how}" in str(info.value) and f"{__file__}:{line}" in str(info.value)
        with pytest.raises(DependencyError, match=r"not str '12' \(given by explicit .after\(\)"):
            add.on(cluster).after("12")
        assert job_dirs(cluster) == []
    finally:
        other.close()


def test_call_sites_through_asyncio_threads(cluster: slurmscope.Cluster) -> None:
    stage = add.on(cluster)
    lines: dict[str, int] = {}

    async def pipeline() -> tuple[Any, Any, Any]:
        lines["to_thread"] = here() + 1
        mapped = await asyncio.to_thread(stage.map, [1, 2])
        loop = asyncio.get_running_loop()
        lines["executor"] = here() + 1
        single = await loop.run_in_executor(None, stage, 3)
        with cluster.dependencies(mapped):
            lines["scoped"] = here() + 1
            scoped = await asyncio.to_thread(stage, 4)
        return mapped, single, scoped

    mapped, single, scoped = asyncio.run(pipeline())
    for job, key in ((mapped, "to_thread"), (single, "executor"), (scoped, "scoped")):
        site = json.loads((job.directory / "manifest.json").read_text())["submitted_from"]
        assert (site["file"], site["line"], site["function"]) == (__file__, lines[key], "pipeline")
    assert scoped.dependencies[0].target is mapped
    assert scoped.get_result(timeout=120) == 5


def test_stdlib_logging_keeps_the_structlog_context(
    cluster: slurmscope.Cluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    structlog.contextvars.bind_contextvars(run_id="r-42", sample="north")
    try:
        with caplog.at_level(logging.INFO, logger="slurmscope"):
            job = add.on(cluster)(1)
    finally:
        structlog.contextvars.clear_contextvars()
    records = [
        r
        for r in caplog.records
        if getattr(r, "slurmscope", {}).get("event") == "slurmscope.submit"
    ]
    assert len(records) == 1
    record = records[0]
    message = record.getMessage()
    assert message.startswith("slurmscope.submit task='add' job_ids=")
    assert "run_id='r-42'" in message and "sample='north'" in message
    assert record.slurmscope["run_id"] == "r-42"  # type: ignore[attr-defined]
    assert record.slurmscope["job_ids"] == [job.job_id]  # type: ignore[attr-defined]


def test_cancel_on_interrupt_takes_a_bool_only(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cancel_on_interrupt must be True or False"):
        slurmscope.Cluster("local", root=tmp_path, cancel_on_interrupt="no", set_as_default=False)


def test_auto_falling_back_to_local_beside_slurm_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sbatch on PATH but SLURM_CONF unreadable: auto-detection runs everything locally, and
    says so as a warning (it used to be an info event nobody sees)."""
    import shutil
    import sys

    import structlog

    if not shutil.which("sbatch"):
        pytest.skip("no sbatch on PATH")
    monkeypatch.delenv("SLURMSCOPE_BACKEND", raising=False)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "typo.conf"))
    monkeypatch.delitem(sys.modules, "pyslurm", raising=False)  # libslurm reads it at import
    with structlog.testing.capture_logs() as events:
        cluster = slurmscope.Cluster(root=tmp_path / "jobs", set_as_default=False)
    cluster.close()
    chosen = [e for e in events if e["event"] == "slurmscope.backend.chosen"]
    assert chosen and chosen[0]["backend"] == "local"
    assert chosen[0]["log_level"] == "warning" and "typo.conf" in chosen[0]["reason"]
