"""``slurmscope migrate``: rewrite slurm-sdk code for slurmscope, keeping formatting.

Uses libcst (``pip install 'slurmscope[migrate]'``), a concrete syntax tree that keeps every
comment, blank line and line break. What it converts and what it marks for a person is
listed in ``docs/from-slurm-sdk.md``; in short:

- ``X.map(items, ...).after(deps)`` -> ``X.after(deps).map(items, ...)`` (any receiver, chained
  ``.after()``s and calls after it) in files that import slurm-sdk or slurmscope; elsewhere,
  or when the map's first argument is a lambda (no task maps a lambda), it is marked;
- ``T(args).after(deps)`` -> ``T.after(deps)(args)`` where ``T`` is a task defined in the file;
- slurm-sdk's imports, ``@task`` resources, ``Cluster(...)``, ``cluster.submit(T)`` and
  ``T.with_options(...)`` where the mapping is one-to-one;
- everything else it recognises gets a ``# slurmscope migrate: ...`` comment above its
  statement. Running it again changes nothing.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._migrate_rules import Note


@dataclass
class Outcome:
    """One file: its new text and what changed, or why it was refused."""

    path: str
    old: str = ""
    new: str = ""
    notes: list[Note] = field(default_factory=list)
    error: str | None = None
    encoding: str = "utf-8"

    @property
    def changed(self) -> bool:
        return self.error is None and self.old != self.new

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.old.splitlines(keepends=True),
                self.new.splitlines(keepends=True),
                f"a/{self.path.lstrip('/')}",
                f"b/{self.path.lstrip('/')}",
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "changed": self.changed,
            "error": self.error,
            "converted": [vars(n) for n in self.notes if n.kind == "converted"],
            "marked": [vars(n) for n in self.notes if n.kind == "marked"],
        }


class MissingLibcst(RuntimeError):
    """``slurmscope migrate`` needs libcst, an optional dependency, and it is not installed."""


def migrate_source(source: str | bytes, path: str = "<string>") -> Outcome:
    """Rewrite one module's source; ``Outcome.error`` says why a file was refused."""
    try:  # the optional dependency: only ``migrate`` needs it
        import libcst

        from ._migrate_cst import rewrite
    except ModuleNotFoundError as exc:
        if exc.name != "libcst":
            raise
        raise MissingLibcst(
            "slurmscope migrate needs libcst: pip install 'slurmscope[migrate]'"
        ) from None
    raw = source if isinstance(source, bytes) else source.encode()
    try:
        module = libcst.parse_module(raw)
    except Exception as exc:  # libcst.ParserSyntaxError, or an undecodable file
        reason = " ".join(str(exc).split())
        return Outcome(path, error=f"cannot parse {path}: {reason} (nothing written)")
    new_module, notes = rewrite(module)
    enc = module.encoding
    return Outcome(path, raw.decode(enc), new_module.bytes.decode(enc), notes, encoding=enc)


def python_files(paths: list[str]) -> list[Path]:
    """``paths``, directories expanded to their ``*.py`` files (hidden ones and caches left out)."""
    out: list[Path] = []
    for given in paths:
        p = Path(given)
        if p.is_dir():
            for f in sorted(p.rglob("*.py")):
                parts = f.relative_to(p).parts
                if not any(x.startswith(".") or x == "__pycache__" for x in parts):
                    out.append(f)
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such file or directory: {given}")
    return out


def migrate_paths(paths: list[str]) -> list[Outcome]:
    """Every file rewritten in memory; nothing is written."""
    return [migrate_source(f.read_bytes(), str(f)) for f in python_files(paths)]


def write_atomically(path: str, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` by ``text`` (temp file in the same directory, then rename; mode kept)."""
    target = Path(path).resolve()  # through a symlink: the file it names is rewritten
    mode = target.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".migrate")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode(encoding))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
