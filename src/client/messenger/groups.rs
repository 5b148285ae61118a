//! Group messaging of one account (MESSAGING.md §3): metadata cached per group and refreshed
//! on `w:gp2` notifications, on an ack whose `phash` disagrees with ours and on `error="421"`;
//! one sender key of ours per group, distributed pairwise only to member devices not yet known
//! to hold it (marked after the server's ack, unmarked by a retry receipt) and started over
//! when a member leaves; incoming group messages decrypted pairwise first (the distribution),
//! then with the author's sender key, and stored in the same unit as every key they advanced.

use std::collections::HashSet;

use prost::Message as _;

use super::receive::row_of;
use super::{Account, Ack, Messenger, SendError, Sent, bump, receipt};
use crate::binary::{Jid, Node, Server};
use crate::client::content::Kind;
use crate::client::events::Event;
use crate::client::iq::IqError;
use crate::client::link::IQ_TIMEOUT;
use crate::client::messages::{Committed, GroupUpdate, MessageStatus, StoredMessage};
use crate::client::recv::is_me;
use crate::client::store::{CredsStore, CredsStoreError};
use crate::proto::wa;
use crate::signal::store::ApplyChanges;
use crate::signal::{
    EncType, IdentityChange, ProtocolAddress, SenderKeyName, SenderKeyRecord, SignalChanges,
    SignalError,
};
use crate::socket::NodeSender;
use crate::stanza;
use crate::stanza::group::{
    AddressingMode, GroupChange, GroupInfo, MemberAction, group_create, group_leave, group_members,
    group_message_stanza, group_query, group_subject, parse_group, parse_group_notification,
    parse_member_results, phash,
};
use crate::stanza::unpad;

/// Groups whose metadata is cached in memory (the store keeps them all).
pub(super) const GROUP_CACHE: usize = 1024;

/// The hosted-device id (Cloud API), never sent a group message (MESSAGING.md §3.2).
const HOSTED_DEVICE: u16 = 99;

/// How one group send attempt ended.
enum GroupAttempt {
    /// The server answered; the devices we distributed our key to; our phash.
    Acked(Ack, Vec<Jid>, String),
    /// No answer in time: the row stays pending.
    Pending(Sent),
    /// The id was recorded already: nothing was sent (the row as it stands).
    Recorded(Box<StoredMessage>),
}

fn server_error(text: &str) -> SendError {
    SendError::Iq(IqError::Server {
        code: 0,
        text: text.to_owned(),
    })
}

impl<S: CredsStore> Messenger<S> {
    // ---- metadata ----

    /// A group's metadata: cached, stored, or asked of the server (always asked when
    /// `refresh`).
    pub(super) async fn group_info(
        &self,
        sender: &NodeSender,
        group: &Jid,
        refresh: bool,
    ) -> Result<GroupInfo, SendError> {
        let stale = self.stale_groups.lock().is_ok_and(|s| s.contains(group));
        if !refresh && !stale {
            if let Some(g) = self.groups.lock().ok().and_then(|g| g.get(group).cloned()) {
                return Ok(g);
            }
            if let Some(g) = self.store.group(group).await? {
                self.cache_group(&g);
                return Ok(g);
            }
        }
        let answer = self
            .link
            .iq
            .query(sender, group_query(group), IQ_TIMEOUT)
            .await?;
        let info = answer
            .child("group")
            .and_then(parse_group)
            .ok_or_else(|| server_error("group answer without a <group>"))?;
        self.adopt_group(info.clone()).await?;
        if let Ok(mut s) = self.stale_groups.lock() {
            s.remove(group);
        }
        Ok(info)
    }

    /// Whether `user` is an admin of `group` by the metadata we hold (no round trip: a
    /// message is judged by what we know when it arrives).
    async fn holds_admin(&self, group: &Jid, user: &Jid) -> bool {
        let cached = self.groups.lock().ok().and_then(|g| g.get(group).cloned());
        let info = match cached {
            Some(g) => Some(g),
            None => self.store.group(group).await.ok().flatten(),
        };
        info.is_some_and(|g| {
            g.participants
                .iter()
                .any(|p| p.is(user) && p.admin.is_some())
        })
    }

    fn cache_group(&self, info: &GroupInfo) {
        if let Ok(mut g) = self.groups.lock() {
            if g.len() >= GROUP_CACHE && !g.contains_key(&info.jid) {
                g.clear();
            }
            g.insert(info.jid.clone(), info.clone());
        }
    }

    /// Takes `info` as the group's metadata: learns its members' PN↔LID pairs, and starts our
    /// sender key over when someone we knew as a member is gone (or the addressing changed:
    /// the devices marked as holders were named in the other namespace).
    async fn adopt_group(&self, info: GroupInfo) -> Result<(), SendError> {
        for p in &info.participants {
            match (&p.jid.server, &p.phone_number, &p.lid) {
                (Server::Lid, Some(pn), _) => self.learn(&pn.user, &p.jid.user).await,
                (Server::User, _, Some(lid)) => self.learn(&p.jid.user, &lid.user).await,
                _ => {}
            }
        }
        let old = match self
            .groups
            .lock()
            .ok()
            .and_then(|g| g.get(&info.jid).cloned())
        {
            Some(g) => Some(g),
            None => self.store.group(&info.jid).await?,
        };
        let shrank = old.as_ref().is_some_and(|o| {
            o.addressing != info.addressing
                || o.participants.iter().any(|p| !info.has_member(&p.jid))
        });
        self.store.set_group(&info).await?;
        self.cache_group(&info);
        if shrank && let Some(account) = self.account() {
            self.rotate_group_key(&account, &info.jid).await?;
        }
        Ok(())
    }

    /// Forgets what we believe about a group's members and their devices: the next send asks
    /// the server (the stored copy is not trusted either until then).
    fn forget_group(&self, group: &Jid) {
        // Only groups we send to, change or leave land here (each leaves at its next query).
        if let Ok(mut s) = self.stale_groups.lock() {
            s.insert(group.clone());
        }
        let info = self.groups.lock().ok().and_then(|mut g| g.remove(group));
        if let Some(info) = info
            && let Ok(mut d) = self.devices.lock()
        {
            for p in &info.participants {
                d.remove(&p.jid);
            }
        }
    }

    /// The name of our own sender key for `group`: our LID device when we have one (one key
    /// whatever the group's namespace, as whatsmeow does).
    fn own_key_name(account: &Account, group: &Jid) -> SenderKeyName {
        let me = &account.me;
        let dev = me.lid.clone().unwrap_or_else(|| me.jid.clone());
        SenderKeyName {
            group: group.to_non_ad().to_string(),
            sender: ProtocolAddress::from_jid(&Jid::with_device(
                dev.user,
                me.jid.device,
                dev.server,
            )),
        }
    }

    /// Starts our sender key for `group` over and unmarks every holder, in one unit: the next
    /// message distributes a new key to the members there are now.
    async fn rotate_group_key(&self, account: &Account, group: &Jid) -> Result<(), SendError> {
        let name = Self::own_key_name(account, group);
        let _lock = self.cipher.lock_sender_key(&name).await;
        let changes = SignalChanges {
            sender_keys: vec![(name, SenderKeyRecord::new())],
            ..SignalChanges::default()
        };
        self.store.reset_group_key(group, &changes).await?;
        bump(&self.counters.group_key_rotations);
        tracing::debug!(group = %group, "rotated our sender key");
        Ok(())
    }

    // ---- sending ----

    /// Sends `row` to its group and waits for the ack: a `421` refreshes the metadata and
    /// sends once more (same id); a `phash` that differs from ours makes the next send ask
    /// for the members and their devices again.
    pub(super) async fn send_group_row(
        &self,
        account: &Account,
        row: StoredMessage,
        record: bool,
    ) -> Result<Sent, SendError> {
        // One attempt at a time, and a recorded id never sent by a new send (as `send_row`).
        let Some(_claim) = self.claim(&row.chat, &row.id) else {
            return Ok(super::send::pending(&row));
        };
        if !record
            && let Some(now) = self.store.sent_message(&row.chat, &row.id).await?
            && now.status != MessageStatus::Pending
        {
            return self.recorded(&now);
        }
        let mut record = record;
        let mut refresh = false;
        let ack = loop {
            let (ack, distributed, ours) =
                match self.send_group_once(account, &row, record, refresh).await? {
                    GroupAttempt::Pending(sent) => {
                        self.resend_later(&row.chat, &row.id);
                        return Ok(sent);
                    }
                    GroupAttempt::Recorded(now) => return self.recorded(&now),
                    GroupAttempt::Acked(ack, distributed, ours) => (ack, distributed, ours),
                };
            record = false;
            if ack.error == Some(421) && !refresh {
                tracing::info!(id = row.id, group = %row.chat, "stale addressing mode (421); refreshing");
                refresh = true;
                continue;
            }
            if ack.error.is_none_or(|c| c == 0) {
                self.store.mark_key_holders(&row.chat, &distributed).await?;
                if ack.phash.as_ref().is_some_and(|p| *p != ours) {
                    tracing::info!(group = %row.chat, "the server sees other members; refreshing");
                    bump(&self.counters.group_refreshes);
                    self.forget_group(&row.chat);
                }
            }
            break ack;
        };
        self.record_ack(&row.chat, &row.id, &ack).await;
        match ack.error {
            Some(code) if code != 0 => Err(SendError::Refused {
                code,
                id: row.id,
                attached: None,
            }),
            _ => Ok(Sent {
                id: row.id,
                chat: row.chat,
                timestamp: ack.t.unwrap_or(row.timestamp),
                status: MessageStatus::ServerAck,
            }),
        }
    }

    async fn send_group_once(
        &self,
        account: &Account,
        row: &StoredMessage,
        record: bool,
        refresh: bool,
    ) -> Result<GroupAttempt, SendError> {
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        let me = &account.me;
        let group = row.chat.clone();
        let info = self.group_info(&sender, &group, refresh).await?;
        let mode = info.addressing;
        let server = mode.server();
        let own_user = match mode {
            AddressingMode::Pn => me.jid.to_non_ad(),
            AddressingMode::Lid => me
                .lid
                .as_ref()
                .map(Jid::to_non_ad)
                .ok_or_else(|| SendError::NotInGroup(group.to_string()))?,
        };
        if !info.has_member(&own_user) && !info.has_member(&me.jid.to_non_ad()) {
            return Err(SendError::NotInGroup(group.to_string()));
        }
        let own_dev = Jid::with_device(own_user.user.clone(), me.jid.device, server.clone());
        let mut users: Vec<Jid> = info
            .participants
            .iter()
            .map(|p| p.jid.clone())
            .filter(|j| j.server == server)
            .collect();
        if !users.contains(&own_user) {
            users.push(own_user.clone());
        }
        let devices = self.devices(&sender, &users).await?;
        let mut all: Vec<Jid> = Vec::new();
        for u in &users {
            for d in devices.get(u).into_iter().flatten() {
                if *d != HOSTED_DEVICE {
                    all.push(Jid::with_device(u.user.clone(), *d, server.clone()));
                }
            }
        }
        if !all.contains(&own_dev) {
            all.push(own_dev.clone());
        }
        let our_phash = phash(&all);
        let holders: HashSet<Jid> = self.store.key_holders(&group).await?.into_iter().collect();
        let need: Vec<Jid> = all
            .into_iter()
            .filter(|d| *d != own_dev && !holders.contains(d))
            .collect();
        let name = Self::own_key_name(account, &group);
        let key_lock = self.cipher.lock_sender_key(&name).await;
        let message = wa::Message::decode(&row.raw[..]).unwrap_or_default();
        let (skmsg, distribution, mut changes) = self
            .cipher
            .group_encrypt_staged(&key_lock, &name, &stanza::pad(message.encode_to_vec()))
            .await?;
        let skdm = wa::Message {
            sender_key_distribution_message: Some(wa::SenderKeyDistributionMessage {
                group_id: Some(group.to_string()),
                axolotl_sender_key_distribution_message: Some(distribution),
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let bodies: Vec<(Jid, &[u8])> = need.iter().map(|d| (d.clone(), &skdm[..])).collect();
        let (encs, c, locks) = if bodies.is_empty() {
            (Vec::new(), SignalChanges::default(), Vec::new())
        } else {
            self.encrypt_for(&sender, &bodies).await?
        };
        changes.extend(c);
        // Our chain's advance, the sessions' and the row land before a byte leaves.
        if record {
            if self.store.commit_message(&changes, row).await? == Committed::Duplicate {
                // Recorded before: that row answers; a new send never transmits it again.
                drop(locks);
                drop(key_lock);
                let now = self.store.sent_message(&row.chat, &row.id).await?;
                return Ok(match now {
                    Some(m) => GroupAttempt::Recorded(Box::new(m)),
                    None => GroupAttempt::Pending(super::send::pending(row)),
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
        drop(key_lock);
        let distributed: Vec<Jid> = encs.iter().map(|(j, _)| j.clone()).collect();
        tracing::debug!(
            id = row.id,
            group = %group,
            distributions = distributed.len(),
            "sending to group"
        );
        let node = super::send::with_type(
            group_message_stanza(
                &row.id,
                &group,
                mode,
                &our_phash,
                encs,
                skmsg,
                &me.signed_identity,
            ),
            &row.raw,
        );
        Ok(match self.transmit(&sender, &node, row).await {
            Ok(ack) => GroupAttempt::Acked(ack, distributed, our_phash),
            Err(pending) => GroupAttempt::Pending(pending),
        })
    }

    /// Resends group message `row` to `device`, which could not read it: the content and our
    /// current key pairwise (`to`=group, `participant`=device); the device is unmarked as a
    /// holder until the next send's ack marks it again.
    pub(super) async fn answer_group_retry(
        &self,
        sender: &NodeSender,
        account: &Account,
        row: &StoredMessage,
        req: &stanza::RetryRequest,
    ) -> Result<(), SendError> {
        let group = row.chat.clone();
        // Only a member (or one of our devices) gets the group's message and our sender key
        // again: a retry receipt names its device, and a stranger's must not make us send it.
        if !is_me(&req.from, &account.me) {
            let info = self.group_info(sender, &group, false).await?;
            let who = self.canonical(&req.from.to_non_ad()).await;
            if !info.has_member(&req.from.to_non_ad()) && !info.has_member(&who) {
                tracing::info!(group = %group, id = req.id, "retry receipt from a non-member ignored");
                return Ok(());
            }
        }
        self.store.forget_key_holder(&group, &req.from).await?;
        let addr = ProtocolAddress::from_jid(&self.canonical(&req.from).await);
        let bundle = self.retry_bundle(sender, req, &addr).await?;
        let name = Self::own_key_name(account, &group);
        let key_lock = self.cipher.lock_sender_key(&name).await;
        let (distribution, mut changes) = self
            .cipher
            .group_distribution_staged(&key_lock, &name)
            .await?;
        let mut message = wa::Message::decode(&row.raw[..]).unwrap_or_default();
        message.sender_key_distribution_message = Some(wa::SenderKeyDistributionMessage {
            group_id: Some(group.to_string()),
            axolotl_sender_key_distribution_message: Some(distribution),
        });
        let lock = self.cipher.lock_session(&addr).await;
        let (ct, _, c) = self
            .cipher
            .encrypt_staged(
                &lock,
                &addr,
                bundle.as_ref(),
                &stanza::pad(message.encode_to_vec()),
            )
            .await?;
        changes.extend(c);
        self.cipher
            .store()
            .apply(&changes)
            .await
            .map_err(SignalError::from)?;
        drop(lock);
        drop(key_lock);
        let mode = self
            .groups
            .lock()
            .ok()
            .and_then(|g| g.get(&group).map(|i| i.addressing))
            .unwrap_or(if req.from.server == Server::Lid {
                AddressingMode::Lid
            } else {
                AddressingMode::Pn
            });
        let t = row.timestamp.to_string();
        let node = super::send::with_type(
            stanza::retry_stanza(
                &row.id,
                &group,
                &ct,
                req.count,
                Some(&t),
                &account.me.signed_identity,
            ),
            &row.raw,
        )
        .attr("participant", req.from.clone())
        .attr("addressing_mode", mode.as_str());
        let _ = sender.send(&node).await;
        Ok(())
    }

    // ---- receiving ----

    /// A `<message from=<group> participant=<author device>>`: the pairwise part (our copy of
    /// the author's key, or a resend) first, then the `skmsg` with the author's key; the
    /// sessions and keys it advanced and the row land in one unit before the receipt.
    pub(super) async fn on_group_message(
        &self,
        sender: &NodeSender,
        node: &Node,
        account: &Account,
        id: String,
        group: Jid,
    ) {
        let me = &account.me;
        let Some(participant) = node.get_jid("participant") else {
            let _ = sender.send(&stanza::ack(node, Some(488))).await;
            return;
        };
        // What the server tells us about who is who, before any key is looked up.
        for alt in ["participant_pn", "participant_lid"] {
            if let Some(a) = node.get_jid(alt) {
                match (&participant.server, &a.server) {
                    (Server::Lid, Server::User) => self.learn(&a.user, &participant.user).await,
                    (Server::User, Server::Lid) => self.learn(&participant.user, &a.user).await,
                    _ => {}
                }
            }
        }
        let group = group.to_non_ad();
        let author_dev = self.canonical(&participant).await;
        let from_me = is_me(&participant, me);
        let author = if from_me {
            self.canonical(&me.jid).await.to_non_ad()
        } else {
            author_dev.to_non_ad()
        };
        match self.store.has_message(&group, &author, &id).await {
            Ok(true) => {
                let _ = sender.send(&receipt(node, from_me, false)).await;
                return;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "message store unavailable");
                return;
            }
        }
        let encs: Vec<&Node> = node
            .child_nodes()
            .iter()
            .filter(|c| c.tag == "enc")
            .collect();
        let pairwise = encs
            .iter()
            .find_map(|e| Some((EncType::parse(&e.get_str("type")?)?, *e)));
        let skmsg = encs
            .iter()
            .find(|e| e.get_str("type").as_deref() == Some("skmsg"));
        if pairwise.is_none() && skmsg.is_none() {
            let _ = sender.send(&stanza::ack(node, Some(488))).await;
            return;
        }
        let addr = ProtocolAddress::from_jid(&author_dev);
        let name = SenderKeyName {
            group: group.to_string(),
            sender: addr.clone(),
        };
        let session_lock = match pairwise {
            Some(_) => Some(self.cipher.lock_session(&addr).await),
            None => None,
        };
        let key_lock = self.cipher.lock_sender_key(&name).await;
        let mut changes = SignalChanges::default();
        // The pairwise part: its plaintext (unpadded) and what it decodes to.
        let mut inner: Option<(Vec<u8>, wa::Message)> = None;
        if let (Some((kind, enc)), Some(lock)) = (pairwise, session_lock.as_ref()) {
            let Some(ct) = enc.content_bytes() else {
                let _ = sender.send(&stanza::ack(node, Some(491))).await;
                return;
            };
            match self.cipher.decrypt_staged(lock, &addr, kind, ct).await {
                Ok((d, c)) => {
                    if d.identity == IdentityChange::Changed {
                        bump(&self.counters.identity_changes);
                        self.publish(Event::IdentityChanged {
                            jid: author_dev.clone(),
                        });
                    }
                    let read = unpad(&d.plaintext)
                        .and_then(|b| Some((b.to_vec(), wa::Message::decode(b).ok()?)));
                    match read {
                        Some(part) => {
                            changes.extend(c);
                            inner = Some(part);
                        }
                        None => {
                            drop((key_lock, session_lock));
                            self.undecryptable(
                                sender,
                                node,
                                &author_dev,
                                &id,
                                "unreadable pairwise part".into(),
                                (&group, &author),
                            )
                            .await;
                            return;
                        }
                    }
                }
                // Decrypted before (its distribution is installed): go on with the skmsg.
                Err(SignalError::DuplicateMessage { .. }) => {}
                Err(e) => {
                    drop((key_lock, session_lock));
                    self.undecryptable(
                        sender,
                        node,
                        &author_dev,
                        &id,
                        e.to_string(),
                        (&group, &author),
                    )
                    .await;
                    return;
                }
            }
        }
        let distribution = inner
            .as_ref()
            .and_then(|(_, m)| m.sender_key_distribution_message.as_ref())
            .and_then(|d| d.axolotl_sender_key_distribution_message.clone());
        let sk_ct = skmsg.and_then(|e| e.content_bytes()).map(|b| b.to_vec());
        let content = match self
            .cipher
            .group_decrypt_staged(&key_lock, &name, distribution.as_deref(), sk_ct.as_deref())
            .await
        {
            Ok((plain, c)) => {
                changes.extend(c);
                match plain {
                    Some(p) => match unpad(&p) {
                        Some(b) => Some(b.to_vec()),
                        None => {
                            self.keep_and_retry(
                                sender,
                                node,
                                &author_dev,
                                &id,
                                &changes,
                                "unreadable group message",
                            )
                            .await;
                            return;
                        }
                    },
                    None => None,
                }
            }
            Err(SignalError::DuplicateMessage { .. }) => {
                // Read before under another row key: answer it again.
                if let Err(e) = self.cipher.store().apply(&changes).await {
                    tracing::warn!(error = %e, "cannot store sender key");
                    return;
                }
                let _ = sender.send(&receipt(node, from_me, false)).await;
                return;
            }
            Err(e) => {
                // The pairwise part (the author's key, our session) is kept: the resend
                // the retry asks for builds on it.
                drop(session_lock);
                drop(key_lock);
                self.keep_and_retry(sender, node, &author_dev, &id, &changes, &e.to_string())
                    .await;
                return;
            }
        };
        // A resend carries the content pairwise (with the key beside it).
        let plain = content.or_else(|| inner.map(|(bytes, _)| bytes));
        let base = StoredMessage {
            id: id.clone(),
            chat: group.clone(),
            sender: author.clone(),
            from_me,
            timestamp: node
                .get_str("t")
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| self.clock.now_unix()),
            push_name: node.get_str("notify").map(|s| s.into_owned()),
            status: if from_me {
                MessageStatus::Delivered
            } else {
                MessageStatus::Received
            },
            ..StoredMessage::default()
        };
        let row = plain.as_deref().and_then(|p| row_of(p, base));
        let row = match row {
            // An admin's delete of someone else's message (`edit="8"`) counts only from an
            // admin, by the metadata we hold.
            Some(mut r)
                if r.kind == Kind::Revoke
                    && node.get_str("edit").as_deref() == Some("8")
                    && self.holds_admin(&group, &author).await =>
            {
                if let serde_json::Value::Object(m) = &mut r.content {
                    m.insert("admin".into(), true.into());
                }
                Some(r)
            }
            r => r,
        };
        let committed = match row {
            Some(row) => self
                .store
                .commit_message(&changes, &row)
                .await
                .map(|c| (c, Some(row))),
            // A distribution alone, or a protocol payload: no row.
            None => self
                .cipher
                .store()
                .apply(&changes)
                .await
                .map(|_| (Committed::Duplicate, None))
                .map_err(|e| CredsStoreError(e.to_string())),
        };
        drop(session_lock);
        drop(key_lock);
        let (committed, row) = match committed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot store group message; it will be redelivered");
                return;
            }
        };
        self.forget_retry(&author_dev, &id);
        let _ = sender.send(&receipt(node, from_me, false)).await;
        if committed == Committed::Inserted
            && let Some(row) = row
        {
            self.publish(Event::Message(Box::new(row)));
        }
    }

    /// Stores what the pairwise part advanced, then asks the author for the message again.
    async fn keep_and_retry(
        &self,
        sender: &NodeSender,
        node: &Node,
        author_dev: &Jid,
        id: &str,
        changes: &SignalChanges,
        reason: &str,
    ) {
        if let Err(e) = self.cipher.store().apply(changes).await {
            // Nothing landed: the redelivery decrypts the pairwise part again.
            tracing::warn!(error = %e, "cannot store group keys; it will be redelivered");
            return;
        }
        let group = node.get_jid("from").map(|g| g.to_non_ad());
        let author = self.canonical(author_dev).await.to_non_ad();
        let chat = group.unwrap_or_else(|| author.clone());
        self.undecryptable(
            sender,
            node,
            author_dev,
            id,
            reason.to_owned(),
            (&chat, &author),
        )
        .await;
    }

    // ---- notifications ----

    /// A `w:gp2` notification: each change updates the cached and stored metadata, is stored
    /// and evented once; a member leaving starts our sender key over.
    pub(super) async fn on_group_notification(&self, node: &Node) {
        let Some(n) = parse_group_notification(node) else {
            return;
        };
        let id = node
            .get_str("id")
            .map(|s| s.into_owned())
            .unwrap_or_default();
        let account = self.account();
        let mut info = match self
            .groups
            .lock()
            .ok()
            .and_then(|g| g.get(&n.group).cloned())
        {
            Some(g) => Some(g),
            None => self.store.group(&n.group).await.ok().flatten(),
        };
        let mut removed = false;
        let mut we_left = false;
        let mut updates = Vec::with_capacity(n.changes.len());
        for (seq, change) in n.changes.iter().enumerate() {
            let (action, participants, subject) = match change {
                GroupChange::Created(g) => {
                    info = Some((**g).clone());
                    ("create".to_owned(), Vec::new(), Some(g.subject.clone()))
                }
                GroupChange::Members(action, members) => {
                    if let Some(i) = info.as_mut() {
                        match action {
                            MemberAction::Add => {
                                for m in members {
                                    if !i.has_member(&m.jid) {
                                        i.participants.push(m.clone());
                                    }
                                }
                            }
                            MemberAction::Remove => removed |= i.remove_members(members),
                            MemberAction::Promote | MemberAction::Demote => {
                                for p in i.participants.iter_mut() {
                                    if members.iter().any(|m| p.is(&m.jid)) {
                                        p.admin = (*action == MemberAction::Promote)
                                            .then(|| "admin".to_owned());
                                    }
                                }
                            }
                        }
                    }
                    if *action == MemberAction::Remove
                        && let Some(a) = &account
                    {
                        we_left |= members.iter().any(|m| is_me(&m.jid, &a.me));
                    }
                    (
                        action.as_str().to_owned(),
                        members.iter().map(|m| m.jid.clone()).collect(),
                        None,
                    )
                }
                GroupChange::Left(members) => {
                    if let Some(i) = info.as_mut() {
                        removed |= i.remove_members(members);
                    }
                    (
                        "leave".to_owned(),
                        members.iter().map(|m| m.jid.clone()).collect(),
                        None,
                    )
                }
                GroupChange::Subject(s) => {
                    if let Some(i) = info.as_mut() {
                        i.subject = s.clone();
                        i.subject_time = n.t;
                        i.subject_owner = n.author.clone();
                    }
                    ("subject".to_owned(), Vec::new(), Some(s.clone()))
                }
                GroupChange::Addressing(mode) => {
                    if let Some(i) = info.as_mut()
                        && i.addressing != *mode
                    {
                        i.addressing = *mode;
                        removed = true;
                    }
                    (
                        "addressing".to_owned(),
                        Vec::new(),
                        Some(mode.as_str().to_owned()),
                    )
                }
                GroupChange::Other(tag) => {
                    tracing::debug!(group = %n.group, tag, "group change not modelled");
                    continue;
                }
            };
            updates.push(GroupUpdate {
                group: n.group.clone(),
                id: id.clone(),
                seq: seq as u32,
                author: n.author.clone(),
                t: n.t,
                action,
                participants,
                subject,
            });
        }
        let mut fresh = Vec::with_capacity(updates.len());
        for u in updates {
            match self.store.record_group_update(&u).await {
                Ok(true) => fresh.push(u),
                Ok(false) => return, // seen before: already applied
                Err(e) => {
                    // Unstored, it is not acked either: the server delivers it again.
                    tracing::warn!(error = %e, "cannot store group update");
                    return;
                }
            }
        }
        if let Some(i) = info {
            if let Err(e) = self.store.set_group(&i).await {
                tracing::warn!(error = %e, "cannot store group metadata");
            }
            self.cache_group(&i);
        }
        if (removed || we_left)
            && let Some(a) = &account
            && let Err(e) = self.rotate_group_key(a, &n.group).await
        {
            tracing::warn!(error = %e, "cannot rotate our sender key");
        }
        // Announced once applied: a consumer that sends on the event sees the new members.
        for u in fresh {
            self.publish(Event::GroupUpdate(Box::new(u)));
        }
    }

    // ---- group calls ----

    /// Creates a group with `participants` (user JIDs); we are its creator and admin.
    pub(super) async fn create_group(
        &self,
        subject: &str,
        participants: &[Jid],
    ) -> Result<GroupInfo, SendError> {
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        let key = stanza::message_id(self.clock.now_unix(), "group");
        let answer = self
            .link
            .iq
            .query(
                &sender,
                group_create(subject, participants, &key),
                IQ_TIMEOUT,
            )
            .await?;
        let info = answer
            .child("group")
            .and_then(parse_group)
            .ok_or_else(|| server_error("create answer without a <group>"))?;
        self.adopt_group(info.clone()).await?;
        Ok(info)
    }

    /// Adds, removes, promotes or demotes members; returns each one's outcome (error code).
    pub(super) async fn change_members(
        &self,
        group: &Jid,
        action: MemberAction,
        members: &[Jid],
    ) -> Result<Vec<(Jid, Option<u16>)>, SendError> {
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        let answer = self
            .link
            .iq
            .query(&sender, group_members(group, action, members), IQ_TIMEOUT)
            .await?;
        let results = parse_member_results(&answer, action);
        // The notification that follows updates the cache; ask anew meanwhile.
        self.forget_group(group);
        if action == MemberAction::Remove
            && results.iter().any(|(_, e)| e.is_none())
            && let Some(a) = self.account()
        {
            self.rotate_group_key(&a, group).await?;
        }
        Ok(results)
    }

    /// Leaves `group`.
    pub(super) async fn leave_group(&self, group: &Jid) -> Result<(), SendError> {
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        self.link
            .iq
            .query(&sender, group_leave(group), IQ_TIMEOUT)
            .await?;
        self.forget_group(group);
        if let Some(a) = self.account() {
            self.rotate_group_key(&a, group).await?;
        }
        Ok(())
    }

    /// Changes `group`'s subject.
    pub(super) async fn set_group_subject(
        &self,
        group: &Jid,
        subject: &str,
    ) -> Result<(), SendError> {
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        self.link
            .iq
            .query(&sender, group_subject(group, subject), IQ_TIMEOUT)
            .await?;
        self.forget_group(group);
        Ok(())
    }
}
