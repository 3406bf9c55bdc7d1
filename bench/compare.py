"""Driver of bench/compare.sh: starts each broker fresh for every run, runs `midge bench`
against it with --pid, and prints a markdown table (medians over runs).

With --persistent: QoS 1 to persistent sessions (`midge bench --persistent`), midge with its
store and the default durability policy next to midge --in-memory and mosquitto with
`persistence true`."""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIDGE = os.path.join(ROOT, "target", "release", "midge")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
# rumqttd joins the table when it is on PATH, unless MIDGE_COMPARE_SKIP_RUMQTTD is set.
RUMQTTD = None if os.environ.get("MIDGE_COMPARE_SKIP_RUMQTTD") else shutil.which("rumqttd")

# Same limits for every broker: persistence off, 1000 queued messages per client,
# 64 in flight, 1 MiB packets, no connection limit below the open-file limit.
MOSQUITTO_CONF = """listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000
max_inflight_messages 64
message_size_limit 1048576
max_connections -1
"""

MIDGE_CONF = """[[listener]]
bind = "127.0.0.1:{port}"

[limits]
max_connections = 19500
max_packet_size_bytes = 1048576
max_inflight_messages = 64
max_queued_messages = 1000
"""

RUMQTTD_CONF = """id = 0
[router]
id = 0
max_connections = 20000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 0
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 64
dynamic_filters = true
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"broker did not listen on {port}")


# The brokers of --persistent: what each column runs.
PERSISTENT_BROKERS = ["midge", "midge --in-memory", "mosquitto"]


class Broker:
    def __init__(self, name, tmp, persistent=False):
        self.name, self.tmp, self.proc, self.port = name, tmp, None, None
        self.persistent = persistent

    def start(self):
        self.port = free_port()
        # rumqttd reads its config format from the extension: .toml, not .conf.
        ext = "toml" if self.name == "rumqttd" else "conf"
        conf = os.path.join(self.tmp, f"{self.name.split()[0]}.{ext}")
        # A fresh data directory for every run.
        data = tempfile.mkdtemp(dir=self.tmp)
        if self.name == "midge" and self.persistent:
            open(conf, "w").write(MIDGE_CONF.format(port=self.port))
            cmd = [MIDGE, "serve", "--data-dir", os.path.join(data, "midge-data"),
                   "--config", conf]
        elif self.name.startswith("midge"):
            open(conf, "w").write(MIDGE_CONF.format(port=self.port))
            cmd = [MIDGE, "serve", "--in-memory", "--config", conf]
        elif self.name == "mosquitto":
            text = MOSQUITTO_CONF.format(port=self.port)
            if self.persistent:
                text = text.replace("persistence false", "persistence true") + \
                    f"persistence_location {data}/\n"
            open(conf, "w").write(text)
            cmd = [MOSQUITTO, "-c", conf]
        else:
            open(conf, "w").write(RUMQTTD_CONF.format(port=self.port))
            cmd = [RUMQTTD, "--config", conf]
        env = dict(os.environ, RUST_LOG="warn")
        log = os.path.join(data, "broker.log")
        with open(log, "w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, preexec_fn=raise_nofile)
        try:
            wait_port(self.port)
        except RuntimeError as e:
            self.proc.kill()
            self.proc.wait()
            with open(log) as f:
                tail = f.read()[-2000:]
            raise RuntimeError(f"{self.name}: {e}; its output:\n{tail}") from None

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def raise_nofile():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


HALT_POLL = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"


def cpu_ticks():
    """(steal, total) jiffies of all CPUs from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice, counted in user]
    return fields[7] if len(fields) > 7 else 0, sum(fields[:8])


def steal_percent(before, after):
    """Share of CPU time the hypervisor gave to others while a vCPU wanted to run."""
    if before is None or after is None or after[1] == before[1]:
        return None
    return 100.0 * (after[0] - before[0]) / (after[1] - before[1])


def halt_poll():
    try:
        with open(HALT_POLL) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def bench(broker, args, timeout):
    # A keep-alive (the same for every broker) because rumqttd refuses 0; runs are far
    # shorter than 1.5 x 600 s, so no PINGREQ is needed.
    cmd = [MIDGE, "bench"] + args + ["-p", str(broker.port), "--pid", str(broker.proc.pid),
                                     "--keep-alive", "600", "--json", "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         preexec_fn=raise_nofile)
    if out.returncode != 0:
        return {"error": (out.stderr or out.stdout).strip()[:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def scenarios(quick, duration, only=None, persistent=False):
    d = ["-d", str(duration), "-w", "1"]
    n = "20" if quick else "100"
    if persistent:
        rows = [
            ("fan-in QoS 1 (100 pub -> 1 sub), persistent sessions, msg/s",
             ["fanin", "-n", n, "-q", "1", "--persistent"] + d, "msgs_per_sec_out"),
            ("fan-out QoS 1 (1 pub -> 100 sub), persistent sessions, msg/s",
             ["fanout", "-n", n, "-q", "1", "--persistent"] + d, "msgs_per_sec_out"),
            ("p2p QoS 1 (100 pairs), persistent sessions, msg/s",
             ["p2p", "-n", n, "-q", "1", "--persistent"] + d, "msgs_per_sec_out"),
            ("p2p QoS 1 at 10k msg/s, persistent sessions, p99 latency ms",
             ["p2p", "-n", n, "-q", "1", "-r", "10000", "--persistent"] + d, "latency_ms_p99"),
        ]
        return [r for r in rows if only is None or only in r[0]]
    filters = "10000" if quick else "100000"
    conns = "2000" if quick else "19000"
    rows = []
    for qos in ("0", "1"):
        rows.append((f"fan-in QoS {qos} (100 pub -> 1 sub), msg/s", ["fanin", "-n", n, "-q", qos] + d, "msgs_per_sec_out"))
        rows.append((f"fan-out QoS {qos} (1 pub -> 100 sub), msg/s", ["fanout", "-n", n, "-q", qos] + d, "msgs_per_sec_out"))
        rows.append((f"p2p QoS {qos} (100 pairs), msg/s", ["p2p", "-n", n, "-q", qos] + d, "msgs_per_sec_out"))
    rows.append(("p2p QoS 1 at 10k msg/s, p99 latency ms", ["p2p", "-n", n, "-q", "1", "-r", "10000"] + d, "latency_ms_p99"))
    rows.append((f"routing: {filters} subscriptions + 1000 wildcards, msg/s",
                 ["subs", "--filters", filters, "--wildcards", "1000", "-q", "0"] + d, "msgs_per_sec_out"))
    rows.append((f"idle connections: {conns}, broker KiB per connection",
                 ["conn", "-n", conns, "--source-ips", "16", "--hold", "2"], "broker_rss_kib_per_connection"))
    rows.append((f"idle connections: {conns}, connects/s",
                 ["conn", "-n", conns, "--source-ips", "16", "--hold", "0"], "connects_per_sec"))
    return [r for r in rows if only is None or only in r[0]]


def fmt(v, key):
    if v is None:
        return "n/a"
    if key.startswith("latency") or key.endswith("per_connection"):
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return f"{v:,.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--only", help="run only the rows whose title contains this text")
    ap.add_argument("--persistent", action="store_true",
                    help="QoS 1 to persistent sessions: midge (store), midge --in-memory, "
                         "mosquitto (persistence true)")
    ap.add_argument("--halt-poll-ns", type=int,
                    help="set the guest's halt polling (KVM haltpoll cpuidle driver) for the run "
                         "and restore it afterwards; needs root")
    a = ap.parse_args()
    saved = halt_poll()
    if a.halt_poll_ns is not None:
        if saved is None:
            sys.exit(f"--halt-poll-ns: {HALT_POLL} is not there (not a KVM guest with haltpoll)")
        set_halt_poll(a.halt_poll_ns)
    try:
        run(a)
    finally:
        if a.halt_poll_ns is not None:
            set_halt_poll(saved)


def set_halt_poll(ns):
    try:
        with open(HALT_POLL, "w") as f:
            f.write(str(ns))
    except OSError as e:
        sys.exit(f"--halt-poll-ns: cannot write {HALT_POLL}: {e} (run as root)")
    print(f"guest halt polling set to {ns} ns", file=sys.stderr)


def run(a):
    runs = 1 if a.quick else a.runs
    duration = a.duration or (2 if a.quick else 5)
    if a.persistent:
        names = PERSISTENT_BROKERS
    else:
        names = ["midge", "mosquitto"] + (["rumqttd"] if RUMQTTD else [])
    # The ratio column compares midge with mosquitto, wherever they are in the list.
    mi, qi = names.index("midge"), names.index("mosquitto")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, args, key in scenarios(a.quick, duration, a.only, a.persistent):
            for name in names:
                vals, cpus, rss, lost, steal = [], [], [], [], []
                for _ in range(runs):
                    b = Broker(name, tmp, a.persistent)
                    b.start()
                    before = cpu_ticks()
                    try:
                        r = bench(b, args, timeout=300)
                    except subprocess.TimeoutExpired:
                        r = {"error": "timeout"}
                    finally:
                        b.stop()
                    steal.append(steal_percent(before, cpu_ticks()))
                    if "error" in r:
                        print(f"{label} / {name}: {r['error']}", file=sys.stderr)
                        if r["error"] == "timeout":
                            # It will time out again: five minutes per run for nothing.
                            break
                        continue
                    vals.append(r.get(key))
                    cpus.append(r.get("broker_cpu_secs"))
                    rss.append(r.get("broker_peak_rss_mib") or r.get("broker_rss_mib"))
                    lost.append(r.get("lost", r.get("failures")))
                    print(f"{label} / {name}: {fmt(r.get(key), key)}", file=sys.stderr)
                med = lambda xs: statistics.median([x for x in xs if x is not None]) if any(x is not None for x in xs) else None
                results[(label, name)] = (med(vals), med(cpus), med(rss), max([x for x in lost if x is not None], default=None), med(steal))
    lines = []
    lines.append(f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; "
                 f"date {datetime.date.today().isoformat()}; {runs} run(s) per cell, median; "
                 f"{duration:g} s measured after 1 s warm-up; 64-byte payloads; MQTT 3.1.1; "
                 f"load generator `midge bench` on the same machine.")
    hp = halt_poll()
    if hp is not None:
        lines.append("")
        lines.append(f"Virtual machine: guest halt polling {hp} ns ({HALT_POLL}; 0: an idle vCPU halts at "
                     "once and every wake-up goes through the hypervisor). Steal: CPU time the "
                     "hypervisor gave to others while this machine's vCPUs wanted to run, during each "
                     "cell's runs (median), from /proc/stat.")
    lines.append("")
    header = "| scenario | " + " | ".join(names) + " | midge/mosquitto | " + \
             " | ".join(f"{n} CPU s" for n in names) + " | " + " | ".join(f"{n} peak RSS MiB" for n in names) + \
             " | " + " | ".join(f"{n} lost" for n in names) + " | steal % (" + " / ".join(names) + ") |"
    lines.append(header)
    lines.append("|" + "---|" * (header.count("|") - 1))
    for label, _, key in scenarios(a.quick, duration, a.only, a.persistent):
        vals = [results.get((label, n), (None,) * 5) for n in names]
        m, q = vals[mi][0], vals[qi][0]
        if m is not None and q:
            ratio = f"{(q / m if key.startswith('latency') or key.endswith('per_connection') else m / q):.2f}x"
        else:
            ratio = "n/a"
        row = [label] + [fmt(v[0], key) for v in vals] + [ratio] + \
              [fmt(v[1], "latency") if v[1] is not None else "n/a" for v in vals] + \
              [f"{v[2]:.1f}" if v[2] is not None else "n/a" for v in vals] + \
              [str(v[3]) if v[3] is not None else "n/a" for v in vals] + \
              [" / ".join(f"{v[4]:.1f}" if v[4] is not None else "n/a" for v in vals)]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("For latency and memory per connection the ratio is mosquitto/midge, so above 1 means midge is better everywhere.")
    text = "\n".join(lines) + "\n"
    if a.out:
        open(a.out, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
