"""``slurmscope status|explain|graph|logs|cancel|clean``: jobs from any process, on any backend;
``slurmscope migrate``: rewrite slurm-sdk code (the logic is in :mod:`slurmscope.migrate`).

Everything is read from the job directories (manifest, results, recorded final states,
logs) and from the scheduler the job was submitted to, through the public API
(:meth:`slurmscope.Cluster.attach` and the handles it gives). ``--json`` prints
machine-readable output. Every error is one line on stderr and a non-zero exit status (2 for
a bad command line); under ``--json`` it is also ``{"error": ..., "exit_code": ...}`` on
stdout.

The modules: :mod:`~slurmscope.cli.command` (``main``: parse, run the verb, report errors),
:mod:`~slurmscope.cli.parser` (the command line), :mod:`~slurmscope.cli.errors` (how it
fails), :mod:`~slurmscope.cli.handles` (from a job id to its directory, handle and task
states), then one module per verb: ``status``, ``explain``, ``graph``, ``logs``, ``cancel``,
``clean``, ``migrate``.
"""

from __future__ import annotations

from .command import main

__all__ = ["main"]
