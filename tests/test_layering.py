"""The runtime's parts talk through narrow interfaces: no module reaches into another's private
members (``other._name``), and the sans-io layer (``router/``) imports nothing of the rest."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("actors", "router", "runtime")


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py"))


def _private_names_defined(tree: ast.AST) -> set[str]:
    """``_names`` a module defines for itself: attributes it assigns, methods, slots."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return {n for n in names if n.startswith("_")}


def test_no_module_reads_another_modules_private_members() -> None:
    offences = []
    for path in _modules():
        tree = ast.parse(path.read_text(), str(path))
        own = _private_names_defined(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            if not name.startswith("_") or name.startswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if name in own:
                continue  # a private member of this module's own classes
            offences.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{name}")
    assert not offences, "private members used across modules:\n" + "\n".join(offences)


def test_router_is_sans_io_and_self_contained() -> None:
    for path in sorted((ROOT / "router").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                top = node.module.split(".")[0]
                assert top not in ("runtime", "actors", "asyncio", "zmq", "socket"), (
                    f"{path.name} imports {node.module}"
                )
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    assert top not in ("runtime", "actors", "asyncio", "zmq", "socket"), (
                        f"{path.name} imports {alias.name}"
                    )
