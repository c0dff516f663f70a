"""How the rewriting pass of ``slurmscope migrate`` keeps what it did (imported only when
libcst is installed): a note per conversion or mark, and each mark as a comment line above
the statement that holds the construct, added once (an identical comment already there is
left alone), so that a second run changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import libcst as cst
from libcst.metadata import PositionProvider

from ._migrate_rules import MARK, Note

#: The statements a mark goes above (the innermost one that holds the construct).
STATEMENTS = (
    cst.SimpleStatementLine,
    cst.If,
    cst.While,
    cst.For,
    cst.With,
    cst.FunctionDef,
    cst.ClassDef,
    cst.Try,
    cst.TryStar,
    cst.Match,
)
_Node = TypeVar("_Node", bound=cst.CSTNode)


class NotingTransformer(cst.CSTTransformer):
    """A transformer that notes what it converts and marks statements for a person."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, module: cst.Module) -> None:
        super().__init__()
        self.first_statement = module.body[0] if module.body else None
        self.header = list(module.header)  # comments atop a module, before its first statement
        self.notes: list[Note] = []
        self.pending: list[list[str]] = []  # marks per open statement, innermost last

    def line_of(self, node: cst.CSTNode) -> int:
        try:
            return int(self.get_metadata(PositionProvider, node).start.line)
        except KeyError:
            return 0

    def converted(self, node: cst.CSTNode, what: str) -> None:
        self.notes.append(Note(self.line_of(node), "converted", what))

    def mark(self, node: cst.CSTNode, why: str) -> None:
        self.notes.append(Note(self.line_of(node), "marked", why))
        if self.pending and why not in self.pending[-1]:
            self.pending[-1].append(why)

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, STATEMENTS):
            self.pending.append([])
        return super().on_visit(node)

    def on_leave(
        self, original: _Node, updated: _Node
    ) -> _Node | cst.RemovalSentinel | cst.FlattenSentinel[_Node]:
        result = super().on_leave(original, updated)
        if not isinstance(original, STATEMENTS):
            return result
        marks = self.pending.pop()
        if not marks or isinstance(result, cst.RemovalSentinel):
            return result
        if isinstance(result, cst.FlattenSentinel):
            first = self._marked(result.nodes[0], marks, original)
            return cst.FlattenSentinel([first, *result.nodes[1:]])
        return self._marked(result, marks, original)

    def _marked(self, node: _Node, marks: list[str], original: cst.CSTNode) -> _Node:
        """``node`` with a comment line above it for each mark it does not have yet."""
        if isinstance(node, cst.SimpleStatementLine):
            return node.with_changes(leading_lines=self._marks(node.leading_lines, marks, original))
        if isinstance(node, cst.BaseCompoundStatement):
            return node.with_changes(leading_lines=self._marks(node.leading_lines, marks, original))
        return node

    def _marks(
        self, lines: Sequence[cst.EmptyLine], marks: list[str], original: cst.CSTNode
    ) -> list[cst.EmptyLine]:
        """``lines`` (above a statement) and a comment line for each mark not among them."""
        seen = [*lines, *self.header] if original is self.first_statement else lines
        have = {ln.comment.value for ln in seen if ln.comment}
        return [
            *lines,
            *(cst.EmptyLine(comment=cst.Comment(MARK + m)) for m in marks if MARK + m not in have),
        ]
