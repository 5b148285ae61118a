//! A logged-in connection: wait for `<success>`, go active, keep alive, answer pings, ack
//! notifications, decrypt messages (receipt after what they taught us is stored), and keep the
//! server's one-time prekeys topped up.

use std::sync::Arc;

use super::events::{ConnState, Event};
use super::failure::{failure_outcome, stream_end};
use super::iq::IqError;
use super::pair::iq_result;
use super::reconnect::Setback;
use super::run::{IQ_TIMEOUT, Link, Outcome, Run, Tasks, stopped};
use super::store::{Creds, CredsStore};
use crate::binary::{Jid, Node};
use crate::signal::store::PreKeyStore;
use crate::signal::{IdentityTrust, SessionCipher};
use crate::socket::{Incoming, NodeSender, NoiseSocket};

impl<S: CredsStore> Run<S> {
    /// A login connection: wait for success, then keep alive until it ends.
    pub(super) async fn logged_in(&mut self, s: NoiseSocket, creds: Creds, jid: Jid) -> Outcome {
        let outcome = self.serve_logged_in(s, creds, jid).await;
        self.link.set_sender(None);
        self.link.iq.fail_all();
        outcome
    }

    async fn serve_logged_in(&mut self, mut s: NoiseSocket, mut creds: Creds, jid: Jid) -> Outcome {
        let cipher = SessionCipher::new(self.store.signal(), IdentityTrust::AcceptChanges,
        );
        let mut stop = self.stop.clone();
        let mut tasks = Tasks(Vec::new());
        let link = self.link.clone();
        let keepalive = self.opts.keepalive.run(&link.iq, &s.sender);
        tokio::pin!(keepalive);
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return Outcome::Final(ConnState::Stopped),
                why = &mut keepalive => return Outcome::Retry(Setback::Transient, why),
                ev = s.incoming.recv() => {
                    let node = match ev {
                        Some(Incoming::Node(n)) => *n,
                        Some(Incoming::Malformed(_)) => continue,
                        Some(Incoming::Closed(e)) => {
                            let why = e.map(|e| e.to_string()).unwrap_or_else(|| "closed by server".into());
                            return Outcome::Retry(Setback::Transient, why);
                        }
                        None => return Outcome::Retry(Setback::Transient, "closed by server".into()),
                    };
                    if link.iq.resolve(&node) {
                        continue;
                    }
                    match node.tag.as_ref() {
                        "success" => {
                            link.set_sender(Some(s.sender.clone()));
                            tasks.push(tokio::spawn(after_login(link.clone(), s.sender.clone(), self.store.clone(), creds.clone())));
                            self.set(ConnState::Connected).await;
                            self.emit(Event::Connected { jid: jid.clone() }).await;
                        }
                        "failure" => return failure_outcome(&node, &self.opts.profile),
                        "message" => Box::pin(self.on_message(&s.sender, &cipher, &mut creds, &node)).await,
                        "iq" => {
                            // Server pings must be answered.
                            if node.get_str("xmlns").as_deref() == Some("urn:xmpp:ping") && node.get_str("type").as_deref() == Some("get")
                                && let Some(id) = node.get_str("id")
                            {
                                let _ = s.sender.send(&iq_result(&id)).await;
                            }
                        }
                        "notification" => {
                            let _ = s.sender.send(&ack(&node)).await;
                            // The server's low-prekey notice (whatsmeow handleEncryptNotification).
                            if node.get_str("type").as_deref() == Some("encrypt")
                                && let Some(n) = super::prekeys::parse_count(&node)
                            {
                                let (link, sender, store, creds) = (link.clone(), s.sender.clone(), self.store.clone(), creds.clone());
                                tasks.push(tokio::spawn(async move {
                                    if let Err(e) = refill_pre_keys(&link, &sender, &*store, &creds, n).await {
                                        tracing::warn!(error = %e, "prekey refill failed");
                                    }
                                }));
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

impl<S: CredsStore> Run<S> {
    /// Decrypts a message, learns our push name from our own devices' messages, and answers
    /// with the receipt once what it taught us is stored.
    async fn on_message(
        &self,
        sender: &NodeSender,
        cipher: &SessionCipher<S::Signal>,
        creds: &mut Creds,
        node: &Node,
    ) {
        let Some(me) = creds.me.as_mut() else { return };
        let received = match super::recv::decrypt(cipher, node, me).await {
            Ok(r) => r,
            Err(e) => {
                // Retry receipts and the undecryptable report come with messaging.
                tracing::warn!(error = %e, "message not decrypted");
                return;
            }
        };
        if received.from_me
            && let Some(name) = received.push_name.clone().filter(|n| !n.is_empty())
            && me.push_name.as_deref() != Some(name.as_str())
        {
            me.push_name = Some(name.clone());
            if let Err(e) = self.store.save(creds).await {
                // Unreceipted, the server delivers it again.
                tracing::warn!(error = %e, "cannot store push name");
                return;
            }
            self.emit(Event::PushName { name }).await;
        }
        let _ = sender.send(&super::recv::receipt(&received)).await;
    }
}

/// After `<success>`: go active, then top up prekeys (PROTOCOL.md §7.3).
async fn after_login<S: CredsStore>(
    link: Arc<Link>,
    sender: NodeSender,
    store: Arc<S>,
    creds: Creds,
) {
    let passive = Node::new("iq")
        .attr("xmlns", "passive")
        .attr("type", "set")
        .children(vec![Node::new("active")]);
    if let Err(e) = link.iq.query(&sender, passive, IQ_TIMEOUT).await {
        tracing::warn!(error = %e, "passive/active iq failed");
    }
    let count = match link
        .iq
        .query(&sender, super::prekeys::count_query(), IQ_TIMEOUT)
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
    if let Err(e) = refill_pre_keys(&link, &sender, &*store, &creds, n).await {
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

/// `<ack class=tag id to [type]/>` for a received notification.
fn ack(node: &Node) -> Node {
    let mut a = Node::new("ack").attr("class", node.tag.to_string());
    if let Some(id) = node.get_str("id") {
        a = a.attr("id", id.into_owned());
    }
    if let Some(from) = node.get("from") {
        a = a.attr("to", from.clone());
    }
    if let Some(t) = node.get_str("type") {
        a = a.attr("type", t.into_owned());
    }
    a
}
