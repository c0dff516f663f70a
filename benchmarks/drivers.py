"""One measurement, in a process of its own: ``python drivers.py SCENARIO LIBRARY [--n N]``.

``bench.py`` runs this once per measurement, so that no library pays for another's imports,
threads or memory, and the peak RSS is the driver's own. It prints one JSON object as its
last line of output.

Libraries: ``floor`` (hand-written ``sbatch --array``), ``slurmscope-sbatch``,
``slurmscope-sbatch-script`` (the same, with the task defined in this script: shipped by
value), ``slurmscope-local``, ``slurmscope-pyslurm``, ``submitit``, ``slurm-sdk``.

Scenarios:
  submit    time one map of N trivial items, from call to return; count the files written
  e2e       submit N items, wait for all of them, collect every result
  scope     (slurmscope) cost of nested dependency blocks and of 16 submitting threads
  worker    (slurmscope) worker overhead above ``python -c pass``; item 0 against item N-1
  results   (slurmscope) ``get_results()`` of a finished N-item map
  memory    growth of the driver's peak RSS over submitting N items and waiting on them
  small     N items of 10 ms CPU each, end to end (slurmscope with ``--pack SIZE|auto``)
  scale     (slurmscope) a map of N items split at MaxArraySize 1001: submit time, memory,
            scheduler queries while pending, get_results() over N outcome files
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_tasks  # noqa: E402  (after the path is set)

SLURM_LIBRARIES = (
    "floor",
    "slurmscope-sbatch",
    "slurmscope-sbatch-script",
    "slurmscope-sbatch-22.05",
    "slurmscope-pyslurm",
    "submitit",
    "slurm-sdk",
)
LIBRARIES = (*SLURM_LIBRARIES, "slurmscope-local", "machine")


class Unavailable(Exception):
    """This library cannot be measured here; the message says why."""


def vm_hwm_kib() -> int:
    """This process's peak resident set size (``VmHWM``), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder)) if folder.exists() else 0


def slurm(*args: str, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, check=False, timeout=300
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed: {proc.stderr.strip()}")
    return proc.stdout


def wait_gone(job_id: str, interval: float = 0.25) -> None:
    """Wait until Slurm no longer lists the job as pending, running or completing."""
    while slurm("squeue", "--noheader", "--format=%i", f"--jobs={job_id}", check=False).strip():
        time.sleep(interval)


def mark_start() -> None:
    """When bench.py counts Slurm calls: start counting here, after the library's set-up."""
    log = os.environ.get("SLURMSCOPE_BENCH_CALLLOG")
    if log:
        slurm("sdiag", "--reset")
        with open(log, "a") as fh:
            fh.write("--start--\n")


# ---------------------------------------------------------------------------- libraries
class Library:
    """How one library submits a map, waits for it, and cancels it."""

    name = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.folder = workdir / self.name
        self.folder.mkdir(parents=True, exist_ok=True)

    #: The task's function name in ``bench_tasks`` (``burn`` for the small-tasks scenario).
    work = "echo"
    #: slurmscope's ``pack=`` (``None``: unpacked).
    pack: int | str | None = None

    def prepare(self, items: list[Any]) -> None:
        """Work done before the timed call (only the floor has any: its payload)."""

    def map(self, items: list[Any], hold: bool = False) -> Any:
        raise NotImplementedError

    def results(self, handle: Any) -> list[Any]:
        raise NotImplementedError

    def job_id(self, handle: Any) -> str:
        raise NotImplementedError

    def cancel(self, handle: Any) -> None:
        slurm("scancel", self.job_id(handle), check=False)

    def close(self) -> None:
        pass


class Floor(Library):
    """Hand-written sbatch: one ``sbatch --array`` call, the payload written beforehand."""

    name = "floor"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.script = self.folder / "job.sh"
        self.script.write_text(f"#!/bin/sh\nexec {sys.executable} -c pass\n")

    def prepare(self, items: list[Any]) -> None:
        (self.folder / "items.pkl").write_bytes(pickle.dumps(items, protocol=5))
        if self.work != "echo":  # each task does the work (bench.py sets PYTHONPATH)
            code = f"import bench_tasks; bench_tasks.{self.work}(0)"
            self.script.write_text(f"#!/bin/sh\nexec {sys.executable} -c '{code}'\n")

    def map(self, items: list[Any], hold: bool = False) -> Any:
        logs = self.folder / "logs"
        logs.mkdir(exist_ok=True)
        args = ["sbatch", "--parsable", f"--array=0-{len(items) - 1}"]
        args += [f"--output={logs}/%A_%a.out", *(["--hold"] if hold else []), str(self.script)]
        return slurm(*args).strip().split(";")[0]

    def results(self, handle: Any) -> list[Any]:
        wait_gone(handle)
        return pickle.loads((self.folder / "items.pkl").read_bytes())  # `pass` returns nothing

    def job_id(self, handle: Any) -> str:
        return str(handle)


class Slurmscope(Library):
    backend = "sbatch"

    def __init__(self, workdir: Path) -> None:
        self.name = self.name or f"slurmscope-{self.backend}"
        super().__init__(workdir)
        import slurmscope

        options: dict[str, Any] = {}
        if self.backend == "sbatch":
            options["slurm_conf"] = os.environ["SLURM_CONF"]
        self.note = ""
        if self.backend == "pyslurm":
            import importlib.util

            if importlib.util.find_spec("pyslurm") is not None:
                import pyslurm

                self.note = (
                    f"real pyslurm {pyslurm.__version__} C bindings on Slurm "
                    f"{slurm('sinfo', '--version').split()[-1]}"
                )

            double = HERE.parent / "tests" / "pyslurm_double"
            if importlib.util.find_spec("pyslurm") is None:
                if not double.is_dir():
                    raise Unavailable("pyslurm is not installed and its test double is missing")
                # The same double the test suite uses: every pyslurm RPC is one Slurm CLI
                # call (SLURM_CONF is the benchmark cluster's).
                sys.path.insert(0, str(double))
                self.note = (
                    "TEST DOUBLE (tests/pyslurm_double): each pyslurm RPC is one Slurm CLI "
                    "call, so this is slurmscope's pyslurm code path, not pyslurm's speed; PyPI "
                    "has only pyslurm 25.11, which builds only against Slurm 25.11 (this "
                    f"cluster runs {slurm('sinfo', '--version').split()[-1]})"
                )
        try:
            self.cluster = slurmscope.Cluster(
                self.backend, root=self.folder, set_as_default=False, **options
            )
        except slurmscope.BackendUnavailableError as exc:
            raise Unavailable(str(exc)) from exc
        self.task = self.cluster.task(bench_tasks.echo)
        self.held = self.cluster.task(bench_tasks.echo, extra=("--hold",))

    def map(self, items: list[Any], hold: bool = False) -> Any:
        if self.work != "echo":
            work = self.cluster.task(getattr(bench_tasks, self.work))
            handle = work.map(items, pack=self.pack)
            self.last_pack = handle.pack
            return handle
        return (self.held if hold else self.task).map(items)

    def results(self, handle: Any) -> list[Any]:
        return list(handle.get_results(progress=False))

    def job_id(self, handle: Any) -> str:
        return ",".join(handle.job_ids)

    def cancel(self, handle: Any) -> None:
        handle.cancel()

    def close(self) -> None:
        self.cluster.close()


class SlurmscopeSbatchCompat(Slurmscope):
    """The sbatch backend on the compatibility cluster (Debian's Slurm 22.05): bench.py runs
    this driver with that cluster's SLURM_CONF and binaries."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.name = "slurmscope-sbatch-22.05"
        self.note = f"sbatch backend on Slurm {slurm('sinfo', '--version').split()[-1]}"


def echo_script(x):
    """``bench_tasks.echo``, defined in the driver script as most users define their tasks:
    shipped by value (``__main__`` cannot be imported in the job)."""
    return x


class SlurmscopeScript(Slurmscope):
    """The sbatch backend running :func:`echo_script`, the task defined in this script."""

    name = "slurmscope-sbatch-script"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.task = self.cluster.task(echo_script)
        self.held = self.cluster.task(echo_script, extra=("--hold",))


class SlurmscopeLocal(Slurmscope):
    backend = "local"


class SlurmscopePyslurm(Slurmscope):
    backend = "pyslurm"


class Submitit(Library):
    name = "submitit"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        try:
            import submitit
        except ImportError as exc:
            raise Unavailable("submitit is not installed (requirements-bench.txt)") from exc
        self.submitit = submitit
        self.executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster="slurm")
        self.executor.update_parameters(timeout_min=10)

    def map(self, items: list[Any], hold: bool = False) -> Any:
        extra = {"slurm_additional_parameters": {"hold": True}} if hold else {}
        self.executor.update_parameters(**extra)
        return self.executor.map_array(getattr(bench_tasks, self.work), items)

    def results(self, handle: Any) -> list[Any]:
        return [job.result() for job in handle]

    def job_id(self, handle: Any) -> str:
        return str(handle[0].job_id).split("_")[0]


class SlurmSdk(Library):
    name = "slurm-sdk"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        try:
            import bench_tasks_sdk
            from slurm.cluster import Cluster
        except ImportError as exc:
            raise Unavailable("slurm-sdk is not installed (requirements-bench.txt)") from exc
        self.echo = bench_tasks_sdk.echo_sdk
        self.sdk_tasks = bench_tasks_sdk

        # backend_type="local" runs sbatch/squeue/scontrol here (no SSH); packaging "none":
        # the job runs in this very environment (PATH, PYTHONPATH are exported).
        self.cluster = Cluster(
            backend_type="local", job_base_dir=str(self.folder), default_packaging="none"
        )

    def map(self, items: list[Any], hold: bool = False) -> Any:
        if hold:
            raise Unavailable("slurm-sdk has no way to hold a map here")
        with self.cluster:
            if self.work != "echo":
                return getattr(self.sdk_tasks, f"{self.work}_sdk").map(items)
            return self.echo.map(items)

    def results(self, handle: Any) -> list[Any]:
        with self.cluster:
            return list(handle.get_results())

    def job_id(self, handle: Any) -> str:
        return str(handle._array_job_id).split("_")[0]


class Machine(Library):
    """No scheduler at all: one process per CPU of the cluster, each running its share of
    the items in a loop. What the machine itself gives at the moment of the measurement
    (on a shared machine, other work takes CPUs from the ideal too)."""

    name = "machine"

    def map(self, items: list[Any], hold: bool = False) -> Any:
        cpus = int(slurm("sinfo", "-h", "-o", "%C").split("/")[-1])
        code = "import sys, bench_tasks\n[bench_tasks.burn(i) for i in range(int(sys.argv[1]))]"
        share = -(-len(items) // cpus)
        return [
            subprocess.Popen([sys.executable, "-c", code, str(share)], cwd=HERE)
            for _ in range(cpus)
        ], items

    def results(self, handle: Any) -> list[Any]:
        procs, items = handle
        for proc in procs:
            if proc.wait() != 0:
                raise RuntimeError("a machine process failed")
        return list(items)

    def cancel(self, handle: Any) -> None:
        for proc in handle[0]:
            proc.kill()


def make_library(name: str, workdir: Path) -> Library:
    classes = {
        "floor": Floor,
        "slurmscope-sbatch": Slurmscope,
        "slurmscope-sbatch-script": SlurmscopeScript,
        "slurmscope-sbatch-22.05": SlurmscopeSbatchCompat,
        "slurmscope-local": SlurmscopeLocal,
        "slurmscope-pyslurm": SlurmscopePyslurm,
        "submitit": Submitit,
        "slurm-sdk": SlurmSdk,
        "machine": Machine,
    }
    return classes[name](workdir)


# ---------------------------------------------------------------------------- scenarios
def scenario_submit(lib: Library, n: int) -> dict[str, Any]:
    """One map of ``n`` items, from call to return, after a warm-up map of 2 items."""
    warm = lib.map(list(range(2)))
    lib.cancel(warm)
    items = list(range(n))
    lib.prepare(items)
    before = count_files(lib.folder)
    start = time.perf_counter()
    handle = lib.map(items)
    elapsed = time.perf_counter() - start
    files = count_files(lib.folder) - before
    lib.cancel(handle)
    return {"submit_s": elapsed, "files": files, "files_per_task": files / n}


def scenario_e2e(lib: Library, n: int) -> dict[str, Any]:
    """Submit ``n`` items, wait for every task, collect every result (checked)."""
    items = list(range(n))
    lib.prepare(items)
    before = count_files(lib.folder)
    start = time.perf_counter()
    handle = lib.map(items)
    submitted = time.perf_counter()
    results = lib.results(handle)
    done = time.perf_counter()
    if results != items:
        raise RuntimeError(f"{lib.name} returned wrong results: {results[:5]}...")
    files = count_files(lib.folder) - before
    return {
        "submit_s": submitted - start,
        "e2e_s": done - start,
        "files": files,
        "files_per_task": files / n,
    }


def scenario_small(lib: Library, n: int) -> dict[str, Any]:
    """``n`` items of 10 ms CPU each, end to end, and the ideal: the work divided by the
    cluster's CPUs (``sinfo``)."""
    lib.work = "burn"
    result = scenario_e2e(lib, n)
    # the machine's load average over the last minute, at the end: other work on a shared
    # machine takes CPUs from the tasks, and the ideal assumes they have all of them
    result["load_1min"] = os.getloadavg()[0]
    cpus = int(slurm("sinfo", "-h", "-o", "%C").split("/")[-1])
    result.update({"cpus": cpus, "ideal_s": n * 0.010 / cpus, "pack": lib.pack})
    if getattr(lib, "last_pack", None) is not None:
        result["pack_size"] = lib.last_pack  # type: ignore[attr-defined]
    return result


def scenario_memory(lib: Library, n: int) -> dict[str, Any]:
    """Peak-RSS growth of the driver over a map of ``n`` small items, submitted and waited
    on to the end.

    The tasks are held (``--hold``) and their results are written by a helper process
    with the library's own result format, so that a 2-CPU cluster need not run ``n``
    Python processes; the driver submits, polls the scheduler while every task is
    pending (the largest answers), then waits and collects the results as usual.
    """
    baseline = vm_hwm_kib()
    items = [f"item-{i:06d}" for i in range(n)]
    start = time.perf_counter()
    handle = lib.map(items, hold=True)
    submitted = time.perf_counter()
    time.sleep(5.0)  # the library's own polling (if any) sees n pending tasks meanwhile
    fabricate(lib, handle, n)
    waited_from = time.perf_counter()
    results = lib.results(handle)
    waited = time.perf_counter() - waited_from
    if results != items:
        raise RuntimeError(f"{lib.name} returned wrong results")
    peak = vm_hwm_kib()
    lib.cancel(handle)
    return {
        "n": n,
        "submit_s": submitted - start,
        "wait_s": waited,
        "baseline_mib": baseline / 1024,
        "peak_mib": peak / 1024,
        "growth_mib": (peak - baseline) / 1024,
    }


def fabricate(lib: Library, handle: Any, n: int) -> None:
    """Write every task's result as the library's worker would, in a helper process,
    then cancel the held array (it never runs)."""
    if isinstance(lib, Slurmscope):
        spec = {"library": "slurmscope", "directory": str(handle.directory), "n": n}
    elif isinstance(lib, Submitit):
        spec = {"library": "submitit", "folder": str(lib.folder / "%j"), "n": n}
        spec["job_id"] = lib.job_id(handle)
    else:
        raise Unavailable(f"no result writer for {lib.name}")
    subprocess.run(
        [sys.executable, __file__, "fabricate", "none", "--spec", json.dumps(spec)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    slurm("scancel", lib.job_id(handle), check=False)


def write_results(spec: dict[str, Any]) -> None:
    n = spec["n"]
    if spec["library"] == "slurmscope":
        from slurmscope import worker

        with contextlib.redirect_stdout(open(os.devnull, "w")):  # noqa: SIM115
            for i in range(n):
                if worker.run(spec["directory"], i) != 0:
                    raise RuntimeError(f"worker failed on item {i}")
    else:
        from submitit.core import utils

        for i in range(n):
            paths = utils.JobPaths(spec["folder"], job_id=f"{spec['job_id']}_{i}", task_id=0)
            item = pickle.loads(paths.submitted_pickle.read_bytes()).args[0]
            with utils.temporary_save_path(paths.result_pickle) as tmp:
                utils.cloudpickle_dump(("success", item), tmp)


def scenario_scale(lib: Library, n: int, window: float, outcomes: bool) -> dict[str, Any]:
    """A map of ``n`` integers on a cluster with the default MaxArraySize (1001: ``n`` /
    1001 parts): submit time and the driver's peak-RSS growth; the scheduler queries the
    driver's poller makes in ``window`` seconds while every task is pending (the backend's
    own count of its ``squeue`` runs or ``Jobs.load()`` RPCs); then ``wait()`` and
    ``get_results()`` over ``n`` outcome files written by a helper process that imitates
    the workers (``payload.write_outcome``, as each task writes its own): ``n`` real tasks
    would take this 2-CPU cluster hours (``outcomes``: else not; it reads only files, the
    same on every backend). The array is held, and cancelled by bench.py."""
    if not isinstance(lib, Slurmscope):
        raise Unavailable("the scale scenario measures slurmscope only")
    warm = lib.map(list(range(2)))
    lib.cancel(warm)
    items = list(range(n))
    baseline = vm_hwm_kib()
    cpu = time.process_time()
    start = time.perf_counter()
    handle = lib.map(items, hold=True)
    submit_s = time.perf_counter() - start
    submit_cpu_s = time.process_time() - cpu
    submit_growth = (vm_hwm_kib() - baseline) / 1024
    backend = lib.cluster.backend
    calls = dict(backend.calls)
    time.sleep(window)
    queries = sum(backend.calls.get(k, 0) - calls.get(k, 0) for k in ("squeue", "load"))
    polled_growth = (vm_hwm_kib() - baseline) / 1024
    out = {
        "n": n,
        "parts": len(handle.job_ids),
        "submit_s": submit_s,
        "submit_cpu_s": submit_cpu_s,
        "submit_growth_mib": submit_growth,
        "window_s": window,
        "queries": queries,
        "polled_growth_mib": polled_growth,
        "growth_mib": polled_growth,
    }
    if not outcomes:
        return out
    code = (
        "import sys\n"
        "from slurmscope.payload import write_outcome\n"
        "for i in range(int(sys.argv[2])):\n"
        "    write_outcome(sys.argv[1], i, {'ok': True, 'value': i})\n"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(handle.directory), str(n)], check=True)
    write_s = time.perf_counter() - started
    started = time.perf_counter()
    handle.wait(progress=False)
    wait_s = time.perf_counter() - started
    started = time.perf_counter()
    results = handle.get_results(progress=False)
    get_results_s = time.perf_counter() - started
    if results != items:
        raise RuntimeError("wrong results")
    out.update(
        outcomes_written_s=write_s,
        wait_s=wait_s,
        get_results_s=get_results_s,
        growth_mib=(vm_hwm_kib() - baseline) / 1024,
    )
    return out


# -- slurmscope-only scenarios -------------------------------------------------------------
def null_cluster(root: Path) -> Any:
    """A slurmscope Cluster on ``slurmscope.testing.FakeBackend`` that records each
    submission without running it, after rendering the sbatch command line and batch script
    (its ``on_submit`` hook): every cost of the submit path except the scheduler's own."""
    import slurmscope
    from slurmscope.backends.sbatch import SbatchBackend, sbatch_arguments
    from slurmscope.backends.slurm_request import batch_script
    from slurmscope.testing import FakeBackend

    def render(spec: Any) -> None:
        sbatch_arguments(spec), batch_script(spec)

    backend = FakeBackend(
        run=False,
        on_submit=render,
        poll_interval=SbatchBackend.poll_interval,  # the poller works as it would on Slurm
        query_interval=SbatchBackend.query_interval,
    )
    return slurmscope.Cluster(backend, root=root, set_as_default=False)


def scenario_scope(workdir: Path, rounds: int, per_round: int) -> dict[str, Any]:
    """Submit latency of one job under 0, 1, 10 and 50 nested ``dependencies()`` blocks
    (each on a job of its own), and with 16 threads submitting at once."""
    import slurmscope

    cluster = null_cluster(workdir / "scope")
    task = cluster.task(bench_tasks.echo)
    upstream = [task(i) for i in range(50)]
    depths = (0, 1, 10, 50)
    samples: dict[int, list[float]] = {d: [] for d in depths}
    explicit: list[float] = []  # the same 50 dependencies given as after=[...], no block
    explicit_task = task.options(after=upstream)
    for _ in range(rounds):
        for depth in depths:
            with contextlib.ExitStack() as blocks:
                for job in upstream[:depth]:
                    blocks.enter_context(cluster.dependencies(job))
                for _ in range(per_round):
                    start = time.perf_counter()
                    task(1)
                    samples[depth].append(time.perf_counter() - start)
        for _ in range(per_round):
            start = time.perf_counter()
            explicit_task(1)
            explicit.append(time.perf_counter() - start)
    medians = {d: statistics.median(s) for d, s in samples.items()}
    per_level = (medians[50] - medians[0]) / 50
    after_50 = statistics.median(explicit)

    def burst(threads: int, each: int) -> dict[str, float]:
        latencies: list[float] = []
        lock = threading.Lock()

        def submit_many() -> None:
            mine = []
            for _ in range(each):
                start = time.perf_counter()
                task(1)
                mine.append(time.perf_counter() - start)
            with lock:
                latencies.extend(mine)

        with contextlib.ExitStack() as blocks:
            for job in upstream[:10]:
                blocks.enter_context(cluster.dependencies(job))
            workers = [
                threading.Thread(target=slurmscope.carry_scope(submit_many)) for _ in range(threads)
            ]
            start = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            wall = time.perf_counter() - start
        return {
            "threads": threads,
            "submissions": threads * each,
            "median_latency_s": statistics.median(latencies),
            "throughput_per_s": threads * each / wall,
        }

    each = max(2, per_round * rounds // 16)
    one = burst(1, 16 * each)
    sixteen = burst(16, each)
    cluster.close()
    return {
        "median_s": {str(d): m for d, m in medians.items()},
        "per_level_s": per_level,
        "after_50_s": after_50,
        "scope_only_per_level_s": (medians[50] - after_50) / 50,
        "samples_per_depth": rounds * per_round,
        "one_thread": one,
        "sixteen_threads": sixteen,
    }


def scenario_worker(workdir: Path, n: int, repeats: int) -> dict[str, Any]:
    """The worker's wall time above ``python -c pass``, with the command the driver gives
    every task: for a task imported from a module and one defined in this script (shipped
    by value), item 0 against item n-1; and the same tasks started the older way,
    ``python -m slurmscope.worker`` (``site`` and ``runpy`` at start). Each run has its
    task's outcome removed first, so every one runs the task."""
    from slurmscope.bootstrap import command
    from slurmscope.payload import read_item, result_file

    cluster = null_cluster(workdir / "worker")
    array = cluster.task(bench_tasks.echo).map(list(range(n)))
    script_array = cluster.task(echo_script).map(list(range(n)))
    directory, script_directory = str(array.directory), str(script_array.directory)
    cluster.close()

    def run(args: list[str] | tuple[str, ...], index: int | None = None) -> float:
        env = dict(os.environ)
        if index is not None:
            env["SLURM_ARRAY_TASK_ID"] = str(index)
        start = time.perf_counter()
        subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start

    def task(args: list[str] | tuple[str, ...], folder: str, index: int) -> float:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(result_file(folder, index))
        return run(args, index)

    times: dict[str, list[float]] = {
        k: []
        for k in (
            "pass",
            "pass_S",
            "item0",
            "itemlast",
            "script",
            "m_item0",
            "m_script",
        )
    }
    m_command = [sys.executable, "-m", "slurmscope.worker"]
    for _ in range(repeats):
        times["pass"].append(run([sys.executable, "-c", "pass"]))
        times["pass_S"].append(run([sys.executable, "-S", "-c", "pass"]))
        times["item0"].append(task(command(directory, 0), directory, 0))
        times["itemlast"].append(task(command(directory, 0), directory, n - 1))
        times["script"].append(task(command(script_directory, 0), script_directory, 0))
        times["m_item0"].append(task([*m_command, directory], directory, 0))
        times["m_script"].append(task([*m_command, script_directory], script_directory, 0))
    med = {k: statistics.median(v) for k, v in times.items()}

    def load_time(index: int, reps: int = 2000) -> float:
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            pickle.loads(read_item(directory, index))
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    out: dict[str, Any] = {
        "n": n,
        "command": list(command(directory, 0))[:3],
        "python_pass_s": med["pass"],
        "python_S_pass_s": med["pass_S"],
        "worker_item0_s": med["item0"],
        "worker_itemlast_s": med["itemlast"],
        "worker_script_item0_s": med["script"],
        "worker_m_item0_s": med["m_item0"],
        "worker_m_script_item0_s": med["m_script"],
        "overhead_s": med["item0"] - med["pass"],
        "script_overhead_s": med["script"] - med["pass"],
        "load_item0_s": load_time(0),
        "load_itemlast_s": load_time(n - 1),
    }
    out["sdk"] = sdk_item_loads(workdir, n)
    return out


def sdk_item_loads(workdir: Path, n: int) -> dict[str, Any] | str:
    """How long slurm-sdk's task takes to find its item (it unpickles all n)."""
    try:
        from slurm.array_items import load_array_item, serialize_array_items
    except ImportError:
        return "slurm-sdk is not installed"
    out = {}
    for label, items in (("int", list(range(n))), ("1KiB", [bytes(1024)] * n)):
        folder = workdir / f"sdk-items-{label}"
        name = serialize_array_items(items, str(folder))
        path = str(folder / name)
        for index, key in ((0, "item0"), (n - 1, "itemlast")):
            times = []
            for _ in range(20):
                start = time.perf_counter()
                load_array_item(path, index)
                times.append(time.perf_counter() - start)
            out[f"{label}_{key}_s"] = statistics.median(times)
    return out


def scenario_results(lib: Library, n: int) -> dict[str, Any]:
    """``get_results()`` of a finished n-item map, in the driver that submitted it and in a
    fresh process that attaches to it. The results are written by slurmscope's own worker
    code in a helper process (a held array, cancelled after): a 2-CPU cluster would need
    tens of minutes to start n Python processes, and ``get_results()`` only reads the job
    directory."""
    if not isinstance(lib, Slurmscope):
        raise Unavailable("the results scenario measures slurmscope only")
    array = lib.map(list(range(n)), hold=True)
    fabricate(lib, array, n)
    array.wait(timeout=300, progress=False)
    start = time.perf_counter()
    results = array.get_results(progress=False)
    elapsed = time.perf_counter() - start
    if results != list(range(n)):
        raise RuntimeError("wrong results")
    code = (
        "import sys, time, slurmscope\n"
        "c = slurmscope.Cluster('sbatch', root=sys.argv[1], slurm_conf=sys.argv[3],"
        " set_as_default=False)\n"
        "t = time.perf_counter(); r = c.attach(sys.argv[2]).get_results(progress=False)\n"
        "print(time.perf_counter() - t, len(r))\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(lib.folder),
            str(array.directory),
            os.environ["SLURM_CONF"],
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {"n": n, "get_results_s": elapsed, "attach_get_results_s": float(out[0])}


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "scenario",
        choices=[
            "submit",
            "e2e",
            "memory",
            "scope",
            "worker",
            "results",
            "small",
            "scale",
            "fabricate",
        ],
    )
    parser.add_argument("library", choices=[*LIBRARIES, "none"])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--outcomes", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--spec", default=None)
    parser.add_argument("--pack", default=None, help="slurmscope's map(pack=): SIZE or auto")
    args = parser.parse_args(argv)
    if args.scenario == "fabricate":
        write_results(json.loads(args.spec))
        return 0
    workdir = args.workdir or Path(os.environ.get("TMPDIR", "/tmp")) / "slurmscope-bench"
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"scenario": args.scenario, "library": args.library}
    lib: Library | None = None
    try:
        if args.scenario == "scope":
            result.update(scenario_scope(workdir, args.rounds, args.repeats))
        elif args.scenario == "worker":
            result.update(scenario_worker(workdir, args.n, args.repeats))
        else:
            setup_start = time.perf_counter()
            lib = make_library(args.library, workdir)
            if args.pack is not None:
                lib.pack = args.pack if args.pack == "auto" else int(args.pack)
            result["setup_s"] = time.perf_counter() - setup_start
            mark_start()
            if args.scenario == "scale":
                result.update(scenario_scale(lib, args.n, args.window, bool(args.outcomes)))
            else:
                scenario = {
                    "submit": scenario_submit,
                    "e2e": scenario_e2e,
                    "memory": scenario_memory,
                    "results": scenario_results,
                    "small": scenario_small,
                }[args.scenario]
                result.update(scenario(lib, args.n))
    except Unavailable as exc:
        result["unavailable"] = str(exc)
    finally:
        if lib is not None:
            lib.close()
    if getattr(lib, "note", ""):
        result["note"] = lib.note  # type: ignore[union-attr]
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
