//! TLS, mutual TLS, WebSocket and secure WebSocket listeners, end to end with certificates
//! generated here (rcgen), a rustls client and a tungstenite client; plus certificate
//! rotation on disk while clients stay connected.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use futures_util::{SinkExt, StreamExt};
use midge_codec::{decode, encode, DecodeLimits, Packet, ProtocolVersion, ReasonCode};
use midge_server::transport::tls::TlsSettings;
use midge_server::{ListenerConfig, ListenerKind, RunningServer, Server, ServerConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const V: ProtocolVersion = ProtocolVersion::V311;

/// A CA and certificates signed by it, as PEM files in a fresh directory.
struct Pki {
    dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(unique_id(&format!("midge-pki-{name}")));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).expect("CA");
        std::fs::write(dir.join("ca.pem"), cert.pem()).expect("write CA");
        Pki {
            dir,
            ca: Issuer::new(params, key),
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a certificate for `cn` (also 127.0.0.1 and localhost as SANs), valid from
    /// `days_from_now` days (negative: in the past) for `valid_days`, written as
    /// `<file>.pem` and `<file>.key`.
    fn issue(
        &self,
        file: &str,
        cn: &str,
        days_from_now: i64,
        valid_days: i64,
    ) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        params.distinguished_name.push(DnType::CommonName, cn);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(days_from_now);
        params.not_after = now + time::Duration::days(days_from_now + valid_days);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        let (c, k) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }
}

fn tls_listener(
    kind: ListenerKind,
    cert: &Path,
    key: &Path,
    ca: Option<&Path>,
    require: bool,
) -> ListenerConfig {
    ListenerConfig {
        kind,
        tls: Some(TlsSettings {
            cert_file: cert.to_owned(),
            key_file: key.to_owned(),
            ca_file: ca.map(Path::to_owned),
            require_certificate: require,
            use_identity_as_username: false,
        }),
        ..ListenerConfig::tcp("127.0.0.1:0".parse().expect("addr"))
    }
}

async fn serve(listeners: Vec<ListenerConfig>) -> RunningServer {
    let config = ServerConfig {
        listeners,
        ..ServerConfig::default()
    };
    Server::bind(config).await.expect("bind").start()
}

/// A rustls client trusting `ca`, optionally presenting a certificate.
fn connector(ca: &Path, client: Option<(&Path, &Path)>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(c.expect("CA cert")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .expect("cert")
                .map(|c| c.expect("cert"))
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// MQTT over any byte stream, with the codec.
struct Mqtt<S> {
    s: S,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Mqtt<S> {
    async fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        encode(p, V, &mut out).expect("encode");
        self.s.write_all(&out).await.expect("write");
        self.s.flush().await.expect("flush");
    }

    /// The next packet, or None if the stream ended or failed.
    async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = decode(&mut self.buf, V, &DecodeLimits::default()).expect("decode") {
                return Some(p);
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.s.read_buf(&mut self.buf))
                .await
                .expect("read timed out");
            match n {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn connect(s: S, id: &str) -> Option<Mqtt<S>> {
        let mut m = Mqtt {
            s,
            buf: BytesMut::new(),
        };
        m.send(&Packet::Connect(Box::new(connect_packet(V, id))))
            .await;
        match m.recv().await? {
            Packet::ConnAck(a) if a.code == ReasonCode::Success => Some(m),
            _ => None,
        }
    }

    async fn subscribe(&mut self, f: &str) {
        self.send(&subscribe_packet(1, vec![subscription(f, opts(Q0))]))
            .await;
        assert!(matches!(self.recv().await, Some(Packet::SubAck(_))));
    }

    async fn publish(&mut self, t: &str, payload: &[u8]) {
        self.send(&Packet::Publish(publish(t, Q0, 0, payload)))
            .await;
    }

    async fn expect_publish(&mut self, payload: &[u8]) {
        match self.recv().await {
            Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], payload),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

/// Publishing through one connection and receiving through the other proves both work.
async fn exchange<A, B>(a: &mut Mqtt<A>, b: &mut Mqtt<B>, topic: &str)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    b.subscribe(topic).await;
    a.publish(topic, b"across").await;
    b.expect_publish(b"across").await;
}

#[tokio::test]
async fn tls_clients_exchange_messages() {
    let pki = Pki::new("tls");
    let (cert, key) = pki.issue("server", "localhost", -1, 30);
    let server = serve(vec![tls_listener(
        ListenerKind::Mqtts,
        &cert,
        &key,
        None,
        false,
    )])
    .await;
    let c = connector(&pki.ca_file(), None);
    let addr = server.local_addrs[0];
    let mut a = Mqtt::connect(tls_connect(addr, &c).await.expect("TLS"), "tls-a")
        .await
        .expect("CONNACK");
    let mut b = Mqtt::connect(tls_connect(addr, &c).await.expect("TLS"), "tls-b")
        .await
        .expect("CONNACK");
    exchange(&mut a, &mut b, "tls/t").await;
}

#[tokio::test]
async fn a_client_trusting_another_ca_refuses_the_server() {
    let pki = Pki::new("real");
    let other = Pki::new("other");
    let (cert, key) = pki.issue("server", "localhost", -1, 30);
    let server = serve(vec![tls_listener(
        ListenerKind::Mqtts,
        &cert,
        &key,
        None,
        false,
    )])
    .await;
    let e = tls_connect(server.local_addrs[0], &connector(&other.ca_file(), None))
        .await
        .expect_err("unknown CA must fail");
    assert!(
        e.to_string().contains("UnknownIssuer") || e.to_string().contains("certificate"),
        "{e}"
    );
    // The listener still serves clients that trust it.
    let ok = tls_connect(server.local_addrs[0], &connector(&pki.ca_file(), None)).await;
    assert!(Mqtt::connect(ok.expect("TLS"), "after").await.is_some());
}

#[tokio::test]
async fn required_client_certificates_are_verified() {
    let pki = Pki::new("mtls");
    let other = Pki::new("rogue");
    let (cert, key) = pki.issue("server", "localhost", -1, 30);
    let (good, good_key) = pki.issue("device", "device-1", -1, 30);
    let (expired, expired_key) = pki.issue("expired", "device-2", -60, 30);
    let (rogue, rogue_key) = other.issue("rogue", "device-3", -1, 30);
    let ca = pki.ca_file();
    let server = serve(vec![tls_listener(
        ListenerKind::Mqtts,
        &cert,
        &key,
        Some(&ca),
        true,
    )])
    .await;
    let addr = server.local_addrs[0];

    // With TLS 1.3 the client learns of the refusal on its first read: CONNECT gets no CONNACK.
    let refused = |s: Option<Mqtt<_>>| s.is_none();
    let no_cert = tls_connect(addr, &connector(&ca, None)).await;
    assert!(
        match no_cert {
            Err(_) => true,
            Ok(s) => refused(Mqtt::connect(s, "no-cert").await),
        },
        "a client without certificate must be refused"
    );
    for (c, k, what) in [
        (&expired, &expired_key, "expired"),
        (&rogue, &rogue_key, "unknown CA"),
    ] {
        let r = tls_connect(addr, &connector(&ca, Some((c, k)))).await;
        assert!(
            match r {
                Err(_) => true,
                Ok(s) => refused(Mqtt::connect(s, what).await),
            },
            "a client certificate that is {what} must be refused"
        );
    }
    let s = tls_connect(addr, &connector(&ca, Some((&good, &good_key))))
        .await
        .expect("TLS");
    assert!(
        Mqtt::connect(s, "device-1").await.is_some(),
        "a valid client certificate is accepted"
    );
}

#[tokio::test]
async fn the_certificate_identity_is_the_username_for_the_acl() {
    let pki = Pki::new("identity");
    let (cert, key) = pki.issue("server", "localhost", -1, 30);
    let (dev1, dev1_key) = pki.issue("device-1", "device-1", -1, 30);
    let dir = std::env::temp_dir().join(unique_id("midge-identity"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let acl = dir.join("acl");
    std::fs::write(
        &acl,
        "pattern readwrite devices/%u/#\nuser device-1\ntopic read fleet/#\n",
    )
    .expect("acl");
    // An empty password file: nobody logs in with a password, the certificate is the login.
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, "").expect("passwd");
    let mut listener = tls_listener(ListenerKind::Mqtts, &cert, &key, Some(&pki.ca_file()), true);
    if let Some(t) = listener.tls.as_mut() {
        t.use_identity_as_username = true;
    }
    listener.acl_file = Some(acl);
    listener.password_file = Some(passwd);
    listener.allow_anonymous = false;
    let server = serve(vec![listener]).await;
    let addr = server.local_addrs[0];

    let s = tls_connect(addr, &connector(&pki.ca_file(), Some((&dev1, &dev1_key))))
        .await
        .expect("TLS");
    // The user name in CONNECT is ignored: the certificate says who this is.
    let mut m = Mqtt {
        s,
        buf: BytesMut::new(),
    };
    let mut c = connect_packet(V, "dev-1");
    c.username = Some(mstr("device-2"));
    m.send(&Packet::Connect(Box::new(c))).await;
    match m.recv().await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    m.send(&subscribe_packet(
        1,
        vec![
            subscription("devices/device-1/#", opts(Q0)),
            subscription("devices/device-2/#", opts(Q0)),
            subscription("fleet/+/status", opts(Q0)),
        ],
    ))
    .await;
    match m.recv().await {
        Some(Packet::SubAck(a)) => assert_eq!(
            a.codes,
            vec![
                ReasonCode::Success,
                ReasonCode::UnspecifiedError,
                ReasonCode::Success
            ]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    m.publish("devices/device-1/state", b"on").await;
    m.expect_publish(b"on").await;
}

#[tokio::test]
async fn certificates_rotate_on_disk_without_dropping_clients() {
    let pki = Pki::new("rotate");
    let (cert, key) = pki.issue("server", "first", -1, 30);
    let server = serve(vec![tls_listener(
        ListenerKind::Mqtts,
        &cert,
        &key,
        None,
        false,
    )])
    .await;
    let addr = server.local_addrs[0];
    let c = connector(&pki.ca_file(), None);
    let first = tls_connect(addr, &c).await.expect("TLS");
    assert_eq!(served_cn(&first), "first");
    let mut old = Mqtt::connect(first, "old").await.expect("CONNACK");

    // New files with a new name, then a reload as SIGHUP does.
    let (new_cert, new_key) = pki.issue("next", "second", -1, 30);
    std::fs::copy(&new_cert, &cert).expect("replace cert");
    std::fs::copy(&new_key, &key).expect("replace key");
    server.reload_certificates();

    let second = tls_connect(addr, &c).await.expect("TLS after rotation");
    assert_eq!(
        served_cn(&second),
        "second",
        "new connections get the new certificate"
    );
    let mut new = Mqtt::connect(second, "new").await.expect("CONNACK");
    // The connection made before the rotation still works, both ways.
    exchange(&mut new, &mut old, "rotate/a").await;
    exchange(&mut old, &mut new, "rotate/b").await;
}

fn served_cn(s: &tokio_rustls::client::TlsStream<TcpStream>) -> String {
    let cert = s
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0]
        .clone();
    midge_server::transport::tls::certificate_identity(&cert).expect("CN")
}

/// A WebSocket client carrying MQTT in binary frames, as an AsyncRead/AsyncWrite pair
/// is not what tungstenite offers: messages are sent and received directly.
async fn ws_exchange<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    p: &Packet,
) -> Option<Packet>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    encode(p, V, &mut out).expect("encode");
    ws.send(Message::Binary(out.freeze())).await.expect("send");
    ws_recv(ws).await
}

async fn ws_recv<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
) -> Option<Packet> {
    let mut buf = BytesMut::new();
    loop {
        if let Some(p) = decode(&mut buf, V, &DecodeLimits::default()).expect("decode") {
            return Some(p);
        }
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("ws read timed out")
        {
            Some(Ok(Message::Binary(b))) => buf.extend_from_slice(&b),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

fn ws_request(
    url: &str,
    protocol: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = url.into_client_request().expect("request");
    req.headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().expect("header"));
    req
}

#[tokio::test]
async fn websocket_clients_exchange_messages_and_packets_may_span_frames() {
    let listener = ListenerConfig {
        kind: ListenerKind::Ws,
        ..ListenerConfig::tcp("127.0.0.1:0".parse().expect("addr"))
    };
    let server = serve(vec![listener]).await;
    let url = format!("ws://{}/mqtt", server.local_addrs[0]);
    let (mut sub, resp) = tokio_tungstenite::connect_async(ws_request(&url, "mqtt"))
        .await
        .expect("handshake");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "mqtt");
    let connack = ws_exchange(
        &mut sub,
        &Packet::Connect(Box::new(connect_packet(V, "ws-sub"))),
    )
    .await;
    assert!(matches!(connack, Some(Packet::ConnAck(a)) if a.code == ReasonCode::Success));
    let suback = ws_exchange(
        &mut sub,
        &subscribe_packet(1, vec![subscription("ws/#", opts(Q0))]),
    )
    .await;
    assert!(matches!(suback, Some(Packet::SubAck(_))));

    // mqttv3.1 is accepted too; this client splits its packets across frames.
    let (mut publ, resp) = tokio_tungstenite::connect_async(ws_request(&url, "mqttv3.1"))
        .await
        .expect("handshake");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "mqttv3.1");
    let mut bytes = BytesMut::new();
    encode(
        &Packet::Connect(Box::new(connect_packet(V, "ws-pub"))),
        V,
        &mut bytes,
    )
    .expect("encode");
    encode(
        &Packet::Publish(publish("ws/a", Q0, 0, b"split")),
        V,
        &mut bytes,
    )
    .expect("encode");
    for chunk in bytes.chunks(3) {
        publ.send(Message::Binary(chunk.to_vec().into()))
            .await
            .expect("send");
    }
    assert!(matches!(ws_recv(&mut publ).await, Some(Packet::ConnAck(_))));
    match ws_recv(&mut sub).await {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"split"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }

    // A text frame closes the connection ([MQTT-6.0.0-1]).
    publ.send(Message::Text("CONNECT".into()))
        .await
        .expect("send");
    assert!(ws_recv(&mut publ).await.is_none());

    // Wrong path: refused in the handshake.
    let wrong = format!("ws://{}/other", server.local_addrs[0]);
    assert!(tokio_tungstenite::connect_async(ws_request(&wrong, "mqtt"))
        .await
        .is_err());
}

#[tokio::test]
async fn secure_websocket_and_tls_clients_share_the_broker() {
    let pki = Pki::new("wss");
    let (cert, key) = pki.issue("server", "localhost", -1, 30);
    let server = serve(vec![
        tls_listener(ListenerKind::Wss, &cert, &key, None, false),
        tls_listener(ListenerKind::Mqtts, &cert, &key, None, false),
    ])
    .await;
    let c = connector(&pki.ca_file(), None);
    let tls = tls_connect(server.local_addrs[0], &c).await.expect("TLS");
    let url = format!("wss://localhost:{}/mqtt", server.local_addrs[0].port());
    let (mut ws, _) = tokio_tungstenite::client_async(ws_request(&url, "mqtt"), tls)
        .await
        .expect("WSS handshake");
    let connack = ws_exchange(
        &mut ws,
        &Packet::Connect(Box::new(connect_packet(V, "wss-sub"))),
    )
    .await;
    assert!(matches!(connack, Some(Packet::ConnAck(_))));
    let suback = ws_exchange(
        &mut ws,
        &subscribe_packet(1, vec![subscription("mixed/t", opts(Q0))]),
    )
    .await;
    assert!(matches!(suback, Some(Packet::SubAck(_))));

    let mut p = Mqtt::connect(
        tls_connect(server.local_addrs[1], &c).await.expect("TLS"),
        "tls-pub",
    )
    .await
    .expect("CONNACK");
    p.publish("mixed/t", b"to the browser").await;
    match ws_recv(&mut ws).await {
        Some(Packet::Publish(m)) => assert_eq!(&m.payload[..], b"to the browser"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}
