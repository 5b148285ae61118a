//! No `{:?}` prints a secret: every public type that holds key material is formatted and the
//! output searched for the secret's bytes in every rendering a derived or careless `Debug`
//! would use (hex either case, base64, decimal or hex byte lists).

use base64::Engine;
use prost::Message;
use wa_gateway::client::pair::{QrKeys, qr_string};
use wa_gateway::client::{Creds, CredsStore, Event, MemoryCreds};
use wa_gateway::proto::wa::signal::RecordStructure;
use wa_gateway::signal::ratchet::{ChainKey, MessageKeys, RootKey};
use wa_gateway::signal::store::{PreKey, PreKeyStore, SessionStore, SignedPreKey};
use wa_gateway::signal::{
    KeyPair, LocalIdentity, MemoryStore, ProtocolAddress, SenderKeyRecord, SessionRecord,
};
use wa_gateway::sim::pair::{PhoneAccount, parse_qr};

use crate::common::session_pair;
use wa_gateway::socket::ServerIdentity;

/// Every way a byte string shows up in text that we know of.
fn renderings(secret: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for e in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        out.push(e.encode(secret));
    }
    for w in secret.windows(4) {
        let hex = wa_gateway::util::hex::encode(w);
        out.push(hex.clone());
        out.push(hex.to_uppercase());
        out.push(format!("{w:?}").trim_matches(['[', ']']).to_owned());
        out.push(format!("{w:02x?}").trim_matches(['[', ']']).to_owned());
    }
    out
}

#[track_caller]
fn assert_hidden(what: &str, debug: &str, secrets: &[&[u8]]) {
    for s in secrets {
        assert!(
            s.len() >= 16,
            "{what}: a test secret is too short to search for"
        );
        for r in renderings(s) {
            assert!(
                !debug.contains(&r),
                "{what} prints a secret ({r}) in {debug}"
            );
        }
    }
}

/// The root key, sending chain key and ratchet private key a record holds.
fn record_secrets(r: &SessionRecord) -> Vec<Vec<u8>> {
    let pb = RecordStructure::decode(&r.to_bytes()[..]).unwrap();
    let s = pb.current_session.unwrap();
    let chain = s.sender_chain.unwrap();
    vec![
        s.root_key.unwrap(),
        chain.chain_key.unwrap().key.unwrap(),
        chain.sender_ratchet_key_private.unwrap(),
    ]
}

#[tokio::test]
async fn no_debug_output_holds_key_material() {
    let kp = KeyPair::generate();
    assert_hidden("KeyPair", &format!("{kp:?}"), &[&kp.private]);

    // Credentials, and the in-memory stores that hold them.
    let creds = Creds::generate(0);
    let secrets: Vec<&[u8]> = vec![
        &creds.adv_secret[..],
        &creds.noise.private,
        &creds.identity.private,
        &creds.signed_pre_key.key_pair.private,
    ];
    assert_hidden("Creds", &format!("{creds:?}"), &secrets);
    let mem = MemoryCreds::default();
    mem.save(&creds).await.unwrap();
    let pre_keys = mem.signal().create_pre_keys(3).await.unwrap();
    let (alice, bob) = session_pair();
    let addr = ProtocolAddress::new("15550001111", 0);
    mem.signal().store_session(&addr, &bob).await.unwrap();
    let mut all = secrets.clone();
    let bob_secrets = record_secrets(&bob);
    all.extend(bob_secrets.iter().map(Vec::as_slice));
    all.extend(pre_keys.iter().map(|k| k.key_pair.private.as_slice()));
    assert_hidden("MemoryCreds", &format!("{mem:?}"), &all);
    assert_hidden("MemoryStore", &format!("{:?}", mem.signal()), &all);
    let store = MemoryStore::new(LocalIdentity {
        key_pair: creds.identity.clone(),
        registration_id: 7,
    });
    assert_hidden("MemoryStore (new)", &format!("{store:?}"), &secrets);

    // Signal records and their parts.
    for (what, r) in [("alice record", &alice), ("bob record", &bob)] {
        let s = record_secrets(r);
        let s: Vec<&[u8]> = s.iter().map(Vec::as_slice).collect();
        assert_hidden(what, &format!("{r:?}"), &s);
        assert_hidden(what, &format!("{:?}", r.current().unwrap()), &s);
    }
    let id = LocalIdentity {
        key_pair: KeyPair::generate(),
        registration_id: 9,
    };
    assert_hidden("LocalIdentity", &format!("{id:?}"), &[&id.key_pair.private]);
    let pk = PreKey {
        id: 1,
        key_pair: KeyPair::generate(),
    };
    assert_hidden("PreKey", &format!("{pk:?}"), &[&pk.key_pair.private]);
    let spk = SignedPreKey::generate(1, &id.key_pair, 0);
    assert_hidden(
        "SignedPreKey",
        &format!("{spk:?}"),
        &[&spk.key_pair.private],
    );
    let mk = MessageKeys {
        cipher_key: rand::random(),
        mac_key: rand::random(),
        iv: rand::random(),
        counter: 3,
    };
    assert_hidden(
        "MessageKeys",
        &format!("{mk:?}"),
        &[&mk.cipher_key, &mk.mac_key, &mk.iv],
    );
    let ck = ChainKey {
        key: rand::random(),
        index: 1,
    };
    assert_hidden("ChainKey", &format!("{ck:?}"), &[&ck.key]);
    let rk = RootKey(rand::random());
    assert_hidden("RootKey", &format!("{rk:?}"), &[&rk.0]);

    // Sender keys: the chain key and the signing private key.
    let mut group = SenderKeyRecord::new();
    let d = group.distribution();
    assert_hidden("SenderKeyDistribution", &format!("{d:?}"), &[&d.chain_key]);
    let pb = wa_gateway::proto::wa::signal::SenderKeyRecordStructure::decode(&group.to_bytes()[..])
        .unwrap();
    let private = pb.sender_key_states[0]
        .sender_signing_key
        .as_ref()
        .unwrap()
        .private
        .clone()
        .unwrap();
    assert_hidden(
        "SenderKeyRecord",
        &format!("{group:?}"),
        &[&d.chain_key, &private],
    );

    // QR material: the ADV secret and the ref.
    let adv: [u8; 32] = rand::random();
    let keys = QrKeys {
        noise_public: &creds.noise.public,
        identity_public: &creds.identity.public,
        adv_secret: &adv,
    };
    assert_hidden("QrKeys", &format!("{keys:?}"), &[&adv]);
    let r#ref = "2@Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA==";
    let code = qr_string(r#ref, keys, '1');
    let scanned = parse_qr(&code).unwrap();
    let debug = format!("{scanned:?}");
    assert_hidden("ScannedQr", &debug, &[&adv]);
    assert!(!debug.contains(r#ref), "ScannedQr prints the ref: {debug}");
    let ev = Event::QrCode {
        code: code.clone(),
        valid_for: std::time::Duration::from_secs(60),
    };
    let debug = format!("{ev:?}");
    assert_hidden("Event::QrCode", &debug, &[&adv]);
    assert!(!debug.contains(r#ref), "{debug}");

    // The simulator's keys.
    let phone = PhoneAccount {
        number: "15550002222".into(),
        lid: "100000000000001".into(),
        identity: KeyPair::generate(),
        platform: "android".into(),
        push_name: None,
        business_name: None,
    };
    assert_hidden(
        "PhoneAccount",
        &format!("{phone:?}"),
        &[&phone.identity.private],
    );
    let server = ServerIdentity::generate(0, 10);
    assert_hidden(
        "ServerIdentity",
        &format!("{server:?}"),
        &[
            &server.root.private,
            &server.intermediate.private,
            &server.static_key.private,
        ],
    );
}

#[test]
fn an_outbox_rows_debug_holds_neither_its_text_nor_its_files_key() {
    let row = wa_gateway::store::outbox::OutboxRow {
        pk: 1,
        account: 2,
        idem_key: None,
        message_id: "3EB0AA".into(),
        to: "15550001111@s.whatsapp.net".into(),
        body: "private words".into(),
        user_id: None,
        state: wa_gateway::store::OutboxState::Queued,
        result: None,
        created_ms: 0,
        media: Some(r#"{"mediaKey":"c2VjcmV0LWtleS1ieXRlcw==","directPath":"/v/t62/x"}"#.into()),
        hold: None,
    };
    let shown = format!("{row:?}");
    assert!(shown.contains("3EB0AA"), "{shown}");
    for secret in ["private words", "c2VjcmV0", "/v/t62"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}
