//! Media through the client handle (CLIENT-FEATURES §2): uploads (encrypted while streamed, the
//! token from `media_conn`, hosts in order, one fresh `media_conn` when the token is refused),
//! downloads (hosts in order, verified while streamed), and the media retry that asks our
//! phone to upload an expired file again. Files are never whole in memory: a source is read
//! twice (once for the hashes the upload URL needs, once as the body), a download goes chunk by
//! chunk into the caller's sink, which keeps it apart until the last check passed.

use std::future::Future;
use std::io;
use std::pin::Pin;

use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::cdn::{Cdn, CdnError};
use super::content::Kind;
use super::media_ref::MediaRef;
use super::messenger::{RetryTarget, SendError};
use super::run::Client;
use crate::media::MediaError;
use crate::media::cipher::{Decryptor, Encryptor, Expect, Verified, encrypted_len};
use crate::media::keys::expand;
use crate::proto::wa;
use crate::stanza::media::MediaRetryAnswer;

/// What the service reads from a file's own bytes (its kind, type, size on screen, thumbnail,
/// length), passed up here because the service knows the media layer only through the client.
pub use crate::media::{
    MediaType, Probe, Probed, accepts, dimensions, is_jpeg, jpeg_thumbnail, ogg_opus_duration,
    sniff,
};

/// A boxed future of the media traits (object-safe).
pub type MediaFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// A file to upload, readable more than once.
pub trait MediaSource: Send + Sync {
    /// Its length in bytes.
    fn len(&self) -> u64;
    /// Whether it is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads it from the start.
    fn open(&self) -> MediaFuture<'_, Pin<Box<dyn AsyncRead + Send>>>;
}

/// Where a download's plaintext goes (kept apart until the caller commits it).
pub trait MediaSink: Send {
    /// Appends decrypted bytes.
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> MediaFuture<'a, ()>;
}

/// What an upload produced: what the media message must carry. `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The media key.
    pub media_key: [u8; 32],
    /// The upload's URL.
    pub url: String,
    /// The host-relative download path.
    pub direct_path: String,
    /// SHA-256 of the plaintext.
    pub file_sha256: [u8; 32],
    /// SHA-256 of the upload body.
    pub file_enc_sha256: [u8; 32],
    /// Plaintext length.
    pub file_length: u64,
    /// When the key was made (unix seconds; `mediaKeyTimestamp`).
    pub media_key_timestamp: i64,
}

impl std::fmt::Debug for Uploaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploaded")
            .field("file_sha256", &crate::util::hex::encode(&self.file_sha256))
            .field("file_length", &self.file_length)
            .finish_non_exhaustive()
    }
}

/// Why a media operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaFailure {
    /// No connection, or the server would not answer `media_conn` or the retry.
    #[error(transparent)]
    Connection(#[from] SendError),
    /// Every CDN host failed; the last error.
    #[error(transparent)]
    Cdn(#[from] CdnError),
    /// The downloaded bytes failed a check (hash, MAC, padding, size).
    #[error(transparent)]
    Verify(#[from] MediaError),
    /// The file is gone from the CDN (404/410): a media retry may bring it back.
    #[error("the file is gone from WhatsApp's servers")]
    Gone,
    /// The message does not name a complete file (key, path or hashes missing).
    #[error("the message names no complete file")]
    NotDownloadable,
    /// The file is larger than allowed.
    #[error("the file exceeds {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: u64,
    },
    /// The file's length is not what its message declared.
    #[error("the file is {actual} bytes, its message declared {declared}")]
    LengthMismatch {
        /// Declared in the message.
        declared: u64,
        /// What verified.
        actual: u64,
    },
    /// Reading the file to upload failed.
    #[error("reading the file: {0}")]
    Source(io::Error),
    /// Writing the downloaded file failed.
    #[error("writing the file: {0}")]
    Sink(io::Error),
    /// The phone answered the media retry without the file (`code`: 2 not on the phone, 3 it
    /// could not decrypt the request, else a general error; whatsapp-rust's reading).
    #[error("the phone could not upload the file again ({0})")]
    RetryRefused(&'static str),
}

impl MediaFailure {
    /// A failure that trying again later cannot mend: the bytes are wrong, the message is
    /// incomplete or the file is too large (a network or connection failure may pass).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            MediaFailure::Verify(_)
                | MediaFailure::NotDownloadable
                | MediaFailure::TooLarge { .. }
                | MediaFailure::LengthMismatch { .. }
                | MediaFailure::RetryRefused(_)
        )
    }
}

/// The key type of a message kind's file (CLIENT-FEATURES §2.2: stickers use the image keys,
/// ptv the video keys, ptt the audio keys).
pub fn media_type_of(kind: Kind) -> Option<MediaType> {
    Some(match kind {
        Kind::Image => MediaType::Image,
        Kind::Video | Kind::Ptv => MediaType::Video,
        Kind::Audio | Kind::Ptt => MediaType::Audio,
        Kind::Document => MediaType::Document,
        Kind::Sticker => MediaType::Sticker,
        _ => return None,
    })
}

/// Bytes read from a source per step.
const CHUNK: usize = 64 * 1024;

/// The encrypted body of `src` under `keys`, as a stream of chunks for the HTTP client.
fn body_stream(
    reader: Pin<Box<dyn AsyncRead + Send>>,
    enc: Encryptor,
) -> impl futures_util::Stream<Item = io::Result<bytes::Bytes>> + Send + 'static {
    futures_util::stream::unfold(
        (reader, Some(enc), vec![0u8; CHUNK]),
        |(mut reader, enc, mut buf)| async move {
            let mut enc = enc?;
            let mut out = Vec::with_capacity(CHUNK + 32);
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) => {
                        enc.finish(&mut out);
                        return Some((Ok(bytes::Bytes::from(out)), (reader, None, buf)));
                    }
                    Ok(n) => {
                        enc.update(&buf[..n], &mut out);
                        if !out.is_empty() {
                            return Some((Ok(bytes::Bytes::from(out)), (reader, Some(enc), buf)));
                        }
                    }
                    Err(e) => return Some((Err(e), (reader, None, buf))),
                }
            }
        },
    )
}

/// What a download needs to find and verify a file (a media message's reference, or a
/// history-sync notification's blob). `Debug` is not derived: it holds the media key.
pub(crate) struct Fetch<'a> {
    /// The key type (HKDF info).
    pub ty: MediaType,
    /// The media key.
    pub key: [u8; 32],
    /// SHA-256 of the plaintext.
    pub file_sha256: [u8; 32],
    /// SHA-256 of the encrypted body, when known.
    pub file_enc_sha256: Option<[u8; 32]>,
    /// The host-relative path.
    pub path: &'a str,
    /// The plaintext length the message declared.
    pub declared: Option<u64>,
}

/// The download core (the media downloader and history sync share it): tries `hosts` in
/// order on network errors and 5xx, 404/410 is [`MediaFailure::Gone`] at once (whatsmeow's
/// rule), verifies while streaming (fileEncSha256, MAC, padding, fileSha256), at most `max`
/// plaintext bytes into `sink`. On any error the sink holds unverified bytes and must be
/// discarded.
pub(crate) async fn fetch_verified(
    cdn: &Cdn,
    hosts: &[String],
    f: &Fetch<'_>,
    max: u64,
    sink: &mut dyn MediaSink,
) -> Result<Verified, MediaFailure> {
    if let Some(declared) = f.declared
        && declared > max
    {
        return Err(MediaFailure::TooLarge { limit: max });
    }
    let keys = expand(&f.key, f.ty);
    let mut last = None;
    for host in hosts {
        let mut dl = match cdn.download(host, f.path).await {
            Ok(d) => d,
            Err(e) if e.is_gone() => return Err(MediaFailure::Gone),
            Err(e @ CdnError::Status(403)) => return Err(e.into()),
            Err(e) => {
                tracing::info!(host, error = %e, "download failed");
                last = Some(e);
                continue;
            }
        };
        // A length the CDN declares beyond what the cap allows is refused before a byte.
        if dl.declared.is_some_and(|d| d > encrypted_len(max)) {
            return Err(MediaFailure::TooLarge { limit: max });
        }
        let mut dec = Decryptor::new(
            &keys,
            Expect {
                file_sha256: f.file_sha256,
                file_enc_sha256: f.file_enc_sha256,
                max_plain: max,
            },
        );
        let mut out = Vec::with_capacity(CHUNK + 32);
        while let Some(chunk) = dl.chunk().await? {
            out.clear();
            dec.update(&chunk, &mut out)?;
            if !out.is_empty() {
                sink.write(&out).await.map_err(MediaFailure::Sink)?;
            }
        }
        out.clear();
        let verified = dec.finish(&mut out)?;
        if !out.is_empty() {
            sink.write(&out).await.map_err(MediaFailure::Sink)?;
        }
        if let Some(declared) = f.declared
            && declared != verified.file_length
        {
            return Err(MediaFailure::LengthMismatch {
                declared,
                actual: verified.file_length,
            });
        }
        return Ok(verified);
    }
    Err(last
        .map(MediaFailure::Cdn)
        .unwrap_or(MediaFailure::Cdn(CdnError::Network("no CDN host".into()))))
}

impl Client {
    fn cdn(&self) -> Result<&Cdn, MediaFailure> {
        if let Some(c) = self.cdn.get() {
            return Ok(c);
        }
        let made = Cdn::new(self.tls.clone())?;
        Ok(self.cdn.get_or_init(|| made))
    }

    /// Encrypts and uploads `src` as `ty` (a fresh media key); what a media message of it
    /// must carry. The source is read twice: the upload URL names the body's hash.
    pub async fn upload_media(
        &self,
        ty: MediaType,
        src: &dyn MediaSource,
    ) -> Result<Uploaded, MediaFailure> {
        let mut media_key = [0u8; 32];
        rand::rng().fill_bytes(&mut media_key);
        let keys = expand(&media_key, ty);
        // First pass: the hashes.
        let mut reader = src.open().await.map_err(MediaFailure::Source)?;
        let mut enc = Encryptor::new(&keys);
        let mut buf = vec![0u8; CHUNK];
        let mut scratch = Vec::with_capacity(CHUNK + 32);
        loop {
            let n = reader.read(&mut buf).await.map_err(MediaFailure::Source)?;
            if n == 0 {
                break;
            }
            scratch.clear();
            enc.update(&buf[..n], &mut scratch);
        }
        scratch.clear();
        let sums = enc.finish(&mut scratch);
        drop(reader);
        if sums.file_length != src.len() {
            return Err(MediaFailure::Source(io::Error::other(
                "the file changed while it was read",
            )));
        }
        let cdn = self.cdn()?.clone();
        let mut last = None;
        for refresh in [false, true] {
            let conn = self.messaging.media_conn(refresh).await?;
            let mut auth_refused = false;
            for host in &conn.hosts {
                let reader = src.open().await.map_err(MediaFailure::Source)?;
                let body = reqwest::Body::wrap_stream(body_stream(reader, Encryptor::new(&keys)));
                match cdn
                    .upload(
                        host,
                        &conn.auth,
                        ty.mms_type(),
                        &sums.file_enc_sha256,
                        sums.enc_length,
                        body,
                    )
                    .await
                {
                    Ok(a) => {
                        return Ok(Uploaded {
                            media_key,
                            url: a.url,
                            direct_path: a.direct_path,
                            file_sha256: sums.file_sha256,
                            file_enc_sha256: sums.file_enc_sha256,
                            file_length: sums.file_length,
                            media_key_timestamp: i64::try_from(crate::util::clock::now_ms() / 1000)
                                .unwrap_or(0),
                        });
                    }
                    Err(e) => {
                        tracing::info!(host, error = %e, "upload failed");
                        auth_refused |= e.is_auth();
                        last = Some(e);
                    }
                }
            }
            // Only a refused token is worth a fresh media_conn (whatsapp-rust's one retry).
            if !auth_refused {
                break;
            }
        }
        Err(last
            .map(MediaFailure::Cdn)
            .unwrap_or(MediaFailure::Cdn(CdnError::Network("no CDN host".into()))))
    }

    /// Downloads the file `r` names into `sink`, verifying as it goes (fileEncSha256, MAC,
    /// padding, fileSha256); at most `max` plaintext bytes. Hosts are tried in order on network
    /// errors and 5xx; 404/410 is [`MediaFailure::Gone`] at once (whatsmeow's rule). On any
    /// error the sink holds unverified bytes and must be discarded.
    pub async fn download_media(
        &self,
        r: &MediaRef,
        max: u64,
        sink: &mut dyn MediaSink,
    ) -> Result<Verified, MediaFailure> {
        let (Some(key), Some(sha), Some(ty)) = (r.media_key, r.file_sha256, media_type_of(r.kind))
        else {
            return Err(MediaFailure::NotDownloadable);
        };
        let path = download_path(r).ok_or(MediaFailure::NotDownloadable)?;
        if let Some(declared) = r.file_length
            && declared > max
        {
            return Err(MediaFailure::TooLarge { limit: max });
        }
        let cdn = self.cdn()?.clone();
        let conn = self.messaging.media_conn(false).await?;
        let fetch = Fetch {
            ty,
            key,
            file_sha256: sha,
            file_enc_sha256: r.file_enc_sha256,
            path: &path,
            declared: r.file_length,
        };
        fetch_verified(&cdn, &conn.hosts, &fetch, max, sink).await
    }

    /// Asks our phone to upload `r`'s file again (its CDN copy expired): the new direct path.
    pub async fn retry_media(
        &self,
        target: RetryTarget,
        r: &MediaRef,
    ) -> Result<String, MediaFailure> {
        let key = r.media_key.ok_or(MediaFailure::NotDownloadable)?;
        let mut iv = [0u8; 12];
        rand::rng().fill_bytes(&mut iv);
        let id = target.id.clone();
        let request = crate::media::retry::encrypt_request(&key, &id, iv);
        let notice = self
            .messaging
            .media_retry(target, request, iv, self.media_retry_wait)
            .await?;
        let (ct, iv) = match notice.answer {
            MediaRetryAnswer::Encrypted { ciphertext, iv } => (ciphertext, iv),
            MediaRetryAnswer::Error(2) => {
                return Err(MediaFailure::RetryRefused("not on the phone"));
            }
            MediaRetryAnswer::Error(3) => {
                return Err(MediaFailure::RetryRefused(
                    "the phone could not read the request",
                ));
            }
            MediaRetryAnswer::Error(_) => return Err(MediaFailure::RetryRefused("general error")),
        };
        let n = crate::media::retry::decrypt_notification(&key, &id, &ct, &iv)?;
        use wa::media_retry_notification::ResultType;
        match n.result.and_then(|r| ResultType::try_from(r).ok()) {
            Some(ResultType::Success) => n
                .direct_path
                .filter(|p| p.starts_with('/'))
                .ok_or(MediaFailure::RetryRefused("no path in the answer")),
            Some(ResultType::NotFound) => Err(MediaFailure::RetryRefused("not on the phone")),
            Some(ResultType::DecryptionError) => Err(MediaFailure::RetryRefused(
                "the phone could not read the request",
            )),
            _ => Err(MediaFailure::RetryRefused("general error")),
        }
    }
}

/// How a file is shown in its message (besides what the upload gives).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MediaMeta {
    /// The message kind: image, video, ptv, audio, ptt, document or sticker.
    pub kind: Option<Kind>,
    /// The file's mimetype.
    pub mimetype: String,
    /// A document's file name.
    pub file_name: Option<String>,
    /// The caption (images, videos, documents).
    pub caption: Option<String>,
    /// Audio or video length.
    pub seconds: Option<u32>,
    /// Image, video or sticker width.
    pub width: Option<u32>,
    /// Image, video or sticker height.
    pub height: Option<u32>,
    /// A small JPEG shown before the file is fetched (images, videos, documents).
    pub thumbnail: Option<Vec<u8>>,
    /// A voice note's waveform (64 samples, 0–100, as Baileys sends).
    pub waveform: Option<Vec<u8>>,
    /// A video played as a GIF.
    pub gif: bool,
    /// An animated sticker.
    pub animated: bool,
}

impl std::fmt::Debug for MediaMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaMeta")
            .field("kind", &self.kind)
            .field("mimetype", &self.mimetype)
            .field("thumbnail", &self.thumbnail.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// The message of an uploaded file (CLIENT-FEATURES §2.4: every media message carries the
/// upload's URL, direct path, key, both hashes, length, mimetype and key timestamp); a
/// document with a caption travels in `documentWithCaptionMessage`, as WhatsApp sends it.
pub fn media_message(meta: &MediaMeta, up: &Uploaded) -> Option<wa::Message> {
    let url = Some(up.url.clone());
    let path = Some(up.direct_path.clone());
    let key = Some(up.media_key.to_vec());
    let sha = Some(up.file_sha256.to_vec());
    let enc = Some(up.file_enc_sha256.to_vec());
    let len = Some(up.file_length);
    let ts = Some(up.media_key_timestamp);
    let mime = Some(meta.mimetype.clone());
    let caption = meta.caption.clone().filter(|c| !c.is_empty());
    let mut m = wa::Message::default();
    match meta.kind? {
        Kind::Image => {
            m.image_message = Some(Box::new(wa::ImageMessage {
                url,
                mimetype: mime,
                caption,
                file_sha256: sha,
                file_length: len,
                height: meta.height,
                width: meta.width,
                media_key: key,
                file_enc_sha256: enc,
                direct_path: path,
                media_key_timestamp: ts,
                jpeg_thumbnail: meta.thumbnail.clone(),
                ..Default::default()
            }))
        }
        k @ (Kind::Video | Kind::Ptv) => {
            let v = Box::new(wa::VideoMessage {
                url,
                mimetype: mime,
                file_sha256: sha,
                file_length: len,
                seconds: meta.seconds,
                media_key: key,
                caption,
                gif_playback: meta.gif.then_some(true),
                height: meta.height,
                width: meta.width,
                file_enc_sha256: enc,
                direct_path: path,
                media_key_timestamp: ts,
                jpeg_thumbnail: meta.thumbnail.clone(),
                ..Default::default()
            });
            if k == Kind::Ptv {
                m.ptv_message = Some(v);
            } else {
                m.video_message = Some(v);
            }
        }
        k @ (Kind::Audio | Kind::Ptt) => {
            m.audio_message = Some(Box::new(wa::AudioMessage {
                url,
                mimetype: mime,
                file_sha256: sha,
                file_length: len,
                seconds: meta.seconds,
                ptt: (k == Kind::Ptt).then_some(true),
                media_key: key,
                file_enc_sha256: enc,
                direct_path: path,
                media_key_timestamp: ts,
                waveform: meta.waveform.clone(),
                ..Default::default()
            }))
        }
        Kind::Document => {
            let has_caption = caption.is_some();
            let d = wa::DocumentMessage {
                url,
                mimetype: mime,
                title: meta.file_name.clone(),
                file_sha256: sha,
                file_length: len,
                media_key: key,
                file_name: meta.file_name.clone(),
                file_enc_sha256: enc,
                direct_path: path,
                media_key_timestamp: ts,
                jpeg_thumbnail: meta.thumbnail.clone(),
                caption,
                ..Default::default()
            };
            if has_caption {
                m.document_with_caption_message = Some(Box::new(wa::FutureProofMessage {
                    message: Some(Box::new(wa::Message {
                        document_message: Some(Box::new(d)),
                        ..Default::default()
                    })),
                }));
            } else {
                m.document_message = Some(Box::new(d));
            }
        }
        Kind::Sticker => {
            m.sticker_message = Some(Box::new(wa::StickerMessage {
                url,
                file_sha256: sha,
                file_enc_sha256: enc,
                media_key: key,
                mimetype: mime,
                height: meta.height,
                width: meta.width,
                direct_path: path,
                file_length: len,
                media_key_timestamp: ts,
                is_animated: meta.animated.then_some(true),
                ..Default::default()
            }))
        }
        _ => return None,
    }
    Some(m)
}

/// The host-relative path of `r`'s file: its direct path, else the path of its URL (the host
/// always comes from `media_conn`, never from a peer's message).
fn download_path(r: &MediaRef) -> Option<String> {
    if let Some(p) = &r.direct_path {
        return p.starts_with('/').then(|| p.clone());
    }
    let url = reqwest::Url::parse(r.url.as_deref()?).ok()?;
    let mut p = url.path().to_owned();
    if let Some(q) = url.query() {
        p.push('?');
        p.push_str(q);
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::messages::Outgoing;

    fn uploaded() -> Uploaded {
        Uploaded {
            media_key: [5; 32],
            url: "https://cdn.example/v/x.enc?ccb=1&mms3=true".into(),
            direct_path: "/v/x.enc?ccb=1".into(),
            file_sha256: [6; 32],
            file_enc_sha256: [7; 32],
            file_length: 1234,
            media_key_timestamp: 1_700_000_000,
        }
    }

    #[test]
    fn a_built_media_message_reads_back_as_what_was_sent() {
        for kind in [
            Kind::Image,
            Kind::Video,
            Kind::Ptv,
            Kind::Audio,
            Kind::Ptt,
            Kind::Document,
            Kind::Sticker,
        ] {
            let meta = MediaMeta {
                kind: Some(kind),
                mimetype: "application/octet-stream".into(),
                file_name: Some("f.bin".into()),
                caption: Some("look".into()),
                seconds: Some(3),
                width: Some(640),
                height: Some(480),
                ..Default::default()
            };
            let m = media_message(&meta, &uploaded()).unwrap();
            let out = Outgoing::message(m).unwrap();
            assert_eq!(out.kind, kind);
            let r = out.media.expect("a file");
            assert_eq!(r.kind, kind);
            assert_eq!(r.media_key, Some([5; 32]));
            assert_eq!(r.direct_path.as_deref(), Some("/v/x.enc?ccb=1"));
            assert_eq!(r.file_sha256, Some([6; 32]));
            assert_eq!(r.file_enc_sha256, Some([7; 32]));
            assert_eq!(r.file_length, Some(1234));
            assert!(r.downloadable());
            // Captions show where the kind has one (a captioned document is wrapped).
            let captioned = matches!(kind, Kind::Image | Kind::Video | Kind::Ptv | Kind::Document);
            assert_eq!(out.text.as_deref(), captioned.then_some("look"), "{kind:?}");
        }
        let none = MediaMeta {
            kind: Some(Kind::Chat),
            ..Default::default()
        };
        assert!(media_message(&none, &uploaded()).is_none());
    }

    #[test]
    fn a_url_only_reference_downloads_its_path_from_our_hosts() {
        let mut r = MediaRef {
            kind: Kind::Image,
            media_key: Some([1; 32]),
            direct_path: None,
            url: Some("https://evil.example:8443/v/t62/abc.enc?ccb=11-4&oh=x".into()),
            file_sha256: Some([2; 32]),
            file_enc_sha256: Some([3; 32]),
            file_length: Some(1),
            mimetype: None,
            file_name: None,
            seconds: None,
            width: None,
            height: None,
        };
        assert_eq!(
            download_path(&r).as_deref(),
            Some("/v/t62/abc.enc?ccb=11-4&oh=x")
        );
        r.direct_path = Some("relative/path".into());
        assert_eq!(download_path(&r), None);
        assert_eq!(media_type_of(Kind::Ptt), Some(MediaType::Audio));
        assert_eq!(media_type_of(Kind::Sticker), Some(MediaType::Sticker));
        assert_eq!(media_type_of(Kind::Chat), None);
    }
}
