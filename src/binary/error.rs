//! Errors of the binary node codec. Decoding errors always mean the peer sent malformed bytes.

/// Why bytes are not a valid node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("unexpected end of input at offset {offset}")]
    UnexpectedEof {
        /// Where the missing bytes should have been.
        offset: usize,
    },
    /// A tag byte that cannot start what was expected there.
    #[error("invalid tag byte {tag:#04x} for {context} at offset {offset}")]
    InvalidTag {
        /// The byte.
        tag: u8,
        /// What was being read.
        context: &'static str,
        /// Its offset.
        offset: usize,
    },
    /// A dictionary index with no token.
    #[error("no token at index {index} of dictionary {dict}")]
    InvalidToken {
        /// 255 for the single-byte table, else the double-byte dictionary.
        dict: u8,
        /// The index.
        index: u8,
    },
    /// A packed string held a nibble that means nothing.
    #[error("invalid packed nibble {0:#x}")]
    InvalidNibble(u8),
    /// A list that cannot be a node (size 0, or an empty tag).
    #[error("invalid node at offset {offset}")]
    InvalidNode {
        /// Where the node started.
        offset: usize,
    },
    /// A raw string that is not UTF-8.
    #[error("string at offset {offset} is not UTF-8")]
    InvalidUtf8 {
        /// Where the string started.
        offset: usize,
    },
    /// A JID whose parts are invalid (e.g. an interop JID on another server).
    #[error("invalid JID at offset {offset}")]
    InvalidJid {
        /// Where the JID started.
        offset: usize,
    },
    /// Bytes left after the root node.
    #[error("{0} trailing bytes after the root node")]
    TrailingBytes(usize),
    /// Nesting beyond the limit (protects the stack from crafted input).
    #[error("nodes nested deeper than {0}")]
    TooDeep(usize),
    /// A frame with no flags byte.
    #[error("empty frame")]
    EmptyFrame,
    /// A compressed frame whose zlib stream is corrupt.
    #[error("corrupt zlib stream in compressed frame")]
    Inflate,
    /// A compressed frame that inflates beyond the limit.
    #[error("compressed frame inflates beyond {0} bytes")]
    InflatedTooLarge(usize),
    /// Input longer than a decoder can address.
    #[error("input of more than {0} bytes")]
    InputTooLarge(usize),
    /// More nodes in one frame than any real stanza holds (a decompression bomb of tiny nodes).
    #[error("more than {0} nodes in one frame")]
    TooManyNodes(usize),
    /// More attributes in one frame than any real stanza holds.
    #[error("more than {0} attributes in one frame")]
    TooManyAttrs(usize),
}

/// Why a node cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A JID whose device or agent cannot be expressed in its wire form.
    #[error("JID {0} cannot be encoded (device or agent out of range for its server)")]
    UnencodableJid(String),
    /// More attributes or children than a list can count.
    #[error("list of {0} entries is too long")]
    ListTooLong(usize),
    /// Binary content of 4 GiB or more.
    #[error("binary content of {0} bytes is too long")]
    TooLong(usize),
}
