"""The rewriting pass of :mod:`slurmscope.migrate` (imported only when libcst is installed).

After the survey (:mod:`slurmscope._migrate_survey`: slurm-sdk imports, tasks, clusters, names
bound to a ``.map(...)``), it rewrites what has a one-to-one twin and marks the rest for a
person (:mod:`slurmscope._migrate_notes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import libcst as cst
from libcst.metadata import MetadataWrapper

from ._migrate_notes import NotingTransformer
from ._migrate_rules import CLUSTER_ARGS, HINTS, NAMES, RESOURCES, WHY, Note
from ._migrate_survey import Survey, called_method, dotted_name
from .errors import InvalidInputError
from .spec import Resources

#: What a statement's leave_* returns.
_Statement = cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement]
#: A node with a trailing comma (:func:`_commas`).
_Listed = TypeVar("_Listed", cst.ImportAlias, cst.Arg)


class _Rewrite(NotingTransformer):
    def __init__(self, survey: Survey, module: cst.Module) -> None:
        super().__init__(module)
        self.survey = survey
        self.sdk_file = survey.imports_slurm
        self.any_file = survey.imports_slurm or survey.imports_slurmscope
        self.created: set[int] = set()  # the `from slurmscope import` nodes made here
        self.annotations = 0  # depth inside annotations
        self.local_annotations = 0  # depth inside `x: T = ...` in a function (never evaluated)
        self.functions = 0

    # -- imports ----------------------------------------------------------------------------
    def leave_SimpleStatementLine(
        self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
    ) -> _Statement:
        if len(updated.body) != 1 or not isinstance(updated.body[0], cst.ImportFrom):
            if len(updated.body) == 1 and isinstance(updated.body[0], cst.Import):
                return self._import(original, updated, updated.body[0])
            return updated
        node = updated.body[0]
        module = dotted_name(node.module) if node.module and not node.relative else ""
        if not module or not (module == "slurm" or module.startswith("slurm.")):
            return updated
        if isinstance(node.names, cst.ImportStar):
            self.mark(original, f"`from {module} import *`: import the slurmscope names you use")
            return updated
        keep, move = [], []
        for alias in node.names:
            name = alias.name.value if isinstance(alias.name, cst.Name) else ""
            if name in NAMES:
                local = (dotted_name(alias.asname.name) if alias.asname else None) or name
                asname = None if local == NAMES[name] else cst.AsName(name=cst.Name(local))
                move.append(cst.ImportAlias(name=cst.Name(NAMES[name]), asname=asname))
            else:
                keep.append(alias.with_changes(comma=cst.MaybeSentinel.DEFAULT))
        if not move:
            left = ", ".join(dotted_name(a.name) or "" for a in keep)
            self.mark(
                original, f"no slurmscope equivalent of {left} (still imported from {module})"
            )
            return updated
        self.converted(original, f"from {module} import -> from slurmscope import")
        created = cst.ImportFrom(module=cst.Name("slurmscope"), names=_commas(move))
        self.created.add(id(created))
        moved = updated.with_changes(body=[created])
        if not keep:
            return moved
        left = ", ".join(dotted_name(a.name) or "" for a in keep)
        self.mark(original, f"no slurmscope equivalent of {left} (still imported from {module})")
        rest = updated.with_changes(
            body=[node.with_changes(names=_commas(keep), lpar=None, rpar=None)]
        )
        return cst.FlattenSentinel([rest, moved.with_changes(leading_lines=[])])

    def _import(
        self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine, node: cst.Import
    ) -> _Statement:
        modules = [dotted_name(a.name) or "" for a in node.names]
        if modules == ["slurm"] and self.survey.slurm_module:
            unmapped = sorted(self.survey.slurm_attrs - set(NAMES))
            if unmapped:
                self.mark(original, f"slurm.{', slurm.'.join(unmapped)} have no slurmscope twin")
            if self.survey.imports_slurmscope:
                return updated
            line = cst.SimpleStatementLine(
                body=[cst.Import([cst.ImportAlias(cst.Name("slurmscope"))])]
            )
            if unmapped:
                self.converted(original, "import slurm -> import slurmscope (slurm kept)")
                return cst.FlattenSentinel([updated, line])
            self.converted(original, "import slurm -> import slurmscope")
            return updated.with_changes(body=line.body)
        if any(d == "slurm" or d.startswith("slurm.") for d in modules):
            self.mark(original, "import of slurm-sdk modules: import slurmscope's names instead")
        return updated

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        """One ``from slurmscope import`` where this pass made several in a row."""
        body: list[cst.BaseStatement] = []
        for stmt in updated.body:
            prev = body[-1] if body else None
            mine, before = self._made(stmt), self._made(prev)
            if mine and before and isinstance(prev, cst.SimpleStatementLine) and not _above(stmt):
                names = {_name(a): a for a in [*before, *mine]}
                ordered = sorted(names.values(), key=lambda a: (_name(a).islower(), _name(a)))
                merged = cst.ImportFrom(module=cst.Name("slurmscope"), names=_commas(ordered))
                self.created.add(id(merged))
                body[-1] = prev.with_changes(body=[merged])
                continue
            body.append(stmt)
        return updated.with_changes(body=body)

    def _made(self, stmt: cst.BaseStatement | None) -> Sequence[cst.ImportAlias]:
        """The names of ``stmt`` if it is a ``from slurmscope import`` this pass made."""
        if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
            return ()
        node = stmt.body[0]
        if id(node) not in self.created or not isinstance(node, cst.ImportFrom):
            return ()
        return () if isinstance(node.names, cst.ImportStar) else node.names

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.Attribute:
        value = updated.value
        is_slurm = isinstance(value, cst.Name) and value.value == "slurm"
        if self.survey.slurm_module and is_slurm and updated.attr.value in NAMES:
            return updated.with_changes(
                value=cst.Name("slurmscope"), attr=cst.Name(NAMES[updated.attr.value])
            )
        return updated

    # -- calls ------------------------------------------------------------------------------
    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        after = called_method(updated, "after")
        if after is not None:
            return self._after(original, updated, after)
        func = original.func
        if self.survey.is_sdk_task(func):
            return updated.with_changes(args=self._keywords(original, updated.args, RESOURCES))
        if self.survey.is_cluster_class(func):
            return self._cluster(original, updated)
        if isinstance(func, cst.Attribute) and self.sdk_file:
            return self._sdkmethod(original, updated, func)
        return updated

    def _after(self, original: cst.Call, updated: cst.Call, after: cst.Attribute) -> cst.Call:
        inner = after.value
        mapper = called_method(inner, "map")
        if mapper is not None:
            assert isinstance(inner, cst.Call)
            first = inner.args[0].value if inner.args else None
            if not self.any_file or isinstance(first, cst.Lambda):
                self.mark(original, WHY["not_task" if self.any_file else "no_import"])
                return updated
            self.converted(original, ".map(...).after(...) -> .after(...).map(...)")
            # Each name keeps its arguments; the dots (and the line breaks and comments before
            # them) stay where they were, and the outer parentheses stay outermost.
            new_after = updated.with_changes(
                func=after.with_changes(value=mapper.value, dot=mapper.dot),
                lpar=inner.lpar,
                rpar=inner.rpar,
            )
            return inner.with_changes(
                func=mapper.with_changes(value=new_after, dot=after.dot),
                lpar=updated.lpar,
                rpar=updated.rpar,
            )
        if isinstance(inner, cst.Call) and isinstance(inner.func, cst.Name):
            if inner.func.value in self.survey.tasks:
                self.converted(original, "task(args).after(deps) -> task.after(deps)(args)")
                new_after = updated.with_changes(func=after.with_changes(value=inner.func))
                return inner.with_changes(func=new_after)
            if self.sdk_file and inner.func.value not in self.survey.clusters:
                self.mark(original, WHY["after_on_job"])
        elif isinstance(inner, cst.Name) and inner.value in self.survey.mapped - self.survey.tasks:
            self.mark(original, WHY["after_on_array"])
        return updated

    def _keywords(
        self, original: cst.Call, args: Sequence[cst.Arg], table: dict[str, str]
    ) -> list[cst.Arg]:
        out = []
        for arg in args:
            key = arg.keyword.value if arg.keyword else None
            if key in table and table[key] != key:
                self.converted(original, f"{key}= -> {table[key]}=")
                arg = arg.with_changes(keyword=cst.Name(table[key]))
            if key in table and table is RESOURCES:
                problem = _refused(table[key], arg.value)
                if problem:
                    self.mark(original, problem)
            elif key is not None and key not in table:
                self.mark(
                    original,
                    f"`{key}=` has no slurmscope equivalent "
                    + HINTS.get(
                        key.split("_")[0]
                        if key.startswith(("packaging", "default_packaging"))
                        else key,
                        "(slurmscope resources: time, mem, cpus_per_task, gpus, partition, account, "
                        "qos, constraint, job_name; other sbatch flags go in extra=['--flag=value'])",
                    ),
                )
            elif key is None and arg.star:
                self.mark(
                    original, f"`{arg.star}` arguments cannot be checked: map their keys by hand"
                )
            out.append(arg)
        return out

    def _cluster(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        args = list(updated.args)
        backend = next((a for a in args if a.keyword and a.keyword.value == "backend_type"), None)
        if backend is None and args and args[0].keyword is None:
            backend = args[0]
        value = backend.value if backend is not None else None
        if (
            backend is not None
            and isinstance(value, cst.SimpleString)
            and value.evaluated_value == "local"
        ):
            pos = args.index(backend)
            args[pos] = backend.with_changes(
                keyword=None, equal=cst.MaybeSentinel.DEFAULT, value=cst.SimpleString('"sbatch"')
            )
            args.insert(0, args.pop(pos))
            self.converted(original, 'Cluster(backend_type="local") -> Cluster("sbatch")')
        else:
            self.mark(original, HINTS["backend_type"])
            return updated
        rest = [args[0], *self._keywords(original, args[1:], CLUSTER_ARGS)]
        return updated.with_changes(args=_commas(rest, like=args))

    def _sdkmethod(self, original: cst.Call, updated: cst.Call, func: cst.Attribute) -> cst.Call:
        name = func.attr.value
        if name == "with_options":
            self.converted(original, ".with_options(...) -> .options(...)")
            args = self._keywords(original, updated.args, RESOURCES)
            new_func = updated.func.with_changes(attr=cst.Name("options"))
            return updated.with_changes(func=new_func, args=args)
        if name in ("from_env", "from_file", "from_args", "add_argparse_args"):
            if self.survey.is_cluster_class(func.value):
                self.mark(original, f"Cluster.{name}: {HINTS['backend_type']}")
            return updated
        receiver = dotted_name(func.value)
        if name == "submit" and receiver in self.survey.clusters:
            if (
                len(updated.args) == 1
                and updated.args[0].keyword is None
                and not updated.args[0].star
            ):
                self.converted(original, "cluster.submit(task) -> task.on(cluster)")
                on = cst.Attribute(value=updated.args[0].value, attr=cst.Name("on"))
                return cst.Call(func=on, args=[cst.Arg(func.value)])
            self.mark(
                original, "cluster.submit(task, **options): write task.on(cluster).options(...)"
            )
        elif name in ("get_stdout", "get_stderr"):
            self.mark(original, WHY["logs"])
        elif name in ("get_status", "is_running", "is_completed", "is_successful"):
            self.mark(original, WHY["status"])
        return updated

    def leave_If(self, original: cst.If, updated: cst.If) -> cst.If:
        self._check_wait(original, original.test)
        return updated

    def leave_While(self, original: cst.While, updated: cst.While) -> cst.While:
        self._check_wait(original, original.test)
        return updated

    def _check_wait(self, statement: cst.CSTNode, test: cst.BaseExpression) -> None:
        if self.sdk_file and _tests_wait(test):
            self.mark(statement, WHY["wait_bool"])

    # -- generic annotations: slurmscope's handles are not generic ---------------------------
    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.functions += 1

    def leave_FunctionDef(
        self, original: cst.FunctionDef, updated: cst.FunctionDef
    ) -> cst.FunctionDef:
        self.functions -= 1
        return updated

    def visit_Annotation(self, node: cst.Annotation) -> None:
        self.annotations += 1

    def leave_Annotation(self, original: cst.Annotation, updated: cst.Annotation) -> cst.Annotation:
        self.annotations -= 1
        return updated

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self.local_annotations += self.functions > 0

    def leave_AnnAssign(self, original: cst.AnnAssign, updated: cst.AnnAssign) -> cst.AnnAssign:
        self.local_annotations -= self.functions > 0
        return updated

    def visit_Subscript(self, node: cst.Subscript) -> None:
        name = dotted_name(node.value) or ""
        generic = self.survey.sdk.get(name) or name.removeprefix("slurm.")
        if generic not in ("Job", "ArrayJob", "SlurmTask") or not self.survey.imports_slurm:
            return
        lazy = self.local_annotations or (self.annotations and self.survey.lazy_annotations)
        if not lazy:
            self.mark(node, WHY["generic"].format(name=name))

    def visit_Assert(self, node: cst.Assert) -> None:
        if self.sdk_file and _tests_wait(node.test):
            self.mark(node, WHY["wait_bool"])

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if self.sdk_file and node.attr.value == "unwrapped":
            self.mark(node, WHY["unwrapped"])


def _name(alias: cst.ImportAlias) -> str:
    return dotted_name(alias.name) or ""


def _above(stmt: cst.BaseStatement) -> Sequence[cst.EmptyLine]:
    """The comments and blank lines above a statement."""
    if isinstance(stmt, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
        return stmt.leading_lines
    return ()


def _refused(name: str, value: cst.BaseExpression) -> str | None:
    """What slurmscope would say of a literal resource value it refuses (``mem="8GB"``)."""
    if not isinstance(value, (cst.SimpleString, cst.Integer)):
        return None
    try:
        Resources.from_kwargs({name: value.evaluated_value})
    except InvalidInputError as exc:
        return f"`{name}=`: {' '.join(str(exc).split())}"
    return None


def _tests_wait(test: cst.BaseExpression) -> bool:
    """``if job.wait():`` / ``if not job.wait():`` / ``a.wait() and b.wait()``."""
    if isinstance(test, cst.UnaryOperation):
        return _tests_wait(test.expression)
    if isinstance(test, cst.BooleanOperation):
        return _tests_wait(test.left) or _tests_wait(test.right)
    return called_method(test, "wait") is not None


def _commas(items: Sequence[_Listed], like: Sequence[_Listed] | None = None) -> list[_Listed]:
    """``items`` with commas between them (the originals' commas where there were some)."""
    out = []
    for i, item in enumerate(items):
        last = i == len(items) - 1
        comma: cst.Comma | cst.MaybeSentinel = cst.MaybeSentinel.DEFAULT
        if like is not None and i < len(like):
            comma = like[i].comma if not last else like[-1].comma
        elif not last:
            comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        out.append(item.with_changes(comma=comma))
    return out


def rewrite(module: cst.Module) -> tuple[cst.Module, list[Note]]:
    wrapper = MetadataWrapper(module)
    survey = Survey()
    wrapper.module.visit(survey)
    transformer = _Rewrite(survey, wrapper.module)
    new = wrapper.visit(transformer)
    return new, sorted(transformer.notes, key=lambda n: (n.line, n.kind))
