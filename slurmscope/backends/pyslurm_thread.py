"""The one thread a pyslurm backend makes every pyslurm call on.

pyslurm holds the GIL during every RPC and libslurm keeps process-wide state (its
configuration, its connection settings, ``errno``): so every call, the ``import pyslurm``
included, runs on one thread; other threads put a callable on its queue and wait for its
future.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")


class RPCThread:
    """The one thread that makes every pyslurm call: a queue of callables and futures.

    Started on first use; :meth:`close` stops it, and a later call starts a new one.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._queue: SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = SimpleQueue()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def run(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn(*args)`` on the thread and return its result (or raise its error)."""
        if threading.current_thread() is self._thread:
            return fn(*args)
        future: Future[T] = Future()
        with self._lock:
            if self._thread is None:
                self._queue = SimpleQueue()
                self._thread = threading.Thread(
                    target=self._loop, args=(self._queue,), name=self.name, daemon=True
                )
                self._thread.start()
            self._queue.put((lambda: fn(*args), future))
        return future.result(timeout=timeout)

    @staticmethod
    def _loop(queue: SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None]) -> None:
        while (item := queue.get()) is not None:
            call, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

    def close(self, wait: bool = True) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None and wait and thread is not threading.current_thread():
            thread.join(timeout=60)
