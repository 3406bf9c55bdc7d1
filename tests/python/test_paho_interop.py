#!/usr/bin/env python3
"""Interop with the Python paho-mqtt 2.x client, a client nobody here wrote, through a midge
broker that is already running on 127.0.0.1:PORT.

    python3 tests/python/test_paho_interop.py --port PORT --protocol 311|5 [--only NAME]
        [--cafile CA.pem [--cert CERT.pem --key KEY.pem] [--require-certificate]]

Cases: publish and receive at QoS 0, 1 and 2 (and the downgrade to the granted QoS);
retained messages (set, replaced, flag on delivery, deleted); wills (published when the
connection ends without DISCONNECT, by a closed socket and by keep-alive expiry, not after a
normal DISCONNECT); a persistent session resumed after reconnect (queued QoS 1/2 messages
in order, QoS 0 not queued, an unacknowledged message sent again with DUP); for 5.0 the
request/response properties forwarded unchanged.

With --cafile every client connects over TLS (`tls_set(ca_certs=...)`, the server's
certificate verified against that CA and its name, 127.0.0.1), presenting --cert/--key if
given. --require-certificate says the broker refuses clients without a certificate: the case
certificate_required then checks that such a client gets no CONNACK, and that the same client
with its certificate gets in.

Every wait is bounded. Prints one line per case and a closing "N passed, N failed" line;
exits 1 if any case failed. `crates/midge-server/tests/interop_paho.rs` runs it against a
midge server in its own process.
"""

import argparse
import queue
import ssl
import sys
import threading
import time
import traceback

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = "127.0.0.1"
WAIT = 5.0  # seconds any expected event may take
QUIET = 0.4  # seconds to watch for something that must not arrive

PORT = 0
V5 = False
# tls_set() keyword arguments (ca_certs, certfile, keyfile), or None for plain TCP.
TLS = None
REQUIRE_CERTIFICATE = False


class Client:
    """A paho client with its network loop in a thread, whose callbacks feed queues."""

    def __init__(self, client_id, clean=True, keepalive=30, will=None, manual_ack=False,
                 session_expiry=None):
        self.id = client_id
        protocol = mqtt.MQTTv5 if V5 else mqtt.MQTTv311
        kwargs = {}
        if not V5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            reconnect_on_failure=False,
            manual_ack=manual_ack,
            **kwargs,
        )
        self.messages = queue.Queue()
        self.subacks = queue.Queue()
        self.connacks = queue.Queue()
        self.disconnected = threading.Event()
        self.c.on_connect = lambda c, u, flags, rc, props: self.connacks.put((flags, rc, props))
        self.c.on_message = lambda c, u, msg: self.messages.put(msg)
        self.c.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.put((mid, rcs))
        self.c.on_disconnect = lambda c, u, flags, rc, props: self.disconnected.set()
        if will is not None:
            self.c.will_set(**will)
        if TLS is not None:
            self.c.tls_set(**TLS)
        connect_kwargs = {}
        if V5:
            connect_kwargs["clean_start"] = clean
            if session_expiry is not None:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = session_expiry
                connect_kwargs["properties"] = props
        self.c.connect(HOST, PORT, keepalive=keepalive, **connect_kwargs)
        self.c.loop_start()
        try:
            flags, rc, _ = self.connacks.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"{client_id}: no CONNACK within {WAIT}s") from None
        assert not rc.is_failure, f"{client_id}: CONNACK {rc}"
        self.session_present = bool(flags.session_present)
        if TLS is not None:
            # Not plain TCP by mistake: the connection is a TLS one.
            assert isinstance(self.c.socket(), ssl.SSLSocket), f"{client_id}: not TLS"

    def subscribe(self, topic, qos=0, options=None):
        """Subscribes and returns the granted QoS."""
        if options is not None:
            _, mid = self.c.subscribe(topic, options=options)
        else:
            _, mid = self.c.subscribe(topic, qos)
        try:
            got_mid, rcs = self.subacks.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"{self.id}: no SUBACK for {topic}") from None
        assert got_mid == mid, (got_mid, mid)
        assert len(rcs) == 1 and not rcs[0].is_failure, f"SUBACK for {topic}: {rcs}"
        return rcs[0].value

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        """Publishes and waits until it is sent (QoS 0) or acknowledged (QoS 1 and 2)."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(timeout=WAIT)
        assert info.is_published(), f"{self.id}: {topic} at QoS {qos} not acknowledged"

    def recv(self):
        try:
            return self.messages.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"{self.id}: no message within {WAIT}s") from None

    def expect_nothing(self):
        try:
            msg = self.messages.get(timeout=QUIET)
        except queue.Empty:
            return
        raise AssertionError(f"{self.id}: unexpected message on {msg.topic}: {msg.payload!r}")

    def disconnect(self):
        """A normal DISCONNECT."""
        self.c.disconnect()
        self.disconnected.wait(WAIT)
        self.c.loop_stop()

    def kill(self):
        """Ends the TCP connection without a DISCONNECT."""
        self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:
            sock.close()

    def freeze(self):
        """Stops the network loop, socket open: the client falls silent."""
        self.c.loop_stop()


def cid(name):
    return f"paho{'5' if V5 else '311'}-{name}"


def case_qos_0_1_2():
    sub = Client(cid("sub"))
    assert sub.subscribe("qos/#", 2) == 2
    sub1 = Client(cid("sub1"))
    assert sub1.subscribe("qos/+", 1) == 1
    pub = Client(cid("pub"))
    for q in (0, 1, 2):
        pub.publish(f"qos/{q}", f"m{q}".encode(), qos=q)
    for q in (0, 1, 2):
        m = sub.recv()
        assert (m.topic, m.payload, m.qos, m.retain, m.dup) == (
            f"qos/{q}", f"m{q}".encode(), q, False, False), (m.topic, m.payload, m.qos)
        m = sub1.recv()
        assert (m.topic, m.qos) == (f"qos/{q}", min(q, 1)), (m.topic, m.qos)
    # The other way round: the subscriber publishes, the publisher receives.
    assert pub.subscribe("back", 2) == 2
    for q in (0, 1, 2):
        sub.publish("back", b"reply", qos=q)
        m = pub.recv()
        assert (m.payload, m.qos) == (b"reply", q)
    sub.expect_nothing()
    sub1.expect_nothing()
    for c in (sub, sub1, pub):
        c.disconnect()


def case_retained():
    pub = Client(cid("ret-pub"))
    pub.publish("ret/a", b"old", qos=1, retain=True)
    pub.publish("ret/a", b"new", qos=2, retain=True)
    pub.publish("ret/b", b"b", qos=0, retain=True)
    sub = Client(cid("ret-sub"))
    sub.subscribe("ret/#", 2)
    got = sorted((sub.recv() for _ in range(2)), key=lambda m: m.topic)
    assert [(m.topic, m.payload, m.qos, m.retain) for m in got] == [
        ("ret/a", b"new", 2, True), ("ret/b", b"b", 0, True)], got
    sub.expect_nothing()
    # A live message to an existing subscription has retain cleared.
    pub.publish("ret/a", b"live", qos=1, retain=True)
    m = sub.recv()
    assert (m.payload, m.retain) == (b"live", False)
    if V5:
        # Retain handling 2 (none on subscribe) and retain-as-published.
        keep = Client(cid("ret-keep"))
        keep.subscribe("ret/#", options=SubscribeOptions(
            qos=1, retainAsPublished=True, retainHandling=2))
        keep.expect_nothing()
        pub.publish("ret/a", b"again", qos=1, retain=True)
        m = keep.recv()
        assert (m.payload, m.retain) == (b"again", True)
        assert sub.recv().payload == b"again"
        keep.disconnect()
    # An empty retained payload deletes it.
    pub.publish("ret/a", b"", qos=1, retain=True)
    pub.publish("ret/b", b"", qos=1, retain=True)
    assert sub.recv().payload == b""
    assert sub.recv().payload == b""
    late = Client(cid("ret-late"))
    late.subscribe("ret/#", 1)
    late.expect_nothing()
    for c in (pub, sub, late):
        c.disconnect()


def will(topic, payload, qos=1, retain=False, properties=None):
    return {"topic": topic, "payload": payload, "qos": qos, "retain": retain,
            "properties": properties}


def case_will():
    watcher = Client(cid("will-watch"))
    watcher.subscribe("will/#", 2)

    # A normal DISCONNECT discards the will.
    Client(cid("will-polite"), will=will("will/polite", b"gone")).disconnect()
    watcher.expect_nothing()

    # The socket closes without DISCONNECT: the will is published.
    props = None
    if V5:
        props = Properties(PacketTypes.WILLMESSAGE)
        props.UserProperty = [("who", cid("will-killed")), ("k", "v")]
        props.ContentType = "text/plain"
        props.ResponseTopic = "will/ask"
        props.CorrelationData = b"\x00\x01corr"
    Client(cid("will-killed"), will=will("will/killed", b"gone", qos=2, properties=props)).kill()
    m = watcher.recv()
    assert (m.topic, m.payload, m.qos, m.retain) == ("will/killed", b"gone", 2, False), m.topic
    if V5:
        assert m.properties.UserProperty == [("who", cid("will-killed")), ("k", "v")]
        assert m.properties.ContentType == "text/plain"
        assert m.properties.ResponseTopic == "will/ask"
        assert m.properties.CorrelationData == b"\x00\x01corr"

    # A client that falls silent is cut off after 1.5 x keep-alive and its will published.
    silent = Client(cid("will-silent"), keepalive=1, will=will("will/silent", b"timed out"))
    start = time.monotonic()
    silent.freeze()
    m = watcher.recv()
    elapsed = time.monotonic() - start
    assert (m.topic, m.payload) == ("will/silent", b"timed out")
    assert elapsed >= 1.2, f"will after {elapsed:.2f}s, before 1.5 x keep-alive"
    silent.kill()
    watcher.disconnect()


def case_persistent_session():
    kwargs = {"clean": False, "session_expiry": 60 if V5 else None}
    sub = Client(cid("persist"), manual_ack=True, **kwargs)
    assert not sub.session_present
    assert sub.subscribe("ps/#", 2) == 2
    pub = Client(cid("persist-pub"))
    pub.publish("ps/inflight", b"unacked", qos=1)
    m = sub.recv()
    assert (m.payload, m.dup) == (b"unacked", False)
    # Never acknowledged (manual_ack), then the connection dies.
    sub.kill()

    pub.publish("ps/1", b"one", qos=1)
    pub.publish("ps/0", b"zero", qos=0)
    pub.publish("ps/2", b"two", qos=2)

    sub = Client(cid("persist"), **kwargs)
    assert sub.session_present, "session present after reconnect"
    got = [sub.recv() for _ in range(3)]
    assert [(m.topic, m.payload, m.qos) for m in got] == [
        ("ps/inflight", b"unacked", 1), ("ps/1", b"one", 1), ("ps/2", b"two", 2)], \
        [(m.topic, m.payload) for m in got]
    assert got[0].dup, "a message sent again carries DUP"
    sub.expect_nothing()  # QoS 0 is not queued for an offline client by default
    # The subscription survived; a normal DISCONNECT keeps the session too.
    pub.publish("ps/live", b"live", qos=2)
    assert sub.recv().payload == b"live"
    sub.disconnect()
    pub.publish("ps/3", b"three", qos=1)
    sub = Client(cid("persist"), **kwargs)
    assert sub.session_present
    assert sub.recv().payload == b"three"
    sub.disconnect()
    pub.disconnect()


def case_request_response():
    responder = Client(cid("responder"))
    responder.subscribe("svc/echo", 1)
    requester = Client(cid("requester"))
    requester.subscribe(f"reply/{cid('requester')}", 1)

    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = f"reply/{cid('requester')}"
    props.CorrelationData = b"\xffreq-42"
    props.UserProperty = [("k", "1"), ("a", "x"), ("k", "2")]
    props.ContentType = "application/json"
    props.PayloadFormatIndicator = 1
    requester.publish("svc/echo", b'{"q":1}', qos=1, properties=props)

    m = responder.recv()
    assert m.payload == b'{"q":1}'
    p = m.properties
    assert p.ResponseTopic == props.ResponseTopic
    assert p.CorrelationData == props.CorrelationData
    assert p.UserProperty == props.UserProperty, p.UserProperty
    assert p.ContentType == props.ContentType
    assert p.PayloadFormatIndicator == 1

    reply = Properties(PacketTypes.PUBLISH)
    reply.CorrelationData = p.CorrelationData
    responder.publish(p.ResponseTopic, b'{"a":1}', qos=1, properties=reply)
    m = requester.recv()
    assert (m.topic, m.payload) == (props.ResponseTopic, b'{"a":1}')
    assert m.properties.CorrelationData == b"\xffreq-42"
    responder.disconnect()
    requester.disconnect()


def case_certificate_required():
    protocol = mqtt.MQTTv5 if V5 else mqtt.MQTTv311
    bare = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid("no-cert"),
                       protocol=protocol, reconnect_on_failure=False)
    # Trusts the broker, but has no certificate of its own.
    bare.tls_set(ca_certs=TLS["ca_certs"])
    connacks = queue.Queue()
    disconnected = threading.Event()
    bare.on_connect = lambda c, u, flags, rc, props: connacks.put(rc)
    bare.on_disconnect = lambda c, u, flags, rc, props: disconnected.set()
    try:
        bare.connect(HOST, PORT, keepalive=30)
    except (ssl.SSLError, OSError):
        pass  # refused in the handshake (TLS 1.2)
    else:
        # TLS 1.3: the client finishes its handshake first; the refusal comes with its first
        # read, so CONNECT gets no CONNACK and the connection is closed.
        bare.loop_start()
        assert disconnected.wait(WAIT), "a client without certificate was not disconnected"
        bare.loop_stop()
        assert connacks.empty(), f"a client without certificate got CONNACK {connacks.get()}"

    # The same client with its certificate is let in and can publish and receive.
    c = Client(cid("with-cert"))
    c.subscribe("mtls/t", 1)
    c.publish("mtls/t", b"certified", qos=1)
    assert c.recv().payload == b"certified"
    c.disconnect()


CASES = {
    "qos_0_1_2": case_qos_0_1_2,
    "retained": case_retained,
    "will": case_will,
    "persistent_session": case_persistent_session,
    "request_response": case_request_response,  # 5.0 only
    "certificate_required": case_certificate_required,  # with --require-certificate only
}


def main():
    global PORT, V5, TLS, REQUIRE_CERTIFICATE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--protocol", choices=["311", "5"], required=True)
    ap.add_argument("--only", choices=sorted(CASES), action="append")
    ap.add_argument("--cafile", help="connect over TLS, trusting this CA (PEM)")
    ap.add_argument("--cert", help="client certificate (PEM), with --cafile and --key")
    ap.add_argument("--key", help="client private key (PEM)")
    ap.add_argument("--require-certificate", action="store_true",
                    help="the broker refuses clients without a certificate")
    args = ap.parse_args()
    if (args.cert is None) != (args.key is None):
        ap.error("--cert and --key go together")
    if args.cert and not args.cafile:
        ap.error("--cert needs --cafile")
    if args.require_certificate and not args.cert:
        ap.error("--require-certificate needs --cert and --key")
    PORT = args.port
    V5 = args.protocol == "5"
    if args.cafile:
        TLS = {"ca_certs": args.cafile, "certfile": args.cert, "keyfile": args.key}
    REQUIRE_CERTIFICATE = args.require_certificate
    version = "5.0" if V5 else "3.1.1"
    transport = "TCP"
    if TLS is not None:
        transport = "TLS with a client certificate" if args.cert else "TLS"
    print(f"paho-mqtt {paho.mqtt.__version__}, MQTT {version} over {transport}, "
          f"broker {HOST}:{PORT}", flush=True)
    passed = failed = 0
    for name, case in CASES.items():
        if args.only and name not in args.only:
            continue
        if name == "request_response" and not V5:
            continue
        if name == "certificate_required" and not REQUIRE_CERTIFICATE:
            continue
        start = time.monotonic()
        try:
            case()
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print(f"FAIL {name}", flush=True)
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {name} ({time.monotonic() - start:.2f}s)", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
