"""Money never goes through float: no ``float(`` call anywhere in the package.

A float conversion that is not money (a timeout, a latency) says so on its line
with ``# not money``; everything else must use Decimal / integer nano-USD.
"""

from __future__ import annotations

import ast
from pathlib import Path

import metering

PACKAGE = Path(metering.__file__).resolve().parent


def test_no_float_conversion_on_money_paths() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "float"
                and "# not money" not in lines[node.lineno - 1]
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == [], f"float( on a possible money path: {offenders}"


def test_the_check_sees_a_float_call(tmp_path: Path) -> None:
    tree = ast.parse("x = float('1.5')")
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert isinstance(calls[0].func, ast.Name) and calls[0].func.id == "float"
