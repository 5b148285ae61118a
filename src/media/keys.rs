//! Media key expansion: one 32-byte mediaKey per file, expanded with HKDF-SHA256 under an info
//! string chosen by the media type (whatsmeow `download.go` `getMediaKeys`; Baileys
//! `messages-media.ts` `getMediaKeys`; CLIENT-FEATURES §2.2).

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// What a media blob is, as far as its keys and its upload path are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// ImageMessage.
    Image,
    /// VideoMessage (also gif and ptv).
    Video,
    /// AudioMessage (also ptt voice notes).
    Audio,
    /// DocumentMessage.
    Document,
    /// StickerMessage: image keys and the image upload path.
    Sticker,
    /// History-sync blob.
    History,
    /// App-state (syncd) blob.
    AppState,
    /// Sticker pack.
    StickerPack,
    /// A link preview's uploaded HQ thumbnail.
    LinkThumbnail,
}

impl MediaType {
    /// The five kinds a message can carry, in the order the API lists them.
    pub const MESSAGE_KINDS: [MediaType; 5] = [
        MediaType::Image,
        MediaType::Video,
        MediaType::Audio,
        MediaType::Document,
        MediaType::Sticker,
    ];

    /// The HKDF info string (whatsmeow `download.go` `MediaImage`…). Stickers use the image keys
    /// (Baileys `MEDIA_HKDF_KEY_MAPPING`: `sticker: 'Image'`).
    pub fn hkdf_info(self) -> &'static str {
        match self {
            MediaType::Image | MediaType::Sticker => "WhatsApp Image Keys",
            MediaType::Video => "WhatsApp Video Keys",
            MediaType::Audio => "WhatsApp Audio Keys",
            MediaType::Document => "WhatsApp Document Keys",
            MediaType::History => "WhatsApp History Keys",
            MediaType::AppState => "WhatsApp App State Keys",
            MediaType::StickerPack => "WhatsApp Sticker Pack Keys",
            MediaType::LinkThumbnail => "WhatsApp Link Thumbnail Keys",
        }
    }

    /// The upload path segment, `/mms/<mms-type>/…` (whatsmeow `mediaTypeToMMSType`; stickers go
    /// to `image`: Baileys `MEDIA_PATH_MAP`).
    pub fn mms_type(self) -> &'static str {
        match self {
            MediaType::Image | MediaType::Sticker => "image",
            MediaType::Video => "video",
            MediaType::Audio => "audio",
            MediaType::Document => "document",
            MediaType::History => "md-msg-hist",
            MediaType::AppState => "md-app-state",
            MediaType::StickerPack => "sticker-pack",
            MediaType::LinkThumbnail => "thumbnail-link",
        }
    }

    /// The mimetype a file of this type is sent as when nothing better is known (Baileys'
    /// `MIMETYPE_MAP`, but a document of unknown format is bytes, not a PDF).
    pub fn default_mimetype(self) -> &'static str {
        match self {
            MediaType::Image => "image/jpeg",
            MediaType::Video => "video/mp4",
            MediaType::Audio => super::sniff::OGG_OPUS,
            MediaType::Sticker => "image/webp",
            _ => "application/octet-stream",
        }
    }

    /// A stable lowercase name (the message kinds' names are the API's).
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Image => "image",
            MediaType::Video => "video",
            MediaType::Audio => "audio",
            MediaType::Document => "document",
            MediaType::Sticker => "sticker",
            MediaType::History => "history",
            MediaType::AppState => "app-state",
            MediaType::StickerPack => "sticker-pack",
            MediaType::LinkThumbnail => "link-thumbnail",
        }
    }

    /// Parses one of the five message kinds (`image`, `video`, `audio`, `document`, `sticker`);
    /// the blob types are not something a caller names.
    pub fn parse(s: &str) -> Option<MediaType> {
        MediaType::MESSAGE_KINDS
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// The keys one media file is encrypted under. Zeroized on drop; `Debug` shows no key bytes.
#[derive(Clone)]
pub struct MediaKeys {
    /// AES-CBC IV (HKDF bytes 0..16); derived, never sent.
    pub iv: [u8; 16],
    /// AES-256 key (HKDF bytes 16..48).
    pub cipher_key: Zeroizing<[u8; 32]>,
    /// HMAC-SHA256 key (HKDF bytes 48..80).
    pub mac_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MediaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaKeys { .. }")
    }
}

/// Bytes of HKDF output: iv 16, cipherKey 32, macKey 32, refKey 32 (CLIENT-FEATURES §2.2).
const EXPANDED_LEN: usize = 112;

/// Expands a mediaKey for `ty`: HKDF-SHA256 with no salt, L = 112. The last 32 bytes (refKey) are
/// derived by every client and used by none, so they are dropped here.
pub fn expand(media_key: &[u8; 32], ty: MediaType) -> MediaKeys {
    let mut okm = Zeroizing::new([0u8; EXPANDED_LEN]);
    // 112 bytes is far below HKDF-SHA256's 255 × 32 limit, so `expand` cannot fail.
    let _ = Hkdf::<Sha256>::new(None, media_key).expand(ty.hkdf_info().as_bytes(), &mut okm[..]);
    let mut keys = MediaKeys {
        iv: [0; 16],
        cipher_key: Zeroizing::new([0; 32]),
        mac_key: Zeroizing::new([0; 32]),
    };
    keys.iv.copy_from_slice(&okm[..16]);
    keys.cipher_key.copy_from_slice(&okm[16..48]);
    keys.mac_key.copy_from_slice(&okm[48..80]);
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::hex;

    fn counting_key() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    /// CLIENT-FEATURES Appendix B check values (mediaKey 00 01 … 1f, image keys).
    #[test]
    fn appendix_b_image_keys() {
        let k = expand(&counting_key(), MediaType::Image);
        assert_eq!(hex::encode(&k.iv), "aa6a127218397cbd2383e4ccf7176a79");
        assert_eq!(
            hex::encode(&k.cipher_key[..]),
            "008c9aea9b7c5d81eb56b3f530f87d42dcc92d27b11ad6b5bd66f0560d0d8c46"
        );
        assert_eq!(
            hex::encode(&k.mac_key[..]),
            "91d09ffec108833c1699574c52657923fb6e3e161d9698bc6b3a05fbc508a515"
        );
        // Stickers are images as far as keys go.
        let s = expand(&counting_key(), MediaType::Sticker);
        assert_eq!(s.iv, k.iv);
        assert_eq!(s.cipher_key, k.cipher_key);
    }

    #[test]
    fn types_differ_and_names_round_trip() {
        let a = expand(&counting_key(), MediaType::Audio);
        let v = expand(&counting_key(), MediaType::Video);
        assert_ne!(a.cipher_key, v.cipher_key);
        for t in MediaType::MESSAGE_KINDS {
            assert_eq!(MediaType::parse(t.as_str()), Some(t));
        }
        assert_eq!(MediaType::parse("history"), None);
        assert_eq!(MediaType::Sticker.mms_type(), "image");
        assert_eq!(MediaType::History.mms_type(), "md-msg-hist");
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let k = expand(&counting_key(), MediaType::Image);
        assert_eq!(format!("{k:?}"), "MediaKeys { .. }");
    }
}
