"""Dependencies point one way: no two modules of agent/ import each other, whether at the top,
inside a function or only for type checking."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "agent"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# Compiled extensions (agent/inference/_native) count through their .pyi stubs.
MODULES = {_module(p): p for p in sorted(AGENT.rglob("*.py*")) if p.suffix in (".py", ".pyi")}


def _resolve(name: str) -> str | None:
    """The agent module `name` refers to: itself, or the nearest package above it."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module: str) -> set[str]:
    """Every agent module `module` names in an import statement, anywhere in its body."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        out |= {m for m in map(_resolve, names) if m is not None and m != module}
    return out


def test_the_import_graph_is_read() -> None:
    assert "agent.inference.ops" in imports("agent.inference.planner")
    assert "agent.fleet.pki" in imports("agent.fleet.acl")
    assert "agent.inference.quant" in imports("agent.inference.ops.fully_connected")


def test_no_two_agent_modules_import_each_other() -> None:
    graph = {m: imports(m) for m in MODULES}
    pairs = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph.get(b, ())})
    assert pairs == []
