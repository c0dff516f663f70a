"""The slurmscope command, run as a separate process on jobs another process submitted."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from slurmscope.cli import main

PIPELINE = textwrap.dedent(
    """
    import slurmscope
    cluster = slurmscope.Cluster("local", root={root!r})

    @slurmscope.task
    def load(n):
        return list(range(n))

    @slurmscope.task
    def clean(x):
        if x == 3:
            raise ValueError("row 3 is corrupt")
        return x

    @slurmscope.task
    def summarise(rows):
        return sum(rows)

    raw = load(5)
    with cluster.dependencies(raw):
        cleaned = clean.map(range(5))
        with cluster.dependencies(cleaned):
            total = summarise([1, 2])
    print(raw.job_id, cleaned.job_id, total.job_id)
    """
)


def cli(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slurmscope.cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


@pytest.fixture(scope="module")
def broken_pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A three-stage pipeline whose middle stage fails on one item, run to the end."""
    root = tmp_path_factory.mktemp("jobs")
    script = PIPELINE.format(root=str(root))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return root, out.stdout.split()


def test_explain_shows_why_the_last_stage_did_not_run(
    broken_pipeline: tuple[Path, list[str]],
) -> None:
    root, (load_id, clean_id, total_id) = broken_pipeline
    out = cli(root, "explain", total_id).stdout
    lines = out.splitlines()
    assert lines[0].startswith(f"summarise (job {total_id}): CANCELLED 1")
    assert f"afterok:{clean_id}  <- with cluster.dependencies() block (depth 2)" in out
    failed = [line for line in lines if "FAILED" in line and "clean" in line]
    assert failed and "cannot run" in failed[0]
    assert f"load (job {load_id}): COMPLETED 1" in out
    data = json.loads(cli(root, "--json", "explain", total_id).stdout)
    edge = data["dependencies"][1]
    assert edge["upstream"]["failed"] is True
    assert edge["provenance"]["depth"] == 2


def test_status_of_one_job_and_listing(broken_pipeline: tuple[Path, list[str]]) -> None:
    root, (_, clean_id, _) = broken_pipeline
    out = cli(root, "status", clean_id).stdout
    assert "tasks:     5  (COMPLETED 4, FAILED 1)" in out
    assert f"{clean_id}_3" in out and "NonZeroExitCode" in out
    data = json.loads(cli(root, "--json", "status", clean_id).stdout)
    assert data["counts"] == {"COMPLETED": 4, "FAILED": 1}
    listing = json.loads(cli(root, "--json", "status").stdout)
    assert [row["name"] for row in listing] == ["load", "clean", "summarise"]


def test_logs_show_the_remote_traceback(broken_pipeline: tuple[Path, list[str]]) -> None:
    root, (_, clean_id, _) = broken_pipeline
    out = cli(root, "logs", f"{clean_id}_3").stdout
    assert "ValueError: row 3 is corrupt" in out
    assert "not written yet" not in out.split("<==", 1)[1].split("==>")[0]


def test_cancel_from_another_process(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import time, slurmscope
        c = slurmscope.Cluster("local", root={str(tmp_path)!r})
        t = slurmscope.task(time.sleep)
        a = t.map([60, 60])
        print(a.job_id, flush=True)
        a.wait(timeout=60)
        print(" ".join(a.states), flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    job_id = proc.stdout.readline().strip()
    status = json.loads(cli(tmp_path, "--json", "status", job_id).stdout)
    assert [t["state"] for t in status["tasks"]] == ["UNKNOWN"] * 2  # run by a live process
    cli(tmp_path, "cancel", job_id)
    assert proc.stdout.readline().split() == ["CANCELLED", "CANCELLED"]
    assert proc.wait(timeout=60) == 0
    status = json.loads(cli(tmp_path, "--json", "status", job_id).stdout)
    assert status["counts"] == {"CANCELLED": 2}


def test_clean_removes_finished_job_directories(tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    script = PIPELINE.format(root=str(root))
    ids = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    bad = cli(root, "clean", "--older-than", "soon", check=False)
    assert bad.returncode != 0 and "30m, 12h, 7d" in bad.stderr
    kept = json.loads(cli(root, "--json", "clean", "--older-than", "1d").stdout)
    assert kept["removed"] == []
    dry = json.loads(cli(root, "--json", "clean", "--older-than", "0s", "--dry-run").stdout)
    assert len(dry["removed"]) == 3 and dry["dry_run"]
    gone = json.loads(cli(root, "--json", "clean", "--older-than", "0s").stdout)
    assert len(gone["removed"]) == 3
    assert cli(root, "status", ids[0], check=False).returncode != 0


def test_json_is_taken_after_the_command_too(tmp_path: Path) -> None:
    """`slurmscope status --json` and `slurmscope --json status` mean the same, for every
    command (the graph command took it only after, the others only before)."""
    for argv in (["--json", "status"], ["status", "--json"]):
        proc = subprocess.run(
            [sys.executable, "-m", "slurmscope.cli", "--root", str(tmp_path), *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == []
    assert main(["--root", str(tmp_path), "status", "--json", "12x"]) != 0
