"""A pytest plugin: under ``-m``, a test file that no test of it could match is not imported at all.

Collecting a module imports it, and the database modules import Hypothesis, Great Expectations or
Airflow's server side at the top: ``make test-fast`` (``-m "not db and not integration and not stack"``)
spent seconds importing files whose every test it then deselected. A file's module-level ``pytestmark``
applies to each of its tests, and a test can only add marks to it; so when the expression is false for
those marks, whatever the others are, none of its tests could be selected and the file is skipped.
"""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

from _pytest.mark.expression import Expression

_KEYWORDS = {"and", "or", "not"}


def module_marks(path: Path) -> set[str]:
    """The mark names of ``path``'s module-level ``pytestmark`` (``pytest.mark.x`` or a list of them)."""
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            values = node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [node.value]
            return {_mark_name(v) for v in values} - {None}
    return set()


def _mark_name(node: ast.expr) -> str | None:
    node = node.func if isinstance(node, ast.Call) else node  # pytest.mark.x(...) -> pytest.mark.x
    is_mark = isinstance(node, ast.Attribute) and getattr(node.value, "attr", None) == "mark"
    return node.attr if is_mark else None


def could_match(markexpr: str, marks: set[str]) -> bool:
    """Whether a test carrying ``marks``, plus any other marks, can satisfy ``markexpr``."""
    expression = Expression.compile(markexpr)
    others = sorted(set(re.findall(r"[\w.]+", markexpr)) - _KEYWORDS - marks)
    for values in itertools.product((False, True), repeat=len(others)):
        extra = {name for name, on in zip(others, values, strict=True) if on}
        if expression.evaluate(lambda name, extra=extra: name in marks or name in extra):
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    markexpr = config.getoption("markexpr")
    if not markexpr or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    marks = module_marks(collection_path)
    return True if marks and not could_match(markexpr, marks) else None
