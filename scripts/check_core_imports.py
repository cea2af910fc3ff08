"""Fail if computegrid/core imports anything but the standard library, numpy/scipy and itself.

Run by `make test`. core/ must stay pure so the simulator and the live service share it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "src" / "computegrid" / "core"
ALLOWED_THIRD_PARTY = {"numpy", "scipy"}
# Standard-library modules that would let core do I/O, read a clock or talk to the world.
FORBIDDEN_STDLIB = {"subprocess", "socket", "asyncio", "threading", "multiprocessing", "sqlite3", "http",
                    "urllib", "shutil", "tempfile", "os"}


def offending_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if name == "computegrid.core" or name.startswith("computegrid.core."):
                continue
            if top in ALLOWED_THIRD_PARTY or top == "__future__":
                continue
            if top in sys.stdlib_module_names and top not in FORBIDDEN_STDLIB:
                continue
            problems.append(f"{path.relative_to(CORE.parents[2])}:{node.lineno}: imports {name}")
    return problems


def main() -> int:
    problems = [p for path in sorted(CORE.rglob("*.py")) for p in offending_imports(path)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"core/ must import only the standard library, numpy/scipy and itself ({len(problems)} found)",
              file=sys.stderr)
        return 1
    print(f"core/ imports are pure ({len(list(CORE.rglob('*.py')))} files checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
