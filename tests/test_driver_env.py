"""Issue 12, item 5 and remote tracebacks: a job sees the modules its driver saw.

A researcher's driver is a script next to its helper modules, started from another
directory (``cd / && python /proj/pipeline.py``). Its tasks must import what the driver
imported from the script's directory; a module that the job still cannot import is named
in the error with the job's ``sys.path`` and what to do; and a remote traceback names the
script's file and line, not cloudpickle's ``<dynamic-code>``. Each runs as a real script in
a subprocess whose working directory is ``/``, on every backend.
"""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import driver_result

HELPERS = """
import os
import time


def double(x):
    return 2 * x


class Box:
    def __init__(self, value):
        self.value = value


def unbox(box):
    return box.value + 1


def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.05)
    return path
"""

PIPELINE = """
import json
import os
import shutil
import sys

import slurmscope
from helpers import Box, double, unbox, wait_for

backend, root = sys.argv[1], sys.argv[2]
cluster = slurmscope.Cluster(backend, root=root, set_as_default=False)


class Checker:
    def check(self, y):
        raise ValueError(f"bad {y}")  # FAILS HERE


checker = Checker()


def fails(x):
    def inner(y):
        return checker.check(y)  # CALLS CHECK
    return inner(x)


out = {"cwd": os.getcwd()}
out["doubled"] = cluster.task(double).map([1, 2, 3]).get_results(timeout=180)
out["unboxed"] = cluster.task(unbox).map([Box(1), Box(2)]).get_results(timeout=180)
try:
    cluster.task(fails)(5).get_result(timeout=180)
except slurmscope.TaskFailedError as exc:
    out["traceback"] = exc.remote_traceback

# A module the driver imports from a directory that is gone when the job runs.
gone = os.path.join(root, "gone")
os.makedirs(gone)
with open(os.path.join(gone, "vanishing.py"), "w") as fh:
    fh.write("def g(x):\\n    return x\\n")
sys.path.insert(0, gone)
import vanishing  # noqa: E402

flag = os.path.join(root, "go")
gate = cluster.task(wait_for)(flag)
with cluster.dependencies(gate):
    job = cluster.task(vanishing.g)(1)
shutil.rmtree(gone)
open(flag, "w").close()
try:
    job.get_result(timeout=180)
except slurmscope.TaskFailedError as exc:
    out["missing"] = str(exc)
cluster.close()
print("RESULT " + json.dumps(out))
"""


def test_a_driver_started_from_another_directory(
    backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    env = driver_env
    project = tmp_path / "proj"
    project.mkdir()
    (project / "helpers.py").write_text(HELPERS)
    script = project / "pipeline.py"
    script.write_text(PIPELINE)
    out = driver_result(
        [sys.executable, str(script), backend, str(tmp_path / "jobs")],
        env=env,
        timeout=600,
        cwd="/",
    )
    assert out["cwd"] == "/"
    # the sibling module, for the function and for the items
    assert out["doubled"] == [2, 4, 6]
    assert out["unboxed"] == [2, 3]
    # the remote traceback names the script, its line and its source
    trace = out["traceback"]
    source = PIPELINE.splitlines()
    for code, function in (("# CALLS CHECK", "inner"), ("# FAILS HERE", "check")):
        line = next(i for i, text in enumerate(source, start=1) if text.endswith(code))
        assert f'File "{script}", line {line}, in {function}' in trace, trace
        assert code in trace
    assert "<dynamic-code>" not in trace
    # a module the job cannot import: which one, the job's sys.path, what to do
    missing = out["missing"]
    assert "No module named 'vanishing'" in missing, missing
    assert "with sys.path:" in missing and f"    {project}\n" in missing
    assert "The driver imported 'vanishing' from " in missing
    assert "register_pickle_by_value(vanishing)" in missing
