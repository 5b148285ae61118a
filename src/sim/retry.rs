//! A simulated device that cannot read a stanza asks its sender for a resend (MESSAGING.md
//! §2.6): a retry receipt, counted per (sender device, id), with its keys from the second try,
//! up to the retry limit; as the server forwards it, from the asking device.

use std::sync::Arc;

use super::deliver::to_device;
use super::phone::SimPeer;
use super::server::{SENT_KEPT, Shared};
use crate::binary::{Jid, Node};
use crate::stanza;

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
    to_device(shared, sender, id.to_owned(), r);
}
