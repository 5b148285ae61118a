//! The WhatsApp simulator: an offline server and simulated phones speaking the real protocol,
//! for tests, benches and `wa-gateway simulate`. It shares codec, Noise, certificates and crypto
//! with the client, never the client's protocol logic; if it accepts what WhatsApp would reject,
//! that is a simulator bug. Arrows inside run one way: `simulator.rs` (the handle) → `conn.rs`
//! (handshake, payload) → `register.rs` (QR pairing) / `session.rs` (a logged-in device) →
//! `accept.rs` (ack, log, route) → `route.rs` (DMs) / `groups.rs` → `retry.rs` / `phone_media.rs`
//! (a phone's media: checks, sends, media retries) → `deliver.rs` (queues, targets) →
//! `server.rs` (state) → `inbox.rs`, `gallery.rs`, `stanza_log.rs`, `phone.rs` and the
//! leaves (`cdn.rs`, the media CDN's state, among them; `cdn_http.rs` serves it over HTTPS).
//! App state: `appstate.rs` (an account's collections, below `server.rs`), `phone_appstate.rs`
//! (the iq, `server_sync`, the phone's seed, key shares and recovery, beside `phone_media.rs`)
//! and `appstate_api.rs` (its part of the Rust API, beside `control.rs`).
//! `tests/it/layering.rs` checks it.

mod accept;
pub mod appstate;
mod appstate_api;
mod cdn;
mod cdn_http;
pub mod compose;
mod conn;
pub mod control;
mod deliver;
pub mod error;
mod gallery;
pub mod groups;
pub mod history;
pub mod inbox;
pub mod iq;
pub mod pair;
pub mod phone;
mod phone_appstate;
pub mod phone_media;
mod register;
mod retry;
pub mod route;
pub mod samples;
pub mod server;
mod session;
pub mod simulator;
pub mod stanza_log;
mod tls;
pub mod usync;

pub use appstate::{CollectionView, Corruption, PhoneAction, RecordView};
pub use cdn::{
    CdnConfig, CdnFault, MMS_TYPES, MediaInfo, Refusal, StoreError, TransferInfo, Uploaded,
};
pub use error::SimError;
pub use history::{HistoryFault, HistorySeed, seeded_contact};
pub use phone_media::{MediaData, MediaKind, MediaSend, SentMedia};
pub use server::{Fault, HistorySent};
pub use simulator::{Listeners, Simulator};
