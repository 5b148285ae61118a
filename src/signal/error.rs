//! Signal errors, named after what the caller must do about them.

/// Why a Signal operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// The peer's identity key differs from the one we trust for that address.
    #[error("untrusted identity for {0}")]
    UntrustedIdentity(String),
    /// The message MAC (or a sender-key signature) does not verify.
    #[error("invalid MAC")]
    InvalidMac,
    /// A message key for this counter was already used (or is too old to be kept).
    #[error("duplicate message (chain counter {counter})")]
    DuplicateMessage {
        /// The message's counter or iteration.
        counter: u32,
    },
    /// No session (or no sender key state) to decrypt or encrypt with.
    #[error("no session")]
    NoSession,
    /// A key is malformed (wrong length or type byte) or a signature on it is invalid.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// The message bytes are malformed.
    #[error("invalid message: {0}")]
    InvalidMessage(&'static str),
    /// The message is too far ahead of the chain (beyond the skipped-key bound).
    #[error("message {counter} is more than {limit} ahead of the chain")]
    TooFarAhead {
        /// The message's counter.
        counter: u32,
        /// The bound.
        limit: u32,
    },
    /// A prekey the message refers to is not in our store.
    #[error("unknown {kind} prekey {id}")]
    MissingPreKey {
        /// "one-time" or "signed".
        kind: &'static str,
        /// Its id.
        id: u32,
    },
    /// A stored record could not be decoded.
    #[error("corrupt stored record: {0}")]
    CorruptRecord(&'static str),
    /// The storage backend failed.
    #[error("signal store: {0}")]
    Store(String),
    /// A chain reached the last iteration a u32 can count (only a crafted distribution message
    /// starts a chain there); the sender must start a new one.
    #[error("chain exhausted at iteration {0}")]
    ChainExhausted(u32),
    /// The message version is not 3.
    #[error("unsupported message version {0}")]
    UnsupportedVersion(u8),
}

/// A storage backend failed (the message is the backend's; no key material in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signal store: {0}")]
pub struct StoreError(pub String);

impl From<StoreError> for SignalError {
    fn from(e: StoreError) -> SignalError {
        SignalError::Store(e.0)
    }
}
