"""Layering and dependency-drift checks.

gridscope's dependency direction is ``app -> pipelines -> data_catalog``: the computation
core and the catalog must import without any UI library, so they can run in batch jobs,
on Dask workers and in notebooks that never show a dashboard.  These tests enforce that
twice: at run time (what ``import pipelines, data_catalog`` really loads) and statically
(every ``import`` statement under the two packages).  They also keep ``environment.yml``
in step with ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Top-level modules that only ``app/`` may import.
UI_MODULES = frozenset({"panel", "bokeh", "holoviews", "hvplot", "datashader", "app"})

#: For each layered package, the top-level modules it must never import.
FORBIDDEN_IMPORTS: dict[str, frozenset[str]] = {
    "pipelines": UI_MODULES,
    "data_catalog": UI_MODULES | {"pipelines"},
}


# --------------------------------------------------------------------------- run time


def test_importing_core_packages_loads_no_ui_library() -> None:
    code = (
        "import pipelines, data_catalog, sys, json; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(UI_MODULES)!r})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"import pipelines, data_catalog pulled in UI modules: {loaded}"


# --------------------------------------------------------------------------- static


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """Return ``(line, absolute module name)`` for every import in one source file.

    Relative imports are resolved against the file's package, and
    ``importlib.import_module("x")`` / ``__import__("x")`` with a literal name count too.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            found.append((node.lineno, name))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            callee = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            first = node.args[0]
            if (
                callee in {"import_module", "__import__"}
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                found.append((node.lineno, first.value))
    return found


def _layering_violations(root: Path) -> list[str]:
    violations = []
    for package, forbidden in FORBIDDEN_IMPORTS.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, name in _imported_modules(path, root):
                if name.split(".")[0] in forbidden:
                    rel = path.relative_to(root)
                    violations.append(f"{rel}:{line}: imports {name!r}")
    return violations


def test_core_packages_do_not_import_upwards() -> None:
    for package in FORBIDDEN_IMPORTS:
        assert (REPO_ROOT / package / "__init__.py").is_file(), package
    violations = _layering_violations(REPO_ROOT)
    assert not violations, "layering is app -> pipelines -> data_catalog:\n" + "\n".join(violations)


def test_static_check_catches_upward_imports(tmp_path: Path) -> None:
    """The checker itself must flag each kind of forbidden import."""
    for package in FORBIDDEN_IMPORTS:
        (tmp_path / package / "sub").mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "sub" / "__init__.py").write_text("")
    (tmp_path / "pipelines" / "ok.py").write_text("import numpy\nfrom data_catalog import x\n")
    (tmp_path / "pipelines" / "bad.py").write_text(
        "import numpy\nimport bokeh.plotting\nfrom holoviews import opts\n"
        "import importlib\nimportlib.import_module('datashader')\n"
    )
    (tmp_path / "data_catalog" / "sub" / "bad.py").write_text(
        "from ...pipelines import reductions\nfrom app.cli import main\nimport panel as pn\n"
    )
    violations = _layering_violations(tmp_path)
    assert sorted(violations) == [
        "data_catalog/sub/bad.py:1: imports 'pipelines'",
        "data_catalog/sub/bad.py:2: imports 'app.cli'",
        "data_catalog/sub/bad.py:3: imports 'panel'",
        "pipelines/bad.py:2: imports 'bokeh.plotting'",
        "pipelines/bad.py:3: imports 'holoviews'",
        "pipelines/bad.py:5: imports 'datashader'",
    ]


def test_ruff_bans_ui_libraries_only_outside_app() -> None:
    """pyproject's ruff config mirrors the layering rule (TID251 in the core packages)."""
    ruff = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    banned = ruff["flake8-tidy-imports"]["banned-api"]
    assert UI_MODULES - {"app"} <= set(banned)
    ignores = ruff.get("per-file-ignores", {})
    for pattern, codes in ignores.items():
        if "TID251" in codes or "TID" in codes:
            assert not pattern.startswith(("pipelines", "data_catalog")), pattern


# --------------------------------------------------------------------------- environment.yml


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _conda_spec(entry: str) -> tuple[str, SpecifierSet]:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", entry)
    assert match, f"cannot parse environment.yml entry {entry!r}"
    name, spec = match.groups()
    return _normalise(name), SpecifierSet(spec.replace(" ", ""))


def _environment_specs(text: str) -> dict[str, SpecifierSet]:
    env = yaml.safe_load(text)
    specs: dict[str, SpecifierSet] = {}
    for entry in env["dependencies"]:
        if isinstance(entry, str):
            name, spec = _conda_spec(entry)
            specs[name] = spec
        elif isinstance(entry, dict) and "pip" in entry:
            for pip_entry in entry["pip"]:
                if pip_entry.startswith("-"):  # e.g. "-e ." installs gridscope itself
                    continue
                req = Requirement(pip_entry)
                specs[_normalise(req.name)] = req.specifier
    return specs


def _drift(pyproject: dict, environment_text: str) -> list[str]:
    project = pyproject["project"]
    runtime = {_normalise(r.name): r.specifier for r in map(Requirement, project["dependencies"])}
    optional = {
        _normalise(Requirement(r).name)
        for reqs in project.get("optional-dependencies", {}).values()
        for r in reqs
    }
    env = _environment_specs(environment_text)
    problems = []
    for name, spec in sorted(runtime.items()):
        if name not in env:
            problems.append(f"{name}: in pyproject.toml, missing from environment.yml")
        elif env[name] != spec:
            problems.append(
                f"{name}: pyproject.toml {spec or 'any'} != environment.yml {env[name] or 'any'}"
            )
    for name in sorted(set(env) - set(runtime) - optional - {"python", "pip"}):
        problems.append(f"{name}: in environment.yml but not a dependency in pyproject.toml")
    python = SpecifierSet(project["requires-python"])
    if env.get("python") != python:
        problems.append(f"python: requires-python {python} != environment.yml {env.get('python')}")
    return problems


def test_environment_yml_matches_pyproject() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    environment = (REPO_ROOT / "environment.yml").read_text()
    assert yaml.safe_load(environment)["name"] == "gridscope"
    assert "-e ." in environment
    assert _drift(pyproject, environment) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace("  - scipy>=1.11\n", ""), "scipy: in pyproject.toml, missing"),
        (lambda t: t.replace("panel>=1.8", "panel>=1.7"), "panel: pyproject.toml >=1.8"),
        (
            lambda t: t.replace("  - pip\n", "  - pip\n  - leftover>=1\n"),
            "leftover: in environment.yml",
        ),
        (lambda t: t.replace("python>=3.11", "python>=3.10"), "python: requires-python"),
    ],
)
def test_environment_drift_is_detected(edit, expected: str) -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    environment = edit((REPO_ROOT / "environment.yml").read_text())
    problems = _drift(pyproject, environment)
    assert any(p.startswith(expected) for p in problems), problems
