//! What a file to send is. The caller's word (its `type`, its mimetype) is checked against the
//! bytes: a file whose bytes say otherwise is refused before it is queued, since a phone decodes
//! by the declared type and would show a broken message. Then what a message shows before its
//! file is fetched is filled in from the bytes: image dimensions, a voice note's length and
//! waveform, an image's thumbnail.

use base64::Engine;

use super::media::{OutboxMedia, StoredFile};
use super::{Service, ServiceError};
use crate::client::content::Kind;
use crate::client::media::{
    MediaType, accepts, dimensions, is_jpeg, jpeg_thumbnail, media_type_of, ogg_opus_duration,
    sniff,
};
use crate::store::blobs::BlobId;

/// The largest thumbnail a caller may give (WhatsApp's are a few KiB; a large one bloats every
/// message that carries it).
pub const MAX_GIVEN_THUMBNAIL: usize = 64 * 1024;

/// A media send as its caller described it, before the bytes are looked at.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaDraft {
    /// The kind: the caller's `type`, else what the declared mimetype implies.
    pub kind: Kind,
    /// Whether the caller named the kind (`type`); if not, the bytes may decide it.
    pub explicit: bool,
    /// A video to play as a GIF.
    pub gif: bool,
    /// The mimetype the caller (or the URL's server) declared, if any.
    pub mimetype: Option<String>,
    /// A document's file name.
    pub file_name: Option<String>,
    /// A JPEG thumbnail the caller gave (videos and documents: none is made for them).
    pub thumbnail: Option<Vec<u8>>,
}

impl std::fmt::Debug for MediaDraft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaDraft")
            .field("kind", &self.kind)
            .field("explicit", &self.explicit)
            .field("gif", &self.gif)
            .field("mimetype", &self.mimetype)
            .field("thumbnail", &self.thumbnail.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// The message kind a mimetype implies (`image/*` image, `video/*` video, `audio/*` audio,
/// anything else a document).
pub fn kind_of_mimetype(mimetype: &str) -> Kind {
    match mimetype.split('/').next().unwrap_or("").trim() {
        "image" => Kind::Image,
        "video" => Kind::Video,
        "audio" => Kind::Audio,
        _ => Kind::Document,
    }
}

/// A mimetype that says nothing about the bytes: a caller's or a server's shrug.
fn says_nothing(mimetype: &str) -> bool {
    let base = mimetype.split(';').next().unwrap_or("").trim();
    base.is_empty()
        || base.eq_ignore_ascii_case("application/octet-stream")
        || base.eq_ignore_ascii_case("binary/octet-stream")
}

impl Service {
    /// Checks a stored file against how it is to be sent and describes it for its message:
    /// the mimetype (declared, else sniffed, else the kind's default), dimensions of images and
    /// stickers, length and waveform of Ogg Opus audio, a thumbnail of JPEG and PNG images.
    /// `415 media_type_not_accepted` when the bytes and the declared kind disagree.
    pub async fn describe_media(
        &self,
        draft: MediaDraft,
        file: StoredFile,
    ) -> Result<OutboxMedia, ServiceError> {
        let sniffed = sniff(&file.probe.head);
        let declared = draft.mimetype.filter(|m| !says_nothing(m));
        let mut kind = draft.kind;
        if !draft.explicit
            && declared.is_none()
            && let Some(s) = sniffed
        {
            kind = kind_of_mimetype(s);
        }
        let ty = media_type_of(kind).ok_or_else(|| {
            ServiceError::MediaRejected(format!("{} is no media kind", kind.as_str()))
        })?;
        // The kind may have changed since the file was capped as the caller's.
        let cap = self.media_cap(kind);
        if file.size > cap {
            return Err(ServiceError::MediaTooLarge(cap));
        }
        let mimetype = declared
            .or_else(|| sniffed.map(str::to_owned))
            .unwrap_or_else(|| ty.default_mimetype().to_owned());
        if matches!(ty, MediaType::Image | MediaType::Sticker) && sniffed.is_none() {
            // Every image format WhatsApp shows has a signature: bytes without one are not an
            // image a phone can draw, whatever the caller says.
            return Err(ServiceError::MediaRejected(format!(
                "the bytes are not a JPEG, PNG or WebP image, so they cannot be sent as {}",
                kind.as_str()
            )));
        }
        accepts(ty, &mimetype, sniffed).map_err(|e| ServiceError::MediaRejected(e.to_string()))?;
        if let Some(t) = &draft.thumbnail
            && (!is_jpeg(t) || t.len() > MAX_GIVEN_THUMBNAIL)
        {
            return Err(ServiceError::MediaRejected(format!(
                "the thumbnail must be a JPEG of at most {MAX_GIVEN_THUMBNAIL} bytes"
            )));
        }
        let (width, height) = match ty {
            MediaType::Image | MediaType::Sticker => dimensions(&file.probe.head).unzip(),
            _ => (None, None),
        };
        let opus = sniffed == Some(sniff::OGG_OPUS);
        let seconds = (opus && ty == MediaType::Audio)
            .then(|| ogg_opus_duration(&file.probe.head, &file.probe.tail))
            .flatten()
            .map(|d| u32::try_from(d.as_millis().div_ceil(1000)).unwrap_or(u32::MAX));
        let waveform = (opus && kind == Kind::Ptt)
            .then(|| file.probe.waveform.clone())
            .flatten();
        let thumbnail = match draft.thumbnail {
            Some(t) => Some(t),
            None if kind == Kind::Image => self.image_thumbnail(&file).await,
            None => None,
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(OutboxMedia {
            kind: kind.as_str().to_owned(),
            mimetype,
            file_name: draft.file_name,
            seconds,
            width,
            height,
            thumbnail: thumbnail.map(|t| b64.encode(t)),
            waveform: waveform.map(|w| b64.encode(w)),
            gif: draft.gif && ty == MediaType::Video,
            sha256: file.sha256,
            size: file.size,
            upload: None,
        })
    }

    /// A 32 px JPEG of a stored JPEG or PNG image, or none when it cannot be made (the message
    /// goes without: a thumbnail is a nicety, not a reason to refuse a send). The image is read
    /// whole, which its kind's cap bounds, and decoded off the async threads.
    async fn image_thumbnail(&self, file: &StoredFile) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        // One at a time in the process: a small file may decode to the pixel budget's worth of
        // memory, which many at once would multiply.
        static THUMBNAILS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
        let _turn = THUMBNAILS.acquire().await.ok()?;
        let blobs = self.blobs.clone()?;
        let id = BlobId::parse(&file.sha256)?;
        let mut opened = blobs.open(id, None).await.ok()??;
        let mut bytes = Vec::with_capacity(usize::try_from(opened.len).ok()?);
        opened.body.read_to_end(&mut bytes).await.ok()?;
        match tokio::task::spawn_blocking(move || jpeg_thumbnail(&bytes)).await {
            Ok(Ok(t)) => Some(t),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "no thumbnail for this image");
                None
            }
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mimetypes_imply_kinds_and_shrugs_say_nothing() {
        assert_eq!(kind_of_mimetype("image/png"), Kind::Image);
        assert_eq!(kind_of_mimetype("video/mp4"), Kind::Video);
        assert_eq!(kind_of_mimetype("audio/ogg; codecs=opus"), Kind::Audio);
        assert_eq!(kind_of_mimetype("application/pdf"), Kind::Document);
        assert_eq!(kind_of_mimetype("nonsense"), Kind::Document);
        assert!(says_nothing("application/octet-stream; x=1"));
        assert!(says_nothing(""));
        assert!(!says_nothing("application/pdf"));
    }
}
