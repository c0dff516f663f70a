"""A Slurm configuration path that cannot be read (issue 12, item 11): Slurm's tools retry
a file they cannot stat for 60 s (and libslurm then ends the process), so a bad
``slurm_conf=`` or ``$SLURM_CONF`` took ~10 s and surfaced as a timeout that hid Slurm's
"cannot stat file". Both Slurm backends now say why at once; a command stopped for taking
too long reports what it had printed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyslurm_support
import pytest

import slurmscope
from slurmscope import backend_choice
from slurmscope.backends import sbatch
from slurmscope.errors import BackendUnavailableError, SchedulerError


@pytest.mark.parametrize("via", ["option", "environment"])
def test_sbatch_bad_conf_fails_fast_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    missing = tmp_path / "nosuch" / "slurm.conf"
    options = {"slurm_conf": str(missing)} if via == "option" else {}
    if via == "environment":
        monkeypatch.setenv("SLURM_CONF", str(missing))
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        slurmscope.Cluster("sbatch", root=tmp_path / "jobs", set_as_default=False, **options)
    assert time.monotonic() - started < 2
    text = str(info.value)
    assert f"cannot stat file {missing}: No such file or directory" in text, text
    assert ("slurm_conf=" if via == "option" else "SLURM_CONF=") + str(missing) in text


def test_sbatch_conf_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match=f"slurm_conf={tmp_path} is not a file"):
        slurmscope.Cluster("sbatch", root=tmp_path / "jobs", slurm_conf=str(tmp_path))


def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, squeue: str) -> None:
    """Slurm commands on PATH that answer ``scontrol ping``/``show config`` at once and run
    ``squeue`` as given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": "exit 1",
        "scontrol": 'case "$1" in\n'
        "  ping) echo 'Slurmctld(primary) at fake is UP' ;;\n"
        "  show) echo 'ClusterName = fake'; echo 'MaxArraySize = 1001' ;;\n"
        "esac",
        "squeue": squeue,
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SLURM_CONF", raising=False)


def test_a_command_stopped_for_time_says_what_it_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_slurm(tmp_path, monkeypatch, "echo 'squeue: error: the real reason' >&2\nexec sleep 30")
    backend = sbatch.SbatchBackend(command_timeout=1.0, retries=0)
    with pytest.raises(SchedulerError) as info:
        backend.states(["1"])
    assert "ran over 1.0 s" in str(info.value) and "the real reason" in str(info.value)


def test_pyslurm_task_cancel_stopped_for_time_says_what_scancel_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One array task goes through scancel (pyslurm cannot); a hung scancel is reported
    with its words, not as a bare TimeoutExpired."""
    from types import SimpleNamespace

    from slurmscope.backends.pyslurm import PyslurmBackend

    fake_slurm(tmp_path, monkeypatch, "exit 0")
    scancel = tmp_path / "bin" / "scancel"
    scancel.write_text("#!/bin/sh\necho 'scancel: error: stuck on the controller' >&2\nsleep 30\n")
    scancel.chmod(0o755)
    backend = SimpleNamespace(calls={}, scancel_timeout=1.0)
    with pytest.raises(SchedulerError, match="within 1.0 s; it said: scancel: error: stuck"):
        PyslurmBackend._scancel(backend, "12_3")  # type: ignore[arg-type]


def test_reachable_says_what_a_slow_scontrol_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_slurm(tmp_path, monkeypatch, "exit 0")
    (tmp_path / "bin" / "scontrol").write_text(
        "#!/bin/sh\necho 'scontrol: error: s_p_parse_file: cannot stat file /x' >&2\n"
        "exec sleep 30\n"
    )
    ok, why = sbatch.reachable(timeout=1.0)
    assert not ok
    assert "did not answer within 1.0 s" in why and "cannot stat file /x" in why, why


PROBE = """
import json, sys, time
import slurmscope
started = time.monotonic()
out = {}
try:
    cluster = slurmscope.Cluster(*sys.argv[1:2], root=sys.argv[2], set_as_default=False,
                                 **json.loads(sys.argv[3]))
    out["backend"] = cluster.backend.kind
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
out["seconds"] = time.monotonic() - started
print(json.dumps(out))
"""


def probe(tmp_path: Path, env: dict[str, str], backend: str, **options: str) -> dict:
    """Make a Cluster in a new process (libslurm may end the process it runs in)."""
    args = [sys.executable, "-c", PROBE, backend, str(tmp_path / "jobs"), json.dumps(options)]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, f"the process died: {proc.returncode} {proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def pyslurm_env() -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k != "SLURMSCOPE_BACKEND"}
    with pyslurm_support.pyslurm_importable() as mode:
        if mode == "double":
            env["PYTHONPATH"] = pyslurm_support.DOUBLE_DIR
        yield env


def test_pyslurm_bad_conf_fails_fast_instead_of_ending_the_process(tmp_path: Path) -> None:
    """Without the check, ``import pyslurm`` retries for 60 s and libslurm's fatal() ends
    the process (the test double does the same, without the 60 s)."""
    missing = str(tmp_path / "nosuch.conf")
    with pyslurm_env() as env:
        for options, extra_env in (({}, {"SLURM_CONF": missing}), ({"slurm_conf": missing}, {})):
            answer = probe(tmp_path, {**env, **extra_env}, "pyslurm", **options)
            assert answer["seconds"] < 5, answer
            assert answer["error"].startswith("BackendUnavailableError: pyslurm cannot read"), (
                answer
            )
            assert f"cannot stat file {missing}: No such file or directory" in answer["error"]
        # Auto-detection passes over both Slurm backends, says why, and the process lives.
        answer = probe(tmp_path, {**env, "SLURM_CONF": missing}, "auto")
        assert answer["backend"] == "local" and answer["seconds"] < 5, answer


def test_auto_detection_says_why_it_fell_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not shutil.which("sbatch"):
        pytest.skip("no sbatch on PATH: auto-detection does not try Slurm")
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "nosuch.conf"))
    # libslurm reads SLURM_CONF once, at import: a pyslurm already loaded by an earlier test
    # would keep its configuration. Detection in a process without it is what is tested.
    monkeypatch.delitem(sys.modules, "pyslurm", raising=False)
    name, why = backend_choice.detect()
    assert name == "local" and "cannot stat file" in why, why
