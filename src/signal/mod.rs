//! The Signal protocol as WhatsApp uses it (PROTOCOL.md §10): Curve25519 keys and XEdDSA so far.
//! No async and no IO: keys, bytes and state in, bytes and state out.

pub mod curve;

pub use curve::{KeyPair, xeddsa_sign, xeddsa_verify};
