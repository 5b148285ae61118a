//! Stanza handlers on both sides never panic on what a peer can send: valid stanzas (a real
//! pair-device, pair-success, encrypted message, prekey upload, usync query) are mutated —
//! children dropped or duplicated, attributes removed or rewritten, bytes replaced or truncated —
//! and every handler must answer Ok or Err. The unmutated stanzas must still be accepted, so the
//! harness is known to reach the code behind the checks. (`cargo fuzz run stanzas` does the same
//! with libFuzzer.)

use std::sync::Arc;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wa_gateway::binary::{Content, Jid, Node, Server, Value};
use wa_gateway::client::pair::{QrKeys, handle_pair_success, parse_pair_device, qr_string};
use wa_gateway::client::prekeys::{parse_count, upload_node};
use wa_gateway::client::recv;
use wa_gateway::client::{CredsStore, Me, MemoryCreds};
use wa_gateway::signal::store::PreKeyStore;
use wa_gateway::signal::{IdentityTrust, KeyPair, SessionCipher, SignedPreKey};
use wa_gateway::sim::iq::{KeyBundle, validate_upload};
use wa_gateway::sim::pair::{PhoneAccount, issue_pair_success, parse_qr};
use wa_gateway::sim::phone::{PhoneSignal, initial_setting_sync};
use wa_gateway::sim::usync;
use wa_gateway::stanza::group::{
    AddressingMode, GroupInfo, GroupParticipant, MemberAction, group_node, group_notification,
    members_change, parse_group, parse_group_notification,
};

fn mutate(node: &mut Node, rng: &mut StdRng, depth: usize) {
    match rng.random_range(0..6u8) {
        0 if !node.attrs.is_empty() => {
            let i = rng.random_range(0..node.attrs.len());
            node.attrs.remove(i);
        }
        1 if !node.attrs.is_empty() => {
            let i = rng.random_range(0..node.attrs.len());
            let junk: String = (0..rng.random_range(0..12usize))
                .map(|_| char::from(rng.random_range(b' '..=b'~')))
                .collect();
            node.attrs[i].1 = Value::Str(junk.into());
        }
        2 => {
            let len = rng.random_range(0..96usize);
            let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            node.content = Content::Bytes(junk.into());
        }
        _ => {}
    }
    match &mut node.content {
        Content::Children(children) if !children.is_empty() => {
            match rng.random_range(0..4u8) {
                0 => {
                    let i = rng.random_range(0..children.len());
                    children.remove(i);
                }
                1 => {
                    let i = rng.random_range(0..children.len());
                    let c = children[i].clone();
                    children.push(c);
                }
                _ => {}
            }
            if depth < 6 {
                for c in children.iter_mut() {
                    if rng.random_range(0..3u8) == 0 {
                        mutate(c, rng, depth + 1);
                    }
                }
            }
        }
        Content::Bytes(b) if !b.is_empty() && rng.random() => {
            let keep = rng.random_range(0..b.len());
            *b = b.slice(..keep);
        }
        _ => {}
    }
}

/// Valid stanzas of every kind, and what the handlers need to read them.
struct Corpus {
    companion_identity: KeyPair,
    adv: [u8; 32],
    me: Me,
    creds: Arc<MemoryCreds>,
    pair_device: Node,
    pair_success: Node,
    message: Node,
    upload: Node,
    usync: Node,
    group: Node,
    notification: Node,
}

/// Runs a future to completion (the stores are in memory; the Signal locks may be contended by
/// parallel tests, so polling once is not enough).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn corpus() -> Corpus {
    let (noise, identity, adv) = (KeyPair::generate(), KeyPair::generate(), rand::random());
    let phone = PhoneAccount {
        number: "15550001234".into(),
        lid: "201234567890123".into(),
        identity: KeyPair::generate(),
        platform: "android".into(),
        push_name: Some("Prop".into()),
        business_name: None,
    };
    let qr = qr_string(
        "2@ref",
        QrKeys {
            noise_public: &noise.public,
            identity_public: &identity.public,
            adv_secret: &adv,
        },
        '1',
    );
    let (pair_success, _) = issue_pair_success(&phone, &parse_qr(&qr).unwrap(), 1, 1, "ps1", 1);
    let (paired, _) = handle_pair_success(&pair_success, &identity, &adv).unwrap();
    let me = paired.me();
    // The companion's keys, stored as the client stores them, and the phone's first message.
    let mut creds_value = wa_gateway::client::Creds::generate(0);
    creds_value.identity = identity.clone();
    creds_value.signed_pre_key = SignedPreKey::generate(1, &identity, 0);
    creds_value.me = Some(me.clone());
    let creds = Arc::new(MemoryCreds::default());
    block_on(creds.save(&creds_value)).unwrap();
    let keys = block_on(creds.signal().create_pre_keys(2)).unwrap();
    let bundle = KeyBundle {
        registration_id: creds_value.registration_id,
        signed_pre_key_id: 1,
        signed_pre_key: creds_value.signed_pre_key.key_pair.public,
        signature: creds_value.signed_pre_key.signature,
    };
    let message = block_on(PhoneSignal::phone(&phone).peer_message(
        &phone,
        &paired.jid,
        &identity.public,
        &bundle,
        Some((keys[0].id, keys[0].key_pair.public)),
        &initial_setting_sync(),
        1,
    ))
    .unwrap();
    let upload = upload_node(
        creds_value.registration_id,
        &identity.public,
        &keys,
        &creds_value.signed_pre_key,
    );
    let pair_device =
        Node::new("iq")
            .attr("id", "pd1")
            .children(vec![Node::new("pair-device").children(vec![
                Node::new("ref").bytes(b"2@a".to_vec()),
                Node::new("ref").bytes(b"2@b".to_vec()),
            ])]);
    let usync = Node::new("iq").children(vec![Node::new("usync").attr("sid", "s").children(vec![
        Node::new("query").children(vec![
            Node::new("devices").attr("version", "2"),
            Node::new("lid"),
            Node::new("contact"),
        ]),
        Node::new("list").children(vec![
            Node::new("user").attr("jid", Jid::new("15550001234", Server::User)),
            Node::new("user").children(vec![Node::new("contact").bytes(b"+1555".to_vec())]),
        ]),
    ])]);
    let info = GroupInfo {
        jid: Jid::new("120363000000000001", Server::Group),
        subject: "Props".into(),
        subject_owner: None,
        subject_time: 1,
        creator: Some(Jid::new("15550001234", Server::User)),
        creation: 1,
        addressing: AddressingMode::Lid,
        participants: vec![GroupParticipant {
            jid: Jid::new("201234567890123", Server::Lid),
            phone_number: Some(Jid::new("15550001234", Server::User)),
            lid: None,
            admin: Some("superadmin".into()),
        }],
    };
    let group = Node::new("iq")
        .attr("type", "result")
        .children(vec![group_node(&info)]);
    let notification = group_notification(
        &info.jid,
        "n1",
        info.creator.as_ref(),
        2,
        vec![
            members_change(MemberAction::Add, &info.participants),
            Node::new("subject").attr("subject", "New"),
        ],
    );
    Corpus {
        companion_identity: identity,
        adv,
        me,
        creds,
        pair_device,
        pair_success,
        message,
        upload,
        usync,
        group,
        notification,
    }
}

fn lookup(jid: &wa_gateway::binary::Jid) -> Option<usync::UserInfo> {
    (jid.user == "15550001234").then(|| usync::UserInfo {
        number: jid.user.clone(),
        lid: "201234567890123".into(),
        devices: vec![0, 1],
    })
}

/// The handlers, in the order [`run_all`] reports them.
const HANDLERS: [&str; 8] = [
    "pair-device",
    "pair-success",
    "prekey count",
    "prekey upload",
    "usync",
    "1:1 decrypt",
    "group metadata",
    "group notification",
];

/// Every handler on `n`; which accepted it.
fn run_all(
    c: &Corpus,
    n: &Node,
    cipher: &SessionCipher<impl wa_gateway::signal::SignalStore>,
) -> [bool; 8] {
    let answer = usync::answer(n, "q", lookup);
    [
        parse_pair_device(n).is_some(),
        handle_pair_success(n, &c.companion_identity, &c.adv).is_ok(),
        parse_count(n).is_some(),
        validate_upload(n, &c.companion_identity.public).is_some(),
        answer.get_str("type").as_deref() == Some("result"),
        block_on(recv::decrypt(cipher, n, &c.me)).is_ok(),
        n.child("group").and_then(parse_group).is_some(),
        parse_group_notification(n).is_some_and(|g| !g.changes.is_empty()),
    ]
}

#[test]
fn unmutated_stanzas_are_accepted() {
    let c = corpus();
    // A fresh cipher per stanza kind: decrypting twice would be a replay.
    let cipher = SessionCipher::new(c.creds.signal(), IdentityTrust::AcceptChanges);
    // Each valid stanza reaches the handler it was made for (so mutations of it exercise the
    // code behind that handler's checks).
    for (n, handler) in [
        (&c.pair_device, "pair-device"),
        (&c.pair_success, "pair-success"),
        (&c.message, "1:1 decrypt"),
        (&c.upload, "prekey upload"),
        (&c.usync, "usync"),
        (&c.group, "group metadata"),
        (&c.notification, "group notification"),
    ] {
        let accepted = run_all(&c, n, &cipher);
        let i = HANDLERS.iter().position(|h| *h == handler).unwrap();
        assert!(accepted[i], "{handler} refused its own stanza {n}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn mutated_stanzas_never_panic(seed in any::<u64>(), which in 0..7usize) {
        let c = corpus();
        let cipher = SessionCipher::new(c.creds.signal(), IdentityTrust::AcceptChanges);
        let mut n = [
            &c.pair_device,
            &c.pair_success,
            &c.message,
            &c.upload,
            &c.usync,
            &c.group,
            &c.notification,
        ][which]
            .clone();
        let mut rng = StdRng::seed_from_u64(seed);
        mutate(&mut n, &mut rng, 0);
        run_all(&c, &n, &cipher);
    }
}
