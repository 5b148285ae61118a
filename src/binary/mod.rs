//! The binary XML node format of WhatsApp's transport (PROTOCOL.md §4): node model, JIDs,
//! token dictionaries, encoder, decoder, packed strings and the flags/zlib frame wrapper.
//! Pure byte mapping: it knows nothing of sockets, Noise, Signal or storage.

mod borrowed;
mod cursor;
mod decode;
mod display;
mod encode;
pub mod error;
mod frame;
mod jid;
mod node;
pub mod pack;
pub mod token;

pub use borrowed::{JidRef, NodeArena, NodeView, PackedRef, TextRef, ValueRef};
pub use decode::{MAX_ATTRS, MAX_DEPTH, MAX_NODES, decode_node};
pub use encode::encode_node;
pub use error::{DecodeError, EncodeError};
pub use frame::{FLAG_COMPRESSED, MAX_INFLATED, decode_frame, encode_frame, unpack_frame};
pub use jid::{Jid, ParseJidError, Server};
pub use node::{Content, Node, Str, Value};

/// Wire tag bytes (PROTOCOL.md §4.3).
pub mod tag {
    /// Empty list, or the empty string.
    pub const LIST_EMPTY: u8 = 0;
    /// Double-byte dictionary 0 (then 1..3 follow).
    pub const DICTIONARY_0: u8 = 236;
    /// Double-byte dictionary 1.
    pub const DICTIONARY_1: u8 = 237;
    /// Double-byte dictionary 2.
    pub const DICTIONARY_2: u8 = 238;
    /// Double-byte dictionary 3.
    pub const DICTIONARY_3: u8 = 239;
    /// Interop JID: user, device u16, integrator u16, server.
    pub const INTEROP_JID: u8 = 245;
    /// Messenger JID: user, device u16, server.
    pub const FB_JID: u8 = 246;
    /// AD JID: domain u8, device u8, user.
    pub const AD_JID: u8 = 247;
    /// List with a u8 size.
    pub const LIST_8: u8 = 248;
    /// List with a u16 size.
    pub const LIST_16: u8 = 249;
    /// JID pair: user (or LIST_EMPTY), server.
    pub const JID_PAIR: u8 = 250;
    /// Packed hex string.
    pub const HEX_8: u8 = 251;
    /// Binary with a u8 length.
    pub const BINARY_8: u8 = 252;
    /// Binary with a 20-bit length.
    pub const BINARY_20: u8 = 253;
    /// Binary with a u32 length.
    pub const BINARY_32: u8 = 254;
    /// Packed nibble string.
    pub const NIBBLE_8: u8 = 255;
}
