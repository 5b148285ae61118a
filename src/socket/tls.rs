//! TLS for `wss://`: the client trusts the webpki roots (what WhatsApp's certificate chains to)
//! plus any extra CA from configuration (`WA_GATEWAY_WS_CA`: the simulator's own CA, or a
//! corporate proxy's). Server-side TLS is the simulator's business; it hands the socket layer
//! an already-encrypted stream.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a CA bundle cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The PEM text holds no certificate, or one that does not parse.
    #[error("no usable CA certificate in the PEM: {0}")]
    BadPem(String),
    /// rustls refused to build a configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Parses every `CERTIFICATE` block of `pem`; at least one is required.
pub fn parse_ca_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::BadPem("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// A client configuration trusting the webpki roots and `extra` CAs.
pub fn client_config(
    extra: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for c in extra {
        roots
            .add(c.clone())
            .map_err(|e| TlsError::BadPem(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
