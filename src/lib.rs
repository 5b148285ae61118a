//! wa-gateway: a pure-Rust WhatsApp multi-device gateway.
//!
//! Layers, with arrows pointing one way (any layer may use `proto` and `util`):
//!
//! ```text
//! main ─► client ─► socket ─► binary
//!   │        │         └──► signal (XEdDSA for the certificate chain, key pairs)
//!   │        └───────► signal ─► binary (JIDs of addresses)
//!   ├──► store ─► implements client::store and signal::store traits
//!   ├──► config ─► client, socket, store (each gets its slice)
//!   └──► sim ─► socket, binary, signal      (never client or store)
//! main ─► api ─► service ─► client, store        (the REST service)
//! ```
//!
//! - [`binary`]: the binary XML node codec; knows only bytes.
//! - [`socket`]: Noise XX handshake, certificate chain, 3-byte framing (all sans-IO) and the one
//!   WebSocket adapter; knows nodes only as bytes.
//! - [`signal`]: XEdDSA and the Signal protocol; no IO in the core, storage behind traits.
//! - [`media`]: media encryption, verification, media-retry crypto, mimetype sniffing and
//!   thumbnails (all sans-IO); shared by the client and the simulator.
//! - [`appstate`]: app-state (syncd) keys, LTHash, MACs, patch and snapshot decode/encode and
//!   mutation meanings (sans-IO); shared by the client and the simulator.
//! - [`client`]: one WhatsApp account's client (linking, connection lifecycle, 1:1 receive);
//!   storage only through traits.
//! - [`store`]: sqlx SQLite over one pool for all accounts; implements the protocol traits.
//! - [`sim`]: the offline WhatsApp simulator (server and Signal-peer phones); never uses client,
//!   store or api.
//! - [`service`]: one client per (subaccount, agent) over one store; connection rows and
//!   activities, agent removal, retention; knows nothing of HTTP.
//! - [`api`]: the REST API (axum): the guide's endpoints, JWT auth, rate limits, envelopes.
//! - [`config`]: defaults and `WA_GATEWAY_*` settings, validated once.
//! - [`proto`]: generated protobuf types; [`util`]: clock and hex.
#![warn(missing_docs)]

pub mod api;
pub mod appstate;
pub mod binary;
pub mod client;
pub mod config;
pub mod media;
pub mod proto;
pub mod service;
pub mod signal;
pub mod sim;
pub mod socket;
pub mod stanza;
pub mod store;
pub mod util;
