//! The server's Noise certificate chain (PROTOCOL.md §2.6): root key → intermediate → leaf, XEdDSA
//! signatures, issuer serials, validity, and the leaf key bound to the server's static key.
//! Every check runs on every handshake; tests use their own root, never a switch.

use prost::Message;
use subtle::ConstantTimeEq;

use super::error::{CertError, CertRole};
use crate::proto::wa::CertChain;
use crate::proto::wa::cert_chain::NoiseCertificate;
use crate::proto::wa::cert_chain::noise_certificate::Details;
use crate::signal::{KeyPair, xeddsa_verify};

/// WhatsApp's long-term root public key (whatsmeow `WACertPubKey`, Baileys `WA_CERT_DETAILS`).
pub const WHATSAPP_ROOT_KEY: [u8; 32] = [
    0x14, 0x23, 0x75, 0x57, 0x4d, 0x0a, 0x58, 0x71, 0x66, 0xaa, 0xe7, 0x1e, 0xbe, 0x51, 0x64, 0x37,
    0xc4, 0xa2, 0x8b, 0x73, 0xe3, 0x69, 0x5c, 0x6c, 0xe1, 0xf7, 0xf9, 0x54, 0x5d, 0xa8, 0xee, 0x6b,
];

/// The key that must have signed the intermediate certificate, and its serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRoot {
    /// Montgomery public key verified with XEdDSA.
    pub key: [u8; 32],
    /// Serial the intermediate must name as issuer (0 for WhatsApp's root).
    pub serial: u32,
}

impl Default for TrustRoot {
    /// WhatsApp's real root.
    fn default() -> TrustRoot {
        TrustRoot {
            key: WHATSAPP_ROOT_KEY,
            serial: 0,
        }
    }
}

impl TrustRoot {
    /// A root with `key` and serial 0 (how the simulator's root is configured).
    pub fn from_key(key: [u8; 32]) -> TrustRoot {
        TrustRoot { key, serial: 0 }
    }
}

/// Facts of a chain that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    /// Intermediate serial.
    pub intermediate_serial: u32,
    /// Leaf serial.
    pub leaf_serial: u32,
    /// The leaf's validity end (Unix seconds), the earliest of the two.
    pub not_after: u64,
}

fn parse(cert: Option<&NoiseCertificate>) -> Result<(Details, &[u8], &[u8; 64]), CertError> {
    let cert = cert.ok_or(CertError::Malformed("certificate missing"))?;
    let raw = cert
        .details
        .as_deref()
        .ok_or(CertError::Malformed("details missing"))?;
    let sig: &[u8; 64] = cert
        .signature
        .as_deref()
        .ok_or(CertError::Malformed("signature missing"))?
        .try_into()
        .map_err(|_| CertError::Malformed("signature is not 64 bytes"))?;
    let details =
        Details::decode(raw).map_err(|_| CertError::Malformed("details not a protobuf"))?;
    Ok((details, raw, sig))
}

fn check_validity(d: &Details, role: CertRole, now: u64) -> Result<(), CertError> {
    if d.not_before.is_some_and(|nb| now < nb) {
        return Err(CertError::NotYetValid(role));
    }
    if d.not_after.is_some_and(|na| now > na) {
        return Err(CertError::Expired(role));
    }
    Ok(())
}

/// Verifies a serialized CertChain for a server whose Noise static key is `server_static`.
pub fn verify_chain(
    chain: &[u8],
    server_static: &[u8; 32],
    trust: &TrustRoot,
    now: u64,
) -> Result<VerifiedChain, CertError> {
    let chain = CertChain::decode(chain).map_err(|_| CertError::Malformed("not a CertChain"))?;
    let (inter, inter_raw, inter_sig) = parse(chain.intermediate.as_ref())?;
    let (leaf, leaf_raw, leaf_sig) = parse(chain.leaf.as_ref())?;

    if !xeddsa_verify(&trust.key, inter_raw, inter_sig) {
        return Err(CertError::UntrustedRoot);
    }
    let inter_issuer = inter.issuer_serial.unwrap_or(0);
    if inter_issuer != trust.serial {
        return Err(CertError::IssuerMismatch {
            role: CertRole::Intermediate,
            expected: trust.serial,
            got: inter_issuer,
        });
    }
    let inter_key: [u8; 32] = inter
        .key
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or(CertError::Malformed("intermediate key is not 32 bytes"))?;
    if !xeddsa_verify(&inter_key, leaf_raw, leaf_sig) {
        return Err(CertError::BadIntermediateSignature);
    }
    let inter_serial = inter.serial.unwrap_or(0);
    let leaf_issuer = leaf.issuer_serial.unwrap_or(0);
    if leaf_issuer != inter_serial {
        return Err(CertError::IssuerMismatch {
            role: CertRole::Leaf,
            expected: inter_serial,
            got: leaf_issuer,
        });
    }
    let leaf_key = leaf.key.as_deref().unwrap_or_default();
    if leaf_key.len() != 32 || !bool::from(leaf_key.ct_eq(server_static)) {
        return Err(CertError::LeafKeyMismatch);
    }
    check_validity(&inter, CertRole::Intermediate, now)?;
    check_validity(&leaf, CertRole::Leaf, now)?;
    Ok(VerifiedChain {
        intermediate_serial: inter_serial,
        leaf_serial: leaf.serial.unwrap_or(0),
        not_after: leaf
            .not_after
            .unwrap_or(u64::MAX)
            .min(inter.not_after.unwrap_or(u64::MAX)),
    })
}

/// One certificate to issue.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// Serial of this certificate.
    pub serial: u32,
    /// Serial of its issuer.
    pub issuer_serial: u32,
    /// The certified public key.
    pub key: [u8; 32],
    /// Validity start.
    pub not_before: u64,
    /// Validity end.
    pub not_after: u64,
}

/// Serializes `spec` and signs it with `issuer`.
pub fn issue(spec: &CertSpec, issuer: &KeyPair) -> NoiseCertificate {
    let details = Details {
        serial: Some(spec.serial),
        issuer_serial: Some(spec.issuer_serial),
        key: Some(spec.key.to_vec()),
        not_before: Some(spec.not_before),
        not_after: Some(spec.not_after),
    }
    .encode_to_vec();
    let signature = issuer.sign(&details).to_vec();
    NoiseCertificate {
        details: Some(details),
        signature: Some(signature),
    }
}

/// A server identity: a root key, an intermediate, and a leaf for the server's static key.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    /// The root (clients trust its public key).
    pub root: KeyPair,
    /// The intermediate key pair.
    pub intermediate: KeyPair,
    /// The server's Noise static key (certified by the leaf).
    pub static_key: KeyPair,
    /// The serialized CertChain the server presents.
    pub chain: Vec<u8>,
}

impl ServerIdentity {
    /// Generates root → intermediate (serial 1) → leaf (serial 2) valid from `now − 1 day` to
    /// `now + validity` seconds.
    pub fn generate(now: u64, validity: u64) -> ServerIdentity {
        let root = KeyPair::generate();
        let intermediate = KeyPair::generate();
        let static_key = KeyPair::generate();
        let not_before = now.saturating_sub(86_400);
        let not_after = now.saturating_add(validity);
        let chain = CertChain {
            intermediate: Some(issue(
                &CertSpec {
                    serial: 1,
                    issuer_serial: 0,
                    key: intermediate.public,
                    not_before,
                    not_after,
                },
                &root,
            )),
            leaf: Some(issue(
                &CertSpec {
                    serial: 2,
                    issuer_serial: 1,
                    key: static_key.public,
                    not_before,
                    not_after,
                },
                &intermediate,
            )),
        }
        .encode_to_vec();
        ServerIdentity {
            root,
            intermediate,
            static_key,
            chain,
        }
    }

    /// What a client must trust to accept this server.
    pub fn trust_root(&self) -> TrustRoot {
        TrustRoot::from_key(self.root.public)
    }
}
