#!/usr/bin/env python3
"""Memory of offline backlogs: SESSIONS persistent MQTT 3.1.1 sessions subscribe to one
topic at QoS 1 and go offline, then MESSAGES QoS 1 messages are published to it, so that
SESSIONS x MESSAGES messages wait in offline queues (10,000 x 100 = 1,000,000 by default).
Reports the broker's RSS before and after, for `midge serve` with its store (the backlog
stays on disk) and with --in-memory (the backlog is in RAM).

Usage: python3 bench/offline_backlog.py [--sessions N] [--messages M] [--midge PATH]
       [--modes store,in-memory] [--every K]   (--every: RSS after every K messages too)
Needs paho-mqtt 2.x (scripts/install-test-deps.sh installs it).
"""
import argparse
import os
import shutil
import subprocess
import tempfile
import time

import paho.mqtt.client as mqtt

from compare import free_port, wait_port  # bench/ is this script's directory


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def client(cid, clean):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=clean,
                    protocol=mqtt.MQTTv311)
    return c


def run(midge, mode, sessions, messages, every):
    tmp = tempfile.mkdtemp()
    port = free_port()
    args = [midge, "serve", "--listen", f"127.0.0.1:{port}"]
    args += ["--in-memory"] if mode == "in-memory" else ["--data-dir", os.path.join(tmp, "data")]
    conf = os.path.join(tmp, "midge.toml")
    with open(conf, "w") as f:
        f.write("[limits]\nmax_connections = 20000\n")
    proc = subprocess.Popen(args + ["--config", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    try:
        wait_port(port, timeout=30)
        for i in range(sessions):
            c = client(f"offline-{i}", False)
            c.connect("127.0.0.1", port)
            r, _ = c.subscribe("backlog/t", qos=1)
            c.loop(timeout=1.0)
            c.loop(timeout=0.01)
            c.disconnect()
            c.loop(timeout=0.01)
        time.sleep(1)
        before = rss_mib(proc.pid)
        pub = client("publisher", True)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        started = time.time()
        points = []
        for n in range(1, messages + 1):
            pub.publish("backlog/t", b"x" * 64, qos=1).wait_for_publish(timeout=120)
            if every and n % every == 0 and n < messages:
                points.append((n * sessions, rss_mib(proc.pid)))
        took = time.time() - started
        pub.loop_stop()
        pub.disconnect()
        time.sleep(2)
        after = rss_mib(proc.pid)
        return before, after, took, points
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--midge", default="target/release/midge")
    ap.add_argument("--modes", default="store,in-memory",
                    help="comma-separated: store, in-memory")
    ap.add_argument("--every", type=int, default=0,
                    help="also report RSS after every N messages (0: only at the end)")
    a = ap.parse_args()
    print(f"{a.sessions} offline sessions x {a.messages} QoS 1 messages = "
          f"{a.sessions * a.messages:,} queued")
    print("| mode | RSS with sessions only MiB | RSS with the backlog MiB | growth MiB | publish time s |")
    print("|---|---|---|---|---|")
    for mode in a.modes.split(","):
        before, after, took, points = run(a.midge, mode, a.sessions, a.messages, a.every)
        for queued, rss in points:
            print(f"| {mode}, {queued:,} queued so far | {before:.1f} | {rss:.1f} | "
                  f"{rss - before:.1f} | |", flush=True)
        print(f"| {mode} | {before:.1f} | {after:.1f} | {after - before:.1f} | {took:.1f} |", flush=True)


if __name__ == "__main__":
    main()
