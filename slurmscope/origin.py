"""What a job needs to see what its driver saw: the driver's ``sys.path``, and the source
files of the functions cloudpickle ships by value.

A driver started as ``cd / && python /proj/pipeline.py`` imports its sibling modules from
``/proj`` (the script's directory is ``sys.path[0]``); the job runs
``python -m slurmscope.worker`` in the driver's working directory, whose ``sys.path`` has
that directory but not ``/proj``. So the driver records its ``sys.path`` (relative entries
made absolute) in the job directory (``driver.pkl``), and the worker puts those entries
first, in the driver's order, before it unpickles anything.

cloudpickle replaces the file name of every function it pickles by value (one defined in
``__main__``, a nested one, a lambda) by ``<dynamic-code>``, so a remote traceback would not
say which file failed. The driver records the file of each such code object, by qualified
name and first line; the worker puts the names back into the loaded functions, so
tracebacks name the script (and show its lines where the job can read it).

The worker imports this module: standard library only, and only ``os`` and ``sys``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and types are not imported at run time: every task pays imports
    from collections.abc import Callable, Iterator
    from types import CodeType, FunctionType, ModuleType
    from typing import Any, TypedDict

    class DriverInfo(TypedDict):
        """What the driver records for the worker (``driver.pkl``)."""

        sys_path: list[str]  # the driver's sys.path, relative entries made absolute
        cwd: str
        files: dict[tuple[str, int], str]  # (qualified name, first line) -> source file
        modules: dict[str, str]  # module name -> file, for modules beside the driver

    _FUNCTION = FunctionType
    _MODULE = ModuleType
    _CODE = CodeType
else:  # the same classes, without importing types
    _FUNCTION = type(lambda: None)
    _MODULE = type(sys)
    _CODE = type((lambda: None).__code__)

#: The file name cloudpickle gives the code of every function it ships by value.
BY_VALUE_FILENAME = "<dynamic-code>"


class _Probe:
    def method(self) -> None: ...


#: What the walk looks into: never arbitrary objects, whose attributes may be computed.
_METHODS = (type(_Probe().method), staticmethod, classmethod)
_LIMIT = 10_000  # functions and classes followed at most, whatever the program


def _code_key(code: CodeType) -> tuple[str, int]:
    """How the driver and the worker name a code object: (qualified name, first line)."""
    qualname: str = getattr(code, "co_qualname", code.co_name)  # co_qualname: Python 3.11+
    return (qualname, code.co_firstlineno)


def _nested_codes(code: CodeType) -> Iterator[CodeType]:
    """``code`` and every code object nested in it (inner functions, comprehensions)."""
    stack = [code]
    while stack:
        c = stack.pop()
        yield c
        stack.extend(k for k in c.co_consts if isinstance(k, _CODE))


def _reachable(root: object, follow: Callable[[object], bool]) -> list[FunctionType]:
    """The functions reachable from ``root`` through the globals their code names, their
    closures and defaults, and the classes among those, following only what ``follow``
    accepts (what is shipped by value: the rest is imported in the job)."""
    seen: set[int] = set()
    found: list[FunctionType] = []
    stack: list[Any] = [root]
    while stack and len(seen) < _LIMIT:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        kind = type(obj)
        if kind in _METHODS:  # bound methods, static and class methods
            stack.append(obj.__func__)
            continue
        if kind is property:
            stack.extend(f for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
            continue
        if kind.__name__ == "partial" and kind.__module__ == "functools":
            stack.append(obj.func)
            continue
        if isinstance(obj, type):
            if follow(obj):
                stack.extend(vars(obj).values())
            continue
        if not isinstance(obj, _FUNCTION):
            if kind is not _MODULE:
                stack.append(kind)  # an instance: its class may be shipped by value
            continue
        if not follow(obj):
            continue
        found.append(obj)
        names: set[str] = set()
        for code in _nested_codes(obj.__code__):
            names.update(code.co_names)
        module_globals = obj.__globals__
        stack.extend(module_globals[n] for n in names if n in module_globals)
        for cell in obj.__closure__ or ():
            try:  # noqa: SIM105 - contextlib is one import more for every task
                stack.append(cell.cell_contents)
            except ValueError:  # an empty cell
                pass
        stack.extend(obj.__defaults__ or ())
        stack.extend((obj.__kwdefaults__ or {}).values())
    return found


# -- in the driver ------------------------------------------------------------------------------
def driver_info(fn: object, by_value: Callable[[object], bool]) -> DriverInfo:
    """What the worker of a submission of ``fn`` needs from this process.

    ``by_value(obj)`` says whether cloudpickle ships ``obj`` by value.
    """
    cwd = os.getcwd()
    entries = []
    for entry in sys.path:
        try:
            text = os.fspath(entry)
        except TypeError:
            continue
        if isinstance(text, str):
            entries.append(os.path.join(cwd, text) if text else cwd)
    path = list(dict.fromkeys(entries))
    files: dict[tuple[str, int], str] = {}
    try:
        for function in _reachable(fn, by_value):
            for code in _nested_codes(function.__code__):
                files.setdefault(_code_key(code), code.co_filename)
    except Exception:  # noqa: BLE001, S110 - only for tracebacks: never fail a submission
        pass
    modules: dict[str, str] = {}
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    here = {cwd, *path[:1]} | (
        {os.path.dirname(os.path.abspath(main_file))} if main_file else set()
    )
    for name, module in list(sys.modules.items()):
        file = vars(module).get("__file__") if isinstance(module, _MODULE) else None
        if file and any(file.startswith(folder.rstrip(os.sep) + os.sep) for folder in here):
            modules[name] = file
    return {"sys_path": path, "cwd": cwd, "files": files, "modules": modules}


# -- in the job ---------------------------------------------------------------------------------
def use_driver_path(info: DriverInfo | None) -> None:
    """Put the driver's ``sys.path`` first, in its order; the job's other entries follow."""
    if not info:
        return
    driver = [p for p in info["sys_path"] if isinstance(p, str)]
    known = set(driver)
    sys.path[:] = driver + [p for p in sys.path if p not in known]


def restore_files(fn: object, info: DriverInfo | None) -> None:
    """Give the functions shipped by value their source file back (see the module doc)."""
    files = info.get("files") if info else None
    if not files:
        return

    def dynamic(obj: object) -> bool:
        if isinstance(obj, type):  # rebuilt by value unless importable by its name
            module = sys.modules.get(obj.__module__)
            return getattr(module, obj.__qualname__, None) is not obj
        return isinstance(obj, _FUNCTION) and obj.__code__.co_filename == BY_VALUE_FILENAME

    for function in _reachable(fn, dynamic):
        function.__code__ = _with_files(function.__code__, files)


def _with_files(code: CodeType, files: dict[tuple[str, int], str]) -> CodeType:
    """``code`` with the source file of every nested code object the driver recorded."""
    consts = tuple(_with_files(k, files) if isinstance(k, _CODE) else k for k in code.co_consts)
    # code == code ignores the file name: compare by identity
    changed = any(a is not b for a, b in zip(consts, code.co_consts, strict=True))
    filename = files.get(_code_key(code)) if code.co_filename == BY_VALUE_FILENAME else None
    if filename is not None:
        return code.replace(co_consts=consts, co_filename=filename)
    return code.replace(co_consts=consts) if changed else code


def load_error(what: str, exc: BaseException, info: DriverInfo | None) -> ImportError:
    """The error a job reports when ``what`` (the function, an item) cannot be unpickled:
    which module, the job's ``sys.path``, where the driver had the module, what to do."""
    module: str = getattr(exc, "name", None) or ""
    seen = info.get("modules", {}).get(module) if info else None
    lines = [
        f"{what} could not be loaded in the job: {type(exc).__name__}: {exc}.",
        f"The job ran {sys.executable} in {os.getcwd()} with sys.path:",
        *(f"    {p}" for p in sys.path),
    ]
    if seen:
        lines.append(
            f"The driver imported {module!r} from {seen}; the job does not see that file "
            "(a directory only the submitting machine has?)."
        )
    lines.append(
        "Make the module importable where the job runs: install its package in the "
        "environment the job uses (pip install -e .), or keep it on a filesystem every node "
        "sees and add its directory to PYTHONPATH; or ship it with the function: "
        f"cloudpickle.register_pickle_by_value({module or 'the_module'}) in the driver."
    )
    return ImportError("\n".join(lines), name=module or None)
