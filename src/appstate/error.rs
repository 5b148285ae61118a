//! App-state errors: one variant per check a caller (or a test) must tell apart. None carries
//! key bytes; a key *id* is not secret (it names a key, whatsmeow logs it as hex).

/// An app-state sync key id (`AppStateSyncKeyId.keyID`, the `keyID` of records and patches).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub Vec<u8>);

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({})", crate::util::hex::encode(&self.0))
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::util::hex::encode(&self.0))
    }
}

/// Why a snapshot, patch or recovery copy was refused. Any error refuses the whole input
/// (CLIENT-FEATURES Appendix A, "bad record in patch": fail, and the client then fetches a
/// snapshot), so the state is never silently partial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppStateError {
    /// A key the input needs is not known: the client asks the primary for it
    /// (`APP_STATE_SYNC_KEY_REQUEST`, §3.3) and retries.
    #[error("app-state key {0} not known")]
    MissingKey(KeyId),
    /// A record's value MAC does not verify (§3.4 step 2).
    #[error("value MAC mismatch")]
    BadValueMac,
    /// A record's index MAC does not verify (§3.4 step 4).
    #[error("index MAC mismatch")]
    BadIndexMac,
    /// The LTHash after the input, with its version and the collection name, does not give the
    /// snapshot MAC it carries (§3.5): local state and the server's disagree.
    #[error("snapshot MAC mismatch")]
    BadSnapshotMac,
    /// The patch MAC does not verify (§3.5).
    #[error("patch MAC mismatch")]
    BadPatchMac,
    /// A recovery copy's LTHash is not the sum of its records' value MACs.
    #[error("recovery LTHash mismatch")]
    BadLtHash,
    /// A value blob is shorter than a MAC, an IV and one AES block, or its ciphertext is not a
    /// whole number of blocks.
    #[error("value blob truncated")]
    Truncated,
    /// The value decrypted (its MAC verified) but the PKCS#7 padding is malformed.
    #[error("value padding invalid")]
    BadPadding,
    /// The index is not a JSON array of strings.
    #[error("index is not a JSON array of strings")]
    BadIndex,
    /// One index appears twice for the same operation in one patch (WA Web
    /// `validateNoSameIndexForMultipleMutations`, whatsapp-rust `detect_duplicate_index_in_patch`).
    #[error("index repeated within one operation of a patch")]
    DuplicateIndex,
    /// A recovery copy names another collection than the one asked for.
    #[error("recovery copy is for another collection")]
    WrongCollection,
    /// A count or length is over its cap (the name says which).
    #[error("{0} over its limit")]
    TooLarge(&'static str),
    /// A field is missing or not what it must be (the text says which).
    #[error("malformed: {0}")]
    Malformed(&'static str),
}
