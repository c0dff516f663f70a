"""Task functions the tests submit. They live in an importable module so that the worker
unpickles them by reference, as it would in a user's package."""

from __future__ import annotations

import os
import time


def add(a: int, b: int = 1) -> int:
    return a + b


def identity(x: object) -> object:
    return x


def boom(x: object) -> None:
    raise ValueError(f"boom {x}")


def fail_on(x: int, bad: int = 1) -> int:
    if x == bad:
        raise RuntimeError(f"item {x} is bad")
    return x * 10


def stamp(x: object, seconds: float = 0.3) -> tuple[object, float, float]:
    """Returns (x, start, end) wall-clock times, to check what ran at once."""
    start = time.time()
    time.sleep(seconds)
    return x, start, time.time()


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def env(name: str) -> str | None:
    return os.environ.get(name)


def wait_for_file(path: str, timeout: float = 600.0) -> str:
    """A gate: ends (successfully) once ``path`` exists, so that everything submitted after
    it is known to the scheduler before anything that depends on it can start."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)
    return path


def pipeline_step(x: int, *inputs: object) -> tuple[int, int]:
    """A deterministic step of a generated pipeline: raises for x == 8 (ValueError) and
    x == 9 (KeyError), else returns x and a checksum of the upstream results it was given."""
    import zlib

    if x == 8:
        raise ValueError(f"step {x} fails on purpose")
    if x == 9:
        raise KeyError(f"step {x} fails on purpose")
    return x, zlib.crc32(repr(inputs).encode())


def kill_self(x: object) -> None:
    """Dies by SIGKILL, as an out-of-memory killer or an admin would do it."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


class DiesWhilePickled:
    """A result whose pickling kills the worker: the result file must never appear."""

    def __reduce__(self) -> tuple[object, ...]:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
        return (DiesWhilePickled, ())


def dies_while_writing(x: object) -> DiesWhilePickled:
    return DiesWhilePickled()


def record_run(i: int, folder: str, seconds: float = 8.0) -> int:
    """Appends one line per execution to ``folder/<i>.runs``, then sleeps: a requeued task
    shows two lines."""
    with open(os.path.join(folder, f"{i}.runs"), "a") as fh:
        fh.write(f"{os.environ.get('SLURMD_NODENAME', '?')} {os.environ.get('SLURM_JOB_ID')}\n")
    time.sleep(seconds)
    return i


def surroundings(_: object = None) -> dict[str, object]:
    """What a task sees of the process it runs in: environment, working directory, umask,
    resource limits and nice value."""
    import os
    import resource

    mask = os.umask(0)
    os.umask(mask)
    limits = {
        name: resource.getrlimit(getattr(resource, name))
        for name in dir(resource)
        if name.startswith("RLIMIT_")
    }
    return {
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "umask": mask,
        "limits": limits,
        "nice": os.nice(0),
    }


def count_to(n: int, step: float = 1.0) -> tuple[int, int, int]:
    """Checkpointing, function form: ``n`` steps of ``step`` seconds, the count saved after
    each. Returns (count, requeues, steps done in this last run)."""
    from slurmscope import load_checkpoint, requeue_count, save_checkpoint

    start = done = load_checkpoint(0)
    while done < n:
        time.sleep(step)
        done += 1
        save_checkpoint(done)
    return done, requeue_count(), done - start


class Training:
    """Checkpointing, callable-object form (duck-typed like submitit's: a ``checkpoint``
    method returning how to resume), ``epochs`` steps of ``step`` seconds."""

    def __init__(self) -> None:
        self.epoch = 0
        self.runs = 0

    def __call__(self, epochs: int, step: float = 1.0) -> tuple[int, int]:
        self.runs += 1
        while self.epoch < epochs:
            time.sleep(step)
            self.epoch += 1
        return self.epoch, self.runs

    def checkpoint(self, epochs: int, step: float = 1.0) -> object:
        from slurmscope import Resume

        return Resume(self, epochs, step)


def stamped(value: object) -> tuple[object, float]:
    """``value`` and when this task ran (a dependent's start, against its upstream's end)."""
    return value, time.time()


def checkpoint_in_a_thread(value: int) -> int:
    """Saves a checkpoint from a thread the task starts, and reads it back."""
    import threading

    import slurmscope

    thread = threading.Thread(target=slurmscope.save_checkpoint, args=(value,))
    thread.start()
    thread.join()
    loaded: int = slurmscope.load_checkpoint(-1)
    return loaded


def load_the_checkpoint() -> object:
    import slurmscope

    return slurmscope.load_checkpoint("nothing saved")


class FailingCheckpoint:
    """A checkpointable task whose checkpoint() raises, and whose loop swallows errors (as
    training loops with a broad ``except`` do)."""

    def checkpoint(self, *args: object) -> None:
        raise ValueError("checkpoint() broke")

    def __call__(self, seconds: float) -> str:
        import time

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:  # noqa: SIM105 - written as such training loops are
                time.sleep(0.1)
            except Exception:  # noqa: BLE001, S110
                pass
        return "finished"


#: The prefixes of the variables :func:`slurm_view` shows.
SLURM_PREFIXES = ("SLURM_", "SLURMD_", "SBATCH_", "SALLOC_", "SRUN_", "SLURMSCOPE_")


def slurm_view(run_srun: bool = False) -> dict[str, object]:
    """What a job sees of Slurm: its Slurm and slurmscope variables and, with ``run_srun``,
    what an ``srun`` step inside it sees (exit code, error output, Slurm variables)."""
    import subprocess

    view: dict[str, object] = {
        "env": {k: v for k, v in os.environ.items() if k.startswith(SLURM_PREFIXES)}
    }
    if run_srun:
        proc = subprocess.run(
            ["srun", "--ntasks=1", "env"], capture_output=True, text=True, timeout=120
        )
        lines = [line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line]
        view["srun"] = {
            "returncode": proc.returncode,
            "stderr": proc.stderr[-2000:],
            "env": {k: v for k, v in lines if k.startswith(SLURM_PREFIXES)},
        }
    return view


def submit_children(
    kind: str, root: str, resources: dict[str, object], run_srun: bool = False
) -> dict[str, object]:
    """A task that submits more work from inside its job, as a driver does: a child
    (:func:`slurm_view`) with ``resources`` of its own, then an ``add`` inside a ``with
    cluster.dependencies(child)`` block. It waits for both, and returns what it saw itself,
    their ids, directories and results."""
    import slurmscope

    cluster = slurmscope.Cluster(kind, root=root, set_as_default=False)
    try:
        child = cluster.task(slurm_view, **resources)(run_srun)  # type: ignore[arg-type]
        with cluster.dependencies(child):
            after = cluster.task(add)(1, 2)
        recorded = cluster.backend.recorded_dependencies(after.job_id)
        return {
            "recorded": recorded,
            "parent_env": slurm_view()["env"],
            "child": child.job_id,
            "child_dir": str(child.directory),
            "after": after.job_id,
            "after_dir": str(after.directory),
            "seen": child.get_result(timeout=240),
            "after_result": after.get_result(timeout=240),
        }
    finally:
        cluster.close()


def submitted_from_here() -> dict[str, object]:
    """Submits ``add(1, 2)`` to the default cluster from inside this task; returns where its
    manifest says it was submitted from."""
    import json

    import slurmscope

    inner = slurmscope.task(add)(1, 2)
    found: dict[str, object] = json.loads((inner.directory / "manifest.json").read_text())
    return found["submitted_from"]  # type: ignore[return-value]
