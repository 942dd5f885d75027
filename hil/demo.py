"""`make demo`: the thin path end to end, about 30 s, with live output.

A simulated car (hil.sim) sends its CAN frames through the real bridge firmware (host build)
onto a pty; the real agent process reads it, decides with the governor, runs fleet jobs on the
native engine and reports to a real mosquitto; a fleet consumer watches the car, submits jobs
and cross-checks every result against LiteRT. Midway the driver opens the door, and later the
serial cable is pulled and plugged back: the agent must say why it stopped, never crash.
Exits 0 only if every job came back, bit-exact, and the agent handled every event safely.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent.bus.profile import VehicleProfile
from agent.fleet import protocol as p
from agent.fleet.broker import start_broker
from agent.fleet.fleetside import FleetClient
from agent.inference import load_model
from agent.metrics import find_announced, sample, scrape
from hil.bench import AgentProcess, CarOnBus
from hil.sim import CarInputs, CarState, Event

HERE = Path(__file__).parent
THIN_PATH = Path(__file__).parent.parent / "agent" / "inference" / "models" / "thin_path.tflite"
CAR = "car-1"


_OUT = threading.Lock()


def say(who: str, text: str) -> None:
    """One whole line at a time: the agent's output arrives on another thread."""
    with _OUT:
        sys.stdout.write(f"{time.strftime('%H:%M:%S')} [{who:<5}] {text}\n")
        sys.stdout.flush()


def scenario(duration_s: float) -> list[Event]:
    """The demo's story, scaled to `duration_s` (30 s by default)."""
    k = duration_s / 30.0

    def door(open_: bool) -> Callable[[CarInputs], None]:
        def change(i: CarInputs) -> None:
            i.door_open = open_
        return change

    return [
        Event(11 * k, "the owner opens the driver's door (to fetch a bag)", door(True)),
        Event(14 * k, "the door is closed again; the car stays parked and charging", door(False)),
    ]


def show(cmd: list[str], head: int = 20) -> None:
    """Run one of fleetnode's own commands and print the first lines of what it prints."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    with _OUT:
        for line in (r.stdout + r.stderr).splitlines()[:head]:
            sys.stdout.write(f"         | {line}\n")
        sys.stdout.flush()


def show_metrics(agent: AgentProcess, problems: list[str]) -> None:
    """Scrape the agent's Prometheus endpoint, as a monitoring system would, and show jobs,
    energy and mode."""
    url = find_announced(list(agent.lines))
    if url is None:
        problems.append("the agent never said where its metrics endpoint is")
        return
    try:
        s = scrape(url)
    except (OSError, ValueError) as e:
        problems.append(f"cannot scrape {url}: {e}")
        return
    jobs = {dict(labels)["outcome"]: v for (name, labels), v in s.items() if name == "fleetnode_jobs_total"}
    mode = next((dict(labels)["mode"] for (name, labels), v in s.items() if name == "fleetnode_mode" and v == 1), None)
    energy = sample(s, "fleetnode_energy_wh_total")
    say("ops", f"scraped {url}: mode {mode}, jobs {', '.join(f'{k} {v:.0f}' for k, v in jobs.items()) or 'none'}, energy {energy or 0:.4f} Wh, "
               f"{sample(s, 'fleetnode_serial_connects_total') or 0:.0f} serial connects, state dir "
               f"{'usable' if sample(s, 'fleetnode_storage_usable') else 'NOT usable'} "
               f"({(sample(s, 'fleetnode_storage_free_bytes') or 0) / (1 << 20):.0f} MiB free)")
    if not jobs.get("done") or mode is None or not energy:
        problems.append("the metrics endpoint did not show jobs, energy and mode")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the fleetnode thin path end to end on the HIL bench.")
    ap.add_argument("--duration", type=float, default=30.0, help="length of the story in seconds (default 30)")
    ap.add_argument("--jobs", type=int, default=6, help="jobs per batch (two batches)")
    args = ap.parse_args(argv)
    k = args.duration / 30.0
    problems: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="fleetnode-demo-"))
    profile = VehicleProfile.load("reference")
    oracle = load_model(THIN_PATH, backend="litert")
    rng = np.random.default_rng(7)
    spec = oracle.inputs[0]

    broker = start_broker(work / "broker")
    say("bench", f"mosquitto on 127.0.0.1:{broker.port}")
    car = CarOnBus(profile, CarState(soc_percent=62.0, inputs=CarInputs(charger_kw=7.2)),
                   events=[], on_event=lambda ev: say("car", ev.what), workdir=work)
    car.events = scenario(args.duration)
    agent: AgentProcess | None = None
    fleet = FleetClient("127.0.0.1", broker.port, submitter="demo", job_timeout_s=5.0)
    stack = contextlib.ExitStack()
    watcher: subprocess.Popen[str] | None = None
    try:
        watcher = subprocess.Popen([sys.executable, "-m", "agent.cli", "fleet", "watch", "--port", str(broker.port)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        car.start()
        say("car", f"parked in P, plugged in at 7.2 kW, SoC 62 %; serial line {car.port}")
        agent = AgentProcess(lambda line: say("agent", line), ["run", "--port", car.port, "--broker-port", str(broker.port), "--car-id", CAR,
                              "--state-dir", str(work / "agent"), "--policy", str(HERE / "policies" / "demo.toml"),
                              "--metrics-listen", "127.0.0.1:0"])
        stack.enter_context(fleet)
        t0 = time.monotonic()

        def at(t: float) -> None:
            remaining = t0 + t * k - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)

        def expect(pred: Callable[[p.CarState], bool], timeout: float, failure: str) -> None:
            """Wait until the fleet sees the car in a state; say what it sees, or note the failure."""
            if not fleet.wait_for(lambda f: CAR in f.cars and pred(f.cars[CAR]), timeout):
                problems.append(failure)
                return
            st = fleet.cars[CAR]
            why = ", ".join(dict.fromkeys(st.reasons)) or f"{st.available_w:.0f} W available, SoC {st.soc_percent} %"
            say("fleet", f"{CAR} is {st.mode}: {why}")

        expect(lambda c: c.mode == "RUN", 15, "the fleet never saw the car available")
        inputs = {}

        def submit_batch(name: str, n: int) -> None:
            for j in range(n):
                x = rng.integers(-128, 128, size=spec.shape, dtype=np.int8)
                tid = f"{name}-{j}"
                inputs[tid] = x
                fleet.submit(tid, p.ModelRef(builtin="thin_path"), [x])
            say("fleet", f"submitted {n} jobs ({name}-0 .. {name}-{n - 1}) for model thin_path")

        submit_batch("a", args.jobs)
        batch_a = [t for t in inputs if t.startswith("a-")]
        fleet.wait(8 * k, batch_a)
        done = [t for t in batch_a if fleet.tasks[t].status == "ok"]
        say("fleet", f"{len(done)}/{len(batch_a)} results of batch a are back")
        at(11.5)
        expect(lambda c: c.mode != "RUN", 5, "the door opened, but the car stayed in RUN")
        submit_batch("b", args.jobs)
        say("fleet", "batch b waits for an available car")
        at(20)
        say("car", "the serial cable of the CAN shim is pulled")
        car.unplug()
        expect(lambda c: c.mode == "OFF", 5, "the cable was pulled, but the car did not go OFF")
        at(24)
        say("car", "the cable is plugged back in")
        car.plug()
        expect(lambda c: c.mode == "RUN", 10, "the cable came back, but the car never returned to RUN")
        if not fleet.wait(max(5.0, 30 * k - (time.monotonic() - t0)), list(inputs)):
            problems.append("not every job finished")
        exact = 0
        for tid, x in inputs.items():
            task = fleet.tasks[tid]
            if task.status != "ok":
                problems.append(f"job {tid}: {task.status} {task.error or ''}")
                continue
            want = oracle.run([x])
            if all(np.array_equal(a, b) for a, b in zip(task.outputs, want)):
                exact += 1
            else:
                problems.append(f"job {tid}: result differs from LiteRT")
        say("fleet", f"{exact}/{len(inputs)} results received, each byte-identical to LiteRT's builtin kernels")
        show_metrics(agent, problems)
        last = fleet.tasks[list(inputs)[-1]]
        if last.outputs:
            say("fleet", f"e.g. {last.task_id} from {', '.join(last.cars)}: output {last.outputs[0].tolist()}")
    finally:
        if watcher is not None:
            watcher.terminate()
            out, _ = watcher.communicate(timeout=10)
            blocks = [b for b in out.strip().split("\n\n") if b.strip()]
            say("fleet", "what `fleetnode fleet watch` showed last:")
            with _OUT:
                for line in (blocks[-1] if blocks else "(nothing)").splitlines():
                    sys.stdout.write(f"         | {line}\n")
        rc = agent.stop() if agent is not None else 0
        stack.close()
        car.stop()
        broker.stop()
    if agent is not None:
        if any("Traceback" in line for line in agent.lines):
            problems.append("the agent printed a traceback")
        if rc not in (0, -15):
            problems.append(f"the agent exited with {rc}")
    say("owner", "what `fleetnode report` tells the owner:")
    show([sys.executable, "-m", "agent.cli", "report", "--db", str(work / "agent" / "state.sqlite"),
          "--policy", str(HERE / "policies" / "demo.toml")], head=12)
    for prob in problems:
        say("demo", f"PROBLEM: {prob}")
    say("demo", "OK: the thin path works end to end" if not problems else "FAILED")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
