//! The Signal protocol as WhatsApp uses it (PROTOCOL.md §10): Curve25519 keys and XEdDSA, X3DH,
//! the Double Ratchet with archived session states, and sender keys for groups. No async and no
//! IO: records in, records out; stores load and save them.

pub mod curve;
pub mod error;
pub mod group;
pub mod ratchet;
pub mod session;
pub mod x3dh;

pub use curve::{KeyPair, KeySource, OsKeys, SequenceKeys, xeddsa_sign, xeddsa_verify};
pub use error::SignalError;
pub use group::{SenderKeyDistribution, SenderKeyRecord};
pub use ratchet::{PreKeySignalMessage, SignalMessage};
pub use session::{CiphertextMessage, SessionRecord, SessionState};
pub use x3dh::{LocalIdentity, PreKeyBundle, initiate};
