//! The `midge` binary as a user runs it: `midge serve --listen 127.0.0.1:0` logs its port,
//! serves a client, stops on SIGTERM after sending DISCONNECT 0x8B to 5.0 clients, and a bad
//! flag or config file is refused with a message naming the key.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{midge, start};

use bytes::BytesMut;
use midge_codec::{
    decode, encode, Connect, ConnectProperties, DecodeLimits, Disconnect, Packet, ProtocolVersion,
    ReasonCode,
};

fn read_packet(s: &mut TcpStream, v: ProtocolVersion) -> Option<Packet> {
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(p) = decode(&mut buf, v, &DecodeLimits::default()).unwrap() {
            return Some(p);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn connect_v5(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = BytesMut::new();
    let c = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 30,
        properties: ConnectProperties::default(),
        client_id: "shutdown-test".try_into().unwrap(),
        will: None,
        username: None,
        password: None,
    };
    encode(&Packet::Connect(Box::new(c)), ProtocolVersion::V5, &mut buf).unwrap();
    s.write_all(&buf).unwrap();
    match read_packet(&mut s, ProtocolVersion::V5) {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    s
}

#[test]
fn sigterm_sends_disconnect_0x8b_and_exits_cleanly() {
    let mut broker = start(&[]);
    let mut client = connect_v5(&broker.addr);
    let status = Command::new("kill")
        .args(["-TERM", &broker.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    match read_packet(&mut client, ProtocolVersion::V5) {
        Some(Packet::Disconnect(Disconnect { code, .. })) => {
            assert_eq!(code, ReasonCode::ServerShuttingDown)
        }
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(s) = broker.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "midge did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    let lines: Vec<String> = broker.logs.try_iter().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("connected") && l.contains("shutdown-test")),
        "connect log line with the client id: {lines:?}"
    );
}

#[test]
fn bad_listen_flag_names_the_flag() {
    let out = midge()
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--listen") && err.contains("IP:PORT"), "{err}");
}

#[test]
fn bad_config_file_names_file_and_key() {
    let dir = std::env::temp_dir().join(format!("midge-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[limits]\nmax_packet_size_bytes = 3\n").unwrap();
    let out = midge()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("limits.max_packet_size_bytes"),
        "{err}"
    );
    std::fs::write(&file, "[limits]\nmax_packet_size = 3\n").unwrap();
    let out = midge()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("max_packet_size"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until the broker has closed `s` (read returns end of stream or an error).
fn wait_closed(mut s: TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 16];
    while let Ok(n) = s.read(&mut b) {
        if n == 0 {
            break;
        }
    }
}

#[test]
fn refused_connections_are_logged_at_most_once_a_second_and_all_counted() {
    let dir = common::TempDir::new("refusal-log");
    let cfg = dir.0.join("midge.toml");
    std::fs::write(&cfg, "[limits]\nmax_connections = 1\n").unwrap();
    let b = start(&["--config", cfg.to_str().unwrap()]);
    let _held = connect_v5(&b.addr);
    for _ in 0..50 {
        wait_closed(TcpStream::connect(&b.addr).unwrap());
    }
    // A second later the next refusal is logged, with the count of those not logged.
    std::thread::sleep(Duration::from_millis(1100));
    wait_closed(TcpStream::connect(&b.addr).unwrap());
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut reported = 0;
    while reported < 51 && Instant::now() < deadline {
        if let Ok(line) = b.logs.recv_timeout(Duration::from_millis(100)) {
            if line.contains("connection refused: limits.max_connections reached") {
                let unlogged: u64 = line
                    .split("unlogged=")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("no unlogged count in {line}"));
                reported += 1 + unlogged;
                lines.push(line);
            }
        }
    }
    assert_eq!(reported, 51, "{lines:#?}");
    assert!((2..=3).contains(&lines.len()), "{lines:#?}");
}

#[test]
fn check_config_opens_the_files_serve_opens_and_parses_the_log_level() {
    let dir = common::TempDir::new("check-files");
    let conf = dir.0.join("midge.toml");
    let acl = dir.0.join("acl.txt");
    let check = |text: &str| {
        std::fs::write(&conf, text).unwrap();
        let out = midge()
            .arg("check-config")
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let missing = dir.0.join("missing-passwords");
    let (code, err) = check(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\npassword_file = \"{}\"\n",
        missing.display()
    ));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("missing-passwords") && err.contains("listener mqtt://127.0.0.1:0"),
        "{err}"
    );
    std::fs::write(&acl, "topic readwrite a/#\nbogus line\n").unwrap();
    let acl_conf = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nacl_file = \"{}\"\n",
        acl.display()
    );
    let (code, err) = check(&acl_conf);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("acl.txt:2") && err.contains("bogus"), "{err}");
    let (code, err) = check(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\npassword_file = \"{}\"\n",
        missing.display()
    ));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("http.password_file"), "{err}");
    let (code, err) = check("[log]\nlevel = \"warn,midge=loud\"\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("log.level"), "{err}");
    std::fs::write(&acl, "topic readwrite a/#\n").unwrap();
    let (code, err) = check(&acl_conf);
    assert_eq!(code, Some(0), "{err}");
}

/// Runs `midge serve` inside a new memory cgroup limited to 512 MiB, when this machine lets
/// the test make one (root, cgroup v1 memory controller or v2 with it enabled).
#[test]
fn the_default_memory_budget_follows_a_cgroup_memory_limit() {
    let name = format!("midge-test-{}", std::process::id());
    let (dir, limit_file) = if Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        (
            Path::new("/sys/fs/cgroup/memory").join(&name),
            "memory.limit_in_bytes",
        )
    } else {
        (Path::new("/sys/fs/cgroup").join(&name), "memory.max")
    };
    if std::fs::create_dir(&dir).is_err() {
        eprintln!("skipped: cannot create the cgroup {}", dir.display());
        return;
    }
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _cgroup = Remove(dir.clone());
    if let Err(e) = std::fs::write(dir.join(limit_file), (512u64 << 20).to_string()) {
        eprintln!("skipped: cannot limit the cgroup's memory: {e}");
        return;
    }
    let script = format!(
        "echo $$ > {} && exec \"$0\" serve --in-memory --listen 127.0.0.1:0",
        dir.join("cgroup.procs").display()
    );
    let mut broker = Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_midge")])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let stderr = broker.stderr.take().expect("stderr");
    let line = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("memory budget"));
    let _ = broker.kill();
    let _ = broker.wait();
    let line = line.expect("a memory budget line");
    assert!(line.contains("budget_mib=384"), "{line}");
}

#[test]
fn connect_and_disconnect_lines_name_the_clients_address() {
    let b = start(&[]);
    let o = midge()
        .args([
            "pub",
            "-p",
            &b.port,
            "-i",
            "addr-test",
            "-t",
            "t",
            "-m",
            "m",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline && seen.len() < 2 {
        if let Ok(line) = b.logs.recv_timeout(Duration::from_millis(100)) {
            if line.contains("client_id=addr-test")
                && (line.contains(" connected ") || line.contains(" disconnected "))
            {
                seen.push(line);
            }
        }
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    for line in &seen {
        assert!(line.contains("peer=127.0.0.1:"), "{line}");
        assert!(!line.contains("peer=0.0.0.0:0"), "{line}");
    }
}
