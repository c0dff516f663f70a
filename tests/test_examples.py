"""The examples and the documentation stay true to the API.

- every program in ``examples/`` runs on the embedded local scheduler and prints what it
  promises;
- every code block of the docs marked ``<!-- run -->`` runs as a program;
- every structlog event the library emits is documented in ``docs/logging.md``;
- the documentation site builds with ``mkdocs build --strict`` (warnings are errors).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"

#: Lines each example must print (regular expressions, searched in its stdout).
EXPECTED = {
    "pipeline.py": [
        r"^backend: local \(local\)",
        r"^all eight: sum=204 sqrt=14\.283$",
        r"^again: sum=204 sqrt=14\.283$",
        r"afterany:\d+  <- with cluster\.dependencies\(\) block \(depth 2\)",
        r"<- job passed as argument \(item 0 args\[0\]\[1\]\)",
    ],
    "map_reduce.py": [
        r"^backend: local \(local\)",
        r"^map: 8 chunks in array \d+; reduce: job \d+$",
        r"^primes below 2,000,000: 148,933 \(largest 1,999,993; expected 148,933: ok\)$",
        r"afterok:\d+  <- job passed as argument \(args\[0\]\)",
    ],
    "threaded_driver.py": [
        r"^backend: local \(local\)",
        r"^== thread driver-alpha: ALPHA: 4 reads aligned, sum 22, 2 lanes checked$",
        r"^== thread driver-gamma: GAMMA: 4 reads aligned, sum 22, 2 lanes checked$",
        r"submitted from thread beta-pool_\d",
        r"afterany:\d+ +scope depth 3 +line \d+ +thread driver-beta$",
        r"afterok:\d+ +scope depth 1 +line \d+ +thread MainThread$",
        r"^each thread's jobs depend only on its own scopes \(plus the carried one\): True$",
    ],
    "asyncio_driver.py": [
        r"^backend: local \(local\)",
        r"^== task south: south: 5 values, mean 1\.500$",
        r"afterany:\d+ +scope depth 2 +line \d+$",
        r"^each asyncio task's jobs depend only on its own scopes: True$",
    ],
}


def _run(args: list[str], root: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(SLURMSCOPE_BACKEND="local", SLURMSCOPE_ROOT=str(root), PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_every_example_is_checked() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example(name: str, tmp_path: Path) -> None:
    proc = _run([str(EXAMPLES / name)], tmp_path / "jobs")
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    for pattern in EXPECTED[name]:
        assert re.search(pattern, proc.stdout, re.MULTILINE), (
            f"{name}: no line matches {pattern!r} in:\n{proc.stdout}"
        )


_RUNNABLE = re.compile(r"^<!-- run -->\n```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _doc_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in sorted(DOCS.glob("*.md")):
        for number, match in enumerate(_RUNNABLE.finditer(page.read_text()), 1):
            blocks.append((f"{page.name}#{number}", match.group(1)))
    return blocks


@pytest.mark.parametrize(("where", "code"), _doc_blocks(), ids=[w for w, _ in _doc_blocks()])
def test_docs_code_block_runs(where: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(code)
    proc = _run([str(script)], tmp_path / "jobs")
    assert proc.returncode == 0, f"{where} failed:\n{code}\n{proc.stdout}\n{proc.stderr}"


def test_docs_have_runnable_blocks() -> None:
    pages = {where.split("#")[0] for where, _ in _doc_blocks()}
    assert {"tutorial.md", "dependencies.md", "provenance.md", "concurrency.md"} <= pages


_EVENT = re.compile(r"""log\.(?:debug|info|warning|error|exception)\(\s*["'](slurmscope\.[\w.]+)""")


def test_every_log_event_is_documented() -> None:
    emitted = set()
    for source in (ROOT / "slurmscope").rglob("*.py"):
        emitted.update(_EVENT.findall(source.read_text()))
    documented = set(re.findall(r"`(slurmscope\.[\w.]+)`", (DOCS / "logging.md").read_text()))
    assert {"slurmscope.submit", "slurmscope.backend.chosen"} <= emitted
    assert emitted <= documented, f"add to docs/logging.md: {sorted(emitted - documented)}"


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="mkdocs and mkdocstrings are not installed: pip install -e '.[docs]' (the test extra "
    "includes them)",
)
def test_docs_build_strict(tmp_path: Path) -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    for name in ("Cluster", "ArrayJob", "carry_scope", "configure_logging", "TaskFailedError"):
        assert f'id="slurmscope.{name}"' in reference, f"{name} missing from the API reference"
