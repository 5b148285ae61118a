//! Borrowed decoding: a view of a node that points into the received bytes. Tokens point at the
//! static dictionaries, raw strings and binary content at the frame, and packed strings stay
//! packed until read, so decoding allocates only the attribute and child lists. Hot paths
//! (routing a stanza, reading a few attributes) use this; [`NodeRef::to_owned`] gives a [`Node`].
//! Every check of the owned decoder applies here too.

use std::fmt;

use bytes::Bytes;

use super::decode::MAX_DEPTH;
use super::error::DecodeError;
use super::jid::{Jid, Server};
use super::node::{Content, Node, Value};
use super::pack::{Packing, read_packed};
use super::tag;
use super::token;

/// A string as it sits in the frame: a dictionary token, raw UTF-8, or still packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextRef<'a> {
    /// A dictionary token.
    Token(&'static str),
    /// A raw string in the frame.
    Str(&'a str),
    /// A NIBBLE_8 / HEX_8 string, unpacked on demand.
    Packed(PackedRef<'a>),
}

/// A packed string, validated but not unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedRef<'a> {
    packing: Packing,
    header: u8,
    body: &'a [u8],
}

impl PackedRef<'_> {
    /// Number of characters.
    pub fn len(&self) -> usize {
        self.body.len() * 2 - usize::from(self.header & 0x80 != 0)
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn chars(&self) -> impl Iterator<Item = u8> + '_ {
        let table: &[u8; 16] = match self.packing {
            Packing::Nibble => b"0123456789-.\0\0\0\0",
            Packing::Hex => b"0123456789ABCDEF",
        };
        self.body
            .iter()
            .flat_map(|b| [b >> 4, b & 0x0f])
            .take(self.len())
            .map(move |n| table[n as usize])
    }
}

impl TextRef<'_> {
    /// Compares with `s` without allocating.
    pub fn eq_str(&self, s: &str) -> bool {
        match self {
            TextRef::Token(t) => *t == s,
            TextRef::Str(t) => *t == s,
            TextRef::Packed(p) => p.len() == s.len() && p.chars().eq(s.bytes()),
        }
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        match self {
            TextRef::Token(t) => t.is_empty(),
            TextRef::Str(t) => t.is_empty(),
            TextRef::Packed(p) => p.is_empty(),
        }
    }

    /// An owned copy.
    pub fn to_owned_string(&self) -> String {
        self.to_string()
    }

    fn to_str(self) -> super::node::Str {
        match self {
            TextRef::Token(t) => std::borrow::Cow::Borrowed(t),
            TextRef::Str(s) => std::borrow::Cow::Owned(s.to_owned()),
            // Validated at decode time, so unpacking cannot fail.
            TextRef::Packed(p) => std::borrow::Cow::Owned(
                read_packed(p.packing, p.header, p.body).unwrap_or_default(),
            ),
        }
    }
}

impl fmt::Display for TextRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextRef::Token(s) => f.write_str(s),
            TextRef::Str(s) => f.write_str(s),
            TextRef::Packed(p) => p
                .chars()
                .try_for_each(|c| fmt::Write::write_char(f, c as char)),
        }
    }
}

/// A JID as it sits in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JidRef<'a> {
    /// User part.
    pub user: TextRef<'a>,
    /// Raw agent byte.
    pub agent: u8,
    /// Device number.
    pub device: u16,
    /// Interop integrator.
    pub integrator: u16,
    /// Server part.
    pub server: TextRef<'a>,
}

impl JidRef<'_> {
    /// An owned [`Jid`].
    pub fn to_jid(&self) -> Jid {
        Jid {
            user: self.user.to_string(),
            agent: self.agent,
            device: self.device,
            integrator: self.integrator,
            server: Server::parse(&self.server.to_string()),
        }
    }
}

/// An attribute value or string content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRef<'a> {
    /// A string.
    Text(TextRef<'a>),
    /// A JID.
    Jid(JidRef<'a>),
}

impl ValueRef<'_> {
    /// An owned [`Value`].
    pub fn to_value(&self) -> Value {
        match self {
            ValueRef::Text(t) => Value::Str(t.to_str()),
            ValueRef::Jid(j) => Value::Jid(j.to_jid()),
        }
    }

    /// Compares the string form with `s` (JIDs are rendered) without allocating for strings.
    pub fn eq_str(&self, s: &str) -> bool {
        match self {
            ValueRef::Text(t) => t.eq_str(s),
            ValueRef::Jid(j) => j.to_jid().to_string() == s,
        }
    }
}

/// Content of a borrowed node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ContentRef<'a> {
    /// Nothing.
    #[default]
    None,
    /// Binary data, borrowed from the frame.
    Bytes(&'a [u8]),
    /// A string value.
    Text(ValueRef<'a>),
    /// Child nodes.
    Children(Vec<NodeRef<'a>>),
}

/// A node borrowing the bytes it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef<'a> {
    /// Element name.
    pub tag: TextRef<'a>,
    /// Attributes in wire order.
    pub attrs: Vec<(TextRef<'a>, ValueRef<'a>)>,
    /// Content.
    pub content: ContentRef<'a>,
}

impl<'a> NodeRef<'a> {
    /// The first attribute named `key`.
    pub fn get(&self, key: &str) -> Option<&ValueRef<'a>> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_str(key))
            .map(|(_, v)| v)
    }

    /// The first child with `tag`.
    pub fn child(&self, tag: &str) -> Option<&NodeRef<'a>> {
        match &self.content {
            ContentRef::Children(c) => c.iter().find(|n| n.tag.eq_str(tag)),
            _ => None,
        }
    }

    /// An owned node; binary content is sliced from `frame` (the bytes this view borrows)
    /// without copying when `frame` is given, copied otherwise.
    pub fn to_owned_node(&self, frame: Option<&Bytes>) -> Node {
        Node {
            tag: self.tag.to_str(),
            attrs: self
                .attrs
                .iter()
                .map(|(k, v)| (k.to_str(), v.to_value()))
                .collect(),
            content: match &self.content {
                ContentRef::None => Content::None,
                ContentRef::Bytes(b) => Content::Bytes(match frame {
                    Some(f) => f.slice_ref(b),
                    None => Bytes::copy_from_slice(b),
                }),
                ContentRef::Text(v) => Content::Text(v.to_value()),
                ContentRef::Children(c) => {
                    Content::Children(c.iter().map(|n| n.to_owned_node(frame)).collect())
                }
            },
        }
    }
}

/// Decodes exactly one node from `data` (no flags byte) as a borrowed view.
pub fn decode_node_ref(data: &[u8]) -> Result<NodeRef<'_>, DecodeError> {
    let mut d = RefDecoder { src: data, pos: 0 };
    let node = d.read_node(0)?;
    match data.len() - d.pos {
        0 => Ok(node),
        n => Err(DecodeError::TrailingBytes(n)),
    }
}

struct RefDecoder<'a> {
    src: &'a [u8],
    pos: usize,
}

impl<'a> RefDecoder<'a> {
    #[inline]
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .src
            .get(self.pos)
            .ok_or(DecodeError::UnexpectedEof { offset: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.src.len())
            .ok_or(DecodeError::UnexpectedEof { offset: self.pos })?;
        let s = &self.src[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn binary_len(&mut self, t: u8) -> Result<usize, DecodeError> {
        Ok(match t {
            tag::BINARY_8 => self.u8()? as usize,
            tag::BINARY_20 => {
                let b = self.take(3)?;
                (((b[0] & 0x0f) as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize
            }
            _ => {
                let b = self.take(4)?;
                u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
            }
        })
    }

    fn list_size(&mut self, t: u8, context: &'static str) -> Result<usize, DecodeError> {
        match t {
            tag::LIST_EMPTY => Ok(0),
            tag::LIST_8 => Ok(self.u8()? as usize),
            tag::LIST_16 => Ok(self.u16()? as usize),
            _ => Err(DecodeError::InvalidTag {
                tag: t,
                context,
                offset: self.pos - 1,
            }),
        }
    }

    fn read_node(&mut self, depth: usize) -> Result<NodeRef<'a>, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep(MAX_DEPTH));
        }
        let start = self.pos;
        let t = self.u8()?;
        let size = self.list_size(t, "node list")?;
        let tag = self.read_text_or_jid()?;
        if size == 0 || tag.is_empty() {
            return Err(DecodeError::InvalidNode { offset: start });
        }
        let n_attrs = (size - 1) / 2;
        let mut attrs = Vec::with_capacity(n_attrs.min((self.src.len() - self.pos) / 2));
        for _ in 0..n_attrs {
            let key = self.read_text_or_jid()?;
            let t = self.u8()?;
            attrs.push((key, self.read_value(t)?));
        }
        let content = if size % 2 == 0 {
            self.read_content(depth)?
        } else {
            ContentRef::None
        };
        Ok(NodeRef {
            tag,
            attrs,
            content,
        })
    }

    fn read_content(&mut self, depth: usize) -> Result<ContentRef<'a>, DecodeError> {
        let t = self.u8()?;
        match t {
            tag::LIST_EMPTY | tag::LIST_8 | tag::LIST_16 => {
                let n = self.list_size(t, "child list")?;
                let mut children = Vec::with_capacity(n.min((self.src.len() - self.pos) / 2));
                for _ in 0..n {
                    children.push(self.read_node(depth + 1)?);
                }
                Ok(ContentRef::Children(children))
            }
            tag::BINARY_8 | tag::BINARY_20 | tag::BINARY_32 => {
                let len = self.binary_len(t)?;
                Ok(ContentRef::Bytes(self.take(len)?))
            }
            _ => Ok(ContentRef::Text(self.read_value(t)?)),
        }
    }

    /// Tags and keys are strings; a JID there is refused (as by the owned decoder).
    fn read_text_or_jid(&mut self) -> Result<TextRef<'a>, DecodeError> {
        let t = self.u8()?;
        match self.read_value(t)? {
            ValueRef::Text(s) => Ok(s),
            ValueRef::Jid(_) => Err(DecodeError::InvalidTag {
                tag: t,
                context: "tag or key (JID)",
                offset: self.pos,
            }),
        }
    }

    fn read_jid_part(&mut self) -> Result<TextRef<'a>, DecodeError> {
        let t = self.u8()?;
        if matches!(
            t,
            tag::JID_PAIR | tag::AD_JID | tag::FB_JID | tag::INTEROP_JID
        ) {
            return Err(DecodeError::InvalidTag {
                tag: t,
                context: "JID part",
                offset: self.pos - 1,
            });
        }
        match self.read_value(t)? {
            ValueRef::Text(s) => Ok(s),
            ValueRef::Jid(_) => Err(DecodeError::InvalidJid { offset: self.pos }),
        }
    }

    fn read_value(&mut self, t: u8) -> Result<ValueRef<'a>, DecodeError> {
        let offset = self.pos - 1;
        Ok(match t {
            tag::LIST_EMPTY => ValueRef::Text(TextRef::Token("")),
            1..=235 => ValueRef::Text(TextRef::Token(token::single(t).ok_or(
                DecodeError::InvalidToken {
                    dict: 255,
                    index: t,
                },
            )?)),
            tag::DICTIONARY_0..=tag::DICTIONARY_3 => {
                let dict = t - tag::DICTIONARY_0;
                let index = self.u8()?;
                ValueRef::Text(TextRef::Token(
                    token::double(dict, index).ok_or(DecodeError::InvalidToken { dict, index })?,
                ))
            }
            tag::BINARY_8 | tag::BINARY_20 | tag::BINARY_32 => {
                let len = self.binary_len(t)?;
                let raw = self.take(len)?;
                ValueRef::Text(TextRef::Str(
                    std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 { offset })?,
                ))
            }
            tag::NIBBLE_8 | tag::HEX_8 => {
                let header = self.u8()?;
                let body = self.take((header & 0x7f) as usize)?;
                let packing = if t == tag::NIBBLE_8 {
                    Packing::Nibble
                } else {
                    Packing::Hex
                };
                if header & 0x80 != 0 && body.is_empty() {
                    return Err(DecodeError::InvalidNibble(15));
                }
                validate_packed(packing, header, body)?;
                ValueRef::Text(TextRef::Packed(PackedRef {
                    packing,
                    header,
                    body,
                }))
            }
            tag::JID_PAIR => {
                let user = self.read_jid_part()?;
                let server = self.read_jid_part()?;
                if server.is_empty() {
                    return Err(DecodeError::InvalidJid { offset });
                }
                ValueRef::Jid(JidRef {
                    user,
                    agent: 0,
                    device: 0,
                    integrator: 0,
                    server,
                })
            }
            tag::AD_JID => {
                let domain = self.u8()?;
                let device = self.u8()?;
                let user = self.read_jid_part()?;
                let (server, agent) = Server::from_ad_domain(domain);
                ValueRef::Jid(JidRef {
                    user,
                    agent,
                    device: device.into(),
                    integrator: 0,
                    server: TextRef::Token(ad_server_str(&server)),
                })
            }
            tag::FB_JID => {
                let user = self.read_jid_part()?;
                let device = self.u16()?;
                let server = self.read_jid_part()?;
                if !server.eq_str("msgr") {
                    return Err(DecodeError::InvalidJid { offset });
                }
                ValueRef::Jid(JidRef {
                    user,
                    agent: 0,
                    device,
                    integrator: 0,
                    server,
                })
            }
            tag::INTEROP_JID => {
                let user = self.read_jid_part()?;
                let device = self.u16()?;
                let integrator = self.u16()?;
                let server = self.read_jid_part()?;
                if !server.eq_str("interop") {
                    return Err(DecodeError::InvalidJid { offset });
                }
                ValueRef::Jid(JidRef {
                    user,
                    agent: 0,
                    device,
                    integrator,
                    server,
                })
            }
            _ => {
                return Err(DecodeError::InvalidTag {
                    tag: t,
                    context: "string",
                    offset,
                });
            }
        })
    }
}

/// The static server string of an AD_JID domain.
fn ad_server_str(s: &Server) -> &'static str {
    match s {
        Server::Lid => "lid",
        Server::Hosted => "hosted",
        Server::HostedLid => "hosted.lid",
        _ => "s.whatsapp.net",
    }
}

/// Applies the owned decoder's nibble checks without unpacking.
fn validate_packed(p: Packing, header: u8, body: &[u8]) -> Result<(), DecodeError> {
    if p == Packing::Hex {
        // Every nibble is a hex digit.
        return Ok(());
    }
    let odd = header & 0x80 != 0;
    for (i, &b) in body.iter().enumerate() {
        if b >> 4 > 11 {
            return Err(DecodeError::InvalidNibble(b >> 4));
        }
        if odd && i + 1 == body.len() {
            break;
        }
        if b & 0x0f > 11 {
            return Err(DecodeError::InvalidNibble(b & 0x0f));
        }
    }
    Ok(())
}
