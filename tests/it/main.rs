//! Integration tests: outside vectors first (fixtures/ from Baileys and libsignal), then our own.

mod agents;
mod appstate;
mod appstate_fixture;
mod binary_fixtures;
mod cert_chain;
mod client_lifecycle;
mod codec_props;
mod common;
mod contact_ids;
mod groups;
mod guide;
mod history;
mod jwt_cmd;
mod layering;
mod limits;
mod loopback;
mod media_client;
mod media_fixture;
mod media_props;
mod message_kinds;
mod message_kinds_fixture;
mod message_store;
mod messaging;
mod noise_fixture;
mod openapi_conform;
mod pairing_fixture;
mod pending_history;
mod reach_out;
mod rest;
mod rest_media;
mod rest_media_in;
mod retention;
mod secrets_debug;
mod service_maps;
mod signal_fixture;
mod signal_props;
mod signal_roundtrip;
mod signal_store;
mod sim_appstate;
mod sim_cdn;
mod sim_flow;
mod sim_media;
mod sim_pair;
mod simulate_cmd;
mod stanza_props;
mod store_seal;
mod tokens;
mod webhooks;

mod alloc_bounds;

#[global_allocator]
static ALLOC: alloc_bounds::Counting = alloc_bounds::Counting;
