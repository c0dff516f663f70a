"""Functions defined in the driver script load in the job without cloudpickle
(``slurmscope/rebuild.py``), with the meaning cloudpickle gives them: closures, globals
shared between functions, recursion, defaults and keyword defaults, annotations,
``__module__ == "__main__"``, nested functions, lambdas, modules and submodules they refer
to, functions among the items; a class defined in the script still loads (through
cloudpickle). Each runs as a real driver script on every backend, through the real worker.
"""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import driver_result

DRIVER = '''
import email.mime.text
import json
import os
import sys

import slurmscope

backend, root = sys.argv[1], sys.argv[2]
cluster = slurmscope.Cluster(backend, root=root, set_as_default=False)

OFFSET = 10
CALLS = 0


def bump():
    global CALLS
    CALLS += 1
    return CALLS


def read_calls():
    return CALLS


def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)


def outer(a):
    b = a * 2

    def inner(c=1):
        return a + b + c + OFFSET

    return inner


def unbound():
    def f():
        try:
            return later
        except NameError:
            return "empty cell"

    return f
    later = 1  # never runs: ``later`` stays an empty cell


def nested_recursion(n):
    def count(k):
        return 0 if k == 0 else 1 + count(k - 1)

    return count(n)


def annotated(x: int, *, scale: int = 3, shift=0.5) -> float:
    """Scaled."""
    return x * scale + shift


annotated.tag = "kept"
square = lambda v: v * v  # noqa: E731
add_one = outer(0)
email_text = lambda s: email.mime.text.MIMEText(s).get_payload()  # noqa: E731


class Point:
    def __init__(self, x):
        self.x = x


def apply(f, x):
    return f(x)


def probe(x):
    return {
        "fact": fact(x),
        "shared": [bump(), bump(), read_calls()],
        "closure": add_one(2),
        "made": outer(x)(),
        "empty": unbound()(),
        "nested": nested_recursion(x),
        "annotated": annotated(x),
        "kwdefaults": annotated.__kwdefaults__,
        "defaults": annotated.__defaults__,
        "annotations": sorted(annotated.__annotations__),
        "doc": annotated.__doc__,
        "tag": annotated.tag,
        "module": [probe.__module__, annotated.__module__, __name__],
        "qualname": add_one.__qualname__,
        "lambda": [square(x), square.__name__],
        "path": os.path.basename("/a/b.txt"),
        "submodule": email_text("hi"),
        "file": probe.__code__.co_filename,
        "cloudpickle": "cloudpickle" in sys.modules,
    }


def uses_class(x):
    return [Point(x).x, "cloudpickle" in sys.modules]


def loaded(_):
    return "cloudpickle" in sys.modules


out = {
    "probe": cluster.task(probe).map([4, 5]).get_results(timeout=300),
    "lambda": cluster.task(lambda x: [x + OFFSET, "cloudpickle" in sys.modules])(1).get_result(
        timeout=300
    ),
    "items": cluster.task(apply).map([(square, 3), (outer(1), 2), (fact, 4)]).get_results(
        timeout=300
    ),
    "items_cloudpickle": cluster.task(loaded).map([square]).get_results(timeout=300),
    "class": cluster.task(uses_class)(7).get_result(timeout=300),
}
cluster.close()
print("RESULT " + json.dumps(out))
'''


def test_script_functions_in_the_job(
    backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    out = driver_result(
        [sys.executable, str(script), backend, str(tmp_path / "jobs")],
        env=driver_env,
        timeout=600,
        cwd=str(tmp_path),
    )
    first, second = out["probe"]
    assert first == {
        "fact": 24,
        "shared": [1, 2, 2],
        "closure": 12,
        "made": 4 + 8 + 1 + 10,
        "empty": "empty cell",
        "nested": 4,
        "annotated": 12.5,
        "kwdefaults": {"scale": 3, "shift": 0.5},
        "defaults": None,
        "annotations": ["return", "scale", "x"],
        "doc": "Scaled.",
        "tag": "kept",
        "module": ["__main__", "__main__", "__main__"],
        "qualname": "outer.<locals>.inner",
        "lambda": [16, "<lambda>"],
        "path": "b.txt",
        "submodule": "hi",
        "file": str(script),
        "cloudpickle": False,
    }
    assert second["fact"] == 120 and second["lambda"] == [25, "<lambda>"]
    assert out["lambda"] == [11, False]
    assert out["items"] == [9, 1 + 2 + 2 + 10, 24]
    assert out["items_cloudpickle"] == [False]
    # a class defined in the script: cloudpickle's reduction, so the job imports it
    assert out["class"] == [7, True]


WORKER_RUN = """
import sys
from slurmscope import worker
code = worker.main([sys.argv[1]])
print(code, "cloudpickle" in sys.modules)
"""


def test_the_worker_loads_a_script_function_without_cloudpickle(tmp_path: Path) -> None:
    """The import-time property alone, in a process that runs the worker on a job
    directory of a function defined in ``__main__`` (a FakeBackend that does not run it)."""
    import subprocess

    script = tmp_path / "make.py"
    script.write_text(
        "import sys\n"
        "import slurmscope\n"
        "from slurmscope.testing import FakeBackend\n"
        "def triple(x):\n"
        "    return 3 * x\n"
        f"c = slurmscope.Cluster(FakeBackend(run=False), root={str(tmp_path / 'jobs')!r},"
        " set_as_default=False)\n"
        "print(c.task(triple)(2).directory)\n"
        "c.close()\n"
    )
    made = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert made, "no job directory"
    ran = subprocess.run(
        [sys.executable, "-c", WORKER_RUN, made[-1]], capture_output=True, text=True, check=True
    )
    assert ran.stdout.split()[-2:] == ["0", "False"], ran.stdout + ran.stderr
    import pickle

    outcome = pickle.loads((Path(made[-1]) / "results" / "0.pkl").read_bytes())
    assert outcome == {"ok": True, "value": 6}
