"""Sizes of payloads: parsing a limit (``"64M"``), showing a size to people, and finding
what makes a pickled function large."""

from __future__ import annotations

import contextlib
import functools
import sys
import types
from typing import Any

import cloudpickle

from .errors import InvalidInputError

_SIZE = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def human_size(size: int, *, exact: bool = True) -> str:
    """``1126`` -> ``"1.10 KiB (1,126 bytes)"``: readable, and exact where it matters."""
    if size < 1024:
        return f"{size:,} bytes"
    value, unit = float(size), "B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):  # noqa: B007 - the last one is kept
        value /= 1024
        if value < 1024:
            break
    return f"{value:.2f} {unit}" + (f" ({size:,} bytes)" if exact else "")


def largest_captures(fn: Any) -> list[tuple[str, int]]:
    """What a function carries when pickled by value, largest first: the globals its code
    names, its closure cells and its default arguments, each with its pickled size."""
    found: dict[str, Any] = {}
    if isinstance(fn, functools.partial):
        found.update({f"partial argument {i}": a for i, a in enumerate(fn.args)})
        found.update({f"partial argument {k!r}": v for k, v in fn.keywords.items()})
        fn = fn.func
    elif not isinstance(fn, (types.FunctionType, types.BuiltinFunctionType, type)):
        found.update({f"attribute {k!r}": v for k, v in getattr(fn, "__dict__", {}).items()})
    code = getattr(fn, "__code__", None)
    globals_ = getattr(fn, "__globals__", {})
    if code is not None:
        names: set[str] = set()
        stack = [code]
        while stack:  # nested functions and comprehensions name globals too
            c = stack.pop()
            names.update(c.co_names)
            stack.extend(k for k in c.co_consts if hasattr(k, "co_names"))
        for name in sorted(names):
            if name in globals_:
                found[f"global {name!r}"] = globals_[name]
        for name, cell in zip(
            code.co_freevars, getattr(fn, "__closure__", None) or (), strict=False
        ):
            with contextlib.suppress(ValueError):  # an empty cell
                found[f"closure variable {name!r}"] = cell.cell_contents
    for i, default in enumerate(getattr(fn, "__defaults__", None) or ()):
        found[f"default argument {i}"] = default
    for name, default in (getattr(fn, "__kwdefaults__", None) or {}).items():
        found[f"default argument {name!r}"] = default
    sizes = []
    for label, value in found.items():
        if isinstance(value, type(sys)):
            continue  # modules are pickled by reference
        try:
            sizes.append((label, len(cloudpickle.dumps(value, protocol=5))))
        except Exception:  # noqa: BLE001, S112 - only a hint; the whole function pickled
            continue
    return sorted(sizes, key=lambda pair: -pair[1])


def parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (text[:-1], text[-1]) if text and text[-1] in _SIZE else (text, "")
    try:
        size = float(number) * _SIZE[unit]
    except ValueError:
        size = 0
    if size <= 0:
        raise InvalidInputError(
            f"invalid size {value!r}: give bytes as an int or a string such as '64M' or '1G'."
        )
    return int(size)
