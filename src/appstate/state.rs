//! What a collection is after its last verified patch: version, LTHash and the index-MAC →
//! value-MAC table (CLIENT-FEATURES §3.5). The client stores exactly this, in the same
//! transaction as the state the patch produced.

use std::collections::HashMap;

use super::decode::Applied;
use super::lthash::LtHash;
use crate::proto::wa;

/// A mutation's operation (`SyncdMutation.SyncdOperation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// SET (0): the record now has this value.
    Set,
    /// REMOVE (1): the record is gone.
    Remove,
}

impl Operation {
    /// The first byte of the value MAC input: op + 1 (whatsmeow `generateContentMAC`).
    pub fn mac_byte(self) -> u8 {
        match self {
            Operation::Set => 0x01,
            Operation::Remove => 0x02,
        }
    }

    /// The protobuf enum value.
    pub fn to_proto(self) -> wa::syncd_mutation::SyncdOperation {
        match self {
            Operation::Set => wa::syncd_mutation::SyncdOperation::Set,
            Operation::Remove => wa::syncd_mutation::SyncdOperation::Remove,
        }
    }

    /// The operation a wire value names; an absent one is SET (whatsmeow `GetOperation`).
    pub fn from_proto(v: Option<i32>) -> Option<Operation> {
        match v {
            None | Some(0) => Some(Operation::Set),
            Some(1) => Some(Operation::Remove),
            Some(_) => None,
        }
    }
}

/// A collection's verified state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectionState {
    /// The version of the last applied snapshot or patch (0: never synced).
    pub version: u64,
    /// The LTHash over the live records' value MACs.
    pub hash: LtHash,
    /// Index MAC → value MAC of every live record.
    pub macs: HashMap<[u8; 32], [u8; 32]>,
}

impl CollectionState {
    /// Applies a verified snapshot, recovery copy or patch. For a patch the removed index MACs
    /// are deleted before the added ones are inserted, so a SET and a REMOVE of one index in one
    /// patch leave the SET's value (whatsapp-rust `processor.rs`, "delete-then-put"), which is
    /// what the LTHash of that patch counts (see `decode.rs`).
    pub fn apply(&mut self, a: &Applied) {
        if a.replaces {
            self.macs.clear();
        }
        for r in &a.removed {
            self.macs.remove(r);
        }
        for (i, v) in &a.added {
            self.macs.insert(*i, *v);
        }
        self.version = a.version;
        self.hash = a.hash;
    }
}
