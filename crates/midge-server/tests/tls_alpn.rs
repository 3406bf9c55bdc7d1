//! ALPN on the TLS listeners, as real clients offer it: a browser opening `wss://` offers
//! `http/1.1` (the WebSocket handshake is HTTP/1.1), and an MQTT client on `mqtts` may offer
//! `mqtt`. rustls refuses a client whose offered protocols share none with the server's list
//! (alert `no_application_protocol`), so a wss listener that advertised only `mqtt` would lock
//! every browser out while tungstenite and other clients that offer no ALPN still got in.
//! Each test here does the TLS handshake with rustls offering what that kind of client
//! offers, then an MQTT CONNECT/CONNACK over it, with every wait bounded.

#![allow(clippy::unwrap_used)]

mod tls_support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use midge_server::transport::tls::TlsSettings;
use midge_server::{ListenerConfig, ListenerKind, RunningServer, Server, ServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tls_support::{Identity, Pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

/// CONNECT, MQTT 3.1.1, clean session, keep-alive 30 s, client id "alpn".
const CONNECT: &[u8] = &[
    0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 4, b'a', b'l', b'p', b'n',
];
/// CONNACK, no session present, accepted.
const CONNACK: &[u8] = &[0x20, 2, 0, 0];

async fn serve(kind: ListenerKind, id: &Identity) -> (RunningServer, SocketAddr) {
    let listener = ListenerConfig {
        kind,
        tls: Some(TlsSettings {
            cert_file: id.cert.clone(),
            key_file: id.key.clone(),
            ca_file: None,
            require_certificate: false,
            use_identity_as_username: false,
        }),
        ..ListenerConfig::tcp("127.0.0.1:0".parse().unwrap())
    };
    let config = ServerConfig {
        listeners: vec![listener],
        ..ServerConfig::default()
    };
    let server = Server::bind(config).await.unwrap().start();
    let addr = server.local_addrs[0];
    (server, addr)
}

/// TLS to `addr` trusting `ca` and offering `alpn`.
async fn tls_connect(
    addr: SocketAddr,
    ca: &Path,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(
        WAIT,
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("TLS handshake timed out")
}

#[tokio::test]
async fn wss_accepts_a_browser_offering_http_1_1() {
    let pki = Pki::new("alpn-wss");
    let id = pki.issue("server", "localhost");
    let (_server, addr) = serve(ListenerKind::Wss, &id).await;
    // What Chromium offers for wss://.
    let tls = tls_connect(addr, &pki.ca_file(), &[b"http/1.1"])
        .await
        .expect("a wss listener must accept a client offering ALPN http/1.1, as browsers do");
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    assert!(
        alpn.is_none() || alpn.as_deref() == Some(b"http/1.1"),
        "negotiated {alpn:?} for a WebSocket connection"
    );
    let mut req = format!("wss://localhost:{}/mqtt", addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tls))
        .await
        .expect("WebSocket handshake timed out")
        .expect("WebSocket handshake");
    ws.send(Message::Binary(CONNECT.to_vec().into()))
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("CONNACK timed out")
    {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], CONNACK),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn mqtts_accepts_a_client_offering_mqtt() {
    let pki = Pki::new("alpn-mqtts");
    let id = pki.issue("server", "localhost");
    let (_server, addr) = serve(ListenerKind::Mqtts, &id).await;
    let mut tls = tls_connect(addr, &pki.ca_file(), &[b"mqtt"])
        .await
        .expect("an mqtts listener must accept a client offering ALPN mqtt");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"mqtt"[..]));
    tls.write_all(CONNECT).await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(WAIT, tls.read_exact(&mut buf))
        .await
        .expect("CONNACK timed out")
        .unwrap();
    assert_eq!(&buf, CONNACK);
}
