//! The WhatsApp client: one per linked account. So far its pure parts: pairing (QR text and
//! image, pair-success verification), ClientPayload builders and the reconnect policy; the
//! run loop (connect, pair, log in, keep alive, reconnect) over them. It knows the
//! socket, codec and Signal layers, and storage only through traits; never HTTP or SQL. iq
//! queries go through [`iq::IqTracker`] (ids, waiters, timeouts); keepalive is its own concern.

pub mod events;
pub mod iq;
pub mod keepalive;
pub mod pair;
pub mod payload;
pub mod prekeys;
pub mod qr;
pub mod reconnect;
pub mod recv;
pub mod run;
pub mod store;

pub use events::{ConnState, Event};
pub use iq::{IqError, IqTracker};
pub use run::{Client, ClientOptions, Keepalive};
pub use store::{Creds, CredsStore, Me, MemoryCreds};
