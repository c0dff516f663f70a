"""A submission's payload as bytes: the function, each item's arguments (job handles inside
them become result references, and data dependencies), and the size checks on both."""

from __future__ import annotations

import contextlib
import dis
import io
import marshal
import pickle
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import cloudpickle

from . import rebuild
from .errors import InvalidInputError
from .handle import Handle
from .job_directory import PackedItems
from .payload import ResultRef
from .sizes import human_size, largest_captures

_PLAIN = (int, float, str, bytes, bool, type(None), complex)


def split_call(call: Any, array: bool) -> tuple[Any, Any]:
    """``(args, kwargs)`` of one call: a single call is that pair already; an item is one
    argument, a tuple of them, or a dict of keyword arguments."""
    if not array:
        args, kwargs = call
        return args, kwargs
    if type(call) is tuple:
        return call, {}
    if type(call) is dict:
        if not all(isinstance(k, str) for k in call):
            return (call,), {}
        return (), call
    return (call,), {}


def extract(value: Any, found: list[tuple[Any, str]], path: str) -> Any:
    """Replace job handles in nested lists, tuples and dicts by result references."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, Handle):
        found.append((value, path))
        return result_ref(value)
    if kind is list:
        return [extract(v, found, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind is tuple:
        return tuple(extract(v, found, f"{path}[{i}]") for i, v in enumerate(value))
    if kind is dict:
        return {k: extract(v, found, f"{path}[{k!r}]") for k, v in value.items()}
    return value


def result_ref(handle: Handle) -> ResultRef:
    """What the worker loads in place of ``handle`` inside an item: the result of its one
    task, or the list of every result of its array."""
    if handle.whole_array:
        return ResultRef(str(handle.directory), 0, size=len(handle.indices))
    return ResultRef(str(handle.directory), handle.indices.start)


def by_value(obj: Any) -> bool:
    """Whether cloudpickle ships ``obj`` (a function or class) by value, not by reference."""
    try:
        return not bool(cloudpickle.cloudpickle._should_pickle_by_reference(obj))
    except Exception:  # noqa: BLE001 - a private helper of cloudpickle; guess as it would
        return getattr(obj, "__module__", None) == "__main__"


#: What the rebuilt function's globals keep of its module's (as cloudpickle does): what
#: relative imports inside the function need, and ``__name__`` (``"__main__"``).
_MODULE_KEYS = ("__package__", "__name__", "__path__", "__file__")
_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL"})


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """``code`` and every code object nested in it."""
    stack = [code]
    while stack:
        c = stack.pop()
        yield c
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))


def _global_names(code: types.CodeType) -> list[str]:
    """The names ``code`` (and the code nested in it) reads, writes or deletes as globals,
    in a stable order."""
    names: dict[str, None] = {}
    for c in _codes(code):
        for instruction in dis.get_instructions(c):
            if instruction.opname in _GLOBAL_OPS:
                names[instruction.argval] = None
    return list(names)


def _submodules(code: types.CodeType, values: list[Any]) -> list[types.ModuleType]:
    """The imported submodules that ``code`` reaches as attributes of a module among
    ``values`` (``os.path`` through ``os``): the job imports them when the function loads."""
    names: set[str] = set()
    for c in _codes(code):
        names.update(c.co_names)
    found: list[types.ModuleType] = []
    for value in values:
        if not isinstance(value, types.ModuleType):
            continue
        prefix = value.__name__ + "."
        for name, module in list(sys.modules.items()):
            if (
                name.startswith(prefix)
                and isinstance(module, types.ModuleType)
                and set(name[len(prefix) :].split(".")) <= names
            ):
                found.append(module)
    return found


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle's pickler, but functions shipped by value, their code and the modules
    they refer to are written with :mod:`slurmscope.rebuild`'s reconstructors, which the
    job loads without importing cloudpickle. Everything else (classes defined in the
    script, enums, dynamic modules, ...) keeps cloudpickle's reductions."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=5)
        self._module_globals: dict[int, dict[str, Any]] = {}

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is types.FunctionType and by_value(obj):
            return self._reduce_function(obj)
        if kind is types.CodeType:
            return rebuild.code, (marshal.dumps(obj),)
        if kind is types.ModuleType and not by_value(obj):
            return rebuild.module, (obj.__name__,)
        return super().reducer_override(obj)

    def _reduce_function(self, fn: types.FunctionType) -> tuple[Any, ...]:
        module_globals = fn.__globals__
        shared = self._module_globals.get(id(module_globals))
        if shared is None:  # one dictionary per module: its functions share it in the job
            shared = {k: module_globals[k] for k in _MODULE_KEYS if k in module_globals}
            self._module_globals[id(module_globals)] = shared
        names = _global_names(fn.__code__)
        used = {k: module_globals[k] for k in names if k in module_globals}
        closure: dict[int, Any] = {}
        for position, cell in enumerate(fn.__closure__ or ()):
            with contextlib.suppress(ValueError):  # an empty cell stays empty
                closure[position] = cell.cell_contents
        state = {
            "globals": used,
            "closure": closure,
            "defaults": fn.__defaults__,
            "kwdefaults": fn.__kwdefaults__,
            "annotations": fn.__annotations__,
            "name": fn.__name__,
            "qualname": fn.__qualname__,
            "module": fn.__module__,
            "doc": fn.__doc__,
            "dict": dict(fn.__dict__),
            "submodules": _submodules(fn.__code__, [*used.values(), *closure.values()]),
        }
        cells = len(fn.__closure__ or ())
        return rebuild.function, (fn.__code__, shared, cells), state, None, None, rebuild.set_state


def dumps(obj: Any) -> bytes:
    """``obj`` pickled (protocol 5) as cloudpickle would, but loadable in the job without
    cloudpickle where it holds no more than functions (see :class:`_Pickler`)."""
    with io.BytesIO() as buffer:
        _Pickler(buffer).dump(obj)
        return buffer.getvalue()


def pickle_function(fn: Callable[..., Any], name: str) -> bytes:
    try:
        blob: bytes = dumps(fn)
        return blob
    except Exception as exc:
        raise InvalidInputError(
            f"the function of task {name} cannot be pickled ({type(exc).__name__}: {exc}). "
            "It must not capture locks, open files, sockets or similar; pass such things' "
            "names or paths and open them inside the task. Nothing was submitted."
        ) from exc


#: Item types that hold no job handle and that the standard pickler writes exactly as
#: cloudpickle does (``bool`` and the others by their exact type, not subclasses).
_SCALARS = frozenset(_PLAIN)


def pickle_scalars(calls: Sequence[Any]) -> PackedItems | None:
    """The items of a map whose every item is a plain scalar (``range(n)``, a list of paths
    or numbers), pickled with the C pickler straight into the layout of the payload files;
    ``None`` when any item is not.

    The bytes are those of :func:`pickle_item` (``((item,), {})``), without cloudpickle's
    per-call set-up or the search for job handles: 10,000 items take milliseconds, and a
    million take the memory of their bytes (they are pickled a chunk at a time).
    """
    if not set(map(type, calls)) <= _SCALARS:
        return None
    dumps, no_kwargs = pickle.dumps, dict[str, Any]()  # one empty dict for all: the same bytes
    packed = PackedItems()
    for start in range(0, len(calls), _CHUNK):
        packed.extend([dumps(((call,), no_kwargs), 5) for call in calls[start : start + _CHUNK]])
    return packed


#: Items pickled at a time by :func:`pickle_scalars`.
_CHUNK = 65536


def pickle_item(args: Any, kwargs: Any, index: int | None) -> bytes:
    try:
        blob: bytes = dumps((args, kwargs))
        return blob
    except Exception as exc:
        what = "the arguments" if index is None else f"item {index}"
        raise InvalidInputError(
            f"{what} cannot be pickled ({type(exc).__name__}: {exc}). Pass plain data, or "
            "paths to what the task should open itself. Nothing was submitted."
        ) from exc


def refuse_too_big(name: str, index: int, size: int, array: bool, limit: int) -> NoReturn:
    what = (
        f"item {index} of task {name} pickles"
        if array
        else (f"the arguments of task {name} pickle")
    )
    raise InvalidInputError(
        f"{what} to {human_size(size)}, over the limit of "
        f"{human_size(limit)}. Write large data to a file on the shared "
        "filesystem and pass its path, or raise the limit with "
        "Cluster(max_item_size='1G') or SLURMSCOPE_MAX_ITEM_SIZE. Nothing was submitted."
    )


def check_function_size(fn: Callable[..., Any], name: str, blob: bytes, limit: int) -> None:
    """The function is a payload too: what it captures (globals of its module when it is
    pickled by value, closure cells, default arguments) is written with it."""
    if len(blob) <= limit:
        return
    captured = largest_captures(fn)
    listed = ", ".join(f"{name} ({human_size(n, exact=False)})" for name, n in captured[:3])
    raise InvalidInputError(
        f"the function of task {name} pickles to {human_size(len(blob))}, over the "
        f"limit of {human_size(limit)}: it carries the data it captures"
        + (f", the largest being {listed}" if listed else "")
        + ". Load large data inside the task (from a file on the shared filesystem, its "
        "path passed as an argument or a module-level constant), or raise the limit with "
        "Cluster(max_item_size='1G') or SLURMSCOPE_MAX_ITEM_SIZE. Nothing was submitted."
    )
