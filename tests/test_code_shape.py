"""The code stays readable in pieces: no module over 400 lines, no function over 60.

A contributor should find each concept in one place and read it in one sitting; these limits keep
the engine, the attacks and the loaders from growing back into the 500-line modules that held
five concepts each. Tests are not held to them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "attacks", "datasets", "medprivbench")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_no_module_is_longer_than_400_lines():
    assert _sources(), "no source files found"
    long = {str(p.relative_to(ROOT)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_longer_than_60_lines():
    long = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = length
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_private_opacus_name_is_used():
    """Opacus' private helpers may be renamed by any release; the project uses its public surface only."""
    private = ("_generate_noise", "_check_processed_flag", "_mark_as_processed", "._close(", "._module")
    found = [f"{p.relative_to(ROOT)}: {name}" for p in _sources() for name in private if name in p.read_text()]
    found += [f"{p.relative_to(ROOT)}: {line.strip()}" for p in _sources() for line in p.read_text().splitlines()
              if line.lstrip().startswith(("from opacus", "import opacus")) and (" import _" in line or "._" in line)]
    assert not found, f"Opacus private names used: {found}"
