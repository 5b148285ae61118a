//! App-state sync ("syncd", CLIENT-FEATURES §3): mutation keys, the LTHash, the value, index,
//! snapshot and patch MACs, decoding and verifying snapshots, patches and recovery copies,
//! encoding our own patches, and what each mutation means. Sans-IO like `media/`: protobufs in,
//! verified values out; it knows no stanzas, no storage and no network, so the client (which
//! fetches, stores and requests keys) and the simulator (which serves collections) share it.

pub mod action;
pub mod collection;
pub mod decode;
pub mod encode;
pub mod error;
pub mod keys;
pub mod lthash;
pub mod state;

pub use action::Action;
pub use collection::Collection;
pub use decode::{
    Applied, KeyLookup, MAX_INDEX_LEN, MAX_INDEX_PARTS, MAX_RECORDS, MAX_VALUE_LEN, Mutation,
    decode_patch, decode_recovery, decode_snapshot, missing_keys,
};
pub use encode::{PendingMutation, archive, encode_patch, encode_snapshot, mark_read, mute, pin};
pub use error::{AppStateError, KeyId};
pub use keys::MutationKeys;
pub use lthash::LtHash;
pub use state::{CollectionState, Operation};

#[cfg(test)]
mod tests;
