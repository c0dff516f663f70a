"""How a task's Python starts (``slurmscope/bootstrap.py``): ``python -S -c BOOT`` where that
changes nothing the task sees, ``python -m slurmscope.worker`` where ``site`` does more.

Each runs a real driver script in a Python of its own and its tasks through the real worker:
on every backend in this environment, and on the local backend in virtual environments made
here, whose ``.pth`` files the test writes (an editable install's import hook, an ``import``
line of another kind, a ``sitecustomize``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import driver_result

REPO = Path(__file__).resolve().parent.parent

START = """
import builtins
import json
import os
import sys

import slurmscope
from slurmscope.bootstrap import site_is_deferrable

from helpers import double

backend, root = sys.argv[1], sys.argv[2]
cluster = slurmscope.Cluster(backend, root=root, set_as_default=False)


def seen(x):
    import pp_module  # from PYTHONPATH, in the task's body
    import structlog  # from site-packages, in the task's body

    return {
        "no_site": sys.flags.no_site,
        "builtins": [callable(getattr(builtins, n, None)) for n in ("exit", "quit", "help")],
        "license": "license" in dir(builtins),
        "prefix": [sys.prefix, sys.exec_prefix],
        "helpers": double(x),
        "pp": pp_module.VALUE,
        "structlog": structlog.__name__,
        "main": __name__,
    }


out = {
    "deferred": site_is_deferrable(),
    "prefix": [sys.prefix, sys.exec_prefix],
    "seen": cluster.task(seen)(4).get_result(timeout=300),
    "by_reference": cluster.task(double).map([1, 2]).get_results(timeout=300),
}
cluster.close()
print("RESULT " + json.dumps(out))
"""


def test_what_a_task_sees_at_start(
    backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    (project / "driver.py").write_text(START)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "pp_module.py").write_text("VALUE = 'from PYTHONPATH'\n")
    env = dict(driver_env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra), env.get("PYTHONPATH")]))
    out = driver_result(
        [sys.executable, str(project / "driver.py"), backend, str(tmp_path / "jobs")],
        env=env,
        timeout=600,
        cwd="/",
    )
    seen = out["seen"]
    assert seen["no_site"] == int(out["deferred"])
    assert seen["builtins"] == [True, True, True] and seen["license"]
    assert seen["prefix"] == out["prefix"] == [sys.prefix, sys.exec_prefix]
    assert seen["helpers"] == 8 and seen["pp"] == "from PYTHONPATH"
    assert seen["structlog"] == "structlog" and seen["main"] == "__main__"
    assert out["by_reference"] == [2, 4]


# -- in virtual environments of the test's own ----------------------------------------------------
FINDER = """
import importlib.util
import sys
from pathlib import Path  # as setuptools' editable finders do

SOURCE = {source!r}


class Finder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "hooked":
            return importlib.util.spec_from_file_location(name, SOURCE)
        return None


def install():
    sys.meta_path.append(Finder)
"""

HOOKED = """
def triple(x):
    return 3 * x
"""

VENV_DRIVER = """
import json
import sys

import hooked
import slurmscope
from slurmscope.bootstrap import site_is_deferrable

cluster = slurmscope.Cluster("local", root=sys.argv[1], set_as_default=False)


def in_task(x):
    import pathlib  # tries optional modules (_winapi, nt) while half-imported: site must wait

    import hooked as again  # only the .pth's hook finds it

    return {
        "value": again.triple(x),
        "no_site": sys.flags.no_site,
        "prefix": sys.prefix,
        "pth_ran": getattr(sys, "slurmscope_test_pth", False),
        "customized": getattr(sys, "slurmscope_test_custom", False),
    }


out = {
    "deferred": site_is_deferrable(),
    "prefix": sys.prefix,
    "by_reference": cluster.task(hooked.triple).map([1, 2]).get_results(timeout=300),
    "in_task": cluster.task(in_task)(2).get_result(timeout=300),
}
cluster.close()
print("RESULT " + json.dumps(out))
"""


def _venv(tmp_path: Path) -> tuple[Path, Path]:
    """A virtual environment (its python, its site-packages) that sees slurmscope and its
    dependencies through a ``.pth`` file of folders, and a package ``hooked`` that only an
    editable install's import hook finds."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    here = [str(REPO), *(p for p in sys.path if p.endswith("site-packages"))]
    (site_packages / "folders.pth").write_text("\n".join(here) + "\n")
    source = tmp_path / "src" / "hooked" / "__init__.py"
    source.parent.mkdir(parents=True)
    source.write_text(HOOKED)
    (site_packages / "__editable___hooked_0_1_finder.py").write_text(
        FINDER.format(source=str(source))
    )
    (site_packages / "__editable__.hooked-0.1.pth").write_text(
        "import __editable___hooked_0_1_finder; __editable___hooked_0_1_finder.install()\n"
    )
    return python, site_packages


def _run(python: Path, tmp_path: Path, name: str) -> dict[str, object]:
    script = tmp_path / f"{name}.py"
    script.write_text(VENV_DRIVER)
    env = {k: v for k, v in os.environ.items() if k not in ("SLURMSCOPE_BACKEND", "PYTHONPATH")}
    return driver_result(
        [str(python), str(script), str(tmp_path / f"jobs-{name}")],
        env=env,
        timeout=300,
        cwd=str(tmp_path),
    )


def test_an_editable_install_in_a_venv_without_site_at_start(tmp_path: Path) -> None:
    """The import hook of an editable install still finds its package in the job, for a
    function imported from it and for an import in the task's body, in a Python started
    with ``-S``; ``sys.prefix`` is the environment's."""
    python, _ = _venv(tmp_path)
    out = _run(python, tmp_path, "editable")
    assert out["deferred"] is True
    assert out["prefix"] == str(tmp_path / "venv")
    assert out["by_reference"] == [3, 6]
    assert out["in_task"] == {
        "value": 6,
        "no_site": 1,
        "prefix": str(tmp_path / "venv"),
        "pth_ran": False,
        "customized": False,
    }


def test_site_runs_at_start_where_it_does_more(tmp_path: Path) -> None:
    """A ``.pth`` ``import`` line of another kind, or a ``sitecustomize``: the task starts
    with ``site``, as before, and sees what they did."""
    python, site_packages = _venv(tmp_path)
    other = site_packages / "zz_other.pth"
    other.write_text("import sys; sys.slurmscope_test_pth = True\n")
    out = _run(python, tmp_path, "pth")
    assert out["deferred"] is False
    assert out["by_reference"] == [3, 6]
    assert out["in_task"] == {
        "value": 6,
        "no_site": 0,
        "prefix": str(tmp_path / "venv"),
        "pth_ran": True,
        "customized": False,
    }
    other.unlink()
    (site_packages / "sitecustomize.py").write_text("import sys\nsys.slurmscope_test_custom = 1\n")
    out = _run(python, tmp_path, "custom")
    assert out["deferred"] is False
    assert json.dumps(out["in_task"]) == json.dumps(
        {
            "value": 6,
            "no_site": 0,
            "prefix": str(tmp_path / "venv"),
            "pth_ran": False,
            "customized": 1,
        }
    )


def test_the_switch_back_to_site(monkeypatch: pytest.MonkeyPatch) -> None:
    """``SLURMSCOPE_WORKER_SITE=1`` in the driver's environment: every task starts with
    ``python -m slurmscope.worker``; the command of the cheap start otherwise."""
    from slurmscope import bootstrap

    monkeypatch.setattr(bootstrap, "_deferrable", None)
    monkeypatch.setenv("SLURMSCOPE_WORKER_SITE", "1")
    assert bootstrap.command("/jobs/a", 5) == (
        sys.executable,
        "-m",
        "slurmscope.worker",
        "/jobs/a",
        "5",
    )
    monkeypatch.setattr(bootstrap, "_deferrable", True)
    cheap = bootstrap.command("/jobs/a", 0)
    assert cheap[:3] == (sys.executable, "-S", "-c") and cheap[4:] == (
        "slurmscope.worker",
        "/jobs/a",
    )
    assert repr(os.path.dirname(os.path.dirname(os.path.abspath(bootstrap.__file__)))) in cheap[3]
