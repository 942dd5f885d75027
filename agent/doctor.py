"""`fleetnode doctor`: checks an installation, one line per check: OK, WARN or FAIL, and the fix.

Owns the checks and their wording, nothing else: every fact comes from the module that owns it
(the config and policy loaders, the SLCAN version reply, the profile loader, the MQTT session,
the state file, the storage floor, the model cache's naming, the native engine). It is safe to run
beside a running agent: it opens the serial port only to ask the shim its version, connects to
the broker under its own client id with a clean session, and reads the state files read-only.
Exit status: 0 when nothing FAILs, 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime as dt
import hashlib
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, ConfigError

OK, WARN, FAIL = "OK", "WARN", "FAIL"
DEFAULT_CONFIG = Path("/etc/fleetnode/agent.toml")
SERIAL_ANSWER_S = 3.0
BROKER_TIMEOUT_S = 5.0
CERT_WARN_DAYS = 30
FREE_WARN_BYTES = 512 << 20
OUTBOX_WARN_DEPTH = 1000
OUTBOX_WARN_AGE_S = 86400.0
# The engine's known answer: the built-in thin_path model on KAT_INPUT gives output bytes whose
# sha256 is this (LiteRT's builtin kernels give the same; tests/ops/test_doctor.py checks it).
KAT_MODEL = "thin_path"
KAT_SHA256 = "223ab9b0dd82fdfa9ca3c3025d7f58e06345cebc59819c2df8302e0ee3e8e717"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, WARN or FAIL
    detail: str  # what was found
    fix: str = ""  # what to do about a WARN or FAIL

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name:<13} {self.detail}"
        return text + (f"\n      {'':<13} fix: {self.fix}" if self.fix else "")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "doctor", help="check this installation: config, serial shim, broker, state, engine, clock",
        description="Check the installation the agent would run with, one line per check (OK, WARN or "
        "FAIL, with what to do). Safe beside a running agent. Exit status 1 if any check FAILs.")
    p.add_argument("--config", help=f"agent config file (default: {DEFAULT_CONFIG} if it exists)")
    p.add_argument("--json", action="store_true", help="print one JSON object: the checks and the verdict")
    p.set_defaults(func=_cmd_doctor)


def _cmd_doctor(args: argparse.Namespace) -> int:
    checks = list(run_checks(args.config))
    failed = any(c.status == FAIL for c in checks)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}))
    else:
        for c in checks:
            print(c.line())
        n = {s: sum(c.status == s for c in checks) for s in (OK, WARN, FAIL)}
        print(f"\n{n[OK]} OK, {n[WARN]} WARN, {n[FAIL]} FAIL")
    return 1 if failed else 0


def run_checks(config_path: str | None) -> Iterator[Check]:
    """Every check, in the order a person fixes things: config first, clock last."""
    cfg, check = _config(config_path)
    yield check
    if cfg is None:
        return
    steps: list[Callable[[AgentConfig], list[Check]]] = [
        _policy, _serial, _profile, _broker, _state_dir, _model_cache, _engine, _clock]
    for step in steps:
        try:
            yield from step(cfg)
        except Exception as e:  # noqa: BLE001 -- one broken check must not hide the others
            yield Check(step.__name__.strip("_"), FAIL, f"the check itself failed: {type(e).__name__}: {e}",
                        "report this as a bug in fleetnode doctor")


# -- the checks --------------------------------------------------------------------------------


def _config(path: str | None) -> tuple[AgentConfig | None, Check]:
    if path is None and not DEFAULT_CONFIG.is_file():
        return AgentConfig(), Check("config", WARN, f"no --config and no {DEFAULT_CONFIG}: checking the defaults",
                                    f"write {DEFAULT_CONFIG} (docs/operations.md lists every key)")
    file = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        cfg = AgentConfig.load(file)
    except ConfigError as e:
        return None, Check("config", FAIL, str(e), f"correct {file} (docs/operations.md lists every key)")
    return cfg, Check("config", OK, f"{file}: valid (car {cfg.car_id}, pool {cfg.pool})")


def _policy(cfg: AgentConfig) -> list[Check]:
    from agent.governor.policy import Policy, PolicyError

    if not cfg.policy_file:
        return [Check("policy", OK, "built-in defaults (no policy_file)")]
    try:
        Policy.from_toml(cfg.policy_file)
    except PolicyError as e:
        return [Check("policy", FAIL, str(e), f"correct {cfg.policy_file} (docs/governor.md)")]
    return [Check("policy", OK, f"{cfg.policy_file}: valid")]


def _serial(cfg: AgentConfig) -> list[Check]:
    port = cfg.serial_port
    where = "set [agent] serial_port to the shim's device (ls -l /dev/serial/by-id/)"
    if not os.path.exists(port):
        return [Check("serial port", FAIL, f"{port} does not exist", f"plug in the CAN shim, or {where}")]
    real = os.path.realpath(port)
    if not stat.S_ISCHR(os.stat(real).st_mode):
        return [Check("serial port", FAIL, f"{port} is not a character device", where)]
    if not os.access(real, os.R_OK | os.W_OK):
        return [Check("serial port", FAIL, f"{port}: no read/write permission for uid {os.getuid()}",
                      "run as a member of group dialout (the unit has SupplementaryGroups=dialout)")]
    answer, error = _ask_version(port)
    if answer is None:
        return [Check("serial port", FAIL, f"{port}: {error}",
                      f"check that the shim's firmware runs and the cable is seated, or {where}")]
    return [Check("serial port", OK, f"{port}: {answer}")]


def _ask_version(port: str) -> tuple[str | None, str]:
    """Send SLCAN 'V' (harmless while the agent reads the same port) and wait for the reply.

    A running agent reads the same port, and a byte goes to whichever reader takes it first: it
    may take every reply. Well-formed frames arriving meanwhile also prove a shim is there."""
    import serial

    from agent.bus.slcan import SlcanParser, cmd_version, version_reply

    try:
        ser = serial.Serial(port, baudrate=115_200, timeout=0.05)
    except (serial.SerialException, OSError, ValueError) as e:
        return None, f"cannot open: {e}"
    parser = SlcanParser()
    frames = 0
    lost = ""
    try:
        got = b""
        deadline = time.monotonic() + SERIAL_ANSWER_S
        next_ask = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_ask:  # ask again: a running agent may have read the reply
                ser.write(b"\r" + cmd_version())
                next_ask = time.monotonic() + 0.1
            try:
                data = ser.read(max(1, ser.in_waiting))
            except serial.SerialException as e:
                # Readable, then empty: the agent read those bytes first (pyserial says "multiple
                # access on port?"). A link that is really gone keeps failing until the deadline.
                lost = str(e)
                time.sleep(0.01)
                continue
            got = (got + data)[-4096:]
            answer = version_reply(got)
            if answer is not None:
                return f"the shim answers the version query ({answer})", ""
            frames += len(parser.feed(data))
    except (serial.SerialException, OSError) as e:
        return None, f"the link failed while asking the shim's version: {e}"
    finally:
        ser.close()
    if frames:
        return (f"a shim streams SLCAN frames ({frames} well-formed in {SERIAL_ANSWER_S:g} s; the running "
                f"agent took its version replies)"), ""
    return None, (f"no answer to the SLCAN version query within {SERIAL_ANSWER_S:g} s, and no frames"
                  + (f" (last read error: {lost})" if lost else ""))


def _profile(cfg: AgentConfig) -> list[Check]:
    from agent.bus.errors import BusError
    from agent.bus.profile import VehicleProfile

    try:
        profile = VehicleProfile.load(cfg.profile, cfg.dbc or None)
    except (BusError, OSError, ValueError) as e:
        return [Check("profile", FAIL, f"{cfg.profile}: {e}",
                      "set [agent] profile to a shipped profile or a TOML path, and [agent] dbc if it "
                      "ships no DBC (docs/bus.md)")]
    return [Check("profile", OK, f"{cfg.profile}: {len(profile.roles)} roles, each mapped to a DBC signal, "
                                 f"on {len(profile.frame_ids)} frame ids")]


def _broker(cfg: AgentConfig) -> list[Check]:
    out: list[Check] = []
    tls = None
    if cfg.tls_ca:
        from agent.fleet.mqtt import TlsConfig

        out.extend(_certificate(cfg))
        if any(c.status == FAIL for c in out):
            return out
        tls = TlsConfig(Path(cfg.tls_ca), Path(cfg.tls_cert), Path(cfg.tls_key))
    where = f"{cfg.broker_host}:{cfg.broker_port}"
    try:
        socket.create_connection((cfg.broker_host, cfg.broker_port), timeout=BROKER_TIMEOUT_S).close()
    except OSError as e:
        out.append(Check("broker", FAIL, f"{where}: not reachable ({e})",
                         "start the broker (systemctl start mosquitto), or set [agent] broker_host and "
                         "broker_port; the unit's --broker-net must include it"))
        return out
    out.extend(_tls_handshake(cfg, tls, where) if tls is not None else _mqtt(cfg, where))
    return out


def _tls_handshake(cfg: AgentConfig, tls: Any, where: str) -> list[Check]:
    """TLS only, no MQTT session: a TLS broker binds the client id to the certificate's name
    (use_username_as_clientid), so a second session as this car would take over the agent's."""
    import ssl

    fix = "check tls_ca against the broker's CA, and that the broker's CA signed tls_cert"
    try:
        with socket.create_connection((cfg.broker_host, cfg.broker_port), timeout=BROKER_TIMEOUT_S) as raw, \
                tls.context().wrap_socket(raw, server_hostname=cfg.broker_host) as s:
            s.settimeout(0.5)
            try:  # TLS 1.3 refuses a client certificate after the handshake, on the first read
                if s.recv(1) == b"":
                    return [Check("broker", FAIL, f"{where}: the broker closed the TLS connection", fix)]
            except TimeoutError:
                pass  # it waits for our CONNECT: the certificate was accepted
    except ssl.SSLError as e:
        return [Check("broker", FAIL, f"{where}: TLS refused ({e.reason or e})", fix)]
    except OSError as e:
        return [Check("broker", FAIL, f"{where}: TLS connection failed ({e})", fix)]
    return [Check("broker", OK, f"{where}: TLS handshake with this car's certificate accepted (the ACL is "
                                f"checked by the broker per message; no second session as this car is opened)")]


def _certificate(cfg: AgentConfig) -> list[Check]:
    from cryptography import x509

    for key in ("tls_ca", "tls_cert", "tls_key"):
        if not os.access(getattr(cfg, key), os.R_OK):
            return [Check("certificate", FAIL, f"{key} {getattr(cfg, key)} cannot be read",
                          f"install the file or correct [agent] {key}")]
    try:
        cert = x509.load_pem_x509_certificate(Path(cfg.tls_cert).read_bytes())
    except ValueError as e:
        return [Check("certificate", FAIL, f"{cfg.tls_cert}: not a PEM certificate ({e})",
                      "install the car's certificate (fleetnode fleet pki, docs/protocol.md)")]
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    until = cert.not_valid_after_utc.strftime("%Y-%m-%d")
    renew = "issue a new certificate for this car and install it (fleetnode fleet pki)"
    if left.total_seconds() <= 0:
        return [Check("certificate", FAIL, f"{cfg.tls_cert} expired on {until}", renew)]
    if left.days < CERT_WARN_DAYS:
        return [Check("certificate", WARN, f"{cfg.tls_cert} expires in {left.days} days ({until})", renew)]
    return [Check("certificate", OK, f"{cfg.tls_cert} valid until {until}")]


def _mqtt(cfg: AgentConfig, where: str) -> list[Check]:
    from agent.fleet import protocol as p
    from agent.fleet.mqtt import MqttSession

    # Its own client id: the running agent's session is left alone.
    session = MqttSession(f"{cfg.car_id}-doctor", cfg.broker_host, cfg.broker_port,
                          clean_start=True, session_expiry_s=0)
    session.start()
    try:
        if not session.wait_connected(BROKER_TIMEOUT_S):
            return [Check("broker", FAIL, f"{where}: TCP answers but no MQTT session ({session.last_error or 'no CONNACK'})",
                          "check the broker's listener, and tls_ca/tls_cert/tls_key against it")]
        denied = []
        for topic in (p.Topics.acks(cfg.car_id), p.Topics.jobs(cfg.pool)):
            mid = session.subscribe(topic, 1)
            codes = session.wait_subscribed(mid, BROKER_TIMEOUT_S) if mid is not None else None
            if not codes or any(c.is_failure for c in codes):
                denied.append(f"{topic} ({', '.join(str(c) for c in codes or []) or 'no SUBACK'})")
            session.unsubscribe(topic)
        if denied:
            return [Check("broker", FAIL, f"{where}: connected, but may not read " + "; ".join(denied),
                          "regenerate the broker's ACL (python -m agent.fleet.acl) for this car and pool")]
    finally:
        session.stop()
    return [Check("broker", OK, f"{where}: MQTT 5 session accepted; "
                                f"this car may read its acks and pool {cfg.pool}'s jobs")]


def _state_dir(cfg: AgentConfig) -> list[Check]:
    d = Path(cfg.state_dir)
    if not d.is_dir():
        parent = next((q for q in d.parents if q.exists()), Path("/"))
        if os.access(parent, os.W_OK):
            return [Check("state dir", WARN, f"{d} does not exist yet; the agent will create it",
                          "none needed under systemd (StateDirectory=fleetnode creates it)")]
        return [Check("state dir", FAIL, f"{d} does not exist and {parent} is not writable",
                      f"create it for the agent's user (install -d -m 0700 {d}), or set [agent] state_dir")]
    return [_storage(d, cfg.storage_floor_bytes), *_state_file(d)]


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def _storage(d: Path, floor: int) -> Check:
    """Writable, and free space against storage_floor_bytes: what the agent's storage monitor
    (agent.storage) needs before it takes jobs. Its own probe file, never the agent's."""
    from agent.storage import free_bytes

    try:
        fd, probe = tempfile.mkstemp(prefix=".doctor-", dir=d)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return Check("state dir", FAIL, f"{d} is not writable ({e.strerror}): the agent refuses to start, "
                                        f"or goes STANDBY (reason storage) while it runs",
                     "make it writable by the agent's user (chown, chmod u+w), or remount its "
                     "filesystem read-write; under systemd keep StateDirectory=fleetnode")
    free = free_bytes(d)
    said = f"{d}: writable, {_mib(free)} free (the agent takes no jobs below {_mib(floor)}, storage_floor_bytes)"
    if free == 0 or free < floor:
        return Check("state dir", FAIL, f"{said}: below the floor, the agent is in STANDBY (reason storage)",
                     "free space on that filesystem, or lower [agent] storage_floor_bytes")
    if free < max(FREE_WARN_BYTES, 4 * floor):
        return Check("state dir", WARN, said, "free space on that filesystem before results and the ledger "
                                              "fill it")
    return Check("state dir", OK, said)


def _state_file(d: Path) -> list[Check]:
    """state.sqlite, read-only (the agent may be writing it): integrity, the outbox, the ledger."""
    from agent.fleet.outbox import inspect_outbox
    from agent.ledger.store import STATE_FILE, check_ledger
    from agent.storage import check_state_file

    out: list[Check] = []
    old = [n for n in ("outbox.sqlite", "ledger.sqlite") if (d / n).exists()]
    if old:
        out.append(Check("old state", WARN, f"{', '.join(old)} of an older agent, not yet in {STATE_FILE}",
                         f"start the agent once: it moves their rows into {STATE_FILE} (and renames them "
                         f"*.adopted)"))
    path = d / STATE_FILE
    if not path.exists():
        return [*out, Check("state file", OK, f"no {path} yet: the agent creates it at its first start")]
    problem = check_state_file(path)
    if problem:
        return [*out, Check("state file", FAIL, f"{path}: {problem}",
                            f"stop the agent, move {STATE_FILE} aside (keep it) and restart: its unsent "
                            f"results and the ledger are lost, or restore it from a backup")]
    out.append(Check("state file", OK, f"{path}: integrity check ok, {_mib(path.stat().st_size)}"))
    try:
        depth, oldest = inspect_outbox(path)
    except Exception as e:  # noqa: BLE001 -- sqlite3.Error and friends: a damaged file is a finding
        out.append(Check("outbox", FAIL, f"{path}: the outbox cannot be read ({e})",
                         f"stop the agent, move {STATE_FILE} aside and restart (unsent results are lost)"))
    else:
        age = 0.0 if oldest is None else max(0.0, time.time() - oldest)
        stuck = depth > OUTBOX_WARN_DEPTH or age > OUTBOX_WARN_AGE_S
        out.append(Check("outbox", WARN if stuck else OK,
                         f"{depth} unacknowledged result(s)" + (f", oldest {age:.0f} s old" if depth else ""),
                         "the fleet is not acknowledging results: check the broker and the dispatcher"
                         if stuck else ""))
    problem = check_ledger(path)
    out.append(Check("ledger", FAIL, f"{path}: {problem}",
                     "run the fleetnode version that wrote it, or restore the state file from a backup")
               if problem else Check("ledger", OK, f"{path}: ledger schema readable by this agent"))
    return out


def _model_cache(cfg: AgentConfig) -> list[Check]:
    from agent.fleet import protocol as p

    d = Path(cfg.state_dir) / "models"
    files = sorted(d.glob("*.tflite")) if d.is_dir() else []
    bad = []
    for f in files:
        try:
            want = p.check_sha256(f.stem)
        except p.ProtocolError:
            bad.append(f.name)
            continue
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        if h.hexdigest() != want:
            bad.append(f.name)
    keys = ""
    if cfg.trusted_keys:
        from agent.fleet.models import TrustStore

        try:
            keys = f"; {len(TrustStore.from_paths([cfg.trusted_keys]))} trusted signing key(s)"
        except (OSError, ValueError) as e:
            return [Check("model cache", FAIL, f"trusted_keys {cfg.trusted_keys}: {e}",
                          "install the fleet's Ed25519 public keys (*.pub) there, or correct [agent] trusted_keys")]
    if bad:
        return [Check("model cache", FAIL, f"{d}: {len(bad)} model(s) do not match their signed sha256: "
                                           + ", ".join(bad[:3]),
                      f"delete them (rm {d}/<sha256>.tflite); the car fetches a verified copy when needed")]
    return [Check("model cache", OK, f"{len(files)} model(s), each matching its signed sha256{keys}")]


def _engine(cfg: AgentConfig) -> list[Check]:
    import numpy as np

    from agent.inference import ModelError, load_model
    from agent.service import ModelStore

    fix = "reinstall the fleetnode wheel built for this machine's architecture (docs/operations.md)"
    try:
        from agent.inference import _native
        from agent.inference.native_backend import apply_isa_env

        isa = apply_isa_env()
    except (ImportError, ModelError) as e:
        return [Check("engine", FAIL, f"the native engine does not load: {e}", fix)]
    try:
        model = load_model(ModelStore.BUILTIN_DIR / f"{KAT_MODEL}.tflite")
        spec = model.inputs[0]
        outs = model.run([kat_input(spec.shape, np.dtype(spec.dtype))])
    except ModelError as e:
        return [Check("engine", FAIL, f"{isa}: the known model does not run: {e}", fix)]
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(o).tobytes() for o in outs)).hexdigest()
    if digest != KAT_SHA256:
        return [Check("engine", FAIL, f"{isa}: {KAT_MODEL} gives a wrong answer (sha256 {digest[:12]}...)",
                      f"run with FLEETNODE_ISA=scalar and report the ISA; {fix}")]
    verified = "" if isa == "scalar" or _native.gemm_verified(isa) else " (gemm self-test not passed)"
    return [Check("engine", WARN if verified else OK,
                  f"ISA {isa} (best {_native.best_isa()}); {KAT_MODEL} gives the known answer{verified}",
                  "run with FLEETNODE_ISA=scalar and report this machine's CPU" if verified else "")]


def kat_input(shape: tuple[int, ...], dtype: Any) -> Any:
    """The engine check's fixed input: every byte value in turn, stepping by 37."""
    import numpy as np

    n = int(np.prod(shape))
    return ((np.arange(n, dtype=np.int64) * 37) % 256 - 128).astype(np.int8).view(dtype).reshape(shape)


def _clock(cfg: AgentConfig) -> list[Check]:
    synced, how = ntp_synchronised()
    if synced is None:
        return [Check("clock", WARN, f"cannot tell whether the clock is synchronised ({how})",
                      "run an NTP client (systemd-timesyncd or chrony)")]
    if not synced:
        return [Check("clock", WARN, f"not synchronised ({how}); TLS, model manifests and the ledger need the time",
                      "enable an NTP client: timedatectl set-ntp true (or start chrony)")]
    return [Check("clock", OK, f"synchronised ({how})")]


def ntp_synchronised() -> tuple[bool | None, str]:
    """timedatectl's NTPSynchronized where it answers, else the kernel's own flag (adjtimex),
    which is what timedatectl reads too: synchronised unless STA_UNSYNC is set."""
    if shutil.which("timedatectl"):
        import subprocess

        try:
            r = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                               capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired):
            r = None
        if r is not None and r.returncode == 0 and r.stdout.strip() in ("yes", "no"):
            return r.stdout.strip() == "yes", "timedatectl"
    return _adjtimex()


def _adjtimex() -> tuple[bool | None, str]:
    if not sys.platform.startswith("linux"):
        return None, "no timedatectl, and adjtimex is Linux only"
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    buf = ctypes.create_string_buffer(512)  # struct timex; modes = 0: read only
    state = libc.adjtimex(buf)
    if state < 0:
        return None, f"adjtimex failed: {os.strerror(ctypes.get_errno())}"
    at = 5 * ctypes.sizeof(ctypes.c_long)  # status follows modes (padded to a long) and 4 longs
    status = int.from_bytes(buf.raw[at:at + 4], sys.byteorder)
    unsync = bool(status & 0x0040) or state == 5  # STA_UNSYNC, TIME_ERROR
    return not unsync, "kernel clock status (adjtimex)"
