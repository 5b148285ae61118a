//! Receipts and acks: the server's ack of our sends, devices' delivery/read/played receipts
//! (single and aggregated), our read receipts, and sends stuck without a receipt.

use std::time::Duration;

use super::{Ack, Messenger, SendError, bump};
use crate::binary::{Jid, Node, Server};
use crate::client::events::Event;
use crate::client::messages::{MessageStatus, StatusUpdate};
use crate::client::recv::is_me;
use crate::client::store::CredsStore;
use crate::socket::NodeSender;
use crate::stanza;

/// Devices read from one aggregated group receipt at most (a group has at most 1,024 members,
/// each with a handful of devices).
pub(super) const MAX_GROUPED_RECEIPTS: usize = 8192;

/// Sent messages watched for a receipt at most (beyond, new ones are not watched).
pub(super) const WATCHED: usize = 10_000;

impl<S: CredsStore> Messenger<S> {
    /// Flags (once) every server-acked message no device receipted within `after`.
    pub(in crate::client) fn flag_stuck(&self, after: Duration) {
        let stuck: Vec<(Jid, String)> = match self.watched.lock() {
            Ok(mut w) => {
                let old: Vec<(Jid, String)> = w
                    .iter()
                    .filter(|(_, since)| since.elapsed() >= after)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in &old {
                    w.remove(k);
                }
                old
            }
            Err(_) => return,
        };
        for (chat, id) in stuck {
            bump(&self.counters.stuck);
            tracing::info!(chat = %chat, id, "message still not delivered to any device");
            self.publish(Event::Stuck { chat, id });
        }
    }

    // ---- receipts and acks ----

    /// A receipt: acked once what it says is stored (a crash before that gets it redelivered);
    /// a retry receipt once it was handled, answered or not (answering it again after a
    /// redelivery would not fare better, and the peer asks again by itself).
    pub(super) async fn on_receipt(&self, sender: &NodeSender, node: &Node) {
        if self.read_receipt(sender, node).await {
            let _ = sender.send(&stanza::ack(node, None)).await;
        }
    }

    /// Handles a receipt; false when what it says could not be stored (left unacked).
    async fn read_receipt(&self, sender: &NodeSender, node: &Node) -> bool {
        let Some(from) = node.get_jid("from") else {
            return true;
        };
        // A group receipt comes from the group and names the device in `participant`.
        let (from, group) = match (from.server == Server::Group, node.get_jid("participant")) {
            (true, Some(p)) => (p, Some(from.to_non_ad())),
            (true, None) => return self.on_grouped_receipt(&from.to_non_ad(), node).await,
            _ => (from, None),
        };
        // Only our own devices report on another chat (`recipient`); anyone else's receipt is
        // about the chat with them, whatever it claims.
        let own = self.account().is_some_and(|a| is_me(&from, &a.me));
        let recipient = node.get_jid("recipient").filter(|_| own);
        let chat = match group {
            Some(g) => g,
            None => self
                .canonical(&recipient.unwrap_or_else(|| from.to_non_ad()))
                .await
                .to_non_ad(),
        };
        let kind = node.get_str("type").map(|s| s.into_owned());
        if kind.as_deref() == Some("retry") {
            if let Some(mut req) = stanza::parse_retry(node) {
                req.from = from.clone();
                if let Err(e) = self.answer_retry(sender, &chat, &req).await {
                    tracing::warn!(error = %e, id = req.id, "cannot answer retry receipt");
                }
            }
            return true;
        }
        let Some(status) = MessageStatus::from_receipt(kind.as_deref()) else {
            return true;
        };
        let t = node
            .get_str("t")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| self.clock.now_unix());
        let mut stored = true;
        for id in stanza::receipt_ids(node) {
            stored &= self.record_receipt(&chat, id, &from, status, t).await;
        }
        stored
    }

    /// A device's receipt moves `id` up the ladder (stored, then evented); false when it
    /// could not be stored.
    pub(super) async fn record_receipt(
        &self,
        chat: &Jid,
        id: String,
        device: &Jid,
        status: MessageStatus,
        t: u64,
    ) -> bool {
        if let Ok(mut w) = self.watched.lock() {
            w.remove(&(chat.clone(), id.clone()));
        }
        let update = StatusUpdate {
            chat: chat.clone(),
            id: id.clone(),
            device: Some(device.clone()),
            status,
            error: None,
            t,
        };
        match self.store.update_status(&update).await {
            Ok(_) => {
                self.publish(Event::Receipt {
                    chat: chat.clone(),
                    id,
                    device: Some(device.clone()),
                    status,
                    error: None,
                });
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot store receipt; it will be redelivered");
                false
            }
        }
    }

    /// A group's receipts aggregated by the server: `<participants key=<id>><user jid t
    /// [type]/>…` (MESSAGING.md §2.8).
    /// False when one of them could not be stored.
    pub(super) async fn on_grouped_receipt(&self, group: &Jid, node: &Node) -> bool {
        let kind = node.get_str("type").map(|s| s.into_owned());
        let now = self.clock.now_unix();
        let mut stored = true;
        for parts in node
            .child_nodes()
            .iter()
            .filter(|c| c.tag == "participants")
        {
            let Some(id) = parts.get_str("key").map(|k| k.into_owned()) else {
                continue;
            };
            for user in parts
                .child_nodes()
                .iter()
                .filter(|u| u.tag == "user")
                .take(MAX_GROUPED_RECEIPTS)
            {
                let Some(device) = user.get_jid("jid") else {
                    continue;
                };
                let kind = user
                    .get_str("type")
                    .map(|s| s.into_owned())
                    .or(kind.clone());
                let Some(status) = MessageStatus::from_receipt(kind.as_deref()) else {
                    continue;
                };
                let t = user
                    .get_str("t")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(now);
                stored &= self
                    .record_receipt(group, id.clone(), &device, status, t)
                    .await;
            }
        }
        stored
    }

    pub(super) async fn on_ack(&self, node: &Node) {
        if node.get_str("class").as_deref() != Some("message") {
            return;
        }
        let (Some(id), Some(to)) = (
            node.get_str("id").map(|s| s.into_owned()),
            node.get_jid("from"),
        ) else {
            return;
        };
        let ack = Ack {
            t: node.get_str("t").and_then(|t| t.parse().ok()),
            error: node.get_str("error").and_then(|e| e.parse().ok()),
            phash: node.get_str("phash").map(|p| p.into_owned()),
        };
        // A send waiting for it decides (it may fall back to another addressing first). The
        // ack names the chat the stanza went `to` and its id: the waiter's key.
        let key = (to.to_non_ad(), id.clone());
        let waiter = self.acks.lock().ok().and_then(|mut a| a.remove(&key));
        let ack = match waiter {
            Some(w) => match w.answer(ack) {
                Ok(()) => return,
                Err(ack) => ack,
            },
            None => ack,
        };
        let chat = self.canonical(&to).await.to_non_ad();
        self.record_ack(&chat, &id, &ack).await;
    }

    /// Moves a sent message to `server_ack` or `failed(code)` and says so.
    pub(super) async fn record_ack(&self, chat: &Jid, id: &str, ack: &Ack) {
        let (status, error) = match ack.error {
            Some(code) if code != 0 => {
                bump(&self.counters.refused);
                if code == 463 {
                    bump(&self.counters.refused_463);
                }
                if code == 463 || code == 475 {
                    // A 463 may be the account's reach-out time-lock, a 475 its new-chat cap:
                    // learn both (Baileys means to for 463, but its branch sits behind the
                    // tctoken one for the same code).
                    self.refresh_limits().await;
                }
                (MessageStatus::Failed, Some(code))
            }
            _ => (MessageStatus::ServerAck, None),
        };
        let update = StatusUpdate {
            chat: chat.clone(),
            id: id.to_owned(),
            device: None,
            status,
            error,
            t: ack.t.unwrap_or_else(|| self.clock.now_unix()),
        };
        match self.store.update_status(&update).await {
            Ok(Some(s)) => {
                // Watched for a receipt unless one came first (it can overtake the ack).
                if s == MessageStatus::ServerAck
                    && let Ok(mut w) = self.watched.lock()
                    && w.len() < WATCHED
                {
                    w.insert((chat.clone(), id.to_owned()), std::time::Instant::now());
                }
                self.publish(Event::Receipt {
                    chat: chat.clone(),
                    id: id.to_owned(),
                    device: None,
                    status: s,
                    error,
                })
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot store ack"),
        }
    }
    /// Sends read receipts for `ids` of `sender` in `chat`.
    pub(in crate::client) async fn mark_read(
        &self,
        chat: Jid,
        author: Jid,
        ids: Vec<String>,
    ) -> Result<(), SendError> {
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        let Some((first, rest)) = ids.split_first() else {
            return Ok(());
        };
        let mut n = Node::new("receipt")
            .attr("id", first.clone())
            .attr("to", chat.to_non_ad())
            .attr("type", "read")
            .attr("t", self.clock.now_unix().to_string());
        if author.to_non_ad() != chat.to_non_ad() {
            n = n.attr("participant", author.to_non_ad());
        }
        if !rest.is_empty() {
            n = n.children(vec![
                Node::new("list").children(
                    rest.iter()
                        .map(|i| Node::new("item").attr("id", i.clone()))
                        .collect(),
                ),
            ]);
        }
        sender.send(&n).await.map_err(|_| SendError::NotConnected)?;
        Ok(())
    }
}
