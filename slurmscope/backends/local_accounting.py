"""What the local scheduler keeps on disk under its state directory, for every process
sharing the job root: the job id counter (locked with ``flock``, so ids are unique across
processes), each job's record (its owner, and its final task states once it ended, like
Slurm's accounting), and cancel requests left for another process's jobs."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from ..payload import atomic_write
from ..states import TaskState
from .local_jobs import LocalJob
from .local_processes import alive


class Accounting:
    """The state directory of the local scheduler of one job root."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.state_dir.stat().st_uid == os.geteuid():
            os.chmod(self.state_dir, 0o700)  # job states and ids: others must not write them
        self._cancel_dir = self.state_dir / "cancel-requests"

    def next_id(self) -> str:
        """A new job id, unique among all processes sharing the state directory."""
        counter = self.state_dir / "next-job-id"
        with open(os.open(counter, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            text = fh.read().strip()
            value = int(text) if text else 1
            fh.seek(0)
            fh.truncate()
            fh.write(str(value + 1))
            fh.flush()
        return str(value)

    def submitted(self, job_id: str, size: int) -> None:
        """Record a job this process runs, not ended yet."""
        self._write(job_id, {"owner": os.getpid(), "size": size, "tasks": None})

    def ended(self, job: LocalJob) -> None:
        """Record a job's final task states."""
        tasks = {str(i): [t.state, t.reason] for i, t in job.tasks.items()}
        self._write(job.id, {"owner": os.getpid(), "size": len(job.tasks), "tasks": tasks})

    def _write(self, job_id: str, data: dict[str, object]) -> None:
        atomic_write(self.state_dir / f"job-{job_id}.json", json.dumps(data).encode())

    def states(self, job_id: str) -> dict[int, TaskState] | None:
        """What the accounting says of a job another process submitted: its final states
        once it ended; UNKNOWN (not terminal) while its process still runs it."""
        try:
            data = json.loads((self.state_dir / f"job-{job_id}.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        if data.get("tasks") is not None:
            return {int(i): TaskState(s, r) for i, (s, r) in data["tasks"].items()}
        owner = int(data.get("owner", 0))
        if owner and owner != os.getpid() and alive(owner):
            unknown = TaskState("UNKNOWN", f"run by the local scheduler of process {owner}")
            return dict.fromkeys(range(int(data.get("size", 1))), unknown)
        return None  # its process died before the job ended

    def request_cancel(self, job_id: str, index: int | None) -> None:
        """Leave a cancel request for another process's job (or one task of it)."""
        name = job_id if index is None else f"{job_id}_{index}"
        self._cancel_dir.mkdir(mode=0o700, exist_ok=True)
        (self._cancel_dir / name).touch()

    def cancel_requests(self) -> list[str]:
        """The cancel requests left (``12``, ``12_3``)."""
        try:
            return os.listdir(self._cancel_dir)
        except FileNotFoundError:
            return []

    def take_cancel_request(self, name: str) -> None:
        """Remove a cancel request once it is acted on."""
        (self._cancel_dir / name).unlink(missing_ok=True)
