//! midge-client over TLS, mutual TLS, WebSocket and secure WebSocket against a real midge
//! server, with certificates generated here (rcgen): round trips, reconnects, and the errors
//! a user sees for a wrong CA, a missing file or a wrong WebSocket path.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use midge_client::{
    Client, ClientError, ClientOptions, Event, Events, FileProblem, Message, TlsFile, TlsOptions,
    TlsSetupError, Transport,
};
use midge_codec::{ProtocolVersion, QoS};
use midge_server::transport::tls::TlsSettings;
use midge_server::{ListenerConfig, ListenerKind, RunningServer, Server, ServerConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// A CA and certificates signed by it, as PEM files in a fresh directory.
struct Pki {
    dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "midge-client-pki-{name}-{}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Pki {
            dir,
            ca: Issuer::new(params, key),
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a certificate for `cn` valid for the DNS names `names` (and 127.0.0.1 when
    /// `names` has `localhost`), written as `<file>.pem` and `<file>.key`.
    fn issue(&self, file: &str, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if names.contains(&"localhost") {
            params
                .subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (c, k) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A listener of `kind` on `addr`, with the server certificate for TLS kinds and, with
/// `client_ca`, client certificates required.
fn listener(
    kind: ListenerKind,
    addr: SocketAddr,
    server: Option<&(PathBuf, PathBuf)>,
    client_ca: Option<&Path>,
) -> ListenerConfig {
    ListenerConfig {
        kind,
        tls: server.map(|(cert, key)| TlsSettings {
            cert_file: cert.clone(),
            key_file: key.clone(),
            ca_file: client_ca.map(Path::to_owned),
            require_certificate: client_ca.is_some(),
            use_identity_as_username: false,
        }),
        ..ListenerConfig::tcp(addr)
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn serve(listeners: Vec<ListenerConfig>) -> RunningServer {
    let config = ServerConfig {
        listeners,
        ..ServerConfig::default()
    };
    Server::bind(config).await.unwrap().start()
}

fn trusting(ca: &Path) -> TlsOptions {
    TlsOptions {
        ca_file: Some(ca.to_owned()),
        ..TlsOptions::default()
    }
}

/// Options for `transport` to `addr` as "localhost:port", so that the certificate's DNS name
/// is what gets verified.
fn opts(transport: Transport, addr: SocketAddr, id: &str, tls: &TlsOptions) -> ClientOptions {
    ClientOptions::new(format!("localhost:{}", addr.port()), id)
        .transport(transport)
        .tls(tls.clone())
}

async fn next(events: &mut Events) -> midge_codec::Publish {
    tokio::time::timeout(Duration::from_secs(5), events.next_message())
        .await
        .expect("a message within 5 s")
        .expect("client still running")
}

/// Subscribes with one client and publishes with the other, at QoS 1 and 2, a small and a
/// large (several WebSocket frames) payload.
async fn round_trip(sub_opts: ClientOptions, pub_opts: ClientOptions) {
    let (sub, mut events) = Client::connect(sub_opts).await.unwrap();
    sub.subscribe("rt/#", QoS::ExactlyOnce).await.unwrap();
    let (publisher, _ev) = Client::connect(pub_opts).await.unwrap();
    let large = Bytes::from(vec![0x5A; 200_000]);
    for (qos, payload) in [
        (QoS::AtLeastOnce, Bytes::from_static(b"small")),
        (QoS::ExactlyOnce, large),
    ] {
        publisher
            .publish(Message::new("rt/x", payload.clone(), qos, false).unwrap())
            .await
            .unwrap();
        let got = next(&mut events).await;
        assert_eq!(got.payload, payload);
    }
    publisher.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
}

#[tokio::test]
async fn messages_cross_every_transport() {
    let pki = Pki::new("all");
    let server_cert = pki.issue("server", "localhost", &["localhost"]);
    let server = serve(vec![
        listener(ListenerKind::Mqtts, any_port(), Some(&server_cert), None),
        listener(ListenerKind::Ws, any_port(), None, None),
        listener(ListenerKind::Wss, any_port(), Some(&server_cert), None),
        listener(ListenerKind::Mqtt, any_port(), None, None),
    ])
    .await;
    let tls = trusting(&pki.ca_file());
    let at = |i: usize| server.local_addrs[i];
    let cases = [
        (Transport::Tls, at(0)),
        (Transport::Ws, at(1)),
        (Transport::Wss, at(2)),
    ];
    for (t, addr) in cases {
        // Both ends on the transport, then across it and plain TCP in both directions.
        round_trip(opts(t, addr, "a", &tls), opts(t, addr, "b", &tls)).await;
        let tcp = ClientOptions::new(at(3).to_string(), "tcp");
        round_trip(opts(t, addr, "c", &tls), tcp.clone()).await;
        round_trip(tcp, opts(t, addr, "d", &tls).protocol(ProtocolVersion::V5)).await;
    }
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn urls_pick_the_transport_and_the_websocket_path() {
    let pki = Pki::new("url");
    let server_cert = pki.issue("server", "localhost", &["localhost"]);
    let mut ws = listener(ListenerKind::Wss, any_port(), Some(&server_cert), None);
    ws.ws_path = "/custom".into();
    let server = serve(vec![ws]).await;
    let port = server.local_addrs[0].port();
    let tls = trusting(&pki.ca_file());
    let url = format!("wss://localhost:{port}/custom");
    let sub = ClientOptions::from_url(&url, "s").unwrap().tls(tls.clone());
    let publisher = ClientOptions::from_url(&url, "p").unwrap().tls(tls.clone());
    round_trip(sub, publisher).await;

    // The default path /mqtt is not served here: the upgrade fails with the HTTP status.
    let wrong = ClientOptions::from_url(&format!("wss://localhost:{port}"), "w")
        .unwrap()
        .tls(tls);
    match Client::connect(wrong).await.unwrap_err() {
        e @ ClientError::WebSocket { .. } => {
            let msg = e.to_string();
            assert!(msg.contains("/mqtt") && msg.contains("404"), "{msg}");
        }
        other => panic!("expected a WebSocket error, got {other:?}"),
    }
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn mutual_tls_needs_a_client_certificate_from_the_ca() {
    let pki = Pki::new("mtls");
    let rogue = Pki::new("rogue");
    let server_cert = pki.issue("server", "localhost", &["localhost"]);
    let (cert, key) = pki.issue("device", "device-1", &["device-1"]);
    let (rogue_cert, rogue_key) = rogue.issue("rogue", "device-2", &["device-2"]);
    let ca = pki.ca_file();
    let server = serve(vec![
        listener(
            ListenerKind::Mqtts,
            any_port(),
            Some(&server_cert),
            Some(&ca),
        ),
        listener(ListenerKind::Wss, any_port(), Some(&server_cert), Some(&ca)),
    ])
    .await;
    let with_cert = TlsOptions {
        ca_file: Some(ca.clone()),
        cert_file: Some(cert),
        key_file: Some(key),
        insecure: false,
    };
    for (t, addr) in [
        (Transport::Tls, server.local_addrs[0]),
        (Transport::Wss, server.local_addrs[1]),
    ] {
        round_trip(
            opts(t, addr, "m1", &with_cert),
            opts(t, addr, "m2", &with_cert),
        )
        .await;
        let without = trusting(&ca);
        let mut signed_elsewhere = with_cert.clone();
        signed_elsewhere.cert_file = Some(rogue_cert.clone());
        signed_elsewhere.key_file = Some(rogue_key.clone());
        for (tls, what) in [
            (without, "no client certificate"),
            (signed_elsewhere, "a certificate of another CA"),
        ] {
            let mut o = opts(t, addr, "refused", &tls);
            o.connect_timeout = Duration::from_secs(5);
            let r = Client::connect(o).await;
            assert!(r.is_err(), "{t:?} with {what} must be refused");
        }
    }
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_broker_signed_by_another_ca_is_refused_with_a_clear_error() {
    let pki = Pki::new("real");
    let other = Pki::new("other");
    let server_cert = pki.issue("server", "localhost", &["localhost"]);
    let server = serve(vec![listener(
        ListenerKind::Mqtts,
        any_port(),
        Some(&server_cert),
        None,
    )])
    .await;
    let addr = server.local_addrs[0];
    let err = Client::connect(opts(Transport::Tls, addr, "x", &trusting(&other.ca_file())))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
    assert!(
        msg.contains("TLS handshake with localhost failed")
            && msg.contains("invalid peer certificate"),
        "{msg}"
    );
    // The broker stays usable for clients that trust it.
    round_trip(
        opts(Transport::Tls, addr, "y", &trusting(&pki.ca_file())),
        opts(Transport::Tls, addr, "z", &trusting(&pki.ca_file())),
    )
    .await;
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn insecure_skips_verification_but_a_ca_file_still_checks_the_chain() {
    let pki = Pki::new("insecure");
    let other = Pki::new("insecure-other");
    // A certificate for another name: connecting to 127.0.0.1 fails the host name check.
    let server_cert = pki.issue("server", "broker.example", &["broker.example"]);
    let server = serve(vec![listener(
        ListenerKind::Mqtts,
        any_port(),
        Some(&server_cert),
        None,
    )])
    .await;
    let addr = server.local_addrs[0];
    let at = |tls: TlsOptions, id: &str| {
        ClientOptions::new(addr.to_string(), id)
            .transport(Transport::Tls)
            .tls(tls)
    };
    let verified = Client::connect(at(trusting(&pki.ca_file()), "v")).await;
    assert!(
        matches!(verified, Err(ClientError::Tls { .. })),
        "wrong host name must fail: {verified:?}"
    );
    let no_checks = TlsOptions {
        insecure: true,
        ..TlsOptions::default()
    };
    let name_unchecked = TlsOptions {
        insecure: true,
        ..trusting(&pki.ca_file())
    };
    round_trip(at(no_checks, "i1"), at(name_unchecked, "i2")).await;
    let wrong_ca = TlsOptions {
        insecure: true,
        ..trusting(&other.ca_file())
    };
    assert!(
        matches!(
            Client::connect(at(wrong_ca, "i3")).await,
            Err(ClientError::Tls { .. })
        ),
        "insecure with a CA file still verifies the chain"
    );
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn bad_tls_settings_are_reported_before_connecting() {
    // Nothing listens here: each error must come from the settings, not the network.
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let pki = Pki::new("setup");
    let missing = pki.dir.join("missing.pem");
    let err = Client::connect(opts(Transport::Tls, addr, "n", &TlsOptions::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::TlsSetup(TlsSetupError::NoTrustAnchors)),
        "{err:?}"
    );
    assert!(err.to_string().contains("insecure"), "{err}");
    let err = Client::connect(opts(Transport::Wss, addr, "n", &trusting(&missing)))
        .await
        .unwrap_err();
    match &err {
        ClientError::TlsSetup(TlsSetupError::File {
            file: TlsFile::Ca,
            path,
            problem: FileProblem::Read(_),
        }) => assert_eq!(path, &missing),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let (cert, _key) = pki.issue("c", "c", &["c"]);
    let not_a_key = TlsOptions {
        cert_file: Some(cert.clone()),
        key_file: Some(cert.clone()),
        ..trusting(&pki.ca_file())
    };
    let err = Client::connect(opts(Transport::Tls, addr, "n", &not_a_key))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::TlsSetup(TlsSetupError::File {
                file: TlsFile::Key,
                problem: FileProblem::NoKey,
                ..
            })
        ),
        "{err:?}"
    );
    let half = TlsOptions {
        cert_file: Some(cert),
        ..trusting(&pki.ca_file())
    };
    assert!(matches!(
        Client::connect(opts(Transport::Tls, addr, "n", &half)).await,
        Err(ClientError::TlsSetup(TlsSetupError::IncompleteClientCert))
    ));
}

#[tokio::test]
async fn reconnect_resumes_over_every_transport() {
    let pki = Pki::new("reconnect");
    let server_cert = pki.issue("server", "localhost", &["localhost"]);
    let tls = trusting(&pki.ca_file());
    for (kind, t) in [
        (ListenerKind::Mqtts, Transport::Tls),
        (ListenerKind::Ws, Transport::Ws),
        (ListenerKind::Wss, Transport::Wss),
    ] {
        let cert = kind.is_tls().then_some(&server_cert);
        let server = serve(vec![listener(kind, any_port(), cert, None)]).await;
        let addr = server.local_addrs[0];
        let (client, mut events) = Client::connect(
            opts(t, addr, "rc", &tls)
                .protocol(ProtocolVersion::V5)
                .reconnect(true),
        )
        .await
        .unwrap();
        server.shutdown(Duration::from_secs(2)).await;
        let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap();
        assert!(matches!(ev, Some(Event::Disconnected(_))), "{t:?}: {ev:?}");
        let server = serve(vec![listener(kind, addr, cert, None)]).await;
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap();
        assert!(matches!(ev, Some(Event::Connected(_))), "{t:?}: {ev:?}");
        client.subscribe("back", QoS::AtLeastOnce).await.unwrap();
        client
            .publish(Message::new("back", "again", QoS::AtLeastOnce, false).unwrap())
            .await
            .unwrap();
        assert_eq!(
            next(&mut events).await.payload,
            Bytes::from_static(b"again")
        );
        client.disconnect().await.unwrap();
        server.shutdown(Duration::from_secs(2)).await;
    }
}
