//! 1:1 messaging end to end against the simulator over loopback: our client and simulated users
//! (real Signal peers with several devices) exchange texts; rows, receipts, retries, offline
//! delivery and crashes are checked from both sides (our store and the simulated users' inboxes).

use std::sync::Arc;
use std::time::Duration;

use wa_gateway::binary::{Jid, Server};
use wa_gateway::client::reconnect::Backoff;
use wa_gateway::client::{
    Client, ClientOptions, ConnState, CredsStore, Event, Events, Keepalive, MessageStatus,
    StoredMessage,
};
use wa_gateway::sim::Simulator;
use wa_gateway::sim::server::Fault;
use wa_gateway::socket::framing::MAX_FRAME;
use wa_gateway::socket::{ClientConfig, TrustRoot};
use wa_gateway::store::{SqliteCreds, Store};
use wa_gateway::util::clock::SystemClock;

const LIMIT: Duration = Duration::from_secs(60);

fn options(sim: &Simulator) -> ClientOptions {
    ClientOptions {
        socket: ClientConfig {
            url: sim.ws_url().to_owned(),
            trust: TrustRoot::from_key(sim.root_public_key()),
            clock: Arc::new(SystemClock),
            max_frame: MAX_FRAME,
            tls: None,
        },
        profile: Default::default(),
        backoff: Backoff::new(
            Duration::from_millis(50),
            Duration::from_millis(500),
            Duration::from_millis(500),
            Duration::from_secs(60),
        ),
        keepalive: Keepalive::default(),
        messaging: Default::default(),
    }
}

/// An account in its own SQLite file.
struct Account {
    _dir: tempfile::TempDir,
    store: Store,
    creds: Arc<SqliteCreds>,
}

async fn account() -> Account {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wa.db").display());
    let store = Store::open(&url).await.unwrap();
    let id = store.account("sub", "agent").await.unwrap();
    let creds = Arc::new(store.creds(id));
    Account {
        _dir: dir,
        store,
        creds,
    }
}

async fn next_event(rx: &mut Events, pred: impl Fn(&Event) -> bool) -> Event {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("event in time")
            .expect("client alive");
        if pred(&e) {
            return e;
        }
    }
}

/// Links a new client of `acct` as a companion of `number`'s phone; returns it connected.
async fn link(sim: &Simulator, acct: &Account, number: &str) -> (Client, Events, Jid) {
    let (mut client, mut events) = Client::start(options(sim), acct.creds.clone());
    let Event::QrCode { code, .. } =
        next_event(&mut events, |e| matches!(e, Event::QrCode { .. })).await
    else {
        unreachable!()
    };
    let jid = sim.scan(number, &code, Some("Me"), None).await.unwrap();
    client.wait_for(|s| *s == ConnState::Connected).await;
    // Reachable once its keys are on the server.
    eventually("the prekey upload", async || {
        (sim.uploaded_pre_keys(&jid) > 0).then_some(())
    })
    .await;
    (client, events, jid)
}

/// Polls `f` until it returns Some (or the test's time runs out).
async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn user(number: &str) -> Jid {
    Jid::new(number, Server::User)
}

async fn stored(creds: &SqliteCreds, chat: &Jid) -> Vec<StoredMessage> {
    creds.messages(Some(chat), 1000, 0).await.unwrap()
}

#[tokio::test]
async fn a_text_reaches_both_devices_of_a_user_and_the_reply_is_stored_and_receipted() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (a, a2) = (account().await, account().await);
        let (me, bob) = ("15550001000", "15550002000");
        let (client, mut events, our_jid) = link(&sim, &a, me).await;
        // A second companion of the same account: it must get the copy of what we send.
        let (_client2, mut events2, _) = link(&sim, &a2, me).await;

        let text = format!("héllo 👋 — {}", "ß∑".repeat(1000));
        assert!(text.len() > 4000);
        let sent = client.send_text(&user(bob), &text).await.unwrap();
        assert_eq!(sent.status, MessageStatus::ServerAck);
        assert_eq!(sent.id.len(), 22);

        // Both of bob's devices (phone and companion) decrypted the exact text.
        let got = eventually("bob's devices to decrypt", async || {
            sim.phone_messages(bob)
                .into_iter()
                .find(|m| m.id == sent.id && m.devices == 2)
        })
        .await;
        assert_eq!(got.text.as_deref(), Some(text.as_str()));
        assert_eq!(got.from, format!("{me}@s.whatsapp.net"));

        // Our other companion got the DeviceSentMessage copy, as outbound to bob.
        let Event::Message(copy) = next_event(&mut events2, |e| {
            matches!(e, Event::Message(m) if m.id == sent.id)
        })
        .await
        else {
            unreachable!()
        };
        assert!(copy.from_me);
        assert_eq!(copy.chat, user(bob));
        assert_eq!(copy.text.as_deref(), Some(text.as_str()));

        // The ladder: bob's devices receipted it.
        next_event(&mut events, |e| {
            matches!(e, Event::Receipt { id, status: MessageStatus::Delivered, device: Some(_), .. } if *id == sent.id)
        })
        .await;
        let row = eventually("the delivered status", async || {
            stored(&a.creds, &user(bob))
                .await
                .into_iter()
                .find(|m| m.id == sent.id && m.status == MessageStatus::Delivered)
        })
        .await;
        assert!(row.from_me);
        assert_eq!(row.text.as_deref(), Some(text.as_str()));

        // Bob answers: our client stores it and receipts it.
        let reply = sim.phone_send(bob, me, "réponse ✓").await.unwrap();
        let Event::Message(m) =
            next_event(&mut events, |e| matches!(e, Event::Message(m) if m.id == reply)).await
        else {
            unreachable!()
        };
        assert_eq!((m.chat.clone(), m.sender.clone()), (user(bob), user(bob)));
        assert_eq!(m.text.as_deref(), Some("réponse ✓"));
        assert!(!m.from_me);
        let rows = stored(&a.creds, &user(bob)).await;
        assert_eq!(rows.iter().filter(|r| r.id == reply).count(), 1);
        eventually("our delivery receipt", async || {
            sim.receipts(&our_jid)
                .into_iter()
                .find(|(id, kind)| *id == reply && kind.is_none())
        })
        .await;
        // Nothing is left queued for us once everything was receipted.
        eventually("an empty queue", async || (sim.queued(&our_jid) == 0).then_some(())).await;
        a.store.close().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn messages_that_arrive_while_offline_are_delivered_once_at_login() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let (me, bob) = ("15550003000", "15550004000");
        let (client, _events, our_jid) = link(&sim, &a, me).await;
        // Warm up the session, then go away.
        sim.phone_send(bob, me, "before").await.unwrap();
        eventually("the first message", async || {
            (stored(&a.creds, &user(bob)).await.len() == 1).then_some(())
        })
        .await;
        client.stop();
        drop(client);
        eventually("the device to go offline", async || {
            (!sim.linked_devices(me).is_empty() && sim.queued(&our_jid) == 0).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut ids = Vec::new();
        for i in 0..300 {
            ids.push(
                sim.phone_send(bob, me, &format!("offline {i}"))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(sim.queued(&our_jid), 300);

        let (client, _events) = Client::start(options(&sim), a.creds.clone());
        let rows = eventually("all 300 stored", async || {
            let rows = stored(&a.creds, &user(bob)).await;
            (rows.len() == 301).then_some(rows)
        })
        .await;
        for id in &ids {
            assert_eq!(
                rows.iter().filter(|r| &r.id == id).count(),
                1,
                "{id} stored once"
            );
        }
        // Every one receipted: nothing remains queued.
        eventually("every receipt", async || {
            (sim.queued(&our_jid) == 0).then_some(())
        })
        .await;
        drop(client);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_corrupted_message_is_retried_and_the_ladder_shows_the_delivery() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let a = account().await;
        let (me, bob) = ("15550005000", "15550006000");
        let (client, mut events, _) = link(&sim, &a, me).await;
        sim.set_devices(bob, 1).unwrap();
        assert_eq!(sim.fault(bob, Fault::CorruptNext).await, 1);
        let sent = client.send_text(&user(bob), "second try").await.unwrap();
        // Bob's phone could not decrypt it, asked again, and got it.
        let got = eventually("the retried message", async || {
            sim.phone_messages(bob).into_iter().find(|m| m.id == sent.id)
        })
        .await;
        assert_eq!(got.text.as_deref(), Some("second try"));
        next_event(&mut events, |e| {
            matches!(e, Event::Receipt { id, status: MessageStatus::Delivered, .. } if *id == sent.id)
        })
        .await;

        // The other way: our client cannot decrypt, asks for a retry, and gets it.
        assert_eq!(sim.fault(me, Fault::CorruptNext).await, 1);
        let id = sim.phone_send(bob, me, "again please").await.unwrap();
        next_event(&mut events, |e| {
            matches!(e, Event::Undecryptable { id: i, .. } if *i == id)
        })
        .await;
        let Event::Message(m) =
            next_event(&mut events, |e| matches!(e, Event::Message(m) if m.id == id)).await
        else {
            unreachable!()
        };
        assert_eq!(m.text.as_deref(), Some("again please"));
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn two_accounts_exchange_two_hundred_messages_each_way_in_order_once() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (a, b) = (account().await, account().await);
        let (na, nb) = ("15550007000", "15550008000");
        let (ca, _ea, _) = link(&sim, &a, na).await;
        let (cb, _eb, _) = link(&sim, &b, nb).await;
        let (ca, cb) = (Arc::new(ca), Arc::new(cb));
        let send = |c: Arc<Client>, to: &'static str, tag: &'static str| {
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..200 {
                    let s = c.send_text(&user(to), &format!("{tag} {i}")).await.unwrap();
                    assert_eq!(s.status, MessageStatus::ServerAck);
                    ids.push(s.id);
                }
                ids
            })
        };
        let (ta, tb) = (send(ca.clone(), nb, "a"), send(cb.clone(), na, "b"));
        let (ids_a, ids_b) = (ta.await.unwrap(), tb.await.unwrap());
        for (acct, peer, theirs, tag) in [(&a, nb, &ids_b, "b"), (&b, na, &ids_a, "a")] {
            let rows = eventually("all 400 rows", async || {
                let rows = stored(&acct.creds, &user(peer)).await;
                (rows.len() == 400).then_some(rows)
            })
            .await;
            // Received in the order sent (rows come newest first).
            let received: Vec<&StoredMessage> = rows.iter().rev().filter(|r| !r.from_me).collect();
            assert_eq!(received.len(), 200);
            for (i, (r, id)) in received.iter().zip(theirs.iter()).enumerate() {
                assert_eq!(&r.id, id);
                assert_eq!(r.text.as_deref(), Some(format!("{tag} {i}").as_str()));
            }
        }
    })
    .await
    .expect("in time");
}
