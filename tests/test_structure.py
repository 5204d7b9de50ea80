"""Structure rules that keep the code easy to change (run in the model-free tier)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "slmkit"
MAX_LINES = 60


def test_no_function_in_src_is_over_60_lines() -> None:
    """Counted from the first decorator to the last line, so click's option lists count."""
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                n = (node.end_lineno or node.lineno) - start + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 60 lines:\n" + "\n".join(long)


def test_import_slmkit_cli_alone_yields_the_whole_group() -> None:
    code = "import slmkit.cli as c; print(len(c.cli.commands))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "28"


def test_importing_slmkit_loads_no_heavy_library() -> None:
    code = (
        "import sys, slmkit, slmkit.cli, slmkit.engine, slmkit.runtime; "
        "print(sorted(m for m in ('torch', 'transformers', 'llama_cpp', 'fastapi', 'onnxruntime')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
