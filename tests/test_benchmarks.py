"""The benchmark's quick mode runs end to end, so that the benchmark cannot rot.

No timing is asserted: only that every measurement ran and that the outputs (the table,
the JSON, the plot) are there and complete. Where no Slurm cluster can be started (not
root, no packages) or the benchmark environment cannot be installed, the test skips with
the reason, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run"

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SECTIONS = (
    "1. Submit latency",
    "2. End-to-end",
    "3. Cost of scoping",
    "4. Scheduler load",
    "5. Worker",
    "6. get_results()",
    "7. Driver peak RSS",
    "items of 10 ms CPU each",
    "9. Maps split at MaxArraySize 1001",
    "Targets",
)


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def test_quick_benchmark_runs_every_measurement(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        _skip_or_fail("the benchmark starts a Slurm cluster of its own, which needs root")
    proc = subprocess.run(
        [str(RUN), "--quick", "--out", str(tmp_path), "--tmp", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
    if proc.returncode == 69:
        _skip_or_fail(f"no Slurm cluster for the benchmark:\n{tail}")
    if proc.returncode == 73:
        _skip_or_fail(f"the benchmark environment could not be installed:\n{tail}")
    assert proc.returncode == 0, tail

    for section in SECTIONS:
        assert section in proc.stdout, f"{section!r} missing from the table:\n{proc.stdout}"
    data = json.loads((tmp_path / "benchmarks-quick.json").read_text())
    assert data["meta"]["mode"] == "quick"
    assert data["meta"]["machine"]["cpus"] >= 1
    errors = [r for r in data["runs"] if "error" in r]
    assert not errors, errors
    summary = data["summary"]
    assert summary["submit"], "no submit rows"
    for lib in ("floor", "slurmscope-sbatch", "slurmscope-local", "submitit", "slurm-sdk"):
        assert all(lib in row for row in summary["submit"].values()), lib
    assert set(summary["e2e"]) == {
        "floor",
        "slurmscope-sbatch",
        "slurmscope-sbatch-script",
        "submitit",
        "slurm-sdk",
    }
    assert "script_overhead_s" in summary["worker"], summary["worker"]
    assert set(summary["load"]) == {"slurmscope-sbatch", "submitit"}
    assert set(summary["memory"]) == {"slurmscope-sbatch", "submitit"}
    assert {"scope", "worker", "results"} <= set(summary)
    scale = summary["scale"]
    assert set(scale) == {"slurmscope-pyslurm", "slurmscope-sbatch"}, scale
    for by_n in scale.values():
        assert sorted(by_n) == ["300", "3000"], by_n
        assert [by_n[n]["parts"] for n in ("300", "3000")] == [1, 3], by_n
    assert summary["targets"], "no targets"
    assert all(t["met"] is not None for t in summary["targets"]), summary["targets"]
    png = tmp_path / "benchmarks-quick.png"
    assert png.read_bytes().startswith(b"\x89PNG")
