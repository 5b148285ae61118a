//! Receiving `<message>` stanzas (PROTOCOL.md §9): who sent it, decrypt its `<enc>` (1:1 `pkmsg`
//! and `msg` so far), strip the random padding, parse the `Message`, and the receipt that answers
//! it. Groups (`skmsg`), retries and history storage build on this.

use prost::Message as _;

use super::store::Me;
use crate::binary::{Jid, Node};
use crate::proto::wa;
use crate::signal::{EncType, ProtocolAddress, SessionCipher, SignalError, SignalStore};

/// A decrypted message.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Message id.
    pub id: String,
    /// The conversation (the peer, or ourselves for peer messages).
    pub chat: Jid,
    /// The device that sent it.
    pub sender: Jid,
    /// Sent by our own account (the phone or another companion).
    pub from_me: bool,
    /// The sender's push name (`notify`), as the server attaches it.
    pub push_name: Option<String>,
    /// `peer` for messages between our own devices (keys, history sync, settings).
    pub category: Option<String>,
    /// Server timestamp (seconds).
    pub timestamp: u64,
    /// The content.
    pub message: wa::Message,
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// A required attribute or child is missing or malformed.
    #[error("malformed message stanza: {0}")]
    Malformed(&'static str),
    /// A form this client does not decrypt yet (e.g. group `skmsg`).
    #[error("unsupported message form: {0}")]
    Unsupported(String),
    /// Signal refused it (no session, bad MAC, untrusted identity…).
    #[error("cannot decrypt: {0}")]
    Decrypt(#[from] SignalError),
    /// The padding does not fit the plaintext.
    #[error("invalid padding")]
    Padding,
    /// The plaintext is not a `Message`.
    #[error("invalid Message protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

pub use crate::stanza::MAX_PADDING;

/// Strips the padding every reference client appends (see [`crate::stanza::unpad`]).
pub fn unpad(plaintext: &[u8]) -> Result<&[u8], RecvError> {
    crate::stanza::unpad(plaintext).ok_or(RecvError::Padding)
}

/// Whether `jid` is one of our own account's devices (PN or LID).
pub(super) fn is_me(jid: &Jid, me: &Me) -> bool {
    jid.user == me.jid.user && jid.server == me.jid.server
        || me
            .lid
            .as_ref()
            .is_some_and(|l| jid.user == l.user && jid.server == l.server)
}

/// Decrypts a 1:1 `<message>` addressed to us.
pub async fn decrypt<G: SignalStore>(
    cipher: &SessionCipher<G>,
    node: &Node,
    me: &Me,
) -> Result<Received, RecvError> {
    let id = node
        .get_str("id")
        .ok_or(RecvError::Malformed("no id"))?
        .into_owned();
    let from = node
        .get_jid("from")
        .ok_or(RecvError::Malformed("no sender JID"))?;
    if node.get("participant").is_some() {
        return Err(RecvError::Unsupported("group or broadcast message".into()));
    }
    let from_me = is_me(&from, me);
    let chat = match node.get_jid("recipient") {
        Some(r) if from_me => r,
        Some(_) => return Err(RecvError::Malformed("recipient on a message not from us")),
        None => from.clone(),
    };
    let enc = node
        .child_nodes()
        .iter()
        .find(|c| c.tag == "enc")
        .ok_or(RecvError::Malformed("no <enc>"))?;
    let kind = enc.get_str("type").unwrap_or_default();
    let kind =
        EncType::parse(&kind).ok_or_else(|| RecvError::Unsupported(format!("enc {kind}")))?;
    if enc.get_str("v").as_deref() != Some("2") {
        return Err(RecvError::Unsupported("enc version".into()));
    }
    let ciphertext = enc
        .content_bytes()
        .ok_or(RecvError::Malformed("empty <enc>"))?;
    let addr = ProtocolAddress::from_jid(&from);
    let plain = cipher.decrypt(&addr, kind, ciphertext).await?;
    let message = wa::Message::decode(unpad(&plain.plaintext)?)?;
    Ok(Received {
        id,
        chat,
        sender: from,
        from_me,
        push_name: node.get_str("notify").map(|s| s.into_owned()),
        category: node.get_str("category").map(|s| s.into_owned()),
        timestamp: node
            .get_str("t")
            .and_then(|t| t.parse().ok())
            .unwrap_or_default(),
        message,
    })
}

/// The delivery receipt for `r`: `peer_msg` between our own devices, `sender` for what we sent
/// from another device, plain delivery otherwise.
pub fn receipt(r: &Received) -> Node {
    let mut n = Node::new("receipt")
        .attr("id", r.id.clone())
        .attr("to", r.chat.clone());
    if r.category.as_deref() == Some("peer") {
        n = n.attr("type", "peer_msg");
    } else if r.from_me {
        n = n.attr("type", "sender");
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpad_strips_what_the_references_add() {
        assert_eq!(unpad(&[1, 2, 3, 2, 2]).unwrap(), &[1, 2, 3]);
        assert_eq!(unpad(&[1]).unwrap(), &[] as &[u8]);
        assert!(matches!(unpad(&[]), Err(RecvError::Padding)));
        assert!(matches!(unpad(&[1, 0]), Err(RecvError::Padding)));
        assert!(matches!(unpad(&[1, 3]), Err(RecvError::Padding)));
        // Every pad byte is the count; more than 16 is not what a reference client writes.
        assert!(matches!(unpad(&[9, 1, 2]), Err(RecvError::Padding)));
        let mut long = vec![7u8; 40];
        long.extend_from_slice(&[17; 17]);
        assert!(matches!(unpad(&long), Err(RecvError::Padding)));
        long.truncate(40 + 16);
        long[40..].fill(16);
        assert_eq!(unpad(&long).unwrap(), &[7u8; 40][..]);
    }
}
