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

/// The file of an (unwrapped) message, if it is a media message.
pub(crate) fn media_ref_of(m: &wa::Message) -> Option<MediaRef> {
    if let Some(i) = &m.image_message {
        return Some(MediaRef {
            kind: Kind::Image,
            media_key: key32(&i.media_key),
            direct_path: text(&i.direct_path),
            url: text(&i.url),
            file_sha256: key32(&i.file_sha256),
            file_enc_sha256: key32(&i.file_enc_sha256),
            file_length: i.file_length,
            mimetype: text(&i.mimetype),
            file_name: None,
            seconds: None,
            width: i.width,
            height: i.height,
        });
    }
    if let Some((v, kind)) = m
        .video_message
        .as_ref()
        .map(|v| (v, Kind::Video))
        .or_else(|| m.ptv_message.as_ref().map(|v| (v, Kind::Ptv)))
    {
        return Some(MediaRef {
            kind,
            media_key: key32(&v.media_key),
            direct_path: text(&v.direct_path),
            url: text(&v.url),
            file_sha256: key32(&v.file_sha256),
            file_enc_sha256: key32(&v.file_enc_sha256),
            file_length: v.file_length,
            mimetype: text(&v.mimetype),
            file_name: None,
            seconds: v.seconds,
            width: v.width,
            height: v.height,
        });
    }
    if let Some(a) = &m.audio_message {
        return Some(MediaRef {
            kind: if a.ptt == Some(true) {
                Kind::Ptt
            } else {
                Kind::Audio
            },
            media_key: key32(&a.media_key),
            direct_path: text(&a.direct_path),
            url: text(&a.url),
            file_sha256: key32(&a.file_sha256),
            file_enc_sha256: key32(&a.file_enc_sha256),
            file_length: a.file_length,
            mimetype: text(&a.mimetype),
            file_name: None,
            seconds: a.seconds,
            width: None,
            height: None,
        });
    }
    if let Some(d) = &m.document_message {
        return Some(MediaRef {
            kind: Kind::Document,
            media_key: key32(&d.media_key),
            direct_path: text(&d.direct_path),
            url: text(&d.url),
            file_sha256: key32(&d.file_sha256),
            file_enc_sha256: key32(&d.file_enc_sha256),
            file_length: d.file_length,
            mimetype: text(&d.mimetype),
            file_name: text(&d.file_name),
            seconds: None,
            width: None,
            height: None,
        });
    }
    if let Some(s) = &m.sticker_message {
        return Some(MediaRef {
            kind: Kind::Sticker,
            media_key: key32(&s.media_key),
            direct_path: text(&s.direct_path),
            url: text(&s.url),
            file_sha256: key32(&s.file_sha256),
            file_enc_sha256: key32(&s.file_enc_sha256),
            file_length: s.file_length,
            mimetype: text(&s.mimetype),
            file_name: None,
            seconds: None,
            width: s.width,
            height: s.height,
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
