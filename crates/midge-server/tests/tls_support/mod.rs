//! What the TLS interop tests share: a test CA made here with `rcgen` that issues server and
//! client certificates as PEM files in a fresh temporary directory, and a midge server in
//! this process with one `mqtts` listener on 127.0.0.1 and a free port.
//!
//! Every certificate carries the SANs `localhost` and `127.0.0.1`, so a client may connect by
//! either name and still verify the server's certificate.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use midge_server::transport::tls::TlsSettings;
use midge_server::{ListenerConfig, ListenerKind, RunningServer, Server, ServerConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// A CA and the certificates it signed, as PEM files in a directory of their own.
pub struct Pki {
    pub dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA named after `name`, written to `<dir>/ca.pem`.
    pub fn new(name: &str) -> Pki {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "midge-interop-pki-{name}-{}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("midge {name} test CA"));
        let cert = params.self_signed(&key).expect("CA certificate");
        std::fs::write(dir.join("ca.pem"), cert.pem()).expect("write CA");
        Pki {
            dir,
            ca: Issuer::new(params, key),
        }
    }

    /// The CA certificate a client trusts (mosquitto's `--cafile`, paho's `ca_certs`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a certificate with common name `cn`, written as `<file>.pem` and `<file>.key`.
    pub fn issue(&self, file: &str, cn: &str) -> Identity {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned()]).expect("certificate params");
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("an IP")));
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        let id = Identity {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&id.cert, cert.pem()).expect("write certificate");
        std::fs::write(&id.key, key.serialize_pem()).expect("write key");
        id
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a broker with one `mqtts` listener on 127.0.0.1 and a free port, serving
/// `server`'s certificate; with `client_ca`, client certificates are verified against it and,
/// if `require_certificate`, a client without one is refused. Returns the server and port.
pub async fn start_tls_server(
    server: &Identity,
    client_ca: Option<&Path>,
    require_certificate: bool,
) -> (RunningServer, u16) {
    let listener = ListenerConfig {
        kind: ListenerKind::Mqtts,
        tls: Some(TlsSettings {
            cert_file: server.cert.clone(),
            key_file: server.key.clone(),
            ca_file: client_ca.map(Path::to_owned),
            require_certificate,
            use_identity_as_username: false,
        }),
        ..ListenerConfig::tcp("127.0.0.1:0".parse().expect("a valid address"))
    };
    let config = ServerConfig {
        listeners: vec![listener],
        ..ServerConfig::default()
    };
    let running = Server::bind(config)
        .await
        .expect("binding a TLS listener on 127.0.0.1:0")
        .start();
    let port = running.local_addrs[0].port();
    (running, port)
}
