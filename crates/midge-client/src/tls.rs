//! The rustls client configuration (ring provider, TLS 1.2 and 1.3) from [`TlsOptions`]:
//! the CA file the broker must chain to, an optional client certificate, and `insecure`,
//! which skips the host name check (with a CA file) or all verification (without one).
//! There are no built-in roots: without a CA file and without `insecure` the setup fails.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::error::{FileProblem, TlsFile, TlsSetupError};
use crate::options::TlsOptions;

/// Builds the client configuration; reads the files.
pub(crate) fn client_config(o: &TlsOptions) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let roots = match &o.ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(TlsFile::Ca, path)? {
                roots
                    .add(cert)
                    .map_err(|e| file_err(TlsFile::Ca, path, FileProblem::Rejected(e)))?;
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    let builder = match (roots, o.insecure) {
        (Some(roots), false) => builder.with_root_certificates(roots),
        (roots, true) => {
            let chain = roots
                .map(|r| WebPkiServerVerifier::builder_with_provider(r, provider.clone()).build())
                .transpose()?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Insecure {
                    chain,
                    algorithms: provider.signature_verification_algorithms,
                }))
        }
        (None, false) => return Err(TlsSetupError::NoTrustAnchors),
    };
    let config = match (&o.cert_file, &o.key_file) {
        (Some(cert), Some(key)) => {
            let chain = load_certs(TlsFile::Cert, cert)?;
            let bytes = read(TlsFile::Key, key)?;
            let private = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
                let problem = match e {
                    pem::Error::NoItemsFound => FileProblem::NoKey,
                    e => FileProblem::Pem(e),
                };
                file_err(TlsFile::Key, key, problem)
            })?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| file_err(TlsFile::Key, key, FileProblem::Rejected(e)))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TlsSetupError::IncompleteClientCert),
    };
    Ok(Arc::new(config))
}

/// The server name a certificate must be valid for: the host (a DNS name or an IP address).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, TlsSetupError> {
    ServerName::try_from(host.to_owned()).map_err(|_| TlsSetupError::ServerName(host.to_owned()))
}

fn file_err(file: TlsFile, path: &Path, problem: FileProblem) -> TlsSetupError {
    TlsSetupError::File {
        file,
        path: path.to_owned(),
        problem,
    }
}

fn read(file: TlsFile, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|e| file_err(file, path, FileProblem::Read(e)))
}

fn load_certs(file: TlsFile, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = read(file, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(file, path, FileProblem::Pem(e)))?;
    if certs.is_empty() {
        return Err(file_err(file, path, FileProblem::NoCertificate));
    }
    Ok(certs)
}

/// `insecure`: verifies the chain against the CA file if there is one but accepts any host
/// name; without a CA file accepts any certificate. Handshake signatures are still checked,
/// so the peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct Insecure {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Insecure {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
