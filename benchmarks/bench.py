"""slurmscope against submitit, slurm-sdk and hand-written sbatch, on one real Slurm cluster.

Run it through ``benchmarks/run`` (which makes the benchmark virtualenv and starts a Slurm
cluster of its own); directly: ``SLURM_CONF=... python benchmarks/bench.py [--quick]``.

Every measurement runs in a process of its own (``drivers.py``), one after the other, on
an idle cluster: between two of them every job is cancelled and the queue drained. Times
are medians over repetitions that interleave the libraries, so that a slow minute of the
machine falls on all of them alike. Each number is also given as a ratio to the baseline
measured in the same run.

Output: a table on stdout; the results as JSON; a PNG of submit latency against map size;
with ``--out docs`` (the default of a full run) the table also replaces the one between the
markers in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DRIVERS = HERE / "drivers.py"
MARK_START = "<!-- benchmark table: start (written by benchmarks/bench.py) -->"
MARK_END = "<!-- benchmark table: end -->"

#: RPCs the driver does not send: sdiag's own, and those of slurmd, slurmstepd and of
#: srun inside a job (per-task messages, reported apart).
NOT_DRIVER_RPCS = frozenset(
    {
        "REQUEST_STATS_INFO",
        "REQUEST_RESET_STATS",
        "REQUEST_COMPLETE_BATCH_SCRIPT",
        "MESSAGE_EPILOG_COMPLETE",
        "REQUEST_COMPLETE_PROLOG",
        "MESSAGE_NODE_REGISTRATION_STATUS",
        "REQUEST_NODE_REGISTRATION_STATUS",
        "REQUEST_JOB_STEP_CREATE",
        "REQUEST_STEP_COMPLETE",
        "REQUEST_HET_JOB_ALLOC_INFO",
        "REQUEST_JOB_ALLOCATION_INFO",
        "REQUEST_JOB_READY",
        "MESSAGE_TASK_EXIT",
        "REQUEST_UPDATE_JOB_STEP",
        "MESSAGE_COMPOSITE",
    }
)
WRAPPED = ("squeue", "sacct", "scontrol", "sinfo", "sbatch", "scancel", "srun")
QUERY_TOOLS = ("squeue", "sacct")


@dataclass(frozen=True)
class Plan:
    submit_sizes: tuple[int, ...]
    submit_repeats: int
    e2e_n: int
    e2e_rounds: int  # floor and slurmscope (the target is their ratio)
    e2e_rounds_others: int  # submitit and slurm-sdk (slower: fewer rounds)
    load_n: int
    scope_rounds: int
    scope_per_round: int
    worker_n: int
    worker_repeats: int
    results_n: int
    memory_n: int
    small_n: int = 2000  # the many-small-tasks section: items of 10 ms CPU each
    pack_sizes: tuple[int, ...] = (50, 250, 1000)  # slurmscope's explicit pack sizes tried
    #: The scale section's map sizes, largest first (queries flat in N: compared), and the
    #: seconds its poller is watched while every task is pending.
    scale_sizes: tuple[int, ...] = (1_000_000, 10_000)
    scale_window: float = 20.0


FULL = Plan((100, 1000, 3000, 10000), 3, 200, 5, 3, 1000, 5, 60, 10000, 15, 10000, 100000)
QUICK = Plan((10, 100), 1, 10, 1, 1, 20, 2, 10, 1000, 3, 200, 1000, 40, (10,), (3000, 300), 5.0)

SUBMIT_LIBS = (
    "floor",
    "slurmscope-sbatch",
    "slurmscope-sbatch-22.05",
    "slurmscope-local",
    "slurmscope-pyslurm",
    "submitit",
    "slurm-sdk",
)
E2E_LIBS = ("floor", "slurmscope-sbatch", "slurmscope-sbatch-script", "submitit", "slurm-sdk")
LOAD_LIBS = ("slurmscope-sbatch", "submitit")
SCALE_LIBS = ("slurmscope-pyslurm", "slurmscope-sbatch")
MEMORY_LIBS = ("slurmscope-sbatch", "submitit")
#: The many-small-tasks section, unpacked (slurmscope's packed runs are added to these).
SMALL_LIBS = ("floor", "slurmscope-sbatch", "submitit", "slurm-sdk")


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.plan = QUICK if args.quick else FULL
        self.conf = os.environ.get("SLURM_CONF", "")
        self.workdir = Path(tempfile.mkdtemp(prefix="slurmscope-bench-", dir=args.tmp))
        self.calllog = self.workdir / "calls.log"
        self.wrapdir = self.workdir / "wrap"
        self.env = self._environment()
        self.results: dict[str, Any] = {"runs": []}
        self.unavailable: dict[str, str] = {}

    # -- set-up -------------------------------------------------------------------------------
    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
        # slurm-sdk's job scripts run ``python`` from PATH: make it this environment's.
        env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # any value, even "0", turns .pyc files off
        return env

    def check_cluster(self) -> dict[str, str]:
        if not self.conf or not Path(self.conf).is_file():
            sys.exit(
                "bench.py: set SLURM_CONF to the benchmark cluster's slurm.conf (benchmarks/run does)"
            )
        text = Path(self.conf).read_text()
        if "/var/tmp/slurmscope-cluster" in text and not self.args.any_cluster:
            sys.exit(
                "bench.py: SLURM_CONF is the shared test cluster's; the benchmark cancels every "
                "job of its cluster, so it runs on a cluster of its own (benchmarks/run starts one)"
            )
        out = self.slurm("scontrol", "show", "config")
        config = {}
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                config[key.strip()] = value.strip()
        largest = max(self.plan.submit_sizes)
        if int(config.get("MaxArraySize", "1001")) <= largest:
            print(
                f"bench.py: warning: MaxArraySize={config.get('MaxArraySize')} is not above "
                f"{largest}; maps will be split over several arrays",
                file=sys.stderr,
            )
        self.make_wrappers()
        return config

    def make_wrappers(self) -> None:
        """Scripts first on PATH that log each Slurm command, then run the real one."""
        self.wrapdir.mkdir(parents=True, exist_ok=True)
        for tool in WRAPPED:
            real = shutil.which(tool)
            if real is None:
                continue
            script = self.wrapdir / tool
            script.write_text(
                "#!/bin/sh\n"
                f'[ -n "$SLURMSCOPE_BENCH_CALLLOG" ] && echo {tool} >> "$SLURMSCOPE_BENCH_CALLLOG"\n'
                f'exec {real} "$@"\n'
            )
            script.chmod(0o755)

    def slurm(self, *args: str) -> str:
        proc = subprocess.run(
            list(args), capture_output=True, text=True, env=self.env, check=False, timeout=120
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def drain(self, timeout: float = 120.0, conf: str | None = None) -> None:
        """Cancel every job of the benchmark cluster (or of the cluster of ``conf``) and wait
        until none runs or waits."""
        env = dict(self.env, SLURM_CONF=conf) if conf else self.env
        subprocess.run(
            ["scancel", "--user", getpass.getuser()], env=env, capture_output=True, check=False
        )
        states = "--states=PD,R,CG,CF,S"
        if not self.wait_empty(env, states, timeout, 0.5):
            print("bench.py: warning: the queue did not drain", file=sys.stderr)

    def wait_empty(self, env: dict[str, str], states: str, timeout: float, every: float) -> bool:
        """Wait until ``squeue`` (jobs in ``states``) lists nothing; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["squeue", "--noheader", "--format=%i", states],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            ).stdout
            if not out.strip():
                return True
            time.sleep(every)
        return False

    # -- running one driver -------------------------------------------------------------------
    def driver(
        self,
        scenario: str,
        library: str,
        *,
        count_calls: bool = False,
        timeout: float = 1500.0,
        conf: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        if library in self.unavailable:
            return {
                "scenario": scenario,
                "library": library,
                "unavailable": self.unavailable[library],
            }
        args = [
            sys.executable,
            str(DRIVERS),
            scenario,
            library,
            "--workdir",
            str(self.workdir / "w"),
        ]
        for key, value in options.items():
            args += [f"--{key}", str(value)]
        env = dict(self.env)
        if conf:  # another cluster of the benchmark's own (the scale section's)
            env["SLURM_CONF"] = conf
        if library.endswith("-22.05"):
            compat = os.environ.get("SLURMSCOPE_BENCH_COMPAT_CONF")
            if not compat:
                self.unavailable[library] = "no Slurm 22.05 cluster (benchmarks/run starts one)"
                return self.driver(scenario, library, **options)
            env["SLURM_CONF"] = compat
            env["PATH"] = os.pathsep.join(("/usr/bin", env["PATH"]))  # Debian's Slurm
        if count_calls:
            env["PATH"] = os.pathsep.join((str(self.wrapdir), env["PATH"]))
            env["SLURMSCOPE_BENCH_CALLLOG"] = str(self.calllog)
            self.calllog.write_text("")
        started = time.monotonic()
        try:
            # Drivers (and so their jobs) run in the work directory: each library's worker
            # imports the installed packages, never this checkout's sources.
            proc = subprocess.run(
                args,
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout,
                check=False,
                cwd=self.workdir,
            )
            lines = proc.stdout.strip().splitlines()
            result = json.loads(lines[-1]) if proc.returncode == 0 and lines else None
            if result is None:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
                result = {"scenario": scenario, "library": library, "error": " | ".join(tail)}
        except subprocess.TimeoutExpired:
            result = {
                "scenario": scenario,
                "library": library,
                "error": f"timed out after {timeout:.0f} s",
            }
        result["wall_s"] = time.monotonic() - started
        result["options"] = options
        if count_calls:
            result["calls"] = self.count_calls()
        if "unavailable" in result:
            self.unavailable[library] = result["unavailable"]
        self.drain(conf=conf)
        self.results["runs"].append(result)
        shown = {k: v for k, v in result.items() if k not in ("options", "scenario", "library")}
        print(f"  {scenario:7} {library:19} {json.dumps(shown, default=str)[:160]}", flush=True)
        return result

    def count_calls(self) -> dict[str, Any]:
        rpcs = parse_sdiag(self.slurm("sdiag"))
        driver = {k: v for k, v in rpcs.items() if k not in NOT_DRIVER_RPCS}
        in_job = {k: v for k, v in rpcs.items() if k in NOT_DRIVER_RPCS and "STATS" not in k}
        tools: dict[str, int] = {}
        setup: dict[str, int] = {}
        counting = setup
        for line in self.calllog.read_text().splitlines():
            name = line.strip()
            if name == "--start--":
                counting = tools
                continue
            counting[name] = counting.get(name, 0) + 1
        tools.pop("sdiag", None)
        driver_rpcs = sum(driver.values())
        queries = driver_rpcs + sum(tools.get(t, 0) for t in QUERY_TOOLS)
        return {
            "driver_rpcs": driver_rpcs,
            "driver_rpc_types": driver,
            "in_job_rpcs": sum(in_job.values()),
            "in_job_rpc_types": in_job,
            "tool_runs": tools,
            "setup_tool_runs": setup,
            "scheduler_queries": queries,
        }

    # -- the measurements ---------------------------------------------------------------------
    def run_submit(self) -> None:
        print("1. submit latency of one map", flush=True)
        p = self.plan
        for _ in range(p.submit_repeats):
            for n in p.submit_sizes:
                for lib in SUBMIT_LIBS:
                    self.driver("submit", lib, n=n)

    def run_e2e(self) -> None:
        print(f"2. end-to-end time of a {self.plan.e2e_n}-task map", flush=True)
        for round_ in range(self.plan.e2e_rounds):
            for lib in E2E_LIBS:
                if lib in ("submitit", "slurm-sdk") and round_ >= self.plan.e2e_rounds_others:
                    continue
                self.driver("e2e", lib, n=self.plan.e2e_n, count_calls=True)

    def run_scope(self) -> None:
        print("3. cost of scoping", flush=True)
        self.driver(
            "scope", "none", rounds=self.plan.scope_rounds, repeats=self.plan.scope_per_round
        )

    def run_load(self) -> None:
        print(
            f"4. scheduler load of a {self.plan.load_n}-task map, submitted and waited on",
            flush=True,
        )
        for lib in LOAD_LIBS:
            self.driver("e2e", lib, n=self.plan.load_n, count_calls=True, timeout=1200)

    def run_worker(self) -> None:
        print("5. worker overhead", flush=True)
        self.driver("worker", "none", n=self.plan.worker_n, repeats=self.plan.worker_repeats)

    def run_results(self) -> None:
        print(f"6. get_results() of a finished {self.plan.results_n}-item map", flush=True)
        self.driver("results", "slurmscope-sbatch", n=self.plan.results_n)

    def run_memory(self) -> None:
        print(f"7. driver memory over a {self.plan.memory_n}-item map", flush=True)
        for lib in MEMORY_LIBS:
            self.driver("memory", lib, n=self.plan.memory_n, timeout=1800)

    def run_pack(self) -> None:
        n = self.plan.small_n
        print(f"8. {n} items of 10 ms CPU each, end to end (packing)", flush=True)
        self.driver("small", "machine", n=n, timeout=1800)  # the machine alone, no Slurm
        for pack in ("auto", *(str(p) for p in self.plan.pack_sizes)):
            self.driver("small", "slurmscope-sbatch", n=n, pack=pack, timeout=1800)
        for lib in SMALL_LIBS:
            self.driver("small", lib, n=n, timeout=1800)

    def run_scale(self) -> None:
        conf = os.environ.get("SLURMSCOPE_BENCH_SCALE_CONF")
        sizes = self.plan.scale_sizes
        print(f"9. maps of {', '.join(map(str, sizes))} items at MaxArraySize 1001", flush=True)
        if not conf:
            for lib in SCALE_LIBS:
                self.unavailable.setdefault(
                    lib + ":scale", "no scale cluster (benchmarks/run starts one)"
                )
            return
        for lib in SCALE_LIBS:
            for n in sizes:
                # get_results() reads only files, the same on every backend: measured once
                outcomes = int(lib == SCALE_LIBS[0])
                self.driver(
                    "scale",
                    lib,
                    n=n,
                    window=self.plan.scale_window,
                    outcomes=outcomes,
                    conf=conf,
                    timeout=3600,
                )
                self.wait_purged(conf)

    def wait_purged(self, conf: str, timeout: float = 300.0) -> None:
        """Wait until the scale cluster has purged the cancelled arrays (they count against
        MaxJobCount until MinJobAge after their end)."""
        env = dict(self.env, SLURM_CONF=conf)
        if not self.wait_empty(env, "--states=all", timeout, 2):
            print("bench.py: warning: the scale cluster did not purge its jobs", file=sys.stderr)

    def run(self) -> int:
        config = self.check_cluster()
        started = time.time()
        self.results["meta"] = self.meta(config)
        self.drain()
        sections = {
            "submit": self.run_submit,
            "scope": self.run_scope,
            "worker": self.run_worker,
            "results": self.run_results,
            "e2e": self.run_e2e,
            "load": self.run_load,
            "memory": self.run_memory,
            "pack": self.run_pack,
            "scale": self.run_scale,
        }
        only = self.args.only.split(",") if self.args.only else list(sections)
        for name in only:
            sections[name]()
        self.results["meta"]["duration_s"] = time.time() - started
        summary = summarize(self.results, self.plan)
        self.results["summary"] = summary
        table = render_table(self.results, self.plan)
        print()
        print(table)
        self.write(table)
        failed = [r for r in self.results["runs"] if "error" in r]
        for r in failed:
            print(f"bench.py: {r['scenario']} {r['library']} failed: {r['error']}", file=sys.stderr)
        shutil.rmtree(self.workdir, ignore_errors=True)
        return 1 if failed else 0

    def meta(self, config: dict[str, str]) -> dict[str, Any]:
        def version(name: str) -> str | None:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                return None

        cpu = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = 0
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "mode": "quick" if self.args.quick else "full",
            "machine": {
                "host": socket.gethostname(),
                "cpu": cpu,
                "cpus": os.cpu_count(),
                "memory_gib": round(mem_kib / 2**20, 1),
                "kernel": platform.release(),
                "os": platform.platform(),
            },
            "python": platform.python_version(),
            "slurm": self.slurm("sinfo", "--version").strip(),
            "cluster": {
                "MaxArraySize": config.get("MaxArraySize"),
                "MaxJobCount": config.get("MaxJobCount"),
                "SchedulerParameters": config.get("SchedulerParameters"),
                "nodes": self.slurm("sinfo", "--noheader", "--format=%D").strip(),
            },
            "versions": {
                name: version(name)
                for name in ("slurmscope", "submitit", "slurm-sdk", "cloudpickle", "matplotlib")
            },
            "commit": commit,
            "plan": self.plan.__dict__,
            "load_average_at_start": os.getloadavg(),
        }

    def write(self, table: str) -> None:
        out = self.args.out
        out.mkdir(parents=True, exist_ok=True)
        stem = "benchmarks-quick" if self.args.quick else "benchmarks"
        json_path = out / f"{stem}.json"
        json_path.write_text(json.dumps(self.results, indent=1, default=str) + "\n")
        print(f"wrote {json_path}")
        png = out / f"{stem}.png"
        if plot(self.results, png):
            print(f"wrote {png}")
        small_png = out / f"{stem}-small.png"
        if plot_small(self.results, small_png):
            print(f"wrote {small_png}")
        md = out / "benchmarks.md"
        if not self.args.quick and md.exists():
            text = md.read_text()
            if MARK_START in text and MARK_END in text:
                head, rest = text.split(MARK_START, 1)
                _, tail = rest.split(MARK_END, 1)
                md.write_text(f"{head}{MARK_START}\n```text\n{table}\n```\n{MARK_END}{tail}")
                print(f"updated the table in {md}")


# ---------------------------------------------------------------------------- analysis
def parse_sdiag(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    inside = False
    for line in text.splitlines():
        if line.startswith("Remote Procedure Call statistics by message type"):
            inside = True
            continue
        if inside:
            if not line.strip():
                break
            name = line.split()[0]
            for field in line.split():
                if field.startswith("count:"):
                    counts[name] = int(field.split(":")[1])
    return counts


def runs(
    results: dict[str, Any], scenario: str, library: str, **options: Any
) -> list[dict[str, Any]]:
    out = []
    for r in results["runs"]:
        if r["scenario"] != scenario or r["library"] != library or "error" in r:
            continue
        if any(r["options"].get(k) != v for k, v in options.items()):
            continue
        out.append(r)
    return out


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(results: dict[str, Any], plan: Plan) -> dict[str, Any]:
    s: dict[str, Any] = {"submit": {}, "files_at_submit": {}, "e2e": {}, "load": {}}
    for n in plan.submit_sizes:
        row: dict[str, Any] = {}
        for lib in SUBMIT_LIBS:
            rs = runs(results, "submit", lib, n=n)
            if rs and "unavailable" not in rs[0]:
                row[lib] = median([r["submit_s"] for r in rs])
                s["files_at_submit"][lib] = rs[0]["files_per_task"]
        s["submit"][str(n)] = row
    for lib in E2E_LIBS:
        rs = [r for r in runs(results, "e2e", lib, n=plan.e2e_n) if "e2e_s" in r]
        if rs:
            s["e2e"][lib] = {
                "median_s": median([r["e2e_s"] for r in rs]),
                "min_s": min(r["e2e_s"] for r in rs),
                "all_s": [r["e2e_s"] for r in rs],
                "files_per_task": rs[0]["files_per_task"],
                "scheduler_queries": median([r["calls"]["scheduler_queries"] for r in rs]),
                "driver_rpcs": median([r["calls"]["driver_rpcs"] for r in rs]),
                "in_job_rpcs_per_task": median([r["calls"]["in_job_rpcs"] for r in rs])
                / plan.e2e_n,
            }
    for lib in LOAD_LIBS:
        rs = [r for r in runs(results, "e2e", lib, n=plan.load_n) if "e2e_s" in r]
        if rs:
            r = rs[-1]
            s["load"][lib] = {
                "e2e_s": r["e2e_s"],
                "driver_rpcs": r["calls"]["driver_rpcs"],
                "tool_runs": r["calls"]["tool_runs"],
                "scheduler_queries": r["calls"]["scheduler_queries"],
                "in_job_rpcs_per_task": r["calls"]["in_job_rpcs"] / plan.load_n,
            }
    for key, scenario in (("scope", "scope"), ("worker", "worker")):
        rs = runs(results, scenario, "none")
        if rs:
            s[key] = rs[-1]
    rs = runs(results, "results", "slurmscope-sbatch")
    if rs and "get_results_s" in rs[-1]:
        s["results"] = rs[-1]
    s["memory"] = {}
    for lib in MEMORY_LIBS:
        rs = [r for r in runs(results, "memory", lib) if "growth_mib" in r]
        if rs:
            s["memory"][lib] = rs[-1]
    s["small"] = {}
    for r in results["runs"]:
        if r["scenario"] != "small" or "e2e_s" not in r:
            continue
        pack = r["options"].get("pack")
        label = r["library"] if pack is None else f"slurmscope pack={pack}"
        if label == "slurmscope-sbatch":
            label = "slurmscope unpacked"
        if label == "machine":
            label = "machine alone (no Slurm)"
        if pack == "auto":
            label += f" ({r.get('pack_size')})"
        s["small"][label] = {
            "e2e_s": r["e2e_s"],
            "ideal_s": r["ideal_s"],
            "cpus": r["cpus"],
            "pack": pack,
            "load_1min": r.get("load_1min"),
        }
    s["scale"] = {}
    for lib in SCALE_LIBS:
        for n in plan.scale_sizes:
            rs = [r for r in runs(results, "scale", lib, n=n) if "submit_s" in r]
            if rs:
                s["scale"].setdefault(lib, {})[str(n)] = rs[-1]
    s["targets"] = targets(s, plan)
    return s


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(s: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, met: bool | None, value: str) -> None:
        out.append({"target": name, "met": met, "value": value})

    big = str(max(plan.submit_sizes))
    row = s["submit"].get(big, {})
    ss, sub, sdk, floor = (
        row.get(k) for k in ("slurmscope-sbatch", "submitit", "slurm-sdk", "floor")
    )
    r = ratio(sub, ss)
    add(
        f"submit {big}: >= 50x faster than submitit",
        None if r is None else r >= 50,
        "n/a" if r is None else f"{r:.0f}x",
    )
    add(
        f"submit {big}: no slower than slurm-sdk",
        None if sdk is None or ss is None else ss <= sdk,
        "n/a" if sdk is None or ss is None else f"{ss * 1e3:.1f} ms vs {sdk * 1e3:.1f} ms",
    )
    r = ratio(ss, floor)
    add(
        f"submit {big}: within 2x of the floor",
        None if r is None else r <= 2,
        "n/a" if r is None else f"{r:.2f}x",
    )
    e2e = s["e2e"]
    if "slurmscope-sbatch" in e2e and "floor" in e2e:
        r = e2e["slurmscope-sbatch"]["median_s"] / e2e["floor"]["median_s"]
        add(f"e2e {plan.e2e_n} tasks: <= 1.10x the floor", r <= 1.10, f"{r:.2f}x")
    else:
        add(f"e2e {plan.e2e_n} tasks: <= 1.10x the floor", None, "n/a")
    for lib, what in (("slurmscope-sbatch", "imported"), ("slurmscope-sbatch-script", "script")):
        name = f"e2e {plan.e2e_n} tasks, task {what}: <= 1.05x the floor"
        if lib in e2e and "floor" in e2e:
            r = e2e[lib]["median_s"] / e2e["floor"]["median_s"]
            add(name, r <= 1.05, f"{r:.2f}x")
        else:
            add(name, None, "n/a")
    scope = s.get("scope")
    if scope and "per_level_s" in scope:
        add(
            "each nesting level < 20 us",
            scope["per_level_s"] < 20e-6,
            f"{scope['per_level_s'] * 1e6:.1f} us",
        )
    load = s["load"]
    if "slurmscope-sbatch" in load and "submitit" in load:
        a, b = load["slurmscope-sbatch"]["scheduler_queries"], load["submitit"]["scheduler_queries"]
        add(f"scheduler queries ({plan.load_n} tasks) <= submitit's", a <= b, f"{a} vs {b}")
    if "slurmscope-sbatch" in load and "slurmscope-sbatch" in e2e:
        a, b = (
            load["slurmscope-sbatch"]["scheduler_queries"],
            e2e["slurmscope-sbatch"]["scheduler_queries"],
        )
        grow = plan.load_n / plan.e2e_n
        add(
            f"scheduler queries do not grow with tasks ({plan.e2e_n} -> {plan.load_n}: x{grow:.0f} tasks)",
            a <= 1.5 * b,
            f"{b:g} -> {a:g}",
        )
    worker = s.get("worker")
    if worker and "load_item0_s" in worker:
        a, b = worker["load_item0_s"], worker["load_itemlast_s"]
        add(
            f"item {worker['n'] - 1} loads as fast as item 0",
            b <= 1.25 * a + 2e-6,
            f"{b * 1e6:.1f} us vs {a * 1e6:.1f} us",
        )
    res = s.get("results")
    if res:
        add(
            f"get_results() of {res['n']} < 1 s",
            res["get_results_s"] < 1.0,
            f"{res['get_results_s']:.3f} s",
        )
    small = s.get("small") or {}
    packed = {k: v for k, v in small.items() if v["pack"] is not None}
    # the peers: raw sbatch --array, submitit, slurm-sdk (slurmscope unpacked is shown too)
    peers = {k: v for k, v in small.items() if v["pack"] is None and not k.startswith("machine")}
    if packed:
        best_label, best = min(packed.items(), key=lambda kv: kv[1]["e2e_s"])
        r = best["e2e_s"] / best["ideal_s"]
        add(
            f"{plan.small_n} x 10 ms: packed within 1.5x of the ideal",
            r <= 1.5,
            f"{best_label}: {r:.2f}x ({best['e2e_s']:.1f} s vs {best['ideal_s']:.1f} s)",
        )
        auto = next((v for v in packed.values() if v["pack"] == "auto"), None)
        if auto is not None:
            r = auto["e2e_s"] / auto["ideal_s"]
            add(
                f"{plan.small_n} x 10 ms: pack=auto within 1.5x of the ideal", r <= 1.5, f"{r:.2f}x"
            )
        for label, v in peers.items():
            r = v["e2e_s"] / best["e2e_s"]
            add(f"{plan.small_n} x 10 ms: packed >= 5x faster than {label}", r >= 5, f"{r:.1f}x")
    mem = s["memory"]
    if "slurmscope-sbatch" in mem:
        g = mem["slurmscope-sbatch"]["growth_mib"]
        add(f"{plan.memory_n}-item map grows the driver < 50 MB", g * 1.048576 < 50, f"{g:.1f} MiB")
        if "submitit" in mem:
            h = mem["submitit"]["growth_mib"]
            add(
                f"{plan.memory_n}-item map grows the driver less than submitit",
                g < h,
                f"{g:.1f} vs {h:.1f} MiB",
            )
    big, small = str(plan.scale_sizes[0]), str(plan.scale_sizes[-1])
    for lib, by_n in s.get("scale", {}).items():
        r = by_n.get(big)
        if r is None:
            continue
        add(f"{lib}: submit {big} items < 3 s", r["submit_s"] < 3.0, fmt_s(r["submit_s"]))
        g = r["growth_mib"]
        add(f"{lib}: {big}-item map grows the driver < 150 MB", g * 1.048576 < 150, f"{g:.1f} MiB")
        q = by_n.get(small)
        if q is not None:
            add(
                f"{lib}: scheduler queries flat in N ({small} -> {big} items, "
                f"{r['window_s']:g} s pending)",
                r["queries"] <= max(q["queries"], 1) + 1,
                f"{q['queries']} -> {r['queries']}",
            )
    return out


def fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.1f} us"
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.2f} s"


def fmt_x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def render_table(results: dict[str, Any], plan: Plan) -> str:
    s = results["summary"]
    meta = results["meta"]
    m = meta["machine"]
    lines = [
        f"slurmscope benchmarks, {meta['date']} ({meta['mode']} run, {meta.get('duration_s', 0) / 60:.1f} min)",
        f"machine: {m['host']}, {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"{meta['slurm']}, 1 node, MaxArraySize={meta['cluster']['MaxArraySize']}; Python {meta['python']}",
        "versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
        + f"; commit {meta['commit']}",
        "",
    ]
    names = [lib for lib in SUBMIT_LIBS if any(lib in row for row in s["submit"].values())]
    lines.append(
        f"1. Submit latency of one map, call to return (median of {plan.submit_repeats}); ratio to the floor"
    )
    header = f"   {'items':>6} " + "".join(f"{n:>26}" for n in names)
    lines.append(header)
    for n, row in s["submit"].items():
        floor = row.get("floor")
        cells = []
        for lib in names:
            v = row.get(lib)
            cells.append(
                f"{fmt_s(v):>14} {fmt_x(ratio(v, floor)):>10} " if v is not None else f"{'-':>26}"
            )
        lines.append(f"   {n:>6} " + "".join(f"{c:>26}" for c in cells))
    files = s["files_at_submit"]
    lines.append(
        "   files written per task at submit: "
        + ", ".join(f"{k} {v:.4g}" for k, v in files.items())
    )
    missing = {r["library"]: r["unavailable"] for r in results["runs"] if "unavailable" in r}
    for lib, why in missing.items():
        lines.append(f"   not measured: {lib}: {why}")
    notes = {r["library"]: r["note"] for r in results["runs"] if r.get("note")}
    for lib, note in notes.items():
        lines.append(f"   {lib}: {note}")
    lines.append("")
    e2e = s["e2e"]
    if e2e:
        floor = e2e.get("floor", {}).get("median_s")
        lines.append(
            f"2. End-to-end: {plan.e2e_n} trivial tasks, submit + run + collect (median of "
            f"{plan.e2e_rounds}; {plan.e2e_rounds_others} for submitit and slurm-sdk), ratio to the floor"
        )
        lines.append(
            f"   {'':24} {'median':>9} {'vs floor':>9} {'all runs':>24} {'files/task':>11} {'sched.queries':>14} {'in-job RPC/task':>16}"
        )
        for lib, v in e2e.items():
            every = " ".join(f"{x:.1f}" for x in v["all_s"])
            lines.append(
                f"   {lib:24} {fmt_s(v['median_s']):>9} {fmt_x(ratio(v['median_s'], floor)):>9} {every:>24} "
                f"{v['files_per_task']:>11.2f} {v['scheduler_queries']:>14g} {v['in_job_rpcs_per_task']:>16.2f}"
            )
        lines.append(
            "   (floor: sbatch --array of `python -c pass`, squeue every 0.25 s until it is gone)"
        )
        lines.append("")
    scope = s.get("scope")
    if scope and "median_s" in scope:
        med = scope["median_s"]
        lines.append(
            f"3. Cost of scoping: submit latency of one job (no scheduler: sbatch line rendered), median of {scope['samples_per_depth']}"
        )
        lines.append("   " + "   ".join(f"depth {d}: {fmt_s(v)}" for d, v in med.items()))
        lines.append(
            f"   per nesting level: {scope['per_level_s'] * 1e6:.1f} us (each block depends on a job of its own); "
            f"the same 50 jobs as after=[...] without blocks: {fmt_s(scope['after_50_s'])}, so the blocks "
            f"themselves cost {scope['scope_only_per_level_s'] * 1e6:.1f} us per level"
        )
        one, many = scope["one_thread"], scope["sixteen_threads"]
        lines.append(
            f"   1 thread: {one['throughput_per_s']:.0f} submissions/s, median {fmt_s(one['median_latency_s'])}; "
            f"16 threads at once: {many['throughput_per_s']:.0f} submissions/s, median {fmt_s(many['median_latency_s'])}"
        )
        lines.append("")
    load = s["load"]
    if load:
        lines.append(
            f"4. Scheduler load: a {plan.load_n}-task map submitted and waited on to the end"
        )
        lines.append(
            f"   {'':19} {'e2e':>9} {'driver RPCs':>12} {'squeue':>7} {'sacct':>6} {'scontrol':>9} {'queries':>8} {'in-job RPC/task':>16}"
        )
        for lib, v in load.items():
            t = v["tool_runs"]
            lines.append(
                f"   {lib:19} {fmt_s(v['e2e_s']):>9} {v['driver_rpcs']:>12} {t.get('squeue', 0):>7} {t.get('sacct', 0):>6} "
                f"{t.get('scontrol', 0):>9} {v['scheduler_queries']:>8} {v['in_job_rpcs_per_task']:>16.2f}"
            )
        lines.append(
            "   (queries = the driver's RPCs that sdiag counts + squeue and sacct runs; counted from the map call on)"
        )
        lines.append("")
    w = s.get("worker")
    if w and "overhead_s" in w:
        lines.append(
            f"5. Worker: python -c pass {fmt_s(w['python_pass_s'])}; worker {fmt_s(w['worker_item0_s'])} "
            f"(overhead {fmt_s(w['overhead_s'])} per task); item {w['n'] - 1}: {fmt_s(w['worker_itemlast_s'])}"
        )
        if "worker_script_item0_s" in w:
            lines.append(
                f"   task defined in the driver script (by value): {fmt_s(w['worker_script_item0_s'])} "
                f"(overhead {fmt_s(w['script_overhead_s'])}); python -S -c pass {fmt_s(w['python_S_pass_s'])}"
            )
            lines.append(
                f"   started as python -m slurmscope.worker (site, runpy): imported {fmt_s(w['worker_m_item0_s'])}, "
                f"script-defined {fmt_s(w['worker_m_script_item0_s'])}; the command given to tasks: {' '.join(w['command'][1:3])}"
            )
        lines.append(
            f"   loading one item of {w['n']}: item 0 {fmt_s(w['load_item0_s'])}, item {w['n'] - 1} {fmt_s(w['load_itemlast_s'])}"
        )
        sdk = w.get("sdk")
        if isinstance(sdk, dict):
            lines.append(
                f"   slurm-sdk (unpickles all {w['n']} items): int items {fmt_s(sdk['int_item0_s'])} / {fmt_s(sdk['int_itemlast_s'])}, "
                f"1 KiB items {fmt_s(sdk['1KiB_item0_s'])} / {fmt_s(sdk['1KiB_itemlast_s'])} (item 0 / last)"
            )
        lines.append("")
    res = s.get("results")
    if res:
        lines.append(
            f"6. get_results() of a finished {res['n']}-item map: {fmt_s(res['get_results_s'])} "
            f"(in a new process, attach + get_results: {fmt_s(res['attach_get_results_s'])})"
        )
        lines.append("")
    mem = s["memory"]
    if mem:
        lines.append(
            f"7. Driver peak RSS growth over a {plan.memory_n}-item map, submitted and waited on"
        )
        for lib, v in mem.items():
            lines.append(
                f"   {lib:19} +{v['growth_mib']:.1f} MiB (peak {v['peak_mib']:.0f} MiB); submit {fmt_s(v['submit_s'])}, wait+collect {fmt_s(v['wait_s'])}"
            )
        lines.append("")
    small = s.get("small") or {}
    if small:
        some = next(iter(small.values()))
        lines.append(
            f"8. {plan.small_n} items of 10 ms CPU each, end to end; ideal = items x 10 ms / "
            f"{some['cpus']} CPUs = {fmt_s(some['ideal_s'])}"
        )
        for label, v in small.items():
            load = v.get("load_1min")
            lines.append(
                f"   {label:28} {fmt_s(v['e2e_s']):>9}  {fmt_x(v['e2e_s'] / v['ideal_s'])} the ideal"
                + ("" if load is None else f"  (machine load average {load:.1f})")
            )
        lines.append("")
    scale = s.get("scale")
    if scale:
        lines.append(
            "9. Maps split at MaxArraySize 1001 (a cluster of their own; held, their outcome "
            "files written by a helper that imitates the workers)"
        )
        lines.append(
            f"   {'':19} {'items':>8} {'parts':>6} {'submit':>9} {'(CPU)':>9} {'RSS +MiB':>9} "
            f"{'queries/' + format(plan.scale_window, 'g') + ' s':>12} {'wait':>9} {'get_results':>12}"
        )
        for lib, by_n in scale.items():
            for n, v in by_n.items():
                lines.append(
                    f"   {lib:19} {n:>8} {v['parts']:>6} {fmt_s(v['submit_s']):>9} "
                    f"{fmt_s(v['submit_cpu_s']):>9} {v['growth_mib']:>9.1f} {v['queries']:>12} "
                    f"{fmt_s(v.get('wait_s')):>9} {fmt_s(v.get('get_results_s')):>12}"
                )
        lines.append(
            "   (queries: the driver's squeue runs or Jobs.load() RPCs while every task is "
            "pending; RSS: peak growth over the whole run; wait and get_results() once, on "
            f"{SCALE_LIBS[0]}: they read only the job directory)"
        )
        lines.append("")
    lines.append("Targets")
    for t in s["targets"]:
        mark = {True: "met   ", False: "MISSED", None: "n/a   "}[t["met"]]
        lines.append(f"   {mark} {t['target']}: {t['value']}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench.py: matplotlib is not installed; no plot", file=sys.stderr)
        return False
    s = results["summary"]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    styles = {
        "floor": ("k", "--", "floor: one sbatch --array"),
        "slurmscope-sbatch": ("tab:blue", "-", "slurmscope (sbatch backend)"),
        "slurmscope-local": ("tab:cyan", "-", "slurmscope (embedded local backend)"),
        "slurmscope-sbatch-22.05": ("tab:blue", ":", "slurmscope (sbatch backend, Slurm 22.05)"),
        "slurmscope-pyslurm": ("tab:purple", "-", "slurmscope (pyslurm backend)"),
        "submitit": ("tab:red", "-", "submitit map_array"),
        "slurm-sdk": ("tab:green", "-", "slurm-sdk task.map"),
    }
    for lib, (color, style, label) in styles.items():
        points = sorted((int(n), row[lib]) for n, row in s["submit"].items() if lib in row)
        extra = s.get("memory", {}).get(lib)
        if extra:
            points.append((extra["n"], extra["submit_s"]))
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, color=color, linestyle=style, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("items in the map")
    ax.set_ylabel("submit latency, call to return (s)")
    meta = results["meta"]
    ax.set_title(
        f"Submit latency against map size\n{meta['date'][:10]}, {meta['machine']['cpus']} CPUs, {meta['slurm']}",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_small(results: dict[str, Any], path: Path) -> bool:
    """The many-small-tasks section as bars: each run's end-to-end time against the ideal
    (the work divided by the CPUs); ``False`` when there is nothing to draw."""
    small = results["summary"].get("small") or {}
    if not small:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = sorted(small.items(), key=lambda kv: kv[1]["e2e_s"], reverse=True)
    ideal = next(iter(small.values()))["ideal_s"]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.6))
    labels = [("raw sbatch --array" if k == "floor" else k) for k, _ in rows]
    colors = ["tab:blue" if k.startswith("slurmscope pack") else "tab:gray" for k, _ in rows]
    ax.barh(labels, [v["e2e_s"] for _, v in rows], color=colors)
    for y, (_, v) in enumerate(rows):
        ax.text(
            v["e2e_s"] * 1.05,
            y,
            f"{v['e2e_s']:.1f} s, {v['e2e_s'] / ideal:.2f}x",
            va="center",
            fontsize=8,
        )
    ax.axvline(ideal, color="k", linestyle="--", label=f"ideal: {ideal:.0f} s")
    ax.axvline(1.5 * ideal, color="tab:red", linestyle=":", label="target: 1.5x the ideal")
    ax.set_xscale("log")
    ax.set_xlim(right=max(v["e2e_s"] for _, v in rows) * 3)
    ax.set_xlabel("end to end (s), log scale")
    n = round(ideal * next(iter(small.values()))["cpus"] / 0.010)
    ax.set_title(f"{n} items of 10 ms CPU each, end to end", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI): about a minute")
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write JSON and PNG (full run: docs/)"
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated sections: submit,scope,worker,results,e2e,load,memory,pack,scale",
    )
    parser.add_argument(
        "--tmp", default=None, help="directory for job directories (default: $TMPDIR)"
    )
    parser.add_argument("--any-cluster", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = (
            Path(tempfile.gettempdir()) / "slurmscope-bench-quick" if args.quick else REPO / "docs"
        )
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
