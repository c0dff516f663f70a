"""``slurmscope migrate PATH...``: the command around :mod:`slurmscope.migrate` (which does
the rewriting): write the files, or show a diff, or check; say what it converted and what it
marked for a person."""

from __future__ import annotations

import argparse
import json
import sys

# slurmscope.migrate imports libcst only when a file is rewritten, so this import is cheap
# and works without libcst (MissingLibcst says what to install).
from ..migrate import MissingLibcst, migrate_paths, write_atomically
from .errors import CliError


def run(args: argparse.Namespace) -> int:
    try:
        outcomes = migrate_paths(args.paths)
    except (MissingLibcst, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    refused = [o.error for o in outcomes if o.error]
    if refused:  # nothing is written when any file cannot be parsed
        raise CliError("; ".join(e for e in refused if e))
    changed = [o for o in outcomes if o.changed]
    if not (args.diff or args.check):
        for o in changed:
            write_atomically(o.path, o.new, o.encoding)
    verb = "would rewrite" if args.diff or args.check else "rewrote"
    if args.json:
        print(json.dumps({"files": [o.to_json() for o in outcomes], "changed": len(changed)}))
    else:
        for o in changed:
            if args.diff:
                sys.stdout.write(o.diff())
            marks = [n for n in o.notes if n.kind == "marked"]
            print(f"{verb} {o.path}: {len(o.notes) - len(marks)} converted, {len(marks)} marked")
            for n in marks:
                print(f"  {o.path}:{n.line}: for a person: {n.what}")
        done = "would change" if args.diff or args.check else "changed"
        print(f"{len(outcomes)} file(s), {len(changed)} {done}", file=sys.stderr)
    return 1 if args.check and changed else 0
