"""Rebuilds, inside a job, the functions the driver ships by value, without cloudpickle.

A function defined in the driver script (or nested, or a lambda) cannot be imported in the
job, so it travels by value. cloudpickle's pickles of such functions name reconstructors
inside cloudpickle, so loading one imports cloudpickle (and ``dis``, ``inspect``,
``typing``... : some 20 ms, paid by every task). The driver's pickler
(:mod:`slurmscope.pickling`) writes these functions with the functions of this module
instead; cloudpickle's own reductions remain for what they express and these do not
(classes defined in the script, enums, dynamic modules...), and only a payload holding one
of those imports cloudpickle in the job.

What a function is made of, and how it comes back:

- its code, as ``marshal`` writes it (the same interpreter runs the driver and the job: the
  job runs the driver's ``sys.executable``); the file name stays that of the script, so
  tracebacks name it;
- its globals: the names its code reads or writes as globals (its nested functions' too),
  in one dictionary per module and pickle, so that functions of one module that refer to
  each other (or to themselves) share their globals as they did in the driver; that
  dictionary keeps the module's ``__name__`` (``"__main__"`` for the script),
  ``__package__``, ``__file__`` and ``__path__``;
- its closure's values, its defaults and keyword defaults, annotations, name, qualified
  name, module, docstring and attributes, restored after the function object exists (so that
  a function may refer to itself);
- the submodules its code reaches as attributes of a module (``os.path`` through ``os``),
  imported when it loads, as in the driver.

Standard library only, and only what the interpreter has loaded at start (``marshal``,
``sys``, ``builtins``): the worker imports this module in every task that ships a function
by value.
"""

from __future__ import annotations

import builtins
import marshal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType, FunctionType, ModuleType
    from typing import Any

    _FUNCTION = FunctionType
else:  # the same class, without importing types
    _FUNCTION = type(lambda: None)


def _empty_cell() -> Any:
    """A new cell with no value (a closure's variable before it is assigned)."""
    if False:  # a variable that is never assigned: its cell stays empty
        value: Any = None
    return (lambda: value).__closure__[0]  # type: ignore[index]


def code(data: bytes) -> CodeType:
    """A code object from its ``marshal`` bytes."""
    loaded: CodeType = marshal.loads(data)
    return loaded


def function(code: CodeType, globals_: dict[str, Any], cells: int) -> FunctionType:
    """A function of ``code`` over ``globals_`` (shared with the other functions of its
    module in the same pickle) with ``cells`` empty closure cells, filled by
    :func:`set_state`."""
    globals_["__builtins__"] = builtins
    closure = tuple(_empty_cell() for _ in range(cells)) if cells else None
    made: FunctionType = _FUNCTION(code, globals_, code.co_name, None, closure)
    return made


def set_state(fn: FunctionType, state: dict[str, Any]) -> None:
    """Give ``fn`` what the driver recorded (see the module doc); ``closure`` maps the
    position of each cell that had a value to that value."""
    fn.__globals__.update(state["globals"])
    fn.__globals__["__builtins__"] = builtins
    cells = fn.__closure__ or ()
    for position, value in state["closure"].items():
        cells[position].cell_contents = value
    fn.__defaults__ = state["defaults"]
    fn.__kwdefaults__ = state["kwdefaults"]
    fn.__annotations__ = state["annotations"]
    fn.__name__ = state["name"]
    fn.__qualname__ = state["qualname"]
    fn.__module__ = state["module"]
    fn.__doc__ = state["doc"]
    fn.__dict__.update(state["dict"])
    # state["submodules"] were imported while the state loaded: nothing to keep


def module(name: str) -> ModuleType:
    """The module ``name``, imported (a submodule too: ``os.path``, not ``os``)."""
    __import__(name)
    return sys.modules[name]
