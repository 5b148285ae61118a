//! Fuzzes the stanza handlers behind the node decoder, on both sides of the protocol: any node a
//! peer can send (pair-device, pair-success, prekey counts and uploads, usync queries, group
//! metadata and notifications, reach-out time-lock answers, encrypted messages) must give Ok or Err, never a panic. The input is a binary node (no frame flags).
//!
//! The decrypting side is seeded: our store holds a signed prekey, one-time prekeys and an
//! established session with the peer `1555` (built deterministically below), and a sender key of
//! that peer, so fuzzed `pkmsg`, `msg` and `skmsg` bodies get past the lookups into X3DH, the
//! ratchet, the MACs and the sender-key chain. With `STANZAS_SEED_DIR` set, the first run writes
//! valid stanzas of each kind there (`fuzz/seeds/stanzas/` holds them).
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use wa_gateway::binary::{Jid, Node, Server, decode_node, encode_node};
use wa_gateway::client::Me;
use wa_gateway::client::pair::{handle_pair_success, parse_pair_device};
use wa_gateway::client::prekeys::parse_count;
use wa_gateway::client::recv;
use wa_gateway::proto::wa;
use wa_gateway::signal::store::{PreKeyStore, SessionStore, SignedPreKeyStore};
use wa_gateway::signal::{
    IdentityTrust, KeyPair, LocalIdentity, MemoryStore, PreKey, PreKeyBundle, PreKeySignalMessage,
    ProtocolAddress, SenderKeyDistribution, SenderKeyRecord, SequenceKeys, SessionCipher,
    SessionRecord, SignedPreKey, initiate,
};
use wa_gateway::sim::iq::validate_upload;
use wa_gateway::sim::usync;
use wa_gateway::stanza::group;

const PEER: &str = "1555";

fn kp(b: u8) -> KeyPair {
    KeyPair::from_private([b; 32])
}

/// Everything the decrypting side starts each run with.
struct Seeded {
    identity: LocalIdentity,
    signed: SignedPreKey,
    one_time: Vec<PreKey>,
    /// Our record for the peer after its first message (prekey 1) was decrypted.
    session: Vec<u8>,
    /// The peer's sender key, as its distribution message installed it.
    sender_key: SenderKeyRecord,
}

fn identity() -> LocalIdentity {
    LocalIdentity {
        key_pair: kp(7),
        registration_id: 1,
    }
}

fn bundle(seeded: &Seeded, pre_key: &PreKey) -> PreKeyBundle {
    PreKeyBundle {
        registration_id: seeded.identity.registration_id,
        pre_key: Some((pre_key.id, pre_key.key_pair.public)),
        signed_pre_key_id: seeded.signed.id,
        signed_pre_key: seeded.signed.key_pair.public,
        signed_pre_key_signature: seeded.signed.signature,
        identity_key: seeded.identity.key_pair.public,
    }
}

/// A padded `Message` with a conversation text, as a peer encrypts it.
fn plaintext(text: &str) -> Vec<u8> {
    let mut p = wa::Message {
        conversation: Some(text.into()),
        ..Default::default()
    }
    .encode_to_vec();
    p.extend_from_slice(&[3, 3, 3]);
    p
}

fn stanza(kind: &str, body: &[u8]) -> Vec<u8> {
    let node = Node::new("message")
        .attr("id", "3EB0FUZZ")
        .attr("from", Jid::new(PEER, Server::User))
        .attr("t", "1700000000")
        .attr("notify", "Peer")
        .children(vec![
            Node::new("enc")
                .attr("v", "2")
                .attr("type", kind.to_owned())
                .bytes(body.to_vec()),
        ]);
    let mut out = Vec::new();
    encode_node(&node, &mut out).expect("encodable");
    out
}

/// The peer's sending sender-key state (fixed keys, so the seeds replay).
fn peer_sender_key() -> SenderKeyRecord {
    use wa::signal::sender_key_state_structure::{SenderChainKey, SenderSigningKey};
    let signing = kp(22);
    SenderKeyRecord::from_bytes(
        &wa::signal::SenderKeyRecordStructure {
            sender_key_states: vec![wa::signal::SenderKeyStateStructure {
                sender_key_id: Some(5),
                sender_chain_key: Some(SenderChainKey {
                    iteration: Some(0),
                    seed: Some(vec![21; 32]),
                }),
                sender_signing_key: Some(SenderSigningKey {
                    public: Some(signing.public_with_type().to_vec()),
                    private: Some(signing.private.to_vec()),
                }),
                sender_message_keys: Vec::new(),
            }],
        }
        .encode_to_vec(),
    )
    .expect("valid record")
}

static SEEDED: LazyLock<Seeded> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let identity = identity();
    let signed = SignedPreKey::generate(1, &identity.key_pair, 0);
    let one_time: Vec<PreKey> = (1..=4)
        .map(|id| PreKey {
            id,
            key_pair: kp(10 + id as u8),
        })
        .collect();
    let mut seeded = Seeded {
        identity,
        signed,
        one_time,
        session: Vec::new(),
        sender_key: SenderKeyRecord::new(),
    };
    // The peer opens a session with one-time prekey 1 and its first message is decrypted.
    let peer = LocalIdentity {
        key_pair: kp(3),
        registration_id: 77,
    };
    let mut peer_keys = SequenceKeys::new([kp(30), kp(31), kp(32), kp(33)]);
    let mut peer_rec = SessionRecord::new();
    peer_rec.promote(
        initiate(&peer, &bundle(&seeded, &seeded.one_time[0]), &mut peer_keys).expect("bundle"),
    );
    let first = peer_rec.encrypt(&plaintext("first")).expect("encrypt");
    let msg = PreKeySignalMessage::decode(first.bytes()).expect("pkmsg");
    let mut ours = SessionRecord::new();
    ours.decrypt_pre_key(
        &msg,
        &seeded.identity,
        Some(&seeded.signed.key_pair),
        Some(&seeded.one_time[0].key_pair),
        &mut SequenceKeys::new([kp(40), kp(41)]),
    )
    .expect("first message");
    seeded.session = ours.to_bytes();
    seeded.one_time.remove(0);
    // The peer's sender key, installed from its distribution message.
    let mut sender = peer_sender_key();
    let d = sender.distribution();
    seeded.sender_key.process(&SenderKeyDistribution::decode(&d.encode()).expect("skdm"));

    if let Ok(dir) = std::env::var("STANZAS_SEED_DIR") {
        // Valid stanzas of each kind against this state.
        let next = peer_rec.encrypt(&plaintext("second")).expect("encrypt");
        let mut fresh = SessionRecord::new();
        fresh.promote(
            initiate(&peer, &bundle(&seeded, &seeded.one_time[0]), &mut SequenceKeys::new([kp(50), kp(51)]))
                .expect("bundle"),
        );
        let new_session = fresh.encrypt(&plaintext("new session")).expect("encrypt");
        let group = sender.encrypt(&plaintext("group")).expect("skmsg");
        let seeds = [
            ("pkmsg-continued", stanza(next.enc_type(), next.bytes())),
            ("pkmsg-new-session", stanza("pkmsg", new_session.bytes())),
            ("skmsg", stanza("skmsg", &group)),
        ];
        // Each seed must get through to its plaintext, or the corpus would not reach the crypto.
        let me = me();
        for (name, bytes) in &seeds {
            let node = decode_node(&bytes::Bytes::copy_from_slice(bytes)).expect("seed decodes");
            let ok = if *name == "skmsg" {
                let body = node.child_nodes()[0].content_bytes().expect("body");
                seeded.sender_key.clone().decrypt(body).is_ok()
            } else {
                let cipher =
                    SessionCipher::new(store(&seeded, &rt), IdentityTrust::AcceptChanges);
                rt.block_on(recv::decrypt(&cipher, &node, &me)).is_ok()
            };
            assert!(ok, "seed {name} does not decrypt against the seeded state");
            let _ = std::fs::write(std::path::Path::new(&dir).join(name), bytes);
        }
        // The reach-out time-lock, as the server states it.
        let lock = wa_gateway::stanza::mex::ReachoutTimelock {
            active: true,
            ends_at: Some(1_800_000_000),
            enforcement: "DEFAULT".into(),
        };
        for (name, node) in [
            ("mex-result", wa_gateway::stanza::mex::timelock_result("1", &lock)),
            (
                "mex-notification",
                wa_gateway::stanza::mex::timelock_notification("2", 1_700_000_000, &lock),
            ),
        ] {
            let mut bytes = Vec::new();
            if encode_node(&node, &mut bytes).is_ok() {
                let _ = std::fs::write(std::path::Path::new(&dir).join(name), bytes);
            }
        }
    }
    seeded
});

fn me() -> Me {
    Me {
        jid: Jid::with_device("1666", 1, Server::User),
        lid: Some(Jid::with_device("2", 1, Server::Lid)),
        platform: None,
        business_name: None,
        push_name: None,
        signed_identity: Vec::new(),
        account_signature_key: [0; 32],
    }
}

/// A store in the seeded state (fresh each run: decryption advances it).
fn store(seeded: &Seeded, rt: &tokio::runtime::Runtime) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new(seeded.identity.clone()));
    rt.block_on(async {
        let _ = store.store_signed_pre_key(&seeded.signed).await;
        let _ = store.store_pre_keys(&seeded.one_time).await;
        if let Ok(r) = SessionRecord::from_bytes(&seeded.session) {
            let _ = store
                .store_session(&ProtocolAddress::new(PEER, 0), &r)
                .await;
        }
    });
    store
}

fuzz_target!(|data: &[u8]| {
    let seeded = &*SEEDED;
    let _ = recv::unpad(data);
    let Ok(node) = decode_node(&bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = parse_pair_device(&node);
    let _ = handle_pair_success(&node, &seeded.identity.key_pair, &[9; 32]);
    let _ = parse_count(&node);
    let _ = validate_upload(&node, &seeded.identity.key_pair.public);
    // What messaging reads from the server and from peers.
    let _ = wa_gateway::stanza::parse_usync(&node);
    let _ = wa_gateway::stanza::parse_bundles(&node);
    let _ = wa_gateway::stanza::parse_retry(&node);
    let _ = wa_gateway::stanza::receipt_ids(&node);
    // Group metadata, membership notifications and membership answers.
    let _ = group::parse_group(&node);
    for c in node.child_nodes() {
        let _ = group::parse_group(c);
    }
    if let Some(n) = group::parse_group_notification(&node) {
        let _ = group::group_notification(&n.group, "x", n.author.as_ref(), n.t, vec![]);
    }
    let _ = group::parse_member_results(&node, group::MemberAction::Add);
    // The reach-out time-lock (JSON inside `w:mex` answers and notifications).
    let _ = wa_gateway::stanza::mex::parse_timelock_result(&node);
    let _ = wa_gateway::stanza::mex::parse_timelock_notification(&node, u64::MAX - 1);
    let _ = wa_gateway::stanza::mex::query_id(&node);
    let devices: Vec<Jid> = node
        .child_nodes()
        .iter()
        .filter_map(|c| c.get_jid("jid"))
        .collect();
    let _ = group::phash(&devices);
    let _ = usync::answer(&node, "q", |jid| {
        (jid.user == PEER).then(|| usync::UserInfo {
            number: jid.user.clone(),
            lid: "2".into(),
            devices: vec![0, 1],
        })
    });
    let me = me();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let cipher = SessionCipher::new(store(seeded, &rt), IdentityTrust::AcceptChanges);
    let _ = rt.block_on(recv::decrypt(&cipher, &node, &me));
    // Group bodies go to the peer's sender key (the client's group receive path comes later).
    for enc in node.child_nodes().iter().filter(|c| c.tag == "enc") {
        if enc.get_str("type").as_deref() == Some("skmsg")
            && let Some(body) = enc.content_bytes()
        {
            let mut record = seeded.sender_key.clone();
            if let Ok(p) = record.decrypt(body) {
                let _ = recv::unpad(&p).map(wa::Message::decode);
            }
        }
    }
});
