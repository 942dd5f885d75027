"""Signed models over MQTT: manifests checked (key, signature, expiry, rollback, size), bytes
checked against the signed sha256, a size-capped content-addressed cache, clear refusals."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from agent.fleet import protocol as p
from agent.fleet.cli import main as cli_main
from agent.fleet.fleetside import FleetClient
from agent.fleet.link import FleetLink
from agent.fleet.models import (
    ModelAssembly,
    ModelCache,
    ModelRefused,
    TrustStore,
    create_key,
    load_private,
    load_public,
    sign_manifest,
)
from agent.fleet.mqtt import publish_props
from tests.fleet.conftest import run_car

NOW = 1_800_000_000.0
MODEL = bytes(range(256)) * 20 + b"tail"  # 5,124 bytes: six chunks of 1 KiB, the last 4 bytes


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "fleet.key"
    create_key(path)
    return path


def test_signature_covers_every_manifest_field(key: Path) -> None:
    trust = TrustStore([load_public(f"{key}.pub")])
    signed = sign_manifest(load_private(key), MODEL, "net", 3, NOW, chunk_size=1024)
    trust.verify(p.SignedManifest.decode(signed.encode()))
    for field, value in (("size", 10), ("version", 4), ("expires", NOW + 1e9), ("sha256", "0" * 64)):
        forged = p.SignedManifest(p.ModelManifest(**{**signed.manifest.__dict__, field: value}),
                                  signed.signature)
        with pytest.raises(ModelRefused) as e:
            trust.verify(forged)
        assert e.value.code == "bad_signature"
    other = tmp_path_key(key.parent / "other.key")
    with pytest.raises(ModelRefused) as e:
        trust.verify(sign_manifest(other, MODEL, "net", 3, NOW))
    assert e.value.code == "unknown_key"


def tmp_path_key(path: Path):  # type: ignore[no-untyped-def]
    create_key(path)
    return load_private(path)


def test_cache_refuses_expired_rollback_oversized_and_tampered(key: Path, tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache", max_bytes=12_000)
    k = load_private(key)
    v2 = sign_manifest(k, MODEL, "net", 2, NOW, chunk_size=1024).manifest
    cache.check(v2, NOW)
    path = cache.put(v2, MODEL)
    assert path.read_bytes() == MODEL and path.name == f"{hashlib.sha256(MODEL).hexdigest()}.tflite"
    refusals = {
        "expired": (sign_manifest(k, MODEL, "net", 3, NOW - 1e6, valid_s=10).manifest, NOW),
        "rollback": (sign_manifest(k, MODEL, "net", 1, NOW).manifest, NOW),
        "too_large": (sign_manifest(k, b"x" * 20_000, "big", 1, NOW).manifest, NOW),
    }
    for code, (m, now) in refusals.items():
        with pytest.raises(ModelRefused) as e:
            cache.check(m, now)
        assert e.value.code == code
    with pytest.raises(ModelRefused) as e:
        cache.put(v2, MODEL[:-1] + b"\x00")
    assert e.value.code == "tampered"


def test_cache_evicts_least_recently_used_beyond_its_cap(key: Path, tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache", max_bytes=12_000)
    k = load_private(key)
    models = [bytes([i]) * 5000 for i in range(3)]
    mans = [sign_manifest(k, m, f"m{i}", 1, NOW).manifest for i, m in enumerate(models)]
    cache.put(mans[0], models[0])
    cache.put(mans[1], models[1])
    cache.put(mans[2], models[2])  # 15,000 > 12,000: the oldest goes
    assert not cache.has(mans[0].sha256) and cache.has(mans[1].sha256) and cache.has(mans[2].sha256)
    assert cache.size() <= 12_000


def test_assembly_checks_chunk_indices_and_sizes(key: Path) -> None:
    m = sign_manifest(load_private(key), MODEL, "net", 1, NOW, chunk_size=1024).manifest
    asm = ModelAssembly(m)
    for bad_index, data in ((6, b"x" * 1024), (-1, b"x"), (0, b"x" * 1000), (5, b"x" * 1024)):
        with pytest.raises(ModelRefused):
            asm.add(bad_index, data)
    done = [asm.add(i, MODEL[i * 1024:(i + 1) * 1024]) for i in (5, 0, 1, 2, 3, 4)]
    assert done == [False] * 5 + [True] and asm.data() == MODEL


def car_with_models(make_link: Callable[..., FleetLink], tmp_path: Path, key: Path,
                    cap: int = 1 << 20) -> FleetLink:
    car = make_link("car1", model_dir=tmp_path / "models", model_cache_bytes=cap,
                    trusted_keys=TrustStore([load_public(f"{key}.pub")]), model_fetch_timeout_s=5)
    run_car(car)
    return car


def test_a_signed_model_arrives_in_chunks_and_its_job_runs(
        make_link: Callable[..., FleetLink], make_client: Callable[..., FleetClient],
        tmp_path: Path, key: Path) -> None:
    car = car_with_models(make_link, tmp_path, key)
    fleet = make_client(submitter="sub")
    assert fleet.wait_for(lambda c: len(c.available()) == 1, 10)
    signed = sign_manifest(load_private(key), MODEL, "net", 1, car.clock.time(), chunk_size=1024)
    fleet.publish_model(MODEL, signed)
    ref = p.ModelRef(sha256=signed.manifest.sha256)
    fleet.submit("t0", ref, [np.ones(2, np.int8)])
    j = car.jobs().get(10)
    assert j is not None and j.model == ref
    assert car.models is not None and car.models.path(ref.sha256 or "").read_bytes() == MODEL
    car.send_result(j.job_id, "ok", [j.inputs[0]])
    assert fleet.wait(10) and fleet.tasks["t0"].status == "ok"
    fleet.submit("t1", ref, [np.ones(2, np.int8)])  # cached now: no second fetch
    assert car.jobs().get(10) is not None and car.stats()["model_fetches"] == 1


@pytest.mark.parametrize("case, code", [
    ("unsigned", "model_unsigned"), ("foreign_key", "model_unknown_key"),
    ("tampered", "model_tampered"), ("oversized", "model_too_large"), ("missing", "model_unavailable"),
])
def test_bad_models_are_refused_with_a_clear_reply(
        case: str, code: str, make_link: Callable[..., FleetLink],
        make_client: Callable[..., FleetClient], tmp_path: Path, key: Path) -> None:
    car = car_with_models(make_link, tmp_path, key, cap=4096)
    fleet = make_client(submitter="sub")
    assert fleet.wait_for(lambda c: len(c.available()) == 1, 10)
    model = MODEL[:3000] if case != "oversized" else MODEL
    signer = load_private(key) if case != "foreign_key" else tmp_path_key(tmp_path / "rogue.key")
    signed = sign_manifest(signer, model, "net", 1, car.clock.time(), chunk_size=1024)
    sha = signed.manifest.sha256
    if case == "unsigned":
        fleet.session.publish(p.Topics.model_manifest(sha), signed.encode().replace(
            b'"sig":"', b'"sig":"!'), 1, True)
    elif case == "tampered":
        fleet.publish_model(model[:-1] + b"\xff", signed)
    elif case != "missing":
        fleet.publish_model(model, signed)
    fleet.submit("t0", p.ModelRef(sha256=sha), [np.ones(2, np.int8)])
    assert fleet.wait(15)
    t = fleet.tasks["t0"]
    assert t.status == "rejected" and t.error is not None and t.error.startswith(code), t.error
    assert car.jobs().get(0.1) is None and car.models is not None and not car.models.has(sha)
    # The car goes on: a builtin job still runs.
    fleet.submit("t1", p.ModelRef(builtin="thin_path"), [np.ones(2, np.int8)])
    j = car.jobs().get(10)
    assert j is not None
    _ = publish_props


def test_keys_cli_creates_shows_and_signs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    k = tmp_path / "k.key"
    assert cli_main(["fleet", "keys", "create", str(k)]) == 0
    assert (k.stat().st_mode & 0o777) == 0o600 and Path(f"{k}.pub").exists()
    with pytest.raises(FileExistsError):
        cli_main(["fleet", "keys", "create", str(k)])
    assert cli_main(["fleet", "keys", "show", f"{k}.pub"]) == 0
    model = tmp_path / "m.tflite"
    model.write_bytes(MODEL)
    assert cli_main(["fleet", "keys", "sign", str(k), str(model), "--version", "7"]) == 0
    signed = p.SignedManifest.decode(Path(f"{model}.manifest.json").read_bytes())
    TrustStore([load_public(f"{k}.pub")]).verify(signed)
    assert signed.manifest.version == 7 and signed.manifest.sha256 == hashlib.sha256(MODEL).hexdigest()
    assert "key id" in capsys.readouterr().out
