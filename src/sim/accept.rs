//! What the server does with a real device's `<message>`, `<receipt>` and `<ack>` (MESSAGING.md
//! §5.1, §5.4): every message stanza is answered with an ack carrying the server's `t` (and
//! `phash` or `error`), logged, and routed — a resent id too, as WhatsApp acks and routes each
//! stanza it accepts and leaves deduplication to the receiving apps — unless the sender's acks
//! are withheld (a fault), when it is held until the fault is lifted. Receipts and acks answer
//! the device's queue and go on to whom they concern. DMs are `route.rs`, groups `groups.rs`.

use super::deliver::{QUEUE_KEPT, Routed, after_ack, answered};
use super::server::{Control, Device, Shared};
use super::stanza_log::Logged;
use crate::binary::{Node, Server};
use crate::stanza;

/// The ack of `node`: its id, `from` its `to`, the server's `t`, and `error` when refused.
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
    let refuse = |code: u16| {
        if let Ok(mut st) = shared.state.lock() {
            st.log.push(Logged::of(&dev.jid, node, now, Some(code)));
        }
        Some(ack(&id, node, now, Some(code)))
    };
    let Some(to) = node.get_jid("to").filter(|_| !id.is_empty()) else {
        return refuse(479);
    };
    {
        let mut st = shared.state.lock().ok()?;
        if st.withhold_acks.contains(&dev.jid.user) {
            if st.held.len() >= QUEUE_KEPT {
                drop(st);
                // Held past what a device may queue: refused, as an overloaded server would.
                return refuse(503);
            }
            st.held.push((dev.clone(), node.clone()));
            return None;
        }
    }
    let routed = if to.server == Server::Group {
        super::groups::route_group(shared, dev, node, now)
    } else {
        super::route::route_dm(shared, dev, node, now)
    };
    let (error, Routed { phash, work }) = match routed {
        Ok(r) => (None, r),
        Err(code) => (
            Some(code),
            Routed {
                phash: None,
                work: Vec::new(),
            },
        ),
    };
    // Logged before any simulated device acts on it, so whoever sees an effect sees the entry.
    if let Ok(mut st) = shared.state.lock() {
        st.log.push(Logged::of(&dev.jid, node, now, error));
    }
    for w in work {
        after_ack(shared, w).await;
    }
    let a = ack(&id, node, now, error);
    Some(match phash {
        Some(p) => a.attr("phash", p),
        None => a,
    })
}

/// Releases what was held for `number`: each held stanza is accepted, routed and acked now (to
/// the device's live connection, if it has one).
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
        if let Some(a) = accept_message(shared, &dev, &node).await {
            let key = dev.jid.to_string();
            if let Ok(st) = shared.state.lock()
                && let Some(live) = st.live.get(&key)
            {
                let _ = live.send(Control::Deliver(Box::new(a)));
            }
        }
    }
}

/// A real device's `<receipt>`: it answers queued stanzas and goes on to whom it concerns.
pub(super) async fn on_receipt(shared: &Shared, dev: &Device, node: &Node) {
    let ids = stanza::receipt_ids(node);
    let kind = node.get_str("type").map(|s| s.into_owned());
    let Some(to) = node.get_jid("to") else {
        // Baileys' `sender` receipts may name nobody: they only answer the delivery.
        if let Ok(mut st) = shared.state.lock() {
            answered(&mut st, &dev.jid.to_string(), &ids);
        }
        return;
    };
    if to.server == Server::Group {
        super::groups::on_receipt(shared, dev, node, &to, kind.as_deref(), &ids).await;
    } else {
        super::route::on_receipt(shared, dev, node, &to, kind.as_deref(), &ids).await;
    }
}

/// A real device's `<ack>`: it answers a queued stanza.
pub(super) fn on_ack(shared: &Shared, dev: &Device, node: &Node) {
    if let Some(id) = node.get_str("id")
        && let Ok(mut st) = shared.state.lock()
    {
        answered(&mut st, &dev.jid.to_string(), &[id.into_owned()]);
    }
}
