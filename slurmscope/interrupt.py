"""What a Ctrl-C during a wait leaves behind, said on stderr; cancelled if asked for.

A ``KeyboardInterrupt`` raised while ``wait()``, ``get_result()`` or ``get_results()``
blocks ends the wait as usual (it is re-raised), but first this module writes to stderr --
directly, not as a log event, since an application that never configured logging would
see nothing -- which jobs are still queued or running, how to reattach to them and how to
cancel them. With ``Cluster(cancel_on_interrupt=True)`` it cancels them instead, and says
so. The notice is written once per Ctrl-C, by the thread that was waiting.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .runtime import Runtime
from .submission import Submission

#: At most this many jobs are listed one per line; the rest are counted.
_SHOWN = 10


@dataclass(frozen=True)
class Unfinished:
    """One submission still queued or running, in plain values."""

    name: str
    job_ids: tuple[str, ...]
    is_array: bool
    pending: int
    running: int

    def describe(self) -> str:
        what = "array" if self.is_array else "job"
        ids = "+".join(self.job_ids)
        counts = []
        if self.running:
            counts.append(f"{self.running} running")
        if self.pending:
            counts.append(f"{self.pending} queued")
        return f"{what} {ids} ({self.name}): {', '.join(counts) or 'not ended'}"


def notice(
    *,
    waited: str,
    backend: str,
    cluster: str,
    root: str,
    jobs: Sequence[Unfinished],
    cancelled: bool,
) -> str:
    """The text written on stderr after a Ctrl-C (before any cancel)."""
    ids = [i for job in jobs for i in job.job_ids]
    lines = [f"slurmscope: interrupted while waiting for {waited}."]
    if not jobs:
        lines.append("  Nothing this process submitted is still queued or running.")
        return "\n".join(lines) + "\n"
    lines.append(
        f"  Still queued or running on {backend} cluster {cluster!r} "
        f"({len(jobs)} submission{'s' if len(jobs) != 1 else ''}):"
    )
    lines.extend(f"    {job.describe()}" for job in jobs[:_SHOWN])
    if len(jobs) > _SHOWN:
        lines.append(f"    ... and {len(jobs) - _SHOWN} more")
    if cancelled:
        lines.append("  cancel_on_interrupt=True: cancelling them now.")
        return "\n".join(lines) + "\n"
    root_arg = f"--root {shlex.quote(root)} "
    if backend == "local":
        lines.append(
            "  The local backend runs them inside this process: when the program exits it "
            "waits for them (press Ctrl-C again then to cancel them); if the process is "
            "killed, those not started never run."
        )
    else:
        lines.append("  They go on without this process. To collect their results later:")
        lines.append(f"    cluster = slurmscope.Cluster({backend!r}, root={root!r})")
        lines.append(f"    handle = cluster.attach({ids[0]!r})")
        lines.append("  To cancel them:")
        lines.extend(f"    slurmscope {root_arg}cancel {i}" for i in ids[:_SHOWN])
        if len(ids) > _SHOWN:
            lines.append(f"    ... and {len(ids) - _SHOWN} more (slurmscope {root_arg}status)")
    lines.append(
        "  To cancel everything still queued or running on Ctrl-C instead, create the "
        "cluster with Cluster(..., cancel_on_interrupt=True)."
    )
    return "\n".join(lines) + "\n"


def cancel_all(jobs: Sequence[Unfinished], cancel: Callable[[str], None]) -> str:
    """Cancel every part of every job; the text to write on stderr afterwards."""
    done, failed = [], []
    for job in jobs:
        for job_id in job.job_ids:
            try:
                cancel(job_id)
            except Exception as exc:  # say it, and go on with the others
                failed.append(f"{job_id} ({exc})")
            else:
                done.append(job_id)
    text = ""
    if done:
        text += f"slurmscope: cancelled {', '.join(done)}.\n"
    if failed:
        text += (
            f"slurmscope: could not cancel {'; '.join(failed)}: cancel them with "
            "`slurmscope cancel JOBID` (or scancel).\n"
        )
    return text


def write(text: str) -> None:
    """Write to stderr now, whatever happens to the interpreter next."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed: nothing more to do
        pass


def unfinished(sub: Submission) -> Unfinished:
    """The plain view of one submission not yet ended."""
    pending = running = 0
    for state in sub.states:
        if state is None or state.state in ("PENDING", "REQUEUED", "SUBMITTED"):
            pending += 1
        elif not state.terminal:
            running += 1
    return Unfinished(sub.name, tuple(p.job_id for p in sub.parts), sub.is_array, pending, running)


def on_interrupt(sub: Submission, runtime: Runtime, waited: str) -> None:
    """A Ctrl-C while ``sub`` was waited on: say on stderr what is still queued or running
    (every submission its cluster watches), how to reattach and how to cancel; with
    ``cancel_on_interrupt`` cancel it all. The caller re-raises the interrupt."""
    subs = runtime.poller.unfinished()
    if sub.remaining > 0 and sub not in subs:
        subs.insert(0, sub)
    jobs = [unfinished(s) for s in subs]
    cancel = runtime.cancel_on_interrupt
    write(
        notice(
            waited=f"{waited} ({sub.name})",
            backend=runtime.backend.kind,
            cluster=runtime.name,
            root=str(runtime.root),
            jobs=jobs,
            cancelled=cancel,
        )
    )
    if not cancel or not jobs:
        return
    with runtime.poller.cond:
        for s in subs:
            s.mark_cancelled(range(s.size))
    try:
        write(cancel_all(jobs, runtime.backend.cancel))
    except KeyboardInterrupt:
        write(
            "slurmscope: cancelling was interrupted; some jobs may still be queued or running "
            f"(slurmscope --root {runtime.root} status).\n"
        )
