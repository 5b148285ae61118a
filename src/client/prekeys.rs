//! One-time prekeys on the server (PROTOCOL.md §7.4): the count query, how many to upload, and the
//! upload iq. Keys on this wire are raw 32 bytes; 0x05 appears only as `<type>`.

use crate::binary::{Jid, Node};
use crate::signal::{PreKey, SignedPreKey};

/// Upload when the server holds fewer than this (all three references use 5).
pub const MIN_SERVER_PREKEYS: u32 = 5;
/// First upload of a new device (Baileys, whatsmeow, whatsapp-rust: 812).
pub const INITIAL_UPLOAD: u32 = 812;
/// Later uploads (whatsmeow: 50).
pub const REFILL_UPLOAD: u32 = 50;

/// `<iq xmlns="encrypt" type="get"><count/></iq>` (the iq tracker adds the id).
pub fn count_query() -> Node {
    Node::new("iq")
        .attr("xmlns", "encrypt")
        .attr("type", "get")
        .attr("to", Jid::server_jid())
        .children(vec![Node::new("count")])
}

/// The server's count from a count result or an encrypt notification.
pub fn parse_count(node: &Node) -> Option<u32> {
    node.child("count")?.get_str("value")?.parse().ok()
}

/// How many keys to upload given the server's count and how many prekey ids this device ever
/// allocated (None: enough on the server).
pub fn wanted(server_count: u32, allocated: u64) -> Option<u32> {
    if server_count >= MIN_SERVER_PREKEYS {
        return None;
    }
    Some(if server_count == 0 && allocated == 0 {
        INITIAL_UPLOAD
    } else {
        REFILL_UPLOAD
    })
}

fn id3(id: u32) -> Vec<u8> {
    crate::util::bytes::u24_be(id).to_vec()
}

/// The upload iq: registration, type, identity, the keys, and the current signed prekey.
pub fn upload_node(
    registration_id: u32,
    identity: &[u8; 32],
    keys: &[PreKey],
    signed: &SignedPreKey,
) -> Node {
    Node::new("iq")
        .attr("xmlns", "encrypt")
        .attr("type", "set")
        .attr("to", Jid::server_jid())
        .children(vec![
            Node::new("registration").bytes(registration_id.to_be_bytes().to_vec()),
            Node::new("type").bytes(vec![5]),
            Node::new("identity").bytes(identity.to_vec()),
            Node::new("list").children(
                keys.iter()
                    .map(|k| {
                        Node::new("key").children(vec![
                            Node::new("id").bytes(id3(k.id)),
                            Node::new("value").bytes(k.key_pair.public.to_vec()),
                        ])
                    })
                    .collect(),
            ),
            Node::new("skey").children(vec![
                Node::new("id").bytes(id3(signed.id)),
                Node::new("value").bytes(signed.key_pair.public.to_vec()),
                Node::new("signature").bytes(signed.signature.to_vec()),
            ]),
        ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_counts_follow_the_references() {
        assert_eq!(wanted(0, 0), Some(812));
        assert_eq!(wanted(0, 812), Some(50));
        assert_eq!(wanted(4, 900), Some(50));
        assert_eq!(wanted(5, 900), None);
    }
}
