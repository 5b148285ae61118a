//! The server's message routing (MESSAGING.md §5): it acks every `<message>` with `t` (the same
//! `t` for a resent id, delivered once), fans each `<to>` out to its device with the attributes
//! the server adds, keeps a queue per real device until that device receipts or acks each
//! stanza (redelivered on every reconnect), forwards receipts and retry receipts, and plays the
//! simulated users: their devices decrypt what reaches them, answer with receipts (or retry
//! receipts), echo texts when told to, and send texts of their own.

use std::sync::Arc;

use super::phone::SimPeer;
use super::server::{
    Control, Device, INBOX_KEPT, SENT_KEPT, Shared, SimError, State, valid_number,
};
use crate::binary::{Jid, Node, Server};
use crate::proto::wa;
use crate::signal::{EncType, PreKeyBundle};
use crate::stanza;

/// Stanzas kept per device for redelivery; past it the oldest are dropped.
pub const QUEUE_KEPT: usize = 10_000;
/// Accepted (sender device, id) pairs remembered for acking resends.
const SEEN_KEPT: usize = 100_000;

/// A message a simulated user's devices received and decrypted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Received {
    /// Message id.
    pub id: String,
    /// The author (user JID).
    pub from: String,
    /// The conversation (the author, or the peer for what the user's other devices sent).
    pub chat: String,
    /// The text.
    pub text: Option<String>,
    /// Server time (unix seconds).
    pub timestamp: u64,
    /// How many of the user's devices decrypted it.
    pub devices: usize,
    /// Which devices did (a resend reaching a device twice counts once).
    #[serde(skip)]
    pub device_ids: Vec<u16>,
}

impl Received {
    /// Counts device `device` as having decrypted it (once).
    pub(super) fn add_device(&mut self, device: u16) {
        if !self.device_ids.contains(&device) {
            self.device_ids.push(device);
            self.devices = self.device_ids.len();
        }
    }
}

/// A retry receipt for `id` is on its way to the real device `key`: the resend it asks for
/// is a stanza of its own, not a duplicate of the message (Baileys resends a whole group
/// message, same id, when the asking device is a phone).
pub(super) fn allow_resend(st: &mut State, key: &str, id: &str) {
    st.seen.remove(&(key.to_owned(), id.to_owned()));
}

/// A message the server accepted, as it came over the wire.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Logged {
    /// The sending device.
    pub from: String,
    /// The stanza's `to`.
    pub to: String,
    /// Message id.
    pub id: String,
    /// Each `<to jid>` (or the stanza's `to` for a lone `<enc>`) with its enc type.
    pub encs: Vec<(String, String)>,
    /// The error code the ack carried, if refused.
    pub error: Option<u16>,
    /// Whether it carried a privacy token.
    pub tctoken: bool,
}

/// Messages kept in the log.
const LOG_KEPT: usize = 10_000;

/// A stanza waiting for a device's answer.
#[derive(Debug, Clone)]
pub(super) struct Queued {
    pub(super) id: String,
    pub(super) node: Node,
}

/// Queues `node` for the real device `key`, sending it now when the device is online.
pub(super) fn enqueue(st: &mut State, key: &str, id: String, node: Node) {
    tracing::debug!(
        key,
        id,
        online = st.online.contains(key),
        "simulator: queued"
    );
    if st.online.contains(key)
        && let Some(live) = st.live.get(key)
    {
        let _ = live.send(Control::Deliver(Box::new(node.clone())));
    }
    let q = st.queues.entry(key.to_owned()).or_default();
    if q.len() >= QUEUE_KEPT {
        q.pop_front();
    }
    q.push_back(Queued { id, node });
}

/// The device answered `ids`: they leave its queue.
pub(super) fn answered(st: &mut State, key: &str, ids: &[String]) {
    if let Some(q) = st.queues.get_mut(key) {
        q.retain(|item| !ids.contains(&item.id));
        if q.is_empty() {
            st.queues.remove(key);
        }
    }
}

/// Everything queued for `key`, marked `offline`, and the device is now online: what is
/// queued from here on goes straight out.
pub(super) fn flush(st: &mut State, key: &str) -> Vec<Node> {
    st.online.insert(key.to_owned());
    st.queues
        .get(key)
        .map(|q| {
            q.iter()
                .map(|item| {
                    let mut n = item.node.clone();
                    n.attrs.retain(|(k, _)| k != "offline");
                    n.attr("offline", "1")
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ack(id: &str, to: &Node, t: u64, error: Option<u16>) -> Node {
    let mut a = Node::new("ack")
        .attr("class", "message")
        .attr("id", id.to_owned())
        .attr("t", t.to_string());
    if let Some(v) = to.get("to") {
        a = a.attr("from", v.clone());
    }
    if let Some(e) = error {
        a = a.attr("error", e.to_string());
    }
    a
}

/// A real device's `<message>`: returns the ack (None while the sender's acks are withheld).
pub(super) async fn accept_message(shared: &Shared, dev: &Device, node: &Node) -> Option<Node> {
    let id = node
        .get_str("id")
        .map(|s| s.into_owned())
        .unwrap_or_default();
    let now = shared.clock.now_unix();
    // A retry resend reuses the id for one device: it is a stanza of its own. Its counted
    // `<enc>` need not come first (Baileys puts a group's skmsg before it), and a group resend
    // names its device in `participant`.
    let retry = node
        .child_nodes()
        .iter()
        .filter(|e| e.tag == "enc")
        .find_map(|e| e.get_str("count").map(|c| c.into_owned()));
    let seen_id = match &retry {
        Some(c) => format!(
            "{id}#{}#{}#{c}",
            node.get_str("to").unwrap_or_default(),
            node.get_str("participant").unwrap_or_default()
        ),
        None => id.clone(),
    };
    let key = (dev.jid.to_string(), seen_id);
    {
        let mut st = shared.state.lock().ok()?;
        if id.is_empty() || node.get_jid("to").is_none() {
            return Some(ack(&id, node, now, Some(479)));
        }
        // A resend of an accepted message: the same answer, no second delivery.
        if let Some(t) = st.seen.get(&key) {
            return Some(ack(&id, node, *t, None));
        }
        if st.withhold_acks.contains(&dev.jid.user) {
            if st.held.len() >= QUEUE_KEPT {
                // Held past what a device may queue: refused, as an overloaded server would.
                return Some(ack(&id, node, now, Some(503)));
            }
            st.held.push((dev.clone(), node.clone()));
            return None;
        }
        st.seen.insert(key.clone(), now);
        st.seen_order.push_back(key.clone());
        if st.seen_order.len() > SEEN_KEPT
            && let Some(old) = st.seen_order.pop_front()
        {
            st.seen.remove(&old);
        }
    }
    let routed = route(shared, dev, node, now).await;
    let error = routed.as_ref().err().copied();
    let phash = routed.ok().flatten();
    if let Ok(mut st) = shared.state.lock() {
        if st.log.len() >= LOG_KEPT {
            st.log.pop_front();
        }
        let mut encs: Vec<(String, String)> = node
            .child("participants")
            .map(|p| {
                p.child_nodes()
                    .iter()
                    .filter_map(|t| {
                        let e = t.child("enc")?;
                        Some((
                            t.get_str("jid")?.into_owned(),
                            e.get_str("type")?.into_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        // A lone or shared top-level <enc> (a retry resend, a group's skmsg).
        if let Some(e) = node.child("enc")
            && let (Some(to), Some(kind)) = (node.get_str("to"), e.get_str("type"))
        {
            encs.push((to.into_owned(), kind.into_owned()));
        }
        st.log.push_back(Logged {
            from: dev.jid.to_string(),
            to: node
                .get_str("to")
                .map(|s| s.into_owned())
                .unwrap_or_default(),
            id: id.clone(),
            encs,
            error,
            tctoken: node.child("tctoken").is_some(),
        });
    }
    if error.is_some()
        && let Ok(mut st) = shared.state.lock()
    {
        // A refused message was not accepted: the same id may come again, corrected.
        st.seen.remove(&key);
    }
    let a = ack(&id, node, now, error);
    Some(match phash {
        Some(p) => a.attr("phash", p),
        None => a,
    })
}

/// Releases what was held for `number`: each held message is accepted, delivered once and
/// acked now.
pub(super) async fn release_held(shared: &Shared, number: &str) {
    let held: Vec<(Device, Node)> = {
        let Ok(mut st) = shared.state.lock() else {
            return;
        };
        st.withhold_acks.remove(number);
        let (mine, rest) = std::mem::take(&mut st.held)
            .into_iter()
            .partition(|(d, _)| d.jid.user == number);
        st.held = rest;
        mine
    };
    for (dev, node) in held {
        if let Some(a) = Box::pin(accept_message(shared, &dev, &node)).await {
            let key = dev.jid.to_string();
            if let Ok(st) = shared.state.lock()
                && let Some(live) = st.live.get(&key)
            {
                let _ = live.send(Control::Deliver(Box::new(a)));
            }
        }
    }
}

/// Where a device JID lives.
pub(super) enum Target {
    /// A linked real client.
    Real(String),
    /// A simulated device of user `number`.
    Sim(String, Arc<SimPeer>),
}

pub(super) fn target(st: &State, d: &Jid) -> Option<Target> {
    let pn = match d.server {
        Server::User => d.user.clone(),
        Server::Lid => st.lids.get(&d.user)?.clone(),
        _ => return None,
    };
    let as_pn = Jid::with_device(pn.clone(), d.device, Server::User).to_string();
    if st.companions.contains_key(&as_pn) {
        return Some(Target::Real(as_pn));
    }
    let phone = st.phones.get(&pn)?;
    phone.sim_device(d.device).map(|p| Target::Sim(pn, p))
}

/// Delivers each `<enc>` of a message to its device; Err(code) refuses the whole stanza,
/// Ok(Some(phash)) is the server's participant hash when a group stanza's differs.
async fn route(shared: &Shared, dev: &Device, node: &Node, t: u64) -> Result<Option<String>, u16> {
    let to = node.get_jid("to").ok_or(479u16)?;
    if to.server == Server::Group {
        return super::groups::route_group(shared, dev, node, t).await;
    }
    let id = node
        .get_str("id")
        .map(|s| s.into_owned())
        .unwrap_or_default();
    let mut encs: Vec<(Jid, Node)> = Vec::new();
    if let Some(parts) = node.child("participants") {
        for p in parts.child_nodes().iter().filter(|p| p.tag == "to") {
            let jid = p.get_jid("jid").ok_or(479u16)?;
            let enc = p.child("enc").ok_or(479u16)?;
            encs.push((jid, enc.clone()));
        }
    } else if let Some(enc) = node.child("enc") {
        // Device-targeted (a retry resend), or WhatsApp Web's lone-device fast path.
        encs.push((to.clone(), enc.clone()));
    } else {
        return Err(400);
    }
    // One namespace per stanza (the server 400s a mix).
    if encs.iter().any(|(j, _)| j.server != to.server) {
        return Err(400);
    }
    let chat = to.to_non_ad();
    let mut sims = Vec::new();
    {
        let Ok(mut st) = shared.state.lock() else {
            return Err(500);
        };
        // WhatsApp refuses LID DMs from accounts not yet migrated to LID chats.
        if to.server == Server::Lid
            && st
                .phones
                .get(&dev.jid.user)
                .is_some_and(|p| p.lid_unmigrated)
        {
            return Err(400);
        }
        if let Some(recipient) = user_number(&st, &chat)
            && recipient != dev.jid.user
        {
            let token = node.child("tctoken").and_then(|t| t.content_bytes());
            if !may_reach(&st, &dev.jid.user, &recipient, token.map(|b| &b[..])) {
                return Err(463);
            }
            wrote(&mut st, &dev.jid.user, &recipient, t);
        }
        let push_name = st
            .phones
            .get(&dev.jid.user)
            .and_then(|p| p.account.push_name.clone());
        let identity = node.child("device-identity").cloned();
        for (d, enc) in encs {
            if d.user == dev.jid.user && d.device == dev.jid.device {
                continue; // the sender itself (Baileys' LID-group quirk)
            }
            let own = d.user == dev.jid.user || d.user == dev.lid.user;
            let mut enc = enc;
            let Some(tgt) = target(&st, &d) else {
                tracing::debug!(device = %d, "simulator: no such device");
                continue;
            };
            let target_user = match &tgt {
                Target::Real(k) => k.split([':', '@']).next().unwrap_or_default().to_owned(),
                Target::Sim(n, _) => n.clone(),
            };
            if take_corruption(&mut st, &target_user, matches!(tgt, Target::Real(_))) {
                enc = corrupt(enc);
            }
            // The sender as the recipient's namespace names it, the other form beside it.
            let (from, alt_attr, alt) = if d.server == Server::Lid {
                (dev.lid.clone(), "sender_pn", dev.jid.clone())
            } else {
                (dev.jid.clone(), "sender_lid", dev.lid.clone())
            };
            let mut out = Node::new("message")
                .attr("from", from)
                .attr("id", id.clone())
                .attr(
                    "type",
                    node.get_str("type")
                        .map(|s| s.into_owned())
                        .unwrap_or("text".into()),
                )
                .attr("t", t.to_string());
            if let Some(e) = node.get("edit") {
                out = out.attr("edit", e.clone());
            }
            if own {
                out = out.attr("recipient", chat.clone());
                if let Some((k, v)) = alternate(&st, &chat) {
                    out = out.attr(k, v);
                }
            } else {
                out = out.attr(alt_attr, alt);
                if let Some(n) = &push_name {
                    out = out.attr("notify", n.clone());
                }
            }
            let mut children = vec![enc.clone()];
            if enc.get_str("type").as_deref() == Some("pkmsg")
                && let Some(i) = &identity
            {
                children.push(i.clone());
            }
            let out = out.children(children);
            match tgt {
                Target::Real(k) => enqueue(&mut st, &k, id.clone(), out),
                Target::Sim(n, peer) => sims.push((n, peer, out)),
            }
        }
    }
    // After the ack and in order with group deliveries (they share pairwise sessions).
    for (number, peer, node) in sims {
        super::groups::queue(
            shared,
            super::groups::Delivery::Direct {
                number,
                peer,
                sender: dev.jid.clone(),
                node: Box::new(node),
            },
        )
        .await;
    }
    Ok(None)
}

/// The phone number of a user JID (PN or a known LID).
fn user_number(st: &State, user: &Jid) -> Option<String> {
    match user.server {
        Server::User => Some(user.user.clone()),
        Server::Lid => st.lids.get(&user.user).cloned(),
        _ => None,
    }
}

/// Whether `from` may write to `to`: always, unless `from` is under the reach-out lock and
/// `to` never wrote to it and the message lacks `to`'s token.
fn may_reach(st: &State, from: &str, to: &str, token: Option<&[u8]>) -> bool {
    let locked = st.phones.get(from).is_some_and(|p| p.reach_out_lock);
    if !locked {
        return true;
    }
    match st.tokens.get(&(to.to_owned(), from.to_owned())) {
        Some(t) => token == Some(&t[..]),
        None => false,
    }
}

/// `from` wrote to `to`: the first time, `from` issues its privacy token to `to` (so `to` may
/// answer even under the reach-out lock), delivered to `to`'s devices.
fn wrote(st: &mut State, from: &str, to: &str, t: u64) {
    issue_token(st, from, to, t);
}

/// `issuer` gives `holder` its privacy token (once), and tells `holder`'s devices.
pub(super) fn issue_token(st: &mut State, issuer: &str, holder: &str, t: u64) {
    let key = (issuer.to_owned(), holder.to_owned());
    // Tokens exist between users only (the map grows with real pairs, not with what a
    // client names).
    if st.tokens.contains_key(&key)
        || !st.phones.contains_key(issuer)
        || !st.phones.contains_key(holder)
    {
        return;
    }
    let token = rand::random::<[u8; 24]>().to_vec();
    st.tokens.insert(key, token.clone());
    let id = crate::util::ids::phone_message_id();
    let note = Node::new("notification")
        .attr("from", Jid::new(issuer, Server::User))
        .attr("type", "privacy_token")
        .attr("id", id.clone())
        .attr("t", t.to_string())
        .children(vec![Node::new("tokens").children(vec![
            Node::new("token")
                .attr("jid", Jid::new(holder, Server::User))
                .attr("t", t.to_string())
                .attr("type", "trusted_contact")
                .bytes(token),
        ])]);
    for k in st.linked_devices(holder).iter().map(|j| j.to_string()) {
        enqueue(st, &k, id.clone(), note.clone());
    }
}

/// `peer_recipient_lid` / `peer_recipient_pn`: the other form of a recipient user.
fn alternate(st: &State, user: &Jid) -> Option<(&'static str, Jid)> {
    match user.server {
        Server::User => {
            let p = st.phones.get(&user.user)?;
            Some((
                "peer_recipient_lid",
                Jid::new(p.account.lid.clone(), Server::Lid),
            ))
        }
        Server::Lid => Some((
            "peer_recipient_pn",
            Jid::new(st.lids.get(&user.user)?.clone(), Server::User),
        )),
        _ => None,
    }
}

/// The phone-number form of a device JID (simulated devices key their sessions by it).
fn pn_device(st: &State, d: &Jid) -> Option<Jid> {
    match d.server {
        Server::Lid => Some(Jid::with_device(
            st.lids.get(&d.user)?.clone(),
            d.device,
            Server::User,
        )),
        _ => Some(d.clone()),
    }
}

/// Whether this delivery to one of `number`'s devices is the one to corrupt: the user's
/// linked (real) devices are hit first, its simulated ones when it has none.
pub(super) fn take_corruption(st: &mut State, number: &str, real: bool) -> bool {
    let has_real = !st.linked_devices(number).is_empty();
    match st.phones.get_mut(number) {
        Some(p) if p.corrupt_next && (real || !has_real) => {
            p.corrupt_next = false;
            true
        }
        _ => false,
    }
}

/// The same `<enc>` with its last byte (inside the MAC) flipped.
pub(super) fn corrupt(enc: Node) -> Node {
    match enc.content_bytes() {
        Some(b) if !b.is_empty() => {
            let mut v = b.to_vec();
            let last = v.len() - 1;
            v[last] ^= 0x01;
            enc.clone().bytes(v)
        }
        _ => enc,
    }
}

/// A simulated device receives `node` from `sender`: decrypt, record, answer.
pub(super) async fn sim_receive(
    shared: &Shared,
    number: &str,
    peer: &Arc<SimPeer>,
    sender: &Jid,
    node: &Node,
) {
    let id = node
        .get_str("id")
        .map(|s| s.into_owned())
        .unwrap_or_default();
    let Some(enc) = node.child("enc") else { return };
    let kind = enc.get_str("type").and_then(|k| EncType::parse(&k));
    let (Some(kind), Some(ct)) = (kind, enc.content_bytes()) else {
        return;
    };
    let t = shared.clock.now_unix();
    match peer.decrypt(sender, kind, ct).await {
        Ok(message) => {
            let own = sender.user == number;
            let (message, chat) = match (own, message.device_sent_message.clone()) {
                (true, Some(dsm)) => (
                    dsm.message.map(|m| *m).unwrap_or_default(),
                    dsm.destination_jid.unwrap_or_default(),
                ),
                _ => (message, sender.to_non_ad().to_string()),
            };
            let text = message.conversation.clone().or_else(|| {
                message
                    .extended_text_message
                    .as_ref()
                    .and_then(|e| e.text.clone())
            });
            let (withhold, echo) = {
                let Ok(mut st) = shared.state.lock() else {
                    return;
                };
                let Some(p) = st.phones.get_mut(number) else {
                    return;
                };
                p.retries.remove(&(sender.to_string(), id.clone()));
                p.received(
                    Received {
                        id: id.clone(),
                        from: sender.to_non_ad().to_string(),
                        chat,
                        text: text.clone(),
                        timestamp: node.get_str("t").and_then(|t| t.parse().ok()).unwrap_or(t),
                        devices: 0,
                        device_ids: Vec::new(),
                    },
                    peer.jid.device,
                );
                (p.withhold_receipts, p.echo && !own && peer.jid.device == 0)
            };
            if !withhold {
                let mut r = Node::new("receipt")
                    .attr("from", peer.jid.clone())
                    .attr("id", id.clone())
                    .attr("t", t.to_string());
                if own {
                    r = r.attr("type", "sender");
                }
                to_device(shared, sender, id.clone(), r);
            }
            if echo && let Some(text) = text {
                let _ = Box::pin(phone_send(shared, number, &sender.to_non_ad(), &text)).await;
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, device = %peer.jid, "simulated device cannot decrypt; asking a retry");
            ask_retry(shared, number, peer, sender, node, &id, |r| {
                r.attr("from", peer.jid.clone())
            })
            .await;
        }
    }
}

/// A simulated device asks `sender` to resend message `id` (up to the retry limit, with its
/// keys from the second time); `from` names the asking device as the server forwards it.
pub(super) async fn ask_retry(
    shared: &Shared,
    number: &str,
    peer: &Arc<SimPeer>,
    sender: &Jid,
    node: &Node,
    id: &str,
    from: impl FnOnce(Node) -> Node,
) {
    let t = shared.clock.now_unix();
    let count = {
        let Ok(mut st) = shared.state.lock() else {
            return;
        };
        let Some(p) = st.phones.get_mut(number) else {
            return;
        };
        if p.retries.len() > SENT_KEPT * 4 {
            p.retries.clear();
        }
        let c = p
            .retries
            .entry((sender.to_string(), id.to_owned()))
            .or_insert(0);
        *c += 1;
        *c
    };
    if count > stanza::MAX_RETRIES {
        return;
    }
    let keys = if count >= 2 {
        peer.bundle().await.ok()
    } else {
        None
    };
    let retry = stanza::retry_receipt(
        id,
        sender,
        count,
        node.get_str("t").as_deref(),
        peer.registration_id,
        keys.as_ref().and_then(|b| {
            Some(stanza::RetryKeys {
                identity: &b.identity_key,
                pre_key: b.pre_key?,
                signed: (
                    b.signed_pre_key_id,
                    b.signed_pre_key,
                    b.signed_pre_key_signature,
                ),
                device_identity: &[],
            })
        }),
    );
    // As the server forwards it: from the device that asks, to the sender.
    let mut r = retry;
    r.attrs.retain(|(k, _)| k != "to");
    let r = from(r).attr("t", t.to_string());
    if let Ok(mut st) = shared.state.lock() {
        let key = Jid::with_device(sender.user.clone(), sender.device, Server::User).to_string();
        allow_resend(&mut st, &key, id);
    }
    to_device(shared, sender, id.to_owned(), r);
}

/// Queues a stanza for one real device (nothing happens for a simulated one).
pub(super) fn to_device(shared: &Shared, device: &Jid, id: String, node: Node) {
    if let Ok(mut st) = shared.state.lock() {
        let key = Jid::with_device(device.user.clone(), device.device, Server::User).to_string();
        if st.companions.contains_key(&key) {
            enqueue(&mut st, &key, id, node);
        }
    }
}

/// A real device's `<receipt>`: it answers queued stanzas and goes on to whom it concerns.
pub(super) async fn on_receipt(shared: &Shared, dev: &Device, node: &Node) {
    let ids = stanza::receipt_ids(node);
    let kind = node.get_str("type").map(|s| s.into_owned());
    let t = shared.clock.now_unix();
    let key = dev.jid.to_string();
    let Some(to) = node.get_jid("to") else {
        // Baileys' `sender` receipts may name nobody: they only answer the delivery.
        if let Ok(mut st) = shared.state.lock() {
            answered(&mut st, &key, &ids);
        }
        return;
    };
    if to.server == Server::Group {
        super::groups::on_receipt(shared, dev, node, &to, kind.as_deref(), &ids).await;
        return;
    }
    let retry_for_sim = {
        let Ok(mut st) = shared.state.lock() else {
            return;
        };
        answered(&mut st, &key, &ids);
        if kind.as_deref() == Some("sender") || kind.as_deref() == Some("peer_msg") {
            return;
        }
        // A simulated user learns that what it sent was read.
        if matches!(kind.as_deref(), Some("read" | "read-self"))
            && let Some(number) = user_number(&st, &to.to_non_ad())
            && let Some(p) = st.phones.get_mut(&number)
        {
            for id in &ids {
                p.read.insert(id.clone());
            }
            if p.read.len() > INBOX_KEPT {
                p.read.clear();
            }
        }
        let mut fwd = Node::new("receipt")
            .attr("from", dev.jid.clone())
            .attr("id", ids.first().cloned().unwrap_or_default())
            .attr("t", t.to_string());
        if let Some(k) = &kind {
            fwd = fwd.attr("type", k.clone());
        }
        if let Some(r) = node.get("recipient") {
            fwd = fwd.attr("recipient", r.clone());
        }
        let fwd = fwd.children(node.child_nodes().to_vec());
        let first = ids.first().cloned().unwrap_or_default();
        let is_retry = kind.as_deref() == Some("retry");
        if to.device > 0 || is_retry {
            match target(&st, &to) {
                Some(Target::Real(k)) => {
                    if is_retry {
                        allow_resend(&mut st, &k, &first);
                    }
                    enqueue(&mut st, &k, first, fwd);
                    None
                }
                Some(Target::Sim(n, peer)) if is_retry => Some((n, peer)),
                _ => None,
            }
        } else {
            // To every real device of the user.
            let pn = match to.server {
                Server::Lid => st.lids.get(&to.user).cloned().unwrap_or_default(),
                _ => to.user.clone(),
            };
            for k in st.linked_devices(&pn).iter().map(|j| j.to_string()) {
                if k != key {
                    enqueue(&mut st, &k, first.clone(), fwd.clone());
                }
            }
            None
        }
    };
    if let Some((number, peer)) = retry_for_sim
        && let Some(req) = stanza::parse_retry(&node.clone().attr("from", dev.jid.clone()))
    {
        answer_retry(shared, &number, &peer, &req).await;
    }
}

/// A simulated device resends message `req.id` to the device that asked.
async fn answer_retry(
    shared: &Shared,
    number: &str,
    peer: &Arc<SimPeer>,
    req: &stanza::RetryRequest,
) {
    if req.count >= stanza::MAX_RETRIES {
        return;
    }
    let found = shared.state.lock().ok().and_then(|st| {
        let p = st.phones.get(number)?;
        p.sent
            .iter()
            .find(|(id, _, _)| *id == req.id)
            .map(|(_, _, m)| m.clone())
    });
    let Some(message) = found else { return };
    let bundle = match &req.keys {
        Some(k) => Some(k.clone()),
        None if !peer.has_session(&req.from).await => real_bundle(shared, &req.from),
        None => None,
    };
    let Ok(ct) = peer.encrypt(&req.from, bundle.as_ref(), &message).await else {
        return;
    };
    let t = shared.clock.now_unix();
    let node = Node::new("message")
        .attr("from", peer.jid.clone())
        .attr("id", req.id.clone())
        .attr("type", "text")
        .attr("t", req.t.clone().unwrap_or_else(|| t.to_string()))
        .children(vec![stanza::enc_node(&ct, Some(req.count))]);
    to_device(shared, &req.from, req.id.clone(), node);
}

/// A real device's `<ack>`: it answers a queued stanza.
pub(super) fn on_ack(shared: &Shared, dev: &Device, node: &Node) {
    if let Some(id) = node.get_str("id")
        && let Ok(mut st) = shared.state.lock()
    {
        answered(&mut st, &dev.jid.to_string(), &[id.into_owned()]);
    }
}

/// A real device's published bundle, consuming one of its one-time prekeys.
fn real_bundle(shared: &Shared, device: &Jid) -> Option<PreKeyBundle> {
    let mut st = shared.state.lock().ok()?;
    let key = Jid::with_device(device.user.clone(), device.device, Server::User).to_string();
    let c = st.companions.get_mut(&key)?;
    let b = c.bundle.clone()?;
    Some(PreKeyBundle {
        registration_id: b.registration_id,
        pre_key: c.prekeys.take(),
        signed_pre_key_id: b.signed_pre_key_id,
        signed_pre_key: b.signed_pre_key,
        signed_pre_key_signature: b.signature,
        identity_key: c.device.identity_public,
    })
}

/// The bundle of any device, as the server serves `<key><user jid>` (None: 406).
pub(super) async fn bundle_of(shared: &Shared, device: &Jid) -> Option<PreKeyBundle> {
    let tgt = {
        let st = shared.state.lock().ok()?;
        target(&st, device)?
    };
    match tgt {
        Target::Real(_) => {
            let pn = {
                let st = shared.state.lock().ok()?;
                match device.server {
                    Server::Lid => st.lids.get(&device.user)?.clone(),
                    _ => device.user.clone(),
                }
            };
            real_bundle(shared, &Jid::with_device(pn, device.device, Server::User))
        }
        Target::Sim(_, peer) => peer.bundle().await.ok(),
    }
}

/// User `number`'s phone sends `text` to `to` (digits or a JID): every device of the
/// recipient gets it, and the user's own other devices a copy. Returns the message id.
pub(super) async fn phone_send(
    shared: &Shared,
    number: &str,
    to: &Jid,
    text: &str,
) -> Result<String, SimError> {
    if to.server == Server::Group {
        return super::groups::phone_send(shared, number, &to.user, text).await;
    }
    let id = crate::util::ids::phone_message_id();
    let message = wa::Message {
        conversation: Some(text.to_owned()),
        ..Default::default()
    };
    let t = shared.clock.now_unix();
    let lid_mode = to.server == Server::Lid;
    let (me, sender_lid, push_name, targets) = {
        let mut st = shared.state.lock().map_err(|_| SimError::Internal)?;
        let to_pn = match to.server {
            Server::Lid => st.lids.get(&to.user).cloned().ok_or(SimError::BadNumber)?,
            _ => to.user.clone(),
        };
        if !valid_number(&to_pn) {
            return Err(SimError::BadNumber);
        }
        st.phone(&to_pn, None);
        st.phone(number, None);
        if to_pn != number {
            wrote(&mut st, number, &to_pn, t);
        }
        let phone = st.phone(number, None);
        if phone.sent.len() >= SENT_KEPT {
            phone.sent.pop_front();
        }
        phone
            .sent
            .push_back((id.clone(), to.to_non_ad(), message.clone()));
        let me = phone.signal.clone();
        let lid = Jid::with_device(phone.account.lid.clone(), 0, Server::Lid);
        let push_name = phone.account.push_name.clone();
        let mut targets: Vec<(Jid, bool)> = Vec::new();
        for user in [to_pn.as_str(), number] {
            let own = user == number;
            if own && to_pn == number {
                continue;
            }
            let p = st.phones.get(user).ok_or(SimError::Internal)?;
            // Target devices in the namespace the message is addressed in.
            let lid = p.account.lid.clone();
            let name = |j: &Jid| {
                if lid_mode {
                    Jid::with_device(lid.clone(), j.device, Server::Lid)
                } else {
                    j.clone()
                }
            };
            for d in p.sim_devices() {
                if d.jid != me.jid {
                    targets.push((name(&d.jid), own));
                }
            }
            for j in st.linked_devices(user) {
                if st
                    .companions
                    .get(&j.to_string())
                    .is_some_and(|c| c.bundle.is_some())
                {
                    targets.push((name(&j), own));
                }
            }
        }
        (me, lid, push_name, targets)
    };
    let chat = Jid::new(to.user.clone(), to.server.clone());
    let dsm = wa::Message {
        device_sent_message: Some(Box::new(wa::DeviceSentMessage {
            destination_jid: Some(chat.to_string()),
            message: Some(Box::new(message.clone())),
            phash: None,
        })),
        ..Default::default()
    };
    let from = if lid_mode {
        sender_lid.clone()
    } else {
        me.jid.to_non_ad()
    };
    for (device, own) in targets {
        // Simulated devices key sessions by the phone number, whatever the wire says.
        let Some(pn) = shared
            .state
            .lock()
            .ok()
            .and_then(|st| pn_device(&st, &device))
        else {
            continue;
        };
        let bundle = if me.has_session(&pn).await {
            None
        } else {
            match bundle_of(shared, &device).await {
                Some(b) => Some(b),
                None => continue,
            }
        };
        let body = if own { &dsm } else { &message };
        let Ok(ct) = me.encrypt(&pn, bundle.as_ref(), body).await else {
            continue;
        };
        let mut node = Node::new("message")
            .attr("from", from.clone())
            .attr("id", id.clone())
            .attr("type", "text")
            .attr("t", t.to_string());
        if own {
            node = node.attr("recipient", chat.clone());
        } else {
            node = if lid_mode {
                node.attr("sender_pn", me.jid.to_non_ad())
            } else {
                node.attr("sender_lid", sender_lid.clone())
            };
            if let Some(n) = &push_name {
                node = node.attr("notify", n.clone());
            }
        }
        let mut enc = stanza::enc_node(&ct, None);
        let corrupt_it = shared.state.lock().is_ok_and(|mut st| {
            let real = st.companions.contains_key(&pn.to_string());
            take_corruption(&mut st, &pn.user, real)
        });
        if corrupt_it {
            enc = corrupt(enc);
        }
        let node = node.children(vec![enc]);
        let sim = shared
            .state
            .lock()
            .ok()
            .and_then(|st| match target(&st, &device) {
                Some(Target::Sim(n, p)) => Some((n, p)),
                _ => None,
            });
        match sim {
            Some((n, p)) => Box::pin(sim_receive(shared, &n, &p, &me.jid, &node)).await,
            None => to_device(shared, &pn, id.clone(), node),
        }
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupting_flips_only_the_last_byte() {
        let enc = Node::new("enc").attr("v", "2").bytes(vec![1, 2, 3]);
        let c = corrupt(enc.clone());
        assert_eq!(c.content_bytes().unwrap().as_ref(), &[1, 2, 2]);
        assert_eq!(c.get_str("v").as_deref(), Some("2"));
    }
}
