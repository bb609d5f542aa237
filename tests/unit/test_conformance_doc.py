"""docs/api-conformance.md cannot drift from the conformance tests (a unit test: no server).

Every table row names its verdict and the test(s) proving it; every test in
``tests/test_conformance_*.py`` is named by some row and cites the documented contract (a URL
in its docstring) it checks against.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "api-conformance.md"
VERDICTS = {"same", "differs", "unsupported"}
REF = re.compile(r"(test_conformance_\w+\.py)::(test_\w+)")


def conformance_tests() -> dict[tuple[str, str], str]:
    """(file, test) -> docstring, for every test function in tests/test_conformance_*.py."""
    out = {}
    for path in sorted((ROOT / "tests").rglob("test_conformance_*.py")):
        if path.name == Path(__file__).name:
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and \
                    node.name.startswith("test_"):
                out[(path.name, node.name)] = ast.get_docstring(node) or ""
    return out


def rows() -> list[list[str]]:
    out = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 4 or cells[0] == "Endpoint / field" or \
                set(cells[1]) <= {"-"}:
            continue
        out.append(cells)
    return out


def test_every_row_has_a_verdict_and_names_existing_tests():
    tests = conformance_tests()
    assert rows(), "docs/api-conformance.md has no rows"
    for endpoint, verdict, _, test_cell in rows():
        assert verdict.strip("*") in VERDICTS, f"{endpoint}: verdict {verdict!r}"
        refs = REF.findall(test_cell)
        assert refs, f"{endpoint}: no test named in {test_cell!r}"
        for ref in refs:
            assert ref in tests, f"{endpoint}: {ref[0]}::{ref[1]} does not exist"


def test_every_conformance_test_is_on_the_page_and_cites_its_contract():
    cited = {ref for row in rows() for ref in REF.findall(row[3])}
    for (file, name), doc in conformance_tests().items():
        assert (file, name) in cited, f"{file}::{name} is not in docs/api-conformance.md"
        assert "https://" in doc, f"{file}::{name} cites no documented contract in its docstring"
