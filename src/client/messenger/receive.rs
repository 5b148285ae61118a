//! Receiving 1:1 messages: dedupe, decrypt under the session lock, commit the Signal advance
//! with the row, then the receipt; undecryptable ones get a retry receipt (MESSAGING.md §2).

use prost::Message as _;

use super::{MAX_RETRIES, Messenger, bump};
use crate::binary::{Jid, Node, Server};
use crate::client::content::{Classified, Kind, classify, stored};
use crate::client::events::Event;
use crate::client::messages::{Committed, MessageStatus, StoredMessage};
use crate::client::recv::{is_me, unpad};
use crate::client::store::{CredsStore, CredsStoreError};
use crate::proto::wa;
use crate::signal::store::{ApplyChanges, PreKeyStore};
use crate::signal::{EncType, IdentityChange, ProtocolAddress, SignalError};
use crate::socket::NodeSender;
use crate::stanza;

/// Where a copy our other device sent went: the device-sent envelope's destination.
pub(super) fn device_sent_destination(message: &wa::Message) -> Option<Jid> {
    message
        .device_sent_message
        .as_ref()?
        .destination_jid
        .as_deref()?
        .parse::<Jid>()
        .ok()
        .map(|j| j.to_non_ad())
}

/// The row a plaintext makes (`base` names who, where and when), classified from the bytes as
/// they arrived, which the row keeps; None for a protocol payload (key distributions,
/// settings, device-to-device traffic), which is no conversation row.
pub(super) fn row_of(plain: &[u8], base: StoredMessage) -> Option<StoredMessage> {
    let content = match classify(plain) {
        Ok(Classified::Protocol) => return None,
        Ok(Classified::Stored(c)) => c,
        // It decrypted: these are the sender's own bytes, and asking again brings the same.
        // Kept whole as `unknown`, never retried or dropped.
        Err(e) => stored(
            Kind::Unknown,
            None,
            serde_json::json!({ "undecodable": e.to_string() }),
        ),
    };
    Some(StoredMessage {
        text: content.text,
        raw: plain.to_vec(),
        kind: content.kind,
        content: content.details,
        ephemeral: content.ephemeral,
        view_once: content.view_once,
        target: content.target.map(|t| t.id),
        media: content.media.map(|m| *m),
        ..base
    })
}

/// The delivery receipt for a message we stored (or had stored): `peer_msg` between our own
/// devices, `sender` for what another of our devices sent, plain delivery otherwise (we
/// announce ourselves available, so no `inactive`).
pub(super) fn receipt(node: &Node, from_me: bool, peer: bool) -> Node {
    let mut n = Node::new("receipt");
    if let Some(id) = node.get("id") {
        n = n.attr("id", id.clone());
    }
    if let Some(from) = node.get("from") {
        n = n.attr("to", from.clone());
    }
    if let Some(p) = node.get("participant") {
        n = n.attr("participant", p.clone());
    }
    if peer {
        n = n.attr("type", "peer_msg");
    } else if from_me {
        n = n.attr("type", "sender");
        if let Some(r) = node.get("recipient") {
            n = n.attr("recipient", r.clone());
        }
    }
    n
}

impl<S: CredsStore> Messenger<S> {
    // ---- receiving ----

    pub(super) async fn on_message(&self, sender: &NodeSender, node: &Node) {
        let Some(account) = self.account() else {
            return;
        };
        let me = &account.me;
        let (Some(id), Some(from)) = (
            node.get_str("id").map(|s| s.into_owned()),
            node.get_jid("from"),
        ) else {
            // Nothing to answer it by: drop it (the reader already counted it malformed).
            return;
        };
        if from.server == Server::Group {
            return self
                .on_group_message(sender, node, &account, id, from)
                .await;
        }
        if node.get("participant").is_some()
            || from.server != Server::User && from.server != Server::Lid
        {
            // Status and broadcast lists are not handled: say so (the server stops
            // redelivering, and nothing is stored as if it were read).
            let _ = sender.send(&stanza::ack(node, Some(488))).await;
            return;
        }
        let from_me = is_me(&from, me);
        if node.get("recipient").is_some() && !from_me {
            let _ = sender.send(&stanza::ack(node, Some(488))).await;
            return;
        }
        // What the server tells us about who is who, before the session is looked up.
        self.learn_from_attrs(node, &from).await;
        let from = self.canonical(&from).await;
        let chat = match node.get_jid("recipient") {
            Some(r) => self.canonical(&r).await.to_non_ad(),
            None => from.to_non_ad(),
        };
        let author = if from_me {
            self.canonical(&me.jid).await.to_non_ad()
        } else {
            from.to_non_ad()
        };
        let peer = node.get_str("category").as_deref() == Some("peer");
        // A redelivery of what we already stored: answer it again, touch nothing.
        match self.store.has_message(&chat, &author, &id).await {
            Ok(true) => {
                let _ = sender.send(&receipt(node, from_me, peer)).await;
                return;
            }
            Ok(false) => {}
            // Unanswered, the server delivers it again.
            Err(e) => {
                tracing::warn!(error = %e, "message store unavailable");
                return;
            }
        }
        let Some(enc) = node.child_nodes().iter().find(|c| c.tag == "enc") else {
            let _ = sender.send(&stanza::ack(node, Some(488))).await;
            return;
        };
        let kind = enc.get_str("type").unwrap_or_default();
        let Some(kind) = EncType::parse(&kind) else {
            let _ = sender.send(&stanza::ack(node, Some(488))).await;
            return;
        };
        let Some(ciphertext) = enc.content_bytes() else {
            let _ = sender.send(&stanza::ack(node, Some(491))).await;
            return;
        };
        let addr = ProtocolAddress::from_jid(&from);
        let lock = self.cipher.lock_session(&addr).await;
        let decrypted = self
            .cipher
            .decrypt_staged(&lock, &addr, kind, ciphertext)
            .await;
        let (plain, changes) = match decrypted {
            Ok((d, changes)) => {
                if d.identity == IdentityChange::Changed {
                    bump(&self.counters.identity_changes);
                    self.publish(Event::IdentityChanged { jid: from.clone() });
                }
                (d.plaintext, changes)
            }
            // An old counter: we decrypted it before (its row may be a protocol message we
            // do not store). whatsmeow answers it with the receipt too.
            Err(SignalError::DuplicateMessage { .. }) => {
                drop(lock);
                let _ = sender.send(&receipt(node, from_me, peer)).await;
                return;
            }
            Err(e) => {
                drop(lock);
                self.undecryptable(sender, node, &from, &id, e.to_string(), (&chat, &author))
                    .await;
                return;
            }
        };
        let unpadded = match unpad(&plain) {
            Ok(b) => b,
            Err(e) => {
                // Nothing readable: nothing is stored (the session stays where it was), and
                // the retry receipt asks for the message again.
                drop(lock);
                self.undecryptable(sender, node, &from, &id, e.to_string(), (&chat, &author))
                    .await;
                return;
            }
        };
        let message = match wa::Message::decode(unpadded) {
            Ok(m) => m,
            Err(e) => {
                drop(lock);
                self.undecryptable(sender, node, &from, &id, e.to_string(), (&chat, &author))
                    .await;
                return;
            }
        };
        if from_me {
            // History sync is accepted only from our own account (CLIENT-FEATURES §5.1);
            // kept before the session advance, unreceipted if it cannot be (the worker
            // takes it from the store, so a crash after the receipt loses nothing).
            if !self.on_history_notification(node, &message).await {
                drop(lock);
                return;
            }
            // So are app-state keys (whatsmeow `handleProtocolMessage` checks IsFromMe);
            // stored before the session advance, unreceipted if they cannot be.
            if let Some(share) = message
                .protocol_message
                .as_ref()
                .and_then(|p| p.app_state_sync_key_share.as_ref())
                && !self.on_key_share(share).await
            {
                drop(lock);
                return;
            }
            // A peer-data answer counts only from our primary phone (device 0).
            if from.device == 0
                && let Some(r) = message
                    .protocol_message
                    .as_ref()
                    .and_then(|p| p.peer_data_operation_request_response_message.as_ref())
            {
                for result in r.peer_data_operation_result.iter().take(16) {
                    if let Some(rec) = &result.syncd_snapshot_fatal_recovery_response {
                        self.on_recovery(rec);
                    }
                }
            }
        }
        let chat = match from_me.then(|| device_sent_destination(&message)).flatten() {
            Some(dest) => self.canonical(&dest).await.to_non_ad(),
            None => chat,
        };
        let push_name = node.get_str("notify").map(|s| s.into_owned());
        let base = StoredMessage {
            id: id.clone(),
            chat: chat.clone(),
            sender: author.clone(),
            from_me,
            timestamp: node
                .get_str("t")
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| self.clock.now_unix()),
            push_name: push_name.clone(),
            status: if from_me {
                MessageStatus::Delivered
            } else {
                MessageStatus::Received
            },
            ..StoredMessage::default()
        };
        // Peer messages (keys, settings, history) are protocol, not conversation.
        let row = if peer { None } else { row_of(unpadded, base) };
        // A protocol payload's Signal advance is committed alone.
        let committed = match &row {
            None => self
                .cipher
                .store()
                .apply(&changes)
                .await
                .map(|_| Committed::Inserted)
                .map_err(|e| CredsStoreError(e.to_string())),
            Some(row) => self.store.commit_message(&changes, row).await,
        };
        drop(lock);
        let committed = match committed {
            Ok(c) => c,
            Err(e) => {
                // Neither the session advance nor the row landed: the redelivery decrypts.
                tracing::warn!(error = %e, "cannot store message; it will be redelivered");
                return;
            }
        };
        self.forget_retry(&from, &id);
        if from_me
            && let Some(name) = push_name.filter(|n| !n.is_empty())
            && me.push_name.as_deref() != Some(name.as_str())
        {
            self.learn_push_name(name).await;
        }
        if !from_me && let Some(name) = node.get_str("notify").filter(|n| !n.is_empty() && n != "-")
        {
            self.learn_contact_push_name(&author, &name).await;
        }
        let _ = sender.send(&receipt(node, from_me, peer)).await;
        if committed == Committed::Inserted
            && let Some(row) = row
        {
            self.publish(Event::Message(Box::new(row)));
        }
    }

    /// A contact's push name (the stanza's `notify`) into its contact row, when it changed.
    pub(super) async fn learn_contact_push_name(&self, who: &Jid, name: &str) {
        let who = who.to_non_ad();
        let known = self
            .push_names
            .lock()
            .ok()
            .is_some_and(|m| m.get(&who).is_some_and(|n| n == name));
        if known {
            return;
        }
        let change = crate::client::account::ContactChange {
            jid: who.clone(),
            push_name: Some(name.to_owned()),
            ..Default::default()
        };
        match self.store.apply_account_changes(&[], &[change]).await {
            Ok(()) => {
                if let Ok(mut m) = self.push_names.lock() {
                    if m.len() >= super::LID_CACHE {
                        m.clear();
                    }
                    m.insert(who, name.to_owned());
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot store a contact's push name"),
        }
    }

    pub(super) async fn learn_push_name(&self, name: String) {
        if let Err(e) = self.store.set_push_name(&name).await {
            tracing::warn!(error = %e, "cannot store push name");
            return;
        }
        if let Ok(mut a) = self.account.lock()
            && let Some(a) = a.as_mut()
        {
            a.me.push_name = Some(name.clone());
        }
        self.publish(Event::PushName { name });
    }

    /// Asks the sender to try again, up to [`MAX_RETRIES`] times, with fresh keys from the
    /// second attempt on; keeps a failed `ciphertext` row for it in `at` (chat, author) so it
    /// is seen, not lost, if no resend ever comes (a successful one replaces it); reports it.
    pub(super) async fn undecryptable(
        &self,
        sender: &NodeSender,
        node: &Node,
        from: &Jid,
        id: &str,
        reason: String,
        at: (&Jid, &Jid),
    ) {
        tracing::warn!(from = %from, id, reason, "message not decrypted; asking for a retry");
        let Some(account) = self.account() else {
            return;
        };
        bump(&self.counters.decrypt_failures);
        let count = self.bump_retry(from, id);
        let (chat, author) = at;
        let placeholder = StoredMessage {
            id: id.to_owned(),
            chat: chat.to_non_ad(),
            sender: author.to_non_ad(),
            from_me: is_me(author, &account.me),
            timestamp: node
                .get_str("t")
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| self.clock.now_unix()),
            push_name: node.get_str("notify").map(|s| s.into_owned()),
            status: MessageStatus::Failed,
            kind: Kind::Ciphertext,
            content: serde_json::json!({ "undecryptable": true }),
            ..StoredMessage::default()
        };
        // Kept before the server hears we are done with it: a store that fails leaves it
        // unacked, and the server delivers it again.
        if let Err(e) = self
            .store
            .commit_message(&crate::signal::SignalChanges::default(), &placeholder)
            .await
        {
            tracing::warn!(error = %e, "cannot store an undecryptable message; it will be redelivered");
            return;
        }
        if count <= MAX_RETRIES {
            let keys = if count >= 2 {
                match self.cipher.store().create_pre_keys(1).await {
                    Ok(mut k) => k.pop(),
                    Err(e) => {
                        tracing::warn!(error = %e, "no prekey for the retry receipt");
                        None
                    }
                }
            } else {
                None
            };
            // A group message is retried of the group, naming the author's device.
            let group = node.get_jid("from").filter(|f| f.server == Server::Group);
            let retry = stanza::retry_receipt(
                id,
                group.as_ref().unwrap_or(from),
                count,
                node.get_str("t").as_deref(),
                account.registration_id,
                keys.as_ref().map(|k| stanza::RetryKeys {
                    identity: &account.identity,
                    pre_key: (k.id, k.key_pair.public),
                    signed: account.signed,
                    device_identity: &account.me.signed_identity,
                }),
            );
            let retry = match (group, node.get("participant")) {
                (Some(_), Some(p)) => retry.attr("participant", p.clone()),
                _ => retry,
            };
            let _ = sender.send(&retry).await;
        }
        // The retry receipt answers the message; the ack ends the server's redelivery of it.
        let _ = sender.send(&stanza::ack(node, None)).await;
        self.publish(Event::Undecryptable {
            from: from.clone(),
            id: id.to_owned(),
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plaintext_that_decrypted_but_is_no_message_is_kept_whole_as_unknown() {
        let plain = [0xffu8; 11];
        let row = row_of(&plain, StoredMessage::default()).expect("kept, not protocol");
        assert_eq!(row.kind, Kind::Unknown);
        assert_eq!(row.raw, plain);
        assert!(row.content["undecodable"].is_string(), "{}", row.content);
    }
}
