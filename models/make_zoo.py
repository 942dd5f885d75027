"""Builds fleetnode's model zoo: small int8 fully-quantized .tflite models, their cards, a manifest.

The zoo is the engine's workload: every op that appears here (with its tensor types) is a kernel
the native engine must reproduce bit for bit against LiteRT's builtin kernels.

Two phases, run by two interpreters, because TensorFlow is only an optional extra (`zoo`):

  build     needs TensorFlow (`pip install tensorflow-cpu==2.21.0` in a separate venv). Builds each
            Keras model, trains it a few epochs on seeded synthetic data (so that batch-norm
            statistics and activation ranges are those of a trained net, not of an initialiser),
            and converts it with full-integer quantization. Writes models/zoo/<name>.tflite and
            the training record models/zoo/build.json.
  describe  needs only numpy and ai-edge-litert. Loads each model in LiteRT with the builtin
            kernels and no delegate, runs it, and writes models/zoo/<name>.md and
            models/zoo/manifest.json (sha256, tensors, ops as LiteRT reports them, MACs).

    /work/tfvenv/bin/python models/make_zoo.py build            # all models, or --only NAME ...
    .venv/bin/python models/make_zoo.py describe

Everything is seeded; TensorFlow runs single-threaded with deterministic ops, so a rebuild on the
same TensorFlow version gives the same bytes.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ZOO = Path(__file__).resolve().parent / "zoo"
BUILD_RECORD = "build.json"  # in the zoo directory, as is MANIFEST
MANIFEST = "manifest.json"
README = ZOO.parent / "README.md"
TABLE_BEGIN, TABLE_END = (
    "<!-- zoo table: written by make_zoo.py describe -->",
    "<!-- end zoo table -->",
)
SEED = 20261123
TENSORFLOW_VERSION = "2.21.0"
# The fixed input every model is run on in `describe`; its output digest is the reference vector.
REFERENCE_INPUT_SEED = 7


# --------------------------------------------------------------------------------------------
# Synthetic data. Each task is learnable (class templates plus noise), so a few epochs move the
# weights and the batch-norm statistics away from their initial values.
# --------------------------------------------------------------------------------------------


def _smooth_templates(
    rng: np.random.Generator, count: int, shape: tuple[int, ...], coarse: tuple[int, ...]
) -> np.ndarray:
    """Random low-frequency patterns: coarse noise upsampled by repetition, then box-blurred."""
    grid = rng.standard_normal((count, *coarse)).astype(np.float32)
    out = grid
    for axis, r in enumerate((s // c for s, c in zip(shape, coarse)), start=1):
        out = np.repeat(out, r, axis=axis)
    for axis in range(1, len(shape) + 1):
        if out.shape[axis] > 2:
            out = (out + np.roll(out, 1, axis=axis) + np.roll(out, -1, axis=axis)) / 3.0
    return out


def images(
    rng: np.random.Generator, n: int, size: int, classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images in [-1, 1], as a MobileNet/ResNet front end expects after its preprocessing."""
    templates = _smooth_templates(
        np.random.default_rng(SEED),
        classes,
        (size, size, 3),
        (4, 4, 3) if size % 4 == 0 else (1, 1, 3),
    )
    labels = rng.integers(0, classes, n)
    shifts = rng.integers(-size // 8, size // 8 + 1, (n, 2))
    x = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        t = np.roll(templates[labels[i]], tuple(shifts[i]), axis=(0, 1))
        x[i] = 0.7 * t + 0.35 * rng.standard_normal((size, size, 3))
    return np.clip(x, -1.0, 1.0), labels


def mfcc(rng: np.random.Generator, n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """49 frames x 10 MFCCs: low coefficients carry most energy, as in real MFCC features."""
    templates = _smooth_templates(np.random.default_rng(SEED + 1), classes, (49, 10), (7, 10))
    coeff_scale = np.linspace(12.0, 2.0, 10, dtype=np.float32)
    labels = rng.integers(0, classes, n)
    shifts = rng.integers(-6, 7, n)
    x = np.empty((n, 49, 10, 1), np.float32)
    for i in range(n):
        t = np.roll(templates[labels[i]], shifts[i], axis=0)
        x[i, :, :, 0] = (t + 0.5 * rng.standard_normal((49, 10))) * coeff_scale
    return x, labels


def log_mel_frames(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """5 frames x 128 log-mel bins (dB-like), a machine's hum: a few harmonic ridges on a slope."""
    bins = np.arange(128, dtype=np.float32)
    x = np.empty((n, 640), np.float32)
    for i in range(n):
        f0 = rng.uniform(6.0, 14.0)
        ridges = sum(np.exp(-0.5 * ((bins - k * f0) / 1.5) ** 2) for k in range(1, 9))
        frames = -50.0 + 0.15 * (128 - bins) + 25.0 * ridges
        frames = frames[None, :] + 3.0 * rng.standard_normal((5, 128))
        x[i] = frames.reshape(-1)
    return x, x


def sequences(
    rng: np.random.Generator, n: int, length: int, features: int, classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Multichannel sequences: each class is a set of per-channel frequencies and phases."""
    crng = np.random.default_rng(SEED + 2)
    freqs = crng.uniform(0.05, 0.45, (classes, features)).astype(np.float32)
    phases = crng.uniform(0, 2 * np.pi, (classes, features)).astype(np.float32)
    t = np.arange(length, dtype=np.float32)[:, None]
    labels = rng.integers(0, classes, n)
    offsets = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    x = np.empty((n, length, features), np.float32)
    for i in range(n):
        c = labels[i]
        x[i] = np.sin(2 * np.pi * freqs[c] * t + phases[c] + offsets[i])
        x[i] += 0.3 * rng.standard_normal((length, features))
    return x, labels


# --------------------------------------------------------------------------------------------
# Models. Builders import TensorFlow lazily so `describe` runs without it.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    architecture: str
    input_shape: tuple[int, ...]
    build: Callable[[], Any]
    data: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]
    loss: str
    data_description: str
    epochs: int = 3
    train_samples: int = 512
    batch_size: int = 32
    learning_rate: float = 1e-3
    metrics: tuple[str, ...] = ("accuracy",)
    # Training samples in the one forward pass that sets the batch-norm statistics: the pass
    # holds every activation of the batch, about 90 MB per 224x224 image in MobileNet v2.
    recalibration_samples: int = 256
    # Also convert the same trained model with a dynamic batch dimension, as a Keras model with
    # the default Input(batch_size=None) converts: its graph then computes shapes at run time.
    dynamic_batch_variant: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def _keras() -> Any:
    import keras

    return keras


def build_mobilenet_v1() -> Any:
    k = _keras()
    return k.applications.MobileNet(
        input_shape=(64, 64, 3), alpha=0.25, weights=None, classes=10, dropout=0.0
    )


def build_mobilenet_v2() -> Any:
    k = _keras()
    return k.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, weights=None, classes=10)


def build_mobilenet_v2_224() -> Any:
    """The full-size network: width 1.0 at 224x224, as in the LiteRT benchmark suites."""
    k = _keras()
    return k.applications.MobileNetV2(
        input_shape=(224, 224, 3), alpha=1.0, weights=None, classes=10
    )


def build_mobilenet_v3_small() -> Any:
    k = _keras()
    return k.applications.MobileNetV3Small(
        input_shape=(64, 64, 3),
        alpha=0.5,
        minimalistic=False,
        weights=None,
        classes=10,
        include_preprocessing=False,
        dropout_rate=0.0,
    )


def build_resnet8() -> Any:
    """MLPerf Tiny image classification's ResNet-8 (CIFAR-10 shape): 3 stacks of 16/32/64."""
    k = _keras()
    L = k.layers
    reg = k.regularizers.l2(1e-4)

    def conv(x: Any, filters: int, kernel: int, stride: int) -> Any:
        return L.Conv2D(
            filters,
            kernel,
            strides=stride,
            padding="same",
            kernel_initializer="he_normal",
            kernel_regularizer=reg,
        )(x)

    inp = L.Input((32, 32, 3), name="image")
    x = L.ReLU()(L.BatchNormalization()(conv(inp, 16, 3, 1)))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = L.ReLU()(L.BatchNormalization()(conv(x, filters, 3, stride)))
        y = L.BatchNormalization()(conv(y, filters, 3, 1))
        if stride != 1:
            x = conv(x, filters, 1, stride)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.AveragePooling2D(pool_size=8)(x)
    x = L.Flatten()(x)
    out = L.Dense(10, activation="softmax", kernel_initializer="he_normal")(x)
    return k.Model(inp, out, name="resnet8")


def build_ds_cnn() -> Any:
    """DS-CNN small keyword spotter (ARM ML-KWS, MLPerf Tiny): 49x10 MFCC in, 12 classes out."""
    k = _keras()
    L = k.layers
    inp = L.Input((49, 10, 1), name="mfcc")
    x = L.Conv2D(64, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inp)
    x = L.ReLU()(L.BatchNormalization()(x))
    for _ in range(4):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
        x = L.Conv2D(64, 1, use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
    x = L.AveragePooling2D(pool_size=(int(x.shape[1]), int(x.shape[2])))(x)
    x = L.Flatten()(x)
    out = L.Dense(12, activation="softmax")(x)
    return k.Model(inp, out, name="ds_cnn")


def build_fc_autoencoder() -> Any:
    """MLPerf Tiny anomaly detection's dense autoencoder, narrowed: 640-64-64-8-64-64-640."""
    k = _keras()
    L = k.layers
    inp = L.Input((640,), name="log_mel")
    x = inp
    for units in (64, 64, 8, 64, 64):
        x = L.ReLU()(L.BatchNormalization()(L.Dense(units)(x)))
    out = L.Dense(640)(x)
    return k.Model(inp, out, name="fc_autoencoder")


def build_transformer() -> Any:
    """One pre-norm transformer encoder block: 16 steps, d_model 32, 2 heads, GELU feed-forward."""
    k = _keras()
    L = k.layers
    length, features, d_model = 16, 12, 32
    inp = L.Input((length, features), name="sequence")
    x = L.Dense(d_model)(inp)
    x = PositionEmbedding(length, d_model)(x)
    h = L.LayerNormalization(epsilon=1e-5)(x)
    h = L.MultiHeadAttention(num_heads=2, key_dim=d_model // 2)(h, h)
    x = L.Add()([x, h])
    h = L.LayerNormalization(epsilon=1e-5)(x)
    h = L.Dense(2 * d_model, activation="gelu")(h)
    h = L.Dense(d_model)(h)
    x = L.Add()([x, h])
    x = L.LayerNormalization(epsilon=1e-5)(x)
    x = L.GlobalAveragePooling1D()(x)
    out = L.Dense(4, activation="softmax")(x)
    return k.Model(inp, out, name="transformer_tiny")


def _position_embedding_class() -> Any:
    k = _keras()

    class PositionTable(k.layers.Layer):  # type: ignore[misc, name-defined]
        """A learned (length, d_model) table added to every sequence."""

        def __init__(self, length: int, d_model: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.table = self.add_weight(
                shape=(length, d_model), initializer="random_normal", name="position"
            )

        def call(self, x: Any) -> Any:
            return x + self.table

    return PositionTable


def PositionEmbedding(length: int, d_model: int) -> Any:
    # An explicit name: SavedModel refuses variable scopes that start with an underscore.
    return _position_embedding_class()(length, d_model, name="position_embedding")


def _image_data(size: int) -> Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]:
    return lambda rng, n: images(rng, n, size, 10)


def _image_recipe(
    name: str,
    summary: str,
    architecture: str,
    size: int,
    builder: Callable[[], Any],
    **training: Any,
) -> Recipe:
    """An image classifier on `images()`: 10 classes, cross-entropy."""
    return Recipe(
        name,
        summary,
        architecture,
        (size, size, 3),
        builder,
        _image_data(size),
        "sparse_categorical_crossentropy",
        "per-class smooth random patterns in [-1, 1], randomly shifted, plus Gaussian noise "
        "(`images()`)",
        **training,
    )


RECIPES: tuple[Recipe, ...] = (
    _image_recipe(
        "mobilenet_v1_025_64",
        "MobileNet v1, width 0.25, 64x64x3 image, 10 classes",
        "keras.applications.MobileNet(alpha=0.25, weights=None, dropout=0)",
        64,
        build_mobilenet_v1,
        epochs=4,
        train_samples=2048,
    ),
    _image_recipe(
        "mobilenet_v2_035_64",
        "MobileNet v2, width 0.35, 64x64x3 image, 10 classes",
        "keras.applications.MobileNetV2(alpha=0.35, weights=None)",
        64,
        build_mobilenet_v2,
        epochs=4,
        train_samples=2048,
    ),
    _image_recipe(
        "mobilenet_v3_small_050_64",
        "MobileNet v3 small, width 0.5, hard-swish and squeeze-excite, 64x64x3, 10 classes",
        "keras.applications.MobileNetV3Small(alpha=0.5, minimalistic=False, weights=None, "
        "include_preprocessing=False, dropout_rate=0)",
        64,
        build_mobilenet_v3_small,
        epochs=4,
        train_samples=2048,
    ),
    _image_recipe(
        "resnet8_32",
        "ResNet-8 (MLPerf Tiny image classification), 32x32x3, 10 classes",
        "3 residual stacks (16, 32, 64 filters), 1x1 projection shortcuts, average pool, dense",
        32,
        build_resnet8,
        dynamic_batch_variant=True,
    ),
    Recipe(
        "ds_cnn_kws",
        "DS-CNN keyword spotting (MLPerf Tiny / ARM ML-KWS), 49x10 MFCC, 12 words",
        "conv 10x4/2 64ch, 4 x (depthwise 3x3 + pointwise 64), average pool, dense",
        (49, 10, 1),
        build_ds_cnn,
        lambda rng, n: mfcc(rng, n, 12),
        "sparse_categorical_crossentropy",
        "per-word smooth 49x10 patterns shifted in time, plus noise, each MFCC scaled from 12 "
        "(c0) down to 2 (c9) as real MFCC energies fall (`mfcc()`)",
    ),
    Recipe(
        "fc_autoencoder",
        "dense autoencoder (MLPerf Tiny anomaly detection), 640 in, 640 out",
        "dense 64-64-8-64-64 with batch norm and ReLU, dense 640 linear output",
        (640,),
        build_fc_autoencoder,
        log_mel_frames,
        "mse",
        "5 frames x 128 log-mel bins in dB: a falling slope with 8 harmonic ridges of a random "
        "fundamental, plus noise; the target is the input (`log_mel_frames()`)",
        epochs=30,
        learning_rate=3e-3,
        metrics=(),
    ),
    Recipe(
        "transformer_tiny",
        "transformer encoder block: 16 steps x 12 features, d_model 32, 2 heads, 4 classes",
        "dense 12->32, learned position table, pre-norm layer norm, 2-head self-attention "
        "(key_dim 16), residual, layer norm, GELU feed-forward 64, residual, layer norm, "
        "mean over steps, dense softmax",
        (16, 12),
        build_transformer,
        lambda rng, n: sequences(rng, n, 16, 12, 4),
        "sparse_categorical_crossentropy",
        "12 noisy sinusoids per sequence, with per-class frequencies and phases and a random "
        "common phase offset (`sequences()`)",
        epochs=5,
        dynamic_batch_variant=True,
    ),
    # Last in the list: each recipe's seed is SEED + its index, so appending keeps every other
    # model's bytes. Two short epochs on 256 images (16 steps): enough for the batch-norm
    # statistics and activation ranges to be a trained net's; batch-norm statistics of 32
    # images (1.6 M pixels per channel), since 256 at 224x224 in one pass need over 20 GB.
    _image_recipe(
        "mobilenet_v2_100_224",
        "MobileNet v2, width 1.0, 224x224x3 image (the full-size network), 10 classes",
        "keras.applications.MobileNetV2(alpha=1.0, input_shape=(224, 224, 3), weights=None)",
        224,
        build_mobilenet_v2_224,
        epochs=2,
        train_samples=256,
        recalibration_samples=32,
    ),
)


def recipe(name: str) -> Recipe:
    for r in RECIPES:
        if r.name == name:
            return r
    raise SystemExit(f"unknown model {name!r}; known: {', '.join(r.name for r in RECIPES)}")


# --------------------------------------------------------------------------------------------
# build phase (TensorFlow)
# --------------------------------------------------------------------------------------------


def _setup_tensorflow() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN reorders float sums
    import tensorflow as tf

    if tf.__version__ != TENSORFLOW_VERSION:
        print(
            f"warning: TensorFlow {tf.__version__}, the zoo was made with {TENSORFLOW_VERSION}",
            file=sys.stderr,
        )
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    return tf


DYNAMIC_SUFFIX = "_dynbatch"


def _convert(
    tf: Any, model: Any, r: Recipe, calibration: np.ndarray, batch: int | None
) -> tuple[bytes, list[str]]:
    """Full-integer quantization; int8-only builtins first, float fallback only if refused."""
    # Keras 3's own export path; the concrete-function route leaves READ_VARIABLE ops behind.
    from tensorflow.lite.python.convert_phase import ConverterError

    saved = Path(tempfile.mkdtemp(prefix=f"zoo-{r.name}-"))
    archive = _keras().export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((batch, *r.input_shape), tf.float32, name="input")],
    )
    archive.write_out(str(saved), verbose=False)

    def representative() -> Iterator[list[np.ndarray]]:
        for sample in calibration:
            yield [sample[None, ...].astype(np.float32)]

    attempts = (
        ["TFLITE_BUILTINS_INT8"],
        ["TFLITE_BUILTINS_INT8", "TFLITE_BUILTINS"],
    )
    last_error: Exception | None = None
    for ops in attempts:
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [getattr(tf.lite.OpsSet, o) for o in ops]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        try:
            flat = bytes(conv.convert())
        except (ConverterError, RuntimeError) as e:  # calibration failures are RuntimeError
            print(f"  {r.name}: conversion with {ops} failed: {e}", file=sys.stderr)
            last_error = e
            continue
        shutil.rmtree(saved)
        return flat, ops
    shutil.rmtree(saved)
    raise RuntimeError(f"{r.name}: conversion failed") from last_error


def recalibrate_batch_norm(k: Any, model: Any, x: np.ndarray) -> None:
    """Set every batch-norm layer's moving statistics to those of one large training batch.

    A few epochs are too few steps for moving averages with momentum 0.99..0.999 to leave their
    initial values (mean 0, variance 1), and inference-mode activations would then be far from
    the trained ones. Momentum 0 for one forward pass makes them the batch's own statistics.
    """
    layers = [
        layer for layer in model._flatten_layers() if isinstance(layer, k.layers.BatchNormalization)
    ]
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(x, training=True)
    for layer, momentum in zip(layers, saved):
        layer.momentum = momentum


def evaluate_int8(
    tf: Any, flat: bytes, x: np.ndarray, y: np.ndarray, float_out: np.ndarray, classifier: bool
) -> dict[str, float]:
    """The converted model on the held-out set: how much quantization cost."""
    interp = tf.lite.Interpreter(model_content=flat)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    (s_in, z_in), (s_out, z_out) = inp["quantization"], out["quantization"]
    results = []
    for sample in x:
        q = np.clip(np.round(sample / s_in) + z_in, -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q[None, ...])
        interp.invoke()
        results.append((interp.get_tensor(out["index"])[0].astype(np.float32) - z_out) * s_out)
    got = np.stack(results)
    if classifier:
        top = got.argmax(axis=-1)
        return {
            "accuracy": round(float(np.mean(top == y)), 4),
            "top1_agreement_with_float": round(float(np.mean(top == float_out.argmax(-1))), 4),
        }
    return {
        "mse": round(float(np.mean((got - y) ** 2)), 4),
        "mse_to_float_output": round(float(np.mean((got - float_out) ** 2)), 4),
    }


def build(names: list[str], out: Path = ZOO) -> None:
    tf = _setup_tensorflow()
    k = _keras()
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / BUILD_RECORD
    record: dict[str, Any] = json.loads(record_path.read_text()) if record_path.exists() else {}
    for index, r in enumerate(RECIPES):
        if names and r.name not in names:
            continue
        # Fresh layer-name counters and per-model seeds: building one model alone gives the same
        # bytes (tensor names included) as building all of them.
        k.backend.clear_session()
        k.utils.set_random_seed(SEED + index)
        rng = np.random.default_rng(SEED + index)
        model = r.build()
        x, y = r.data(rng, r.train_samples)
        model.compile(
            optimizer=k.optimizers.Adam(r.learning_rate), loss=r.loss, metrics=list(r.metrics)
        )
        history = model.fit(x, y, batch_size=r.batch_size, epochs=r.epochs, shuffle=True, verbose=0)
        recalibrate_batch_norm(k, model, x[: r.recalibration_samples])
        x_eval, y_eval = r.data(np.random.default_rng(SEED + 1000 + index), 128)
        evaluation = model.evaluate(
            x_eval, y_eval, batch_size=r.batch_size, verbose=0, return_dict=True
        )
        calibration, _ = r.data(np.random.default_rng(SEED + 2000 + index), 100)
        float_out = model.predict(x_eval, batch_size=r.batch_size, verbose=0)
        variants: list[tuple[str, int | None]] = [(r.name, 1)]
        if r.dynamic_batch_variant:
            variants.append((r.name + DYNAMIC_SUFFIX, None))
        for name, batch in variants:
            flat, ops = _convert(tf, model, r, calibration, batch)
            int8_eval = evaluate_int8(tf, flat, x_eval, y_eval, float_out, "accuracy" in r.metrics)
            (out / f"{name}.tflite").write_bytes(flat)
            record[name] = {
                "tensorflow": tf.__version__,
                "keras": k.__version__,
                "params": int(model.count_params()),
                "train_samples": r.train_samples,
                "epochs": r.epochs,
                "batch_size": r.batch_size,
                "optimizer": f"Adam(lr={r.learning_rate})",
                "loss": r.loss,
                "final_train_loss": round(float(history.history["loss"][-1]), 4),
                "eval": {key: round(float(v), 4) for key, v in evaluation.items()},
                "int8_eval": int8_eval,
                "calibration_samples": len(calibration),
                "export_batch": batch,
                "supported_ops": ops,
                "seed": SEED + index,
            }
            print(
                f"{name}: {len(flat)} bytes, params {model.count_params()}, "
                f"eval {record[name]['eval']}, int8 {int8_eval}, ops {ops}"
            )
        record_path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------
# describe phase (LiteRT only)
# --------------------------------------------------------------------------------------------


def _dtype_name(t: Any) -> str:
    return str(np.dtype(t).name)


def tensor_spec(detail: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = detail["quantization"]
    return {
        "name": detail["name"],
        "dtype": _dtype_name(detail["dtype"]),
        "shape": [int(d) for d in detail["shape"]],
        "shape_signature": [int(d) for d in detail["shape_signature"]],
        "scale": float(scale),
        "zero_point": int(zero_point),
    }


def open_interpreter(path: Path) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(
        model_path=str(path),
        num_threads=1,
        experimental_op_resolver_type=(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
    )
    interp.allocate_tensors()
    return interp


def reference_input(spec: dict[str, Any]) -> np.ndarray:
    """The input every description and test uses: seeded uniform values over the full dtype."""
    info = np.iinfo(spec["dtype"])
    rng = np.random.default_rng(REFERENCE_INPUT_SEED)
    values: np.ndarray = rng.integers(info.min, info.max + 1, spec["shape"])
    return values.astype(spec["dtype"])


def op_signature(op: dict[str, Any]) -> str:
    """'CONV_2D(int8,int8,int32->int8)': the op with its tensor types, the kernel to write."""
    ins = ",".join(_dtype_name(t) for t in op["operand_types"])
    outs = ",".join(_dtype_name(t) for t in op["result_types"])
    return f"{op['op_name']}({ins}->{outs})"


def macs_of(op: dict[str, Any], shapes: dict[int, list[int]]) -> int:
    """Multiply-accumulates of the conv, depthwise, fully-connected and matmul ops."""
    name = op["op_name"]
    ins = [i for i in op["inputs"] if i >= 0]
    out = shapes[op["outputs"][0]]
    out_elems = int(np.prod(out))
    if name == "CONV_2D":
        _, kh, kw, cin = shapes[ins[1]]
        return out_elems * kh * kw * cin
    if name == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = shapes[ins[1]]
        return out_elems * kh * kw
    if name == "FULLY_CONNECTED":
        return out_elems * shapes[ins[1]][-1]
    if name == "BATCH_MATMUL":
        a = shapes[ins[0]]
        # a is (.., M, K) or, transposed, (.., K, M); when a[-2] == M either reading gives K.
        depth = a[-1] if a[-2] == out[-2] else a[-2]
        return out_elems * depth
    return 0


def _enum_names(enum_class: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


def graph_nodes(data: bytes, run_shapes: dict[int, list[int]]) -> list[dict[str, Any]]:
    """Every operator of the main subgraph with its options and its tensors' quantization.

    Read from the flatbuffer with the schema ai-edge-litert ships, because LiteRT's interpreter
    does not report builtin options (stride, padding, fused activation), which are part of what
    a kernel must reproduce. Shapes are those LiteRT resolved at run time (`run_shapes`): in a
    dynamic-batch graph the flatbuffer's static shapes of computed tensors are placeholders.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    graph = model.subgraphs[0]
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    enums = {
        "padding": _enum_names(schema.Padding),
        "fusedActivationFunction": _enum_names(schema.ActivationFunctionType),
        "outType": type_names,
    }

    def tensor(index: int) -> dict[str, Any]:
        t = graph.tensors[index]
        buffer = model.buffers[t.buffer] if t.buffer else None
        q = t.quantization
        scales = list(q.scale) if q is not None and q.scale is not None else []
        static = [int(d) for d in (t.shape if t.shape is not None else [])]
        signature = list(t.shapeSignature) if t.shapeSignature is not None else []
        return {
            "dtype": type_names[t.type].lower(),
            "shape": run_shapes.get(index, static),
            "dynamic": -1 in signature,
            "const": bool(buffer is not None and buffer.data is not None and len(buffer.data)),
            "scales": len(scales),
        }

    nodes = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        options: dict[str, Any] = {}
        if op.builtinOptions is not None:
            defaults = vars(type(op.builtinOptions)())
            for key, value in vars(op.builtinOptions).items():
                if value == defaults.get(key) and key not in enums:
                    continue
                options[key] = enums[key].get(value, value) if key in enums else value
        nodes.append(
            {
                "op": name,
                "inputs": [tensor(i) for i in op.inputs if i >= 0],
                "outputs": [tensor(i) for i in op.outputs],
                "options": options,
            }
        )
    return nodes


def _fmt_node_tensor(t: dict[str, Any]) -> str:
    text = f"{t['dtype']}{t['shape']}".replace(" ", "") + ("*" if t["dynamic"] else "")
    if t["const"]:
        text = "const " + text
    if t["scales"] > 1:
        text += f" ({t['scales']} scales)"
    return text


def _fmt_options(options: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in options.items())


def kernel_variant(node: dict[str, Any]) -> str:
    """A node's kernel configuration: op, kernel size, options, per-channel weights."""
    parts = [node["op"]]
    if node["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        _, kh, kw, _ = node["inputs"][1]["shape"]
        parts.append(f"{kh}x{kw}")
    if node["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        parts.append("per-channel" if node["inputs"][1]["scales"] > 1 else "per-tensor")
        if len(node["inputs"]) < 3:
            parts.append("no-bias")
    options = _fmt_options(node["options"])
    if options:
        parts.append(options)
    return " ".join(parts)


def describe_model(path: Path) -> dict[str, Any]:
    interp = open_interpreter(path)
    inputs = [tensor_spec(d) for d in interp.get_input_details()]
    outputs = [tensor_spec(d) for d in interp.get_output_details()]
    for detail, spec in zip(interp.get_input_details(), inputs):
        interp.set_tensor(detail["index"], reference_input(spec))
    interp.invoke()
    result = [interp.get_tensor(d["index"]) for d in interp.get_output_details()]
    # Read after invoke: with a dynamic batch, intermediate shapes are only known at run time.
    shapes = {d["index"]: [int(s) for s in d["shape"]] for d in interp.get_tensor_details()}
    ops = interp._get_ops_details()
    counts = collections.Counter(op["op_name"] for op in ops)
    signatures = collections.Counter(op_signature(op) for op in ops)
    float_ops = sorted(
        {op_signature(op) for op in ops if "float32" in op_signature(op).split("(")[1]}
    )
    # int32 is expected as a bias; an op whose result is int32 is shape arithmetic.
    int32_ops = sorted(
        {
            op_signature(op)
            for op in ops
            if any(_dtype_name(t) == "int32" for t in op["result_types"])
        }
    )
    macs: collections.Counter[str] = collections.Counter()
    for op in ops:
        macs[op["op_name"]] += macs_of(op, shapes)
    data = path.read_bytes()
    nodes = graph_nodes(data, shapes)
    if [n["op"] for n in nodes] != [op["op_name"] for op in ops]:
        raise RuntimeError(f"{path.name}: flatbuffer operators differ from LiteRT's nodes")
    return {
        "name": path.stem,
        "file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "inputs": inputs,
        "outputs": outputs,
        "op_count": len(ops),
        "ops": dict(sorted(counts.items())),
        "op_signatures": dict(sorted(signatures.items())),
        "float32_ops": float_ops,
        "int32_result_ops": int32_ops,
        "macs": int(sum(macs.values())),
        "macs_by_op": {k: int(v) for k, v in sorted(macs.items()) if v},
        "kernel_variants": dict(
            sorted(collections.Counter(kernel_variant(n) for n in nodes).items())
        ),
        "nodes": nodes,
        "reference_output_sha256": hashlib.sha256(
            b"".join(np.ascontiguousarray(t).tobytes() for t in result)
        ).hexdigest(),
    }


def _fmt_tensor(t: dict[str, Any]) -> str:
    return (
        f"| `{t['name']}` | {t['dtype']} | {t['shape']} | {t['shape_signature']} | "
        f"{t['scale']:.9g} | {t['zero_point']} |"
    )


def _batch_text(batch: int | None) -> str:
    return "dynamic-batch (None)" if batch is None else f"batch-{batch}"


def _count_table(column: str, counts: dict[str, int], code: bool) -> list[str]:
    quote = "`" if code else ""
    rows = [f"| {quote}{key}{quote} | {n} |" for key, n in counts.items()]
    return [f"| {column} | count |", "|---|---|", *rows]


def card(r: Recipe, info: dict[str, Any], built: dict[str, Any], litert: str) -> str:
    lines = [
        f"# {info['name']}",
        "",
        f"{info['summary']}. Generated by `models/make_zoo.py`; synthetic data, no pretrained "
        + "weights: a workload for the int8 engine, not a model that recognises anything real.",
        "",
        f"- file: `{info['file']}`, {info['size_bytes']} bytes",
        f"- sha256: `{info['sha256']}`",
        f"- MACs: {info['macs']:,} ({', '.join(f'{k} {v:,}' for k, v in info['macs_by_op'].items())})",
        f"- ops (nodes): {info['op_count']}",
        "",
        "## Tensors",
        "",
        "| role | name | dtype | shape | shape signature | scale | zero point |",
        "|---|---|---|---|---|---|---|",
    ]
    for role, key in (("input", "inputs"), ("output", "outputs")):
        lines += [f"| {role} " + _fmt_tensor(t) for t in info[key]]
    lines += [
        "",
        f"## Ops as LiteRT {litert} reports them",
        "",
        "Builtin kernels, no delegate (`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`).",
        "",
        *_count_table("op", info["ops"], code=False),
        "",
        "With tensor types (inputs -> outputs):",
        "",
        *_count_table("op signature", info["op_signatures"], code=True),
        "",
        "float32 ops: " + (", ".join(f"`{s}`" for s in info["float32_ops"]) or "none") + ".",
        "",
        "Ops with an int32 result (shape arithmetic): "
        + (", ".join(f"`{s}`" for s in info["int32_result_ops"]) or "none")
        + ".",
        "",
        "## Kernel variants",
        "",
        "Op, kernel size, weight quantization and the builtin options that differ from their "
        + "defaults (padding and fused activation always shown).",
        "",
        *_count_table("variant", info["kernel_variants"], code=True),
    ]
    lines += [
        "",
        "## How it was made",
        "",
        f"- architecture: {r.architecture}",
    ]
    if built:
        lines += [
            (
                f"- TensorFlow {built['tensorflow']}, Keras {built['keras']}; {built['params']:,} "
                "parameters before conversion"
            ),
            (
                f"- trained {built['epochs']} epochs on {built['train_samples']} synthetic samples, "
                f"batch {built['batch_size']}, {built['optimizer']}, loss {built['loss']} "
                f"(final {built['final_train_loss']}); held-out synthetic set (128 samples): "
                f"float {built['eval']}, int8 {built['int8_eval']}"
            ),
            (
                f"- batch-norm moving statistics then set to those of {r.recalibration_samples} "
                "training samples (a few "
                "epochs are too few steps for the moving averages to converge)"
            ),
            (
                f"- exported as a SavedModel with a {_batch_text(built['export_batch'])} "
                "signature, converted with "
                f"`Optimize.DEFAULT`, a "
                f"representative dataset of {built['calibration_samples']} synthetic samples, "
                f"int8 input and output, supported ops {built['supported_ops']}"
            ),
            f"- seed {built['seed']}",
        ]
    lines += [f"- synthetic data: {r.data_description}"]
    lines += [f"- {n}" for n in r.notes]
    lines += [
        "",
        (
            "Reference: with the input drawn by `reference_input()` (numpy PCG64, seed "
            f"{REFERENCE_INPUT_SEED}, uniform over the int8 range), LiteRT's builtin kernels on "
            f"x86-64 give outputs whose bytes hash to `{info['reference_output_sha256']}`."
        ),
        "",
        "## Nodes",
        "",
        "In execution order. Shapes as LiteRT resolved them when running; `*` marks a tensor "
        + "whose shape signature has a dynamic (-1) dimension, `const` one whose data are in the "
        + "file, `(N scales)` per-channel quantization; options as in the flatbuffer.",
        "",
        "| # | op | inputs | output | options |",
        "|---|---|---|---|---|",
    ]
    for i, n in enumerate(info["nodes"]):
        ins = ", ".join(_fmt_node_tensor(t) for t in n["inputs"])
        outs = ", ".join(_fmt_node_tensor(t) for t in n["outputs"])
        lines.append(f"| {i} | {n['op']} | {ins} | {outs} | {_fmt_options(n['options'])} |")
    lines.append("")
    return "\n".join(lines)


def zoo_entries() -> Iterator[tuple[Recipe, str]]:
    """Every model file the recipes make, in build order: (recipe, model name)."""
    for r in RECIPES:
        yield r, r.name
        if r.dynamic_batch_variant:
            yield r, r.name + DYNAMIC_SUFFIX


def summary(r: Recipe, name: str) -> str:
    if name.endswith(DYNAMIC_SUFFIX):
        return (
            f"{r.summary}; the same weights as `{r.name}`, exported with a dynamic batch "
            "dimension, so the graph computes shapes at run time"
        )
    return r.summary


def describe(zoo: Path = ZOO, readme: Path = README) -> None:
    """Write the cards, manifest.json and the README's tables for the models found in `zoo`."""
    from ai_edge_litert import __version__ as litert_version

    record = zoo / BUILD_RECORD
    built = json.loads(record.read_text()) if record.exists() else {}
    models = []
    for r, name in zoo_entries():
        path = zoo / f"{name}.tflite"
        if not path.exists():
            print(f"{name}: not built, skipped", file=sys.stderr)
            continue
        info = describe_model(path)
        info["card"] = f"{name}.md"
        info["summary"] = summary(r, name)
        (zoo / info["card"]).write_text(card(r, info, built.get(name, {}), litert_version))
        del info["nodes"]  # the per-node table lives in the card; the manifest stays short
        models.append(info)
        print(f"{name}: {info['size_bytes']} bytes, {info['macs']:,} MACs, ops {info['ops']}")
    union: collections.Counter[str] = collections.Counter()
    for m in models:
        union.update(m["op_signatures"])
    manifest = {
        "generator": "models/make_zoo.py",
        "tensorflow": TENSORFLOW_VERSION,
        "litert": litert_version,
        "resolver": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
        "reference_platform": platform.machine(),
        "models": models,
        "op_signature_union": dict(sorted(union.items())),
    }
    (zoo / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    update_readme(readme, models, manifest["op_signature_union"])


def _fmt_shape(t: dict[str, Any]) -> str:
    return f"{t['dtype']} {'x'.join(str(d) for d in t['shape'])}"


def update_readme(readme: Path, models: list[dict[str, Any]], union: dict[str, int]) -> None:
    """Rewrite the generated part of models/README.md: the model table and the op union."""
    lines = [
        TABLE_BEGIN,
        "",
        "| model | input | output | bytes | MACs | nodes | float32 ops |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in models:
        floats = ", ".join(f"`{s}`" for s in m["float32_ops"]) or "none"
        lines.append(
            f"| `{m['name']}` | {', '.join(_fmt_shape(t) for t in m['inputs'])} | "
            f"{', '.join(_fmt_shape(t) for t in m['outputs'])} | "
            f"{m['size_bytes']:,} | {m['macs']:,} | {m['op_count']} | {floats} |"
        )
    total = sum(m["size_bytes"] for m in models)
    lines += [
        "",
        f"{len(models)} models, {total:,} bytes in all.",
        "",
        "Op signatures over the whole zoo (inputs -> outputs), with the models using each:",
        "",
        "| op signature | nodes | models |",
        "|---|---|---|",
    ]
    for sig, count in union.items():
        users = ", ".join(m["name"] for m in models if sig in m["op_signatures"])
        lines.append(f"| `{sig}` | {count} | {users} |")
    lines += ["", TABLE_END]
    text = readme.read_text() if readme.exists() else f"{TABLE_BEGIN}\n{TABLE_END}\n"
    head, rest = text.split(TABLE_BEGIN, 1)
    tail = rest.split(TABLE_END, 1)[1]
    readme.write_text(head + "\n".join(lines) + tail)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="phase", required=True)
    b = sub.add_parser("build", help="train and convert (needs TensorFlow)")
    b.add_argument("--only", nargs="*", default=[], help="model names (default: all)")
    b.add_argument(
        "--out",
        type=Path,
        default=ZOO,
        help="directory for the .tflite files and build.json (default: models/zoo; "
        "another one to check that a rebuild gives the same bytes)",
    )
    sub.add_parser("describe", help="write cards and manifest.json (needs ai-edge-litert)")
    args = p.parse_args(argv)
    if args.phase == "build":
        for name in args.only:
            recipe(name)
        build(args.only, args.out)
    else:
        describe()
    return 0


if __name__ == "__main__":
    sys.exit(main())
