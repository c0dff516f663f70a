"""What makes two submissions the same, as digests that compare across processes: the
function (its code, not its name), the arguments, and the dependency shape.

Used by :mod:`slurmscope.ledger` to match a resumed run's submissions against the earlier
run's. Every digest is a hex string; equal digests mean "the same", different ones "changed".

- **Function**: the bytecode of the function and of everything it defines inside (nested
  functions, lambdas, comprehensions), its constants, names, defaults and closure values,
  and, followed by name, the functions, classes and values of the user's own code that it
  refers to (its own module, ``__main__``, and any module :func:`own_module` says is the
  user's, also as ``module.name``); a slurmscope ``Task`` counts as the function it runs.
  Line numbers and file names are left out: moving a function, or editing another one it
  does not use, changes nothing. Functions and classes of other (installed, standard
  library, slurmscope) modules count by their qualified name only. A class of the user's
  counts by its code: its bases, methods and class attributes (enum members by name and
  value). Whatever refers to itself is fed once ("again").
- **Arguments**: every argument (or every item of a map) walked as data: scalars by type
  and exact ``repr``, lists, tuples and dicts in order, sets sorted, job handles by the job
  directory they name, enum members by class and name, anything else by its pickle, in
  which the user's own classes and functions are written as the digest of their code (so
  an instance of a dataclass defined in the script is its class's code and its state, the
  same in every process).
- **Dependencies**: each merged dependency's kind and target, the target named by its job
  directory (so a target that was resubmitted is a changed dependency) or, for a job id
  given as text, by that id.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import io
import os
import sys
import sysconfig
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle

from .dependency import Dependency
from .handle import Handle
from .pickling import by_value

_SCALARS = (int, float, str, bytes, bool, type(None), complex)
#: How deep the walk into nested data and referenced functions goes (deeper: by pickle).
_MAX_DEPTH = 40


def _tag(h: Any, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


# -- functions --------------------------------------------------------------------------------
def function_digest(fn: Callable[..., Any]) -> str:
    """The digest of what ``fn`` does (see the module's notes)."""
    h = hashlib.sha256()
    _feed_callable(h, fn, set(), getattr(fn, "__module__", None), 0)
    return h.hexdigest()


def _feed_callable(h: Any, obj: Any, seen: set[int], home: str | None, depth: int) -> None:
    if id(obj) in seen:
        _tag(h, f"again:{getattr(obj, '__qualname__', type(obj).__name__)}")
        return
    seen.add(id(obj))
    if isinstance(obj, types.FunctionType):
        _tag(h, f"function:{obj.__qualname__}")
        _feed_code(h, obj.__code__, obj.__globals__, seen, home, depth)
        _tag(h, "defaults")
        _feed_value(h, obj.__defaults__, seen, home, depth + 1)
        _feed_value(h, obj.__kwdefaults__, seen, home, depth + 1)
        for cell in obj.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                _tag(h, "empty cell")
                continue
            _feed_reference(h, contents, seen, home, depth + 1)
    elif isinstance(obj, types.MethodType):
        _tag(h, "method")
        _feed_callable(h, obj.__func__, seen, home, depth + 1)
        _feed_value(h, obj.__self__, seen, home, depth + 1)
    elif isinstance(obj, functools.partial):
        _tag(h, "partial")
        _feed_reference(h, obj.func, seen, home, depth + 1)
        _feed_value(h, obj.args, seen, home, depth + 1)
        _feed_value(h, obj.keywords, seen, home, depth + 1)
    elif isinstance(obj, type):
        _tag(h, f"class:{obj.__module__}.{obj.__qualname__}")
        for base in obj.__bases__:
            _feed_reference(h, base, seen, home, depth + 1)
        for name, member in sorted(vars(obj).items()):
            if name in _CLASS_MACHINERY or isinstance(member, _DESCRIPTORS):
                continue
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if isinstance(member, property):
                _tag(h, f"property:{name}")
                for accessor in (member.fget, member.fset, member.fdel):
                    _feed_reference(h, accessor, seen, home, depth + 1)
                continue
            _tag(h, f"member:{name}")
            if isinstance(member, enum.Enum) and type(member) is obj:
                # a member of this enum: its name and value (its class is this one)
                _tag(h, f"enum member:{member.name}")
                _feed_value(h, member._value_, seen, home, depth + 1)
            else:  # methods, nested classes, class attributes (data)
                _feed_reference(h, member, seen, home, depth + 1)
    else:  # a callable object: its class's code and its own state
        _tag(h, "instance")
        _feed_callable(h, type(obj), seen, home, depth + 1)
        _feed_value(h, obj, seen, home, depth + 1, walk_objects=False)


def _feed_code(
    h: Any,
    code: types.CodeType,
    namespace: dict[str, Any],
    seen: set[int],
    home: str | None,
    depth: int,
) -> None:
    _tag(h, "code")
    h.update(code.co_code)
    _tag(
        h,
        repr(
            (
                code.co_argcount,
                code.co_posonlyargcount,
                code.co_kwonlyargcount,
                code.co_flags,
                code.co_names,
                code.co_varnames,
                code.co_freevars,
                code.co_cellvars,
            )
        ),
    )
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const, namespace, seen, home, depth + 1)
        else:
            _feed_value(h, const, seen, home, depth + 1)
    modules = []
    for name in code.co_names:  # globals it reads (and attribute names: harmless extras)
        if name in namespace:
            value = namespace[name]
            _tag(h, f"global:{name}")
            _feed_reference(h, value, seen, home, depth + 1)
            if isinstance(value, types.ModuleType) and own_module(value.__name__):
                modules.append(value)
    for module in modules:  # `helpers.scale(x)`: what it uses of the user's own modules
        names = vars(module)
        for name in code.co_names:
            if name in names and not name.startswith("__"):
                _tag(h, f"attribute:{module.__name__}.{name}")
                _feed_reference(h, names[name], seen, home, depth + 1)


def _feed_reference(h: Any, value: Any, seen: set[int], home: str | None, depth: int) -> None:
    """Something a function refers to: followed into when it is the user's own code."""
    if isinstance(value, types.ModuleType):
        _tag(h, f"module:{value.__name__}")
        return
    if isinstance(value, (types.FunctionType, type, functools.partial, types.MethodType)):
        if depth < _MAX_DEPTH and _followed(value, home):
            _feed_callable(h, value, seen, home, depth)
        else:
            module = getattr(value, "__module__", None)
            _tag(h, f"ref:{module}.{getattr(value, '__qualname__', repr(value))}")
        return
    if isinstance(value, types.BuiltinFunctionType):
        _tag(h, f"builtin:{getattr(value, '__module__', '')}.{value.__qualname__}")
        return
    wrapped = _task_function(value)
    if wrapped is not None:  # a slurmscope Task: the code it runs, and its name
        _tag(h, f"task:{getattr(value, 'name', '')}")
        _feed_reference(h, wrapped, seen, home, depth + 1)
        return
    if type(value).__module__.split(".")[0] == "slurmscope":
        # a Task, a Cluster, a handle: named by its kind (its state is not the code)
        _tag(h, f"slurmscope:{type(value).__qualname__}:{getattr(value, 'name', '')}")
        return
    _feed_value(h, value, seen, home, depth)


# -- data ------------------------------------------------------------------------------------
def _feed_value(
    h: Any,
    value: Any,
    seen: set[int] | None,
    home: str | None,
    depth: int,
    *,
    walk_objects: bool = True,
) -> None:
    kind = type(value)
    if kind in _SCALARS:
        _tag(h, f"{kind.__name__}:{value!r}")
        return
    if isinstance(value, Handle):
        what = "all" if value.whole_array else str(value.indices.start)
        _tag(h, f"job:{value.directory}:{what}")
        return
    if seen is None:
        seen = set()
    if depth < _MAX_DEPTH and walk_objects:
        if kind in (list, tuple, dict):
            # A list or dict that holds itself: said once, not walked again (the keys of
            # the containers being walked are their negated ids, those of the callables
            # fed so far their ids).
            if -id(value) in seen:
                _tag(h, f"cycle:{kind.__name__}")
                return
            seen.add(-id(value))
            try:
                _tag(h, f"{kind.__name__}:{len(value)}")
                if kind is dict:
                    for k, v in value.items():
                        _feed_value(h, k, seen, home, depth + 1)
                        _feed_value(h, v, seen, home, depth + 1)
                else:
                    for v in value:
                        _feed_value(h, v, seen, home, depth + 1)
            finally:
                seen.discard(-id(value))
            return
        if kind in (set, frozenset):
            parts = sorted(value_digest(v) for v in value)
            _tag(h, f"{kind.__name__}:{','.join(parts)}")
            return
    if isinstance(value, (types.FunctionType, type)):
        _feed_reference(h, value, seen, home, depth)
        return
    if isinstance(value, enum.Enum):  # its class (by code, if the user's), name and value
        _tag(h, f"enum:{value.name}")
        _feed_reference(h, kind, seen, home, depth + 1)
        _feed_value(h, value._value_, seen, home, depth + 1)
        return
    buffer = io.BytesIO()
    try:
        _DigestPickler(buffer, seen, home, depth).dump(value)
    except Exception:  # noqa: BLE001 - not picklable: its type is all that is known
        _tag(h, f"unpicklable:{kind.__module__}.{kind.__qualname__}")
        return
    _tag(h, f"pickle:{kind.__module__}.{kind.__qualname__}")
    h.update(hashlib.sha256(buffer.getbuffer()).digest())


class _DigestPickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, except that the user's own classes and functions (those of ``__main__``
    or of the user's modules, which cloudpickle ships by value with an id that is new in
    every process) are written as the digest of their code. Instances of such classes are
    then pickled by their state (``__reduce_ex__``: ``__dict__``, slots, dataclass fields)
    next to that digest, the same in every process. Sets are written as their items'
    digests, sorted (their order in a pickle follows the process's hash seed)."""

    def __init__(self, file: io.BytesIO, seen: set[int], home: str | None, depth: int) -> None:
        super().__init__(file, protocol=5)
        self._seen = seen
        self._home = home
        self._depth = depth

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is set or kind is frozenset:
            # in the order of its items' digests, not the process's hash order
            return (kind.__name__, tuple(sorted(value_digest(v) for v in obj)))
        if not isinstance(obj, (types.FunctionType, type)) or not _followed(obj, self._home):
            return None
        h = hashlib.sha256()
        _feed_reference(h, obj, self._seen, self._home, self._depth + 1)
        return f"code:{h.hexdigest()}"


# -- whose code is followed -----------------------------------------------------------------
#: Class attributes that are Python's or a library's bookkeeping, not the class's code or
#: data (dataclass fields are in the generated ``__init__`` and ``__annotations__``, enum
#: members are walked one by one).
_CLASS_MACHINERY = frozenset(
    {
        "__dict__",
        "__weakref__",
        "__doc__",  # text (a dataclass's shows its defaults' repr, a set's in hash order)
        "__dataclass_fields__",
        "__dataclass_params__",
        "__match_args__",
        "__orig_bases__",
        "__parameters__",
        "_abc_impl",
        "_member_map_",
        "_value2member_map_",
        "_unhashable_values_",
        "_member_type_",
        "_new_member_",
        "_value_repr_",
        "_use_args_",
        "_member_names_",
    }
)
_DESCRIPTORS = (types.GetSetDescriptorType, types.MemberDescriptorType)
_OWN: dict[str, bool] = {}
_OWN_LOCK = threading.Lock()


def _followed(obj: Any, home: str | None) -> bool:
    """Whether the code of ``obj`` (a function, class, partial or method) is digested, not
    just its name: it is of the digested function's own module, shipped by value
    (``__main__``), or of one of the user's own modules (:func:`own_module`)."""
    module = getattr(obj, "__module__", None)
    if module is not None and (module == home or own_module(module)):
        return True
    return by_value(obj)


def own_module(name: str) -> bool:
    """Whether module ``name`` is the user's own code: ``__main__``, or a module loaded from
    a file that is neither in the standard library nor in an installed package's folder
    (``site-packages``, ``dist-packages``). slurmscope's own modules are not (they are the
    library, not the pipeline); neither are built-in modules (no file)."""
    with _OWN_LOCK:
        found = _OWN.get(name)
    if found is not None:
        return found
    own = _decide_own(name)
    if name in sys.modules:  # not one that is not imported (yet): it may be later
        with _OWN_LOCK:
            _OWN[name] = own
    return own


def _decide_own(name: str) -> bool:
    if name == "__main__":
        return True
    top = name.split(".")[0]
    if top == "slurmscope" or top in sys.stdlib_module_names:
        return False
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if not isinstance(path, str):
        return False
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    for key in ("stdlib", "platstdlib"):
        folder = sysconfig.get_paths().get(key)
        if folder and real.startswith(os.path.realpath(folder) + os.sep):
            return False
    return True


def _task_function(value: Any) -> Any:
    """The function a slurmscope ``Task`` runs (``None``: ``value`` is no task)."""
    kind = type(value)
    if kind.__name__ == "Task" and kind.__module__ == "slurmscope.tasks":
        return getattr(value, "fn", None)
    return None


def value_digest(value: Any) -> str:
    """The digest of ``value`` walked as data (see the module's notes)."""
    h = hashlib.sha256()
    _feed_value(h, value, None, None, 0)
    return h.hexdigest()


def arguments_digest(calls: Sequence[Any], array: bool) -> str:
    """The digest of a submission's arguments: ``calls`` is ``[(args, kwargs)]`` for one
    call, the items for a map. Plain scalar items (the common large map) go by one fast
    pass over their pickles."""
    h = hashlib.sha256()
    _tag(h, f"array:{array}:{len(calls)}")
    if _plain(calls):
        # Scalars in lists, tuples and dicts only: their repr is exact and the same in every
        # process (one C call for the whole map, where walking it item by item costs ~10x).
        _tag(h, "plain")
        h.update(repr(calls).encode("utf-8", "surrogatepass"))
        return h.hexdigest()
    for call in calls:
        _feed_value(h, call, None, None, 0)
    return h.hexdigest()


_CONTAINERS = (list, tuple, dict)


def _plain(value: Any) -> bool:
    """Whether ``value`` holds nothing but the exact scalar types in lists, tuples and
    dicts (no sets, whose order varies between processes; no subclasses, no handles)."""
    stack = [value]
    scalars = _SCALARS
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in scalars:
            continue
        if kind is dict:
            stack.extend(item)
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
        else:
            return False
    return True


def dependencies_digest(dependencies: Sequence[Dependency]) -> str:
    """The digest of the dependency shape: each dependency's kind and target, in order."""
    h = hashlib.sha256()
    for dep in dependencies:
        target = dep.target
        if target is None:
            _tag(h, f"{dep.kind}:{dep.target_id}")
        else:
            what = "all" if target.whole_array else str(target.indices.start)
            _tag(h, f"{dep.kind}:{target.directory}:{what}")
    return h.hexdigest()
