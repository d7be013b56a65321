"""The architecture, checked: dependencies point inward, one installed name, a small pinned public API.

* The core (``src/faceops`` but ``cli/`` and ``kfp/``) never imports an adapter (kfp, fastapi, starlette, uvicorn,
  evidently, ``faceops.serving``, ``faceops.monitoring``, ``faceops.kfp``), at any level. The command line fronts
  every adapter (``faceops serve``, ``faceops pipeline ...``), so it may import them lazily inside a command,
  never at module level.
* ``faceops.registry`` is the one module that imports MLflow (in src/ and the adapters; tests may).
* Adapters depend on each other only where the design says so (monitoring starts the retraining pipeline,
  pipelines wire components), and a private module (``_name``) is imported only from inside its own package.
* Nothing edits ``sys.path``: everything is imported as the installed package.
* The installed distribution puts one top-level name, ``faceops``, into site-packages, and pyproject's explicit
  ``packages`` list is exactly the set of package folders.
* ``faceops.__all__`` is pinned.

Each checker is a plain function, and each is also shown to catch a planted offender.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

import faceops

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "faceops"
# Source folder -> the dotted package it installs as (pyproject's package-dir).
TREES = {
    SRC: "faceops",
    ROOT / "serving": "faceops.serving",
    ROOT / "monitoring": "faceops.monitoring",
    ROOT / "components": "faceops.kfp.components",
    ROOT / "pipelines": "faceops.kfp.pipelines",
}
ADAPTER_PACKAGES = ("faceops.serving", "faceops.monitoring", "faceops.kfp.components", "faceops.kfp.pipelines")
ADAPTERS = ("kfp", "fastapi", "starlette", "uvicorn", "evidently", "faceops.serving", "faceops.monitoring", "faceops.kfp")
MLFLOW_ADAPTER = "faceops.registry"
# Which adapter may import which other adapter (anything else sideways is a wrong dependency).
ADAPTER_DEPENDENCIES = {
    "faceops.serving": set(),  # shares the request-log schema with monitoring through faceops.telemetry
    "faceops.monitoring": {"faceops.kfp.pipelines"},  # the retraining trigger starts a pipeline run
    "faceops.kfp.components": set(),
    "faceops.kfp.pipelines": {"faceops.kfp.components"},  # pipelines wire the components
}
# Private modules are private to their adapter; the Kubeflow adapter is components and pipelines together.
ADAPTER_FAMILY = {"faceops.kfp.components": "faceops.kfp", "faceops.kfp.pipelines": "faceops.kfp"}
SYS_PATH_SCANNED = ("src", "serving", "monitoring", "components", "pipelines", "tests", "benchmarks")
PUBLIC_API = {
    "AlignConfig",
    "DetectorConfig",
    "Embedder",
    "EmbedderConfig",
    "Face",
    "FaceDetector",
    "FaceRecognizer",
    "Gallery",
    "Match",
    "ModelBundle",
    "PreprocessConfig",
    "Settings",
    "__version__",
    "get_settings",
    "load_image",
    "verification_report",
}


# -- the checkers ----------------------------------------------------------------------------------------------
def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def imports(source: str, module: str, *, is_package: bool = False, module_level_only: bool = False) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything ``source`` (the module ``module``, a package's ``__init__`` when
    ``is_package``) imports.

    Relative imports are resolved; ``from a import b`` yields ``a.b`` as well as ``a`` (``b`` may be a module);
    ``importlib.import_module("x")`` and ``__import__("x")`` with a literal name count too.
    """
    tree = ast.parse(source)
    nodes = tree.body if module_level_only else ast.walk(tree)
    package = module if is_package else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            yield node.lineno, parent
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{parent}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            yield node.lineno, node.args[0].value


def adapter_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Adapters imported by the core module ``module`` (the CLI: at module level only)."""
    cli = _within(module, "faceops.cli")
    return sorted(
        f"{module}:{line}: {name}"
        for line, name in set(imports(source, module, is_package=is_package, module_level_only=cli))
        if any(_within(name, adapter) for adapter in ADAPTERS)
    )


def mlflow_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """MLflow imports of ``module`` unless it is the registry, the one MLflow adapter."""
    if module == MLFLOW_ADAPTER:
        return []
    found = set(imports(source, module, is_package=is_package))
    return sorted(f"{module}:{line}: {name}" for line, name in found if _within(name, "mlflow"))


def sideways_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """For an adapter module: imports of another adapter that the design does not allow, and of a private
    module or name (``_x``) from outside its own adapter (another adapter's, or the core's)."""
    own = next((a for a in ADAPTER_PACKAGES if _within(module, a)), None)
    if own is None:
        return []
    bad = set()
    for line, name in imports(source, module, is_package=is_package):
        other = next((a for a in ADAPTER_PACKAGES if _within(name, a)), None)
        if other and other != own and other not in ADAPTER_DEPENDENCIES[own]:
            bad.add(f"{module}:{line}: {name} (adapter {own} may not import {other})")
        private = any(p.startswith("_") and not p.startswith("__") for p in name.split("."))
        if private and _within(name, "faceops") and not _within(name, ADAPTER_FAMILY.get(own, own)):
            bad.add(f"{module}:{line}: {name} (private outside {ADAPTER_FAMILY.get(own, own)})")
    return sorted(bad)


def sys_path_edits(source: str, where: str) -> list[str]:
    """Edits of ``sys.path`` (calls on it, assignments to it or its items, ``from sys import path``) and
    ``site.addsitedir`` calls: code is imported as the installed package, never by path tricks."""

    def is_sys_path(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) and node.value.id == "sys"

    bad = []
    for node in ast.walk(ast.parse(source)):
        hit = False
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            hit = is_sys_path(node.func.value) or node.func.attr == "addsitedir"
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            hit = any(is_sys_path(t) or (isinstance(t, ast.Subscript) and is_sys_path(t.value)) for t in targets)
        elif isinstance(node, ast.ImportFrom) and node.module == "sys":
            hit = any(a.name == "path" for a in node.names)
        if hit:
            bad.append(f"{where}:{node.lineno}")
    return bad


def modules(trees: dict[Path, str]) -> Iterator[tuple[Path, str]]:
    """(file, dotted module name) of every Python file in the source trees."""
    for folder, package in trees.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield path, ".".join((package, *parts))


def _scan(found: Iterable[tuple[Path, str]], checker: Callable[[str, str, bool], list[str]]) -> list[str]:
    return [o for path, module in found for o in checker(path.read_text(), module, path.name == "__init__.py")]


def package_names(trees: dict[Path, str]) -> set[str]:
    """The dotted names of the package folders (with ``__init__.py``) in the source trees."""
    return {
        ".".join((package, *path.parent.relative_to(folder).parts))
        for folder, package in trees.items()
        for path in folder.rglob("__init__.py")
    }


def folders_without_init(trees: dict[Path, str]) -> list[str]:
    """Folders holding Python files but no ``__init__.py`` (a namespace package setuptools would not install)."""
    return sorted(
        str(folder) for root in trees for folder in {p.parent for p in root.rglob("*.py")} if not (folder / "__init__.py").is_file()
    )


def foreign_top_level_names(top_level: str | None, record: Iterable[str], finder_mappings: Iterable[dict]) -> list[str]:
    """Top-level names other than ``faceops`` that an installed distribution provides.

    Args:
        top_level: the text of ``top_level.txt`` (None when absent).
        record: the paths in ``RECORD``.
        finder_mappings: the ``MAPPING`` of each editable finder (dotted name -> folder).
    """
    names = set((top_level or "").split())
    for entry in record:
        head = Path(entry).parts[0]
        if head == ".." or head == "__pycache__" or head.endswith((".dist-info", ".egg-info", ".pth")):
            continue  # scripts, metadata, byte code and .pth files
        if head.startswith("__editable__") and head.endswith("_finder.py"):
            continue  # setuptools' editable finder, which maps the names checked below
        names.add(head.removesuffix(".py"))
    for mapping in finder_mappings:
        names |= {name.split(".")[0] for name in mapping}
    return sorted(names - {"faceops"})


def _finder_mapping(path: Path) -> dict:
    """The ``MAPPING`` literal of a setuptools editable finder module (read, not imported)."""
    for node in ast.parse(path.read_text()).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "MAPPING" and node.value is not None:
            return ast.literal_eval(node.value)
    raise AssertionError(f"no MAPPING in {path}")


def _installed_distribution() -> importlib.metadata.Distribution:
    """The faceops that pip installed into this environment's site-packages.

    ``importlib.metadata.distribution("faceops")`` looks along ``sys.path`` (the repository root first, under
    pytest), where a stale ``faceops.egg-info`` from an old build could shadow the installed metadata.
    """
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    found = list(importlib.metadata.distributions(name="faceops", path=paths))
    assert len(found) == 1, f"expected one installed faceops in {paths}, found {len(found)}"
    return found[0]


# -- the checks on the code ------------------------------------------------------------------------------------
def _core_modules() -> list[tuple[Path, str]]:
    return [(p, m) for p, m in modules({SRC: "faceops"}) if not _within(m, "faceops.kfp")]


def test_core_sources_do_not_import_adapters() -> None:
    offenders = _scan(_core_modules(), adapter_imports)
    assert not offenders, offenders


def test_only_the_registry_imports_mlflow() -> None:
    offenders = _scan(modules(TREES), mlflow_imports)
    assert not offenders, offenders


def test_adapters_import_each_other_only_as_designed() -> None:
    offenders = _scan(modules(TREES), sideways_imports)
    assert not offenders, offenders


def test_nothing_edits_sys_path() -> None:
    offenders = [
        o
        for folder in SYS_PATH_SCANNED
        for path in sorted((ROOT / folder).rglob("*.py"))
        for o in sys_path_edits(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert not offenders, offenders


def test_importing_the_core_and_its_cli_loads_no_adapter() -> None:
    """What ``faceops --help`` and ``import faceops`` cost: no adapter, no MLflow."""
    code = (
        "import sys, faceops, faceops.cli, faceops.face.config, faceops.face.gallery, faceops.evaluation.pairs;"
        f"bad = sorted(m for m in sys.modules if any(m == a or m.startswith(a + '.') for a in {[*ADAPTERS, 'mlflow']!r}));"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"imported at import time: {out}"


def adapters_loaded(modules: list[str], baseline: str | None = None, env: dict[str, str] | None = None) -> list[list[str]]:
    """[adapter modules loaded by importing ``baseline``, those ``modules`` load on top], in a fresh interpreter."""
    loaded = f"sorted(m for m in sys.modules if any(m == a or m.startswith(a + '.') for a in {list(ADAPTERS)!r}))"
    code = (
        "import importlib, json, sys\n"
        + (f"importlib.import_module({baseline!r})\n" if baseline else "")
        + f"baseline = {loaded}\n"
        + f"for m in {modules!r}: importlib.import_module(m)\n"
        + f"print(json.dumps([baseline, sorted(set({loaded}) - set(baseline))]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_importing_every_core_module_loads_no_adapter() -> None:
    """Catches what the source scan cannot see: an adapter pulled in through a third-party import.

    MLflow itself loads fastapi and starlette (its server); they are the baseline of importing the registry, the
    MLflow adapter, which must load none of ours, kfp or evidently.
    """
    core = [m for _, m in _core_modules() if not _within(m, "faceops.cli")]
    baseline, added = adapters_loaded(core, baseline=MLFLOW_ADAPTER)
    assert {m.split(".")[0] for m in baseline} <= {"fastapi", "starlette"}, f"the registry loads {baseline}"
    assert added == [], f"importing the core loaded: {added}"


# -- the checks on the installation ----------------------------------------------------------------------------
def test_the_installed_distribution_provides_only_faceops() -> None:
    dist = _installed_distribution()
    files = dist.files or []
    finders = [Path(str(dist.locate_file(f))) for f in files if f.name.startswith("__editable__") and f.name.endswith("_finder.py")]
    mappings = [_finder_mapping(p) for p in finders]
    assert not foreign_top_level_names(dist.read_text("top_level.txt"), [str(f) for f in files], mappings)
    # a .pth that adds a folder to sys.path (a legacy editable install) must expose nothing but faceops
    for pth in (Path(str(dist.locate_file(f))) for f in files if f.suffix == ".pth"):
        for line in pth.read_text().splitlines():
            if line.strip() and not line.startswith(("import ", "#")):
                entries = Path(line.strip()).iterdir()
                exposed = {p.name.removesuffix(".py") for p in entries if p.suffix == ".py" or (p / "__init__.py").is_file()}
                assert exposed <= {"faceops"}, f"{pth} puts {sorted(exposed)} on sys.path"
    for mapping in mappings:  # an editable install maps each installed package to its folder here
        assert {n: Path(p).resolve() for n, p in mapping.items() if n != "faceops"} == {
            package: folder.resolve() for folder, package in TREES.items() if package != "faceops"
        }


def test_pyproject_packages_are_exactly_the_package_folders() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"": "src"} | {
        package: str(folder.relative_to(ROOT)) for folder, package in TREES.items() if package != "faceops"
    }
    listed = config["packages"]
    assert len(listed) == len(set(listed)), "a package is listed twice"
    # faceops.kfp is src/faceops/kfp, the parent of the two Kubeflow adapters
    assert set(listed) == package_names(TREES), (
        f"missing: {sorted(package_names(TREES) - set(listed))}, extra: {sorted(set(listed) - package_names(TREES))}"
    )
    assert not folders_without_init(TREES)


# -- the public API --------------------------------------------------------------------------------------------
def test_public_api_is_pinned() -> None:
    assert set(faceops.__all__) == PUBLIC_API
    assert len(faceops.__all__) == len(PUBLIC_API) and faceops.__all__ == sorted(faceops.__all__)
    assert dir(faceops) == faceops.__all__
    for name in faceops.__all__:
        assert getattr(faceops, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'Pipeline'"):
        faceops.Pipeline  # noqa: B018


# -- each checker catches a planted offender -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "module", "caught"),
    [
        ("import fastapi\n", "faceops.face.gallery", True),
        ("def f():\n    from evidently import Report\n", "faceops.data.report", True),  # inside a function
        ("from starlette.requests import Request\n", "faceops.settings", True),
        ("import uvicorn.config as c\n", "faceops.settings", True),
        ("from faceops import serving\n", "faceops.evaluation.gate", True),  # `serving` is a module
        ("from ..monitoring import config\n", "faceops.face.gallery", True),  # relative: faceops.monitoring
        ("from faceops.kfp.pipelines.run import x\n", "faceops.steps.model", True),
        ("import importlib\nimportlib.import_module('kfp.dsl')\n", "faceops.steps.data", True),
        ("import kfp\n", "faceops.cli.pipeline", True),  # the CLI at module level
        ("def serve():\n    import uvicorn\n", "faceops.cli.serve", False),  # the CLI inside a command
        ("import kfpx, fastapi_like\nfrom faceops.face import serving_size\n", "faceops.face.x", False),
        ("from . import settings\nfrom .gallery import Gallery\n", "faceops.face.x", False),
    ],
)
def test_the_adapter_check_catches_planted_imports(source: str, module: str, caught: bool) -> None:
    assert bool(adapter_imports(source, module)) is caught


def test_relative_imports_resolve_from_a_package_init() -> None:
    assert adapter_imports("from . import serving\n", "faceops", is_package=True) == ["faceops:1: faceops.serving"]
    assert adapter_imports("from .. import monitoring\n", "faceops.face", is_package=True)
    assert not adapter_imports("from . import serving\n", "faceops.face.x")  # faceops.face.serving


def test_the_mlflow_check_catches_planted_imports() -> None:
    assert mlflow_imports("def f():\n    import mlflow.pyfunc\n", "faceops.monitoring.drift")
    assert mlflow_imports("from mlflow.tracking import MlflowClient\n", "faceops.kfp.components.register")
    assert mlflow_imports("import mlflow\n", "faceops.telemetry.reference")
    assert not mlflow_imports("import mlflow\nfrom mlflow import MlflowClient\n", "faceops.registry")


def test_the_sideways_check_catches_planted_imports() -> None:
    assert sideways_imports("from faceops.serving.app import create_app\n", "faceops.monitoring.monitor")
    assert sideways_imports("def f():\n    import faceops.monitoring.window\n", "faceops.serving.routes.ops")
    assert sideways_imports("from faceops.kfp.pipelines.run import x\n", "faceops.kfp.components.train")
    assert sideways_imports("from faceops.kfp.pipelines._graph import wire\n", "faceops.monitoring.trigger")
    assert sideways_imports("from faceops.serving.routes._common import Tracked\n", "faceops.monitoring.window")
    assert sideways_imports("from faceops.cli._common import progress\n", "faceops.serving.app")
    assert not sideways_imports("from faceops.kfp.pipelines.run import trigger_retraining\n", "faceops.monitoring.trigger")
    assert not sideways_imports("from faceops.kfp.components._io import folder\n", "faceops.kfp.components.train")
    assert not sideways_imports("from faceops.kfp.components._io import PROGRESS_ENV\n", "faceops.kfp.pipelines.run")
    assert not sideways_imports("from faceops.serving.routes._common import Tracked\n", "faceops.serving.routes.faces")
    assert not sideways_imports("from faceops.kfp.components.train import train\n", "faceops.kfp.pipelines._graph")


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ("import sys\nsys.path.insert(0, 'src')\n", True),
        ("import sys\nsys.path.append(str(ROOT))\n", True),
        ("import sys\nsys.path = ['x'] + sys.path\n", True),
        ("import sys\nsys.path += ['x']\n", True),
        ("import sys\nsys.path[:0] = ['x']\n", True),
        ("from sys import path\npath.insert(0, 'x')\n", True),
        ("import site\nsite.addsitedir('x')\n", True),
        ("def f(monkeypatch):\n    monkeypatch.syspath_prepend('x')\n", False),  # the fixture undoes itself
        ("import sys\nprint(sys.path)\nos.path.join('a', 'b')\n", False),
    ],
)
def test_the_sys_path_check_catches_planted_edits(source: str, caught: bool) -> None:
    assert bool(sys_path_edits(source, "planted.py")) is caught


def test_the_installation_checks_catch_planted_names(tmp_path: Path) -> None:
    record = ["faceops/__init__.py", "faceops-0.1.0.dist-info/RECORD", "../../../bin/faceops", "__editable__.faceops-0.1.0.pth"]
    assert not foreign_top_level_names("faceops\n", record, [{"faceops": "/x", "faceops.serving": "/y"}])
    assert foreign_top_level_names("faceops\nserving\n", record, []) == ["serving"]
    assert foreign_top_level_names(None, [*record, "pipelines/__init__.py", "tests.py"], []) == ["pipelines", "tests"]
    assert foreign_top_level_names("faceops", record, [{"faceops": "/x", "monitoring": "/y"}]) == ["monitoring"]
    finder = tmp_path / "__editable___x_finder.py"
    finder.write_text("MAPPING: dict[str, str] = {'faceops': '/a', 'components': '/b'}\nNAMESPACES = {}\n")
    assert _finder_mapping(finder) == {"faceops": "/a", "components": "/b"}
    # a package folder missing from a list, and a folder of modules without __init__.py
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "bare").mkdir()
    for file in ("pkg/__init__.py", "pkg/sub/__init__.py", "pkg/bare/mod.py"):
        (tmp_path / file).write_text("")
    assert package_names({tmp_path / "pkg": "faceops.serving"}) == {"faceops.serving", "faceops.serving.sub"}
    assert folders_without_init({tmp_path / "pkg": "faceops.serving"}) == [str(tmp_path / "pkg" / "bare")]


def test_the_import_check_catches_a_planted_module(tmp_path: Path) -> None:
    (tmp_path / "planted_core.py").write_text("import json\nimport uvicorn\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    baseline, added = adapters_loaded(["planted_core"], env=env)
    assert baseline == [] and "uvicorn" in added
