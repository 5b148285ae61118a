//! Certificate chain checks: each failure is refused with its own error.

use prost::Message;
use wa_gateway::proto::wa::CertChain;
use wa_gateway::signal::KeyPair;
use wa_gateway::socket::cert::{CertSpec, ServerIdentity, issue, verify_chain};
use wa_gateway::socket::{CertError, CertRole, TrustRoot};

const NOW: u64 = 1_800_000_000;

struct Chain {
    root: KeyPair,
    inter: KeyPair,
    server: KeyPair,
}

impl Chain {
    fn new() -> Chain {
        Chain {
            root: KeyPair::generate(),
            inter: KeyPair::generate(),
            server: KeyPair::generate(),
        }
    }

    fn build(
        &self,
        leaf_signer: &KeyPair,
        leaf_key: [u8; 32],
        leaf_not_after: u64,
        leaf_issuer: u32,
    ) -> Vec<u8> {
        CertChain {
            intermediate: Some(issue(
                &CertSpec {
                    serial: 1,
                    issuer_serial: 0,
                    key: self.inter.public,
                    not_before: NOW - 10,
                    not_after: NOW + 1000,
                },
                &self.root,
            )),
            leaf: Some(issue(
                &CertSpec {
                    serial: 2,
                    issuer_serial: leaf_issuer,
                    key: leaf_key,
                    not_before: NOW - 10,
                    not_after: leaf_not_after,
                },
                leaf_signer,
            )),
        }
        .encode_to_vec()
    }

    fn good(&self) -> Vec<u8> {
        self.build(&self.inter, self.server.public, NOW + 1000, 1)
    }

    fn trust(&self) -> TrustRoot {
        TrustRoot::from_key(self.root.public)
    }
}

#[test]
fn a_good_chain_passes() {
    let c = Chain::new();
    let v = verify_chain(&c.good(), &c.server.public, &c.trust(), NOW).unwrap();
    assert_eq!(
        (v.intermediate_serial, v.leaf_serial, v.not_after),
        (1, 2, NOW + 1000)
    );
}

#[test]
fn untrusted_root() {
    let c = Chain::new();
    let other = TrustRoot::from_key(KeyPair::generate().public);
    assert_eq!(
        verify_chain(&c.good(), &c.server.public, &other, NOW),
        Err(CertError::UntrustedRoot)
    );
    assert_eq!(
        verify_chain(&c.good(), &c.server.public, &TrustRoot::default(), NOW),
        Err(CertError::UntrustedRoot)
    );
}

#[test]
fn bad_intermediate_signature() {
    let c = Chain::new();
    let forger = KeyPair::generate();
    let chain = c.build(&forger, c.server.public, NOW + 1000, 1);
    assert_eq!(
        verify_chain(&chain, &c.server.public, &c.trust(), NOW),
        Err(CertError::BadIntermediateSignature)
    );
}

#[test]
fn leaf_key_differs_from_server_static() {
    let c = Chain::new();
    let impostor = KeyPair::generate();
    assert_eq!(
        verify_chain(&c.good(), &impostor.public, &c.trust(), NOW),
        Err(CertError::LeafKeyMismatch)
    );
}

#[test]
fn expired_and_not_yet_valid_leaf() {
    let c = Chain::new();
    let chain = c.build(&c.inter, c.server.public, NOW - 1, 1);
    assert_eq!(
        verify_chain(&chain, &c.server.public, &c.trust(), NOW),
        Err(CertError::Expired(CertRole::Leaf))
    );
    assert_eq!(
        verify_chain(&c.good(), &c.server.public, &c.trust(), NOW - 3600),
        Err(CertError::NotYetValid(CertRole::Intermediate))
    );
}

#[test]
fn issuer_serials_must_link() {
    let c = Chain::new();
    let chain = c.build(&c.inter, c.server.public, NOW + 1000, 7);
    assert_eq!(
        verify_chain(&chain, &c.server.public, &c.trust(), NOW),
        Err(CertError::IssuerMismatch {
            role: CertRole::Leaf,
            expected: 1,
            got: 7
        })
    );
}

#[test]
fn malformed_chains_are_refused() {
    let c = Chain::new();
    for bad in [vec![], vec![0xff; 10], CertChain::default().encode_to_vec()] {
        assert!(matches!(
            verify_chain(&bad, &c.server.public, &c.trust(), NOW),
            Err(CertError::Malformed(_))
        ));
    }
    let mut good = c.good();
    good.truncate(good.len() - 5);
    assert!(verify_chain(&good, &c.server.public, &c.trust(), NOW).is_err());
}

#[test]
fn generated_server_identity_verifies() {
    let id = ServerIdentity::generate(NOW, 86_400);
    verify_chain(&id.chain, &id.static_key.public, &id.trust_root(), NOW).unwrap();
    assert_eq!(
        verify_chain(
            &id.chain,
            &id.static_key.public,
            &id.trust_root(),
            NOW + 86_401
        ),
        Err(CertError::Expired(CertRole::Intermediate))
    );
}
