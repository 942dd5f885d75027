"""The paho-mqtt session both sides use: one MQTT 5 client, a supervised network thread,
callbacks that cannot kill it, and TLS with client certificates.

paho-mqtt's own loop dies with an exception raised in a callback and keeps unsent messages in
memory only. Here the network thread is ours: it connects, reconnects with backoff for as long
as it runs, catches and counts every exception, and the durable state lives with the callers
(the car's outbox), never in paho's queues.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.clock import Clock, SystemClock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsConfig:
    """A client certificate and its key, and the CA that signed the broker's certificate."""

    ca_certs: Path
    certfile: Path
    keyfile: Path

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_certs))
        ctx.load_cert_chain(str(self.certfile), str(self.keyfile))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def props(packet: int, *, expiry_s: int | None = None, response_topic: str | None = None,
          correlation: bytes | None = None, content_type: str | None = None,
          user: list[tuple[str, str]] | None = None) -> Properties:
    p = Properties(packet)  # type: ignore[no-untyped-call]
    if expiry_s is not None:
        p.MessageExpiryInterval = int(expiry_s)
    if response_topic is not None:
        p.ResponseTopic = response_topic
    if correlation is not None:
        p.CorrelationData = correlation
    if content_type is not None:
        p.ContentType = content_type
    if user:
        p.UserProperty = user
    return p


def publish_props(**kw: Any) -> Properties:
    return props(PacketTypes.PUBLISH, **kw)


MessageHandler = Callable[[paho.MQTTMessage], None]


def _no_op(*_: object) -> None:
    pass


def wait_until(cond: threading.Condition, predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    with cond:
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            cond.wait(min(left, 0.1))
        return True


class MqttSession:
    """One MQTT 5 connection kept alive by its own thread until `stop()`.

    Callbacks given here run on the network thread; each is wrapped so an exception is logged
    and counted (`counters["callback_errors"]`) instead of ending the thread.
    """

    def __init__(
        self,
        client_id: str,
        host: str,
        port: int,
        *,
        tls: TlsConfig | None = None,
        clean_start: bool = False,
        session_expiry_s: int = 3600,
        keepalive_s: int = 30,
        will: Will | None = None,
        receive_maximum: int | None = None,
        maximum_packet_size: int | None = None,
        manual_ack: bool = False,
        on_connect: Callable[[bool], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        on_message: MessageHandler | None = None,
        on_publish: Callable[[int, bool], None] | None = None,
        clock: Clock | None = None,
        min_backoff_s: float = 0.1,
        max_backoff_s: float = 2.0,
    ) -> None:
        self.client_id = client_id
        self.host = host
        self.port = port
        self.clock = clock or SystemClock()
        self.counters: Counter[str] = Counter()
        self._clean_start = clean_start
        self._keepalive = keepalive_s
        self._min_backoff = min_backoff_s
        self._max_backoff = max_backoff_s
        self._on_connect_cb = on_connect
        self._on_disconnect_cb = on_disconnect
        self._on_message_cb = on_message
        self._on_publish_cb = on_publish
        self._stop = threading.Event()
        self._stopping = False
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._generation = 0  # increases with every CONNACK: message ids are per connection
        self.last_loop = time.monotonic()  # for the service watchdog: the loop is turning
        self.last_error = ""
        self.topic_alias_max = 0  # from the broker's CONNACK
        self._connect_props = props(PacketTypes.CONNECT)
        self._connect_props.SessionExpiryInterval = session_expiry_s
        if receive_maximum is not None:
            # Asks the broker to keep no more unacknowledged QoS 1 messages in flight to us.
            # mosquitto 2.0.11 overruns it once acks flow (docs/protocol.md, section 12), so
            # callers bound their queues themselves.
            self._connect_props.ReceiveMaximum = receive_maximum
        if maximum_packet_size is not None:
            self._connect_props.MaximumPacketSize = maximum_packet_size

        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=paho.MQTTv5, manual_ack=manual_ack)
        c.suppress_exceptions = True  # our wrappers already catch; this is the second net
        c.max_inflight_messages_set(20)
        c.max_queued_messages_set(1000)  # bounded: durable queues are the callers' job
        if tls is not None:
            c.tls_set_context(tls.context())
        if will is not None:
            c.will_set(will.topic, will.payload, will.qos, will.retain)
        c.on_connect = self._guard(self._handle_connect)
        c.on_disconnect = self._guard(self._handle_disconnect)
        c.on_message = self._guard(self._handle_message)
        c.on_publish = self._guard(self._handle_publish)
        c.on_subscribe = self._guard(self._handle_subscribe)
        # Only the network thread may write to the socket. Without loop_start(), paho writes
        # from whichever thread calls publish() unless an external loop registers for writes,
        # and two threads writing one TLS stream corrupt it ("Protocol error" at the broker).
        # Registering no-op hooks routes every write through our loop's select().
        c.on_socket_register_write = _no_op
        c.on_socket_unregister_write = _no_op
        self.client = c
        self.subscribe_results: dict[int, list[ReasonCode]] = {}
        self.publish_refused: dict[int, ReasonCode] = {}
        self._sub_done = threading.Condition()

    # -- callbacks (network thread) -----------------------------------------------------------

    def _guard(self, fn: Callable[..., None]) -> Callable[..., None]:
        def wrapped(*args: Any, **kwargs: Any) -> None:
            try:
                fn(*args, **kwargs)
            except Exception as e:  # a callback must never end the network thread
                self.counters["callback_errors"] += 1
                self.last_error = f"{fn.__name__}: {type(e).__name__}: {e}"
                log.exception("MQTT callback %s failed", fn.__name__)
        wrapped.__name__ = fn.__name__
        return wrapped

    def _handle_connect(self, client: paho.Client, userdata: object, flags: paho.ConnectFlags,
                        rc: ReasonCode, properties: Properties | None) -> None:
        if rc.is_failure:
            self.counters["connect_refused"] += 1
            self.last_error = f"connection refused: {rc}"
            return
        self._generation += 1
        self.counters["connects"] += 1
        self.topic_alias_max = int(getattr(properties, "TopicAliasMaximum", 0) or 0)
        self._connected.set()
        if self._on_connect_cb is not None:
            self._on_connect_cb(bool(flags.session_present))

    def _handle_disconnect(self, client: paho.Client, userdata: object,
                           flags: paho.DisconnectFlags, rc: ReasonCode,
                           properties: Properties | None) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            self.counters["disconnects"] += 1
            if self._on_disconnect_cb is not None:
                self._on_disconnect_cb()

    def _handle_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self.counters["messages_in"] += 1
        if self._on_message_cb is not None:
            self._on_message_cb(msg)
        with self._sub_done:
            self._sub_done.notify_all()

    def _handle_publish(self, client: paho.Client, userdata: object, mid: int, rc: ReasonCode,
                        properties: Properties | None) -> None:
        ok = not rc.is_failure
        if not ok:
            # MQTT 5 brokers answer a refused publish (e.g. "not authorized") in the PUBACK.
            self.counters["publish_refused"] += 1
            self.publish_refused[mid] = rc
        if self._on_publish_cb is not None:
            self._on_publish_cb(mid, ok)

    def _handle_subscribe(self, client: paho.Client, userdata: object, mid: int,
                          rcs: list[ReasonCode], properties: Properties | None) -> None:
        with self._sub_done:
            self.subscribe_results[mid] = list(rcs)
            self._sub_done.notify_all()

    # -- the network thread --------------------------------------------------------------------

    def start(self) -> MqttSession:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.client_id}",
                                            daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        backoff = self._min_backoff
        first = True
        while not self._stop.is_set():
            self.last_loop = time.monotonic()
            if self._stopping and self.client.socket() is None:
                break
            try:
                if self.client.socket() is None:
                    if first:
                        first = False  # connect() stores its parameters even when it fails
                        self.client.connect(self.host, self.port, self._keepalive,
                                            clean_start=self._clean_start,
                                            properties=self._connect_props)
                    else:
                        self.client.reconnect()
                    self.counters["connect_attempts"] += 1
                rc = self.client.loop(timeout=0.05)
                if rc == paho.MQTT_ERR_SUCCESS:
                    if self._connected.is_set():
                        backoff = self._min_backoff
                    continue
                self.last_error = f"network loop: {paho.error_string(rc)}"
            except Exception as e:  # noqa: BLE001 -- refused, reset, TLS failure...: back off and retry
                self.counters["network_errors"] += 1
                self.last_error = f"{type(e).__name__}: {e}"
            if self._connected.is_set():
                self._handle_disconnect(self.client, None, paho.DisconnectFlags(False),
                                        ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"), None)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def stop(self, disconnect: bool = True, timeout: float = 2.0) -> None:
        """End the session: a clean DISCONNECT (no will) flushed by the network thread."""
        self._stopping = True
        if disconnect and self._thread is not None and self._connected.is_set():
            # queued; the network thread sends what precedes it first. A client already torn
            # down cannot disconnect, and the stop goes on regardless.
            with contextlib.suppress(Exception):
                self.client.disconnect()
            deadline = time.monotonic() + timeout
            while self.client.socket() is not None and time.monotonic() < deadline:
                self._stop.wait(0.01)
        self._end_thread()

    def abort(self) -> None:
        """Drop the connection without DISCONNECT, as a crash would: the broker sends the will."""
        self._end_thread()

    def _end_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        sock = self.client.socket()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        self._connected.clear()

    # -- operations (any thread) ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def alive(self) -> bool:
        """The network thread runs (it only ends on stop() or abort())."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def generation(self) -> int:
        return self._generation

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until predicate() holds, re-checked on every message and every 0.1 s."""
        return wait_until(self._sub_done, predicate, timeout)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False,
                properties: Properties | None = None) -> paho.MQTTMessageInfo | None:
        """Hand a message to paho. Returns its MQTTMessageInfo, or None if paho did not take it."""
        info = self.client.publish(topic, payload, qos, retain, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            self.counters["publish_not_taken"] += 1
            return None
        self.counters["messages_out"] += 1
        return info

    def subscribe(self, topic: str, qos: int = 1) -> int | None:
        rc, mid = self.client.subscribe(topic, qos)
        return int(mid) if rc == paho.MQTT_ERR_SUCCESS and mid is not None else None

    def wait_subscribed(self, mid: int, timeout: float) -> list[ReasonCode] | None:
        with self._sub_done:
            self._sub_done.wait_for(lambda: mid in self.subscribe_results, timeout)
            return self.subscribe_results.get(mid)

    def unsubscribe(self, topic: str) -> None:
        self.client.unsubscribe(topic)

    def ack(self, mid: int, qos: int = 1) -> None:
        self.client.ack(mid, qos)
