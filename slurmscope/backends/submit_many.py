"""The parts of one split map, submitted in order or several at once, all or none.

A map larger than ``MaxArraySize`` becomes several arrays (parts). Each part is one
submission: one ``sbatch`` process (sbatch backend), one RPC on the backend's single RPC
thread (pyslurm), one call into the embedded scheduler (local). Where a submission spends
its time waiting outside this process (an ``sbatch`` process starting, then waiting for
the controller), up to :attr:`Backend.parallel_submissions` run at once; elsewhere they run
one after the other (pyslurm holds the GIL during an RPC and runs every RPC on one thread:
threads would only queue). Either way the job ids come back in the order of the specs,
and if any part fails, every part already submitted is cancelled and the first failure (in
part order) is raised: a map is never left half-submitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

from ..log import log
from ..spec import JobSpec
from .base import Backend


def submit_all(backend: Backend, specs: Sequence[JobSpec]) -> list[str]:
    """Submit every spec and return their job ids in order; all or none (see the module)."""
    workers = min(backend.parallel_submissions, len(specs))
    if workers <= 1:
        ids: list[str] = []
        try:
            for spec in specs:
                ids.append(backend.submit(spec))
        except BaseException:
            cancel_all(backend, ids)
            raise
        return ids
    pool = ThreadPoolExecutor(workers, thread_name_prefix="slurmscope-submit")
    futures: list[Future[str]] = []
    try:
        futures = [pool.submit(backend.submit, spec) for spec in specs]
        wait(futures, return_when=FIRST_EXCEPTION)
        if all(f.done() and f.exception() is None for f in futures):
            return [f.result() for f in futures]
        raise _first_error(futures)
    except BaseException:
        for future in futures:
            future.cancel()  # those not started yet never start
        wait(futures)
        submitted = [f.result() for f in futures if not f.cancelled() and f.exception() is None]
        cancel_all(backend, submitted)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _first_error(futures: list[Future[str]]) -> BaseException:
    """The first failure in part order, once every started submission has ended."""
    for future in futures:
        future.cancel()
    wait(futures)
    for future in futures:
        if not future.cancelled() and (error := future.exception()) is not None:
            return error
    raise AssertionError("no part failed")  # pragma: no cover - called after a failure


def cancel_all(backend: Backend, job_ids: Sequence[str]) -> None:
    """Cancel every job id given, best effort (each failure is logged)."""
    for job_id in job_ids:
        try:
            backend.cancel(job_id)
        except Exception as exc:  # noqa: BLE001 - best effort: cancel the others too
            log.warning("slurmscope.cancel.failed", job_id=job_id, error=str(exc))
