//! What a media message says about its file: where it is on WhatsApp's CDN, the key that
//! opens it and the hashes that prove it (CLIENT-FEATURES §2.4). The downloader needs nothing
//! else; the message row keeps it beside the message.

use super::content::Kind;
use crate::proto::wa;

/// The file a media message points at. `Debug` never prints the media key.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaRef {
    /// The message kind the file belongs to (image, video, ptv, audio, ptt, document, sticker).
    pub kind: Kind,
    /// The 32-byte media key (HKDF input for the file's keys).
    pub media_key: Option<[u8; 32]>,
    /// The CDN path (`/v/t62…?…`), host-relative.
    pub direct_path: Option<String>,
    /// The full URL the sender's upload returned (older clients download from it).
    pub url: Option<String>,
    /// SHA-256 of the plaintext file.
    pub file_sha256: Option<[u8; 32]>,
    /// SHA-256 of the encrypted upload (ciphertext ‖ MAC).
    pub file_enc_sha256: Option<[u8; 32]>,
    /// The plaintext length the sender declared.
    pub file_length: Option<u64>,
    /// The declared mimetype.
    pub mimetype: Option<String>,
    /// A document's file name.
    pub file_name: Option<String>,
    /// Audio or video duration.
    pub seconds: Option<u32>,
    /// Image, video or sticker width.
    pub width: Option<u32>,
    /// Image, video or sticker height.
    pub height: Option<u32>,
}

impl std::fmt::Debug for MediaRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaRef")
            .field("kind", &self.kind)
            .field("media_key", &self.media_key.map(|_| ".."))
            .field("direct_path", &self.direct_path.as_ref().map(|_| ".."))
            .field(
                "file_sha256",
                &self.file_sha256.map(|h| crate::util::hex::encode(&h)),
            )
            .field("file_length", &self.file_length)
            .field("mimetype", &self.mimetype)
            .finish_non_exhaustive()
    }
}

impl MediaRef {
    /// Whether it holds what a download needs: key, a place, and both hashes.
    pub fn downloadable(&self) -> bool {
        self.media_key.is_some()
            && (self.direct_path.is_some() || self.url.is_some())
            && self.file_sha256.is_some()
            && self.file_enc_sha256.is_some()
    }
}

fn key32(b: &Option<Vec<u8>>) -> Option<[u8; 32]> {
    b.as_deref().and_then(|b| b.try_into().ok())
}

fn text(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

/// What every media message type carries alike (the proto types share the field names, not a
/// type), the per-type fields left empty.
macro_rules! common {
    ($kind:expr, $m:expr) => {
        MediaRef {
            kind: $kind,
            media_key: key32(&$m.media_key),
            direct_path: text(&$m.direct_path),
            url: text(&$m.url),
            file_sha256: key32(&$m.file_sha256),
            file_enc_sha256: key32(&$m.file_enc_sha256),
            file_length: $m.file_length,
            mimetype: text(&$m.mimetype),
            file_name: None,
            seconds: None,
            width: None,
            height: None,
        }
    };
}

/// The file of an (unwrapped) message, if it is a media message.
pub(crate) fn media_ref_of(m: &wa::Message) -> Option<MediaRef> {
    if let Some(i) = &m.image_message {
        return Some(MediaRef {
            width: i.width,
            height: i.height,
            ..common!(Kind::Image, i)
        });
    }
    if let Some((v, kind)) = m
        .video_message
        .as_ref()
        .map(|v| (v, Kind::Video))
        .or_else(|| m.ptv_message.as_ref().map(|v| (v, Kind::Ptv)))
    {
        return Some(MediaRef {
            seconds: v.seconds,
            width: v.width,
            height: v.height,
            ..common!(kind, v)
        });
    }
    if let Some(a) = &m.audio_message {
        let kind = if a.ptt == Some(true) {
            Kind::Ptt
        } else {
            Kind::Audio
        };
        return Some(MediaRef {
            seconds: a.seconds,
            ..common!(kind, a)
        });
    }
    if let Some(d) = &m.document_message {
        return Some(MediaRef {
            file_name: text(&d.file_name),
            ..common!(Kind::Document, d)
        });
    }
    if let Some(s) = &m.sticker_message {
        return Some(MediaRef {
            width: s.width,
            height: s.height,
            ..common!(Kind::Sticker, s)
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_gives_its_reference_and_debug_hides_the_key() {
        let m = wa::Message {
            document_message: Some(Box::new(wa::DocumentMessage {
                media_key: Some(vec![7; 32]),
                direct_path: Some("/v/t62/x?ccb=1".into()),
                file_sha256: Some(vec![1; 32]),
                file_enc_sha256: Some(vec![2; 32]),
                file_length: Some(5),
                mimetype: Some("application/pdf".into()),
                file_name: Some("a.pdf".into()),
                ..Default::default()
            })),
            ..Default::default()
        };
        let r = media_ref_of(&m).expect("a document");
        assert_eq!(r.kind, Kind::Document);
        assert_eq!(r.media_key, Some([7; 32]));
        assert_eq!(r.file_name.as_deref(), Some("a.pdf"));
        assert!(r.downloadable());
        let shown = format!("{r:?}");
        assert!(!shown.contains("7, 7"), "{shown}");
        assert!(!shown.contains("/v/t62"), "{shown}");
    }

    #[test]
    fn a_short_key_or_missing_hash_is_not_downloadable() {
        let m = wa::Message {
            image_message: Some(Box::new(wa::ImageMessage {
                media_key: Some(vec![7; 31]),
                direct_path: Some("/v/x".into()),
                file_sha256: Some(vec![1; 32]),
                ..Default::default()
            })),
            ..Default::default()
        };
        let r = media_ref_of(&m).unwrap();
        assert_eq!(r.media_key, None);
        assert!(!r.downloadable());
        assert_eq!(media_ref_of(&wa::Message::default()), None);
    }
}
