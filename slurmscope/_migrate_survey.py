"""The first pass of ``slurmscope migrate``: what the names of a module are.

Which slurm-sdk names it imports (and as what), which names are tasks (decorated with
``@task``/``@workflow``, made by ``task(...)`` or a variant of a task), clusters (made by
slurm-sdk's ``Cluster(...)``), or arrays (bound to the result of a ``.map(...)``).
"""

from __future__ import annotations

import libcst as cst

_TASK_VARIANTS = {"after", "options", "on", "with_options"}


def dotted_name(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted_name(node.value)
        return None if base is None else f"{base}.{node.attr.value}"
    return None


def called_method(node: cst.BaseExpression, name: str) -> cst.Attribute | None:
    """``node.func`` when ``node`` is a call of method ``name``."""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        return node.func if node.func.attr.value == name else None
    return None


class Survey(cst.CSTVisitor):
    """What the names of this module are."""

    def __init__(self) -> None:
        self.slurm_module = False  # `import slurm`
        self.imports_slurm = False
        self.imports_slurmscope = False
        self.sdk: dict[str, str] = {}  # local name -> slurm-sdk name (from-imports)
        self.tasks: set[str] = set()
        self.clusters: set[str] = set()
        self.mapped: set[str] = set()  # names bound to the result of a .map(...)
        self.slurm_attrs: set[str] = set()  # X of every slurm.X
        self.lazy_annotations = False  # `from __future__ import annotations`

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            name = dotted_name(alias.name) or ""
            if name == "slurm" or name.startswith("slurm."):
                self.imports_slurm = True
                self.slurm_module |= name == "slurm" and alias.asname is None
            if name.split(".")[0] == "slurmscope":
                self.imports_slurmscope = True

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        module = dotted_name(node.module) if node.module and not node.relative else ""
        module = module or ""
        if module == "__future__" and not isinstance(node.names, cst.ImportStar):
            self.lazy_annotations |= any(
                isinstance(a.name, cst.Name) and a.name.value == "annotations" for a in node.names
            )
        if module.split(".")[0] == "slurmscope":
            self.imports_slurmscope = True
        if module == "slurm" or module.startswith("slurm."):
            self.imports_slurm = True
            if not isinstance(node.names, cst.ImportStar):
                for alias in node.names:
                    local = alias.asname.name if alias.asname else alias.name
                    if isinstance(local, cst.Name) and isinstance(alias.name, cst.Name):
                        self.sdk[local.value] = alias.name.value

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if isinstance(node.value, cst.Name) and node.value.value == "slurm":
            self.slurm_attrs.add(node.attr.value)

    def is_task_factory(self, node: cst.BaseExpression) -> bool:
        """``task``, ``slurm.task``, ``slurmscope.task``, ``cluster.task`` (and called forms)."""
        if isinstance(node, cst.Call):
            node = node.func
        name = dotted_name(node) or ""
        return name.split(".")[-1] in ("task", "workflow") or self.sdk.get(name) in ("task",)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        if any(self.is_task_factory(d.decorator) for d in node.decorators):
            self.tasks.add(node.name.value)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self.visit_Assign(cst.Assign([cst.AssignTarget(node.target)], node.value))

    def visit_Assign(self, node: cst.Assign) -> None:
        value = node.value
        kind = None
        if isinstance(value, cst.Call):
            func = value.func
            if self.is_task_factory(func) or (
                isinstance(func, cst.Attribute)
                and func.attr.value in _TASK_VARIANTS
                and isinstance(func.value, cst.Name)
                and func.value.value in self.tasks
            ):
                kind = "task"
            if isinstance(func, cst.Attribute) and func.attr.value == "map":
                kind = "mapped"
            root = func.value if isinstance(func, cst.Attribute) else func
            if self.is_cluster_class(func) or self.is_cluster_class(root):
                kind = "cluster"
        for target in node.targets:
            if isinstance(target.target, cst.Name) and kind:
                {"task": self.tasks, "mapped": self.mapped, "cluster": self.clusters}[kind].add(
                    target.target.value
                )

    def visit_WithItem(self, node: cst.WithItem) -> None:
        call = node.item
        if isinstance(call, cst.Call) and node.asname and isinstance(node.asname.name, cst.Name):
            root = call.func.value if isinstance(call.func, cst.Attribute) else call.func
            if self.is_cluster_class(call.func) or self.is_cluster_class(root):
                self.clusters.add(node.asname.name.value)

    def is_cluster_class(self, node: cst.BaseExpression) -> bool:
        name = dotted_name(node) or ""
        return self.sdk.get(name) == "Cluster" or name == "slurm.Cluster"

    def is_sdk_task(self, node: cst.BaseExpression) -> bool:
        name = dotted_name(node) or ""
        return self.sdk.get(name) == "task" or name == "slurm.task"
