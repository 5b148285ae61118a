//! Borrowed decoding into a reusable [`NodeArena`]: the result is a view whose strings and
//! binary content point into the received frame (tokens at the static dictionaries; packed
//! strings stay packed until read), so steady-state decoding allocates nothing; meant for
//! routing a stanza or reading a few attributes without building a tree. The connection's
//! reader does not use it yet: it decodes owned [`Node`]s (see benches/README.md for both
//! figures). [`NodeView::to_owned_node`] gives a [`Node`]. Every check and cap of the owned
//! decoder applies here too.

use std::fmt;

use bytes::Bytes;

use super::cursor::Cursor;
use super::decode::{MAX_ATTRS, MAX_DEPTH, MAX_NODES};
use super::error::DecodeError;
use super::jid::{Jid, Server};
use super::node::{Content, Node, Value};
use super::pack::{Packing, read_packed};
use super::tag;
use super::token;

/// A string as it sits in the frame: a dictionary token, raw UTF-8, or still packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextRef<'a> {
    /// A static string: a dictionary token, or the server an AD_JID domain implies.
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

/// Where a string sits, resolved against the frame when read. Plain `u32` fields (no enum
/// payloads of mixed widths) so that moving positions around never stalls on partial writes;
/// measured: the enum form cost ~15% of decode time in store-forwarding stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Text {
    kind: u32,
    /// Token: index; Raw and Packed: start offset.
    a: u32,
    /// Token: dictionary (255 = single-byte); Raw: length; Packed: header byte.
    b: u32,
}

const TOKEN: u32 = 0;
const RAW: u32 = 1;
const NIBBLE: u32 = 2;
const HEX: u32 = 3;
/// A server name implied by an AD_JID domain that is not a token (`a` indexes `AD_SERVERS`).
const AD_SERVER: u32 = 4;

const AD_SERVERS: [&str; 4] = ["s.whatsapp.net", "lid", "hosted", "hosted.lid"];

impl Text {
    const EMPTY: Text = Text {
        kind: RAW,
        a: 0,
        b: 0,
    };

    fn token(dict: u8, index: u8) -> Text {
        Text {
            kind: TOKEN,
            a: u32::from(index),
            b: u32::from(dict),
        }
    }

    fn token_str(&self) -> &'static str {
        let (dict, index) = (self.b as u8, self.a as u8);
        match dict {
            255 => token::single(index),
            d => token::double(d, index),
        }
        .unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        match self.kind {
            TOKEN => self.token_str().is_empty(),
            RAW => self.b == 0,
            AD_SERVER => false,
            _ => self.b & 0x7f == 0,
        }
    }
}

/// An attribute value or string content: `kind` 0 = text, 1 = JID.
#[derive(Debug, Clone, Copy)]
struct Val {
    kind: u32,
    text: Text,
    /// JID server.
    server: Text,
    /// JID agent (low 8 bits) and device (high 16 bits).
    agent_device: u32,
    integrator: u32,
}

impl Val {
    fn text(text: Text) -> Val {
        Val {
            kind: 0,
            text,
            server: Text::EMPTY,
            agent_device: 0,
            integrator: 0,
        }
    }

    fn jid(user: Text, server: Text, agent: u8, device: u16, integrator: u16) -> Val {
        Val {
            kind: 1,
            text: user,
            server,
            agent_device: u32::from(agent) | (u32::from(device) << 16),
            integrator: u32::from(integrator),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Body {
    None,
    Bytes {
        start: u32,
        len: u32,
    },
    Text(Val),
    /// First child's slot (`NONE` when the list is empty).
    Children(u32),
}

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Slot {
    tag: Text,
    attrs_start: u32,
    attrs_len: u32,
    body: Body,
    next_sibling: u32,
}

/// Reusable storage for borrowed decoding: every node and attribute of a frame goes into two
/// flat vectors that are cleared, not freed, between frames, so a connection's reader decodes
/// in steady state without allocating. Holds positions, never references, so it outlives frames.
#[derive(Debug, Default)]
pub struct NodeArena {
    nodes: Vec<Slot>,
    attrs: Vec<(Text, Val)>,
}

impl NodeArena {
    /// An empty arena.
    pub fn new() -> NodeArena {
        NodeArena::default()
    }

    /// Decodes exactly one node from `data` (no flags byte) into this arena.
    pub fn decode<'a>(&'a mut self, data: &'a [u8]) -> Result<NodeView<'a>, DecodeError> {
        self.nodes.clear();
        self.attrs.clear();
        if data.len() > u32::MAX as usize {
            return Err(DecodeError::InputTooLarge(u32::MAX as usize));
        }
        let mut d = RefDecoder {
            c: Cursor::new(data),
            arena: self,
        };
        let root = d.read_node(0)?;
        let trailing = d.c.remaining();
        if trailing > 0 {
            return Err(DecodeError::TrailingBytes(trailing));
        }
        Ok(NodeView {
            arena: self,
            data,
            idx: root,
        })
    }

    /// Memory held for reuse, in bytes.
    pub fn capacity_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Slot>()
            + self.attrs.capacity() * std::mem::size_of::<(Text, Val)>()
    }

    /// Gives back memory after an unusually large frame, so idle connections stay small.
    pub fn shrink(&mut self, max_bytes: usize) {
        if self.capacity_bytes() > max_bytes {
            *self = NodeArena::default();
        }
    }
}

/// A decoded node, borrowing the frame and the arena.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    arena: &'a NodeArena,
    data: &'a [u8],
    idx: u32,
}

impl<'a> NodeView<'a> {
    fn slot(&self) -> &'a Slot {
        &self.arena.nodes[self.idx as usize]
    }

    fn text(&self, t: Text) -> TextRef<'a> {
        // Ranges were checked (in bounds, UTF-8, valid nibbles) when decoded.
        match t.kind {
            TOKEN => TextRef::Token(t.token_str()),
            AD_SERVER => TextRef::Token(AD_SERVERS[t.a as usize & 3]),
            RAW => TextRef::Str(
                std::str::from_utf8(&self.data[t.a as usize..(t.a + t.b) as usize])
                    .unwrap_or_default(),
            ),
            kind => TextRef::Packed(PackedRef {
                packing: if kind == NIBBLE {
                    Packing::Nibble
                } else {
                    Packing::Hex
                },
                header: t.b as u8,
                body: &self.data[t.a as usize..t.a as usize + (t.b & 0x7f) as usize],
            }),
        }
    }

    fn value(&self, v: Val) -> ValueRef<'a> {
        if v.kind == 0 {
            return ValueRef::Text(self.text(v.text));
        }
        ValueRef::Jid(JidRef {
            user: self.text(v.text),
            agent: v.agent_device as u8,
            device: (v.agent_device >> 16) as u16,
            integrator: v.integrator as u16,
            server: self.text(v.server),
        })
    }

    /// The element name.
    pub fn tag(&self) -> TextRef<'a> {
        self.text(self.slot().tag)
    }

    /// Attributes in wire order.
    pub fn attrs(&self) -> impl Iterator<Item = (TextRef<'a>, ValueRef<'a>)> + '_ {
        let s = self.slot();
        self.arena.attrs[s.attrs_start as usize..(s.attrs_start + s.attrs_len) as usize]
            .iter()
            .map(|(k, v)| (self.text(*k), self.value(*v)))
    }

    /// The first attribute named `key`.
    pub fn get(&self, key: &str) -> Option<ValueRef<'a>> {
        self.attrs().find(|(k, _)| k.eq_str(key)).map(|(_, v)| v)
    }

    /// Child nodes in order (none unless the content is a list).
    pub fn children(&self) -> impl Iterator<Item = NodeView<'a>> + 'a {
        let (arena, data) = (self.arena, self.data);
        let mut next = match self.slot().body {
            Body::Children(first) => first,
            _ => NONE,
        };
        std::iter::from_fn(move || {
            if next == NONE {
                return None;
            }
            let idx = next;
            next = arena.nodes[idx as usize].next_sibling;
            Some(NodeView { arena, data, idx })
        })
    }

    /// The first child with `tag`.
    pub fn child(&self, tag: &str) -> Option<NodeView<'a>> {
        self.children().find(|c| c.tag().eq_str(tag))
    }

    /// Binary content, if that is what the node carries.
    pub fn content_bytes(&self) -> Option<&'a [u8]> {
        match self.slot().body {
            Body::Bytes { start, len } => Some(&self.data[start as usize..(start + len) as usize]),
            _ => None,
        }
    }

    /// String content, if that is what the node carries.
    pub fn content_text(&self) -> Option<ValueRef<'a>> {
        match self.slot().body {
            Body::Text(v) => Some(self.value(v)),
            _ => None,
        }
    }

    /// True when the content is a child list (possibly empty).
    pub fn has_child_list(&self) -> bool {
        matches!(self.slot().body, Body::Children(_))
    }

    /// An owned node; binary content is sliced from `frame` (the bytes this view reads) without
    /// copying when given, copied otherwise.
    pub fn to_owned_node(&self, frame: Option<&Bytes>) -> Node {
        let content = match self.slot().body {
            Body::None => Content::None,
            Body::Bytes { .. } => {
                let b = self.content_bytes().unwrap_or_default();
                Content::Bytes(match frame {
                    Some(f) => f.slice_ref(b),
                    None => Bytes::copy_from_slice(b),
                })
            }
            Body::Text(v) => Content::Text(self.value(v).to_value()),
            Body::Children(_) => {
                Content::Children(self.children().map(|c| c.to_owned_node(frame)).collect())
            }
        };
        Node {
            tag: self.tag().to_str(),
            attrs: self
                .attrs()
                .map(|(k, v)| (k.to_str(), v.to_value()))
                .collect(),
            content,
        }
    }
}

struct RefDecoder<'a, 'm> {
    c: Cursor<'a>,
    arena: &'m mut NodeArena,
}

impl RefDecoder<'_, '_> {
    fn read_node(&mut self, depth: usize) -> Result<u32, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep(MAX_DEPTH));
        }
        let start = self.c.pos;
        let t = self.c.u8()?;
        let size = self.c.list_size(t, "node list")?;
        let tag = self.read_text()?;
        if size == 0 || tag.is_empty() {
            return Err(DecodeError::InvalidNode { offset: start });
        }
        if self.arena.nodes.len() >= MAX_NODES {
            return Err(DecodeError::TooManyNodes(MAX_NODES));
        }
        let n_attrs = (size - 1) / 2;
        if self.arena.attrs.len() + n_attrs > MAX_ATTRS {
            return Err(DecodeError::TooManyAttrs(MAX_ATTRS));
        }
        let attrs_start = self.arena.attrs.len() as u32;
        for _ in 0..n_attrs {
            let key = self.read_text()?;
            let t = self.c.u8()?;
            let v = self.read_value(t)?;
            self.arena.attrs.push((key, v));
        }
        let idx = self.arena.nodes.len() as u32;
        self.arena.nodes.push(Slot {
            tag,
            attrs_start,
            attrs_len: n_attrs as u32,
            body: Body::None,
            next_sibling: NONE,
        });
        if size % 2 == 0 {
            let body = self.read_content(depth)?;
            self.arena.nodes[idx as usize].body = body;
        }
        Ok(idx)
    }

    fn read_content(&mut self, depth: usize) -> Result<Body, DecodeError> {
        let t = self.c.u8()?;
        match t {
            tag::LIST_EMPTY | tag::LIST_8 | tag::LIST_16 => {
                let n = self.c.list_size(t, "child list")?;
                let mut first = NONE;
                let mut prev = NONE;
                for _ in 0..n {
                    let c = self.read_node(depth + 1)?;
                    if prev == NONE {
                        first = c;
                    } else {
                        self.arena.nodes[prev as usize].next_sibling = c;
                    }
                    prev = c;
                }
                Ok(Body::Children(first))
            }
            tag::BINARY_8 | tag::BINARY_20 | tag::BINARY_32 => {
                let len = self.c.binary_len(t)?;
                let start = self.c.skip(len)?;
                Ok(Body::Bytes {
                    start: start as u32,
                    len: len as u32,
                })
            }
            _ => Ok(Body::Text(self.read_value(t)?)),
        }
    }

    /// Tags and keys are strings; a JID there is refused (as by the owned decoder).
    fn read_text(&mut self) -> Result<Text, DecodeError> {
        let t = self.c.u8()?;
        let v = self.read_value(t)?;
        if v.kind != 0 {
            return Err(DecodeError::InvalidTag {
                tag: t,
                context: "tag or key (JID)",
                offset: self.c.pos,
            });
        }
        Ok(v.text)
    }

    fn read_jid_part(&mut self) -> Result<Text, DecodeError> {
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
        let v = self.read_value(t)?;
        if v.kind != 0 {
            return Err(DecodeError::InvalidJid { offset: self.c.pos });
        }
        Ok(v.text)
    }

    fn text_eq(&self, t: Text, s: &str) -> bool {
        match t.kind {
            TOKEN => t.token_str() == s,
            AD_SERVER => AD_SERVERS[t.a as usize & 3] == s,
            RAW => &self.c.src[t.a as usize..(t.a + t.b) as usize] == s.as_bytes(),
            _ => false,
        }
    }

    fn read_value(&mut self, t: u8) -> Result<Val, DecodeError> {
        let offset = self.c.pos - 1;
        Ok(match t {
            tag::LIST_EMPTY => Val::text(Text::EMPTY),
            1..=235 => Val::text(Text::token(255, t)),
            tag::DICTIONARY_0..=tag::DICTIONARY_3 => {
                let dict = t - tag::DICTIONARY_0;
                let index = self.c.u8()?;
                // Every index of the four 256-entry dictionaries names a token.
                Val::text(Text::token(dict, index))
            }
            tag::BINARY_8 | tag::BINARY_20 | tag::BINARY_32 => {
                let len = self.c.binary_len(t)?;
                let start = self.c.skip(len)?;
                std::str::from_utf8(&self.c.src[start..start + len])
                    .map_err(|_| DecodeError::InvalidUtf8 { offset })?;
                Val::text(Text {
                    kind: RAW,
                    a: start as u32,
                    b: len as u32,
                })
            }
            tag::NIBBLE_8 | tag::HEX_8 => {
                let header = self.c.u8()?;
                let n = (header & 0x7f) as usize;
                let start = self.c.skip(n)?;
                let packing = if t == tag::NIBBLE_8 {
                    Packing::Nibble
                } else {
                    Packing::Hex
                };
                if header & 0x80 != 0 && n == 0 {
                    return Err(DecodeError::InvalidNibble(15));
                }
                validate_packed(packing, header, &self.c.src[start..start + n])?;
                Val::text(Text {
                    kind: if packing == Packing::Nibble {
                        NIBBLE
                    } else {
                        HEX
                    },
                    a: start as u32,
                    b: u32::from(header),
                })
            }
            tag::JID_PAIR => {
                let user = self.read_jid_part()?;
                let server = self.read_jid_part()?;
                if server.is_empty() {
                    return Err(DecodeError::InvalidJid { offset });
                }
                Val::jid(user, server, 0, 0, 0)
            }
            tag::AD_JID => {
                let domain = self.c.u8()?;
                let device = self.c.u8()?;
                let user = self.read_jid_part()?;
                let (server, agent) = Server::from_ad_domain(domain);
                Val::jid(user, ad_server_token(&server), agent, device.into(), 0)
            }
            tag::FB_JID => {
                let user = self.read_jid_part()?;
                let device = self.c.u16()?;
                let server = self.read_jid_part()?;
                if !self.text_eq(server, "msgr") {
                    return Err(DecodeError::InvalidJid { offset });
                }
                Val::jid(user, server, 0, device, 0)
            }
            tag::INTEROP_JID => {
                let user = self.read_jid_part()?;
                let device = self.c.u16()?;
                let integrator = self.c.u16()?;
                let server = self.read_jid_part()?;
                if !self.text_eq(server, "interop") {
                    return Err(DecodeError::InvalidJid { offset });
                }
                Val::jid(user, server, 0, device, integrator)
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

/// The server an AD_JID domain implies.
fn ad_server_token(s: &Server) -> Text {
    Text {
        kind: AD_SERVER,
        a: match s {
            Server::Lid => 1,
            Server::Hosted => 2,
            Server::HostedLid => 3,
            _ => 0,
        },
        b: 0,
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
