//! The stanzas around media (CLIENT-FEATURES §2): the `media_conn` iq that hands out CDN hosts
//! and an upload token, the `type`/`mediatype` attributes a media message travels with, and
//! the media-retry ("rmr") receipt and its `mediaretry` notification.

use crate::binary::{Content, Jid, Node, Server};
use crate::proto::wa;

/// `<iq xmlns="w:m" type="set" to="s.whatsapp.net"><media_conn/></iq>` (whatsmeow
/// `queryMediaConn`, Baileys `refreshMediaConn`); the id is the caller's.
pub fn media_conn_query() -> Node {
    Node::new("iq")
        .attr("xmlns", "w:m")
        .attr("type", "set")
        .attr("to", Jid::new("", Server::User))
        .children(vec![Node::new("media_conn")])
}

/// What `media_conn` answers. `Debug` hides the auth token.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaConnInfo {
    /// The upload token (`auth`).
    pub auth: String,
    /// Seconds the answer may be cached (`ttl`).
    pub ttl: u64,
    /// Seconds the token lasts (`auth_ttl`).
    pub auth_ttl: u64,
    /// `max_buckets` (meaning unknown; kept).
    pub max_buckets: Option<u32>,
    /// CDN hosts (`hostname`, possibly with a port), primaries first.
    pub hosts: Vec<String>,
}

impl std::fmt::Debug for MediaConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaConnInfo")
            .field("ttl", &self.ttl)
            .field("auth_ttl", &self.auth_ttl)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// Most hosts kept from one answer: a server listing thousands costs nothing.
const MAX_HOSTS: usize = 16;

/// Reads a `media_conn` result: `auth`, `ttl` and at least one `<host hostname>` are required
/// (whatsmeow's rule); `type="fallback"` hosts go after the others (WA Web sorts primaries
/// first, per whatsapp-rust's model). A hostname holding anything but host and port is
/// skipped: it is put into URLs.
pub fn parse_media_conn(result: &Node) -> Option<MediaConnInfo> {
    let mc = result.child("media_conn")?;
    let auth = mc.get_str("auth")?.into_owned();
    if auth.is_empty() {
        return None;
    }
    let num = |k: &str| mc.get_str(k).and_then(|v| v.parse::<u64>().ok());
    let ttl = num("ttl")?;
    let auth_ttl = num("auth_ttl").unwrap_or(ttl);
    let mut primary = Vec::new();
    let mut fallback = Vec::new();
    for h in mc.child_nodes().iter().filter(|n| n.tag == "host") {
        let Some(name) = h.get_str("hostname") else {
            continue;
        };
        if !valid_host(&name) {
            continue;
        }
        if h.get_str("type").as_deref() == Some("fallback") {
            fallback.push(name.into_owned());
        } else {
            primary.push(name.into_owned());
        }
    }
    primary.extend(fallback);
    primary.truncate(MAX_HOSTS);
    if primary.is_empty() {
        return None;
    }
    Some(MediaConnInfo {
        auth,
        ttl,
        auth_ttl,
        max_buckets: num("max_buckets").and_then(|v| u32::try_from(v).ok()),
        hosts: primary,
    })
}

/// A host name with an optional port: letters, digits, `.`, `-` and one `:port`.
fn valid_host(h: &str) -> bool {
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (h, None),
    };
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// The answer the server gives to [`media_conn_query`].
pub fn media_conn_result(id: &str, info: &MediaConnInfo) -> Node {
    let mut mc = Node::new("media_conn")
        .attr("auth", info.auth.clone())
        .attr("ttl", info.ttl.to_string())
        .attr("auth_ttl", info.auth_ttl.to_string());
    if let Some(b) = info.max_buckets {
        mc = mc.attr("max_buckets", b.to_string());
    }
    let hosts = info
        .hosts
        .iter()
        .map(|h| Node::new("host").attr("hostname", h.clone()))
        .collect();
    Node::new("iq")
        .attr("id", id.to_owned())
        .attr("type", "result")
        .attr("from", Jid::new("", Server::User))
        .children(vec![mc.children(hosts)])
}

/// The message inside the envelopes that do not change its type.
fn inner(m: &wa::Message) -> &wa::Message {
    let mut m = m;
    for _ in 0..4 {
        let next = m
            .view_once_message
            .as_ref()
            .or(m.view_once_message_v2.as_ref())
            .or(m.view_once_message_v2_extension.as_ref())
            .or(m.ephemeral_message.as_ref())
            .or(m.document_with_caption_message.as_ref())
            .and_then(|f| f.message.as_deref());
        match next {
            Some(n) => m = n,
            None => break,
        }
    }
    m
}

/// The `mediatype` of a message's `<enc>` (whatsmeow `getMediaTypeFromMessage`, Baileys
/// `getMediaType`); None for messages that carry none.
pub fn mediatype_of(m: &wa::Message) -> Option<&'static str> {
    let m = inner(m);
    if m.extended_text_message
        .as_ref()
        .is_some_and(|e| e.title.is_some())
    {
        return Some("url");
    }
    if m.image_message.is_some() {
        return Some("image");
    }
    if m.sticker_message.is_some() {
        return Some("sticker");
    }
    if m.document_message.is_some() {
        return Some("document");
    }
    if let Some(a) = &m.audio_message {
        return Some(if a.ptt == Some(true) { "ptt" } else { "audio" });
    }
    if let Some(v) = &m.video_message {
        return Some(if v.gif_playback == Some(true) {
            "gif"
        } else {
            "video"
        });
    }
    if m.ptv_message.is_some() {
        return Some("ptv");
    }
    if m.contact_message.is_some() {
        return Some("vcard");
    }
    if m.contacts_array_message.is_some() {
        return Some("contact_array");
    }
    None
}

/// The `<message type>` of a message (whatsmeow `getTypeFromMessage`): reactions, polls,
/// media, else text.
pub fn message_type_of(m: &wa::Message) -> &'static str {
    let m = inner(m);
    if m.reaction_message.is_some() || m.enc_reaction_message.is_some() {
        "reaction"
    } else if m.poll_creation_message.is_some() || m.poll_update_message.is_some() {
        "poll"
    } else if mediatype_of(m).is_some() {
        "media"
    } else {
        "text"
    }
}

/// Sets a built `<message>`'s `type` from `m`, and `mediatype` on each of its `<enc>`s (1:1
/// encs under `<participants><to>`, a direct `<enc>`, a group's `skmsg`).
pub fn set_message_type(node: &mut Node, m: &wa::Message) {
    let ty = message_type_of(m);
    match node.attrs.iter_mut().find(|(k, _)| k == "type") {
        Some((_, v)) => *v = ty.into(),
        None => node.attrs.push(("type".into(), ty.into())),
    }
    let Some(mt) = mediatype_of(m) else { return };
    fn mark(n: &mut Node, mt: &'static str) {
        if n.tag == "enc" {
            if n.get("mediatype").is_none() {
                n.attrs.push(("mediatype".into(), mt.into()));
            }
            return;
        }
        if let Content::Children(c) = &mut n.content {
            for ch in c {
                if matches!(&*ch.tag, "participants" | "to" | "enc") {
                    mark(ch, mt);
                }
            }
        }
    }
    mark(node, mt);
}

/// The media-retry request for message `id` (whatsmeow `SendMediaRetryReceipt`): a
/// `server-error` receipt to our own phone number with the encrypted `ServerErrorReceipt`
/// and the message's key (`participant` only in groups, as whatsmeow sends it).
pub fn media_retry_receipt(
    id: &str,
    own_pn: &Jid,
    chat: &Jid,
    from_me: bool,
    participant: Option<&Jid>,
    ciphertext: &[u8],
    iv: &[u8; 12],
) -> Node {
    let mut rmr = Node::new("rmr")
        .attr("jid", chat.clone())
        .attr("from_me", if from_me { "true" } else { "false" });
    if chat.server == Server::Group
        && let Some(p) = participant
    {
        rmr = rmr.attr("participant", p.clone());
    }
    Node::new("receipt")
        .attr("id", id.to_owned())
        .attr("to", own_pn.to_non_ad())
        .attr("type", "server-error")
        .children(vec![
            Node::new("encrypt").children(vec![
                Node::new("enc_p").bytes(ciphertext.to_vec()),
                Node::new("enc_iv").bytes(iv.to_vec()),
            ]),
            rmr,
        ])
}

/// What a `mediaretry` notification carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaRetryAnswer {
    /// The phone's encrypted `MediaRetryNotification`.
    Encrypted {
        /// `enc_p`: ciphertext and tag.
        ciphertext: Vec<u8>,
        /// `enc_iv`: the 12-byte nonce.
        iv: [u8; 12],
    },
    /// An `<error code>` instead (2: not on the phone; 3: it could not decrypt; else general).
    Error(u16),
}

/// A `mediaretry` notification: the message it answers and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRetryNotice {
    /// The message id (the notification's `id`).
    pub id: String,
    /// The chat from `<rmr jid>`.
    pub chat: Option<Jid>,
    /// The answer.
    pub answer: MediaRetryAnswer,
}

/// Reads `<notification type="mediaretry" id><rmr …/>(<encrypt>…</encrypt> | <error code/>)`;
/// None when it is not one or is malformed.
pub fn parse_media_retry(node: &Node) -> Option<MediaRetryNotice> {
    if node.tag != "notification" || node.get_str("type").as_deref() != Some("mediaretry") {
        return None;
    }
    let id = node.get_str("id")?.into_owned();
    let chat = node.child("rmr").and_then(|r| r.get_jid("jid"));
    let answer = if let Some(e) = node.child("encrypt") {
        let ciphertext = e.child("enc_p")?.content_bytes()?.to_vec();
        let iv: [u8; 12] = e.child("enc_iv")?.content_bytes()?[..].try_into().ok()?;
        MediaRetryAnswer::Encrypted { ciphertext, iv }
    } else {
        let code = node.child("error")?.get_str("code")?.parse().ok()?;
        MediaRetryAnswer::Error(code)
    };
    Some(MediaRetryNotice { id, chat, answer })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_conn_answers_round_trip_and_fallbacks_go_last() {
        let info = MediaConnInfo {
            auth: "tok".into(),
            ttl: 300,
            auth_ttl: 21600,
            max_buckets: Some(12),
            hosts: vec!["a.example:443".into(), "b.example".into()],
        };
        let node = media_conn_result("1", &info);
        assert_eq!(parse_media_conn(&node), Some(info));
        let mixed = Node::new("iq").children(vec![
            Node::new("media_conn")
                .attr("auth", "t")
                .attr("ttl", "10")
                .children(vec![
                    Node::new("host")
                        .attr("hostname", "fb.example")
                        .attr("type", "fallback"),
                    Node::new("host").attr("hostname", "bad/host"),
                    Node::new("host").attr("hostname", "p.example"),
                ]),
        ]);
        let got = parse_media_conn(&mixed).unwrap();
        assert_eq!(got.hosts, vec!["p.example", "fb.example"]);
        assert_eq!(got.auth_ttl, 10);
        assert!(!format!("{got:?}").contains("\"t\""));
    }

    #[test]
    fn no_auth_or_no_host_is_no_answer() {
        let n = |attrs: &[(&'static str, &'static str)], hosts: usize| {
            let mut mc = Node::new("media_conn");
            for &(k, v) in attrs {
                mc = mc.attr(k, v);
            }
            let hs = (0..hosts)
                .map(|_| Node::new("host").attr("hostname", "h.example"))
                .collect();
            Node::new("iq").children(vec![mc.children(hs)])
        };
        assert!(parse_media_conn(&n(&[("ttl", "1")], 1)).is_none());
        assert!(parse_media_conn(&n(&[("auth", "a")], 1)).is_none());
        assert!(parse_media_conn(&n(&[("auth", "a"), ("ttl", "1")], 0)).is_none());
        assert!(parse_media_conn(&n(&[("auth", "a"), ("ttl", "1")], 1)).is_some());
    }

    #[test]
    fn types_follow_the_content() {
        let ptt = wa::Message {
            audio_message: Some(Box::new(wa::AudioMessage {
                ptt: Some(true),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(mediatype_of(&ptt), Some("ptt"));
        assert_eq!(message_type_of(&ptt), "media");
        let doc = wa::Message {
            document_with_caption_message: Some(Box::new(wa::FutureProofMessage {
                message: Some(Box::new(wa::Message {
                    document_message: Some(Box::default()),
                    ..Default::default()
                })),
            })),
            ..Default::default()
        };
        assert_eq!(mediatype_of(&doc), Some("document"));
        let text = wa::Message {
            conversation: Some("hi".into()),
            ..Default::default()
        };
        assert_eq!(message_type_of(&text), "text");
        assert_eq!(mediatype_of(&text), None);

        let mut node = Node::new("message").attr("type", "text").children(vec![
            Node::new("participants").children(vec![
                Node::new("to").children(vec![Node::new("enc").attr("type", "msg")]),
            ]),
        ]);
        set_message_type(&mut node, &ptt);
        assert_eq!(node.get_str("type").as_deref(), Some("media"));
        let enc = node.child_path(&["participants", "to", "enc"]).unwrap();
        assert_eq!(enc.get_str("mediatype").as_deref(), Some("ptt"));
    }

    #[test]
    fn media_retry_stanzas_read_back() {
        let me: Jid = "15550001111@s.whatsapp.net".parse().unwrap();
        let chat: Jid = "120363000000000000@g.us".parse().unwrap();
        let p: Jid = "15550002222@s.whatsapp.net".parse().unwrap();
        let r = media_retry_receipt("ID1", &me, &chat, false, Some(&p), b"ct", &[9; 12]);
        assert_eq!(r.get_str("type").as_deref(), Some("server-error"));
        assert_eq!(
            r.child("rmr").unwrap().get_str("participant").as_deref(),
            Some("15550002222@s.whatsapp.net")
        );
        let notice = Node::new("notification")
            .attr("type", "mediaretry")
            .attr("id", "ID1")
            .children(vec![
                Node::new("rmr").attr("jid", chat.clone()),
                r.child("encrypt").unwrap().clone(),
            ]);
        let got = parse_media_retry(&notice).unwrap();
        assert_eq!(got.chat, Some(chat));
        assert_eq!(
            got.answer,
            MediaRetryAnswer::Encrypted {
                ciphertext: b"ct".to_vec(),
                iv: [9; 12]
            }
        );
        let err = Node::new("notification")
            .attr("type", "mediaretry")
            .attr("id", "ID1")
            .children(vec![Node::new("error").attr("code", "2")]);
        assert_eq!(
            parse_media_retry(&err).unwrap().answer,
            MediaRetryAnswer::Error(2)
        );
        let bad_iv = Node::new("notification")
            .attr("type", "mediaretry")
            .attr("id", "x")
            .children(vec![Node::new("encrypt").children(vec![
                Node::new("enc_p").bytes(vec![1]),
                Node::new("enc_iv").bytes(vec![1, 2]),
            ])]);
        assert!(parse_media_retry(&bad_iv).is_none());
    }
}
