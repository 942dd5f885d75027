"""`fleetnode infer`: run a .tflite model on .npy inputs and write the outputs to an .npz file;
`fleetnode model show`: what a model is and whether this engine runs it.

    fleetnode infer MODEL.tflite --input IN.npy [--input IN2.npy ...] --output OUT.npz
                    [--backend native|litert] [--delegate LIB.so]
    fleetnode model show MODEL.tflite [--json]

One .npy per model input, in the model's input order; the .npz holds output_0, output_1, ...
Exit status of infer: 0 on success, 2 for bad arguments, inputs or models (with one line saying
why). Of model show: 0 for a model the engine runs, 1 for one it refuses (the reason is part of
the report), 2 for a file that cannot be read as a model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.inference import ModelError, load_model, read_model
from agent.inference.describe import describe, text_report


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "infer", help="run a .tflite model on .npy inputs",
        description="Run an int8 .tflite model on .npy inputs (one per model input, in order) and write "
                    "output_0, output_1, ... to an .npz file. The native backend is bit-exact with "
                    "LiteRT's builtin kernels.")
    _arguments(p)
    p.set_defaults(func=run)
    model = subparsers.add_parser(
        "model", help="inspect .tflite models",
        description="Inspect .tflite models before giving them to the engine or the fleet.")
    model_sub = model.add_subparsers(dest="model_command", metavar="COMMAND", required=True)
    show = model_sub.add_parser(
        "show", help="a model's inputs, outputs, operators, arena, MACs and job signature",
        description="Show a model in its own terms: inputs and outputs (names, shapes, types, "
                    "quantization), operators with their counts and whether the engine supports "
                    "each, the arena the native engine needs, the MAC count, and the signature "
                    "(dtype and shape per input, in order) a fleet job's inputs must match. "
                    "Exit status: 0 supported, 1 refused (the reason is in the report), "
                    "2 not a readable model.")
    show.add_argument("model", type=Path, metavar="MODEL.tflite", help="the model file")
    show.add_argument("--json", action="store_true", help="one JSON object instead of text")
    show.set_defaults(func=show_model)


def show_model(args: argparse.Namespace) -> int:
    try:
        info = describe(read_model(args.model))
    except ModelError as e:
        print(f"fleetnode model show: error: {args.model}: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"file": str(args.model), **info.as_dict()}, indent=2))
    else:
        print(text_report(str(args.model), info))
    return 0 if info.refusal is None else 1


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, metavar="MODEL.tflite", help="the model file")
    p.add_argument("--input", dest="inputs", action="append", type=Path, default=[], metavar="IN.npy",
                   help="an input array; repeat once per model input, in order")
    p.add_argument("--output", required=True, type=Path, metavar="OUT.npz", help="where to write the outputs")
    p.add_argument("--backend", choices=("native", "litert"), default="native",
                   help="native: our C kernels (default); litert: LiteRT's interpreter")
    p.add_argument("--delegate", metavar="LIB.so", default=None,
                   help="a LiteRT delegate library (litert backend only)")


def _fail(msg: str) -> int:
    print(f"fleetnode infer: error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.delegate is not None and args.backend != "litert":
        return _fail("--delegate needs --backend litert")
    try:
        model = load_model(args.model, backend=args.backend, delegate=args.delegate)
    except ModelError as e:
        return _fail(f"{args.model}: {e}")
    if len(args.inputs) != len(model.inputs):
        want = ", ".join(f"{s.name} {s.dtype}{list(s.shape)}" for s in model.inputs)
        return _fail(f"the model takes {len(model.inputs)} input(s) ({want}); got {len(args.inputs)} --input")
    arrays = []
    for k, (path, spec) in enumerate(zip(args.inputs, model.inputs)):
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            return _fail(f"input {k} ({path}): cannot read an .npy array: {e}")
        if not isinstance(a, np.ndarray):
            return _fail(f"input {k} ({path}): not a single .npy array")
        if a.dtype != spec.dtype or tuple(a.shape) != spec.shape:
            return _fail(f"input {k} ({path}) is {a.dtype}{list(a.shape)}; "
                         f"model input '{spec.name}' needs {spec.dtype}{list(spec.shape)}")
        arrays.append(np.ascontiguousarray(a))
    try:
        outs = model.run(arrays)
    except ModelError as e:
        return _fail(str(e))
    try:
        with open(args.output, "wb") as f:
            arrays_out: dict[str, Any] = {f"output_{i}": o for i, o in enumerate(outs)}
            np.savez(f, **arrays_out)
    except OSError as e:
        return _fail(f"cannot write {args.output}: {e}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fleetnode infer", description=__doc__.splitlines()[0] if __doc__ else None)
    _arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
