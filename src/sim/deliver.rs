//! How stanzas reach devices: where a device JID lives (a linked real client or a simulated
//! device), the server's queue per real device (kept until that device receipts or acks each
//! stanza, redelivered on every reconnect: MESSAGING.md §5.3), the work simulated devices do
//! after the ack (in order, on one task), the bundles the server serves, and the corruption
//! fault. It knows the state, not what routes a stanza here.

use std::sync::Arc;

use super::phone::SimPeer;
use super::server::{Control, Queued, Shared, State, Work};
use crate::binary::{Jid, Node, Server};
use crate::signal::PreKeyBundle;

/// Stanzas kept per device for redelivery; past it the oldest are dropped.
pub const QUEUE_KEPT: usize = 10_000;

/// Work for simulated devices waiting at most; past it the sender's connection does it
/// itself (slower acks: backpressure, never unbounded memory).
pub const DELIVERY_QUEUE: usize = 65_536;

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

/// Queues a stanza for one real device (nothing happens for a simulated one).
pub(super) fn to_device(shared: &Shared, device: &Jid, id: String, node: Node) {
    if let Ok(mut st) = shared.state.lock() {
        let key = Jid::with_device(device.user.clone(), device.device, Server::User).to_string();
        if st.companions.contains_key(&key) {
            enqueue(&mut st, &key, id, node);
        }
    }
}

/// What routing an accepted stanza leaves to do once it is logged: the `phash` its ack
/// carries (a group stanza whose view of the member devices differs from the server's) and the
/// simulated devices' work, to run after the ack.
pub(super) struct Routed {
    pub(super) phash: Option<String>,
    pub(super) work: Vec<Box<dyn Work>>,
}

/// Hands `work` to the delivery task, or does it now when its queue is full.
pub(super) async fn after_ack(shared: &Shared, work: Box<dyn Work>) {
    match shared.deliveries.try_send(work) {
        Ok(()) => {}
        Err(tokio::sync::mpsc::error::TrySendError::Full(w))
        | Err(tokio::sync::mpsc::error::TrySendError::Closed(w)) => w.run(shared).await,
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

/// A real device's published bundle, consuming one of its one-time prekeys.
pub(super) fn real_bundle(shared: &Shared, device: &Jid) -> Option<PreKeyBundle> {
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

/// Whether this delivery to one of `number`'s devices is the one to corrupt: the user's
/// linked (real) devices are hit first, its simulated ones when it has none.
pub(super) fn take_corruption(st: &mut State, number: &str, real: bool) -> bool {
    let has_real = !st.linked_devices(number).is_empty();
    match st.phones.get_mut(number) {
        Some(p) if p.corrupt_next > 0 && (real || !has_real) => {
            p.corrupt_next -= 1;
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

/// `node` (a `<message>`) with the `edit` its content calls for.
pub(super) fn with_edit(node: Node, a: &crate::stanza::attrs::ContentAttrs) -> Node {
    match a.edit {
        Some(e) => node.attr("edit", e),
        None => node,
    }
}

/// An `<enc>` with what its content says about it: `mediatype`, `decrypt-fail="hide"`.
pub(super) fn enc_for(enc: Node, a: &crate::stanza::attrs::ContentAttrs) -> Node {
    let enc = match a.media {
        Some(m) => enc.attr("mediatype", m),
        None => enc,
    };
    if a.hide_failure {
        enc.attr("decrypt-fail", "hide")
    } else {
        enc
    }
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
