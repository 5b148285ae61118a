//! The node model: `tag`, ordered attributes, and content (none, bytes, a string value, or children).

use std::borrow::Cow;

use bytes::Bytes;

use super::jid::Jid;

/// A string that is usually a static dictionary token and only allocated when it is not.
pub type Str = Cow<'static, str>;

/// An attribute value or string content: a plain string or a JID (they encode differently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string (token, packed digits/hex or raw UTF-8 on the wire).
    Str(Str),
    /// A JID (JID_PAIR, AD_JID, FB_JID or INTEROP_JID on the wire).
    Jid(Jid),
}

impl Value {
    /// The string form, borrowed when it already is a string.
    pub fn as_str(&self) -> Cow<'_, str> {
        match self {
            Value::Str(s) => Cow::Borrowed(s),
            Value::Jid(j) => Cow::Owned(j.to_string()),
        }
    }

    /// The JID, parsing a string value if needed.
    pub fn to_jid(&self) -> Option<Jid> {
        match self {
            Value::Jid(j) => Some(j.clone()),
            Value::Str(s) => s.parse().ok(),
        }
    }
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Value {
        Value::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(Cow::Owned(s))
    }
}

impl From<Jid> for Value {
    fn from(j: Jid) -> Value {
        Value::Jid(j)
    }
}

/// What a node carries after its attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Content {
    /// Nothing.
    #[default]
    None,
    /// Binary data (BINARY_8/20/32); never tokenized.
    Bytes(Bytes),
    /// A string value (written like an attribute value).
    Text(Value),
    /// Child nodes (possibly an empty list, which differs from `None` on the wire).
    Children(Vec<Node>),
}

/// One binary XML node. Attribute order is kept as received or built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Element name.
    pub tag: Str,
    /// Attributes in wire order.
    pub attrs: Vec<(Str, Value)>,
    /// Content.
    pub content: Content,
}

impl Node {
    /// A node with no attributes and no content.
    pub fn new(tag: impl Into<Str>) -> Node {
        Node {
            tag: tag.into(),
            attrs: Vec::new(),
            content: Content::None,
        }
    }

    /// Adds an attribute (builder style).
    pub fn attr(mut self, key: impl Into<Str>, value: impl Into<Value>) -> Node {
        self.attrs.push((key.into(), value.into()));
        self
    }

    /// Sets child nodes (builder style).
    pub fn children(mut self, children: Vec<Node>) -> Node {
        self.content = Content::Children(children);
        self
    }

    /// Sets binary content (builder style).
    pub fn bytes(mut self, data: impl Into<Bytes>) -> Node {
        self.content = Content::Bytes(data.into());
        self
    }

    /// Sets string content (builder style).
    pub fn text(mut self, value: impl Into<Value>) -> Node {
        self.content = Content::Text(value.into());
        self
    }

    /// The first attribute named `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The attribute `key` as a string.
    pub fn get_str(&self, key: &str) -> Option<Cow<'_, str>> {
        self.get(key).map(Value::as_str)
    }

    /// The attribute `key` as a JID.
    pub fn get_jid(&self, key: &str) -> Option<Jid> {
        self.get(key).and_then(Value::to_jid)
    }

    /// Child nodes (empty when the content is not a list).
    pub fn child_nodes(&self) -> &[Node] {
        match &self.content {
            Content::Children(c) => c,
            _ => &[],
        }
    }

    /// The first child with `tag`.
    pub fn child(&self, tag: &str) -> Option<&Node> {
        self.child_nodes().iter().find(|n| n.tag == tag)
    }

    /// Follows a path of child tags.
    pub fn child_path(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |n, tag| n.child(tag))
    }

    /// Binary content, if that is what the node carries.
    pub fn content_bytes(&self) -> Option<&Bytes> {
        match &self.content {
            Content::Bytes(b) => Some(b),
            _ => None,
        }
    }
}
