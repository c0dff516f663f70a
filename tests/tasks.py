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
