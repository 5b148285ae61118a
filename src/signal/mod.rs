//! The Signal protocol as WhatsApp uses it (PROTOCOL.md §10): Curve25519 keys and XEdDSA, X3DH,
//! the Double Ratchet with archived session states, and sender keys for groups. No async and no
//! IO in the protocol core: records in, records out. `store` defines the storage traits and
//! `cipher` runs the core over them with per-address locks.

pub mod address;
pub mod cipher;
pub mod curve;
pub mod error;
pub mod group;
pub mod memory;
pub mod ratchet;
pub mod session;
pub mod store;
pub mod x3dh;

pub use address::{ProtocolAddress, SenderKeyName};
pub use cipher::{Decrypted, EncType, IdentityTrust, SessionCipher};
pub use curve::{KeyPair, KeySource, OsKeys, SequenceKeys, xeddsa_sign, xeddsa_verify};
pub use error::{SignalError, StoreError};
pub use group::{PreparedKeys, SenderKeyDistribution, SenderKeyRecord};
pub use memory::MemoryStore;
pub use ratchet::{PreKeySignalMessage, SignalMessage};
pub use session::{CiphertextMessage, SessionRecord, SessionState};
pub use store::{ApplyChanges, IdentityChange, PreKey, SignalChanges, SignalStore, SignedPreKey};
pub use x3dh::{LocalIdentity, PreKeyBundle, initiate};
