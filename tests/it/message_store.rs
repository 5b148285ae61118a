//! The message store over SQLite: rows and Signal state commit together through the group
//! committer (concurrent callers, one row each, none lost or doubled), the ladder only climbs,
//! and learning a contact's LID moves its sealed sessions, identities and rows in one unit.

use std::sync::Arc;

use wa_gateway::binary::{Jid, Server};
use wa_gateway::client::CredsStore;
use wa_gateway::client::messages::{Committed, MessageStatus, StatusUpdate, StoredMessage};
use wa_gateway::signal::store::{IdentityStore, SessionStore};
use wa_gateway::signal::{ProtocolAddress, SignalChanges};
use wa_gateway::store::{Store, StoreKey};

fn row(id: &str, chat: &Jid, from_me: bool, status: MessageStatus) -> StoredMessage {
    StoredMessage {
        id: id.into(),
        chat: chat.clone(),
        sender: chat.clone(),
        from_me,
        timestamp: 1_700_000_000,
        push_name: None,
        text: Some(format!("text {id}")),
        raw: vec![1, 2, 3],
        status,
        ..StoredMessage::default()
    }
}

#[tokio::test]
async fn concurrent_commits_land_once_each_with_their_signal_state() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wa.db").display());
    let store = Store::open(&url).await.unwrap();
    let accounts: Vec<_> = futures_accounts(&store, 4).await;
    let chat = Jid::new("15550001111", Server::User);
    let (rec, _) = crate::common::session_pair();
    let mut tasks = Vec::new();
    for (n, creds) in accounts.iter().enumerate() {
        for i in 0..100 {
            let (creds, chat, rec) = (creds.clone(), chat.clone(), rec.clone());
            tasks.push(tokio::spawn(async move {
                let changes = SignalChanges {
                    sessions: vec![(ProtocolAddress::new(format!("peer{i}"), 1), rec)],
                    ..Default::default()
                };
                let r = row(&format!("m{n}-{i}"), &chat, false, MessageStatus::Received);
                creds.commit_message(&changes, &r).await.unwrap()
            }));
        }
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Committed::Inserted);
    }
    for creds in &accounts {
        let rows = creds.messages(Some(&chat), 1000, 0).await.unwrap();
        assert_eq!(rows.len(), 100, "each account sees its own rows only");
        // The session written with each row is there too.
        for i in [0, 57, 99] {
            let addr = ProtocolAddress::new(format!("peer{i}"), 1);
            assert!(creds.signal().session(&addr).await.unwrap().is_some());
        }
        // The same (chat, sender, id) again is a duplicate and changes nothing.
        let again = row("m0-0", &chat, false, MessageStatus::Received);
        let first = &rows.iter().find(|r| r.id.ends_with("-0")).unwrap().id;
        let again = StoredMessage {
            id: first.clone(),
            text: Some("other".into()),
            ..again
        };
        assert_eq!(
            creds
                .commit_message(&SignalChanges::default(), &again)
                .await
                .unwrap(),
            Committed::Duplicate
        );
        assert_eq!(
            creds.messages(Some(&chat), 1000, 0).await.unwrap().len(),
            100
        );
    }
}

async fn futures_accounts(store: &Store, n: usize) -> Vec<Arc<wa_gateway::store::SqliteCreds>> {
    let mut v = Vec::new();
    for i in 0..n {
        let id = store.account("sub", &format!("agent-{i}")).await.unwrap();
        v.push(Arc::new(store.creds(id)));
    }
    v
}

#[tokio::test]
async fn the_ladder_only_climbs_and_keeps_each_devices_receipt() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let creds = futures_accounts(&store, 1).await.pop().unwrap();
    let chat = Jid::new("15550002222", Server::User);
    let r = row("out-1", &chat, true, MessageStatus::Pending);
    creds
        .commit_message(&SignalChanges::default(), &r)
        .await
        .unwrap();
    let update = |status, device: Option<u16>, error| StatusUpdate {
        chat: chat.clone(),
        id: "out-1".into(),
        device: device.map(|d| Jid::with_device("15550002222", d, Server::User)),
        status,
        error,
        t: 1_700_000_100,
    };
    let set = |u: StatusUpdate| {
        let creds = creds.clone();
        async move { creds.update_status(&u).await.unwrap() }
    };
    assert_eq!(
        set(update(MessageStatus::ServerAck, None, None)).await,
        Some(MessageStatus::ServerAck)
    );
    assert_eq!(
        set(update(MessageStatus::Read, Some(0), None)).await,
        Some(MessageStatus::Read)
    );
    // A late delivery receipt from another device does not move it back.
    assert_eq!(
        set(update(MessageStatus::Delivered, Some(1), None)).await,
        None
    );
    // Nor does an error after delivery.
    assert_eq!(
        set(update(MessageStatus::Failed, None, Some(463))).await,
        None
    );
    let stored = creds.sent_message(&chat, "out-1").await.unwrap().unwrap();
    assert_eq!(stored.status, MessageStatus::Read);
    // An unknown id is no error and changes nothing.
    let mut other = update(MessageStatus::Read, Some(0), None);
    other.id = "nope".into();
    assert_eq!(creds.update_status(&other).await.unwrap(), None);
    // A refused send is failed with its code.
    let r2 = row("out-2", &chat, true, MessageStatus::Pending);
    creds
        .commit_message(&SignalChanges::default(), &r2)
        .await
        .unwrap();
    let mut refused = update(MessageStatus::Failed, None, Some(463));
    refused.id = "out-2".into();
    assert_eq!(
        creds.update_status(&refused).await.unwrap(),
        Some(MessageStatus::Failed)
    );
    let s2 = creds.sent_message(&chat, "out-2").await.unwrap().unwrap();
    assert_eq!((s2.status, s2.error), (MessageStatus::Failed, Some(463)));
    assert!(creds.pending_messages().await.unwrap().is_empty());
}

#[tokio::test]
async fn learning_a_lid_moves_sealed_sessions_sender_keys_identities_and_rows_in_one_unit() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wa.db").display());
    let key = StoreKey::generate();
    let store = Store::open_with(&url, Some(&key)).await.unwrap();
    let creds = futures_accounts(&store, 1).await.pop().unwrap();
    let signal = creds.signal();
    let (pn, lid) = ("15550003333", "123456789012345");
    let (rec, _) = crate::common::session_pair();
    let (pn0, pn2) = (ProtocolAddress::new(pn, 0), ProtocolAddress::new(pn, 2));
    // A different number that shares the prefix must stay where it is.
    let other = ProtocolAddress::new(format!("{pn}9"), 0);
    for a in [&pn0, &pn2, &other] {
        signal.store_session(a, &rec).await.unwrap();
        signal
            .save_identity(a, &[a.device_id as u8; 32])
            .await
            .unwrap();
    }
    // The contact's sender key in a group (and another number's that shares the prefix).
    let mut sk = wa_gateway::signal::SenderKeyRecord::new();
    sk.distribution();
    let key_name = |a: &ProtocolAddress| wa_gateway::signal::SenderKeyName {
        group: "120363000000000001@g.us".into(),
        sender: a.clone(),
    };
    for a in [&pn2, &other] {
        wa_gateway::signal::store::SenderKeyStore::store_sender_key(&signal, &key_name(a), &sk)
            .await
            .unwrap();
    }
    let pn_jid = Jid::new(pn, Server::User);
    creds.set_privacy_token(&pn_jid, b"tok", 5).await.unwrap();
    creds
        .commit_message(
            &SignalChanges::default(),
            &row("in-1", &pn_jid, false, MessageStatus::Received),
        )
        .await
        .unwrap();

    creds.learn_lid(pn, lid).await.unwrap();
    assert_eq!(creds.lid_for(pn).await.unwrap().as_deref(), Some(lid));
    assert_eq!(creds.pn_for(lid).await.unwrap().as_deref(), Some(pn));
    let lid_name = format!("{lid}_1");
    for d in [0, 2] {
        let moved = ProtocolAddress::new(lid_name.clone(), d);
        let s = signal
            .session(&moved)
            .await
            .unwrap()
            .expect("session moved (and still opens)");
        assert_eq!(s.to_bytes(), rec.to_bytes());
        assert_eq!(signal.identity(&moved).await.unwrap(), Some([d as u8; 32]));
        let old = ProtocolAddress::new(pn, d);
        assert!(signal.session(&old).await.unwrap().is_none());
        assert!(signal.identity(&old).await.unwrap().is_none());
    }
    assert!(signal.session(&other).await.unwrap().is_some());
    // Its sender key moved with its device (sealed anew: it still opens); the other stayed.
    use wa_gateway::signal::store::SenderKeyStore;
    let moved_key = signal
        .sender_key(&key_name(&ProtocolAddress::new(lid_name.clone(), 2)))
        .await
        .unwrap()
        .expect("sender key moved");
    assert_eq!(moved_key.to_bytes(), sk.to_bytes());
    assert!(signal.sender_key(&key_name(&pn2)).await.unwrap().is_none());
    assert!(
        signal
            .sender_key(&key_name(&other))
            .await
            .unwrap()
            .is_some()
    );
    // The conversation is keyed by the LID now.
    let lid_jid = Jid::new(lid, Server::Lid);
    let rows = creds.messages(Some(&lid_jid), 10, 0).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].chat.clone(), rows[0].sender.clone()),
        (lid_jid.clone(), lid_jid)
    );
    assert!(
        creds
            .messages(Some(&pn_jid), 10, 0)
            .await
            .unwrap()
            .is_empty()
    );
    // The token the contact gave before we knew its LID follows it.
    assert_eq!(
        creds
            .privacy_token(&Jid::new(lid, Server::Lid))
            .await
            .unwrap(),
        Some((b"tok".to_vec(), 5))
    );
    assert_eq!(creds.privacy_token(&pn_jid).await.unwrap(), None);
    // Learning it again changes nothing.
    creds.learn_lid(pn, lid).await.unwrap();
    assert!(
        signal
            .session(&ProtocolAddress::new(lid_name, 2))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn privacy_tokens_keep_the_newest_and_issuing_reports_the_last_time() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let creds = futures_accounts(&store, 2).await;
    let contact = Jid::new("123456789012345", Server::Lid);
    assert_eq!(creds[0].privacy_token(&contact).await.unwrap(), None);
    creds[0]
        .set_privacy_token(&contact, b"new", 200)
        .await
        .unwrap();
    // A late, older token does not replace the newer one.
    creds[0]
        .set_privacy_token(&contact, b"old", 100)
        .await
        .unwrap();
    assert_eq!(
        creds[0].privacy_token(&contact).await.unwrap(),
        Some((b"new".to_vec(), 200))
    );
    assert_eq!(
        creds[1].privacy_token(&contact).await.unwrap(),
        None,
        "per account"
    );
    assert_eq!(
        creds[0].set_token_issued(&contact, 300).await.unwrap(),
        None
    );
    assert_eq!(
        creds[0].set_token_issued(&contact, 400).await.unwrap(),
        Some(300)
    );
    // Issuing ours leaves theirs alone.
    assert_eq!(
        creds[0].privacy_token(&contact).await.unwrap(),
        Some((b"new".to_vec(), 200))
    );
}

#[tokio::test]
async fn concurrent_read_then_write_units_of_many_accounts_never_fail_busy() {
    // Each of these reads before it writes; under WAL a deferred transaction doing so fails
    // with SQLITE_BUSY_SNAPSHOT when another connection commits in between.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wa.db").display());
    let store = Store::open(&url).await.unwrap();
    let accounts = futures_accounts(&store, 8).await;
    let mut tasks = Vec::new();
    for (n, creds) in accounts.iter().enumerate() {
        let creds = creds.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40u64 {
                let pn = format!("1555{n}{i:06}");
                let lid = format!("9{n}{i:013}");
                creds.learn_lid(&pn, &lid).await.unwrap();
                let contact = Jid::new(lid, Server::Lid);
                creds.set_token_issued(&contact, i).await.unwrap();
                let r = row(&format!("o{i}"), &contact, true, MessageStatus::Pending);
                creds
                    .commit_message(&SignalChanges::default(), &r)
                    .await
                    .unwrap();
                let u = StatusUpdate {
                    chat: contact,
                    id: format!("o{i}"),
                    device: None,
                    status: MessageStatus::ServerAck,
                    error: None,
                    t: i,
                };
                assert_eq!(
                    creds.update_status(&u).await.unwrap(),
                    Some(MessageStatus::ServerAck)
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for creds in &accounts {
        assert_eq!(creds.messages(None, 1000, 0).await.unwrap().len(), 40);
    }
}

#[tokio::test]
async fn group_state_reads_back_per_account_and_a_key_reset_unmarks_every_holder() {
    use wa_gateway::client::GroupStore;
    use wa_gateway::client::messages::GroupUpdate;
    use wa_gateway::signal::store::SenderKeyStore;
    use wa_gateway::signal::{SenderKeyName, SenderKeyRecord};
    use wa_gateway::stanza::group::{AddressingMode, GroupInfo, GroupParticipant};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wa.db").display());
    let store = Store::open(&url).await.unwrap();
    let accounts = futures_accounts(&store, 2).await;
    let (a, b) = (&accounts[0], &accounts[1]);
    let group = Jid::new("120363000000000777", Server::Group);
    let info = GroupInfo {
        jid: group.clone(),
        subject: "Ünïcode ✓".into(),
        subject_owner: None,
        subject_time: 5,
        creator: Some(Jid::new("15550001111", Server::User)),
        creation: 5,
        addressing: AddressingMode::Lid,
        participants: vec![GroupParticipant {
            jid: Jid::new("201234567890123", Server::Lid),
            phone_number: Some(Jid::new("15550001111", Server::User)),
            lid: None,
            admin: Some("superadmin".into()),
        }],
    };
    a.set_group(&info).await.unwrap();
    assert_eq!(a.group(&group).await.unwrap(), Some(info.clone()));
    assert_eq!(
        b.group(&group).await.unwrap(),
        None,
        "tenants never see each other's groups"
    );

    let devices = [
        Jid::with_device("201234567890123", 0, Server::Lid),
        Jid::with_device("201234567890123", 3, Server::Lid),
    ];
    a.mark_key_holders(&group, &devices).await.unwrap();
    a.mark_key_holders(&group, &devices[..1]).await.unwrap();
    let mut held = a.key_holders(&group).await.unwrap();
    held.sort();
    assert_eq!(held, devices.to_vec());
    a.forget_key_holder(&group, &devices[1]).await.unwrap();
    assert_eq!(a.key_holders(&group).await.unwrap(), devices[..1].to_vec());
    assert!(b.key_holders(&group).await.unwrap().is_empty());

    // A reset stores the new (empty) key and unmarks every holder in one unit.
    let name = SenderKeyName {
        group: group.to_string(),
        sender: ProtocolAddress::from_jid(&Jid::with_device("1", 7, Server::Lid)),
    };
    let mut record = SenderKeyRecord::new();
    record.distribution();
    a.signal().store_sender_key(&name, &record).await.unwrap();
    let reset = SignalChanges {
        sender_keys: vec![(name.clone(), SenderKeyRecord::new())],
        ..SignalChanges::default()
    };
    a.reset_group_key(&group, &reset).await.unwrap();
    assert!(a.key_holders(&group).await.unwrap().is_empty());
    assert!(
        a.signal()
            .sender_key(&name)
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );

    // Updates: a redelivered one is not stored twice; newest first, in the order told.
    let update = |id: &str, action: &str| GroupUpdate {
        group: group.clone(),
        id: id.into(),
        seq: 0,
        author: None,
        t: 9,
        action: action.into(),
        participants: devices.to_vec(),
        subject: None,
    };
    assert!(a.record_group_update(&update("n1", "add")).await.unwrap());
    assert!(!a.record_group_update(&update("n1", "add")).await.unwrap());
    assert!(
        a.record_group_update(&update("a0", "remove"))
            .await
            .unwrap()
    );
    let got = a.group_updates(&group, 10).await.unwrap();
    assert_eq!(got, vec![update("a0", "remove"), update("n1", "add")]);
    assert!(b.group_updates(&group, 10).await.unwrap().is_empty());
    store.close().await;
}

#[tokio::test]
async fn webhook_events_commit_with_what_they_announce_and_only_when_asked_for() {
    let key = StoreKey::generate();
    let store = Store::open_with("sqlite::memory:", Some(&key))
        .await
        .unwrap();
    let a = store.account("s", "with-hook").await.unwrap();
    let b = store.account("s", "without").await.unwrap();
    let (ca, cb) = (store.creds(a), store.creds(b));
    let chat = Jid::new("15550003333", Server::User);
    let count = async |account| {
        store
            .webhook_events(account, None, 500, 0)
            .await
            .unwrap()
            .len()
    };
    let none = SignalChanges::default();

    // No webhook yet: nothing is queued.
    ca.commit_message(&none, &row("in-0", &chat, false, MessageStatus::Received))
        .await
        .unwrap();
    assert_eq!(count(a).await, 0);

    let secret = b"a-webhook-secret-0123456789";
    store
        .set_webhook(
            a,
            "http://127.0.0.1:9/h",
            secret,
            &["message.received", "message.status"],
            None,
        )
        .await
        .unwrap();
    // The secret is sealed at rest like key material, and reads back whole.
    let raw: Vec<u8> = sqlx::query_scalar("SELECT secret FROM webhooks")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(!raw.windows(secret.len()).any(|w| w == secret));
    assert_eq!(
        store.webhook(a).await.unwrap().unwrap().secret.as_slice(),
        secret
    );
    assert!(!format!("{:?}", store.webhook(a).await.unwrap()).contains("a-webhook-secret"));

    // An inbound message: one event, pointing at its row; the same message again: none.
    let m1 = row("in-1", &chat, false, MessageStatus::Received);
    assert_eq!(
        ca.commit_message(&none, &m1).await.unwrap(),
        Committed::Inserted
    );
    assert_eq!(
        ca.commit_message(&none, &m1).await.unwrap(),
        Committed::Duplicate
    );
    let events = store.webhook_events(a, None, 500, 0).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "message.received");
    assert_eq!(events[0].chat, chat.to_string());
    let pk = events[0].message_pk.unwrap();
    let stored = store.messages_by_pks(&[pk, -1]).await.unwrap();
    assert_eq!(stored.len(), 1);
    let (stored, _) = &stored[&pk];
    assert_eq!(stored.id, "in-1");

    // Our own send is no inbound event; its climb is, each step once.
    let out = row("out-1", &chat, true, MessageStatus::Pending);
    ca.commit_message(&none, &out).await.unwrap();
    assert_eq!(count(a).await, 1);
    let step = |status| StatusUpdate {
        chat: chat.clone(),
        id: "out-1".into(),
        device: None,
        status,
        error: None,
        t: 1_700_000_200,
    };
    ca.update_status(&step(MessageStatus::ServerAck))
        .await
        .unwrap();
    ca.update_status(&step(MessageStatus::ServerAck))
        .await
        .unwrap();
    ca.update_status(&step(MessageStatus::Delivered))
        .await
        .unwrap();
    let statuses: Vec<Option<String>> = store
        .webhook_events(a, Some(wa_gateway::store::DeliveryState::Pending), 500, 0)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        statuses,
        [None, Some("server_ack".into()), Some("delivered".into())]
    );
    // Each chat's oldest waiting event is the one due.
    let due = store
        .claim_webhook_events(i64::MAX - 5, 10, 10, 0, &[])
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].kind, "message.received");
    // Many chats: one head each, but no more per account than asked; a held-back (leased)
    // head lets nothing of its chat pass.
    for n in 0..5 {
        let other = Jid::new(format!("1555000440{n}"), Server::User);
        ca.commit_message(
            &none,
            &row(&format!("c{n}"), &other, false, MessageStatus::Received),
        )
        .await
        .unwrap();
    }
    // (A lease of 0 leaves them due: claiming again sees the same heads.)
    let claim = async |per_account, skip: &[i64]| {
        store
            .claim_webhook_events(i64::MAX - 5, per_account, 100, 0, skip)
            .await
            .unwrap()
    };
    assert_eq!(claim(100, &[]).await.len(), 6);
    assert_eq!(claim(4, &[]).await.len(), 4);
    assert!(claim(100, &[a]).await.is_empty());
    // Leased far ahead, the chat's head holds its chat back; the other chats' heads go.
    store
        .claim_webhook_events(i64::MAX - 5, 1, 1, i64::MAX - 1, &[])
        .await
        .unwrap();
    let heads = claim(100, &[]).await;
    assert_eq!(heads.len(), 5);
    assert!(heads.iter().all(|e| e.chat != chat.to_string()));
    for e in store
        .webhook_events(a, Some(wa_gateway::store::DeliveryState::Pending), 500, 0)
        .await
        .unwrap()
    {
        if e.chat != chat.to_string() {
            store
                .webhook_attempts(&[wa_gateway::store::webhooks::Attempt {
                    pk: e.pk,
                    state: wa_gateway::store::DeliveryState::Delivered,
                    next_ms: 0,
                    http_status: Some(200),
                    error: None,
                    error_kind: None,
                    reply_ignored: None,
                }])
                .await
                .unwrap();
        }
    }
    // Delivered events are pruned after their time; waiting ones never are.
    assert_eq!(store.prune_webhook_events(0, 100).await.unwrap(), 0);
    // In bounded batches: 3 of the 5, then the other 2.
    assert_eq!(store.prune_webhook_events(i64::MAX, 3).await.unwrap(), 3);
    assert_eq!(store.prune_webhook_events(i64::MAX, 3).await.unwrap(), 2);
    assert_eq!(count(a).await, 3);

    // Connection changes are not asked for here; the other account has no webhook at all.
    store.open_connection(a, None, 1).await.unwrap();
    let up = wa_gateway::store::connections::ConnectionUpdate {
        state: Some(wa_gateway::store::ConnectionCode::Connected),
        ..Default::default()
    };
    store.update_connection(a, &up, 2).await.unwrap();
    assert_eq!(count(a).await, 3);
    cb.commit_message(&none, &row("in-b", &chat, false, MessageStatus::Received))
        .await
        .unwrap();
    assert_eq!(count(b).await, 0);

    // Asked for: a change is one event, the same status again none.
    store
        .set_webhook(
            a,
            "http://127.0.0.1:9/h",
            secret,
            &["connection.update"],
            None,
        )
        .await
        .unwrap();
    let down = wa_gateway::store::connections::ConnectionUpdate {
        state: Some(wa_gateway::store::ConnectionCode::Reconnecting),
        ..Default::default()
    };
    store.update_connection(a, &down, 3).await.unwrap();
    store.update_connection(a, &down, 4).await.unwrap();
    assert_eq!(count(a).await, 4);

    // One transaction: when the event cannot be written, the message is not stored either.
    store
        .set_webhook(
            a,
            "http://127.0.0.1:9/h",
            secret,
            &["message.received"],
            None,
        )
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON webhook_events BEGIN SELECT RAISE(ABORT, 'no'); END",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let m2 = row("in-2", &chat, false, MessageStatus::Received);
    assert!(ca.commit_message(&none, &m2).await.is_err());
    assert!(!ca.has_message(&chat, &chat, "in-2").await.unwrap());
}

/// A reaction, edit or revoke that arrives before its target is kept and applied when the
/// target comes, by the same rules: both stores (SQLite and memory) agree.
#[tokio::test]
async fn what_acts_on_a_message_before_it_arrives_applies_when_it_does() {
    use wa_gateway::client::MemoryCreds;
    use wa_gateway::client::content::Kind;
    let store = Store::open("sqlite::memory:").await.unwrap();
    let sql = futures_accounts(&store, 1).await.pop().unwrap();
    let memory = Arc::new(MemoryCreds::default());
    let chat = Jid::new("15550003333", Server::User);
    let carol = Jid::new("15550004444", Server::User);
    let act =
        |id: &str, kind: Kind, sender: &Jid, text: &str, target: &str, t: u64| StoredMessage {
            id: id.into(),
            chat: chat.clone(),
            sender: sender.clone(),
            timestamp: t,
            text: Some(text.into()),
            kind,
            target: Some(target.into()),
            ..StoredMessage::default()
        };
    let early = [
        act("r1", Kind::Reaction, &chat, "👍", "t1", 10),
        act("r2", Kind::Reaction, &carol, "😮", "t1", 11),
        // Carol's reaction removed again, later.
        act("r3", Kind::Reaction, &carol, "", "t1", 12),
        // Only the author edits: carol's is ignored, the author's applies.
        act("e1", Kind::Edit, &carol, "hijacked", "t1", 13),
        act("e2", Kind::Edit, &chat, "fixed", "t1", 14),
        act("x1", Kind::Revoke, &carol, "", "t2", 15),
    ];
    for m in &early {
        sql.commit_message(&SignalChanges::default(), m)
            .await
            .unwrap();
        memory
            .commit_message(&SignalChanges::default(), m)
            .await
            .unwrap();
    }
    for (id, text) in [("t1", "typo"), ("t2", "keep me")] {
        let target = StoredMessage {
            id: id.into(),
            chat: chat.clone(),
            sender: chat.clone(),
            timestamp: 5,
            text: Some(text.into()),
            ..StoredMessage::default()
        };
        sql.commit_message(&SignalChanges::default(), &target)
            .await
            .unwrap();
        memory
            .commit_message(&SignalChanges::default(), &target)
            .await
            .unwrap();
    }
    let sql_rows = sql.messages(Some(&chat), 100, 0).await.unwrap();
    let mem_rows = memory.messages(Some(&chat), 100, 0).await.unwrap();
    for rows in [&sql_rows, &mem_rows] {
        let t1 = rows.iter().find(|r| r.id == "t1").unwrap();
        assert_eq!(t1.text.as_deref(), Some("fixed"));
        assert_eq!(t1.edited_at, Some(14));
        let emoji: Vec<&str> = t1.reactions.iter().map(|r| r.emoji.as_str()).collect();
        assert_eq!(emoji, ["👍"], "carol's reaction was removed");
        let t2 = rows.iter().find(|r| r.id == "t2").unwrap();
        assert_eq!(
            t2.kind,
            Kind::Chat,
            "only its author (or an admin) deletes it"
        );
        // Listed: the two targets and the three reactions; not the edits or the revoke.
        let mut ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["r1", "r2", "r3", "t1", "t2"]);
    }
}

/// Every pooled connection commits as configured: FULL by default (a commit is on the disk
/// before a receipt says we have it), NORMAL only when asked.
#[tokio::test]
async fn every_connection_commits_with_the_configured_durability() {
    use wa_gateway::store::Durability;
    let dir = tempfile::tempdir().unwrap();
    for (name, durability, level) in [
        ("full", None, 2i64),
        ("normal", Some(Durability::Normal), 1),
        ("explicit", Some(Durability::Full), 2),
    ] {
        let url = format!(
            "sqlite://{}",
            dir.path().join(format!("{name}.db")).display()
        );
        let store = match durability {
            None => Store::open(&url).await.unwrap(),
            Some(d) => Store::open_tuned(&url, None, d).await.unwrap(),
        };
        // Hold several connections at once so the pool opens each one.
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut c = store.pool().acquire().await.unwrap();
            let got: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *c)
                .await
                .unwrap();
            assert_eq!(got, level, "{name}");
            held.push(c);
        }
        drop(held);
        store.close().await;
    }
}

/// A disconnect finds a queued send whose message WhatsApp already acked (a crash came between
/// the ack and the outbox's `done`): it was sent, so it ends `done` with the message's status,
/// with no `cancelled` event; the one never sent is cancelled.
#[tokio::test]
async fn a_disconnect_ends_an_acked_but_unfinished_send_done_not_cancelled() {
    use wa_gateway::store::OutboxState;
    use wa_gateway::store::outbox::NewSend;
    let store = Store::open("sqlite::memory:").await.unwrap();
    let creds = futures_accounts(&store, 1).await.pop().unwrap();
    let account = store.account("sub", "agent-0").await.unwrap();
    store
        .set_webhook(
            account,
            "http://127.0.0.1:9/h",
            b"0123456789abcdef0123",
            &["message.status"],
            None,
        )
        .await
        .unwrap();
    let bob = Jid::new("15550007777", Server::User);
    let send = |id: &'static str| NewSend {
        idem_key: None,
        message_id: id,
        to: "15550007777@s.whatsapp.net",
        body: "hello",
        user_id: None,
        now_ms: 1,
        media: None,
    };
    let (acked, _) = store.enqueue_send(account, &send("ACKED")).await.unwrap();
    let (waiting, _) = store.enqueue_send(account, &send("WAITING")).await.unwrap();
    creds
        .commit_message(
            &SignalChanges::default(),
            &row("ACKED", &bob, true, MessageStatus::ServerAck),
        )
        .await
        .unwrap();

    let c = store.cancel_sends(account).await.unwrap();
    assert_eq!(
        (c.sent.clone(), c.sends.clone()),
        (vec![acked.pk], vec![waiting.pk])
    );
    let acked = store.send_row(acked.pk).await.unwrap().unwrap();
    assert_eq!(acked.state, OutboxState::Done);
    let result: serde_json::Value = serde_json::from_str(acked.result.as_deref().unwrap()).unwrap();
    assert_eq!(
        result["status"],
        serde_json::json!(MessageStatus::ServerAck.as_str())
    );
    assert!(
        result["messageId"].as_str().unwrap().ends_with("_ACKED"),
        "{result}"
    );
    assert_eq!(
        store.send_row(waiting.pk).await.unwrap().unwrap().state,
        OutboxState::Cancelled
    );
    let events = store.webhook_events(account, None, 50, 0).await.unwrap();
    let cancelled: Vec<_> = events
        .iter()
        .filter(|e| e.status.as_deref() == Some("cancelled"))
        .map(|e| e.data.clone().unwrap_or_default())
        .collect();
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    assert!(cancelled[0].contains("WAITING"), "{cancelled:?}");
}

/// A database from before message kinds: its rows are classified at the next open, and an old
/// reaction (kept then as a text row) lands on its message as one arriving now would.
#[tokio::test]
async fn rows_from_before_message_kinds_are_classified_and_old_reactions_applied() {
    use prost::Message as _;
    use wa_gateway::proto::wa;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let store = Store::open(&url).await.unwrap();
    let account = store.account("sub", "agent").await.unwrap();
    let text = wa::Message {
        conversation: Some("hello".into()),
        ..Default::default()
    };
    let reaction = wa::Message {
        reaction_message: Some(wa::ReactionMessage {
            key: Some(wa::MessageKey {
                remote_jid: Some("15550001111@s.whatsapp.net".into()),
                from_me: Some(false),
                id: Some("OLDTEXT".into()),
                participant: None,
            }),
            text: Some("👍".into()),
            grouping_key: None,
            sender_timestamp_ms: Some(1_700_000_001_000),
        }),
        ..Default::default()
    };
    for (id, raw, ts) in [
        ("OLDTEXT", text.encode_to_vec(), 1_700_000_000i64),
        ("OLDREACT", reaction.encode_to_vec(), 1_700_000_001),
    ] {
        // As the old decoder stored them: type chat, no content, no text for the reaction.
        sqlx::query(
            "INSERT INTO messages (account_id, chat, sender, id, from_me, ts, body, raw, status, \
             content) VALUES (?, '15550001111@s.whatsapp.net', '15550001111@s.whatsapp.net', ?, \
             0, ?, NULL, ?, 'received', NULL)",
        )
        .bind(account)
        .bind(id)
        .bind(ts)
        .bind(raw)
        .execute(store.pool())
        .await
        .unwrap();
    }
    sqlx::query("DELETE FROM store_meta WHERE name = 'message_kinds_backfilled'")
        .execute(store.pool())
        .await
        .unwrap();
    drop(store);

    let store = Store::open(&url).await.unwrap();
    let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT id, type, body, reactions FROM messages WHERE account_id = ? ORDER BY pk",
    )
    .bind(account)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        (rows[0].1.as_str(), rows[0].2.as_deref()),
        ("chat", Some("hello"))
    );
    assert_eq!(rows[1].1, "reaction");
    let reactions: serde_json::Value =
        serde_json::from_str(rows[0].3.as_deref().expect("the reaction landed")).unwrap();
    assert!(reactions.to_string().contains("👍"), "{reactions}");
}

#[tokio::test]
async fn many_lid_pairs_are_learned_in_one_unit_moving_each_chat() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let creds = futures_accounts(&store, 1).await.pop().unwrap();
    let pairs: Vec<(String, String)> = (0..300)
        .map(|i| (format!("1555100{i:04}"), format!("9000000{i:04}")))
        .collect();
    for (pn, _) in &pairs {
        let chat = Jid::new(pn.clone(), Server::User);
        creds
            .commit_message(
                &SignalChanges::default(),
                &row(&format!("in-{pn}"), &chat, false, MessageStatus::Received),
            )
            .await
            .unwrap();
    }
    // One pair the store refuses (as a crash midway would): nothing of the batch lands.
    let bad = &pairs[150].0;
    sqlx::query(&format!(
        "CREATE TRIGGER refuse BEFORE INSERT ON lid_map WHEN NEW.pn = '{bad}' \
         BEGIN SELECT RAISE(ABORT, 'simulated crash'); END"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    assert!(creds.learn_lids(&pairs).await.is_err());
    for (pn, _) in [&pairs[0], &pairs[299]] {
        assert_eq!(creds.lid_for(pn).await.unwrap(), None, "{pn}: one unit");
    }
    sqlx::query("DROP TRIGGER refuse")
        .execute(store.pool())
        .await
        .unwrap();
    creds.learn_lids(&pairs).await.unwrap();
    for (pn, lid) in &pairs {
        assert_eq!(
            creds.lid_for(pn).await.unwrap().as_deref(),
            Some(lid.as_str())
        );
        // The conversation moved to the LID as `learn_lid` moves it.
        let lid_chat = Jid::new(lid.clone(), Server::Lid);
        let moved = creds.messages(Some(&lid_chat), 10, 0).await.unwrap();
        assert_eq!(moved.len(), 1, "{pn}'s message under its LID");
        assert_eq!(moved[0].sender, lid_chat);
    }
}
