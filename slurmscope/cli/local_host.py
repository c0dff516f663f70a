"""``python -m slurmscope.cli.local_host``: the detached process that runs a driver job on
the local backend (``slurmscope run`` with ``backend=local``).

It reads what to submit (one JSON line on stdin, from :mod:`.run`), submits the driver job
to an embedded scheduler of its own, answers one JSON line on stdout (``{"job_id": ...,
"directory": ...}`` or ``{"error": ...}``) and then stays, as the scheduler of that job, until
the job ends (the embedded scheduler waits for its jobs at exit). ``slurmscope cancel``
reaches the job through the scheduler's cancel requests, as for any local job of another
process.
"""

from __future__ import annotations

import json
import os
import sys

from .. import Cluster
from ..errors import SlurmscopeError
from .run import submit_driver


def main() -> int:
    request = json.loads(sys.stdin.readline())
    reply: dict[str, str]
    try:
        cluster = Cluster(
            "local",
            root=request["root"],
            set_as_default=False,
            run=None,  # the driver's submission is no submission of a run
            resume=False,
            **request["options"],
        )
        job = submit_driver(cluster, request)
        reply = {"job_id": job.job_id, "directory": str(job.directory)}
    except SlurmscopeError as exc:
        reply = {"error": str(exc)}
    except Exception as exc:
        reply = {"error": f"internal error: {type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
    # The command has its answer and goes; nothing more is written to its pipe.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    return 0 if "job_id" in reply else 1


if __name__ == "__main__":
    sys.exit(main())
