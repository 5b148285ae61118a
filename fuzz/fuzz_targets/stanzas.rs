//! Fuzzes the stanza handlers behind the node decoder, on both sides of the protocol: any node a
//! peer can send (pair-device, pair-success, prekey counts and uploads, usync queries, encrypted
//! messages) must give Ok or Err, never a panic. The input is a binary node (no frame flags).
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use wa_gateway::binary::{Jid, Server, decode_node};
use wa_gateway::client::Me;
use wa_gateway::client::pair::{handle_pair_success, parse_pair_device};
use wa_gateway::client::prekeys::parse_count;
use wa_gateway::client::recv;
use wa_gateway::signal::{IdentityTrust, KeyPair, LocalIdentity, MemoryStore, SessionCipher};
use wa_gateway::sim::iq::validate_upload;
use wa_gateway::sim::usync;

static IDENTITY: LazyLock<KeyPair> = LazyLock::new(|| KeyPair::from_private([7; 32]));

fuzz_target!(|data: &[u8]| {
    let _ = recv::unpad(data);
    let Ok(node) = decode_node(&bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = parse_pair_device(&node);
    let _ = handle_pair_success(&node, &IDENTITY, &[9; 32]);
    let _ = parse_count(&node);
    let _ = validate_upload(&node, &IDENTITY.public);
    let _ = usync::answer(&node, "q", |user| {
        (user == "1555").then(|| usync::UserInfo {
            number: user.into(),
            lid: "2".into(),
            devices: vec![0, 1],
        })
    });
    let me = Me {
        jid: Jid::with_device("1555", 1, Server::User),
        lid: Some(Jid::with_device("2", 1, Server::Lid)),
        platform: None,
        business_name: None,
        push_name: None,
        signed_identity: Vec::new(),
        account_signature_key: [0; 32],
    };
    let store = Arc::new(MemoryStore::new(LocalIdentity {
        key_pair: IDENTITY.clone(),
        registration_id: 1,
    }));
    let cipher = SessionCipher::new(store, "fuzz", IdentityTrust::AcceptChanges);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let _ = rt.block_on(recv::decrypt(&cipher, &node, &me));
});
