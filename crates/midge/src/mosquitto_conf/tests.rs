//! Table tests of the mosquitto.conf translation: every option, both `per_listener_settings`
//! modes, errors with their line, warnings once per option; every accepted translation is
//! also checked with `ServerConfig::from_file` and a TOML round trip.

#![allow(clippy::unwrap_used)]

use super::*;
use midge_server::ServerConfig;

const PROTOCOL_MAX: u32 = DecodeLimits::PROTOCOL_MAX_PACKET_SIZE;

/// Translates `text` and checks that midge accepts the result, also after a TOML round
/// trip (what `midge check-config` prints).
fn ok(text: &str) -> (FileConfig, Vec<String>) {
    let (cfg, warnings) = translate(text, Path::new("m.conf"))
        .unwrap_or_else(|e| panic!("{text:?} was refused: {e:#}"));
    ServerConfig::from_file(cfg.clone(), &[], "m.conf")
        .unwrap_or_else(|e| panic!("midge refuses the translation of {text:?}: {e}"));
    let toml = toml::to_string_pretty(&cfg).unwrap();
    let back = FileConfig::parse(&toml, Path::new("m.toml")).unwrap();
    assert_eq!(back, cfg, "TOML round trip of {text:?}:\n{toml}");
    (cfg, warnings)
}

fn err(text: &str) -> String {
    match translate(text, Path::new("m.conf")) {
        Ok((cfg, _)) => panic!("{text:?} was accepted: {cfg:?}"),
        Err(e) => format!("{e:#}"),
    }
}

fn one_listener(text: &str) -> ListenerFile {
    let (cfg, _) = ok(text);
    assert_eq!(cfg.listener.len(), 1, "{text:?}: {:?}", cfg.listener);
    cfg.listener.into_iter().next().unwrap()
}

#[test]
fn empty_file_is_mosquitto_2_local_only_mode_with_its_defaults() {
    let (cfg, warnings) = ok("");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(cfg.listener.len(), 1);
    let l = &cfg.listener[0];
    assert_eq!(l.bind, "127.0.0.1:1883");
    assert_eq!(l.kind, ListenerKind::Mqtt);
    assert_eq!(l.allow_anonymous, Some(true));
    assert!(cfg.storage.in_memory);
    assert_eq!(cfg.limits.max_inflight_messages, 20);
    assert_eq!(cfg.limits.receive_maximum, 20);
    assert_eq!(cfg.limits.max_queued_messages, 1000);
    assert_eq!(cfg.limits.queue_full_policy, "drop_newest");
    assert_eq!(cfg.limits.max_packet_size_bytes, PROTOCOL_MAX);
    assert_eq!(cfg.limits.topic_alias_maximum, 10);
    assert_eq!(cfg.mqtt.max_qos, 2);
    assert_eq!(cfg.sys.interval_secs, 10);
}

#[test]
fn listener_addresses() {
    let cases = [
        ("listener 1883", "0.0.0.0:1883"),
        ("listener 1884 localhost", "127.0.0.1:1884"),
        ("listener 1884 LOCALHOST", "127.0.0.1:1884"),
        ("listener 8883 192.168.1.10", "192.168.1.10:8883"),
        ("listener 1883 ::1", "[::1]:1883"),
        ("listener 1883 [::]", "[::]:1883"),
        ("listener 1883 127.0.0.1 # comment", "127.0.0.1:1883"),
        ("port 1885", "0.0.0.0:1885"),
        ("bind_address 127.0.0.1", "127.0.0.1:1883"),
        ("bind_address localhost\nport 1999", "127.0.0.1:1999"),
    ];
    for (text, bind) in cases {
        let l = one_listener(text);
        assert_eq!(l.bind, bind, "{text:?}");
        // Not local-only mode: mosquitto 2 refuses anonymous clients.
        assert_eq!(l.allow_anonymous, Some(false), "{text:?}");
    }
}

#[test]
fn listener_kinds_and_tls_files() {
    let cases: [(&str, ListenerKind); 5] = [
        ("listener 1883\nprotocol mqtt", ListenerKind::Mqtt),
        ("listener 9001\nprotocol websockets", ListenerKind::Ws),
        (
            "listener 8883\ncertfile c.pem\nkeyfile k.pem",
            ListenerKind::Mqtts,
        ),
        (
            "listener 8884\nprotocol websockets\ncertfile c.pem\nkeyfile k.pem",
            ListenerKind::Wss,
        ),
        ("protocol websockets", ListenerKind::Ws),
    ];
    for (text, kind) in cases {
        assert_eq!(one_listener(text).kind, kind, "{text:?}");
    }
    let l = one_listener(
        "listener 8883\ncertfile /etc/c.pem\nkeyfile /etc/k key.pem\ncafile ca.pem\nrequire_certificate true\nuse_identity_as_username true",
    );
    assert_eq!(l.cert_file, Some(PathBuf::from("/etc/c.pem")));
    assert_eq!(l.key_file, Some(PathBuf::from("/etc/k key.pem")));
    assert_eq!(l.ca_file, Some(PathBuf::from("ca.pem")));
    assert!(l.require_certificate && l.use_identity_as_username);
    // mosquitto reads the identity only of certificates it requires.
    let l = one_listener(
        "listener 8883\ncertfile c.pem\nkeyfile k.pem\ncafile ca.pem\nuse_identity_as_username true",
    );
    assert!(!l.use_identity_as_username);
}

#[test]
fn websocket_listener_warns_about_the_path() {
    let (_, warnings) =
        ok("listener 9001\nprotocol websockets\nlistener 9002\nprotocol websockets");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("/mqtt") && warnings[0].contains("m.conf:2"));
}

#[test]
fn tls_mistakes_are_errors_naming_the_listener() {
    let e = err("listener 8883\ncertfile c.pem");
    assert!(
        e.contains("listener 8883") && e.contains("m.conf:1") && e.contains("keyfile"),
        "{e}"
    );
    let e = err(
        "listener 8883\ncertfile c.pem\nkeyfile k.pem\nrequire_certificate true\ncapath /etc/ssl",
    );
    assert!(e.contains("cafile") && e.contains("m.conf:1"), "{e}");
}

#[test]
fn tls_options_on_plain_listeners_are_ignored_with_a_warning() {
    let (cfg, warnings) = ok("listener 1883\ncafile ca.pem\nrequire_certificate true");
    assert_eq!(cfg.listener[0].ca_file, None);
    assert!(!cfg.listener[0].require_certificate);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[test]
fn max_connections_is_per_listener() {
    let (cfg, _) = ok("listener 1883\nmax_connections 100\nlistener 1884\nmax_connections -1\nlistener 1885\nmax_connections 0");
    let limits: Vec<_> = cfg.listener.iter().map(|l| l.max_connections).collect();
    assert_eq!(limits, [Some(100), None, None]);
    assert_eq!(cfg.limits.max_connections, 10_000);
    let (cfg, _) = ok("listener 1883\nmax_connections 8000\nlistener 1884\nmax_connections 9000");
    assert_eq!(cfg.limits.max_connections, 17_000);
}

#[test]
fn per_listener_settings_false_makes_security_global() {
    let (cfg, _) = ok("listener 1883\nallow_anonymous true\nlistener 1884 127.0.0.1\npassword_file pw\nacl_file acl");
    for l in &cfg.listener {
        assert_eq!(l.allow_anonymous, Some(true), "{}", l.bind);
        assert_eq!(l.password_file, Some(PathBuf::from("pw")), "{}", l.bind);
        assert_eq!(l.acl_file, Some(PathBuf::from("acl")), "{}", l.bind);
    }
    let (cfg, _) =
        ok("per_listener_settings false\npassword_file pw\nlistener 1883\nlistener 1884");
    assert!(cfg
        .listener
        .iter()
        .all(|l| l.password_file.is_some() && l.allow_anonymous == Some(false)));
}

#[test]
fn per_listener_settings_true_keeps_security_per_listener() {
    let (cfg, _) = ok(
        "per_listener_settings true\nlistener 1883\nallow_anonymous true\nlistener 1884\npassword_file pw\nacl_file acl",
    );
    let a = &cfg.listener[0];
    assert_eq!(
        (a.allow_anonymous, &a.password_file, &a.acl_file),
        (Some(true), &None, &None)
    );
    let b = &cfg.listener[1];
    assert_eq!(b.allow_anonymous, Some(false));
    assert_eq!(b.password_file, Some(PathBuf::from("pw")));
    assert_eq!(b.acl_file, Some(PathBuf::from("acl")));
}

#[test]
fn per_listener_settings_after_a_security_option_is_an_error() {
    let e = err("allow_anonymous true\nlistener 1883\nper_listener_settings true");
    assert!(
        e.contains("m.conf:3") && e.contains("per_listener_settings") && e.contains("m.conf:1"),
        "{e}"
    );
    // Repeating the value in force is harmless.
    ok("password_file pw\nper_listener_settings false\nlistener 1883");
}

#[test]
fn local_only_mode_honours_an_explicit_allow_anonymous() {
    let (cfg, _) = ok("allow_anonymous false\npassword_file pw");
    let l = &cfg.listener[0];
    assert_eq!(
        (l.bind.as_str(), l.allow_anonymous),
        ("127.0.0.1:1883", Some(false))
    );
    assert_eq!(l.password_file, Some(PathBuf::from("pw")));
}

#[test]
fn options_before_the_first_listener_open_the_default_listener() {
    let (cfg, warnings) = ok("max_connections 10\nlistener 1884 127.0.0.1");
    let binds: Vec<_> = cfg.listener.iter().map(|l| l.bind.as_str()).collect();
    assert_eq!(binds, ["0.0.0.0:1883", "127.0.0.1:1884"]);
    assert_eq!(cfg.listener[0].max_connections, Some(10));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("m.conf:1") && w.contains("default listener")),
        "{warnings:?}"
    );
    // Global options do not.
    let (cfg, _) = ok("max_queued_messages 5\nlistener 1884");
    assert_eq!(cfg.listener.len(), 1);
}

#[test]
fn unix_socket_listeners_are_skipped() {
    let (cfg, warnings) = ok("listener 0 /run/mosquitto.sock\nlistener 1883");
    assert_eq!(cfg.listener.len(), 1);
    assert!(warnings[0].contains("unix socket"), "{warnings:?}");
    let e = err("listener 0 /run/mosquitto.sock");
    assert!(e.contains("m.conf:1") && e.contains("listener 1883"), "{e}");
    assert!(err("listener 0").contains("unix socket path"));
}

#[test]
fn persistence() {
    let (cfg, w) = ok("persistence false");
    assert!(cfg.storage.in_memory && w.is_empty());
    let (cfg, w) = ok("persistence true\npersistence_location /var/lib/mosquitto/");
    assert!(!cfg.storage.in_memory);
    assert_eq!(cfg.storage.data_dir, PathBuf::from("/var/lib/mosquitto/"));
    assert!(w[0].contains("mosquitto.db"), "{w:?}");
    let (_, w) = ok("persistence_file m.db\nautosave_interval 60\nautosave_on_changes false");
    assert_eq!(w.len(), 3, "{w:?}");
}

/// Global options: text, then a check of the translation.
#[test]
fn global_options() {
    type Check = fn(&FileConfig) -> bool;
    let cases: &[(&str, Check)] = &[
        ("max_queued_messages 500", |c| {
            c.limits.max_queued_messages == 500
        }),
        ("max_queued_messages 0", |c| {
            c.limits.max_queued_messages == UNLIMITED_QUEUED_MESSAGES
        }),
        ("max_queued_bytes 4096", |c| {
            c.limits.max_queued_bytes == 4096
        }),
        ("max_queued_bytes 0", |c| {
            c.limits.max_queued_bytes == UNLIMITED_QUEUED_BYTES
        }),
        ("max_inflight_messages 10", |c| {
            c.limits.max_inflight_messages == 10 && c.limits.receive_maximum == 10
        }),
        ("max_inflight_messages 0", |c| {
            c.limits.max_inflight_messages == 65_535 && c.limits.receive_maximum == 65_535
        }),
        ("message_size_limit 1000", |c| {
            c.limits.max_packet_size_bytes == 1000 + MESSAGE_SIZE_HEADER_ALLOWANCE
        }),
        ("message_size_limit 0", |c| {
            c.limits.max_packet_size_bytes == PROTOCOL_MAX
        }),
        ("message_size_limit 268435455", |c| {
            c.limits.max_packet_size_bytes == PROTOCOL_MAX
        }),
        ("max_packet_size 5000", |c| {
            c.limits.max_packet_size_bytes == 5000
        }),
        ("max_packet_size 5000\nmessage_size_limit 100", |c| {
            c.limits.max_packet_size_bytes == 5000
        }),
        ("max_packet_size 4000000000", |c| {
            c.limits.max_packet_size_bytes == PROTOCOL_MAX
        }),
        ("max_keepalive 60", |c| c.limits.max_keep_alive_secs == 60),
        ("max_keepalive 65535", |c| {
            c.limits.max_keep_alive_secs == 65_535
        }),
        ("retain_available false", |c| !c.mqtt.retain_available),
        ("max_qos 1", |c| c.mqtt.max_qos == 1),
        ("listener 1883\nmax_qos 0", |c| c.mqtt.max_qos == 0),
        ("max_topic_alias 0", |c| c.limits.topic_alias_maximum == 0),
        ("sys_interval 1", |c| c.sys.interval_secs == 1),
        ("sys_interval 0", |c| c.sys.interval_secs == 0),
        ("persistent_client_expiration 3h", |c| {
            c.limits.max_session_expiry_secs == 3 * 3600
        }),
        ("persistent_client_expiration 1d", |c| {
            c.limits.max_session_expiry_secs == 86_400
        }),
        ("persistent_client_expiration 2w", |c| {
            c.limits.max_session_expiry_secs == 14 * 86_400
        }),
        ("persistent_client_expiration 1m", |c| {
            c.limits.max_session_expiry_secs == 30 * 86_400
        }),
        ("persistent_client_expiration 1y", |c| {
            c.limits.max_session_expiry_secs == 365 * 86_400
        }),
        ("persistent_client_expiration 500y", |c| {
            c.limits.max_session_expiry_secs == u32::MAX
        }),
        ("queue_qos0_messages true", |c| c.limits.queue_qos0_offline),
        ("memory_limit 1000000", |c| c.limits.memory_budget_mib == 1),
        ("memory_limit 3145728", |c| c.limits.memory_budget_mib == 3),
        ("log_type debug", |c| c.log.level == "debug"),
        ("log_type error\nlog_type warning", |c| {
            c.log.level == "warn"
        }),
        ("log_type all", |c| c.log.level == "debug"),
        ("log_type none", |c| c.log.level == "off"),
    ];
    for (text, check) in cases {
        let (cfg, _) = ok(text);
        assert!(check(&cfg), "{text:?} gave {cfg:#?}");
    }
}

#[test]
fn different_max_qos_per_listener_uses_the_lowest_with_a_warning() {
    let (cfg, w) = ok("listener 1883\nmax_qos 1\nlistener 1884");
    assert_eq!(cfg.mqtt.max_qos, 1);
    assert!(w.iter().any(|w| w.contains("max_qos")), "{w:?}");
}

/// Malformed values: text, then the line and option the message must name.
#[test]
fn malformed_values_name_file_line_option_and_fix() {
    let cases = [
        (
            "# comment\nport abc",
            "m.conf:2: option `port`",
            "1 to 65535",
        ),
        ("port 0", "m.conf:1: option `port`", "1 to 65535"),
        ("\n\nmax_qos 7", "m.conf:3: option `max_qos`", "0, 1 or 2"),
        ("listener abc", "m.conf:1: option `listener`", "1 to 65535"),
        (
            "listener 1883 a b",
            "m.conf:1: option `listener`",
            "listener PORT",
        ),
        ("listener", "m.conf:1: option `listener`", "listener PORT"),
        (
            "allow_anonymous yes",
            "m.conf:1: option `allow_anonymous`",
            "true or false",
        ),
        ("persistence", "m.conf:1: option `persistence`", "value"),
        (
            "max_keepalive 5",
            "m.conf:1: option `max_keepalive`",
            "10 to 65535",
        ),
        (
            "max_packet_size 10",
            "m.conf:1: option `max_packet_size`",
            "20 bytes",
        ),
        (
            "max_inflight_messages 70000",
            "m.conf:1: option `max_inflight_messages`",
            "65535",
        ),
        (
            "sys_interval -1",
            "m.conf:1: option `sys_interval`",
            "65535",
        ),
        (
            "persistent_client_expiration 5x",
            "m.conf:1: option `persistent_client_expiration`",
            "14d",
        ),
        (
            "persistent_client_expiration 0d",
            "m.conf:1: option `persistent_client_expiration`",
            "14d",
        ),
        (
            "protocol mqttsn",
            "m.conf:1: option `protocol`",
            "websockets",
        ),
        ("log_type loud", "m.conf:1: option `log_type`", "debug"),
        (
            "max_queued_messages 5 6",
            "m.conf:1: option `max_queued_messages`",
            "extra",
        ),
        (
            "address 10.0.0.1",
            "m.conf:1: option `address`",
            "connection NAME",
        ),
        (
            "listener 1883\nmount_point tenant/",
            "m.conf:2: option `mount_point`",
            "remove the line",
        ),
        (
            "listener 8883\ncrlfile crl.pem",
            "m.conf:2: option `crlfile`",
            "remove the line",
        ),
        (
            "listener 8883\npsk_hint h",
            "m.conf:2: option `psk_hint`",
            "certfile",
        ),
        (
            "plugin /usr/lib/mosquitto_dynamic_security.so",
            "m.conf:1: option `plugin`",
            "acl_file",
        ),
        (
            "auth_plugin /x.so",
            "m.conf:1: option `auth_plugin`",
            "acl_file",
        ),
        (
            "auth_opt_db x",
            "m.conf:1: option `auth_opt_db`",
            "remove the line",
        ),
    ];
    for (text, names, fix) in cases {
        let e = err(text);
        assert!(e.contains(names), "{text:?}: {e}");
        assert!(e.contains(fix), "{text:?}: {e}");
    }
}

#[test]
fn unsupported_options_warn_once_per_option_name() {
    let text = "log_dest stdout\nlog_dest file /var/log/mosquitto.log\nuser mosquitto\npid_file /run/m.pid\nallow_zero_length_clientid false\nconnection_messages true\nlog_timestamp true\nlisteners 1\nlisteners 2\nlistener 1883\nsocket_domain ipv4\nhttp_dir /www\ncapath /etc/ssl/certs\nmax_inflight_bytes 100";
    let (_, warnings) = ok(text);
    let named = |key: &str| {
        warnings
            .iter()
            .filter(|w| w.contains(&format!("`{key}`")))
            .count()
    };
    for key in [
        "log_dest",
        "user",
        "pid_file",
        "allow_zero_length_clientid",
        "connection_messages",
        "log_timestamp",
        "listeners",
        "socket_domain",
        "http_dir",
        "capath",
        "max_inflight_bytes",
    ] {
        assert_eq!(named(key), 1, "{key}: {warnings:#?}");
    }
    assert_eq!(warnings.len(), 11, "{warnings:#?}");
    assert!(warnings[0].starts_with("m.conf:1: "), "{warnings:?}");
    assert!(warnings
        .iter()
        .any(|w| w.contains("unknown option `listeners`")));
}

#[test]
fn a_bridge_is_one_warning_and_later_options_still_apply() {
    let text = "connection cloud\naddress 10.0.0.1:1883\ntopic # out 1\nremote_username u\nbridge_cafile ca.pem\nlistener 1883 127.0.0.1\nallow_anonymous true";
    let (cfg, warnings) = ok(text);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("bridge `cloud`") && warnings[0].contains("m.conf:1"));
    assert_eq!(cfg.listener[0].allow_anonymous, Some(true));
}

#[test]
fn comments_blank_lines_whitespace_and_crlf() {
    let text = "# a comment\r\n\r\n   \r\n  # indented comment\r\nlistener 1883 127.0.0.1   \r\npassword_file  /etc/pw   \r\nmax_queued_messages\t200\r\n";
    let (cfg, warnings) = ok(text);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(cfg.listener[0].bind, "127.0.0.1:1883");
    assert_eq!(
        cfg.listener[0].password_file,
        Some(PathBuf::from("/etc/pw"))
    );
    assert_eq!(cfg.limits.max_queued_messages, 200);
}

#[test]
fn include_dir_reads_conf_files_in_mosquitto_order() {
    let dir = std::env::temp_dir().join(format!("midge-mosq-include-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    let conf_d = dir.join("conf.d");
    std::fs::write(conf_d.join("b.conf"), "max_queued_messages 2\n").unwrap();
    std::fs::write(
        conf_d.join("A.conf"),
        "max_queued_messages 1\nlistener 1884\n",
    )
    .unwrap();
    std::fs::write(
        conf_d.join("a.conf"),
        "# listener options here go to the default listener\nmax_qos 1\n",
    )
    .unwrap();
    std::fs::write(conf_d.join("ignored.txt"), "nonsense nonsense\n").unwrap();
    let main = format!(
        "listener 1885\nprotocol websockets\ninclude_dir {}\nmax_connections 7\n",
        conf_d.display()
    );
    let result = translate(&main, &dir.join("mosquitto.conf"));
    let bad = translate("include_dir /nonexistent/midge", Path::new("m.conf"));
    std::fs::write(conf_d.join("c.conf"), "port x\n").unwrap();
    let bad_inner = translate(&main, &dir.join("mosquitto.conf"));
    let _ = std::fs::remove_dir_all(&dir);

    let (cfg, _) = result.unwrap();
    assert_eq!(cfg.limits.max_queued_messages, 2);
    let binds: Vec<_> = cfg
        .listener
        .iter()
        .map(|l| (l.bind.as_str(), l.kind))
        .collect();
    // a.conf's max_qos opened the default listener; after include_dir the main file
    // configures 1885 again.
    assert_eq!(
        binds,
        [
            ("0.0.0.0:1883", ListenerKind::Mqtt),
            ("0.0.0.0:1885", ListenerKind::Ws),
            ("0.0.0.0:1884", ListenerKind::Mqtt)
        ]
    );
    assert_eq!(cfg.listener[1].max_connections, Some(7));
    assert_eq!(cfg.mqtt.max_qos, 1);
    let e = format!("{:#}", bad.unwrap_err());
    assert!(e.contains("m.conf:1") && e.contains("include_dir"), "{e}");
    let e = format!("{:#}", bad_inner.unwrap_err());
    assert!(e.contains("c.conf:1") && e.contains("`port`"), "{e}");
}

#[test]
fn load_reads_the_file_and_names_a_missing_one() {
    let e = format!(
        "{:#}",
        load(Path::new("/nonexistent/mosquitto.conf")).unwrap_err()
    );
    assert!(e.contains("/nonexistent/mosquitto.conf"), "{e}");
}
