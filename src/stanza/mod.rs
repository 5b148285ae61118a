//! The stanzas of 1:1 messaging, built and parsed without IO (MESSAGING.md §1–§2): usync device
//! queries, prekey bundle fetches, the `<message>` with one `<enc>` per device, padding, message
//! ids, receipts and retry receipts. Protocol facts both ends speak: the client's messenger and
//! the simulator's server and simulated devices use them; neither knows the other.

pub mod appstate;
pub mod attrs;
pub mod group;
pub mod media;
pub mod mex;
pub mod privacy;

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::binary::{Jid, Node, Server};
use crate::signal::{CiphertextMessage, PreKeyBundle};
use crate::util::bytes::{array32, read_u24_be, u24_be};

/// Retry receipts sent for one message at most (WhatsApp Web and whatsmeow stop at 5); a
/// retry receipt with this count or more is not answered.
pub const MAX_RETRIES: u32 = 5;

/// Most padding bytes accepted: the reference clients append 1–15 (Baileys'
/// `writeRandomPadMax16`, whatsmeow's `padMessage`); 16 is the bound their name promises.
pub const MAX_PADDING: usize = 16;

/// Strips the n trailing bytes of value n (1 ≤ n ≤ [`MAX_PADDING`]) that every reference client
/// appends before encrypting (`v=2`). Every pad byte must equal n, as whatsmeow checks.
pub fn unpad(plaintext: &[u8]) -> Option<&[u8]> {
    let n = *plaintext.last()?;
    let len = usize::from(n);
    if len == 0 || len > MAX_PADDING || len > plaintext.len() {
        return None;
    }
    let (body, pad) = plaintext.split_at(plaintext.len() - len);
    pad.iter().all(|&b| b == n).then_some(body)
}

/// A message id in the current reference form: `3EB0` + 18 upper-case hex digits of
/// SHA-256(unix seconds BE ‖ own user ‖ `@c.us` ‖ 16 random bytes) (MESSAGING.md §1.6).
pub fn message_id(now_unix: u64, own_user: &str) -> String {
    let mut h = Sha256::new();
    h.update(now_unix.to_be_bytes());
    h.update(own_user.as_bytes());
    h.update(b"@c.us");
    h.update(rand::random::<[u8; 16]>());
    let digest = h.finalize();
    format!(
        "3EB0{}",
        crate::util::hex::encode(&digest[..9]).to_uppercase()
    )
}

/// Appends 1–15 bytes, each equal to the count, as every reference accepts (whatsmeow checks
/// all of them).
pub fn pad(mut plain: Vec<u8>) -> Vec<u8> {
    let n = (rand::random::<u8>() & 0x0f).max(1);
    plain.extend(std::iter::repeat_n(n, usize::from(n)));
    plain
}

/// `<iq xmlns="usync">` asking the devices (and LIDs) of `users` for sending.
pub fn usync_devices_query(users: &[Jid], sid: &str) -> Node {
    Node::new("iq")
        .attr("xmlns", "usync")
        .attr("type", "get")
        .attr("to", Jid::server_jid())
        .children(vec![
            Node::new("usync")
                .attr("context", "message")
                .attr("mode", "query")
                .attr("sid", sid.to_owned())
                .attr("last", "true")
                .attr("index", "0")
                .children(vec![
                    Node::new("query").children(vec![
                        Node::new("devices").attr("version", "2"),
                        Node::new("lid"),
                    ]),
                    Node::new("list").children(
                        users
                            .iter()
                            .map(|u| Node::new("user").attr("jid", u.to_non_ad()))
                            .collect(),
                    ),
                ]),
        ])
}

/// One user of a usync answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDevices {
    /// The user as asked.
    pub user: Jid,
    /// The user's LID, when the server told it.
    pub lid: Option<Jid>,
    /// Device ids (0 = the phone); companions without a `key-index` are left out, as Baileys
    /// does (they are not ready to receive).
    pub devices: Vec<u16>,
}

/// Most users and devices per user read from one answer (a user has at most a phone and a
/// handful of companions; the bound keeps a hostile answer from costing more).
const MAX_USYNC_USERS: usize = 1024;
const MAX_DEVICES: usize = 64;

/// Parses a usync answer's users.
pub fn parse_usync(answer: &Node) -> Vec<UserDevices> {
    let Some(list) = answer.child_path(&["usync", "list"]) else {
        return Vec::new();
    };
    list.child_nodes()
        .iter()
        .filter(|u| u.tag == "user")
        .take(MAX_USYNC_USERS)
        .filter_map(|u| {
            let user = u.get_jid("jid")?.to_non_ad();
            let lid = u
                .child("lid")
                .and_then(|l| l.get_jid("val"))
                .filter(|j| j.server == Server::Lid)
                .map(|j| j.to_non_ad());
            let devices = u
                .child_path(&["devices", "device-list"])
                .map(|dl| {
                    let mut ids: Vec<u16> = dl
                        .child_nodes()
                        .iter()
                        .filter(|d| d.tag == "device")
                        .filter(|d| {
                            d.get_str("id").as_deref() == Some("0") || d.get("key-index").is_some()
                        })
                        .filter_map(|d| d.get_str("id")?.parse().ok())
                        .take(MAX_DEVICES)
                        .collect();
                    ids.sort_unstable();
                    ids.dedup();
                    ids
                })
                .unwrap_or_default();
            Some(UserDevices { user, lid, devices })
        })
        .collect()
}

/// `<iq xmlns="encrypt" type="get"><key><user jid reason="identity"/>…` for `devices`.
pub fn prekey_query(devices: &[Jid]) -> Node {
    Node::new("iq")
        .attr("xmlns", "encrypt")
        .attr("type", "get")
        .attr("to", Jid::server_jid())
        .children(vec![
            Node::new("key").children(
                devices
                    .iter()
                    .map(|d| {
                        Node::new("user")
                            .attr("jid", d.clone())
                            .attr("reason", "identity")
                    })
                    .collect(),
            ),
        ])
}

/// Bundles of a prekey answer by device JID; devices the server refused (`<error>`) are absent.
pub fn parse_bundles(answer: &Node) -> BTreeMap<Jid, PreKeyBundle> {
    let mut out = BTreeMap::new();
    let Some(list) = answer.child("list") else {
        return out;
    };
    for u in list.child_nodes().iter().filter(|u| u.tag == "user") {
        if u.child("error").is_some() {
            continue;
        }
        let (Some(jid), Some(b)) = (u.get_jid("jid"), bundle(u.child("keys").unwrap_or(u))) else {
            continue;
        };
        out.insert(jid, b);
    }
    out
}

fn bytes<'a>(n: &'a Node, tag: &str) -> Option<&'a [u8]> {
    n.child(tag)?.content_bytes().map(|b| &b[..])
}

/// A bundle from `<registration><identity><skey>[<key>]`, the form the server answers and
/// a retry receipt's `<keys>` carries.
pub fn bundle(n: &Node) -> Option<PreKeyBundle> {
    let reg = bytes(n, "registration")?;
    let registration_id = u32::from_be_bytes(reg.try_into().ok()?);
    let identity_key = array32(bytes(n, "identity")?)?;
    let skey = n.child("skey")?;
    let signed_pre_key_id = read_u24_be(bytes(skey, "id")?)?;
    let signed_pre_key = array32(bytes(skey, "value")?)?;
    let signed_pre_key_signature: [u8; 64] = bytes(skey, "signature")?.try_into().ok()?;
    let pre_key = match n.child("key") {
        Some(k) => Some((read_u24_be(bytes(k, "id")?)?, array32(bytes(k, "value")?)?)),
        None => None,
    };
    Some(PreKeyBundle {
        registration_id,
        pre_key,
        signed_pre_key_id,
        signed_pre_key,
        signed_pre_key_signature,
        identity_key,
    })
}

/// `<enc v="2" type>` for a ciphertext (`count` on a retry resend).
pub fn enc_node(ct: &CiphertextMessage, count: Option<u32>) -> Node {
    let mut n = Node::new("enc").attr("v", "2").attr("type", ct.enc_type());
    if let Some(c) = count {
        n = n.attr("count", c.to_string());
    }
    n.bytes(ct.bytes().to_vec())
}

/// The 1:1 `<message>`: one `<to>` per device, `<device-identity>` when any is a pkmsg.
pub fn message_stanza(
    id: &str,
    to: &Jid,
    encs: Vec<(Jid, CiphertextMessage)>,
    device_identity: &[u8],
) -> Node {
    let any_pkmsg = encs
        .iter()
        .any(|(_, c)| matches!(c, CiphertextMessage::PreKey(_)));
    let mut children = vec![
        Node::new("participants").children(
            encs.iter()
                .map(|(d, ct)| {
                    Node::new("to")
                        .attr("jid", d.clone())
                        .children(vec![enc_node(ct, None)])
                })
                .collect(),
        ),
    ];
    if any_pkmsg {
        children.push(Node::new("device-identity").bytes(device_identity.to_vec()));
    }
    Node::new("message")
        .attr("id", id.to_owned())
        .attr("to", to.to_non_ad())
        .attr("type", "text")
        .children(children)
}

/// A peer message to our own phone (CLIENT-FEATURES §5.4; whatsmeow `preparePeerMessageNode`):
/// to our own account, `category="peer"`, one `<enc>` for device 0, pushed at once
/// (`push_priority="high_force"`).
pub fn peer_stanza(
    id: &str,
    to: &Jid,
    ct: &CiphertextMessage,
    device_identity: &[u8],
    attrs: &[(&'static str, &'static str)],
) -> Node {
    let mut children = vec![
        Node::new("meta").attr("appdata", "default"),
        enc_node(ct, None),
    ];
    if matches!(ct, CiphertextMessage::PreKey(_)) {
        children.push(Node::new("device-identity").bytes(device_identity.to_vec()));
    }
    let mut n = Node::new("message")
        .attr("id", id.to_owned())
        .attr("to", to.to_non_ad())
        .attr("type", "text")
        .attr("category", "peer");
    for (k, v) in attrs {
        n = n.attr(*k, *v);
    }
    n.children(children)
}

/// A retry resend to one device: the same id, one `<enc count>`, `device_fanout="false"`.
pub fn retry_stanza(
    id: &str,
    to: &Jid,
    ct: &CiphertextMessage,
    count: u32,
    t: Option<&str>,
    device_identity: &[u8],
) -> Node {
    let mut children = vec![enc_node(ct, Some(count))];
    if matches!(ct, CiphertextMessage::PreKey(_)) {
        children.push(Node::new("device-identity").bytes(device_identity.to_vec()));
    }
    let mut n = Node::new("message")
        .attr("id", id.to_owned())
        .attr("to", to.clone())
        .attr("type", "text")
        .attr("device_fanout", "false");
    if let Some(t) = t {
        n = n.attr("t", t.to_owned());
    }
    n.children(children)
}

/// What a retry receipt asks.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryRequest {
    /// The message id.
    pub id: String,
    /// The requesting device.
    pub from: Jid,
    /// Which attempt this is (1-based).
    pub count: u32,
    /// The original message's `t`, echoed.
    pub t: Option<String>,
    /// Keys to start a new session with, when the receipt carried them.
    pub keys: Option<PreKeyBundle>,
    /// The requester's registration id.
    pub registration_id: Option<u32>,
}

/// Parses a `<receipt type="retry">`.
pub fn parse_retry(node: &Node) -> Option<RetryRequest> {
    let retry = node.child("retry")?;
    let registration_id = bytes(node, "registration")
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes);
    let keys = node
        .child("keys")
        .and_then(|k| bundle(&with_registration(k, registration_id?)));
    Some(RetryRequest {
        id: node.get_str("id")?.into_owned(),
        from: node.get_jid("from")?,
        count: retry.get_str("count")?.parse().ok()?,
        t: retry.get_str("t").map(|s| s.into_owned()),
        keys,
        registration_id,
    })
}

/// A `<keys>` block with the receipt's registration added, so [`bundle`] reads it whole.
fn with_registration(keys: &Node, reg: u32) -> Node {
    let mut children = keys.child_nodes().to_vec();
    children.push(Node::new("registration").bytes(reg.to_be_bytes().to_vec()));
    Node::new("keys").children(children)
}

/// Our keys for a retry receipt's `<keys>` block.
pub struct RetryKeys<'a> {
    /// Our identity public key.
    pub identity: &'a [u8; 32],
    /// A fresh one-time prekey (id, public).
    pub pre_key: (u32, [u8; 32]),
    /// Our signed prekey (id, public, signature).
    pub signed: (u32, [u8; 32], [u8; 64]),
    /// ADVSignedDeviceIdentity.
    pub device_identity: &'a [u8],
}

/// `<receipt type="retry">` asking `to` to resend `id` (MESSAGING.md §2.6).
pub fn retry_receipt(
    id: &str,
    to: &Jid,
    count: u32,
    t: Option<&str>,
    registration_id: u32,
    keys: Option<RetryKeys<'_>>,
) -> Node {
    let mut retry = Node::new("retry")
        .attr("v", "1")
        .attr("count", count.to_string())
        .attr("id", id.to_owned());
    if let Some(t) = t {
        retry = retry.attr("t", t.to_owned());
    }
    let mut children = vec![
        retry,
        Node::new("registration").bytes(registration_id.to_be_bytes().to_vec()),
    ];
    if let Some(k) = keys {
        children.push(Node::new("keys").children(vec![
            Node::new("type").bytes(vec![5]),
            Node::new("identity").bytes(k.identity.to_vec()),
            Node::new("key").children(vec![
                Node::new("id").bytes(u24_be(k.pre_key.0).to_vec()),
                Node::new("value").bytes(k.pre_key.1.to_vec()),
            ]),
            Node::new("skey").children(vec![
                Node::new("id").bytes(u24_be(k.signed.0).to_vec()),
                Node::new("value").bytes(k.signed.1.to_vec()),
                Node::new("signature").bytes(k.signed.2.to_vec()),
            ]),
            Node::new("device-identity").bytes(k.device_identity.to_vec()),
        ]));
    }
    Node::new("receipt")
        .attr("id", id.to_owned())
        .attr("to", to.clone())
        .attr("type", "retry")
        .children(children)
}

/// `<ack class=tag id to [participant] [type] [error]>` for a received stanza.
pub fn ack(node: &Node, error: Option<u16>) -> Node {
    let mut a = Node::new("ack").attr("class", node.tag.to_string());
    for (from, to) in [
        ("id", "id"),
        ("from", "to"),
        ("participant", "participant"),
        ("recipient", "recipient"),
        ("type", "type"),
    ] {
        if let Some(v) = node.get(from) {
            a = a.attr(to, v.clone());
        }
    }
    if let Some(e) = error {
        a = a.attr("error", e.to_string());
    }
    a
}

/// The ids a receipt covers: its `id` and any `<list><item id>`.
pub fn receipt_ids(node: &Node) -> Vec<String> {
    let mut ids: Vec<String> = node
        .get_str("id")
        .map(|s| s.into_owned())
        .into_iter()
        .collect();
    if let Some(list) = node.child("list") {
        ids.extend(
            list.child_nodes()
                .iter()
                .filter(|i| i.tag == "item")
                .filter_map(|i| i.get_str("id").map(|s| s.into_owned()))
                .take(1024),
        );
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_reference_form() {
        let id = message_id(1_700_000_000, "15550001111");
        assert_eq!(id.len(), 22);
        assert!(id.starts_with("3EB0"));
        assert!(
            id[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        assert_ne!(id, message_id(1_700_000_000, "15550001111"), "random part");
    }

    #[test]
    fn padding_is_one_to_fifteen_bytes_of_its_count() {
        for _ in 0..200 {
            let p = pad(vec![1, 2, 3]);
            let n = *p.last().unwrap() as usize;
            assert!((1..=15).contains(&n));
            assert_eq!(p.len(), 3 + n);
            assert!(p[3..].iter().all(|&b| b as usize == n));
            assert_eq!(unpad(&p).unwrap(), &[1, 2, 3]);
        }
    }

    #[test]
    fn usync_answers_keep_ready_devices_and_the_lid() {
        let answer = Node::new("iq").children(vec![Node::new("usync").children(vec![
            Node::new("list").children(vec![
                Node::new("user")
                    .attr("jid", "15550001111@s.whatsapp.net".parse::<Jid>().unwrap())
                    .children(vec![
                        Node::new("devices").children(vec![Node::new("device-list").children(
                            vec![
                                Node::new("device").attr("id", "0"),
                                Node::new("device").attr("id", "3").attr("key-index", "1"),
                                // Not ready: no key index.
                                Node::new("device").attr("id", "5"),
                            ],
                        )]),
                        Node::new("lid").attr("val", "123456789012345@lid".parse::<Jid>().unwrap()),
                    ]),
            ]),
        ])]);
        let users = parse_usync(&answer);
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].devices, vec![0, 3]);
        assert_eq!(
            users[0].lid.as_ref().unwrap().to_string(),
            "123456789012345@lid"
        );
    }
}
