//! 1:1 messaging end to end against the simulator over loopback: our client and simulated users
//! (real Signal peers with several devices) exchange texts; rows, receipts, retries, offline
//! delivery and crashes are checked from both sides (our store and the simulated users' inboxes).

use std::sync::Arc;
use std::time::Duration;

use wa_gateway::binary::{Jid, Server};
use wa_gateway::client::content::Kind;
use wa_gateway::client::messages::GroupUpdate;
use wa_gateway::client::reconnect::Backoff;
use wa_gateway::client::store::GroupStore;
use wa_gateway::client::{
    Client, ClientOptions, ConnState, CredsStore, Event, Events, Keepalive, MessageStatus,
    StoredMessage,
};
use wa_gateway::sim::Simulator;
use wa_gateway::sim::server::Fault;
use wa_gateway::socket::framing::MAX_FRAME;
use wa_gateway::socket::{ClientConfig, TrustRoot};
use wa_gateway::stanza::group::GroupInfo;
use wa_gateway::store::{SqliteCreds, Store};
use wa_gateway::util::clock::SystemClock;

const LIMIT: Duration = Duration::from_secs(60);

pub(crate) fn options(sim: &Simulator) -> ClientOptions {
    ClientOptions {
        socket: ClientConfig {
            url: sim.ws_url().to_owned(),
            trust: TrustRoot::from_key(sim.root_public_key()),
            clock: Arc::new(SystemClock),
            max_frame: MAX_FRAME,
            // The socket is plain ws://; the media CDN is HTTPS under the simulator's CA.
            tls: sim.ca_cert_pem().map(|pem| {
                let cas = wa_gateway::socket::tls::parse_ca_pem(pem.as_bytes()).unwrap();
                wa_gateway::socket::tls::client_config(&cas).unwrap()
            }),
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
        label: String::new(),
    }
}

/// An account in its own SQLite file.
pub(crate) struct Account {
    _dir: tempfile::TempDir,
    pub(crate) store: Store,
    pub(crate) creds: Arc<SqliteCreds>,
}

pub(crate) async fn account() -> Account {
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

pub(crate) async fn next_event(rx: &mut Events, pred: impl Fn(&Event) -> bool) -> Event {
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
pub(crate) async fn link(sim: &Simulator, acct: &Account, number: &str) -> (Client, Events, Jid) {
    let (client, mut events) = Client::start(options(sim), acct.creds.clone());
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
pub(crate) async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
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

/// The simulator's control API on a port-0 listener; returns its URL.
pub(crate) async fn control_api(sim: &Simulator) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = wa_gateway::sim::control::router(sim.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

pub(crate) fn user(number: &str) -> Jid {
    Jid::new(number, Server::User)
}

/// The conversation's key in `creds`: the LID once the account learned it.
pub(crate) async fn canonical(creds: &SqliteCreds, chat: &Jid) -> Jid {
    match creds.lid_for(&chat.user).await.unwrap() {
        Some(lid) if chat.server == Server::User => Jid::new(lid, Server::Lid),
        _ => chat.clone(),
    }
}

pub(crate) async fn stored(creds: &SqliteCreds, chat: &Jid) -> Vec<StoredMessage> {
    let chat = canonical(creds, chat).await;
    creds.messages(Some(&chat), 1000, 0).await.unwrap()
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
        sim.set_devices(bob, 2).unwrap();

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
        assert_eq!(copy.chat, canonical(&a2.creds, &user(bob)).await);
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
        let bob_key = canonical(&a.creds, &user(bob)).await;
        assert_eq!(bob_key.server, Server::Lid, "bob's LID was learned");
        assert_eq!((m.chat.clone(), m.sender.clone()), (bob_key.clone(), bob_key));
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

        let (client, mut events) = Client::start(options(&sim), a.creds.clone());
        let Event::OfflineSync { count } =
            next_event(&mut events, |e| matches!(e, Event::OfflineSync { .. })).await
        else {
            unreachable!()
        };
        assert_eq!(count, 300);
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
        let acct = a.store.account("sub", "agent").await.unwrap();
        let kinds = ["message.received", "message.undecryptable"];
        a.store
            .set_webhook(acct, "http://127.0.0.1:9/hook", b"kinds-events-secret", &kinds, None)
            .await
            .unwrap();
        let (client, mut events, our_jid) = link(&sim, &a, me).await;
        sim.set_devices(bob, 1).unwrap();
        assert_eq!(sim.fault(bob, Fault::CorruptNext).await, 1);
        let sent = client.send_text(&user(bob), "second try").await.unwrap();
        // Bob's phone could not decrypt it, asked again, and got it.
        let got = eventually("the retried message", async || {
            sim.phone_messages(bob).into_iter().find(|m| m.id == sent.id)
        })
        .await;
        assert_eq!(got.text.as_deref(), Some("second try"));
        // Sent once, plus one answer to the retry receipt, and both reached bob's phone.
        let wire = sim.transmissions(&sent.id);
        assert_eq!((wire.originals, wire.retry_answers), (1, 1), "{wire:?}");
        assert_eq!(
            wire.stanzas.iter().map(|l| l.retry).collect::<Vec<_>>(),
            [None, Some(1)]
        );
        assert_eq!((got.transmissions, got.retry_answers), (1, 1), "{got:?}");
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
        assert!(client.stats().decrypt_failures >= 1, "{:?}", client.stats());
        // The row kept while it could not be read gave way to it: one row, the message.
        let rows = stored(&a.creds, &user(bob)).await;
        let same: Vec<_> = rows.iter().filter(|r| r.id == id).collect();
        assert_eq!(same.len(), 1, "{same:?}");
        assert_eq!((same[0].kind, same[0].status), (Kind::Chat, MessageStatus::Received));
        // Announced once as undecryptable, then once as received: never received twice.
        let announced = async |id: &str| -> Vec<String> {
            sqlx::query_scalar(
                "SELECT e.kind FROM webhook_events e JOIN messages m ON m.pk = e.message_pk \
                 WHERE m.id = ? ORDER BY e.pk",
            )
            .bind(id)
            .fetch_all(a.store.pool())
            .await
            .unwrap()
        };
        assert_eq!(announced(&id).await, ["message.undecryptable", "message.received"]);

        // A message no resend ever makes readable is kept as a failed `ciphertext`, not lost:
        // the first copy and every resend arrive broken (the sim answers retries 1 to 4, so
        // our fifth ask goes unanswered).
        let retries = wa_gateway::client::messenger::MAX_RETRIES;
        for _ in 0..retries {
            sim.fault(me, Fault::CorruptNext).await;
        }
        let lost = sim.phone_send(bob, me, "never readable").await.unwrap();
        for _ in 0..retries {
            next_event(&mut events, |e| matches!(e, Event::Undecryptable { id, .. } if *id == lost))
                .await;
        }
        let row = stored(&a.creds, &user(bob))
            .await
            .into_iter()
            .find(|r| r.id == lost)
            .expect("kept");
        assert_eq!((row.kind, row.status, row.text), (Kind::Ciphertext, MessageStatus::Failed, None));
        assert_eq!(row.content["undecryptable"], serde_json::json!(true));
        assert_eq!(announced(&lost).await, ["message.undecryptable"]);
        // Acked: the server holds nothing more for us.
        eventually("nothing queued", async || (sim.queued(&our_jid) == 0).then_some(())).await;
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

/// Where the store stops answering, as if the process died there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CrashAt {
    /// Inbound: decrypted, nothing committed.
    Decrypted,
    /// Inbound: committed, receipt not sent.
    Committed,
    /// Outbound: the sending-chain advance and the pending row committed, stanza not sent.
    SendCommitted,
    /// A device's receipt read, not yet stored.
    StoringReceipt,
    /// A contact's privacy token read, not yet stored.
    StoringToken,
}

/// A store that hangs forever at one point (the client is then dropped: a crash there).
pub(crate) struct Crashy {
    pub(crate) inner: Arc<SqliteCreds>,
    pub(crate) at: CrashAt,
    pub(crate) hit: tokio::sync::Notify,
}

impl CredsStore for Crashy {
    type Signal = wa_gateway::store::SqliteSignalStore;
    fn signal(&self) -> Self::Signal {
        self.inner.signal()
    }
    async fn load(
        &self,
    ) -> Result<Option<wa_gateway::client::Creds>, wa_gateway::client::store::CredsStoreError> {
        self.inner.load().await
    }
    async fn save(
        &self,
        c: &wa_gateway::client::Creds,
    ) -> Result<(), wa_gateway::client::store::CredsStoreError> {
        self.inner.save(c).await
    }
    async fn wipe(&self) -> Result<(), wa_gateway::client::store::CredsStoreError> {
        self.inner.wipe().await
    }
    async fn set_push_name(
        &self,
        name: &str,
    ) -> Result<(), wa_gateway::client::store::CredsStoreError> {
        self.inner.set_push_name(name).await
    }
    async fn has_message(
        &self,
        chat: &Jid,
        sender: &Jid,
        id: &str,
    ) -> Result<bool, wa_gateway::client::store::CredsStoreError> {
        self.inner.has_message(chat, sender, id).await
    }
    async fn commit_message(
        &self,
        changes: &wa_gateway::signal::SignalChanges,
        msg: &StoredMessage,
    ) -> Result<wa_gateway::client::messages::Committed, wa_gateway::client::store::CredsStoreError>
    {
        let hang = match self.at {
            CrashAt::Decrypted => !msg.from_me,
            CrashAt::Committed => {
                if !msg.from_me {
                    self.inner.commit_message(changes, msg).await?;
                }
                !msg.from_me
            }
            CrashAt::SendCommitted => {
                if msg.from_me {
                    self.inner.commit_message(changes, msg).await?;
                }
                msg.from_me
            }
            CrashAt::StoringReceipt | CrashAt::StoringToken => false,
        };
        if hang {
            self.hit.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.commit_message(changes, msg).await
    }
    async fn update_status(
        &self,
        u: &wa_gateway::client::messages::StatusUpdate,
    ) -> Result<Option<MessageStatus>, wa_gateway::client::store::CredsStoreError> {
        if self.at == CrashAt::StoringReceipt && u.device.is_some() {
            self.hit.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.update_status(u).await
    }
    async fn sent_message(
        &self,
        chat: &Jid,
        id: &str,
    ) -> Result<Option<StoredMessage>, wa_gateway::client::store::CredsStoreError> {
        self.inner.sent_message(chat, id).await
    }
    async fn messages(
        &self,
        chat: Option<&Jid>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<StoredMessage>, wa_gateway::client::store::CredsStoreError> {
        self.inner.messages(chat, limit, offset).await
    }
    async fn pending_messages(
        &self,
    ) -> Result<Vec<StoredMessage>, wa_gateway::client::store::CredsStoreError> {
        self.inner.pending_messages().await
    }
    async fn learn_lid(
        &self,
        pn: &str,
        lid: &str,
    ) -> Result<(), wa_gateway::client::store::CredsStoreError> {
        self.inner.learn_lid(pn, lid).await
    }
    async fn learn_lids(
        &self,
        pairs: &[(String, String)],
    ) -> Result<(), wa_gateway::client::store::CredsStoreError> {
        self.inner.learn_lids(pairs).await
    }
    async fn lid_for(
        &self,
        pn: &str,
    ) -> Result<Option<String>, wa_gateway::client::store::CredsStoreError> {
        self.inner.lid_for(pn).await
    }
    async fn lids_for(
        &self,
        pns: &[String],
    ) -> Result<std::collections::HashMap<String, String>, wa_gateway::client::store::CredsStoreError>
    {
        self.inner.lids_for(pns).await
    }
    async fn pn_for(
        &self,
        lid: &str,
    ) -> Result<Option<String>, wa_gateway::client::store::CredsStoreError> {
        self.inner.pn_for(lid).await
    }
    async fn set_privacy_token(
        &self,
        jid: &Jid,
        token: &[u8],
        t: u64,
    ) -> Result<(), wa_gateway::client::store::CredsStoreError> {
        if self.at == CrashAt::StoringToken {
            self.hit.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.set_privacy_token(jid, token, t).await
    }
    async fn privacy_token(
        &self,
        jid: &Jid,
    ) -> Result<Option<(Vec<u8>, u64)>, wa_gateway::client::store::CredsStoreError> {
        self.inner.privacy_token(jid).await
    }
    async fn set_token_issued(
        &self,
        jid: &Jid,
        t: u64,
    ) -> Result<Option<u64>, wa_gateway::client::store::CredsStoreError> {
        self.inner.set_token_issued(jid, t).await
    }
    async fn nct_salt(&self) -> StoreResult<Option<wa_gateway::client::NctSalt>> {
        self.inner.nct_salt().await
    }
    async fn set_nct_salt(&self, salt: Option<&[u8]>) -> StoreResult<()> {
        self.inner.set_nct_salt(salt).await
    }
    async fn backfill_nct_salt(&self, salt: &[u8]) -> StoreResult<bool> {
        self.inner.backfill_nct_salt(salt).await
    }
    async fn wrote_to_us(&self, chat: &Jid) -> StoreResult<bool> {
        self.inner.wrote_to_us(chat).await
    }
}

type StoreResult<T> = Result<T, wa_gateway::client::store::CredsStoreError>;

impl wa_gateway::client::appstate_store::AppStateStore for Crashy {
    async fn add_app_state_keys(
        &self,
        keys: &[wa_gateway::client::appstate_store::AppStateKey],
    ) -> StoreResult<usize> {
        self.inner.add_app_state_keys(keys).await
    }
    async fn app_state_key(
        &self,
        id: &[u8],
    ) -> StoreResult<Option<wa_gateway::client::appstate_store::AppStateKey>> {
        self.inner.app_state_key(id).await
    }
    async fn latest_app_state_key(
        &self,
    ) -> StoreResult<Option<wa_gateway::client::appstate_store::AppStateKey>> {
        self.inner.latest_app_state_key().await
    }
    async fn app_state_version(
        &self,
        collection: &str,
    ) -> StoreResult<Option<wa_gateway::client::appstate_store::CollectionVersion>> {
        self.inner.app_state_version(collection).await
    }
    async fn value_macs(
        &self,
        collection: &str,
        index_macs: &[[u8; 32]],
    ) -> StoreResult<std::collections::HashMap<[u8; 32], [u8; 32]>> {
        self.inner.value_macs(collection, index_macs).await
    }
    async fn app_state_records(
        &self,
        collection: &str,
        index_prefix: &[&str],
    ) -> StoreResult<Vec<wa_gateway::client::appstate_store::AppStateRecord>> {
        self.inner.app_state_records(collection, index_prefix).await
    }
    async fn commit_app_state(
        &self,
        commit: &wa_gateway::client::appstate_store::AppStateCommit,
    ) -> StoreResult<Vec<wa_gateway::client::account::ChatChange>> {
        self.inner.commit_app_state(commit).await
    }
    async fn reset_app_state(&self, collection: &str) -> StoreResult<()> {
        self.inner.reset_app_state(collection).await
    }
}

impl GroupStore for Crashy {
    async fn group(&self, group: &Jid) -> StoreResult<Option<GroupInfo>> {
        self.inner.group(group).await
    }
    async fn set_group(&self, info: &GroupInfo) -> StoreResult<()> {
        self.inner.set_group(info).await
    }
    async fn key_holders(&self, group: &Jid) -> StoreResult<Vec<Jid>> {
        self.inner.key_holders(group).await
    }
    async fn mark_key_holders(&self, group: &Jid, devices: &[Jid]) -> StoreResult<()> {
        self.inner.mark_key_holders(group, devices).await
    }
    async fn forget_key_holder(&self, group: &Jid, device: &Jid) -> StoreResult<()> {
        self.inner.forget_key_holder(group, device).await
    }
    async fn reset_group_key(
        &self,
        group: &Jid,
        changes: &wa_gateway::signal::SignalChanges,
    ) -> StoreResult<()> {
        self.inner.reset_group_key(group, changes).await
    }
    async fn record_group_update(&self, u: &GroupUpdate) -> StoreResult<bool> {
        self.inner.record_group_update(u).await
    }
    async fn group_updates(&self, group: &Jid, limit: u32) -> StoreResult<Vec<GroupUpdate>> {
        self.inner.group_updates(group, limit).await
    }
}

#[tokio::test]
async fn a_crash_at_any_step_of_receiving_loses_nothing_and_stores_nothing_twice() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        for (i, at) in [CrashAt::Decrypted, CrashAt::Committed]
            .into_iter()
            .enumerate()
        {
            let a = account().await;
            let (me, bob) = (format!("1555001{i}000"), format!("1555002{i}000"));
            let (client, _events, our_jid) = link(&sim, &a, &me).await;
            sim.phone_send(&bob, &me, "warm-up").await.unwrap();
            eventually("the warm-up", async || {
                (stored(&a.creds, &user(&bob)).await.len() == 1).then_some(())
            })
            .await;
            drop(client);
            // The same account over a store that dies at `at`.
            let crashy = Arc::new(Crashy {
                inner: a.creds.clone(),
                at,
                hit: tokio::sync::Notify::new(),
            });
            let (client, _events) = Client::start(options(&sim), crashy.clone());
            let hit = crashy.hit.notified();
            let id = sim.phone_send(&bob, &me, "the one").await.unwrap();
            tokio::time::timeout(Duration::from_secs(20), hit)
                .await
                .expect("the crash point is reached");
            drop(client);
            let before = stored(&a.creds, &user(&bob)).await;
            assert_eq!(
                before.iter().any(|m| m.id == id),
                at == CrashAt::Committed,
                "{at:?}: committed exactly when the crash came after the commit"
            );
            // Not receipted: the server still holds it for us.
            assert!(sim.queued(&our_jid) >= 1, "{at:?}");
            let (client, _events) = Client::start(options(&sim), a.creds.clone());
            let rows = eventually("the redelivered message", async || {
                let rows = stored(&a.creds, &user(&bob)).await;
                rows.iter().any(|m| m.id == id).then_some(rows)
            })
            .await;
            assert_eq!(rows.iter().filter(|m| m.id == id).count(), 1, "{at:?}");
            assert_eq!(rows.len(), 2, "{at:?}");
            eventually("the receipt", async || {
                (sim.queued(&our_jid) == 0).then_some(())
            })
            .await;
            drop(client);
        }
    })
    .await
    .expect("in time");
}

/// Receipts and privacy tokens are acked only once stored: a crash before leaves them with the
/// server, which delivers them again.
#[tokio::test]
async fn a_crash_before_a_receipt_or_token_is_stored_leaves_it_with_the_server() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        for (i, at) in [CrashAt::StoringReceipt, CrashAt::StoringToken]
            .into_iter()
            .enumerate()
        {
            let a = account().await;
            let (me, bob) = (format!("1555004{i}000"), format!("1555005{i}000"));
            let (client, _events, our_jid) = link(&sim, &a, &me).await;
            sim.set_devices(&bob, 1).unwrap();
            drop(client);
            let crashy = Arc::new(Crashy {
                inner: a.creds.clone(),
                at,
                hit: tokio::sync::Notify::new(),
            });
            let (client, _events) = Client::start(options(&sim), crashy.clone());
            client.wait_for(|s| *s == ConnState::Connected).await;
            let hit = crashy.hit.notified();
            let sent = match at {
                // Bob's phone receipts what we send.
                CrashAt::StoringReceipt => {
                    Some(client.send_text(&user(&bob), "receipt me").await.unwrap())
                }
                // Bob's first message gives us his token.
                _ => {
                    sim.phone_send(&bob, &me, "here is my token").await.unwrap();
                    None
                }
            };
            tokio::time::timeout(Duration::from_secs(20), hit)
                .await
                .expect("the crash point is reached");
            drop(client);
            assert!(
                sim.queued(&our_jid) >= 1,
                "{at:?}: the server still holds it"
            );
            let (client, _events) = Client::start(options(&sim), a.creds.clone());
            match sent {
                Some(sent) => {
                    eventually("the redelivered receipt", async || {
                        let rows = stored(&a.creds, &user(&bob)).await;
                        rows.iter()
                            .any(|m| m.id == sent.id && m.status == MessageStatus::Delivered)
                            .then_some(())
                    })
                    .await
                }
                None => {
                    eventually("the redelivered token", async || {
                        // Keyed by the number until bob's message teaches his LID.
                        let bob_key = canonical(&a.creds, &user(&bob)).await;
                        a.creds.privacy_token(&bob_key).await.unwrap().map(|_| ())
                    })
                    .await
                }
            }
            eventually("nothing left queued", async || {
                (sim.queued(&our_jid) == 0).then_some(())
            })
            .await;
            drop(client);
        }
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_crash_while_sending_sends_the_message_once_with_its_id() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (me, bob) = ("15550030000", "15550031000");
        let a = account().await;
        let (client, _events, _) = link(&sim, &a, me).await;
        sim.set_devices(bob, 2).unwrap();
        drop(client);

        // 1. The sending-chain advance and the pending row are committed; the stanza never left.
        let crashy = Arc::new(Crashy {
            inner: a.creds.clone(),
            at: CrashAt::SendCommitted,
            hit: tokio::sync::Notify::new(),
        });
        let (client, _e) = Client::start(options(&sim), crashy.clone());
        let c = client;
        c.wait_for(|s| *s == ConnState::Connected).await;
        let c = Arc::new(c);
        let sending = {
            let c = c.clone();
            tokio::spawn(async move { c.send_text(&user(bob), "never lost").await })
        };
        tokio::time::timeout(Duration::from_secs(20), crashy.hit.notified())
            .await
            .expect("the crash point is reached");
        sending.abort();
        drop(c);
        let pending = a.creds.pending_messages().await.unwrap();
        assert_eq!(pending.len(), 1);
        let id = pending[0].id.clone();
        assert!(
            sim.phone_messages(bob).is_empty(),
            "nothing left before the crash"
        );
        // After the restart the pending message goes out with its id, once.
        let (client, _e) = Client::start(options(&sim), a.creds.clone());
        eventually("bob to get it", async || {
            sim.phone_messages(bob).into_iter().find(|m| m.id == id)
        })
        .await;
        let wire = sim.transmissions(&id);
        assert_eq!((wire.originals, wire.held), (1, 0), "{wire:?}");
        eventually("the ack", async || {
            a.creds
                .pending_messages()
                .await
                .unwrap()
                .is_empty()
                .then_some(())
        })
        .await;
        drop(client);

        // 2. The stanza left, the ack never came (the server held it), then a restart.
        assert_eq!(sim.fault(me, Fault::WithholdAcks(true)).await, 1);
        let mut opts = options(&sim);
        opts.messaging.ack_timeout = Duration::from_millis(300);
        let (client, _e) = Client::start(opts, a.creds.clone());
        client.wait_for(|s| *s == ConnState::Connected).await;
        let sent = client.send_text(&user(bob), "left once").await.unwrap();
        assert_eq!(sent.status, MessageStatus::Pending);
        drop(client);
        // The server accepts what it held once the client is gone (its ack reaches nobody), then
        // the client comes back and, never having seen an ack, transmits the same id again:
        // WhatsApp acks and routes that one too, and bob's phone shows the message once.
        let our_jid = sim.linked_devices(me)[0].clone();
        eventually("the old connection gone", async || {
            (!sim.connected(&our_jid)).then_some(())
        })
        .await;
        // Sent once: a send in flight at login is not resent beside it.
        let held = sim.transmissions(&sent.id).held;
        assert_eq!(held, 1);
        // Bob's phone receipts nothing: a delivery receipt would tell the client it arrived.
        assert_eq!(sim.fault(bob, Fault::WithholdReceipts(true)).await, 1);
        assert_eq!(sim.fault(me, Fault::WithholdAcks(false)).await, 1);
        let (client, _e) = Client::start(options(&sim), a.creds.clone());
        eventually("the resend's ack", async || {
            a.creds
                .pending_messages()
                .await
                .unwrap()
                .is_empty()
                .then_some(())
        })
        .await;
        let wire = sim.transmissions(&sent.id);
        assert_eq!(
            (wire.originals, wire.retry_answers, wire.refused, wire.held),
            (held + 1, 0, 0, 0),
            "{wire:?}"
        );
        let got = eventually("both copies at both of bob's devices", async || {
            let got: Vec<_> = sim
                .phone_messages(bob)
                .into_iter()
                .filter(|m| m.id == sent.id)
                .collect();
            (got.len() == 1 && got[0].transmissions as usize == held + 1 && got[0].devices == 2)
                .then_some(got)
        })
        .await;
        assert_eq!(got[0].text.as_deref(), Some("left once"));
        assert_eq!(got[0].retry_answers, 0);
        // The control API says the same.
        let control = control_api(&sim).await;
        let v: serde_json::Value = reqwest::get(format!("{control}/stanzas?id={}", sent.id))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["originals"], serde_json::json!(held + 1), "{v}");
        assert_eq!(v["stanzas"].as_array().map(Vec::len), Some(held + 1), "{v}");
        assert_eq!(
            v["stanzas"][0]["from"],
            serde_json::json!(our_jid.to_string())
        );
        let v: serde_json::Value = reqwest::get(format!("{control}/phones/{bob}/messages"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let m = v
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == serde_json::json!(sent.id))
            .unwrap();
        assert_eq!(
            (m["transmissions"].as_u64(), m["devices"].as_u64()),
            (Some(held as u64 + 1), Some(2))
        );
        let status = reqwest::get(format!("{control}/stanzas"))
            .await
            .unwrap()
            .status();
        assert_eq!(status, 400, "an id is required");
        drop(client);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn shutdown_finishes_cleanly_and_logout_unlinks_and_wipes_the_keys() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let (me, bob) = ("15550040000", "15550041000");
        let (client, _events, our_jid) = link(&sim, &a, me).await;
        let id = sim.phone_send(bob, me, "before shutdown").await.unwrap();
        eventually("the message", async || {
            stored(&a.creds, &user(bob))
                .await
                .iter()
                .any(|m| m.id == id)
                .then_some(())
        })
        .await;
        assert_eq!(client.shutdown().await, ConnState::Stopped);
        assert!(
            a.creds.load().await.unwrap().is_some(),
            "a shutdown keeps the link"
        );
        assert_eq!(
            sim.queued(&our_jid),
            0,
            "everything was receipted before closing"
        );

        let (client, mut events) = Client::start(options(&sim), a.creds.clone());
        client.wait_for(|s| *s == ConnState::Connected).await;
        let bob_key = canonical(&a.creds, &user(bob)).await;
        assert!(a.creds.privacy_token(&bob_key).await.unwrap().is_some());
        let state = client.logout().await;
        assert_eq!(state.code(), Some("logout"), "{state:?}");
        assert!(a.creds.load().await.unwrap().is_none(), "keys wiped");
        // Bob's token to that link went with it.
        assert_eq!(a.creds.privacy_token(&bob_key).await.unwrap(), None);
        assert!(
            sim.linked_devices(me).is_empty(),
            "the phone no longer lists it"
        );
        // History stays.
        assert!(
            stored(&a.creds, &user(bob))
                .await
                .iter()
                .any(|m| m.id == id)
        );
        // The event stream ends after the final state.
        let mut last = None;
        while let Some(e) = events.recv().await {
            last = Some(e);
        }
        assert!(
            matches!(last, Some(Event::State(ConnState::LoggedOut { .. }))),
            "{last:?}"
        );
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_contact_known_by_number_and_lid_is_one_conversation_and_we_send_to_the_lid() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let (me, bob) = ("15550050000", "15550051000");
        let (client, mut events, our_jid) = link(&sim, &a, me).await;
        sim.set_devices(bob, 2).unwrap();
        let (bob_lid, our_lid) = (sim.lid_of(bob).unwrap(), sim.lid_of(me).unwrap());
        let bob_lid_jid = Jid::new(bob_lid.clone(), Server::Lid);

        // From the phone number (the server adds sender_lid), then from the LID.
        let from_pn = sim.phone_send(bob, me, "from the number").await.unwrap();
        let from_lid = sim
            .phone_send(bob, &format!("{our_lid}@lid"), "from the lid")
            .await
            .unwrap();
        for id in [&from_pn, &from_lid] {
            let Event::Message(m) = next_event(
                &mut events,
                |e| matches!(e, Event::Message(m) if m.id == *id),
            )
            .await
            else {
                unreachable!()
            };
            assert_eq!(m.chat, bob_lid_jid, "one conversation, keyed by the LID");
            assert_eq!(m.sender, bob_lid_jid, "one contact");
        }
        // Asked by either name, the conversation is the same.
        let by_pn = client.messages(Some(&user(bob)), 10, 0).await.unwrap();
        let by_lid = client.messages(Some(&bob_lid_jid), 10, 0).await.unwrap();
        assert_eq!(by_pn.len(), 2);
        assert_eq!(by_pn, by_lid);
        // Newest first.
        assert_eq!(by_pn[0].id, from_lid);

        // Our send to the phone number goes to the LID, own devices in the same namespace.
        let sent = client.send_text(&user(bob), "to the lid").await.unwrap();
        assert_eq!(sent.chat, bob_lid_jid);
        let logged = sim
            .message_log()
            .into_iter()
            .find(|l| l.id == sent.id)
            .unwrap();
        assert_eq!(logged.to, format!("{bob_lid}@lid"));
        assert!(
            logged.encs.iter().all(|(j, _)| j.ends_with("@lid")),
            "never two namespaces in one stanza: {logged:?}"
        );
        assert!(
            logged.encs.iter().any(|(j, _)| j.starts_with(&our_lid)),
            "{logged:?}"
        );
        assert_eq!(logged.from, our_jid.to_string());
        let got = eventually("bob to decrypt", async || {
            sim.phone_messages(bob)
                .into_iter()
                .find(|m| m.id == sent.id && m.devices == 2)
        })
        .await;
        assert_eq!(got.text.as_deref(), Some("to the lid"));
        // And the reply to it lands in the same conversation.
        let reply = sim.phone_send(bob, me, "same chat").await.unwrap();
        next_event(
            &mut events,
            |e| matches!(e, Event::Message(m) if m.id == reply),
        )
        .await;
        assert_eq!(
            client
                .messages(Some(&user(bob)), 10, 0)
                .await
                .unwrap()
                .len(),
            4
        );
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn under_the_reach_out_lock_a_stranger_needs_their_token_and_463_says_why() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let (me, stranger) = ("15550070000", "15550071000");
        let (client, mut events, _) = link(&sim, &a, me).await;
        sim.set_devices(stranger, 1).unwrap();
        assert_eq!(
            client.reachout_timelock(),
            None,
            "unknown until WhatsApp says"
        );
        assert_eq!(sim.fault(me, Fault::ReachOutLock(true)).await, 1);
        // WhatsApp tells the account's devices (a `w:mex` notification).
        let Event::ReachoutTimelock(lock) =
            next_event(&mut events, |e| matches!(e, Event::ReachoutTimelock(_))).await
        else {
            unreachable!()
        };
        let now = wa_gateway::util::clock::now_ms() / 1000;
        assert!(lock.active, "{lock:?}");
        assert!(lock.ends_at.is_some_and(|t| t > now + 3600), "{lock:?}");
        assert_eq!(client.reachout_timelock(), Some(lock.clone()));

        let err = client
            .send_text(&user(stranger), "hello?")
            .await
            .unwrap_err();
        let wa_gateway::client::SendError::Refused { code, id, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*code, 463);
        assert!(err.to_string().contains("privacy token"), "{err}");
        let row = stored(&a.creds, &user(stranger))
            .await
            .into_iter()
            .find(|m| &m.id == id)
            .unwrap();
        assert_eq!((row.status, row.error), (MessageStatus::Failed, Some(463)));
        assert!(sim.phone_messages(stranger).is_empty(), "nothing delivered");

        // The stranger writes first: their token reaches us, and our answer carries it.
        let hi = sim.phone_send(stranger, me, "hi, it's me").await.unwrap();
        next_event(&mut events, |e| matches!(e, Event::PrivacyToken { .. })).await;
        next_event(
            &mut events,
            |e| matches!(e, Event::Message(m) if m.id == hi),
        )
        .await;
        let sent = client.send_text(&user(stranger), "welcome").await.unwrap();
        assert_eq!(sent.status, MessageStatus::ServerAck);
        let logged = sim
            .message_log()
            .into_iter()
            .find(|l| l.id == sent.id)
            .unwrap();
        assert!(logged.tctoken, "the token went with it");
        assert_eq!(client.stats().refused_463, 1);
        // Asked after the 463, the state is the server's; lifted, the devices are told again.
        assert_eq!(client.fetch_reachout_timelock().await.unwrap(), lock);
        sim.fault(me, Fault::ReachOutLock(false)).await;
        let lifted = next_event(
            &mut events,
            |e| matches!(e, Event::ReachoutTimelock(t) if !t.active),
        )
        .await;
        let Event::ReachoutTimelock(lifted) = lifted else {
            unreachable!()
        };
        assert_eq!(lifted.ends_at, None);
        assert!(!client.fetch_reachout_timelock().await.unwrap().active);
        eventually("the stranger to read it", async || {
            sim.phone_messages(stranger)
                .into_iter()
                .find(|m| m.id == sent.id)
        })
        .await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_message_no_device_receipts_is_flagged_as_stuck() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let (me, bob) = ("15550080000", "15550081000");
        sim.set_devices(bob, 1).unwrap();
        let mut opts = options(&sim);
        opts.messaging.stuck_after = Duration::from_millis(300);
        let (client, mut events) = Client::start(opts, a.creds.clone());
        let Event::QrCode { code, .. } =
            next_event(&mut events, |e| matches!(e, Event::QrCode { .. })).await
        else {
            unreachable!()
        };
        sim.scan(me, &code, None, None).await.unwrap();
        client.wait_for(|s| *s == ConnState::Connected).await;
        // The phone's app state (its contacts, with bob's LID) is synced first: a chat that
        // moves to its LID mid-test is another test's business.
        for c in sim.app_state_collections() {
            eventually("app state synced", async || {
                use wa_gateway::client::appstate_store::AppStateStore;
                a.creds.app_state_version(c).await.unwrap().map(|_| ())
            })
            .await;
        }
        assert_eq!(sim.fault(bob, Fault::WithholdReceipts(true)).await, 1);
        let sent = client.send_text(&user(bob), "anyone?").await.unwrap();
        let Event::Stuck { id, .. } =
            next_event(&mut events, |e| matches!(e, Event::Stuck { .. })).await
        else {
            unreachable!()
        };
        assert_eq!(id, sent.id);
        assert_eq!(client.stats().stuck, 1);
        // A delivered message is not flagged.
        assert_eq!(sim.fault(bob, Fault::WithholdReceipts(false)).await, 1);
        let ok = client.send_text(&user(bob), "there you are").await.unwrap();
        next_event(&mut events, |e| {
            matches!(e, Event::Receipt { id, status: MessageStatus::Delivered, .. } if *id == ok.id)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(client.stats().stuck, 1);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn read_receipts_reach_the_sender_and_a_refused_lid_send_falls_back_to_the_number() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let (me, bob) = ("15550090000", "15550091000");
        let (client, mut events, _) = link(&sim, &a, me).await;
        sim.set_devices(bob, 1).unwrap();
        let id = sim.phone_send(bob, me, "read me").await.unwrap();
        let Event::Message(m) = next_event(
            &mut events,
            |e| matches!(e, Event::Message(m) if m.id == id),
        )
        .await
        else {
            unreachable!()
        };
        assert!(!sim.was_read(bob, &id));
        client
            .mark_read(&m.chat, &m.sender, std::slice::from_ref(&id))
            .await
            .unwrap();
        eventually("bob to see it read", async || {
            sim.was_read(bob, &id).then_some(())
        })
        .await;

        // An account WhatsApp has not moved to LID chats: the LID send is refused with 400,
        // the same message goes to the phone number, and later sends go there first.
        assert_eq!(sim.fault(me, Fault::LidUnmigrated(true)).await, 1);
        let sent = client.send_text(&user(bob), "by number").await.unwrap();
        assert_eq!(sent.status, MessageStatus::ServerAck);
        let tries: Vec<_> = sim
            .message_log()
            .into_iter()
            .filter(|l| l.id == sent.id)
            .collect();
        assert_eq!(tries.len(), 2, "{tries:?}");
        assert!(tries[0].to.ends_with("@lid") && tries[0].error == Some(400));
        assert!(tries[1].to.ends_with("@s.whatsapp.net") && tries[1].error.is_none());
        assert!(
            tries[1]
                .encs
                .iter()
                .all(|(j, _)| j.ends_with("@s.whatsapp.net")),
            "{tries:?}"
        );
        eventually("bob to read it", async || {
            sim.phone_messages(bob)
                .into_iter()
                .find(|m| m.id == sent.id)
        })
        .await;
        let next = client.send_text(&user(bob), "again").await.unwrap();
        let tries: Vec<_> = sim
            .message_log()
            .into_iter()
            .filter(|l| l.id == next.id)
            .collect();
        assert_eq!(tries.len(), 1, "no second LID attempt: {tries:?}");
        assert_eq!(
            stored(&a.creds, &user(bob))
                .await
                .iter()
                .find(|m| m.id == sent.id)
                .map(|m| m.status),
            Some(MessageStatus::Delivered)
        );
    })
    .await
    .expect("in time");
}

/// `a`'s account key in its store, with a webhook that wants `message.status` (never
/// delivered here: no service runs), so the status path's events can be read back.
async fn with_status_events(a: &Account) -> wa_gateway::store::AccountId {
    let acct = a.store.account("sub", "agent").await.unwrap();
    a.store
        .set_webhook(
            acct,
            "http://127.0.0.1:9/hook",
            b"status-events-secret",
            &["message.status"],
            None,
        )
        .await
        .unwrap();
    acct
}

#[tokio::test]
async fn a_pending_message_that_cannot_go_fails_alone_and_the_ones_after_it_are_resent() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (me, bob, dave) = ("15550060000", "15550061000", "15550062000");
        let a = account().await;
        let acct = with_status_events(&a).await;
        let (client, _e, our_jid) = link(&sim, &a, me).await;
        sim.set_devices(bob, 1).unwrap();
        sim.set_devices(dave, 1).unwrap();
        drop(client);

        // Both leave, neither is acked (the server holds them), and the client goes away.
        assert_eq!(sim.fault(me, Fault::WithholdAcks(true)).await, 1);
        let mut opts = options(&sim);
        opts.messaging.ack_timeout = Duration::from_millis(300);
        let (client, _e) = Client::start(opts, a.creds.clone());
        client.wait_for(|s| *s == ConnState::Connected).await;
        let to_dave = client.send_text(&user(dave), "to dave").await.unwrap();
        let to_bob = client.send_text(&user(bob), "to bob").await.unwrap();
        assert_eq!(
            (to_dave.status, to_bob.status),
            (MessageStatus::Pending, MessageStatus::Pending)
        );
        drop(client);
        eventually("the old connection gone", async || {
            (!sim.connected(&our_jid)).then_some(())
        })
        .await;
        // Dave deletes his account: his message can never go.
        sim.delete_account(dave).await.unwrap();

        let (client, mut events) = Client::start(options(&sim), a.creds.clone());
        // Dave's fails, and says so; bob's, after it, goes again all the same.
        next_event(&mut events, |e| {
            matches!(e, Event::Receipt { id, status: MessageStatus::Failed, .. } if *id == to_dave.id)
        })
        .await;
        eventually("bob's resend", async || {
            (sim.transmissions(&to_bob.id).held == 2).then_some(())
        })
        .await;
        assert_eq!(sim.transmissions(&to_dave.id).held, 1, "dave's is not tried");
        let row = a
            .creds
            .sent_message(&to_dave.chat, &to_dave.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((row.status, row.error), (MessageStatus::Failed, None));
        let failed = a.store.webhook_events(acct, None, 50, 0).await.unwrap();
        assert!(
            failed.iter().any(|e| e.kind == "message.status"
                && e.status.as_deref() == Some("failed")
                && e.message_pk.is_some()),
            "{failed:?}"
        );
        // The server lets ours through: bob's is acked (and both copies reach him).
        assert_eq!(sim.fault(me, Fault::WithholdAcks(false)).await, 1);
        eventually("bob's ack", async || {
            let row = a.creds.sent_message(&to_bob.chat, &to_bob.id).await.ok()??;
            // Acked (its receipt may overtake the ack).
            matches!(row.status, MessageStatus::ServerAck | MessageStatus::Delivered)
                .then_some(())
        })
        .await;
        drop(client);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn an_unacked_message_is_resent_on_the_same_connection_then_given_up_past_its_age() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (me, bob) = ("15550070000", "15550071000");
        let a = account().await;
        let acct = with_status_events(&a).await;
        let (client, _e, _) = link(&sim, &a, me).await;
        sim.set_devices(bob, 1).unwrap();
        drop(client);

        let now = wa_gateway::util::clock::Clock::now_unix(&SystemClock);
        let clock = wa_gateway::util::clock::FixedClock::new(now);
        let mut opts = options(&sim);
        opts.socket.clock = Arc::new(clock.clone());
        opts.messaging.ack_timeout = Duration::from_millis(200);
        opts.messaging.resend_after = Duration::from_millis(100);
        opts.messaging.give_up_after = Duration::from_secs(3600);
        assert_eq!(sim.fault(me, Fault::WithholdAcks(true)).await, 1);
        let (client, mut events) = Client::start(opts, a.creds.clone());
        client.wait_for(|s| *s == ConnState::Connected).await;
        let connections = sim.connections_accepted();
        let sent = client.send_text(&user(bob), "are you there").await.unwrap();
        assert_eq!(sent.status, MessageStatus::Pending);
        // Tried again on the same connection, not only at the next login.
        eventually("two more tries", async || {
            (sim.transmissions(&sent.id).held >= 3).then_some(())
        })
        .await;
        assert_eq!(sim.connections_accepted(), connections, "no new connection");
        // An hour after it was sent it is given up: failed, and said.
        clock.set(now + 3600);
        next_event(&mut events, |e| {
            matches!(e, Event::Receipt { id, status: MessageStatus::Failed, .. } if *id == sent.id)
        })
        .await;
        let row = a
            .creds
            .sent_message(&sent.chat, &sent.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.status, MessageStatus::Failed);
        let evs = a.store.webhook_events(acct, None, 50, 0).await.unwrap();
        assert!(
            evs.iter()
                .any(|e| e.kind == "message.status" && e.status.as_deref() == Some("failed")),
            "{evs:?}"
        );
        drop(client);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn one_id_sent_to_two_chats_at_once_gets_both_acks() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (me, bob, carol) = ("15550080000", "15550081000", "15550082000");
        let a = account().await;
        let (client, _e, _) = link(&sim, &a, me).await;
        sim.set_devices(bob, 1).unwrap();
        sim.set_devices(carol, 1).unwrap();
        drop(client);
        // Both stanzas wait at the server, so both attempts wait for their acks at once.
        assert_eq!(sim.fault(me, Fault::WithholdAcks(true)).await, 1);
        let mut opts = options(&sim);
        opts.messaging.ack_timeout = Duration::from_secs(20);
        let (client, _e) = Client::start(opts, a.creds.clone());
        client.wait_for(|s| *s == ConnState::Connected).await;
        let client = Arc::new(client);
        let send = |to: &'static str| {
            let c = client.clone();
            tokio::spawn(async move { c.send_text_with_id(&user(to), to, "SAMEID0001").await })
        };
        let (to_bob, to_carol) = (send(bob), send(carol));
        eventually("both held", async || {
            (sim.transmissions("SAMEID0001").held == 2).then_some(())
        })
        .await;
        assert_eq!(sim.fault(me, Fault::WithholdAcks(false)).await, 1);
        for sent in [to_bob.await.unwrap(), to_carol.await.unwrap()] {
            assert_eq!(sent.unwrap().status, MessageStatus::ServerAck);
        }
        let wire = sim.transmissions("SAMEID0001");
        assert_eq!((wire.originals, wire.refused), (2, 0), "{wire:?}");
    })
    .await
    .expect("in time");
}

impl wa_gateway::client::store::AccountStore for Crashy {
    async fn apply_account_changes(
        &self,
        chats: &[wa_gateway::client::ChatChange],
        contacts: &[wa_gateway::client::ContactChange],
    ) -> StoreResult<()> {
        self.inner.apply_account_changes(chats, contacts).await
    }
    async fn store_history(&self, batch: &wa_gateway::client::HistoryBatch) -> StoreResult<usize> {
        self.inner.store_history(batch).await
    }
    async fn chats(
        &self,
        limit: u32,
        skip: u32,
    ) -> StoreResult<Vec<wa_gateway::client::ChatSummary>> {
        self.inner.chats(limit, skip).await
    }
    async fn contacts(
        &self,
        limit: u32,
        skip: u32,
    ) -> StoreResult<Vec<wa_gateway::client::Contact>> {
        self.inner.contacts(limit, skip).await
    }
    async fn contact(&self, jid: &Jid) -> StoreResult<Option<wa_gateway::client::Contact>> {
        self.inner.contact(jid).await
    }
    async fn oldest_message(&self, chat: &Jid) -> StoreResult<Option<StoredMessage>> {
        self.inner.oldest_message(chat).await
    }
}

impl wa_gateway::client::history_store::PendingHistoryStore for Crashy {
    async fn queue_history(
        &self,
        id: &str,
        notification: &[u8],
    ) -> StoreResult<wa_gateway::client::history_store::Queued> {
        self.inner.queue_history(id, notification).await
    }
    async fn next_history(
        &self,
        after: i64,
    ) -> StoreResult<Option<wa_gateway::client::history_store::PendingHistory>> {
        self.inner.next_history(after).await
    }
    async fn history_attempt(&self, id: &str) -> StoreResult<u32> {
        self.inner.history_attempt(id).await
    }
    async fn history_stored(&self, id: &str) -> StoreResult<()> {
        self.inner.history_stored(id).await
    }
    async fn history_receipts_due(&self) -> StoreResult<Vec<String>> {
        self.inner.history_receipts_due().await
    }
    async fn forget_history(&self, id: &str) -> StoreResult<()> {
        self.inner.forget_history(id).await
    }
}
