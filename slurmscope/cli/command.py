"""``main()``: parse the command line, run its verb, turn every error into one line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from ..errors import SlurmscopeError
from . import cancel, clean, explain, graph, handles, logs, migrate, parser, run, runs, status
from .errors import CliError, fail

#: Each verb's ``run(args) -> exit status``.
VERBS: dict[str, Callable[[argparse.Namespace], int]] = {
    "status": status.run,
    "explain": explain.run,
    "graph": graph.run,
    "logs": logs.run,
    "cancel": cancel.run,
    "clean": clean.run,
    "migrate": migrate.run,
    "run": run.run,
    "runs": runs.run,
}


def main(argv: list[str] | None = None) -> int:
    """Run ``slurmscope`` with ``argv`` (default: the process's); return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv
    # What a watched job's poll logs (a pending reason that never clears, a retry) is for a
    # driver that waits; the commands say what they find themselves. Errors still show.
    logging.getLogger("slurmscope").setLevel(logging.ERROR)
    try:
        args = parser.build().parse_args(argv)
        handles.refused.clear()  # main() may run more than once in a process
        handles.cluster_options.clear()
        if args.allow_writable_root:
            handles.cluster_options["allow_writable_root"] = True
        return int(VERBS[args.command](args))
    except CliError as exc:
        return fail(str(exc), exc.code, as_json)
    except SlurmscopeError as exc:
        return fail(str(exc), 1, as_json)
    except Exception as exc:
        if os.environ.get("SLURMSCOPE_DEBUG"):
            raise
        return fail(
            f"internal error: {type(exc).__name__}: {exc} (SLURMSCOPE_DEBUG=1 shows the "
            "traceback; please report it)",
            1,
            as_json,
        )
