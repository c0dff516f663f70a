"""structlog events, without ever configuring logging on import.

Where the application configured structlog, slurmscope's events go through that
configuration. Where it did not, they go to the standard-library logger ``"slurmscope"``
(rendered as ``slurmscope.submit key=value ...``, with the structlog context bound by
``structlog.contextvars.bind_contextvars`` merged in, and every field on the record's
``slurmscope`` attribute), so they are silent below WARNING until the application turns
them on, for example with :func:`configure_logging`.

Event names are stable; ``docs/logging.md`` lists every one with its fields. The main
ones: ``slurmscope.backend.chosen``, ``slurmscope.submit`` (every dependency with its
provenance), ``slurmscope.dependency.merged``, ``slurmscope.dependency.satisfied``,
``slurmscope.task.requeued``, ``slurmscope.poll.failed``, ``slurmscope.slurm.retry``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_STDLIB = logging.getLogger("slurmscope")


def _to_stdlib(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[str], dict[str, Any]]:
    """The last processor without structlog configured: one readable line (the event's name,
    then ``key=value`` for its fields and the context bound with
    ``structlog.contextvars.bind_contextvars``), and every field as plain data on the log
    record's ``slurmscope`` attribute, for a handler or formatter that wants them."""
    fields = dict(event_dict)
    event = str(fields.pop("event", ""))
    text = " ".join([event, *(f"{k}={v!r}" for k, v in fields.items())])
    return (text,), {"extra": {"slurmscope": {"event": event, **fields}}}


_fallback = structlog.wrap_logger(
    _STDLIB,
    processors=[
        structlog.stdlib.filter_by_level,
        structlog.contextvars.merge_contextvars,
        _to_stdlib,
    ],
    wrapper_class=structlog.stdlib.BoundLogger,
)


class _Logger:
    """Resolves the target at each call, so configuring structlog later takes effect."""

    def __getattr__(self, name: str) -> Any:
        target = structlog.get_logger("slurmscope") if structlog.is_configured() else _fallback
        return getattr(target, name)


log = _Logger()


def configure_logging(*, json: bool = False, level: int | str = "INFO") -> None:
    """A good default for applications: readable console lines, or JSON lines.

    Configures structlog (process-wide) and the ``"slurmscope"`` standard-library logger.
    Call it from your application, never from a library.
    """
    numeric = logging.getLevelName(level) if isinstance(level, str) else level
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    _STDLIB.setLevel(numeric)
