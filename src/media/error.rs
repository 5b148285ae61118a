//! Media errors: one variant per check a caller (or a test) must tell apart. None carries key bytes.

/// Why a media operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The body has at most the 10 MAC bytes (whatsmeow `ErrTooShortFile`).
    #[error("encrypted media too short: {len} bytes")]
    TooShort {
        /// Body length.
        len: u64,
    },
    /// The ciphertext (body minus the MAC) is not a positive multiple of the AES block size.
    #[error("encrypted media ciphertext length {len} is not a positive multiple of 16")]
    BadLength {
        /// Ciphertext length.
        len: u64,
    },
    /// The body is longer than the largest plaintext the caller accepts could encrypt to.
    #[error("encrypted media exceeds {limit} bytes")]
    TooLarge {
        /// The encrypted-length bound that was crossed.
        limit: u64,
    },
    /// SHA-256 of the body differs from the message's fileEncSha256 (whatsmeow
    /// `ErrInvalidMediaEncSHA256`).
    #[error("encrypted media hash mismatch")]
    EncHashMismatch,
    /// The 10-byte HMAC does not verify (whatsmeow `ErrInvalidMediaHMAC`).
    #[error("media MAC mismatch")]
    BadMac,
    /// The MAC verified but the PKCS#7 padding is malformed (a sender bug, not tampering).
    #[error("media padding invalid")]
    BadPadding,
    /// SHA-256 of the plaintext differs from the message's fileSha256 (whatsmeow
    /// `ErrInvalidMediaSHA256`).
    #[error("media plaintext hash mismatch")]
    HashMismatch,
    /// The media-retry ciphertext did not authenticate (wrong key, id or IV, or tampered).
    #[error("media retry: decryption failed")]
    RetryDecrypt,
    /// The media-retry plaintext is not a valid protobuf.
    #[error("media retry: malformed protobuf")]
    RetryMalformed,
    /// The media-retry plaintext names another message than the stanza carrying it.
    #[error("media retry: stanza id mismatch")]
    RetryStanzaMismatch,
    /// The declared mimetype is not one WhatsApp accepts for this media type.
    #[error("mimetype {declared:?} not accepted for {kind}")]
    MimeNotAllowed {
        /// The media type's name.
        kind: &'static str,
        /// The declared mimetype.
        declared: String,
    },
    /// The bytes are of another format than the declared mimetype.
    #[error("declared {declared:?} but the bytes look like {sniffed}")]
    MimeMismatch {
        /// The declared mimetype.
        declared: String,
        /// What the magic bytes say.
        sniffed: &'static str,
    },
    /// A thumbnail could not be made.
    #[error("thumbnail: {0}")]
    Thumbnail(ThumbnailError),
}

/// Why a thumbnail could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThumbnailError {
    /// The input is neither JPEG nor PNG.
    #[error("unsupported image format")]
    Unsupported,
    /// The header declares more pixels than the budget (a decompression bomb, or simply too big).
    #[error("{width}x{height} exceeds the pixel budget")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// The decoder rejected the image.
    #[error("cannot decode image: {0}")]
    Decode(String),
    /// The encoder failed.
    #[error("cannot encode thumbnail: {0}")]
    Encode(String),
}

impl From<ThumbnailError> for MediaError {
    fn from(e: ThumbnailError) -> Self {
        MediaError::Thumbnail(e)
    }
}
