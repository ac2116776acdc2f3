"""The architecture's rules, checked on the source: imports only go downwards."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import moviedb
import moviedb.client

SRC = Path(moviedb.__file__).parent
CORE = {
    "moviedb.model",
    "moviedb.versions",
    "moviedb.protocol",
    "moviedb.digests",
    "moviedb.errors",
}


def tier(module: str) -> str:
    if module in CORE:
        return "core"
    if module.startswith("moviedb.server"):
        return "server"
    if module.startswith("moviedb.client"):
        return "client"
    return "interface"


ALLOWED = {
    "core": {"core"},
    "server": {"core", "server"},
    "client": {"core", "client"},
    "interface": {"core", "client", "interface"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "moviedb" and node.level == 0:
            names.update(f"moviedb.{alias.name}" for alias in node.names)  # from moviedb import x
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("moviedb.")}


MODULES = sorted(p for p in SRC.rglob("*.py") if module_name(p) != "moviedb")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_only_go_downwards(path: Path) -> None:
    own = tier(module_name(path))
    wrong = {m for m in imported(path) if tier(m) not in ALLOWED[own]}
    assert not wrong, f"{module_name(path)} ({own}) must not import {sorted(wrong)}"


def test_core_does_no_io() -> None:
    forbidden = {"socket", "asyncio", "sqlite3", "os", "pathlib", "subprocess", "time"}
    for name in CORE:
        path = SRC / (name.split(".")[1] + ".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        used = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}  # fmt: skip
        used |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module}  # fmt: skip
        assert not used & forbidden, f"{name} imports {sorted(used & forbidden)}"


def test_server_process_does_not_load_the_client() -> None:
    code = (
        "import sys, moviedb.server.__main__; "
        "print(any(m.startswith('moviedb.client') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("package", [moviedb, moviedb.client], ids=lambda p: p.__name__)
def test_public_names_are_sorted_and_complete(package: object) -> None:
    names = package.__all__  # type: ignore[attr-defined]
    assert names == sorted(names)
    for name in names:
        assert getattr(package, name) is not None
    if package is moviedb:
        assert set(names) == set(moviedb._HOMES)
