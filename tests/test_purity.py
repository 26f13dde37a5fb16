"""The Raft core stays pure (ARCHITECTURE.md): it imports only itself and
side-effect-free parts of the standard library, so a whole cluster can run
in one process, in virtual time, replayable from a seed."""

from __future__ import annotations

import ast
import pathlib

RAFT = pathlib.Path(__file__).resolve().parent.parent / "rqlite_py" / "raft"
ALLOWED = {"__future__", "collections", "dataclasses", "enum", "json", "random", "typing"}


def _imports(path: pathlib.Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.module or "", node.lineno))
    return found


def test_raft_core_imports_nothing_impure() -> None:
    bad = [
        f"{path.name}:{line}: {name}"
        for path in sorted(RAFT.glob("*.py"))
        for name, line in _imports(path)
        if name.split(".")[0] not in ALLOWED
    ]
    assert not bad, bad


def test_raft_core_uses_no_global_random() -> None:
    """Randomness comes from the Random instance each core is given."""
    for path in sorted(RAFT.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert not (node.value.id == "random" and node.attr != "Random"), (
                    f"{path.name}:{node.lineno}: random.{node.attr}"
                )
