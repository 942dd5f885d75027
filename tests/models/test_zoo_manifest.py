"""The model zoo as committed: files, digests, cards and manifest agree with what LiteRT runs.

No TensorFlow here: the models are checked with the pinned oracle (ai-edge-litert, builtin
kernels, no delegate), the way the engine's bit-exactness tests will load them.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import json
import platform
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

ZOO = Path(__file__).resolve().parents[2] / "models" / "zoo"
MANIFEST: dict[str, Any] = json.loads((ZOO / "manifest.json").read_text())
MODELS: list[dict[str, Any]] = MANIFEST["models"]
BY_NAME = {m["name"]: m for m in MODELS}
# Every architecture the zoo promises; a model that silently failed to build must fail here.
EXPECTED = {
    "mobilenet_v1_025_64",
    "mobilenet_v2_035_64",
    "mobilenet_v3_small_050_64",
    "resnet8_32",
    "ds_cnn_kws",
    "fc_autoencoder",
    "transformer_tiny",
    "resnet8_32_dynbatch",
    "transformer_tiny_dynbatch",
    "mobilenet_v2_100_224",
}


def interpreter(model: dict[str, Any]) -> Interpreter:
    interp = Interpreter(
        model_path=str(ZOO / model["file"]),
        num_threads=1,
        experimental_op_resolver_type=(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
    )
    interp.allocate_tensors()
    return interp


def spec(detail: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = detail["quantization"]
    return {
        "name": detail["name"],
        "dtype": np.dtype(detail["dtype"]).name,
        "shape": [int(d) for d in detail["shape"]],
        "shape_signature": [int(d) for d in detail["shape_signature"]],
        "scale": float(scale),
        "zero_point": int(zero_point),
    }


def run(interp: Interpreter, seed: int) -> list[np.ndarray]:
    for d in interp.get_input_details():
        info = np.iinfo(d["dtype"])
        x = np.random.default_rng(seed).integers(info.min, info.max + 1, d["shape"])
        interp.set_tensor(d["index"], x.astype(d["dtype"]))
    interp.invoke()
    return [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]


def signature(op: dict[str, Any]) -> str:
    ins = ",".join(np.dtype(t).name for t in op["operand_types"])
    outs = ",".join(np.dtype(t).name for t in op["result_types"])
    return f"{op['op_name']}({ins}->{outs})"


def card_table(text: str, heading: str) -> dict[str, int]:
    """The `| key | count |` rows of the table that follows a card's heading line."""
    section = text.split(heading, 1)[1]
    rows: dict[str, int] = {}
    started = False
    for line in section.splitlines():
        m = re.fullmatch(r"\| `?([^|`]+)`? \| (\d+) \|", line.strip())
        if m:
            rows[m.group(1)] = int(m.group(2))
            started = True
        elif started and not line.startswith("|"):
            break
    return rows


def test_manifest_holds_exactly_the_committed_models() -> None:
    files = {p.name for p in ZOO.glob("*.tflite")}
    assert {m["file"] for m in MODELS} == files
    assert set(BY_NAME) == EXPECTED
    for m in MODELS:
        assert (ZOO / m["card"]).is_file()


def test_zoo_stays_small() -> None:
    # The zoo is committed to git; a few MB at most: the full-size MobileNet v2 is 2.7 MB of it,
    # every other model stays under 1 MB.
    assert sum(m["size_bytes"] for m in MODELS) < 6 * 1024 * 1024
    assert all(m["size_bytes"] < 1024 * 1024 for m in MODELS if m["name"] != "mobilenet_v2_100_224")


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_file_digest_and_size_match_manifest_and_card(name: str) -> None:
    m = BY_NAME[name]
    data = (ZOO / m["file"]).read_bytes()
    assert len(data) == m["size_bytes"]
    assert hashlib.sha256(data).hexdigest() == m["sha256"]
    assert m["sha256"] in (ZOO / m["card"]).read_text()


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_litert_runs_model_with_manifest_tensors(name: str) -> None:
    m = BY_NAME[name]
    interp = interpreter(m)
    assert [spec(d) for d in interp.get_input_details()] == m["inputs"]
    assert [spec(d) for d in interp.get_output_details()] == m["outputs"]
    for t in m["inputs"] + m["outputs"]:
        assert t["dtype"] == "int8" and t["scale"] > 0
    first = run(interp, 1)
    for out, want in zip(first, m["outputs"]):
        assert out.dtype == np.int8 and list(out.shape) == want["shape"]
    # A collapsed model (constant output) would exercise nothing in the engine.
    others = [run(interp, seed) for seed in range(2, 6)]
    assert any(not np.array_equal(first[0], o[0]) for o in others)


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_litert_ops_equal_manifest_and_card(name: str) -> None:
    m = BY_NAME[name]
    ops = interpreter(m)._get_ops_details()
    counts = dict(collections.Counter(op["op_name"] for op in ops))
    signatures = dict(collections.Counter(signature(op) for op in ops))
    assert counts == m["ops"]
    assert signatures == m["op_signatures"]
    assert len(ops) == m["op_count"]
    text = (ZOO / m["card"]).read_text()
    assert card_table(text, "## Ops as LiteRT") == counts
    assert card_table(text, "With tensor types") == signatures
    floats = sorted({s for s in signatures if "float32" in s})
    assert floats == m["float32_ops"]


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_card_node_table_follows_litert_execution_order(name: str) -> None:
    m = BY_NAME[name]
    ops = [op["op_name"] for op in interpreter(m)._get_ops_details()]
    nodes = (ZOO / m["card"]).read_text().split("## Nodes", 1)[1]
    rows = [line.split("|")[1:3] for line in nodes.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [(int(i), op.strip()) for i, op in rows] == list(enumerate(ops))
    assert sum(m["kernel_variants"].values()) == len(ops)


def test_readme_table_lists_every_model() -> None:
    readme = (ZOO.parent / "README.md").read_text()
    for m in MODELS:
        assert re.search(rf"\| `{m['name']}` \| .* \| {m['size_bytes']:,} \|", readme), m["name"]


@pytest.mark.skipif(
    platform.machine() != "x86_64",
    reason="the digests are of x86-64 LiteRT; its ARM path rounds differently",
)
@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_reference_output_digest(name: str) -> None:
    m = BY_NAME[name]
    outputs = run(interpreter(m), 7)  # the seed make_zoo.py's reference_input() uses
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(o).tobytes() for o in outputs))
    assert digest.hexdigest() == m["reference_output_sha256"]


# MACs counted by hand from the architectures: output elements x reduction depth.
HAND_MACS = {
    # MLPerf Tiny's ResNet-8 on 32x32x3: stem, 3 stacks (1x1 shortcuts in 2 and 3), dense.
    "resnet8_32": {
        "CONV_2D": 32 * 32 * 16 * 27
        + 2 * 32 * 32 * 16 * 144
        + (16 * 16 * 32 * 144 + 16 * 16 * 32 * 288 + 16 * 16 * 32 * 16)
        + (8 * 8 * 64 * 288 + 8 * 8 * 64 * 576 + 8 * 8 * 64 * 32),
        "FULLY_CONNECTED": 64 * 10,
    },
    # DS-CNN: 10x4 stride-2 stem to 25x5x64, 4 x (3x3 depthwise + 1x1 to 64), dense to 12.
    "ds_cnn_kws": {
        "CONV_2D": 25 * 5 * 64 * (10 * 4) + 4 * 25 * 5 * 64 * 64,
        "DEPTHWISE_CONV_2D": 4 * 25 * 5 * 64 * 9,
        "FULLY_CONNECTED": 64 * 12,
    },
    # 16 steps: projection 12->32, Q K V O 32->32, feed-forward 32->64->32, classifier 32->4;
    # attention: 2 heads x (QK^T 16x16 over 16 + AV 16x16 over 16).
    "transformer_tiny": {
        "BATCH_MATMUL": 2 * (2 * 16 * 16 * 16),
        "FULLY_CONNECTED": 16 * 12 * 32 + 4 * 16 * 32 * 32 + 2 * 16 * 32 * 64 + 32 * 4,
    },
}
HAND_MACS["transformer_tiny_dynbatch"] = HAND_MACS["transformer_tiny"]


@pytest.mark.parametrize("name", sorted(HAND_MACS))
def test_macs_match_hand_count(name: str) -> None:
    assert BY_NAME[name]["macs_by_op"] == HAND_MACS[name]
    assert BY_NAME[name]["macs"] == sum(HAND_MACS[name].values())


def test_union_of_signatures_is_the_sum_over_models() -> None:
    union: collections.Counter[str] = collections.Counter()
    for m in MODELS:
        union.update(m["op_signatures"])
    assert dict(union) == MANIFEST["op_signature_union"]


def test_cards_manifest_and_readme_are_what_make_zoo_describe_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The committed text must be regenerated, not hand-edited: rerun the describe phase on a
    # copy of the models and compare every file it writes.
    spec = importlib.util.spec_from_file_location("make_zoo", ZOO.parent / "make_zoo.py")
    assert spec is not None and spec.loader is not None
    make_zoo = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_zoo", make_zoo)  # dataclasses look their module up
    spec.loader.exec_module(make_zoo)
    copy = tmp_path / "zoo"
    copy.mkdir()
    for p in [*ZOO.glob("*.tflite"), ZOO / "build.json"]:
        shutil.copy(p, copy / p.name)
    readme = tmp_path / "README.md"
    shutil.copy(ZOO.parent / "README.md", readme)
    make_zoo.describe(copy, readme)
    written = sorted(p.name for p in copy.iterdir() if p.suffix in (".md", ".json"))
    assert written == sorted(p.name for p in ZOO.iterdir() if p.suffix in (".md", ".json"))
    for name in written:
        assert (copy / name).read_text() == (ZOO / name).read_text(), name
    assert readme.read_text() == (ZOO.parent / "README.md").read_text()
