//! Why a send failed, and what WhatsApp's refusal codes mean.

use crate::client::iq::IqError;
use crate::client::messages::MessageStatus;
use crate::client::store::CredsStoreError;
use crate::signal::SignalError;

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The client is not logged in.
    #[error("not connected")]
    NotConnected,
    /// The recipient is not on WhatsApp (usync knows no device).
    #[error("{0} is not on WhatsApp")]
    NotOnWhatsApp(String),
    /// The text is empty or too long.
    #[error("invalid text: {0}")]
    InvalidText(&'static str),
    /// The recipient is neither a user nor a group JID.
    #[error("unsupported recipient {0}")]
    UnsupportedRecipient(String),
    /// We are not a member of the group (any more).
    #[error("not a member of group {0}")]
    NotInGroup(String),
    /// An iq (usync, prekeys) failed.
    #[error(transparent)]
    Iq(#[from] IqError),
    /// Signal refused (e.g. a bundle with a bad signature).
    #[error("encryption failed: {0}")]
    Signal(#[from] SignalError),
    /// The message could not be recorded; nothing was sent.
    #[error(transparent)]
    Store(#[from] CredsStoreError),
    /// WhatsApp answered something we could not read.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// App state is not ready for our change yet (no key shared by the phone, the collection
    /// not synced, a key being asked for): trying later helps.
    #[error("app state not ready: {0}")]
    AppStateNotReady(String),
    /// The app-state server refused our change, or it kept conflicting.
    #[error("app-state change refused: {0}")]
    AppStateRefused(String),
    /// The server refused the message (its ack carried an error code).
    #[error("refused by WhatsApp ({code}): {}", refusal_reason(*code))]
    Refused {
        /// The ack's error code.
        code: u16,
        /// The message id (the row is stored as failed).
        id: String,
        /// The privacy token the stanza carried (1:1 sends), which tells a 463 for a missing
        /// token from a restricted account.
        attached: Option<super::AttachedToken>,
    },
    /// A message with this id is recorded and ended (failed, cancelled or expired): it is not
    /// sent again.
    #[error("message {id} is already {}", status.as_str())]
    AlreadyEnded {
        /// The message id.
        id: String,
        /// How it ended.
        status: MessageStatus,
        /// WhatsApp's refusal code, when it refused it.
        code: Option<u16>,
    },
}

impl SendError {
    /// Whether trying again cannot change the outcome: the recipient is not on WhatsApp or
    /// the group not ours, WhatsApp refused it, the text or recipient is wrong, or the message
    /// already ended. The rest (no connection, an iq or the store failing, Signal, an answer
    /// we could not read) may pass.
    pub fn is_final(&self) -> bool {
        match self {
            SendError::NotOnWhatsApp(_)
            | SendError::InvalidText(_)
            | SendError::UnsupportedRecipient(_)
            | SendError::NotInGroup(_)
            | SendError::Refused { .. }
            | SendError::AppStateRefused(_)
            | SendError::AlreadyEnded { .. } => true,
            SendError::NotConnected
            | SendError::AppStateNotReady(_)
            | SendError::Iq(_)
            | SendError::Signal(_)
            | SendError::Store(_)
            | SendError::Unexpected(_) => false,
        }
    }
}

/// What an ack error code means (MESSAGING.md §1.7).
pub fn refusal_reason(code: u16) -> &'static str {
    match code {
        400 => {
            "bad request (mixed addressing namespaces, or a LID message from an unmigrated account)"
        }
        421 => "stale group addressing mode",
        463 => {
            "privacy token required: the recipient takes a new chat only with a valid tctoken or cstoken from this account (WA Web MissingTcToken), or reach-out is restricted"
        }
        475 => "new-chat limit reached",
        479 => "malformed or inconsistent stanza",
        _ => "refused",
    }
}
