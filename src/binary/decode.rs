//! Node decoder. Binary content is sliced from the input `Bytes` without copying; tokens borrow
//! the static dictionaries. Every length is checked against the input, so no input panics.

use std::borrow::Cow;

use bytes::Bytes;

use super::cursor::Cursor;
use super::error::DecodeError;
use super::jid::{Jid, Server};
use super::node::{Content, Node, Str, Value};
use super::pack::{Packing, read_packed};
use super::tag;
use super::token;

/// Deepest nesting accepted; real stanzas stay below 10.
pub const MAX_DEPTH: usize = 128;

/// Most nodes one frame may hold. The largest real frames (a usync answer for thousands of
/// contacts, a big group's metadata, an offline batch) hold a few tens of thousands; without a
/// cap, 16 MiB of 3-byte nodes inflated from ~20 KiB of zlib would become half a gigabyte.
pub const MAX_NODES: usize = 1 << 16;

/// Most attributes one frame may hold (four per node on average at the node cap).
pub const MAX_ATTRS: usize = 1 << 18;

/// Children reserved before they are read: lists past this grow as children arrive, so a list
/// that announces more children than it has costs nothing up front, however deeply nested.
pub(crate) const PRESIZE_CHILDREN: usize = 32;

/// Decodes exactly one node from `data` (no flags byte); trailing bytes are an error.
pub fn decode_node(data: &Bytes) -> Result<Node, DecodeError> {
    let mut d = Decoder {
        bytes: data,
        c: Cursor::new(data),
        nodes: 0,
        attrs: 0,
    };
    let node = d.read_node(0)?;
    match d.c.remaining() {
        0 => Ok(node),
        n => Err(DecodeError::TrailingBytes(n)),
    }
}

struct Decoder<'a> {
    /// The input, for slicing binary content without copying.
    bytes: &'a Bytes,
    c: Cursor<'a>,
    /// Nodes and attributes decoded so far in this frame.
    nodes: usize,
    attrs: usize,
}

impl Decoder<'_> {
    fn read_node(&mut self, depth: usize) -> Result<Node, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep(MAX_DEPTH));
        }
        let start = self.c.pos;
        let t = self.c.u8()?;
        let size = self.c.list_size(t, "node list")?;
        let tag = self.read_str()?;
        if size == 0 || tag.is_empty() {
            return Err(DecodeError::InvalidNode { offset: start });
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(DecodeError::TooManyNodes(MAX_NODES));
        }
        let n_attrs = (size - 1) / 2;
        self.attrs += n_attrs;
        if self.attrs > MAX_ATTRS {
            return Err(DecodeError::TooManyAttrs(MAX_ATTRS));
        }
        // Each attribute takes at least two bytes, so the input bounds the allocation.
        let mut attrs = Vec::with_capacity(n_attrs.min(self.c.remaining() / 2));
        for _ in 0..n_attrs {
            let key = self.read_str()?;
            let t = self.c.u8()?;
            let value = self.read_value(t)?;
            attrs.push((key, value));
        }
        let content = if size % 2 == 0 {
            self.read_content(depth)?
        } else {
            Content::None
        };
        Ok(Node {
            tag,
            attrs,
            content,
        })
    }

    fn read_content(&mut self, depth: usize) -> Result<Content, DecodeError> {
        let t = self.c.u8()?;
        match t {
            tag::LIST_EMPTY | tag::LIST_8 | tag::LIST_16 => {
                let n = self.c.list_size(t, "child list")?;
                let mut children = Vec::with_capacity(n.min(PRESIZE_CHILDREN));
                for _ in 0..n {
                    children.push(self.read_node(depth + 1)?);
                }
                Ok(Content::Children(children))
            }
            tag::BINARY_8 | tag::BINARY_20 | tag::BINARY_32 => {
                let len = self.c.binary_len(t)?;
                let start = self.c.skip(len)?;
                Ok(Content::Bytes(self.bytes.slice(start..start + len)))
            }
            _ => Ok(Content::Text(self.read_value(t)?)),
        }
    }

    /// A string where the protocol expects one (tags, attribute keys). No stanza carries a
    /// JID there, so one is refused (the borrowed decoder agrees).
    fn read_str(&mut self) -> Result<Str, DecodeError> {
        let t = self.c.u8()?;
        match self.read_value(t)? {
            Value::Str(s) => Ok(s),
            Value::Jid(_) => Err(DecodeError::InvalidTag {
                tag: t,
                context: "tag or key (JID)",
                offset: self.c.pos,
            }),
        }
    }

    /// A part of a JID: never itself a JID, so crafted input cannot nest JIDs without bound.
    fn read_jid_part(&mut self) -> Result<Str, DecodeError> {
        let t = self.c.u8()?;
        if matches!(
            t,
            tag::JID_PAIR | tag::AD_JID | tag::FB_JID | tag::INTEROP_JID
        ) {
            return Err(DecodeError::InvalidTag {
                tag: t,
                context: "JID part",
                offset: self.c.pos - 1,
            });
        }
        match self.read_value(t)? {
            Value::Str(s) => Ok(s),
            Value::Jid(_) => Err(DecodeError::InvalidJid { offset: self.c.pos }),
        }
    }

    fn read_value(&mut self, t: u8) -> Result<Value, DecodeError> {
        let offset = self.c.pos - 1;
        Ok(match t {
            tag::LIST_EMPTY => Value::Str(Cow::Borrowed("")),
            1..=235 => Value::Str(Cow::Borrowed(token::single(t).ok_or(
                DecodeError::InvalidToken {
                    dict: 255,
                    index: t,
                },
            )?)),
            tag::DICTIONARY_0..=tag::DICTIONARY_3 => {
                let dict = t - tag::DICTIONARY_0;
                let index = self.c.u8()?;
                Value::Str(Cow::Borrowed(
                    token::double(dict, index).ok_or(DecodeError::InvalidToken { dict, index })?,
                ))
            }
            tag::BINARY_8 | tag::BINARY_20 | tag::BINARY_32 => {
                let len = self.c.binary_len(t)?;
                let raw = self.c.take(len)?;
                let s =
                    std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 { offset })?;
                Value::Str(Cow::Owned(s.to_owned()))
            }
            tag::NIBBLE_8 | tag::HEX_8 => {
                let header = self.c.u8()?;
                let body = self.c.take((header & 0x7f) as usize)?;
                let p = if t == tag::NIBBLE_8 {
                    Packing::Nibble
                } else {
                    Packing::Hex
                };
                if header & 0x80 != 0 && body.is_empty() {
                    return Err(DecodeError::InvalidNibble(15));
                }
                Value::Str(Cow::Owned(read_packed(p, header, body)?))
            }
            tag::JID_PAIR => {
                let user = self.read_jid_part()?;
                let server = self.read_jid_part()?;
                if server.is_empty() {
                    return Err(DecodeError::InvalidJid { offset });
                }
                Value::Jid(Jid::new(user.into_owned(), Server::parse(&server)))
            }
            tag::AD_JID => {
                let domain = self.c.u8()?;
                let device = self.c.u8()?;
                let user = self.read_jid_part()?;
                let (server, agent) = Server::from_ad_domain(domain);
                Value::Jid(Jid {
                    user: user.into_owned(),
                    agent,
                    device: device.into(),
                    integrator: 0,
                    server,
                })
            }
            tag::FB_JID => {
                let user = self.read_jid_part()?;
                let device = self.c.u16()?;
                let server = self.read_jid_part()?;
                if server != "msgr" {
                    return Err(DecodeError::InvalidJid { offset });
                }
                Value::Jid(Jid::with_device(
                    user.into_owned(),
                    device,
                    Server::Messenger,
                ))
            }
            tag::INTEROP_JID => {
                let user = self.read_jid_part()?;
                let device = self.c.u16()?;
                let integrator = self.c.u16()?;
                let server = self.read_jid_part()?;
                if server != "interop" {
                    return Err(DecodeError::InvalidJid { offset });
                }
                Value::Jid(Jid {
                    integrator,
                    ..Jid::with_device(user.into_owned(), device, Server::Interop)
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
