//! TLS listeners with rustls: the server certificate chain and key from PEM files, TLS 1.2
//! and 1.3, optional or required client certificates verified against a CA file, and the
//! client certificate's identity (CN, else the first SAN) for use as the username.
//! Certificates are reloaded without dropping connections: `TlsAcceptorHandle` hands each
//! new connection the current configuration, and `reload` replaces it.

use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::BytesMut;
use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::{poll_read_async, Transport};

/// The files and options of one TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, server certificate first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates that client certificates are verified against.
    pub ca_file: Option<PathBuf>,
    /// Refuse clients without a valid certificate (needs `ca_file`).
    pub require_certificate: bool,
    /// Use the client certificate's identity as the MQTT username.
    pub use_identity_as_username: bool,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("{what} {path}: {problem}")]
    File {
        /// Which file ("certificate file", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the combination.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client certificate verification: {0}")]
    Verifier(String),
}

fn file_err(what: &'static str, path: &Path, problem: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(what, path, e))?;
    if certs.is_empty() {
        return Err(file_err(what, path, "contains no PEM certificate"));
    }
    Ok(certs)
}

/// ALPN protocol of MQTT over TLS (`mqtts`).
pub const ALPN_MQTT: &[u8] = b"mqtt";
/// ALPN protocol of a WebSocket handshake (`wss`): browsers offer it and refuse a server
/// that answers with anything else.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Builds a rustls server configuration from the files; `alpn` is the one application
/// protocol the listener speaks (clients that offer no ALPN are accepted too).
pub fn server_config(s: &TlsSettings, alpn: &'static [u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = load_certs(&s.cert_file, "certificate file")?;
    let key = PrivateKeyDer::from_pem_file(&s.key_file)
        .map_err(|e| file_err("key file", &s.key_file, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match &s.ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(ca, "CA file")? {
                roots.add(c).map_err(|e| file_err("CA file", ca, e))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if s.require_certificate {
                v.build()
            } else {
                v.allow_unauthenticated().build()
            };
            builder.with_client_cert_verifier(v.map_err(|e| TlsError::Verifier(e.to_string()))?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        file_err(
            "key file",
            &s.key_file,
            format!("does not fit the certificate: {e}"),
        )
    })?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// The current TLS configuration of a listener, replaced on reload; connections already
/// established keep the configuration they were accepted with.
#[derive(Debug)]
pub struct TlsAcceptorHandle {
    settings: TlsSettings,
    alpn: &'static [u8],
    current: RwLock<(Arc<ServerConfig>, Vec<Option<SystemTime>>)>,
}

impl TlsAcceptorHandle {
    /// Loads the files for an `mqtts` listener.
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        Self::with_alpn(settings, ALPN_MQTT)
    }

    /// Loads the files for a listener speaking `alpn` ([`ALPN_MQTT`] or [`ALPN_HTTP1`]).
    pub fn with_alpn(settings: TlsSettings, alpn: &'static [u8]) -> Result<Self, TlsError> {
        let config = server_config(&settings, alpn)?;
        let stamps = stamps(&settings);
        Ok(TlsAcceptorHandle {
            settings,
            alpn,
            current: RwLock::new((config, stamps)),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// An acceptor with the current configuration.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().0.clone())
    }

    /// Reloads the files if any of them changed on disk (or always, with `force`).
    /// On error the running configuration stays. Returns whether it was replaced.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let now = stamps(&self.settings);
        if !force && self.current.read().1 == now {
            return Ok(false);
        }
        let config = server_config(&self.settings, self.alpn)?;
        *self.current.write() = (config, now);
        Ok(true)
    }
}

fn stamps(s: &TlsSettings) -> Vec<Option<SystemTime>> {
    [Some(&s.cert_file), Some(&s.key_file), s.ca_file.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// The identity in a client certificate: its subject CN, else its first SAN (DNS name,
/// email or URI).
pub fn certificate_identity(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::*;
    let (_, x) = X509Certificate::from_der(cert.as_ref()).ok()?;
    if let Some(cn) = x
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
    {
        return Some(cn.to_owned());
    }
    let san = x.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
            Some((*s).to_owned())
        }
        _ => None,
    })
}

/// The identity of the verified client certificate of a connection, if it sent one.
pub fn peer_identity(stream: &TlsStream<TcpStream>) -> Option<String> {
    let certs = stream.get_ref().1.peer_certificates()?;
    certificate_identity(certs.first()?)
}

impl<S: tokio::io::AsyncRead + AsyncWrite + Unpin + Send> Transport for TlsStream<S> {
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        want: usize,
    ) -> Poll<io::Result<usize>> {
        poll_read_async(self, cx, buf, want)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write_vectored(Pin::new(self), cx, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(self), cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(self), cx)
    }
}
