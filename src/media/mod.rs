//! Media (CLIENT-FEATURES §2, PROTOCOL.md §11): key expansion, the streaming AES-CBC + HMAC
//! cipher with WhatsApp's hashes, media-retry ("rmr") crypto, mimetype sniffing and thumbnails.
//! Sans-IO like `signal/`: bytes in, bytes out; it knows no HTTP, no files and no stanzas, so the
//! client and the simulator share it.

pub mod cipher;
pub mod error;
pub mod keys;
pub mod retry;

pub use cipher::{Decryptor, Encrypted, Encryptor, Expect, MAC_LEN, Verified, encrypted_len};
pub use error::{MediaError, ThumbnailError};
pub use keys::{MediaKeys, MediaType, expand};
