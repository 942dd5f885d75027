"""Models from the fleet: Ed25519-signed manifests, chunked delivery over MQTT, and the car's
content-addressed cache with a size cap.

The fleet signs a manifest (sha256, size, name, version, expiry) with a key the car trusts and
publishes it, retained, with the model's bytes in chunks (protocol.Topics.model_*). The car
checks, in order: a known key and a valid signature, the expiry, no rollback below a version of
the same name it already accepted, the size against its cap; then it assembles the chunks and
compares the sha256 before anything reaches the cache. Each refusal is a ModelRefused with a
stable code that goes back to the fleet in the job's "rejected" reply.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.fleet import protocol as p

DEFAULT_CHUNK = 256 << 10


class ModelRefused(Exception):
    """A model the car will not use. `code`: unsigned, unknown_key, bad_signature, expired,
    rollback, too_large, tampered, bad_chunk, unavailable."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


# -- keys ---------------------------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def create_key(path: str | Path) -> str:
    """Write a new signing key (PEM, mode 0600) and its public half to PATH.pub; returns its id."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    Path(f"{path}.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id(key.public_key())


def load_private(path: str | Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")  # noqa: TRY004 -- a bad file, as its callers expect
    return key


def load_public(path: str | Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")  # noqa: TRY004 -- a bad file, as its callers expect
    return key


class TrustStore:
    """The public keys a car accepts model manifests from, by key id."""

    def __init__(self, keys: list[Ed25519PublicKey] | None = None) -> None:
        self._keys = {key_id(k): k for k in keys or []}

    @classmethod
    def from_paths(cls, paths: list[str | Path]) -> TrustStore:
        files: list[Path] = []
        for pth in map(Path, paths):
            files += sorted(pth.glob("*.pub")) if pth.is_dir() else [pth]
        return cls([load_public(f) for f in files])

    def __len__(self) -> int:
        return len(self._keys)

    def verify(self, signed: p.SignedManifest) -> None:
        key = self._keys.get(signed.manifest.key_id)
        if key is None:
            raise ModelRefused("unknown_key", f"manifest signed by key {signed.manifest.key_id}, "
                                              "which this car does not trust")
        try:
            key.verify(signed.signature, signed.manifest.signed_bytes())
        except InvalidSignature:
            raise ModelRefused("bad_signature", "the manifest's signature does not verify") from None


def sign_manifest(key: Ed25519PrivateKey, model: bytes, name: str, version: int, now: float,
                  valid_s: float = 30 * 86400.0, chunk_size: int = DEFAULT_CHUNK) -> p.SignedManifest:
    m = p.ModelManifest(sha256=hashlib.sha256(model).hexdigest(), size=len(model), name=name,
                        version=version, created=round(now, 3), expires=round(now + valid_s, 3),
                        chunk_size=chunk_size, key_id=key_id(key.public_key()))
    return p.SignedManifest(m, key.sign(m.signed_bytes()))


def chunks_of(model: bytes, chunk_size: int) -> list[bytes]:
    return [model[i:i + chunk_size] for i in range(0, len(model), chunk_size)] or [b""]


# -- the car's side -------------------------------------------------------------------------------


class ModelCache:
    """Content-addressed model files `<dir>/<sha256>.tflite`, evicting the least recently used
    beyond `max_bytes`. Also remembers, per model name, the highest version accepted."""

    def __init__(self, directory: str | Path, max_bytes: int = 256 << 20) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._versions_path = self.dir / "versions.json"

    def path(self, sha256: str) -> Path:
        return self.dir / f"{p.check_sha256(sha256)}.tflite"

    def has(self, sha256: str) -> bool:
        f = self.path(sha256)
        if f.exists():
            os.utime(f)  # recently used
            return True
        return False

    def versions(self) -> dict[str, int]:
        try:
            data = json.loads(self._versions_path.read_text())
            return {str(k): int(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def check(self, m: p.ModelManifest, now: float) -> None:
        """Everything about a manifest except its signature (TrustStore) and bytes (put)."""
        if now > m.expires:
            raise ModelRefused("expired", f"the manifest expired {now - m.expires:.0f} s ago")
        if m.size > self.max_bytes:
            raise ModelRefused("too_large", f"model of {m.size} bytes exceeds the cache cap "
                                            f"of {self.max_bytes}")
        seen = self.versions().get(m.name)
        if seen is not None and m.version < seen:
            raise ModelRefused("rollback", f"{m.name} version {m.version} is older than "
                                           f"version {seen} already accepted")

    def put(self, m: p.ModelManifest, data: bytes) -> Path:
        if len(data) != m.size or hashlib.sha256(data).hexdigest() != m.sha256:
            raise ModelRefused("tampered", "the model's bytes do not match the signed sha256")
        with self._lock:
            self._evict(len(data))
            dst = self.path(m.sha256)
            tmp = dst.with_suffix(".part")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dst)  # a reader sees the whole model or none
            v = self.versions()
            v[m.name] = max(m.version, v.get(m.name, m.version))
            tmpv = self._versions_path.with_suffix(".part")
            tmpv.write_text(json.dumps(v))
            os.replace(tmpv, self._versions_path)
        return dst

    def _evict(self, incoming: int) -> None:
        files = sorted(self.dir.glob("*.tflite"), key=lambda f: f.stat().st_mtime)
        total = sum(f.stat().st_size for f in files)
        while files and total + incoming > self.max_bytes:
            f = files.pop(0)
            total -= f.stat().st_size
            f.unlink(missing_ok=True)

    def size(self) -> int:
        return sum(f.stat().st_size for f in self.dir.glob("*.tflite"))


class ModelAssembly:
    """Chunks of one model arriving in any order; complete once every index is in."""

    def __init__(self, manifest: p.ModelManifest) -> None:
        self.manifest = manifest
        self._parts: dict[int, bytes] = {}

    def add(self, index: int, data: bytes) -> bool:
        m = self.manifest
        if not 0 <= index < m.chunks:
            raise ModelRefused("bad_chunk", f"chunk {index} outside 0..{m.chunks - 1}")
        want = m.chunk_size if index < m.chunks - 1 else m.size - m.chunk_size * (m.chunks - 1)
        if len(data) != want:
            raise ModelRefused("bad_chunk", f"chunk {index} has {len(data)} bytes, expected {want}")
        self._parts[index] = data
        return len(self._parts) == m.chunks

    def data(self) -> bytes:
        return b"".join(self._parts[i] for i in range(self.manifest.chunks))


def keys_command(args: Any) -> int:
    """`fleetnode fleet keys create|show|sign`."""
    import sys
    import time
    action = getattr(args, "keys_command", None)
    if action == "create":
        kid = create_key(args.path)
        print(f"created signing key {kid}: {args.path} (private, keep it secret) and "
              f"{args.path}.pub (install on the cars)")
        return 0
    if action == "show":
        path = Path(args.path)
        try:
            pub = load_private(path).public_key() if not path.name.endswith(".pub") else load_public(path)
        except (OSError, ValueError) as e:
            print(f"cannot read {path}: {e}", file=sys.stderr)
            return 2
        print(f"key id {key_id(pub)}")
        print(pub.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo).decode(), end="")
        return 0
    if action == "sign":
        model = Path(args.model).read_bytes()
        signed = sign_manifest(load_private(args.path), model, args.name or Path(args.model).stem,
                               args.version, time.time(), args.valid_days * 86400.0)
        out = Path(f"{args.model}.manifest.json")
        out.write_bytes(signed.encode())
        print(f"{out}: {signed.manifest.name} v{signed.manifest.version} sha256 {signed.manifest.sha256}")
        return 0
    print("usage: fleetnode fleet keys {create,show,sign} ...", file=sys.stderr)
    return 2
