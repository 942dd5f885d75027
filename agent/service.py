"""The agent process: bus -> governor -> runner -> fleet link, wired and supervised.

This module owns the wiring and nothing else: every decision is the governor's, every byte on a
wire belongs to its layer's protocol module. It registers `fleetnode run` and `fleetnode unit`.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import logging
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from agent.clock import Clock, ClockFileError, SharedClock, SystemClock
from agent.config import AgentConfig, ConfigError
from agent.logs import event
from agent.sdnotify import Watchdog, notify

log = logging.getLogger("fleetnode.agent")

if TYPE_CHECKING:
    from agent.fleet.link import FleetLink
    from agent.ledger import Ledger

STAGES = ("bus", "governor", "runner", "fleet")
# Vehicle roles that leave the car as telemetry (the protocol documents each; nothing else goes).
TELEMETRY_ROLES = ("soc_percent", "charging_power_kw", "pack_temp_max_c", "compute_temp_c")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the on-car agent",
        description="Run the agent: read the vehicle bus, decide with the governor, run fleet jobs, "
        "report over MQTT. Options override the config file.",
    )
    p.add_argument("--config", help="agent config file (TOML, table [agent])")
    p.add_argument("--port", dest="serial_port", help="serial port of the CAN shim (e.g. /dev/ttyACM0 or a pty)")
    p.add_argument("--profile", help="vehicle profile name or TOML path (default: reference)")
    p.add_argument("--dbc", help="DBC file, for profiles that do not ship one")
    p.add_argument("--car-id", dest="car_id", help="this car's id on the fleet")
    p.add_argument("--broker-host", dest="broker_host", help="MQTT broker host")
    p.add_argument("--broker-port", dest="broker_port", type=int, help="MQTT broker port")
    p.add_argument("--pool", help="job pool (shared subscription group)")
    p.add_argument("--state-dir", dest="state_dir",
                   help="where the outbox and ledger (state.sqlite), audit log and model cache live")
    p.add_argument("--storage-floor", dest="storage_floor_bytes", type=int, metavar="BYTES",
                   help="take no jobs while the state dir has less free space than this "
                        "(default 16 MiB)")
    p.add_argument("--policy", dest="policy_file", help="owner policy (TOML)")
    p.add_argument("--trusted-keys", dest="trusted_keys",
                   help="directory of Ed25519 public keys (*.pub) whose signed models this car runs")
    p.add_argument("--metrics-listen", dest="metrics_listen", metavar="IP:PORT",
                   help="serve Prometheus metrics here (e.g. 127.0.0.1:9464; port 0: any free port)")
    p.add_argument("--json", action="store_true", help="print each status as one JSON line")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: run until signalled)")
    p.add_argument("--clock", dest="clock_file", metavar="FILE",
                   help="take time from a shared clock file written by the HIL bench (simulated time; "
                   "default: the system clock)")
    p.set_defaults(func=_cmd_run)

    u = sub.add_parser("unit", help="print the hardened systemd unit for this installation",
                       description="Print fleetnode.service, rendered with this installation's paths.")
    u.add_argument("--serial", default="/dev/ttyACM0", help="the shim's serial device (default /dev/ttyACM0)")
    u.add_argument("--broker-net", default="127.0.0.0/8", help="the broker's IP network, for IPAddressAllow=")
    u.set_defaults(func=_cmd_unit)


def _cmd_unit(args: argparse.Namespace) -> int:
    from agent.deploy import render_unit

    try:
        sys.stdout.write(render_unit(args.serial, args.broker_net))
    except ValueError as e:
        print(f"fleetnode unit: {e}", file=sys.stderr)
        return 2
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    overrides = {k: getattr(args, k) for k in (
        "serial_port", "profile", "dbc", "car_id", "broker_host", "broker_port", "pool", "state_dir", "policy_file",
        "trusted_keys", "storage_floor_bytes", "metrics_listen")}
    try:
        base = AgentConfig.load(args.config) if args.config else AgentConfig()
        cfg = AgentConfig.from_mapping({}, **{**_asdict(base), **{k: v for k, v in overrides.items() if v is not None}})
    except ConfigError as e:
        print(f"fleetnode run: {e}", file=sys.stderr)
        return 2
    from agent import logs

    logs.setup(sys.stderr)
    # Under systemd the journal has every event; a status line a second would only crowd it.
    status_out = None if logs.under_journal(sys.stdout) else sys.stdout
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` prints every thread's stack
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.duration > 0:
        threading.Timer(args.duration, stop.set).start()
    clock: Clock = SystemClock()
    if args.clock_file:
        try:
            clock = SharedClock(args.clock_file)
        except ClockFileError as e:
            print(f"fleetnode run: {e}", file=sys.stderr)
            return 2
    agent = Agent(cfg, clock, out=status_out, json_lines=args.json)
    signal.signal(signal.SIGHUP, lambda *_: agent.reload_policy())
    return agent.run(stop)


def _asdict(cfg: AgentConfig) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(cfg)
    d.pop("extra", None)
    return d


class Agent:
    """One running agent. `run(stop)` blocks until `stop` is set; returns the exit code."""

    TICK_S = 0.05

    def __init__(self, cfg: AgentConfig, clock: Clock, out: TextIO | None = None, json_lines: bool = False) -> None:
        from agent.bus.profile import VehicleProfile
        from agent.governor import Governor, Policy

        self.cfg = cfg
        self.clock = clock
        self.out = out
        self.json_lines = json_lines
        self.watchdog = Watchdog(STAGES)
        self.profile = VehicleProfile.load(cfg.profile, cfg.dbc or None)
        self.policy = Policy.from_toml(cfg.policy_file) if cfg.policy_file else Policy()
        self.governor = Governor(self.policy)
        self.state_dir = Path(cfg.state_dir)
        self.models = ModelStore()
        self.jobs_done = 0
        self.tick_errors = 0
        self._last_key: tuple[Any, ...] | None = None
        self.metrics: Any = None  # agent.metrics.AgentMetrics, when [metrics] listen is set
        self._last_print = -1e9

    def reload_policy(self) -> None:
        """Read the policy file again (SIGHUP, `systemctl reload`): the owner changed consent,
        floor or caps. A file that no longer parses keeps the policy in force, and says why."""
        from agent.governor import Policy
        from agent.governor.policy import PolicyError

        if not self.cfg.policy_file:
            return
        try:
            policy = Policy.from_toml(self.cfg.policy_file)
        except (PolicyError, OSError) as e:
            self._say({"error": f"policy reload: {e}"}, f"[{self.cfg.car_id}] policy not reloaded: {e}")
            return
        self.policy = self.governor.policy = policy
        self._say({"policy": "reloaded"}, f"[{self.cfg.car_id}] policy reloaded from {self.cfg.policy_file}")

    def _on_grid(self, feed: Any, g: Any) -> None:
        feed.set_grid(_grid_signal(g, self.clock.monotonic()), g.valid_s)
        figures = ", ".join(f"{k} {v}" for k, v in (("price/kWh", g.price_per_kwh), ("g CO2/kWh", g.carbon_g_per_kwh),
                                                      ("cap W", g.power_cap_w)) if v is not None) or "lifted"
        self._say({"grid_seq": g.seq, "grid": figures, "valid_s": g.valid_s},
                  f"[{self.cfg.car_id}] grid signal {g.seq} ({g.reason or 'no reason given'}): {figures} "
                  f"for {g.valid_s:.0f} s")

    def _say(self, record: dict[str, Any], text: str) -> None:
        if self.out is None:
            return
        self.out.write((json.dumps(record) if self.json_lines else text) + "\n")
        self.out.flush()

    def run(self, stop: threading.Event) -> int:
        from agent.bus.reader import BusReader
        from agent.bus.state import StateStore
        from agent.fleet.link import FleetLink
        from agent.fleet.models import TrustStore
        from agent.fleet.mqtt import TlsConfig
        from agent.ledger import Ledger, LedgerSink
        from agent.ledger.store import STATE_FILE
        from agent.runner import Runner
        from agent.runner.governed import GovernedLoop, InputsFeed
        from agent.storage import StorageMonitor

        if self.cfg.metrics_listen and not self._start_metrics():
            return 2
        store = StateStore()
        reader = BusReader(self.cfg.serial_port, self.profile, store, self.clock)
        tls = None
        if self.cfg.tls_ca:
            tls = TlsConfig(Path(self.cfg.tls_ca), Path(self.cfg.tls_cert), Path(self.cfg.tls_key))
        keys = TrustStore.from_paths([self.cfg.trusted_keys]) if self.cfg.trusted_keys else TrustStore()
        monitor = StorageMonitor(self.state_dir, self.cfg.storage_floor_bytes)
        opened = self._open_state(lambda: FleetLink(
            self.cfg.car_id, self.cfg.broker_host, self.cfg.broker_port, self.clock,
            outbox_path=self.state_dir / STATE_FILE, pool=self.cfg.pool, tls=tls,
            audit_path=self.state_dir / "audit.sqlite", model_dir=self.state_dir / "models",
            trusted_keys=keys, on_storage_error=monitor.report,
            on_grant=lambda g: record_grant(ledger, g)),
            lambda: Ledger(self.state_dir / STATE_FILE, self.policy.tariff, self.policy.timezone))
        if opened is None:
            if self.metrics is not None:
                self.metrics.close()
            return 2
        link, ledger = opened
        monitor.probes.append(link.outbox.probe)
        self.models.cache = link.models
        sink = LedgerSink(ledger, self.clock, self.policy, on_storage_error=monitor.report)
        shared = self.clock if isinstance(self.clock, SharedClock) else None
        runner = Runner(self.clock, on_outcome=lambda o: self._on_outcome(link, sink, store, o),
                        on_power=shared.meter if shared is not None else None)
        feed = InputsFeed(self.clock, reader=reader, link=link, ledger=sink, storage=monitor)
        link.on_grid = lambda g: self._on_grid(feed, g)
        inputs: Any = feed
        if shared is not None:
            # The bench moves time on once the governor has looked at the present instant.
            def inputs(feed: InputsFeed = feed, shared: SharedClock = shared) -> Any:
                # Wall time is read before the ack: after it the bench may move time at once,
                # and a wall read from the next step would look like a clock jump.
                got = feed()
                counters = reader.counters
                shared.ack(sum(counters.get(k, 0) for k in ("decoded_frames", "ignored_frames", "decode_errors")))
                return got
        # The stop path (frame -> store -> governor -> cancel tokens) runs on its own thread and
        # never waits for the fleet link; this thread only reports and takes jobs.
        # On simulated time the bench waits for each look: tick often while no frame comes.
        governed = GovernedLoop(store, self.governor, runner, self.clock,
                                inputs=inputs, tick_s=0.02 if shared is not None else 0.25)
        if self.metrics is not None:
            from agent.metrics import bind

            bind(self.metrics, governed=governed, reader=reader, store=store, link=link, ledger=ledger,
                 storage=monitor, clock=self.clock)
        monitor.start()
        reader.start()
        runner.start()
        link.start()
        governed.start()
        notify("READY=1")
        event(log, logging.INFO, f"agent started: fleetnode {agent_version()}, engine {engine_isa()}, "
                                 f"serial {self.cfg.serial_port}, broker {self.cfg.broker_host}:{self.cfg.broker_port}",
              car=self.cfg.car_id)
        try:
            self._loop(stop, store, reader, governed, link, runner, sink)
        finally:
            notify("STOPPING=1")
            event(log, logging.INFO, "agent stopping", car=self.cfg.car_id)
            governed.stop()
            runner.stop()
            reader.stop()
            monitor.stop()
            link.close()
            ledger.close()
            if self.metrics is not None:
                self.metrics.close()
        return 0

    def _start_metrics(self) -> bool:
        from agent.config import parse_listen
        from agent.metrics import AgentMetrics, announcement

        host, port = parse_listen(self.cfg.metrics_listen)
        self.metrics = AgentMetrics(agent_version(), engine_isa(), self.cfg.car_id)
        try:
            port = self.metrics.serve(host, port)
        except OSError as e:
            log.error("cannot serve metrics on %s: %s", self.cfg.metrics_listen, e)
            self._say({"error": f"cannot serve metrics on {self.cfg.metrics_listen}: {e}"},
                      f"fleetnode run: cannot serve metrics on {self.cfg.metrics_listen}: {e}")
            return False
        where = f"http://{host if ':' not in host else f'[{host}]'}:{port}/metrics"
        event(log, logging.INFO, announcement(where), car=self.cfg.car_id)
        self._say({"metrics": where}, f"[{self.cfg.car_id}] {announcement(where)}")
        return True

    def _open_state(self, make_link: Callable[[], FleetLink],
                    make_ledger: Callable[[], Ledger]) -> tuple[FleetLink, Ledger] | None:
        """Open the state dir's files, or say in one line why not (None: exit status 2).
        A dir that cannot be written now is refused too: a car that cannot store results
        must not start taking jobs, and the owner learns of it at once, not from the fleet."""
        from agent.storage import IO_ERROR, StorageError, StorageFault, check_dir, classify

        link = ledger = None
        try:
            fault = check_dir(self.state_dir, self.cfg.storage_floor_bytes)
            if fault is None:
                link = make_link()
                ledger = make_ledger()
                link.outbox.probe()
                # Older agents kept the outbox and the ledger in two files: take them over.
                for adopt, name in ((link.outbox.adopt, "outbox.sqlite"), (ledger.adopt, "ledger.sqlite")):
                    if (self.state_dir / name).exists():
                        adopt(self.state_dir / name)
        except StorageError as e:
            fault = e.fault
        except (OSError, sqlite3.Error) as e:
            fault = classify(e, self.state_dir) or StorageFault(IO_ERROR, str(self.state_dir), str(e))
        if fault is None and link is not None and ledger is not None:
            return link, ledger
        for part in (ledger, link):
            if part is not None:
                with contextlib.suppress(Exception):  # after a failed start: say the cause, not this
                    part.close()
        assert fault is not None
        print(f"fleetnode run: {fault.text}", file=sys.stderr)
        return None

    def _loop(self, stop: threading.Event, store: Any, reader: Any, governed: Any, link: Any,
              runner: Any, sink: Any) -> None:
        seen_steps = -1
        while not stop.wait(self.TICK_S):
            try:
                if governed.steps != seen_steps and governed.last is not None:
                    seen_steps = governed.steps
                    self.watchdog.progress("governor")
                self._tick(store, reader, governed.last, link, runner, sink)
            except Exception as e:  # a bug in one tick must not kill the agent: fail safe, say why
                self.tick_errors += 1
                link.set_accepting_jobs(False)
                log.exception("internal error in the agent's loop; taking no jobs for 1 s")
                self._say({"error": repr(e)}, f"[{self.cfg.car_id}] internal error, taking no jobs: {e!r}")
                stop.wait(1.0)

    def _tick(self, store: Any, reader: Any, decision: Any, link: Any, runner: Any, sink: Any) -> None:
        if decision is None:
            return
        now = self.clock.monotonic()
        if reader.last_progress is not None and now - reader.last_progress < 5.0:
            self.watchdog.progress("bus")
        if runner.decision is decision:
            self.watchdog.progress("runner")
        snap = store.snapshot()
        sink.observe(snap)
        vehicle = {role: snap.value(role, now, self.profile.max_age(role)) for role in self.profile.roles}
        link.apply_decision(decision.as_dict(), vehicle)
        link.publish_telemetry({
            **{k: vehicle.get(k) for k in TELEMETRY_ROLES},
            "mode": decision.mode.value,
            "compute_power_w": round(decision.power_budget_w if runner.running else 0.0, 1),
            "jobs_done": self.jobs_done,
        })
        while (request := link.jobs().get(timeout=0)) is not None:
            self._accept(request, link, runner)
        if link.health()["ok"]:
            self.watchdog.progress("fleet")
        self.watchdog.maybe_ping()
        key = (decision.mode, decision.codes)
        if self.metrics is not None and (self._last_key is None or key[0] != self._last_key[0]):
            self.metrics.mode_entered(decision.mode.value)
        if key != self._last_key:
            self._log_decision(decision)
        if key != self._last_key or now - self._last_print >= self.cfg.status_interval_s:
            self._last_key, self._last_print = key, now
            self._status(decision, vehicle, link.connected)

    def _log_decision(self, decision: Any) -> None:
        """What changed and why: the mode and the governor's reasons, never vehicle readings."""
        from agent.governor.decision import CODES, Severity

        before = self._last_key[0].value if self._last_key is not None else "start"
        fault = any(CODES.get(c, (Severity.INFO, ""))[0] is Severity.OFF for c in decision.codes)
        event(log, logging.WARNING if fault else logging.INFO,
              f"mode {before} -> {decision.mode.value}: {decision.summary}" if before != decision.mode.value
              else f"mode {decision.mode.value}, reasons now: {decision.summary}",
              mode=decision.mode.value, reason=",".join(dict.fromkeys(decision.codes)) or "none")

    def _status(self, decision: Any, vehicle: dict[str, Any], broker_connected: bool) -> None:
        def fmt(role: str, unit: str = "", spec: str = "") -> str:
            v = vehicle.get(role)
            return "?" if v is None else f"{v:{spec}}{unit}"

        text = (f"[{self.cfg.car_id}] {decision.mode.value:<7} {decision.power_budget_w:6.0f} W | "
                f"SoC {fmt('soc_percent', ' %', '.1f')} gear {fmt('gear')} {fmt('speed_kph', ' km/h', '.0f')} "
                f"charging {fmt('charging_power_kw', ' kW', '.1f')} pack {fmt('pack_temp_max_c', ' C', '.0f')} | "
                f"jobs done {self.jobs_done} | {_brief(decision)}")
        self._say({"t": round(self.clock.time(), 3), "car": self.cfg.car_id, "decision": decision.as_dict(),
                   "vehicle": vehicle, "jobs_done": self.jobs_done, "broker": broker_connected}, text)

    def _accept(self, request: Any, link: Any, runner: Any) -> None:
        from agent.inference import ModelError
        from agent.runner import Job

        try:
            model = self.models.get(request.model)
        except (ModelError, KeyError) as e:
            link.send_result(request.job_id, "failed", error=("model_unavailable", str(e)))
            self._count_job("refused")
            event(log, logging.WARNING, f"job refused: model unavailable: {e}", job_id=request.job_id,
                  outcome="refused")
            return

        def work(token: Any, model: Any = model, request: Any = request) -> Any:
            return model.run_result(request.inputs, cancel=token)

        deadline = self.clock.monotonic() + request.max_run_s
        if not runner.submit(Job(request.job_id, work, deadline=deadline)):
            link.send_result(request.job_id, "preempted", error=("busy", "the car's job queue is full"))
            self._count_job("refused")
            event(log, logging.WARNING, "job refused: the job queue is full", job_id=request.job_id,
                  outcome="refused")

    def _count_job(self, outcome: str, run_s: float | None = None) -> None:
        if self.metrics is not None:
            self.metrics.job_ended(outcome, run_s)

    def _on_outcome(self, link: Any, sink: Any, store: Any, o: Any) -> None:
        from agent.inference import RunResult
        from agent.runner import Outcome

        # The job's ledger row is committed with its result, in one transaction of the state
        # database: a kill at any instant leaves both or neither, so nothing is counted twice.
        entry = sink.entry(o, store.snapshot())
        also = None if entry is None else entry.write
        self._count_job(o.outcome.value, o.duration_s if o.outcome is Outcome.DONE else None)
        event(log, logging.INFO if o.outcome in (Outcome.DONE, Outcome.PREEMPTED) else logging.WARNING,
              f"job {o.outcome.value} after {o.duration_s:.3f} s" + (f": {o.error}" if o.error else ""),
              job_id=o.job_id, outcome=o.outcome.value)
        if o.outcome is Outcome.DONE and isinstance(o.result, RunResult):
            self.jobs_done += 1
            link.send_result(o.job_id, "ok", outputs=o.result.arrays, run_s=o.duration_s, also=also)
        elif o.outcome is Outcome.PREEMPTED:
            link.send_result(o.job_id, "preempted", error=("preempted", "the governor stopped compute"),
                             also=also)
        elif o.outcome is Outcome.EXPIRED:
            link.send_result(o.job_id, "failed", error=("expired", "the job ran past its time limit"),
                             also=also)
        else:
            link.send_result(o.job_id, "failed", error=("failed", o.error or "the job failed"), also=also)


def _grid_signal(g: Any, now: float) -> Any:
    """The governor's view of a fleet grid message (None when the message lifts every figure)."""
    from agent.governor import GridSignal

    if g.price_per_kwh is None and g.carbon_g_per_kwh is None and g.power_cap_w is None:
        return None
    return GridSignal(t=now, price_per_kwh=g.price_per_kwh, carbon_g_per_kwh=g.carbon_g_per_kwh,
                      power_cap_w=g.power_cap_w)


def agent_version() -> str:
    import agent

    return agent.__version__


def engine_isa() -> str:
    """The native engine's instruction set, or why it is not available (never raises)."""
    try:
        from agent.inference.native_backend import apply_isa_env

        return apply_isa_env()
    except Exception as e:  # noqa: BLE001 -- an engine that does not load is reported, not fatal here
        return f"unavailable ({type(e).__name__})"


def _brief(decision: Any, most: int = 2) -> str:
    """The first reasons of a decision, for a status line a person can read at a glance."""
    texts = [r.text for r in decision.reasons]
    if not texts:
        return "all conditions met"
    more = f" (+{len(texts) - most} more)" if len(texts) > most else ""
    return "; ".join(texts[:most]) + more


def record_grant(ledger: Any, g: Any) -> None:
    """A credit grant from the fleet (agent/fleet/protocol.CreditGrant) into the owner's ledger."""
    ledger.record_grant(g.grant, g.t, g.job_id, g.task, g.credits, g.energy_wh)


class ModelStore:
    """Models the agent can run, each loaded once: the built-in ones shipped in
    agent/inference/models, and the fleet's, verified and kept by the link's model cache."""

    BUILTIN_DIR = Path(__file__).parent / "inference" / "models"
    MAX_LOADED = 8

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.cache: Any = None  # agent.fleet.models.ModelCache, set once the link exists

    def get(self, ref: Any) -> Any:
        from agent.inference import ModelError, load_model

        key = ref.builtin or ref.sha256
        with self._lock:
            if key not in self._loaded:
                if ref.builtin:
                    path = self.BUILTIN_DIR / f"{ref.builtin}.tflite"
                    if not path.is_file():
                        raise ModelError(f"no built-in model named {ref.builtin!r}")
                    self._loaded[key] = load_model(path)
                elif self.cache is not None and self.cache.has(ref.sha256):
                    if len(self._loaded) >= self.MAX_LOADED:
                        self._loaded.pop(next(iter(self._loaded)))
                    self._loaded[key] = load_model(self.cache.path(ref.sha256))
                else:
                    raise ModelError(f"model {ref.sha256} is not in this car's cache")
            return self._loaded[key]
