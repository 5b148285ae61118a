//! One-to-one messaging (MESSAGING.md §1, §5.2): the server fans each `<to>` of a DM out to its
//! device with the attributes it adds, enforces the reach-out lock with privacy tokens, and
//! forwards DM receipts and retry receipts; and the simulated users' side of it: their devices
//! decrypt what reaches them (showing each message once, counting every copy), answer with
//! receipts (or retry receipts), echo texts when told to, resend on a retry receipt, and send
//! texts of their own. Groups are `groups.rs`; accepting and acking stanzas is `accept.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::deliver::{
    Routed, Target, answered, bundle_of, corrupt, enc_for, enqueue, real_bundle, take_corruption,
    target, to_device, with_edit,
};
use super::error::SimError;
use super::inbox::{Arrival, INBOX_KEPT, MessageKey};
use super::phone::SimPeer;
use super::retry::ask_retry;
use super::server::{Device, SENT_KEPT, Shared, State, Work, valid_number};
use crate::binary::{Jid, Node, Server};
use prost::Message as _;

use crate::proto::wa;
use crate::signal::EncType;
use crate::stanza;

/// A simulated device receives a DM stanza after its ack.
struct Direct {
    number: String,
    peer: Arc<SimPeer>,
    sender: Jid,
    node: Node,
}

impl Work for Direct {
    fn run<'a>(
        self: Box<Self>,
        shared: &'a Shared,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            sim_receive(shared, &self.number, &self.peer, &self.sender, &self.node).await
        })
    }
}

/// Delivers each `<enc>` of a DM to its device: real devices' copies are queued now, simulated
/// devices' work is returned to run after the ack; Err(code) refuses the whole stanza.
pub(super) fn route_dm(shared: &Shared, dev: &Device, node: &Node, t: u64) -> Result<Routed, u16> {
    let to = node.get_jid("to").ok_or(479u16)?;
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
    // A peer message (`category="peer"`: key shares, app-state and history requests) goes only
    // to the sender's own devices (whatsmeow `sendPeerMessage` addresses our own user; the
    // phone reads one only from its own account, as `sim_receive` does): one addressed to
    // another user, or fanned out to another user's device, is refused whole. Decision: the
    // references do not show the real server's code for it; 400 (bad request) here.
    if node.get_str("category").as_deref() == Some("peer") {
        let own = |j: &Jid| j.user == dev.jid.user || j.user == dev.lid.user;
        if !own(&to) || encs.iter().any(|(j, _)| !own(j)) {
            return Err(400);
        }
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
            if let Some(code) = cold_refusal(&st, &dev.jid.user, &recipient, node, t) {
                return Err(code);
            }
            count_new_chat(&mut st, &dev.jid.user, &recipient, t);
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
                // A peer message (to our own devices only) arrives marked as one, as the
                // sender marked it (whatsmeow and Baileys read `category="peer"` on receipt).
                if node.get_str("category").as_deref() == Some("peer") {
                    out = out.attr("category", "peer");
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
    let work = sims
        .into_iter()
        .map(|(number, peer, node)| {
            Box::new(Direct {
                number,
                peer,
                sender: dev.jid.clone(),
                node,
            }) as Box<dyn Work>
        })
        .collect();
    Ok(Routed { phash: None, work })
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

/// Whether `to` is cold for `from`: it never gave `from` its tctoken (which it does when it
/// writes to `from`, or when its device issues it).
fn cold(st: &State, from: &str, to: &str) -> bool {
    !st.tokens.contains_key(&(to.to_owned(), from.to_owned()))
}

/// The refusal of a 1:1 send from `from` to the cold user `to`, if any: 463 under
/// `require_cstoken` without a cstoken matching `HMAC-SHA256(from's NCT salt, "<to's
/// LID>@lid")` (a cold user has given no tctoken to match); 475 when `from`'s new-chat capping
/// is used up and `to` is not among this cycle's new chats.
fn cold_refusal(st: &State, from: &str, to: &str, node: &Node, now: u64) -> Option<u16> {
    let phone = st.phones.get(from)?;
    if !cold(st, from, to) {
        return None;
    }
    if phone.require_cstoken {
        let lid = &st.phones.get(to)?.account.lid;
        // No salt (removed through app state): no cstoken can be valid.
        let want = phone
            .current_nct_salt()
            .map(|salt| crate::stanza::privacy::cs_token(salt, lid));
        let got = node.child("cstoken").and_then(|c| c.content_bytes());
        if want.is_none() || got.map(|b| &b[..]) != want.as_ref().map(|w| &w[..]) {
            return Some(463);
        }
    }
    if let Some(c) = &phone.capping
        && !phone.new_chats.contains(to)
        && c.capped(now)
    {
        return Some(475);
    }
    None
}

/// An accepted send from `from` to cold `to` under capping starts a new chat: counted once per
/// user and cycle; the stage turns `CAPPED` when the quota is used up. `from`'s devices are
/// told the new count (a `MessageCappingInfoNotification`, as WhatsApp sends after a new chat
/// uses the quota: whatsapp-rust and Baileys handle it as the state's only live update).
fn count_new_chat(st: &mut State, from: &str, to: &str, t: u64) {
    if !cold(st, from, to) {
        return;
    }
    let Some(phone) = st.phones.get_mut(from) else {
        return;
    };
    let Some(c) = phone.capping.as_mut() else {
        return;
    };
    // Bounded by the quota the control API set (a cycle's users), and at most 100,000.
    if phone.new_chats.len() >= 100_000 || !phone.new_chats.insert(to.to_owned()) {
        return;
    }
    let used = c.used_quota.unwrap_or(0).saturating_add(1);
    c.used_quota = Some(used);
    if c.total_quota.is_some_and(|q| used >= q) {
        c.capping_status = Some("CAPPED".into());
    }
    let mut told = c.clone();
    told.server_sent = Some(t);
    c.server_sent = Some(t);
    let id = crate::util::ids::phone_message_id();
    let note = crate::stanza::mex::capping_notification(&id, t, &told);
    for k in st.linked_devices(from).iter().map(|j| j.to_string()) {
        enqueue(st, &k, id.clone(), note.clone());
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
    let own = sender.user == number;
    // The app's key for it, from the stanza's attributes (what it has before decrypting): the
    // peer's chat, or for what its own other devices sent, the `recipient` the server added.
    let chat = match node.get_str("recipient") {
        Some(r) if own => r.into_owned(),
        _ => sender.to_non_ad().to_string(),
    };
    let key = MessageKey {
        chat,
        from: sender.to_non_ad().to_string(),
        id: id.clone(),
    };
    let arrival = Arrival::of(node);
    let receipt = || {
        let mut r = Node::new("receipt")
            .attr("from", peer.jid.clone())
            .attr("id", id.clone())
            .attr("t", t.to_string());
        if own {
            r = r.attr("type", "sender");
        }
        r
    };
    match peer.decrypt(sender, kind, ct).await {
        Ok(message) => {
            let message = match (own, message.device_sent_message.clone()) {
                (true, Some(dsm)) => dsm.message.map(|m| *m).unwrap_or_default(),
                _ => message,
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
                let stamp = node.get_str("t").and_then(|t| t.parse().ok()).unwrap_or(t);
                let new = p
                    .inbox
                    .read(&key, peer.jid.device, arrival, text.clone(), stamp);
                // A copy it already shows is answered again, not echoed again.
                (
                    p.withhold_receipts,
                    new && p.echo && !own && peer.jid.device == 0,
                )
            };
            if !withhold {
                to_device(shared, sender, id.clone(), receipt());
            }
            // The phone answers its own devices' key, recovery and on-demand history requests
            // when they come as peer messages (`category="peer"`), as WhatsApp sends them;
            // the same payload in an ordinary message to itself is only a message.
            let peer_msg = own && node.get_str("category").as_deref() == Some("peer");
            if peer_msg && peer.jid.device == 0 && message.protocol_message.is_some() {
                super::phone_appstate::on_peer_message(shared, number, sender, &message).await;
            }
            // After the receipt, as an app downloads media once the message is in.
            super::phone_media::received(shared, number, &key, own, &message, node).await;
            if peer_msg && peer.jid.device == 0 {
                answer_on_demand(shared, number, peer, sender, &message).await;
            }
            if echo && let Some(text) = text {
                let echo = wa::Message {
                    conversation: Some(text),
                    ..Default::default()
                };
                let plain = echo.encode_to_vec();
                let to = sender.to_non_ad();
                let id = crate::util::ids::phone_message_id();
                let _ = Box::pin(phone_send(shared, number, &to, id, &plain, false)).await;
            }
        }
        Err(e) => {
            // A copy of what the device already read (its ratchet step is spent): the app
            // answers it with the receipt again (MESSAGING.md §2.2, §2.4) instead of a retry.
            let (duplicate, withhold) = shared
                .state
                .lock()
                .ok()
                .and_then(|mut st| {
                    let p = st.phones.get_mut(number)?;
                    Some((
                        p.inbox.arrived(&key, peer.jid.device, arrival),
                        p.withhold_receipts,
                    ))
                })
                .unwrap_or((false, true));
            if duplicate {
                if !withhold {
                    to_device(shared, sender, id.clone(), receipt());
                }
                return;
            }
            tracing::debug!(error = %e, device = %peer.jid, "simulated device cannot decrypt; asking a retry");
            ask_retry(shared, number, peer, sender, node, &id, |r| {
                r.attr("from", peer.jid.clone())
            })
            .await;
        }
    }
}

/// A real device's receipt about a DM (`to` the author): it answers the device's queue and
/// goes on to whom it concerns; a retry addressed to a simulated device is answered by it.
pub(super) async fn on_receipt(
    shared: &Shared,
    dev: &Device,
    node: &Node,
    to: &Jid,
    kind: Option<&str>,
    ids: &[String],
) {
    let t = shared.clock.now_unix();
    let key = dev.jid.to_string();
    if kind == Some("server-error") && node.child("rmr").is_some() {
        // A media retry goes to the account's phone, never to the other companions.
        if let Ok(mut st) = shared.state.lock() {
            answered(&mut st, &key, ids);
        }
        super::phone_media::answer_retry(shared, dev, node).await;
        return;
    }
    let retry_for_sim = {
        let Ok(mut st) = shared.state.lock() else {
            return;
        };
        answered(&mut st, &key, ids);
        if matches!(kind, Some("sender" | "peer_msg")) {
            return;
        }
        // A simulated user learns that what it sent was read.
        if matches!(kind, Some("read" | "read-self"))
            && let Some(number) = user_number(&st, &to.to_non_ad())
            && let Some(p) = st.phones.get_mut(&number)
        {
            for id in ids {
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
        if let Some(k) = kind {
            fwd = fwd.attr("type", k.to_owned());
        }
        if let Some(r) = node.get("recipient") {
            fwd = fwd.attr("recipient", r.clone());
        }
        let fwd = fwd.children(node.child_nodes().to_vec());
        let first = ids.first().cloned().unwrap_or_default();
        let is_retry = kind == Some("retry");
        if to.device > 0 || is_retry {
            match target(&st, to) {
                Some(Target::Real(k)) => {
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
    let attrs = stanza::attrs::content_attrs(&message, false);
    let mut enc = enc_for(stanza::enc_node(&ct, Some(req.count)), &attrs);
    // A resend is a message to the device like any other: the corruption fault hits it too.
    let corrupt_it = shared.state.lock().is_ok_and(|mut st| {
        let real = st.companions.contains_key(&req.from.to_string());
        take_corruption(&mut st, &req.from.user, real)
    });
    if corrupt_it {
        enc = corrupt(enc);
    }
    let node = with_edit(
        Node::new("message")
            .attr("from", peer.jid.clone())
            .attr("id", req.id.clone())
            .attr("type", attrs.kind)
            .attr("t", req.t.clone().unwrap_or_else(|| t.to_string())),
        &attrs,
    )
    .children(vec![enc]);
    to_device(shared, &req.from, req.id.clone(), node);
}

/// User `number`'s phone sends the `Message` plaintext `plain` (as given: fields this build
/// does not know go as written) to the user `to` (a PN or LID JID): every device of the
/// recipient gets it, and the user's own other devices a copy, as message `id`. `admin` marks
/// a revoke of someone else's group message. Returns the message id.
pub(super) async fn phone_send(
    shared: &Shared,
    number: &str,
    to: &Jid,
    id: String,
    plain: &[u8],
    admin: bool,
) -> Result<String, SimError> {
    let message = wa::Message::decode(plain).map_err(|_| SimError::BadMessage)?;
    let attrs = stanza::attrs::content_attrs(&message, admin);
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
        let body = if own {
            dsm.encode_to_vec()
        } else {
            plain.to_vec()
        };
        let Ok(ct) = me.encrypt_plain(&pn, bundle.as_ref(), &body).await else {
            continue;
        };
        let mut node = with_edit(
            Node::new("message")
                .attr("from", from.clone())
                .attr("id", id.clone())
                .attr("type", attrs.kind)
                .attr("t", t.to_string()),
            &attrs,
        );
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
        let mut enc = enc_for(stanza::enc_node(&ct, None), &attrs);
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

/// The phone answers its companion's on-demand history request (CLIENT-FEATURES §5.4): a
/// chunk of older messages of the chat, uploaded as `md-msg-hist`, in an `ON_DEMAND`
/// notification to the device that asked.
async fn answer_on_demand(
    shared: &Shared,
    number: &str,
    phone: &Arc<SimPeer>,
    sender: &Jid,
    message: &wa::Message,
) {
    use wa::PeerDataOperationRequestType as Op;
    let Some(req) = message
        .protocol_message
        .as_ref()
        .and_then(|p| p.peer_data_operation_request_message.as_ref())
    else {
        return;
    };
    if req.peer_data_operation_request_type != Some(Op::HistorySyncOnDemand as i32) {
        return;
    }
    let Some(r) = req.history_sync_on_demand_request.as_ref() else {
        return;
    };
    let Some(history) = shared.state.lock().ok().and_then(|st| {
        let p = st.phones.get(number)?;
        Some(
            p.history.on_demand(
                r.chat_jid.as_deref().unwrap_or_default(),
                r.oldest_msg_id.as_deref(),
                r.oldest_msg_timestamp_ms,
                usize::try_from(r.on_demand_msg_count.unwrap_or(50))
                    .unwrap_or(50)
                    .clamp(1, 500),
            ),
        )
    }) else {
        return;
    };
    let cdn = shared.cdn.clone();
    let made = tokio::task::spawn_blocking(move || {
        super::history::upload_chunk(&cdn, &history, None, None)
    })
    .await;
    let Ok(Ok(answer)) = made else {
        tracing::warn!("simulated phone cannot upload an on-demand history chunk");
        return;
    };
    let ct = match phone.encrypt(sender, None, &answer).await {
        Ok(ct) => ct,
        Err(e) => {
            tracing::warn!(error = %e, "simulated phone cannot encrypt its history answer");
            return;
        }
    };
    let id = crate::util::ids::phone_message_id();
    let node = Node::new("message")
        .attr("from", Jid::new(number, Server::User))
        .attr("type", "text")
        .attr("id", id.clone())
        .attr("t", shared.clock.now_unix().to_string())
        .attr("category", "peer")
        .children(vec![
            Node::new("enc")
                .attr("v", "2")
                .attr("type", ct.enc_type())
                .bytes(ct.bytes().to_vec()),
        ]);
    if let Ok(mut st) = shared.state.lock()
        && let Some(c) = st.companions.get_mut(
            &Jid::with_device(sender.user.clone(), sender.device, Server::User).to_string(),
        )
    {
        c.sent_history(id.clone(), &answer);
    }
    to_device(shared, sender, id, node);
}
