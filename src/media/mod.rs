//! Media (CLIENT-FEATURES §2, PROTOCOL.md §11): key expansion, the streaming AES-CBC + HMAC
//! cipher with WhatsApp's hashes, media-retry ("rmr") crypto, mimetype sniffing and thumbnails.
//! Sans-IO like `signal/`: bytes in, bytes out; it knows no HTTP, no files and no stanzas, so the
//! client and the simulator share it.

pub mod cipher;
pub mod error;
pub mod keys;
pub mod probe;
pub mod retry;
pub mod sniff;
pub mod thumb;

pub use cipher::{
    Decryptor, Encrypted, Encryptor, Expect, MAC_LEN, Verified, decrypt, encrypt, encrypted_len,
};
pub use error::{MediaError, ThumbnailError};
pub use keys::{MediaKeys, MediaType, expand};
pub use probe::{Probe, Probed, WAVEFORM_LEN};
pub use retry::{
    decrypt_notification, decrypt_request, encrypt_notification, encrypt_request, retry_key,
};
pub use sniff::{accepts, dimensions, ogg_opus_duration, sniff};
pub use thumb::{is_jpeg, jpeg_thumbnail};
