"""The car's link against a real mosquitto: state and will, the shared subscription held only
while accepting, results through the outbox until acknowledged, duplicates answered once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import numpy as np

from agent.fleet import protocol as p
from agent.fleet.broker import Broker
from agent.fleet.fleetside import FleetClient
from agent.fleet.link import FleetLink
from agent.fleet.mqtt import publish_props
from tests.fleet.conftest import RUN, STANDBY, VEHICLE, car_and_fleet, run_car

MakeLink = Callable[..., FleetLink]
MakeClient = Callable[..., FleetClient]
BUILTIN = p.ModelRef(builtin="thin_path")


def test_state_is_retained_and_the_will_says_offline(make_link: MakeLink, make_client: MakeClient) -> None:
    link = make_link("car1")
    link.publish_state(STANDBY, VEHICLE)
    watcher = make_client()  # connects after the publish: only a retained message can reach it
    assert watcher.wait_for(lambda c: "car1" in c.cars, 10)
    st = watcher.cars["car1"]
    assert st.online and st.mode == "STANDBY" and st.reasons == ("not_charging",)
    assert st.soc_percent == 72.0 and st.charging is True and st.available_w == 0
    link.session.abort()  # the connection dies without DISCONNECT, as in a crash
    assert watcher.wait_for(lambda c: not c.cars["car1"].online, 10)
    assert watcher.cars["car1"].reasons == ("offline",)


def test_state_carries_no_vehicle_data_beyond_the_documented_fields(make_link: MakeLink,
                                                                  make_client: MakeClient) -> None:
    link = make_link("car1")
    link.publish_state({"mode": "STANDBY", "power_budget_w": 0, "reasons": [
        {"code": "moving", "text": "vehicle moving at 87.654321 km/h"}]}, {**VEHICLE, "speed_kph": 87.654321})
    assert link.audit is not None
    sent = [e.content for e in link.audit.entries()]
    # The reason's text and the speed stay in the car (a value no timestamp can contain by chance).
    assert sent and not any("87.654321" in s for s in sent)


def test_jobs_reach_only_cars_that_accept(make_link: MakeLink, make_client: MakeClient) -> None:
    idle = make_link("idle")
    idle.publish_state(STANDBY, VEHICLE)
    busy = make_link("worker")
    run_car(busy)
    fleet = make_client(submitter="sub")
    assert fleet.wait_for(lambda c: [s.car for s in c.available()] == ["worker"], 10)
    for i in range(6):
        fleet.submit(f"t{i}", BUILTIN, [np.full(3, i, dtype=np.int8)])
    got = [busy.jobs().get(10) for _ in range(6)]
    assert all(j is not None for j in got)
    assert idle.jobs().get(0.3) is None and idle.stats().get("jobs_received", 0) == 0
    for j in got:
        assert j is not None
        busy.send_result(j.job_id, "ok", [j.inputs[0] + 1])
    assert fleet.wait(10)
    assert all(t.status == "ok" and t.cars == ["worker"] for t in fleet.tasks.values())
    assert np.array_equal(fleet.tasks["t4"].outputs[0], np.full(3, 5, dtype=np.int8))
    assert fleet.wait_for(lambda c: busy.outbox.depth() == 0, 10)  # acknowledged -> deleted


def test_giving_up_the_subscription_preempts_queued_jobs(make_link: MakeLink, make_client: MakeClient) -> None:
    car, fleet = car_and_fleet(make_link, make_client)
    fleet.submit("t0", BUILTIN, [np.zeros(2, np.int8)])
    assert fleet.wait_for(lambda c: car.jobs().qsize() == 1, 10)
    car.set_accepting_jobs(False)
    car.publish_state(STANDBY, VEHICLE)
    assert fleet.wait_for(lambda c: c.counters["attempts_preempted"] == 1, 10)
    assert fleet.wait_for(lambda c: not c.cars["car1"].accepting_jobs, 10)
    assert not fleet.tasks["t0"].finished  # waits for an available car
    car.set_accepting_jobs(True)
    car.publish_state(RUN, VEHICLE)
    j = car.jobs().get(10)
    assert j is not None and j.job_id == "t0.r0.a2" and j.task == "t0"
    car.send_result(j.job_id, "ok", b"\x01\x02")
    assert fleet.wait(10) and fleet.tasks["t0"].status == "ok"


def test_a_job_delivered_twice_is_answered_once(mosquitto: Broker, make_link: MakeLink,
                                               make_client: MakeClient) -> None:
    car, fleet = car_and_fleet(make_link, make_client)
    payload = p.JobRequest("dup-1", "sub", BUILTIN, [np.ones(2, np.int8)]).encode()
    for _ in range(3):
        fleet.session.publish(p.Topics.jobs("default"), payload, 1, False,
                              publish_props(correlation=b"dup-1"))
    j = car.jobs().get(10)
    assert j is not None
    assert fleet.wait_for(lambda c: car.stats().get("jobs_duplicate", 0) == 2, 10)
    assert car.send_result("dup-1", "ok", [j.inputs[0]]) is not None
    assert car.send_result("dup-1", "ok", [j.inputs[0]]) is None  # a second answer is refused
    assert fleet.wait_for(lambda c: c.counters["results_received"] >= 1, 10)
    fleet.session.publish(p.Topics.jobs("default"), payload, 1, False)  # again, after the answer
    assert fleet.wait_for(lambda c: car.stats().get("jobs_duplicate", 0) == 3, 10)
    assert car.jobs().get(0.2) is None
    assert [d.result.job_id for d in fleet.deliveries] == ["dup-1"]


def test_malformed_jobs_get_error_replies_and_the_car_keeps_working(
        make_link: MakeLink, make_client: MakeClient) -> None:
    car, fleet = car_and_fleet(make_link, make_client)
    pub = fleet.session.publish
    pub(p.Topics.jobs("default"), b"garbage", 1, False, publish_props(correlation=b"c-1"))
    bad_tensor = p.JobRequest("bad-1", "sub", BUILTIN, [np.ones(4, np.int8)]).encode()[:-1]
    pub(p.Topics.jobs("default"), bad_tensor, 1, False)
    pub(p.Topics.jobs("default"), b"\x00" * (p.MAX_JOB_BYTES + 10), 1, False,
        publish_props(correlation=b"c-2"))
    assert fleet.wait_for(lambda c: len(c.errors) == 2 and len(c.deliveries) == 1, 10)
    codes = sorted((e.code, e.correlation) for e in fleet.errors)
    assert codes == [("malformed", b"c-1".hex()), ("too_large", b"c-2".hex())]
    rejected = fleet.deliveries[0].result
    assert rejected.job_id == "bad-1" and rejected.outcome == "rejected"
    assert rejected.error_code == "size_mismatch"
    fleet.submit("fine", BUILTIN, [np.ones(1, np.int8)])
    j = car.jobs().get(10)
    assert j is not None
    car.send_result(j.job_id, "ok", [j.inputs[0]])
    assert fleet.wait(10)


def test_backpressure_the_fleet_sends_no_more_than_the_car_takes(make_link: MakeLink,
                                                             make_client: MakeClient) -> None:
    car, fleet = car_and_fleet(make_link, make_client, fleet_kw={"job_timeout_s": 600},
                               job_queue_size=3)
    for i in range(10):
        fleet.submit(f"t{i}", BUILTIN, [np.full(1, i, np.int8)])
    assert fleet.wait_for(lambda c: car.jobs().qsize() == 3, 10)
    # The state advertises capacity 3: nothing beyond it is in flight to the car, nothing refused.
    assert not fleet.wait_for(lambda c: car.stats().get("jobs_received", 0) > 3, 0.5)
    done = threading.Event()

    def worker() -> None:
        for j in car.jobs():
            car.send_result(j.job_id, "ok", [j.inputs[0]])
            if car.stats().get("jobs_ok", 0) == 10:
                done.set()
                return

    threading.Thread(target=worker, daemon=True).start()
    assert fleet.wait(20) and done.is_set()
    assert car.stats().get("jobs_preempted", 0) == 0, repr(car.stats())


def test_an_oversized_result_becomes_a_failure_not_an_endless_resend(
        make_link: MakeLink, make_client: MakeClient) -> None:
    car, fleet = car_and_fleet(make_link, make_client)
    fleet.submit("big", BUILTIN, [np.ones(1, np.int8)])
    j = car.jobs().get(10)
    assert j is not None
    car.send_result(j.job_id, "ok", [np.zeros(p.MAX_RESULT_BYTES, np.int8)])
    assert fleet.wait(10)
    r = fleet.deliveries[0].result
    assert (r.outcome, r.error_code) == ("failed", "result_too_large")
    assert fleet.wait_for(lambda c: car.outbox.depth() == 0, 10)


def test_undocumented_telemetry_fields_never_leave_the_car(make_link: MakeLink) -> None:
    car = make_link("car1")
    assert car.publish_telemetry({"soc_percent": 50.0, "latitude": 48.1, "longitude": 11.5})
    assert car.stats()["telemetry_fields_dropped"] == 2
    assert car.audit is not None
    sent = [e.content for e in car.audit.entries() if e.topic.endswith("/telemetry")]
    assert len(sent) == 1
    fields = json.loads(sent[0])["f"]  # the telemetry message's fields (protocol.py)
    assert set(fields) == {"soc_percent"}, fields


def test_health_reports_every_part_of_the_link(make_link: MakeLink, mosquitto: Broker) -> None:
    car = make_link("car1")
    h = car.health()
    assert h["ok"] and h["connected"] and h["sender_alive"]
    mosquitto.stop()
    assert car.session.wait_for(lambda: not car.connected, 10)
    h = car.health()
    assert h["ok"] and not h["connected"]  # the loop keeps turning, retrying the broker
    mosquitto.start()
    assert car.wait_connected(10)


def test_an_unreadable_result_is_acknowledged_by_its_correlation_data(
        make_link: MakeLink, make_client: MakeClient) -> None:
    fleet = make_client(submitter="sub")
    acks: list[bytes] = []
    listener = make_client()
    listener.session._on_message_cb = lambda m: acks.append(bytes(m.payload))
    mid = listener.session.subscribe(p.Topics.acks("car9"), 0)
    assert mid is not None and listener.session.wait_subscribed(mid, 10)
    info = fleet.session.publish(p.Topics.results("car9", "sub"), b"\x00garbage", 1, False,
                                 publish_props(correlation=b"job-7"))
    assert info is not None
    # Without the ack the car's outbox would send it forever; it counts as nothing else.
    assert listener.session.wait_for(lambda: p.encode_ack(["job-7"]) in acks, 10)
    assert fleet.counters["invalid_results"] == 1 and fleet.deliveries == []


def test_the_broker_drops_packets_over_its_limit_before_any_car_sees_them(
        make_link: MakeLink, make_client: MakeClient) -> None:
    car, fleet = car_and_fleet(make_link, make_client)
    fleet.session.publish(p.Topics.jobs("default"), bytes(5 << 20), 1, False)  # over 4 MiB
    assert fleet.session.wait_for(lambda: fleet.session.counters["disconnects"] >= 1, 10)
    assert car.jobs().get(0.5) is None and car.stats().get("jobs_received", 0) == 0
    assert car.connected
