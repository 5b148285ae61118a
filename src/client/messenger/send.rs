//! Sending 1:1: device lists by usync, bundles for new sessions, one encryption per device, the
//! row committed with the Signal advance before the stanza leaves, the ack awaited (MESSAGING.md
//! §1). A recorded id is never transmitted by a send again: what is pending belongs to the
//! resend loop (`resend.rs`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message as _;
use tokio::sync::oneshot;

use super::{Account, MAX_TEXT_BYTES, Messenger, SendError, bump};
use crate::binary::{Jid, Node, Server};
use crate::client::events::Event;
use crate::client::link::IQ_TIMEOUT;
use crate::client::messages::{Committed, MessageStatus, Outgoing, StoredMessage};
use crate::client::store::{CredsStore, Me};
use crate::proto::wa;
use crate::signal::store::ApplyChanges;
use crate::signal::{
    CiphertextMessage, IdentityChange, ProtocolAddress, SignalChanges, SignalError,
};
use crate::socket::NodeSender;
use crate::stanza;

/// Devices whose bundles one prekey iq asks for at most.
pub(super) const PREKEY_BATCH: usize = 256;
/// Users whose device lists are cached; the cache starts over beyond it.
pub(super) const DEVICE_CACHE: usize = 4096;

/// Session addresses remembered as existing.
pub(super) const SESSION_CACHE: usize = 16_384;

/// A message the server accepted (or that is still waiting for its ack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The message id.
    pub id: String,
    /// The conversation.
    pub chat: Jid,
    /// The server's timestamp from its ack, or our clock while no ack came.
    pub timestamp: u64,
    /// `ServerAck` once the server accepted it; `Pending` if its ack is late (it is resent
    /// with the same id). A send of an id already recorded sends nothing and answers the
    /// row's status as it stands (`Delivered`, `Read`… too).
    pub status: MessageStatus,
}

/// One attempt's wait for its ack, told apart from a later attempt's by `seq`.
pub(super) struct Waiter {
    seq: u64,
    tx: oneshot::Sender<Ack>,
}

impl Waiter {
    /// Hands `ack` to the waiting attempt; gives it back if the attempt is gone.
    pub(super) fn answer(self, ack: Ack) -> Result<(), Ack> {
        self.tx.send(ack)
    }
}

/// Sequence numbers of ack waiters.
static WAITERS: AtomicU64 = AtomicU64::new(0);

/// Removes an ack waiter when the attempt that registered it ends (only its own: a later
/// attempt's waiter under the same key stays).
struct WaiterGuard<'a> {
    acks: &'a Mutex<HashMap<(Jid, String), Waiter>>,
    key: (Jid, String),
    seq: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut a) = self.acks.lock()
            && a.get(&self.key).is_some_and(|w| w.seq == self.seq)
        {
            a.remove(&self.key);
        }
    }
}

/// How one send attempt ended.
pub(super) enum Attempt {
    /// The server answered (the wire chat it was sent to, the ack, and the privacy token
    /// the stanza carried).
    Acked(Jid, Ack, Option<super::AttachedToken>),
    /// No answer in time (or no connection): the row stays pending.
    Pending(Sent),
    /// The id was recorded already: nothing was sent (the row as it stands).
    Recorded(Box<StoredMessage>),
}

/// The server's answer to one of our messages.
#[derive(Debug, Clone)]
pub(super) struct Ack {
    /// The server's timestamp.
    pub(super) t: Option<u64>,
    /// The refusal code, if any.
    pub(super) error: Option<u16>,
    /// The server's participant hash, when it differs from a group stanza's.
    pub(super) phash: Option<String>,
}

/// Whether a caller-chosen message id can go on the wire: what the reference clients make
/// (hex, upper-case letters) fits, and nothing that would need escaping.
pub fn valid_message_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl<S: CredsStore> Messenger<S> {
    /// Whether a session with `addr` exists, remembering the addresses that have one: most
    /// sends go to devices we already talk to, and each store read is a thread hand-off.
    pub(super) async fn session_known(&self, addr: &ProtocolAddress) -> Result<bool, SignalError> {
        if self.sessions.lock().is_ok_and(|s| s.contains(addr)) {
            return Ok(true);
        }
        let has = self.cipher.has_session(addr).await?;
        if has && let Ok(mut s) = self.sessions.lock() {
            if s.len() >= SESSION_CACHE {
                s.clear();
            }
            s.insert(addr.clone());
        }
        Ok(has)
    }

    // ---- sending ----

    /// Device lists of `users` (bare user JIDs), from the cache or one usync query.
    pub(super) async fn devices(
        &self,
        sender: &NodeSender,
        users: &[Jid],
    ) -> Result<HashMap<Jid, Vec<u16>>, SendError> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        if let Ok(cache) = self.devices.lock() {
            for u in users {
                match cache.get(u) {
                    Some(d) => {
                        out.insert(u.clone(), d.clone());
                    }
                    None => missing.push(u.clone()),
                }
            }
        }
        if !missing.is_empty() {
            let sid = self.link.iq.next_id();
            let answer = self
                .link
                .iq
                .query(
                    sender,
                    stanza::usync_devices_query(&missing, &sid),
                    IQ_TIMEOUT,
                )
                .await?;
            let found = stanza::parse_usync(&answer);
            for u in &found {
                if let Some(lid) = &u.lid
                    && u.user.server == Server::User
                {
                    self.learn(&u.user.user, &lid.user).await;
                }
            }
            if let Ok(mut cache) = self.devices.lock() {
                if cache.len() + found.len() > DEVICE_CACHE {
                    cache.clear();
                }
                for u in &found {
                    if !u.devices.is_empty() {
                        cache.insert(u.user.clone(), u.devices.clone());
                    }
                }
            }
            for u in found {
                if !u.devices.is_empty() {
                    out.insert(u.user, u.devices);
                }
            }
        }
        Ok(out)
    }

    /// Sends `text` to the user or group `to`.
    pub(in crate::client) async fn send_text(
        &self,
        to: Jid,
        text: String,
        id: Option<String>,
    ) -> Result<Sent, SendError> {
        if text.is_empty() {
            return Err(SendError::InvalidText("empty"));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(SendError::InvalidText("longer than 65,536 bytes"));
        }
        self.send_content(to, Outgoing::text(text), id).await
    }

    /// Sends a built message (a text, or media already uploaded) to the user or group `to`.
    pub(in crate::client) async fn send_content(
        &self,
        to: Jid,
        out: Outgoing,
        id: Option<String>,
    ) -> Result<Sent, SendError> {
        if id.as_ref().is_some_and(|i| !valid_message_id(i)) {
            return Err(SendError::InvalidText(
                "the message id must be 1–64 letters or digits",
            ));
        }
        if out.text.as_ref().is_some_and(|t| t.len() > MAX_TEXT_BYTES) {
            return Err(SendError::InvalidText("longer than 65,536 bytes"));
        }
        if to.server == Server::Group && !to.user.is_empty() {
            let account = self.account().ok_or(SendError::NotConnected)?;
            let row = self.own_row(&account, to.to_non_ad(), out, id).await;
            return self.send_group_row(&account, row, true).await;
        }
        if !matches!(to.server, Server::User | Server::Lid) || to.user.is_empty() {
            return Err(SendError::UnsupportedRecipient(to.to_string()));
        }
        let account = self.account().ok_or(SendError::NotConnected)?;
        // A first message to a number learns its LID (usync) before the row is keyed.
        if to.server == Server::User && self.lid_of(&to.user).await.is_none() {
            let sender = self.sender().ok_or(SendError::NotConnected)?;
            self.devices(&sender, &[to.to_non_ad()]).await?;
        }
        let chat = self.canonical(&to).await.to_non_ad();
        let row = self.own_row(&account, chat, out, id).await;
        self.send_row(&account, row, true).await
    }

    /// The row of a message we send to `chat` (pending until acked): `id` when a caller chose
    /// it (a resend, an outbox row), else a new one.
    pub(super) async fn own_row(
        &self,
        account: &Account,
        chat: Jid,
        out: Outgoing,
        id: Option<String>,
    ) -> StoredMessage {
        let now = self.clock.now_unix();
        StoredMessage {
            id: id.unwrap_or_else(|| stanza::message_id(now, &account.me.jid.user)),
            chat,
            sender: self.canonical(&account.me.jid).await.to_non_ad(),
            from_me: true,
            timestamp: now,
            push_name: account.me.push_name.clone(),
            text: out.text,
            raw: out.message.encode_to_vec(),
            status: MessageStatus::Pending,
            kind: out.kind,
            content: out.details,
            media: out.media,
            ..StoredMessage::default()
        }
    }

    /// The chat as addressed on the wire, and our own user in the same namespace: the LID
    /// when both ends have one (whatsmeow's rule: sending to the PN is what draws most 463s),
    /// else the phone number. One stanza never mixes the two (the server 400s it).
    pub(super) async fn wire_chat(&self, chat: &Jid, me: &Me, force_pn: bool) -> (Jid, Jid) {
        let own_pn = me.jid.to_non_ad();
        match (&me.lid, chat.server == Server::Lid, force_pn) {
            (Some(own_lid), true, false) => (chat.clone(), own_lid.to_non_ad()),
            (_, true, _) => match self.store.pn_for(&chat.user).await {
                Ok(Some(pn)) => (Jid::new(pn, Server::User), own_pn),
                // No phone number known: LID it is (the server decides).
                _ => (
                    chat.clone(),
                    me.lid.as_ref().map(Jid::to_non_ad).unwrap_or(own_pn),
                ),
            },
            _ => (chat.clone(), own_pn),
        }
    }

    /// Encrypts `row` for every device of its chat and of our own account, records it (when
    /// `record`; a resend otherwise) with the Signal advance, sends it and waits for the
    /// server's ack. A LID send refused with 400 is sent once more to the phone number, with
    /// the same id. An id already recorded is not sent by a new send, nor resent once it left
    /// `pending`; while another attempt at it runs, this one sends nothing and answers pending.
    pub(super) async fn send_row(
        &self,
        account: &Account,
        row: StoredMessage,
        record: bool,
    ) -> Result<Sent, SendError> {
        let Some(_claim) = self.claim(&row.chat, &row.id) else {
            return Ok(pending(&row));
        };
        if !record
            && let Some(now) = self.store.sent_message(&row.chat, &row.id).await?
            && now.status != MessageStatus::Pending
        {
            return self.recorded(&now);
        }
        let first = self.send_once(account, &row, record, false).await?;
        let (wire, ack, attached) = match first {
            Attempt::Acked(wire, ack, attached) => (wire, ack, attached),
            Attempt::Pending(sent) => {
                self.resend_later(&row.chat, &row.id);
                return Ok(sent);
            }
            Attempt::Recorded(now) => return self.recorded(&now),
        };
        let (ack, attached) = if ack.error == Some(400) && wire.server == Server::Lid {
            tracing::info!(
                id = row.id,
                "LID send refused (400); sending to the phone number"
            );
            // The account is not migrated to LID chats: phone numbers from now on.
            self.pn_only
                .store(true, std::sync::atomic::Ordering::Relaxed);
            match self.send_once(account, &row, false, true).await? {
                Attempt::Acked(_, ack, attached) => (ack, attached),
                Attempt::Pending(sent) => {
                    self.resend_later(&row.chat, &row.id);
                    return Ok(sent);
                }
                Attempt::Recorded(now) => return self.recorded(&now),
            }
        } else {
            (ack, attached)
        };
        if ack.error == Some(463)
            && let Ok(mut r) = self.refused_463.lock()
        {
            if r.len() >= super::REFUSED_463_KEPT {
                r.clear();
            }
            r.insert(row.id.clone(), attached.is_some());
        }
        self.record_ack(&row.chat, &row.id, &ack).await;
        if ack.error.is_none_or(|c| c == 0) {
            self.issue_token(&row.chat, &wire, &account.me).await;
        }
        match ack.error {
            Some(code) if code != 0 => Err(SendError::Refused {
                code,
                id: row.id,
                attached,
            }),
            _ => Ok(Sent {
                id: row.id,
                chat: row.chat,
                timestamp: ack.t.unwrap_or(row.timestamp),
                status: MessageStatus::ServerAck,
            }),
        }
    }

    /// One encryption and stanza for `row`.
    pub(super) async fn send_once(
        &self,
        account: &Account,
        row: &StoredMessage,
        record: bool,
        force_pn: bool,
    ) -> Result<Attempt, SendError> {
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        let me = &account.me;
        let force_pn = force_pn || self.pn_only.load(std::sync::atomic::Ordering::Relaxed);
        let (wire, own_user) = self.wire_chat(&row.chat, me, force_pn).await;
        let devices = self
            .devices(&sender, &[wire.clone(), own_user.clone()])
            .await?;
        let theirs = devices
            .get(&wire)
            .filter(|d| !d.is_empty())
            .ok_or_else(|| SendError::NotOnWhatsApp(wire.to_string()))?;
        let mut targets: Vec<(Jid, bool)> = theirs
            .iter()
            .map(|d| {
                (
                    Jid::with_device(wire.user.clone(), *d, wire.server.clone()),
                    false,
                )
            })
            .collect();
        if wire != own_user {
            for d in devices.get(&own_user).into_iter().flatten() {
                if *d != me.jid.device {
                    targets.push((
                        Jid::with_device(own_user.user.clone(), *d, own_user.server.clone()),
                        true,
                    ));
                }
            }
        }
        targets.retain(|(j, _)| !(j.user == own_user.user && j.device == me.jid.device));
        let message = wa::Message::decode(&row.raw[..]).unwrap_or_default();
        let plain = message.encode_to_vec();
        let dsm = wa::Message {
            device_sent_message: Some(Box::new(wa::DeviceSentMessage {
                destination_jid: Some(wire.to_string()),
                message: Some(Box::new(message.clone())),
                phash: None,
            })),
            message_context_info: message.message_context_info.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        let bodies: Vec<(Jid, &[u8])> = targets
            .iter()
            .map(|(j, own)| (j.clone(), if *own { &dsm[..] } else { &plain[..] }))
            .collect();
        let (encs, changes, locks) = self.encrypt_for(&sender, &bodies).await?;
        if encs.iter().all(|(j, _)| j.user != wire.user) {
            return Err(SendError::NotOnWhatsApp(wire.to_string()));
        }
        // The advance and the row land before a byte leaves: a crash after this resends the
        // same id with new keys, never the same key twice.
        if record {
            if self.store.commit_message(&changes, row).await? == Committed::Duplicate {
                // Recorded before (a crash between the record and the caller's own record of
                // it): that row answers, and it is never put on the wire by a new send.
                drop(locks);
                let now = self.store.sent_message(&row.chat, &row.id).await?;
                return Ok(match now {
                    Some(m) => Attempt::Recorded(Box::new(m)),
                    None => Attempt::Pending(pending(row)),
                });
            }
        } else {
            self.cipher
                .store()
                .apply(&changes)
                .await
                .map_err(SignalError::from)?;
        }
        drop(locks);
        tracing::debug!(id = row.id, devices = encs.len(), "sending");
        let mut node = with_type(
            stanza::message_stanza(&row.id, &wire, encs, &me.signed_identity),
            &row.raw,
        );
        // The contact's tctoken, else our cstoken, as the last child: without either
        // WhatsApp may refuse a first contact (463).
        let mut attached = None;
        if let Some((child, kind)) = self.privacy_token_child(&row.chat, &wire, me).await
            && let crate::binary::Content::Children(c) = &mut node.content
        {
            c.push(child);
            attached = Some(kind);
        }
        Ok(match self.transmit(&sender, &node, row).await {
            Ok(ack) => Attempt::Acked(wire, ack, attached),
            Err(pending) => Attempt::Pending(pending),
        })
    }

    /// Sends `node` (the stanza of `row`) and waits for the server's ack; Err(pending) when
    /// there is no answer in time or no connection (the row stays pending and is resent). The
    /// ack is told by (the stanza's `to`, id), the `from` and id it carries.
    pub(super) async fn transmit(
        &self,
        sender: &NodeSender,
        node: &Node,
        row: &StoredMessage,
    ) -> Result<Ack, Sent> {
        let (tx, rx) = oneshot::channel();
        let to = node
            .get_jid("to")
            .map(|j| j.to_non_ad())
            .unwrap_or_else(|| row.chat.clone());
        let key = (to, row.id.clone());
        let seq = WAITERS.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut a) = self.acks.lock() {
            a.insert(key.clone(), Waiter { seq, tx });
        }
        // However this attempt ends (answered, timed out, or its caller gone), its waiter goes.
        let _waiter = WaiterGuard {
            acks: &self.acks,
            key,
            seq,
        };
        if sender.send(node).await.is_err() {
            // Recorded as pending: the next connection sends it.
            return Err(pending(row));
        }
        match tokio::time::timeout(self.ack_timeout, rx).await {
            Ok(Ok(ack)) => Ok(ack),
            _ => Err(pending(row)),
        }
    }

    /// Encrypts each body (padded here) for its device under the locks of all their sessions,
    /// first fetching bundles for devices without one (devices the server has no keys for
    /// are skipped: they cannot receive). Nothing is stored: the caller commits the changes
    /// (with its row) before dropping the locks and sending.
    pub(super) async fn encrypt_for(
        &self,
        sender: &NodeSender,
        targets: &[(Jid, &[u8])],
    ) -> Result<
        (
            Vec<(Jid, CiphertextMessage)>,
            SignalChanges,
            Vec<crate::signal::cipher::SessionLock>,
        ),
        SendError,
    > {
        // Sessions are keyed by the LID whatever the wire namespace.
        let mut addrs = Vec::with_capacity(targets.len());
        for (j, _) in targets {
            addrs.push(ProtocolAddress::from_jid(&self.canonical(j).await));
        }
        let mut need = Vec::new();
        for ((j, _), a) in targets.iter().zip(&addrs) {
            if !self.session_known(a).await? {
                need.push(j.clone());
            }
        }
        // A first send to a large group needs hundreds of bundles: asked in bounded batches.
        let mut bundles = std::collections::BTreeMap::new();
        for chunk in need.chunks(PREKEY_BATCH) {
            let answer = self
                .link
                .iq
                .query(sender, stanza::prekey_query(chunk), IQ_TIMEOUT)
                .await?;
            bundles.append(&mut stanza::parse_bundles(&answer));
        }
        let locks = self.cipher.lock_sessions(&addrs).await;
        let mut changes = SignalChanges::default();
        let mut encs = Vec::with_capacity(targets.len());
        for ((jid, body), addr) in targets.iter().zip(&addrs) {
            let key = addr.to_string();
            let lock = locks
                .iter()
                .find(|l| l.key() == key)
                .ok_or(SignalError::NoSession)?;
            let bundle = if need.contains(jid) {
                match bundles.get(jid) {
                    Some(b) => Some(b),
                    // The server knows no keys for it (406): it cannot receive; skip it.
                    None => continue,
                }
            } else {
                None
            };
            let (ct, change, c) = self
                .cipher
                .encrypt_staged(lock, addr, bundle, &stanza::pad(body.to_vec()))
                .await?;
            if change == Some(IdentityChange::Changed) {
                bump(&self.counters.identity_changes);
                self.publish(Event::IdentityChanged { jid: jid.clone() });
            }
            changes.extend(c);
            encs.push((jid.clone(), ct));
        }
        Ok((encs, changes, locks))
    }
}

/// `row` as still waiting for its ack.
pub(super) fn pending(row: &StoredMessage) -> Sent {
    Sent {
        id: row.id.clone(),
        chat: row.chat.clone(),
        timestamp: row.timestamp,
        status: MessageStatus::Pending,
    }
}

/// `node` (a built `<message>` of `raw`) with the `type` and `mediatype` its content calls for:
/// media travels as `type="media"` with a `mediatype` per `<enc>`, as every reference sends it.
pub(super) fn with_type(mut node: Node, raw: &[u8]) -> Node {
    let message = wa::Message::decode(raw).unwrap_or_default();
    stanza::media::set_message_type(&mut node, &message);
    node
}
