"""The one poller per cluster: it watches every unfinished submission, reading result files
first and asking the scheduler only when those cannot tell."""

from __future__ import annotations

import threading
import time

from .backends.base import Backend
from .log import log
from .submission import Submission

#: However fast results arrive, the scheduler is asked at least this often (seconds): a job
#: cancelled or killed elsewhere writes no result, and only the scheduler can tell.
LONGEST_WITHOUT_QUERY = 60.0


class Poller:
    """Watches all unfinished jobs of one cluster: their result files first, the scheduler
    when those cannot tell.

    Every look (every ``poll_interval``, backing off while nothing changes) lists the result
    directories: a task whose outcome file is there has ended, and that costs the scheduler
    nothing. The scheduler is asked about all unfinished jobs in one call only when a query
    is due (``query_interval``, backing off while its answers do not change) *and* no result
    arrived for that long: while results keep coming, tasks are evidently running, and only
    what the files cannot show (a task cancelled, killed, requeued, or waiting on a
    dependency) needs the scheduler. So a map's queries do not grow with its tasks.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.cond = threading.Condition()
        self._watched: list[Submission] = []
        self._thread: threading.Thread | None = None
        self._interval = backend.poll_interval[0]
        self._query_bounds = backend.query_interval or backend.poll_interval
        self._query_interval = self._query_bounds[0]
        #: When the scheduler was last asked (0: never); :meth:`poll_now` skips a query
        #: made moments ago.
        self._asked_at = 0.0
        #: When the wait for the next query began: the last query, or a new submission
        #: that put it off (nothing to ask about a job submitted a moment ago).
        self._query_clock = 0.0
        #: The last query, or this poller's creation: a query is never further away than
        #: ``LONGEST_WITHOUT_QUERY`` from it.
        self._asked_or_created_at = time.monotonic()
        self._last_progress = 0.0
        self._next_look = 0.0  # when the polling thread wakes up next

    def watch(self, submission: Submission) -> None:
        if submission.remaining == 0:
            return
        with self.cond:
            self._watched.append(submission)
            self._interval = self.backend.poll_interval[0]
            self._query_interval = self._query_bounds[0]
            now = time.monotonic()
            if now - self._asked_or_created_at < self._query_bounds[1]:
                self._query_clock = now  # just submitted: nothing to ask yet (never for long)
            self._ensure_thread()
            if self._next_look - now > self._interval:  # else it looks soon enough anyway
                self.cond.notify_all()

    def _ensure_thread(self) -> None:
        """Start the polling thread if it is not running (call with ``cond`` held)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name="slurmscope-poller", daemon=True
            )
            self._thread.start()

    def unfinished(self) -> list[Submission]:
        """Every watched submission not yet ended, in the order they were watched."""
        with self.cond:
            return [s for s in self._watched if s.remaining > 0]

    def poll_now(self) -> None:
        """One look at everything watched, scheduler included, unless one happened moments
        ago (for ``job.state`` and friends: the caller wants the scheduler's word now)."""
        if time.monotonic() - self._asked_at >= self.backend.poll_interval[0]:
            self.poll()

    def _query_due(self, now: float) -> float:
        """Seconds until a scheduler query is due (0 or less: due now)."""
        quiet_since = max(self._query_clock, self._last_progress)
        due = min(
            quiet_since + self._query_interval, self._asked_or_created_at + LONGEST_WITHOUT_QUERY
        )
        return due - now

    def poll(self, query: bool = True) -> bool:
        """Look at the result files of every unfinished watched job, then, if ``query``,
        ask the backend about the jobs still unfinished, in one call.

        Files and scheduler are read without holding the lock, so that submitting threads
        and waiters are never held up by a slow filesystem or a restarting controller.
        """
        with self.cond:
            self._watched = [s for s in self._watched if s.remaining > 0]
            watched = list(self._watched)
        if not watched:
            return False
        found = [s.unfinished_outcomes() for s in watched]
        with self.cond:
            progress = False
            for submission, outcomes in zip(watched, found, strict=True):
                progress |= submission.record_outcomes(outcomes)
            if progress:
                self._last_progress = time.monotonic()
                self._watched = [s for s in self._watched if s.remaining > 0]
                self.cond.notify_all()
        unfinished = [s for s in watched if s.remaining > 0]
        if not query or not unfinished:
            return progress
        ids = [part.job_id for s in unfinished for part in s.parts]
        self._query_clock = self._asked_or_created_at = self._asked_at = time.monotonic()
        try:
            answer = self.backend.states(ids)
        except Exception as exc:  # the scheduler may be restarting: keep waiting
            log.warning("slurmscope.poll.failed", error=str(exc), retry_in=self._query_interval)
            return progress
        with self.cond:
            changed = False
            for submission in unfinished:
                changed |= submission.update(answer, self.backend.lost_after)
            for submission in unfinished:
                # What the scheduler said, kept: it forgets ended jobs (MinJobAge), and a
                # later process must not read a job that ended without a result as pending,
                # then lost. Written before any waiter wakes up to it: a driver that exits
                # right after wait() has recorded what it saw. (Rare and small: only tasks
                # the scheduler, not a result file, told ended.)
                submission.record_ended()
            low, high = self._query_bounds
            self._query_interval = low if changed else min(high, self._query_interval * 1.5)
            self._watched = [s for s in self._watched if s.remaining > 0]
            self.cond.notify_all()
        return progress or changed

    def _loop(self) -> None:
        low, high = self.backend.poll_interval
        while True:
            changed = self.poll(query=self._query_due(time.monotonic()) <= 0)
            with self.cond:
                if not self._watched:
                    self._thread = None
                    return
                self._interval = low if changed else min(high, self._interval * 1.5)
                now = time.monotonic()
                timeout = min(self._interval, max(self._query_due(now), low))
                self._next_look = now + timeout
                self.cond.wait(timeout=timeout)

    def wait(self, submission: Submission, indices: range | None, timeout: float | None) -> bool:
        """Wait until the given tasks (all when ``None``) are terminal; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def done() -> bool:
            # Ended, or pending for a reason that never clears: waiting cannot change it.
            if indices is None:
                return submission.remaining == len(submission.stuck)
            states, stuck = submission.states, submission.stuck
            return all(i in stuck or ((s := states[i]) is not None and s.terminal) for i in indices)

        with self.cond:
            while not done():
                if submission.remaining > 0 and submission not in self._watched:
                    self._watched.append(submission)
                self._ensure_thread()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.cond.wait(timeout=remaining if remaining is not None else 1.0)
        return True
