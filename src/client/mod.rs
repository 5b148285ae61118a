//! The WhatsApp client: one per linked account. Pure parts — pairing (QR text and image,
//! pair-success verification), ClientPayload builders, the reconnect policy, prekey counts — and
//! the run loop over them (connect, pair, log in, keep alive, reconnect, receive). iq queries go
//! through [`iq::IqTracker`] (ids, waiters, timeouts). It knows the socket, codec and Signal
//! layers, and storage only through traits; never HTTP or SQL.

pub mod account;
pub mod appstate_store;
pub mod cdn;
pub mod content;
pub mod events;
mod failure;
pub mod history_store;
pub mod iq;
pub mod keepalive;
mod link;
mod linking;
pub mod media;
pub mod media_ref;
pub mod messages;
pub mod messenger;
pub mod pair;
pub mod payload;
pub mod prekeys;
pub mod qr;
pub mod reconnect;
pub mod recv;
pub mod run;
mod session;
pub mod store;

pub use crate::stanza::message_id as new_message_id;
pub use crate::stanza::mex::{NewChatCapping, ReachoutTimelock};
pub use account::{ChatChange, ChatSummary, Contact, ContactChange, HistoryBatch, LastMessage};
pub use events::{ConnState, Event, Events, HistoryReport, Linked};
pub use iq::{IqError, IqTracker};
pub use messages::{GroupUpdate, MessageStatus, StoredMessage};
pub use messenger::{
    AttachedToken, ChatAction, MAX_ACTIONS_PER_EVENT, MessagingStats, SendError, Sent, Warmth,
    valid_message_id,
};
pub use run::{Client, ClientOptions, Keepalive, MessagingOptions};
pub use store::{AccountStore, Creds, CredsStore, GroupStore, Me, MemoryCreds, NctSalt};
