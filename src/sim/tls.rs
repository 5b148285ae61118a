//! The simulator's TLS: a CA generated at start (as WhatsApp's chain leads to a public root, the
//! simulator's leads to this one) and a server certificate for `localhost` and the listening
//! addresses, so clients connect with `wss://` and reach the media CDN over `https://` exactly
//! as they do to WhatsApp. One CA and one certificate serve both listeners.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::error::SimError;

/// A TLS acceptor and the PEM of the CA clients must trust.
pub(super) struct SimTls {
    pub(super) acceptor: tokio_rustls::TlsAcceptor,
    pub(super) ca_pem: String,
}

fn err(e: impl std::fmt::Display) -> SimError {
    SimError::Tls(e.to_string())
}

impl SimTls {
    /// A fresh CA and a certificate for `localhost`, 127.0.0.1, ::1 and each of `ips`.
    pub(super) fn generate(ips: &[IpAddr]) -> Result<SimTls, SimError> {
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "wa-gateway simulator CA");
        let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
        let issuer = Issuer::new(ca, ca_key);

        let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
        for ip in ips {
            if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
                names.push(ip.to_string());
            }
        }
        let leaf_key = KeyPair::generate().map_err(err)?;
        let mut leaf = CertificateParams::new(names).map_err(err)?;
        leaf.distinguished_name
            .push(DnType::CommonName, "wa-gateway simulator");
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(err)?;

        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(err)?
            .with_no_client_auth()
            .with_single_cert(vec![leaf_cert.der().clone()], key)
            .map_err(err)?;
        Ok(SimTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            ca_pem: ca_cert.pem(),
        })
    }
}
