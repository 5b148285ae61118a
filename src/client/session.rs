//! A logged-in connection: wait for `<success>`, go active, keep alive, answer pings, ack
//! notifications, decrypt messages (receipt after what they taught us is stored), and keep the
//! server's one-time prekeys topped up.

use std::sync::Arc;

use super::events::{ConnState, Event};
use super::failure::{failure_outcome, stream_end};
use super::iq::IqError;
use super::link::{IQ_TIMEOUT, Link};
use super::messenger::Messenger;
use super::pair::iq_result;
use super::reconnect::Setback;
use super::run::{Outcome, Run, Tasks};
use super::store::{Creds, CredsStore};
use crate::binary::{Jid, Node};
use crate::signal::store::PreKeyStore;
use crate::socket::{Incoming, NodeSender, NoiseSocket};
use tokio::sync::mpsc;
use tracing::Instrument;

impl<S: CredsStore> Run<S> {
    /// A login connection: wait for success, then keep alive until it ends.
    pub(super) async fn logged_in(
        &mut self,
        s: NoiseSocket,
        creds: Arc<Creds>,
        jid: Jid,
    ) -> Outcome {
        let outcome = self.serve_logged_in(s, creds, jid).await;
        self.link.set_heard(None);
        self.link.set_sender(None);
        self.link.set_own(None);
        self.link.iq.fail_all();
        outcome
    }

    async fn serve_logged_in(
        &mut self,
        mut s: NoiseSocket,
        creds: Arc<Creds>,
        jid: Jid,
    ) -> Outcome {
        // Boxed: a one-off step whose future (2.2 KB) would otherwise size the whole idle
        // connection's future (rustc -Zprint-type-sizes).
        Box::pin(self.messenger.set_account(&creds)).await;
        self.link.set_own(Some(jid.clone()));
        tracing::Span::current().record("jid", tracing::field::display(&jid));
        let mut tasks = Tasks(Vec::new());
        let link = self.link.clone();
        let keepalive = self.opts.keepalive.run(&link.iq, &s.sender);
        tokio::pin!(keepalive);
        // Messages, receipts and acks are handled in order by one worker, so a slow store
        // never delays the reader (pongs, iq answers) behind it. Aborting the worker with the
        // connection is safe: each message is committed whole before its receipt, or not at
        // all and redelivered.
        // Boxed: the channel's first block of slots is allocated up front, per connection.
        let (work, mut queue) = mpsc::channel::<Box<Node>>(WORK_QUEUE);
        let worker = {
            let (messenger, sender) = (self.messenger.clone(), s.sender.clone());
            tokio::spawn(
                async move {
                    while let Some(node) = queue.recv().await {
                        // Boxed per stanza: handling one is a large future (14 KB of the
                        // idle worker's task when inline, massif), and the worker idles.
                        Box::pin(messenger.handle(&sender, *node)).await;
                    }
                }
                .in_current_span(),
            )
        };
        // Aborted with the connection unless a graceful stop drains it first.
        let worker = AbortOnDrop(Some(worker));
        let stuck_after = self.opts.messaging.stuck_after;
        let mut stuck_tick =
            tokio::time::interval((stuck_after / 4).max(std::time::Duration::from_millis(50)));
        // Offline delivery: batches asked for until the server's end marker.
        let mut offline: Option<u32> = None;
        loop {
            tokio::select! {
                _ = link.stop.requested() => {
                    // A graceful stop: what was read is handled (stored, receipted) first.
                    drop(work);
                    worker.drain(SHUTDOWN_DRAIN).await;
                    return Outcome::Final(ConnState::Stopped);
                }
                why = &mut keepalive => return Outcome::Retry(Setback::Transient, "keepalive_timeout", why),
                _ = stuck_tick.tick() => self.messenger.flag_stuck(stuck_after),
                ev = s.incoming.recv() => {
                    let node = match ev {
                        Some(Incoming::Node(n)) => {
                            link.set_heard(Some(tokio::time::Instant::now()));
                            n
                        }
                        Some(Incoming::Malformed(_)) => continue,
                        Some(Incoming::Closed(e)) => {
                            let why = e.map(|e| e.to_string()).unwrap_or_else(|| "closed by server".into());
                            return Outcome::Retry(Setback::Transient, "connection_lost", why);
                        }
                        None => return Outcome::Retry(Setback::Transient, "connection_lost", "closed by server".into()),
                    };
                    if link.iq.resolve(&node) {
                        continue;
                    }
                    match node.tag.as_ref() {
                        "success" => {
                            link.set_sender(Some(s.sender.clone()));
                            tasks.spawn(after_login(
                                link.clone(),
                                s.sender.clone(),
                                self.store.clone(),
                                creds.clone(),
                                self.messenger.clone(),
                                self.opts.messaging.announce_available,
                            ).in_current_span());
                            self.set(ConnState::Connected).await;
                            self.emit(Event::Connected { jid: jid.clone() }).await;
                        }
                        "failure" => return failure_outcome(&node, &self.opts.profile),
                        "message" | "receipt" | "ack" => {
                            if let Some(seen) = offline.as_mut()
                                && node.get("offline").is_some()
                            {
                                *seen += 1;
                                if *seen % OFFLINE_BATCH == 0 {
                                    let _ = s.sender.send(&offline_batch()).await;
                                }
                            }
                            if work.send(node).await.is_err() {
                                return Outcome::Retry(Setback::Transient, "internal", "message worker stopped".into());
                            }
                        }
                        "iq" => {
                            // Server pings must be answered.
                            if node.get_str("xmlns").as_deref() == Some("urn:xmpp:ping") && node.get_str("type").as_deref() == Some("get")
                                && let Some(id) = node.get_str("id")
                            {
                                let _ = s.sender.send(&iq_result(&id)).await;
                            }
                        }
                        "ib" => {
                            // Queued stanzas are waiting: ask for them (the server sends them in
                            // batches on request, MESSAGING.md §2.5).
                            if node.child("offline_preview").is_some() {
                                offline = Some(0);
                                let _ = s.sender.send(&offline_batch()).await;
                            } else if let Some(done) = node.child("offline") {
                                offline = None;
                                let count = done.get_str("count").and_then(|c| c.parse().ok()).unwrap_or(0);
                                tracing::debug!(count, "offline delivery complete");
                                self.emit(Event::OfflineSync { count }).await;
                            }
                        }
                        // Group changes and privacy tokens are acked by the messenger once
                        // stored (a crash before that gets them redelivered).
                        "notification" if matches!(node.get_str("type").as_deref(), Some("w:gp2" | "privacy_token")) => {
                            let _ = work.send(node).await;
                        }
                        "notification" => {
                            let _ = s.sender.send(&crate::stanza::ack(&node, None)).await;
                            // The server's low-prekey notice (whatsmeow handleEncryptNotification).
                            if node.get_str("type").as_deref() == Some("encrypt")
                                && let Some(n) = super::prekeys::parse_count(&node)
                            {
                                let (link, sender, store, creds) = (link.clone(), s.sender.clone(), self.store.clone(), creds.clone());
                                tasks.spawn(async move {
                                    if let Err(e) = refill_pre_keys(&link, &sender, &*store, &creds, n).await {
                                        tracing::warn!(error = %e, "prekey refill failed");
                                    }
                                }.in_current_span());
                            } else if matches!(node.get_str("type").as_deref(), Some("devices" | "mex" | "mediaretry" | "server_sync")) {
                                let _ = work.send(node).await;
                            }
                        }
                        _ => {
                            if let Some(o) = stream_end(&node) {
                                return o;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How long a graceful stop waits for the message worker to finish what it read.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// A task aborted when dropped (the connection ended) unless drained.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl AbortOnDrop {
    /// Waits up to `limit` for the task to end by itself.
    async fn drain(mut self, limit: std::time::Duration) {
        if let Some(h) = self.0.as_mut() {
            let _ = tokio::time::timeout(limit, h).await;
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// Stanzas waiting for the message worker before the reader waits for it.
const WORK_QUEUE: usize = 1024;
/// Offline stanzas asked for per batch (WhatsApp Web asks 200 at a time; Baileys 100).
const OFFLINE_BATCH: u32 = 200;

/// `<ib><offline_batch count>`: the next batch of queued stanzas, please.
fn offline_batch() -> Node {
    Node::new("ib").children(vec![
        Node::new("offline_batch").attr("count", OFFLINE_BATCH.to_string()),
    ])
}

/// After `<success>`: go active, then top up prekeys (PROTOCOL.md §7.3).
async fn after_login<S: CredsStore>(
    link: Arc<Link>,
    sender: NodeSender,
    store: Arc<S>,
    creds: Arc<Creds>,
    messenger: Arc<Messenger<S>>,
    announce_available: bool,
) {
    let passive = Node::new("iq")
        .attr("xmlns", "passive")
        .attr("type", "set")
        .children(vec![Node::new("active")]);
    // This task lives as long as the connection (the resend loop ends it), and a future is as
    // large as its largest state: what runs once is boxed, so the idle loop keeps only itself.
    if let Err(e) = Box::pin(link.iq.query(&sender, passive, IQ_TIMEOUT)).await {
        tracing::warn!(error = %e, "passive/active iq failed");
    }
    if announce_available {
        let mut presence = Node::new("presence").attr("type", "available");
        if let Some(name) = creds.me.as_ref().and_then(|m| m.push_name.clone()) {
            presence = presence.attr("name", name);
        }
        let _ = Box::pin(sender.send(&presence)).await;
    }
    // History chunks an earlier run kept resume, and receipts due go out (the worker does it).
    messenger.wake_history_round();
    // Keys first (a device without keys on the server cannot be written to), then what a
    // crash or a drop left unsent, with its ids, and whatever later sends leave unacked, for
    // as long as the connection lives (this task is aborted with it).
    Box::pin(top_up(&link, &sender, &*store, &creds)).await;
    // Catch up on app state changed while we were away (the worker does the syncing).
    Box::pin(messenger.app_state_after_login()).await;
    // The new-chat capping as it stands (the outbox gate reads it); the time-lock is pushed
    // by WhatsApp and asked after a 463.
    Box::pin(messenger.refresh_capping()).await;
    messenger.resend_loop().await;
}

/// The prekey count, and an upload when the server holds too few.
async fn top_up<S: CredsStore>(link: &Link, sender: &NodeSender, store: &S, creds: &Creds) {
    let count = match link
        .iq
        .query(sender, super::prekeys::count_query(), IQ_TIMEOUT)
        .await
    {
        Ok(answer) => super::prekeys::parse_count(&answer),
        Err(e) => {
            tracing::warn!(error = %e, "prekey count query failed");
            return;
        }
    };
    let Some(n) = count else {
        tracing::warn!("prekey count answer without a count");
        return;
    };
    if let Err(e) = refill_pre_keys(link, sender, store, creds, n).await {
        tracing::warn!(error = %e, "prekey upload failed");
    }
}

/// Why a refill did not happen.
#[derive(Debug, thiserror::Error)]
enum RefillError {
    #[error(transparent)]
    Store(#[from] crate::signal::StoreError),
    #[error(transparent)]
    Iq(#[from] IqError),
}

/// Uploads prekeys when the server holds too few; keys are stored before they are offered.
async fn refill_pre_keys<S: CredsStore>(
    link: &Link,
    sender: &NodeSender,
    store: &S,
    creds: &Creds,
    server_count: u32,
) -> Result<(), RefillError> {
    let _one_at_a_time = link.refill.lock().await;
    let signal = store.signal();
    let allocated = signal.pre_keys_allocated().await?;
    let Some(n) = super::prekeys::wanted(server_count, allocated) else {
        return Ok(());
    };
    let keys = signal.create_pre_keys(n).await?;
    let node = super::prekeys::upload_node(
        creds.registration_id,
        &creds.identity.public,
        &keys,
        &creds.signed_pre_key,
    );
    link.iq.query(sender, node, IQ_TIMEOUT).await?;
    Ok(())
}
