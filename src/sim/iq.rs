//! The server's answers to a logged-in device's iqs, namespace by namespace (PROTOCOL.md §7.3–7.5),
//! and the key bundle a device uploads (served to peers later). Unknown namespaces get
//! `501 feature-not-implemented`, so a client never waits for an answer that cannot come.

use crate::binary::{Jid, Node};
use crate::signal::curve::with_type;
use crate::signal::xeddsa_verify;

/// What a device published about its keys besides the one-time prekeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBundle {
    /// Registration id.
    pub registration_id: u32,
    /// Signed prekey id (24-bit).
    pub signed_pre_key_id: u32,
    /// Signed prekey public key (raw 32 bytes).
    pub signed_pre_key: [u8; 32],
    /// XEdDSA signature of `0x05 ‖ signed_pre_key` by the identity key.
    pub signature: [u8; 64],
}

/// A prekey upload, checked as the server must check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Registration id and signed prekey.
    pub bundle: KeyBundle,
    /// One-time prekeys (id, public key).
    pub keys: Vec<(u32, [u8; 32])>,
}

fn bytes<'a>(n: &'a Node, tag: &str) -> Option<&'a [u8]> {
    n.child(tag).and_then(Node::content_bytes).map(|b| &b[..])
}

use crate::util::bytes::{read_u24_be as id3, u24_be};

fn to3(id: u32) -> Vec<u8> {
    u24_be(id).to_vec()
}

/// Checks an `<iq xmlns="encrypt" type="set">` upload: the device's registered identity,
/// well-formed keys, and a signed prekey signed by that identity.
pub fn validate_upload(node: &Node, identity: &[u8; 32]) -> Option<Upload> {
    let registration_id = u32::from_be_bytes(bytes(node, "registration")?.try_into().ok()?);
    (bytes(node, "type")? == [5]).then_some(())?;
    (bytes(node, "identity")? == identity).then_some(())?;
    let skey = node.child("skey")?;
    let signed_pre_key_id = id3(bytes(skey, "id")?)?;
    let signed_pre_key: [u8; 32] = bytes(skey, "value")?.try_into().ok()?;
    let signature: [u8; 64] = bytes(skey, "signature")?.try_into().ok()?;
    xeddsa_verify(identity, &with_type(&signed_pre_key), &signature).then_some(())?;
    let keys = node
        .child("list")?
        .child_nodes()
        .iter()
        .map(|k| Some((id3(bytes(k, "id")?)?, bytes(k, "value")?.try_into().ok()?)))
        .collect::<Option<Vec<_>>>()?;
    Some(Upload {
        bundle: KeyBundle {
            registration_id,
            signed_pre_key_id,
            signed_pre_key,
            signature,
        },
        keys,
    })
}

/// `<iq type="result" id from="s.whatsapp.net">` with `children`.
pub fn result(id: &str, children: Vec<Node>) -> Node {
    let n = Node::new("iq")
        .attr("from", Jid::server_jid())
        .attr("type", "result")
        .attr("id", id.to_owned());
    if children.is_empty() {
        n
    } else {
        n.children(children)
    }
}

/// `<iq type="error"><error code text/></iq>`.
pub fn error(id: &str, code: u16, text: &str) -> Node {
    Node::new("iq")
        .attr("from", Jid::server_jid())
        .attr("type", "error")
        .attr("id", id.to_owned())
        .children(vec![
            Node::new("error")
                .attr("code", code.to_string())
                .attr("text", text.to_owned()),
        ])
}

/// The key-bundle digest (`<iq xmlns="encrypt" type="get"><digest/>`): what the server holds, so
/// the client can tell whether to re-upload. Without a bundle there is nothing to digest (404).
pub fn digest(id: &str, identity: &[u8; 32], bundle: Option<&KeyBundle>, key_ids: &[u32]) -> Node {
    let Some(b) = bundle else {
        return error(id, 404, "item-not-found");
    };
    result(
        id,
        vec![Node::new("digest").children(vec![
            Node::new("registration").bytes(b.registration_id.to_be_bytes().to_vec()),
            Node::new("type").bytes(vec![5]),
            Node::new("identity").bytes(identity.to_vec()),
            Node::new("skey").children(vec![
                Node::new("id").bytes(to3(b.signed_pre_key_id)),
                Node::new("value").bytes(b.signed_pre_key.to_vec()),
                Node::new("signature").bytes(b.signature.to_vec()),
            ]),
            Node::new("list").children(
                key_ids
                    .iter()
                    .map(|i| Node::new("id").bytes(to3(*i)))
                    .collect(),
            ),
        ])],
    )
}

/// A/B props (`xmlns="abt"`): a fixed, small set with a stable hash, so clients cache them.
pub fn ab_props(id: &str) -> Node {
    result(
        id,
        vec![
            Node::new("props")
                .attr("protocol", "1")
                .attr("ab_key", "sim")
                .attr("hash", "sim-1")
                .attr("refresh", "86400")
                .children(vec![
                    Node::new("prop")
                        .attr("config_code", "10518")
                        .attr("config_value", "false"),
                ]),
        ],
    )
}

/// Privacy settings (`xmlns="privacy"`): WhatsApp's defaults for a new account.
pub fn privacy(id: &str) -> Node {
    let cat = |name: &str, value: &str| {
        Node::new("category")
            .attr("name", name.to_owned())
            .attr("value", value.to_owned())
    };
    result(
        id,
        vec![Node::new("privacy").children(vec![
            cat("last", "all"),
            cat("online", "all"),
            cat("profile", "all"),
            cat("status", "contacts"),
            cat("readreceipts", "all"),
            cat("groupadd", "all"),
            cat("calladd", "all"),
        ])],
    )
}

/// The blocklist (`xmlns="blocklist"`): empty for simulated accounts.
pub fn blocklist(id: &str) -> Node {
    result(id, vec![Node::new("list")])
}

/// A bundle as `<registration><type><identity><skey>[<key>]` (PROTOCOL.md §8.4).
pub fn bundle_nodes(b: &crate::signal::PreKeyBundle) -> Vec<Node> {
    let mut v = vec![
        Node::new("registration").bytes(b.registration_id.to_be_bytes().to_vec()),
        Node::new("type").bytes(vec![5]),
        Node::new("identity").bytes(b.identity_key.to_vec()),
        Node::new("skey").children(vec![
            Node::new("id").bytes(to3(b.signed_pre_key_id)),
            Node::new("value").bytes(b.signed_pre_key.to_vec()),
            Node::new("signature").bytes(b.signed_pre_key_signature.to_vec()),
        ]),
    ];
    if let Some((id, key)) = b.pre_key {
        v.push(Node::new("key").children(vec![
            Node::new("id").bytes(to3(id)),
            Node::new("value").bytes(key.to_vec()),
        ]));
    }
    v
}
