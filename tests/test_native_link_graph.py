"""The C engine's files depend on each other one way, as the Python modules do
(tests/test_import_graph.py): no two files of native/src/engine and native/src/ops each call a
function the other defines. Each file is compiled on its own and its symbols read with nm."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "native" / "src" / "engine").glob("*.c")) + sorted((ROOT / "native" / "src" / "ops").glob("*.c"))


@pytest.fixture(scope="module")
def symbols(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[set[str], set[str]]]:
    """Per source file: (functions and data it defines, symbols it needs from elsewhere)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed to build the engine at all"
    out = tmp_path_factory.mktemp("objs")
    table = {}
    for src in SOURCES:
        obj = out / (src.stem + ".o")
        subprocess.run([cc, "-std=c99", "-O0", "-D_POSIX_C_SOURCE=200809L", "-c", "-I", str(ROOT / "native" / "include"), str(src), "-o", str(obj)],
                       check=True, capture_output=True, timeout=120)
        lines = subprocess.run(["nm", str(obj)], check=True, capture_output=True, text=True).stdout.splitlines()
        defined = {ln.split()[-1] for ln in lines if len(ln.split()) == 3 and ln.split()[1] in "TDRB"}
        needed = {ln.split()[-1] for ln in lines if len(ln.split()) == 2 and ln.split()[0] == "U"}
        table[src.relative_to(ROOT).as_posix()] = (defined, needed)
    return table


def test_no_two_engine_files_call_each_other(symbols: dict[str, tuple[set[str], set[str]]]) -> None:
    owner = {sym: f for f, (defined, _) in symbols.items() for sym in defined}
    edges = {f: {owner[s] for s in needed if s in owner and owner[s] != f} for f, (_, needed) in symbols.items()}
    assert edges["native/src/engine/fn_plan.c"], "the graph was not read: the executor calls nothing?"
    cycles = sorted((a, b) for a, deps in edges.items() for b in deps if a < b and a in edges[b])
    assert cycles == []
