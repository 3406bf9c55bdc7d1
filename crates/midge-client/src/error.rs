//! Client errors.

use std::path::PathBuf;

use midge_codec::{DecodeError, EncodeError, ReasonCode, StringError, TopicError};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Network error.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// The broker refused the connection.
    #[error("connection refused by the broker: {code}{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Refused {
        /// CONNACK reason code (3.x return codes are mapped to their 5.0 equivalents).
        code: ReasonCode,
        /// Reason String sent by a 5.0 broker.
        reason: Option<String>,
    },
    /// The broker sent something that is not valid MQTT.
    #[error("the broker sent an invalid packet: {0}")]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded.
    #[error("cannot encode packet: {0}")]
    Encode(#[from] EncodeError),
    /// The broker broke the protocol.
    #[error("protocol error from the broker: {0}")]
    Protocol(String),
    /// A timeout passed.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The broker closed the connection (with DISCONNECT and its reason code in 5.0).
    #[error("disconnected by the broker{}", code.map(|c| format!(": {c}")).unwrap_or_default())]
    Disconnected {
        /// DISCONNECT reason code (5.0).
        code: Option<ReasonCode>,
        /// Reason String.
        reason: Option<String>,
    },
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
    /// A topic or filter given to the client is invalid.
    #[error("invalid topic: {0}")]
    Topic(#[from] TopicError),
    /// A string given to the client is invalid.
    #[error("invalid string: {0}")]
    String(#[from] StringError),
    /// The broker address or URL cannot be used.
    #[error("broker address {addr}: {problem}")]
    Address {
        /// The address or URL as given.
        addr: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The TLS settings cannot be used; found before any network I/O.
    #[error(transparent)]
    TlsSetup(#[from] TlsSetupError),
    /// The TLS handshake failed (an unknown CA, a wrong host name, no TLS on that port...).
    #[error("TLS handshake with {server} failed: {source}")]
    Tls {
        /// The server name the certificate was checked against.
        server: String,
        /// What rustls reported.
        source: std::io::Error,
    },
    /// The WebSocket upgrade failed (wrong path, not a WebSocket endpoint...).
    #[error("WebSocket handshake with {url} failed: {source}")]
    WebSocket {
        /// The URL of the upgrade request.
        url: String,
        /// What tungstenite reported.
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
}

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A file could not be read or does not hold what it should.
    #[error("{file} {}: {problem}", path.display())]
    File {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        problem: FileProblem,
    },
    /// Nothing to verify the broker's certificate with.
    #[error(
        "no CA to verify the broker's certificate: set a CA file (the system's bundle, often \
         /etc/ssl/certs/ca-certificates.crt, works) or `insecure` to skip verification"
    )]
    NoTrustAnchors,
    /// Only one of client certificate and key was given.
    #[error("a client certificate needs its key file, and a key file its certificate")]
    IncompleteClientCert,
    /// The host cannot be a TLS server name.
    #[error("{0} is not a valid TLS server name")]
    ServerName(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The certificate verifier could not be built from the CA file.
    #[error("TLS certificate verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

/// The files of [`crate::TlsOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// `ca_file`.
    Ca,
    /// `cert_file`.
    Cert,
    /// `key_file`.
    Key,
}

impl std::fmt::Display for TlsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsFile::Ca => "CA file",
            TlsFile::Cert => "client certificate file",
            TlsFile::Key => "client key file",
        })
    }
}

/// What is wrong with a TLS file.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    /// It cannot be read.
    #[error("{0}")]
    Read(#[source] std::io::Error),
    /// It is not PEM.
    #[error("not valid PEM: {0}")]
    Pem(#[source] rustls::pki_types::pem::Error),
    /// It holds no certificate.
    #[error("contains no PEM certificate")]
    NoCertificate,
    /// It holds no private key.
    #[error("contains no PEM private key")]
    NoKey,
    /// rustls refused its contents (a malformed certificate, a key that does not match).
    #[error("{0}")]
    Rejected(#[source] rustls::Error),
}
