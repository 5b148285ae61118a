//! History sync end to end (issue 23): the simulated phone's seeded history reaches a newly
//! linked companion as downloadable chunks; chats, contacts and history rows land in the store
//! (never announced as received); on-demand backfill brings older messages; a broken chunk is
//! refused with an event while the session goes on; a large history ingests whole.

use std::time::Duration;

use serde_json::json;
use wa_gateway::binary::{Jid, Server};
use wa_gateway::client::ConnState;
use wa_gateway::client::content::Kind;
use wa_gateway::client::history_store::PendingHistoryStore;
use wa_gateway::client::store::AccountStore;
use wa_gateway::client::{
    ChatChange, ContactChange, CredsStore, Event, HistoryBatch, MessageStatus, StoredMessage,
};
use wa_gateway::signal::SignalChanges;
use wa_gateway::sim::{CdnFault, HistoryFault, HistorySeed, Simulator, seeded_contact};

use super::messaging::{account, eventually, link, next_event, user};
use super::rest::{Server as Gateway, call, token};

const LIMIT: Duration = Duration::from_secs(120);

fn seed(chats: usize, messages: usize, recent: Option<usize>) -> HistorySeed {
    HistorySeed {
        chats,
        messages,
        recent,
        fault: None,
    }
}

fn lid(i: usize) -> Jid {
    Jid::new(seeded_contact(i).1, Server::Lid)
}

async fn count_rows(store: &wa_gateway::store::Store, history: bool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE history = ?")
        .bind(history)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn history_rows_dedupe_against_live_rows_raise_no_event_and_follow_the_lid() {
    let a = account().await;
    let id = a.store.account("sub", "agent").await.unwrap();
    a.store
        .set_webhook(
            id,
            "http://127.0.0.1:9/h",
            b"a-webhook-secret-0123456789",
            &["message.received"],
            None,
        )
        .await
        .unwrap();
    let pn = Jid::new("4915550001", Server::User);
    let row = |id: &str, t: u64| StoredMessage {
        id: id.into(),
        chat: pn.clone(),
        sender: pn.clone(),
        timestamp: t,
        text: Some(format!("text {id}")),
        raw: vec![1],
        status: MessageStatus::Received,
        ..StoredMessage::default()
    };
    // A live message, then a history chunk that holds it and an older one.
    a.creds
        .commit_message(&SignalChanges::default(), &row("live", 200))
        .await
        .unwrap();
    let batch = HistoryBatch {
        chats: vec![ChatChange {
            chat: pn.clone(),
            archived: Some(true),
            unread_count: Some(2),
            read_ts: Some(Some(150)),
            ..Default::default()
        }],
        contacts: vec![ContactChange {
            jid: pn.clone(),
            push_name: Some("Ann".into()),
            ..Default::default()
        }],
        messages: vec![row("live", 200), row("old", 100)],
        ..Default::default()
    };
    assert_eq!(
        a.creds.store_history(&batch).await.unwrap(),
        1,
        "the live row is not stored twice"
    );
    assert_eq!(a.creds.messages(Some(&pn), 10, 0).await.unwrap().len(), 2);
    let events = a.store.webhook_events(id, None, 100, 0).await.unwrap();
    assert_eq!(events.len(), 1, "only the live message is announced");
    assert_eq!(count_rows(&a.store, true).await, 1);

    let chats = a.creds.chats(10, 0).await.unwrap();
    assert_eq!(chats.len(), 1);
    let c = &chats[0];
    assert!(c.archived);
    // The phone's 2, plus the live inbound message after the read marker (the history one
    // before it is covered by the phone's count).
    assert_eq!(c.unread_count, 3);
    assert_eq!(c.name.as_deref(), Some("Ann"));
    assert_eq!(c.last_message.as_ref().unwrap().id, "live");

    // Learning the LID moves the chat and the contact with the messages.
    a.creds.learn_lid("4915550001", "777").await.unwrap();
    let lid = Jid::new("777", Server::Lid);
    let chats = a.creds.chats(10, 0).await.unwrap();
    assert_eq!(chats.len(), 1);
    assert_eq!(chats[0].chat, lid);
    assert_eq!(chats[0].pn.as_ref(), Some(&pn));
    assert!(chats[0].archived, "the chat's state moved with it");
    let c = a
        .creds
        .contact(&pn)
        .await
        .unwrap()
        .expect("found by its number");
    assert_eq!(c.jid, lid);
    assert_eq!(c.lid.as_ref(), Some(&lid));
    assert_eq!(c.push_name.as_deref(), Some("Ann"));
}

#[tokio::test]
async fn a_linked_companion_gets_the_phones_chats_contacts_and_history_and_backfills_on_demand() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let me = "15550101000";
        sim.seed_history(me, &seed(4, 30, Some(20))).unwrap();
        let id = a.store.account("sub", "agent").await.unwrap();
        a.store
            .set_webhook(
                id,
                "http://127.0.0.1:9/h",
                b"a-webhook-secret-0123456789",
                &["message.received"],
                None,
            )
            .await
            .unwrap();
        let (client, mut events, _) = link(&sim, &a, me).await;
        let report = match next_event(
            &mut events,
            |e| matches!(e, Event::HistorySync(r) if r.conversations > 0),
        )
        .await
        {
            Event::HistorySync(r) => r,
            _ => unreachable!(),
        };
        assert_eq!(report.sync_type, Some(3), "RECENT");
        assert_eq!(report.conversations, 4);
        assert_eq!(report.messages, 80);
        assert_eq!(report.stored, 80);
        assert_eq!(report.push_names, 4);
        assert_eq!(report.mappings, 4);
        assert_eq!(report.contacts, 4);

        let chats = client.chats(50, 0).await.unwrap();
        assert_eq!(chats.len(), 4);
        // Pinned first.
        assert_eq!(chats[0].chat, lid(1));
        assert!(chats[0].pinned.is_some());
        let by = |i: usize| chats.iter().find(|c| c.chat == lid(i)).unwrap();
        assert!(by(0).archived && !by(1).archived);
        assert!(by(2).muted_until.is_some_and(|m| m > 0));
        assert_eq!(by(3).unread_count, 3);
        assert!(by(3).marked_unread);
        for i in 0..4 {
            let c = by(i);
            assert_eq!(c.pn, Some(Jid::new(seeded_contact(i).0, Server::User)));
            assert_eq!(c.name.as_deref(), Some(format!("Contact {i}").as_str()));
            let last = c.last_message.as_ref().unwrap();
            assert_eq!(
                last.preview.as_deref(),
                Some(format!("history {i}/29").as_str())
            );
            assert!(last.from_me, "message 29 is odd: ours");
        }
        let contacts = client.contacts(50, 0).await.unwrap();
        let c0 = contacts.iter().find(|c| c.lid == Some(lid(0))).unwrap();
        assert_eq!(c0.full_name.as_deref(), Some("Contact 0"));
        assert_eq!(c0.push_name.as_deref(), Some("Push 0"));
        assert_eq!(c0.pn, Some(Jid::new(seeded_contact(0).0, Server::User)));
        assert_eq!(c0.on_whatsapp, Some(true));
        // History rows: stored, never announced.
        assert_eq!(count_rows(&a.store, true).await, 80);
        assert!(
            a.store
                .webhook_events(id, None, 500, 0)
                .await
                .unwrap()
                .is_empty()
        );
        let rows = a.creds.messages(Some(&lid(1)), 100, 0).await.unwrap();
        assert_eq!(rows.len(), 20);
        assert!(
            rows.iter()
                .all(|m| !m.from_me || m.status == MessageStatus::Read)
        );

        // On demand: the 10 older messages of chat 0, its image among them.
        let pn0 = Jid::new(seeded_contact(0).0, Server::User);
        client.request_history(&pn0, 50).await.unwrap();
        let report = match next_event(
            &mut events,
            |e| matches!(e, Event::HistorySync(r) if r.sync_type == Some(6)),
        )
        .await
        {
            Event::HistorySync(r) => r,
            _ => unreachable!(),
        };
        assert_eq!(report.stored, 10);
        let rows = a.creds.messages(Some(&lid(0)), 100, 0).await.unwrap();
        assert_eq!(rows.len(), 30);
        let image = rows.iter().find(|m| m.id == "H00000X000000").unwrap();
        assert_eq!(image.kind, Kind::Image);
        assert_eq!(image.text.as_deref(), Some("a photo from the history"));
        assert!(
            a.store
                .webhook_events(id, None, 500, 0)
                .await
                .unwrap()
                .is_empty()
        );

        // A live message in a history chat is announced as usual.
        let bob = "15550102000";
        sim.phone_send(bob, me, "live hello").await.unwrap();
        eventually("the live message", async || {
            let n = a
                .creds
                .messages(
                    Some(&super::messaging::canonical(&a.creds, &user(bob)).await),
                    10,
                    0,
                )
                .await
                .unwrap()
                .len();
            (n == 1).then_some(())
        })
        .await;
        assert_eq!(
            a.store
                .webhook_events(id, None, 500, 0)
                .await
                .unwrap()
                .len(),
            1
        );
        client.shutdown().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_broken_history_chunk_is_refused_with_an_event_and_the_session_goes_on() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        for (me, fault, why) in [
            ("15550201000", HistoryFault::BadZlib, "inflate"),
            ("15550202000", HistoryFault::WrongHash, "download"),
        ] {
            let a = account().await;
            let mut s = seed(3, 10, None);
            s.fault = Some(fault);
            sim.seed_history(me, &s).unwrap();
            let (client, mut events, _) = link(&sim, &a, me).await;
            let e = next_event(&mut events, |e| {
                matches!(e, Event::HistorySyncFailed { .. })
            })
            .await;
            let Event::HistorySyncFailed { reason, .. } = e else {
                unreachable!()
            };
            assert!(reason.contains(why), "{fault:?}: {reason}");
            next_event(&mut events, |e| matches!(e, Event::HistorySyncIdle { .. })).await;
            assert_eq!(count_rows(&a.store, true).await, 0, "nothing stored");
            assert!(client.chats(50, 0).await.unwrap().is_empty());
            // The session still works.
            sim.set_devices("15550203000", 1).unwrap();
            let sent = client
                .send_text(&user("15550203000"), "still here")
                .await
                .unwrap();
            assert_eq!(sent.status, MessageStatus::ServerAck);
            client.shutdown().await;
        }
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_large_history_ingests_whole_in_several_chunks() {
    tokio::time::timeout(Duration::from_secs(600), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let me = "15550301000";
        // 20 chats × 1,000 messages: four downloadable chunks of 5,000.
        sim.seed_history(me, &seed(20, 1_000, None)).unwrap();
        let (client, mut events, _) = link(&sim, &a, me).await;
        let mut stored = 0;
        let mut chunks = 0;
        while chunks < 4 {
            if let Event::HistorySync(r) = next_event(&mut events, |e| {
                matches!(e, Event::HistorySync(r) if r.sync_type == Some(2))
                    || matches!(e, Event::HistorySyncFailed { .. })
            })
            .await
            {
                stored += r.stored;
                chunks += 1;
            } else {
                panic!("a chunk failed");
            }
        }
        assert_eq!(stored, 20_000);
        assert_eq!(count_rows(&a.store, true).await, 20_000);
        assert_eq!(client.chats(100, 0).await.unwrap().len(), 20);
        client.shutdown().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn rest_lists_chats_contacts_and_a_chats_messages_and_asks_for_more_history() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Gateway::start_opts(&sim, &db, Default::default()).await;
        let http = reqwest::Client::new();
        let tok = token(wa_gateway::api::Role::Admin, &["sub"], 3600);
        let base = format!("{}/api/whatsapp/sub/agent", server.url);
        let me = "15550401000";
        sim.seed_history(me, &seed(3, 30, Some(20))).unwrap();
        super::rest::link(&sim, &http, &tok, &base, me).await;
        let get = async |path: &str| {
            call(
                &http,
                reqwest::Method::GET,
                &format!("{base}{path}"),
                Some(&tok),
                None,
            )
            .await
        };
        let chats = eventually("the chats", async || {
            let (code, v) = get("/chats").await;
            assert_eq!(code, 200, "{v}");
            (v["data"]["count"] == json!(3)).then_some(v)
        })
        .await;
        let list = chats["data"]["chats"].as_array().unwrap();
        let (pn1, lid1) = seeded_contact(1);
        assert_eq!(list[0]["id"], json!(format!("{pn1}@c.us")), "pinned first");
        assert_eq!(list[0]["pn"], json!(format!("{pn1}@c.us")));
        assert_eq!(list[0]["lid"], json!(format!("{lid1}@lid")));
        assert!(list[0]["pinned"].is_string());
        assert_eq!(list[0]["name"], json!("Contact 1"));
        assert_eq!(list[0]["lastMessage"]["body"], json!("history 1/29"));
        let (pn0, _) = seeded_contact(0);
        let c0 = list
            .iter()
            .find(|c| c["id"] == json!(format!("{pn0}@c.us")))
            .unwrap();
        assert_eq!(c0["archived"], json!(true));
        let c2 = list
            .iter()
            .find(|c| c["id"] == json!(format!("{}@c.us", seeded_contact(2).0)))
            .unwrap();
        assert!(c2["mutedUntil"].is_string());

        let (code, v) = get("/contacts").await;
        assert_eq!(code, 200, "{v}");
        let contacts = v["data"]["contacts"].as_array().unwrap();
        assert!(contacts.iter().any(|c| c["fullName"] == json!("Contact 0")
            && c["pn"] == json!(format!("{pn0}@c.us"))
            && c["lid"] == json!(format!("{}@lid", seeded_contact(0).1))));
        let (code, v) = get(&format!("/contacts/{pn1}@c.us")).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["data"]["pushName"], json!("Push 1"));
        assert_eq!(v["data"]["lid"], json!(format!("{lid1}@lid")));
        let (code, v) = get(&format!("/contacts/{lid1}@lid")).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["data"]["pn"], json!(format!("{pn1}@c.us")));
        let (code, v) = get("/contacts/15559999999@c.us").await;
        assert_eq!(code, 404, "{v}");

        let (code, v) = get(&format!("/chats/{pn0}@c.us/messages?limit=100")).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["data"]["count"], json!(20));
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/chats/{pn0}@c.us/history?count=5"),
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(code, 202, "{v}");
        assert_eq!(v["data"]["count"], json!(5));
        eventually("the older messages", async || {
            let (_, v) = get(&format!("/chats/{pn0}@c.us/messages?limit=100")).await;
            (v["data"]["count"] == json!(25)).then_some(())
        })
        .await;
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/chats/not-a-chat/history"),
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(code, 400, "{v}");
    })
    .await
    .expect("in time");
}

/// The ids of the receipts of type `kind` companion `jid` sent the simulator, in order.
fn receipts_of(sim: &Simulator, jid: &Jid, kind: &str) -> Vec<String> {
    sim.receipts(jid)
        .into_iter()
        .filter(|r| r.1.as_deref() == Some(kind))
        .map(|r| r.0)
        .collect()
}

#[tokio::test]
async fn a_chunk_is_acknowledged_to_the_phone_only_once_it_is_stored() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        // The store refuses every history row (a store error: the chunk is kept and tried
        // again later, never acknowledged before it is stored).
        let a = account().await;
        sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.history = 1 \
             BEGIN SELECT RAISE(ABORT, 'simulated store failure'); END",
        )
        .execute(a.store.pool())
        .await
        .unwrap();
        let me = "15550401000";
        sim.seed_history(me, &seed(2, 5, None)).unwrap();
        let (client, mut events, jid) = link(&sim, &a, me).await;
        let mut failed = Vec::new();
        loop {
            match next_event(&mut events, |e| {
                matches!(
                    e,
                    Event::HistorySyncFailed { .. } | Event::HistorySyncIdle { .. }
                )
            })
            .await
            {
                Event::HistorySyncFailed { will_retry, .. } => failed.push(will_retry),
                _ if !failed.is_empty() => break,
                _ => {}
            }
        }
        assert_eq!(failed, [true], "a store error is a passing failure");
        // The phone sent the inline bootstrap (no history rows: stored) and one chunk.
        let sent = sim.history_sent(&jid);
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!(sent[0].sync_type, Some(0), "the bootstrap first");
        let (bootstrap, chunk) = (sent[0].id.clone(), sent[1].id.clone());
        // Both messages were acknowledged (their delivery receipts)…
        eventually("both notifications receipted as delivered", async || {
            let delivered = receipts_of(&sim, &jid, "peer_msg");
            (delivered.contains(&bootstrap) && delivered.contains(&chunk)).then_some(())
        })
        .await;
        // …but only the stored one's hist_sync receipt went out, naming its message.
        assert_eq!(
            receipts_of(&sim, &jid, "hist_sync"),
            std::slice::from_ref(&bootstrap),
            "{:?}",
            sim.receipts(&jid)
        );
        // The refused chunk is still kept for the next attempt.
        let kept = a.creds.next_history(0).await.unwrap().expect("kept");
        assert_eq!(kept.id, chunk);
        assert_eq!(kept.attempts, 1);
        assert!(a.creds.history_receipts_due().await.unwrap().is_empty());
        client.shutdown().await;

        // Stored: each notification's own hist_sync receipt, and nothing kept after.
        let b = account().await;
        let me = "15550402000";
        sim.seed_history(me, &seed(2, 5, None)).unwrap();
        let (client, _events, jid) = link(&sim, &b, me).await;
        let sent = eventually("the bootstrap and the chunk sent", async || {
            let sent = sim.history_sent(&jid);
            (sent.len() == 2).then_some(sent)
        })
        .await;
        let ids: Vec<String> = sent.iter().map(|s| s.id.clone()).collect();
        eventually("a hist_sync receipt naming each notification", async || {
            (receipts_of(&sim, &jid, "hist_sync") == ids).then_some(())
        })
        .await;
        assert_eq!(count_rows(&b.store, true).await, 10);
        eventually("the receipted notifications forgotten", async || {
            (b.creds.next_history(0).await.unwrap().is_none()
                && b.creds.history_receipts_due().await.unwrap().is_empty())
            .then_some(())
        })
        .await;
        client.shutdown().await;
    })
    .await
    .expect("in time");
}

/// Chunks that fail for the moment rest until the next round: the notifications that keep
/// arriving meanwhile neither retry them (using up their attempts in seconds) nor wait behind
/// them.
#[tokio::test]
async fn a_failing_chunk_rests_while_the_next_ones_are_tried() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.history = 1 \
             BEGIN SELECT RAISE(ABORT, 'simulated store failure'); END",
        )
        .execute(a.store.pool())
        .await
        .unwrap();
        let me = "15550403000";
        // Several downloadable chunks, one notification each.
        sim.seed_history(me, &seed(4, 4_000, None)).unwrap();
        let (client, _events, jid) = link(&sim, &a, me).await;
        // The bootstrap is stored (it holds no history rows); every chunk after it fails,
        // each once: all are tried, none waits behind the first.
        let attempts = async || {
            let mut after = 0;
            let mut kept = Vec::new();
            while let Some(r) = a.creds.next_history(after).await.unwrap() {
                after = r.seq;
                kept.push(r.attempts);
            }
            kept
        };
        let kept = eventually("every chunk tried", async || {
            let chunks = sim.history_sent(&jid).len().saturating_sub(1);
            let kept = attempts().await;
            (chunks > 2 && kept.len() == chunks && kept.iter().all(|&n| n > 0)).then_some(kept)
        })
        .await;
        // Each notification after the first woke the worker: none retried a resting chunk.
        assert_eq!(kept, vec![1; kept.len()], "one attempt each");
        client.shutdown().await;
    })
    .await
    .expect("in time");
}

/// A chunk stored while no connection is up (the client was stopped mid-download): its
/// hist_sync receipt is due in the store and goes out on the next connection, then the row
/// goes.
#[tokio::test]
async fn a_receipt_due_while_no_connection_is_up_goes_out_at_the_next_connection() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let me = "15550403000";
        sim.seed_history(me, &seed(4, 400, None)).unwrap();
        // A slow CDN holds the chunk's download open while the client stops.
        sim.cdn_fault(&CdnFault::SlowTransfers(Some(8_000)));
        let (client, _events, jid) = link(&sim, &a, me).await;
        // The inline bootstrap is stored and receipted on the connection first.
        let bootstrap = eventually("the bootstrap receipted", async || {
            let sent = sim.history_sent(&jid);
            let first = sent.first()?.id.clone();
            receipts_of(&sim, &jid, "hist_sync")
                .contains(&first)
                .then_some(first)
        })
        .await;
        eventually("the chunk's download under way", async || {
            sim.cdn_transfers()
                .iter()
                .any(|t| t.direction == "download" && t.bytes > 0)
                .then_some(())
        })
        .await;
        client.shutdown().await;
        eventually("no connection up", async || {
            (!sim.connected(&jid)).then_some(())
        })
        .await;
        sim.cdn_fault(&CdnFault::SlowTransfers(None));
        let sent = sim.history_sent(&jid);
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!(sent[0].id, bootstrap);
        let chunk = sent[1].id.clone();
        // The worker finishes the chunk with no connection: its receipt is due.
        eventually("the chunk stored, its receipt due", async || {
            (due(&a).await == [chunk.clone()]).then_some(())
        })
        .await;
        assert_eq!(count_rows(&a.store, true).await, 1_600);
        assert!(
            !receipts_of(&sim, &jid, "hist_sync").contains(&chunk),
            "not sent: no connection was up"
        );
        drop(client);
        // The next connection sends it, and the row goes.
        let (client, _events) =
            wa_gateway::client::Client::start(super::messaging::options(&sim), a.creds.clone());
        client.wait_for(|s| *s == ConnState::Connected).await;
        eventually("the due receipt sent", async || {
            receipts_of(&sim, &jid, "hist_sync")
                .contains(&chunk)
                .then_some(())
        })
        .await;
        eventually("the row forgotten", async || {
            due(&a).await.is_empty().then_some(())
        })
        .await;
        assert!(a.creds.next_history(0).await.unwrap().is_none());
        assert_eq!(
            receipts_of(&sim, &jid, "hist_sync")
                .iter()
                .filter(|id| **id == chunk)
                .count(),
            1,
            "sent once"
        );
        client.shutdown().await;
    })
    .await
    .expect("in time");
}

/// The ids whose hist_sync receipt is due in `a`'s store.
async fn due(a: &super::messaging::Account) -> Vec<String> {
    a.creds.history_receipts_due().await.unwrap()
}
