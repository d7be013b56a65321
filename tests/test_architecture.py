"""Dependencies point inward: the core never imports kfp, fastapi or evidently, and its API is small.

Library modules may not import them at all. The command line (``faceops.cli``) is the one entry point that fronts
every adapter (``faceops serve``, ``faceops pipeline ...``), so it may import them lazily inside a command, never
at module level.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import faceops

SRC = Path(faceops.__file__).parent
FORBIDDEN = {"kfp", "fastapi", "evidently", "starlette", "serving", "monitoring", "components", "pipelines"}


def _imports(nodes) -> list[str]:
    names: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_core_sources_do_not_import_adapters() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        is_cli = path.relative_to(SRC).parts[0] == "cli"
        nodes = tree.body if is_cli else ast.walk(tree)  # the CLI: module level only
        offenders += [f"{path.relative_to(SRC)}: {n}" for n in _imports(nodes) if n.split(".")[0] in FORBIDDEN]
    assert not offenders, offenders


def test_importing_the_core_and_its_cli_loads_no_adapter() -> None:
    code = (
        "import sys, faceops, faceops.cli, faceops.face.config, faceops.face.gallery, faceops.evaluation.pairs;"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN | {'uvicorn', 'mlflow'})!r});"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"imported at import time: {out}"


def test_public_api_resolves() -> None:
    for name in faceops.__all__:
        assert getattr(faceops, name) is not None, name
