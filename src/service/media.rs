//! Media in the service: files that arrive with messages are fetched into the blob store by one
//! downloader per account (a media retry to the phone when WhatsApp's copy expired), files to
//! send are read from it, and a sweep deletes blobs no row names any more. A file is written
//! to staging and named only once every check passed: no half or unverified file is ever
//! served.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Service, Session};
use base64::Engine;
use tokio::io::AsyncRead;

use crate::binary::Jid;
use crate::client::content::Kind;
use crate::client::media::{
    MediaFailure, MediaFuture, MediaMeta, MediaSink, MediaSource, Uploaded, media_message,
    media_type_of,
};
use crate::client::messages::Outgoing;
use crate::client::messenger::RetryTarget;
use crate::client::{SendError, Sent};
use crate::store::MediaState;
use crate::store::blobs::{BlobError, BlobId, BlobStore, StagedBlob};
use crate::store::media::MediaRow;
use crate::store::outbox::OutboxRow;

/// Largest file of each kind, and what is fetched on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    /// Where blobs are kept (`<data dir>/blobs`); None: no media store (files are neither
    /// fetched nor sent).
    pub blob_dir: Option<std::path::PathBuf>,
    /// Fetch arriving files without being asked (`WA_GATEWAY_MEDIA_AUTO_DOWNLOAD`, on).
    pub auto_download: bool,
    /// The largest file fetched without being asked (`WA_GATEWAY_MEDIA_AUTO_DOWNLOAD_MAX_BYTES`).
    pub auto_max: u64,
    /// Largest image, audio, video, sticker and document (`WA_GATEWAY_MEDIA_MAX_<KIND>_BYTES`).
    pub caps: MediaCaps,
    /// Where this service is reached from outside (`WA_GATEWAY_PUBLIC_URL`): webhooks then carry
    /// signed download links a receiver without a token can use; None: the API path.
    pub public_url: Option<String>,
    /// How long a signed link works (`WA_GATEWAY_MEDIA_LINK_TTL_S`, default 24 h).
    pub link_ttl: Duration,
    /// Whether a send's `media.url` may reach non-public addresses
    /// (`WA_GATEWAY_MEDIA_URL_ALLOW_PRIVATE`, default off).
    pub url_allow_private: bool,
}

/// The largest file of each kind, sent or received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaCaps {
    /// Photos.
    pub image: u64,
    /// Voice notes and audio files.
    pub audio: u64,
    /// Videos (and GIFs, round videos).
    pub video: u64,
    /// Stickers.
    pub sticker: u64,
    /// Documents.
    pub document: u64,
}

const MIB: u64 = 1024 * 1024;

impl Default for MediaCaps {
    /// WhatsApp's published limits as clients apply them: 16 MiB for photos and audio, 64 MiB
    /// for video as media, 1 MiB for stickers, 2 GiB for documents (no source in
    /// ../shared states them; they are settings).
    fn default() -> MediaCaps {
        MediaCaps {
            image: 16 * MIB,
            audio: 16 * MIB,
            video: 64 * MIB,
            sticker: MIB,
            document: 2048 * MIB,
        }
    }
}

impl MediaCaps {
    /// The cap of a message kind's file.
    pub fn of(&self, kind: crate::client::content::Kind) -> u64 {
        use crate::client::content::Kind;
        match kind {
            Kind::Image => self.image,
            Kind::Audio | Kind::Ptt => self.audio,
            Kind::Video | Kind::Ptv => self.video,
            Kind::Sticker => self.sticker,
            _ => self.document,
        }
    }
}

impl Default for MediaSettings {
    fn default() -> MediaSettings {
        MediaSettings {
            blob_dir: None,
            auto_download: true,
            auto_max: 64 * MIB,
            caps: MediaCaps::default(),
            public_url: None,
            link_ttl: Duration::from_secs(24 * 3600),
            url_allow_private: false,
        }
    }
}

/// Download attempts before a file that keeps failing for reasons that may pass is given up.
const MAX_ATTEMPTS: u32 = 5;
/// Rows a downloader pass reads at once.
const PAGE: u32 = 50;
/// Blobs younger than this are never swept: a file being sent is staged and named before its
/// outbox row names it.
pub const SWEEP_GRACE: Duration = Duration::from_secs(3600);

/// A staged blob as the client's download sink.
pub(crate) struct BlobSink(pub(crate) Box<dyn StagedBlob>);

impl MediaSink for BlobSink {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> MediaFuture<'a, ()> {
        Box::pin(async move { self.0.write(chunk).await.map_err(blob_io) })
    }
}

fn blob_io(e: BlobError) -> io::Error {
    match e {
        BlobError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// How one fetch ended.
#[derive(Debug)]
pub(super) enum Fetched {
    /// Stored (or already was).
    Stored,
    /// Failed for good, or skipped: the row says why.
    Settled,
    /// Failed for a reason that may pass: tried again later.
    Later,
}

impl Service {
    /// Fetches the file of `row` into the blob store through `session`'s client: a blob of that
    /// content already kept is reused; a file WhatsApp no longer has is asked of our phone
    /// once (media retry) and fetched from the path it gives. `asked` fetches even what the
    /// automatic download skips.
    pub(super) async fn fetch_media(
        &self,
        session: &Session,
        row: &MediaRow,
        asked: bool,
    ) -> Fetched {
        let flight = self.media_flights.hold(row.message_pk);
        let _one = flight.lock().await;
        // Another fetch of this file may have settled it while this one waited.
        let row = match self.store.media_at(row.message_pk).await {
            Ok(Some(now)) => now,
            Ok(None) => return Fetched::Settled,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a file's state");
                return Fetched::Later;
            }
        };
        if row.state == MediaState::Failed {
            // Settled meanwhile (revoked, or another fetch gave up on it).
            return Fetched::Settled;
        }
        if row.state == MediaState::Stored
            && let (Some(blobs), Some(sha)) = (&self.blobs, row.reference.file_sha256)
            && let Ok(Some(_)) = blobs.len(BlobId(sha)).await
        {
            return Fetched::Stored;
        }
        self.fetch_media_once(session, &row, asked).await
    }

    async fn fetch_media_once(&self, session: &Session, row: &MediaRow, asked: bool) -> Fetched {
        let Some(blobs) = self.blobs.clone() else {
            return Fetched::Settled;
        };
        let r = &row.reference;
        let cap = self.media.caps.of(r.kind);
        let auto_cap = if asked {
            cap
        } else {
            cap.min(self.media.auto_max)
        };
        let settle = |state: MediaState, why: Option<String>| async move {
            if let Err(e) = self
                .store
                .set_media_state(row.message_pk, state, why.as_deref(), true)
                .await
            {
                tracing::warn!(error = %e, "cannot record a file's state");
            }
        };
        // A file is reused without a download only when this account already holds it (its own
        // send, or a copy it verified): a hash a peer merely claims opens nobody else's file.
        if let Some(sha) = r.file_sha256
            && self
                .store
                .account_holds_blob(row.account, &sha)
                .await
                .unwrap_or(false)
            && let Ok(Some(_)) = blobs.len(BlobId(sha)).await
        {
            settle(MediaState::Stored, None).await;
            return Fetched::Stored;
        }
        if !asked && !self.media.auto_download {
            settle(
                MediaState::Skipped,
                Some("automatic download is off".into()),
            )
            .await;
            return Fetched::Settled;
        }
        if r.file_length.is_some_and(|l| l > auto_cap) {
            let why = format!("the file is larger than {auto_cap} bytes");
            let state = if asked || r.file_length.is_some_and(|l| l > cap) {
                MediaState::Failed
            } else {
                MediaState::Skipped
            };
            settle(state, Some(why)).await;
            return Fetched::Settled;
        }
        let mut reference = r.clone();
        let mut retried = false;
        loop {
            let staged = match blobs.stage(auto_cap).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot stage a download");
                    return Fetched::Later;
                }
            };
            let mut sink = BlobSink(staged);
            let outcome = session
                .client
                .download_media(&reference, auto_cap, &mut sink)
                .await;
            match outcome {
                Ok(_) => {
                    // Committed under the hash of what was written, which the decryptor has
                    // just proved is the message's fileSha256.
                    return match sink.0.commit().await {
                        Ok(_) => {
                            settle(MediaState::Stored, None).await;
                            Fetched::Stored
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot keep a downloaded file");
                            Fetched::Later
                        }
                    };
                }
                // The staged bytes go with `sink`.
                Err(MediaFailure::Gone) if !retried => {
                    retried = true;
                    let target = RetryTarget {
                        id: row.message_id.clone(),
                        chat: match row.chat.parse() {
                            Ok(c) => c,
                            Err(_) => return Fetched::Settled,
                        },
                        from_me: row.from_me,
                        participant: row.sender.parse().ok(),
                    };
                    match session.client.retry_media(target, &reference).await {
                        Ok(path) => {
                            if let Err(e) = self.store.set_media_path(row.message_pk, &path).await {
                                tracing::warn!(error = %e, "cannot record a file's new path");
                            }
                            reference.direct_path = Some(path);
                            continue;
                        }
                        Err(e) if e.is_permanent() => {
                            settle(MediaState::Failed, Some(e.to_string())).await;
                            return Fetched::Settled;
                        }
                        Err(e) => return self.later(row, &e).await,
                    }
                }
                Err(MediaFailure::Gone) => {
                    settle(
                        MediaState::Failed,
                        Some("the file is gone from WhatsApp's servers and the phone".into()),
                    )
                    .await;
                    return Fetched::Settled;
                }
                Err(e) if e.is_permanent() => {
                    settle(MediaState::Failed, Some(e.to_string())).await;
                    return Fetched::Settled;
                }
                Err(e) => return self.later(row, &e).await,
            }
        }
    }

    async fn later(&self, row: &MediaRow, e: &MediaFailure) -> Fetched {
        let last = row.attempts + 1 >= MAX_ATTEMPTS;
        let state = if last {
            MediaState::Failed
        } else {
            MediaState::Pending
        };
        tracing::info!(error = %e, attempts = row.attempts + 1, "download failed");
        if let Err(e) = self
            .store
            .set_media_state(row.message_pk, state, Some(&e.to_string()), true)
            .await
        {
            tracing::warn!(error = %e, "cannot record a file's state");
        }
        if last {
            Fetched::Settled
        } else {
            Fetched::Later
        }
    }

    /// One account's downloader: fetches pending files in order while its session is current
    /// and connected; woken by arriving messages, else it looks again after a while.
    pub(super) async fn fetch_pending(self: Arc<Self>, session: Arc<Session>) {
        if self.blobs.is_none() {
            return;
        }
        let wake = self.media_wakers.hold(session.account);
        loop {
            let current = self
                .session(session.account)
                .is_some_and(|s| Arc::ptr_eq(&s, &session));
            if !current || self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let mut after = 0;
            let mut backlog = false;
            let connected = session.client.state() == crate::client::ConnState::Connected;
            if connected {
                loop {
                    let rows = match self.store.pending_media(session.account, after, PAGE).await {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read files to fetch");
                            break;
                        }
                    };
                    let full = rows.len() as u32 >= PAGE;
                    for row in &rows {
                        after = row.message_pk;
                        if let Fetched::Later = self.fetch_media(&session, row, false).await {
                            backlog = true;
                        }
                    }
                    if !full {
                        break;
                    }
                }
            }
            let pause = if !connected {
                Duration::from_secs(2)
            } else if backlog {
                Duration::from_secs(30)
            } else {
                Duration::from_secs(300)
            };
            let _ = tokio::time::timeout(pause, wake.notified()).await;
        }
    }

    /// Deletes blobs no row names and nothing wrote for `grace` (a younger one may be a
    /// send's whose row is not written yet). Returns how many went.
    pub async fn sweep_blobs(&self, grace: Duration) -> Result<u64, super::ServiceError> {
        let Some(blobs) = self.blobs.clone() else {
            return Ok(0);
        };
        let before = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut after = None;
        let mut deleted = 0;
        loop {
            let page = blobs
                .list(after, 500)
                .await
                .map_err(|e| super::ServiceError::Blob(e.to_string()))?;
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            for (id, written) in &page {
                if *written > before {
                    continue;
                }
                if !self.store.blob_in_use(&id.0).await?
                    && blobs
                        .delete_if_idle(*id, before)
                        .await
                        .map_err(|e| super::ServiceError::Blob(e.to_string()))?
                {
                    deleted += 1;
                }
            }
            if page.len() < 500 {
                break;
            }
        }
        Ok(deleted)
    }
}

/// A stored blob as the client's upload source.
struct BlobSource {
    blobs: Arc<dyn BlobStore>,
    id: BlobId,
    len: u64,
}

impl MediaSource for BlobSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn open(&self) -> MediaFuture<'_, std::pin::Pin<Box<dyn AsyncRead + Send>>> {
        Box::pin(async move {
            match self.blobs.open(self.id, None).await.map_err(blob_io)? {
                Some(r) => Ok(r.body),
                None => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "the file to send is gone from the media store",
                )),
            }
        })
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A media send as its outbox row keeps it (JSON): the file (a blob), how it is shown, and
/// once uploaded what the upload gave, so a restart sends that instead of uploading again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxMedia {
    /// The message kind (`image`, `video`, `ptv`, `audio`, `ptt`, `document`, `sticker`).
    pub kind: String,
    /// The file's mimetype.
    pub mimetype: String,
    /// A document's file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Audio or video length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    /// Width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// JPEG thumbnail, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
    /// Voice-note waveform, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waveform: Option<String>,
    /// A video played as a GIF.
    #[serde(default)]
    pub gif: bool,
    /// The blob: SHA-256 of the file, hex.
    pub sha256: String,
    /// The file's length.
    pub size: u64,
    /// What the upload gave, once uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<OutboxUpload>,
}

/// An upload's result as an outbox row keeps it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxUpload {
    /// The media key, base64.
    pub media_key: String,
    /// The upload's URL.
    pub url: String,
    /// The download path.
    pub direct_path: String,
    /// SHA-256 of the upload body, hex.
    pub enc_sha256: String,
    /// When the key was made (unix seconds).
    pub media_key_timestamp: i64,
}

impl std::fmt::Debug for OutboxUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxUpload").finish_non_exhaustive()
    }
}

/// Why a media send did not go (yet).
#[derive(Debug)]
pub(super) enum MediaSendError {
    /// Sending the message failed, as a text's would.
    Send(SendError),
    /// The file: uploading it or reading it back.
    Media(MediaFailure),
    /// The row's record of the file cannot be read: no later attempt could read it either.
    Unreadable(String),
}

impl OutboxMedia {
    fn blob(&self) -> Option<BlobId> {
        BlobId::parse(&self.sha256)
    }

    fn meta(&self, caption: &str) -> MediaMeta {
        MediaMeta {
            kind: Kind::parse(&self.kind),
            mimetype: self.mimetype.clone(),
            file_name: self.file_name.clone(),
            caption: Some(caption.to_owned()).filter(|c| !c.is_empty()),
            seconds: self.seconds,
            width: self.width,
            height: self.height,
            thumbnail: self.thumbnail.as_deref().and_then(|t| b64().decode(t).ok()),
            waveform: self.waveform.as_deref().and_then(|t| b64().decode(t).ok()),
            gif: self.gif,
            animated: false,
        }
    }

    fn uploaded(&self) -> Option<Uploaded> {
        let u = self.upload.as_ref()?;
        Some(Uploaded {
            media_key: b64().decode(&u.media_key).ok()?.try_into().ok()?,
            url: u.url.clone(),
            direct_path: u.direct_path.clone(),
            file_sha256: self.blob()?.0,
            file_enc_sha256: crate::util::hex::decode(&u.enc_sha256)?.try_into().ok()?,
            file_length: self.size,
            media_key_timestamp: u.media_key_timestamp,
        })
    }
}

impl Service {
    /// Sends a queued media row: uploads its file unless an earlier attempt did (the upload is
    /// written to the row before the message goes), then sends the message with the row's id.
    pub(super) async fn send_media_row(
        &self,
        session: &Session,
        row: &OutboxRow,
        to: &Jid,
        json: &str,
    ) -> Result<Sent, MediaSendError> {
        let bad = |why: &str| {
            MediaSendError::Media(MediaFailure::Source(io::Error::other(why.to_owned())))
        };
        let unreadable = |why: String| {
            MediaSendError::Unreadable(format!(
                "the send's stored file record is unreadable: {why}"
            ))
        };
        let mut media: OutboxMedia =
            serde_json::from_str(json).map_err(|e| unreadable(e.to_string()))?;
        let kind = Kind::parse(&media.kind)
            .ok_or_else(|| unreadable(format!("unknown media kind {:?}", media.kind)))?;
        let ty = media_type_of(kind)
            .ok_or_else(|| unreadable(format!("{:?} is not a media kind", media.kind)))?;
        let up = match media.uploaded() {
            Some(u) => u,
            None => {
                let blobs = self
                    .blobs
                    .clone()
                    .ok_or_else(|| bad("media is off (no media store)"))?;
                let id = media.blob().ok_or_else(|| bad("unreadable file id"))?;
                let src = BlobSource {
                    blobs,
                    id,
                    len: media.size,
                };
                let up = session
                    .client
                    .upload_media(ty, &src)
                    .await
                    .map_err(MediaSendError::Media)?;
                if up.file_sha256 != id.0 {
                    return Err(bad("the stored file does not match its name"));
                }
                media.upload = Some(OutboxUpload {
                    media_key: b64().encode(up.media_key),
                    url: up.url.clone(),
                    direct_path: up.direct_path.clone(),
                    enc_sha256: crate::util::hex::encode(&up.file_enc_sha256),
                    media_key_timestamp: up.media_key_timestamp,
                });
                let json = serde_json::to_string(&media).map_err(|_| bad("unwritable"))?;
                if let Err(e) = self.store.set_send_media(row.pk, &json).await {
                    tracing::warn!(error = %e, "cannot keep an upload's result");
                }
                up
            }
        };
        let message =
            media_message(&media.meta(&row.body), &up).ok_or_else(|| bad("not a media kind"))?;
        let out = Outgoing::message(message).ok_or_else(|| bad("not a message"))?;
        session
            .client
            .send_message(to, out, Some(&row.message_id))
            .await
            .map_err(MediaSendError::Send)
    }
}

/// A file being received from an API caller into the media store.
pub struct MediaWriter {
    staged: Box<dyn StagedBlob>,
    cap: u64,
    probe: crate::client::media::Probe,
}

impl std::fmt::Debug for MediaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaWriter")
            .field("len", &self.staged.len())
            .finish()
    }
}

/// A file kept: its name (SHA-256, hex), length, and what was learnt as it streamed past (its
/// first and last bytes, a voice note's waveform) so it is described without reading it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// SHA-256 of the bytes, hex (the blob's name, the message's fileSha256).
    pub sha256: String,
    /// Length in bytes.
    pub size: u64,
    /// Its ends and waveform.
    pub probe: crate::client::media::Probed,
}

impl MediaWriter {
    /// Appends bytes; past the cap the write fails and nothing is kept.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), super::ServiceError> {
        self.staged.write(chunk).await.map_err(|e| match e {
            BlobError::TooLarge(_) => super::ServiceError::MediaTooLarge(self.cap),
            other => super::ServiceError::Blob(other.to_string()),
        })?;
        self.probe.update(chunk);
        Ok(())
    }

    /// Keeps the file under its name. An empty file is refused (WhatsApp sends none).
    pub async fn finish(self) -> Result<StoredFile, super::ServiceError> {
        if self.staged.is_empty() {
            return Err(super::ServiceError::MediaEmpty);
        }
        let (id, size) = self
            .staged
            .commit()
            .await
            .map_err(|e| super::ServiceError::Blob(e.to_string()))?;
        Ok(StoredFile {
            sha256: id.hex(),
            size,
            probe: self.probe.finish(),
        })
    }
}

/// Whether opening a file not stored yet fetches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetch {
    /// Fetch it now (a caller with a token asks).
    IfMissing,
    /// Give only what is stored (a signed link: whoever holds one starts no download).
    StoredOnly,
}

/// A stored file opened for an API answer.
pub struct MediaFile {
    /// SHA-256 of the whole file, hex (its ETag).
    pub sha256: String,
    /// The whole file's length.
    pub len: u64,
    /// The mimetype its message declared.
    pub mimetype: Option<String>,
    /// A document's file name.
    pub file_name: Option<String>,
    /// The bytes asked for (the range, or all).
    pub body: std::pin::Pin<Box<dyn AsyncRead + Send>>,
}

impl std::fmt::Debug for MediaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaFile")
            .field("sha256", &self.sha256)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Starts receiving a file of `kind` (its cap applies) into the media store.
    pub async fn begin_media(&self, kind: Kind) -> Result<MediaWriter, super::ServiceError> {
        let blobs = self.blobs.clone().ok_or(super::ServiceError::MediaOff)?;
        let cap = self.media.caps.of(kind);
        let staged = blobs
            .stage(cap)
            .await
            .map_err(|e| super::ServiceError::Blob(e.to_string()))?;
        Ok(MediaWriter {
            staged,
            cap,
            probe: crate::client::media::Probe::new(),
        })
    }

    /// The largest file of `kind`.
    pub fn media_cap(&self, kind: Kind) -> u64 {
        self.media.caps.of(kind)
    }

    /// Opens the file of message `message_id` of (subaccount, agent), whole or the byte range
    /// `start..end`: a file not fetched yet (skipped, or waiting) is fetched now when the
    /// account is connected. 404 `media_not_available` when there is none to give, 409
    /// `media_error` when it could not be had.
    pub async fn open_media(
        self: &Arc<Self>,
        subaccount: &str,
        agent: &str,
        message_id: &str,
        range: Option<(u64, u64)>,
    ) -> Result<MediaFile, super::ServiceError> {
        let Some(conn) = self.store.connection(subaccount, agent).await? else {
            return Err(super::ServiceError::NotFound);
        };
        self.open_account_media(conn.account, message_id, range, Fetch::IfMissing)
            .await
    }

    /// The LID chat a serialized id's phone-number chat is kept under, if known: a send's id
    /// names the chat as it was asked for, and the row may be kept under the contact's LID
    /// since.
    async fn lid_alias(
        &self,
        account: crate::store::AccountId,
        message_id: &str,
    ) -> Option<String> {
        use crate::binary::Server;
        use crate::client::CredsStore;
        let (_, chat, _) = serialized_parts(message_id)?;
        let pn = chat.parse::<Jid>().ok()?;
        if !matches!(pn.server, Server::User | Server::LegacyUser) {
            return None;
        }
        let lid = self.store.creds(account).lid_for(&pn.user).await.ok()??;
        Some(Jid::new(lid, Server::Lid).to_string())
    }

    async fn open_account_media(
        self: &Arc<Self>,
        account: crate::store::AccountId,
        message_id: &str,
        range: Option<(u64, u64)>,
        fetch: Fetch,
    ) -> Result<MediaFile, super::ServiceError> {
        use super::ServiceError as E;
        let blobs = self.blobs.clone().ok_or(E::MediaOff)?;
        let rows = self.store.media_of(account, bare_id(message_id)).await?;
        let lid = self.lid_alias(account, message_id).await;
        let Some(mut row) = pick_message(rows, message_id, lid.as_deref()) else {
            return Err(E::MediaNotAvailable("the message has no file".into()));
        };
        let stored = |row: &MediaRow| {
            (row.state == MediaState::Stored)
                .then_some(row.reference.file_sha256)
                .flatten()
        };
        let mut sha = stored(&row);
        // Named stored but gone (swept while a new row came to name it): fetched again.
        if let Some(h) = sha
            && blobs.len(BlobId(h)).await.ok().flatten().is_none()
        {
            sha = None;
            row.state = MediaState::Pending;
        }
        if sha.is_none() {
            match row.state {
                _ if fetch == Fetch::StoredOnly => {
                    return Err(E::MediaNotAvailable(
                        "the file is not stored (yet); a link gives only stored files".into(),
                    ));
                }
                MediaState::Failed => {
                    return Err(E::MediaError(
                        row.error.clone().unwrap_or_else(|| "failed".into()),
                    ));
                }
                _ => {
                    let session = self
                        .session(account)
                        .filter(|s| s.client.state() == crate::client::ConnState::Connected)
                        .ok_or_else(|| {
                            E::MediaNotAvailable(
                                "the file is not fetched yet and the account is not connected"
                                    .into(),
                            )
                        })?;
                    // Its own task: a caller that gives up (or times out) mid-download does not
                    // cut the fetch, which would start over on the next ask and never count.
                    let (svc, asked) = (self.clone(), row.clone());
                    let _ = tokio::spawn(async move {
                        svc.fetch_media(&session, &asked, true).await;
                    })
                    .await;
                    let again = self
                        .store
                        .media_at(row.message_pk)
                        .await?
                        .ok_or_else(|| E::MediaNotAvailable("the message is gone".into()))?;
                    match again.state {
                        MediaState::Stored => sha = again.reference.file_sha256,
                        MediaState::Failed => {
                            return Err(E::MediaError(
                                again.error.unwrap_or_else(|| "failed".into()),
                            ));
                        }
                        _ => {
                            return Err(E::MediaNotAvailable(
                                again
                                    .error
                                    .unwrap_or_else(|| "the file could not be fetched yet".into()),
                            ));
                        }
                    }
                }
            }
        }
        let id = BlobId(sha.ok_or_else(|| E::MediaNotAvailable("no file".into()))?);
        let opened = blobs.open(id, range).await.map_err(|e| match e {
            BlobError::BadRange => E::BadRange,
            other => E::Blob(other.to_string()),
        })?;
        let opened = opened.ok_or_else(|| E::MediaNotAvailable("the file is gone".into()))?;
        Ok(MediaFile {
            sha256: id.hex(),
            len: opened.len,
            mimetype: row.reference.mimetype.clone(),
            file_name: row.reference.file_name.clone(),
            body: opened.body,
        })
    }
}

impl MediaWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.staged.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }
}

impl Service {
    /// Fetches `url` into the media store as a file of `kind` (its cap applies): public
    /// addresses only unless `WA_GATEWAY_MEDIA_URL_ALLOW_PRIVATE`, no redirects, no proxy.
    /// Returns the file and the `Content-Type` the server gave.
    pub async fn fetch_media_url(
        &self,
        kind: Kind,
        url: &str,
    ) -> Result<(StoredFile, Option<String>), super::ServiceError> {
        use super::ServiceError as E;
        let parsed = reqwest::Url::parse(url).map_err(|_| E::MediaUrl("not a URL".into()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(E::MediaUrl("only http and https URLs are fetched".into()));
        }
        if !self.media.url_allow_private
            && let Some(ip) = super::egress::refused_literal(url)
        {
            return Err(E::MediaUrl(format!(
                "it points at {ip}, an address the server may not reach"
            )));
        }
        let mut w = self.begin_media(kind).await?;
        let cap = w.cap;
        let resp = self
            .media_http
            .get(parsed)
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .map_err(|e| {
                if super::egress::is_not_allowed(&e) {
                    E::MediaUrl("its host resolves to an address the server may not reach".into())
                } else {
                    E::MediaUrl(format!("fetching it failed: {}", e.without_url()))
                }
            })?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(E::MediaUrl(
                "it redirects; redirects are not followed".into(),
            ));
        }
        if !status.is_success() {
            return Err(E::MediaUrl(format!("it answered HTTP {}", status.as_u16())));
        }
        if resp.content_length().is_some_and(|l| l > cap) {
            return Err(E::MediaTooLarge(cap));
        }
        let mime = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.to_owned());
        let mut resp = resp;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| E::MediaUrl(format!("fetching it failed: {}", e.without_url())))?
        {
            w.write(&chunk).await?;
        }
        Ok((w.finish().await?, mime))
    }
}

/// The MAC length of a signed link (128 bits).
const LINK_MAC: usize = 16;

/// The MAC of a link to message `id` of the account with store id `account` made at `created`
/// (unix seconds), good until `expires`. The id alone is not the account: SQLite may give a
/// deleted account's id to the next one made, and a link must not open that one's files.
fn link_mac(key: &[u8; 32], account: i64, created: i64, expires: i64, id: &str) -> [u8; LINK_MAC] {
    use hmac::Mac;
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("media-link\0{account}\0{created}\0{expires}\0{id}").as_bytes());
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; LINK_MAC];
    out.copy_from_slice(&full[..LINK_MAC]);
    out
}

/// A link's fields, read from its token (`account.created.expires.id.mac`, the last two
/// base64url); None when it is not one.
fn link_parts(token: &str) -> Option<(i64, i64, i64, String, Vec<u8>)> {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (Some(a), Some(c), Some(e), Some(i), Some(m), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let id = String::from_utf8(b.decode(i).ok()?).ok()?;
    Some((
        a.parse().ok()?,
        c.parse().ok()?,
        e.parse().ok()?,
        id,
        b.decode(m).ok()?,
    ))
}

/// A signed link opened: the file, and until when (unix seconds) the link holds.
#[derive(Debug)]
pub struct LinkedFile {
    /// The file.
    pub file: MediaFile,
    /// When the link expires (unix seconds).
    pub expires: i64,
}

impl Service {
    /// The key that signs media links, read from the store once.
    async fn link_key(&self) -> Result<&[u8; 32], super::ServiceError> {
        let key = self
            .media_link_key
            .get_or_try_init(|| self.store.media_link_key())
            .await?;
        Ok(key)
    }

    /// Where a message's file is downloaded: with `WA_GATEWAY_PUBLIC_URL`, a signed link that
    /// expires (`/api/media/<token>`, no token needed: for webhook receivers); else the API
    /// path, which takes the caller's JWT.
    pub async fn media_link(
        &self,
        account: crate::store::AccountId,
        message_id: &str,
    ) -> Option<String> {
        let (sub, agent) = self.store.account_names(account).await.ok()??;
        if self.media.public_url.is_none() {
            return Some(format!(
                "/api/whatsapp/{sub}/{agent}/messages/{message_id}/media"
            ));
        }
        let expires = super::now_ms() / 1000
            + i64::try_from(self.media.link_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        self.signed_link(account, message_id, expires).await
    }

    /// A signed link to message `message_id` of (subaccount, agent) that expires at `expires`
    /// (unix seconds); None without `WA_GATEWAY_PUBLIC_URL` or such an agent.
    pub async fn media_link_until(
        &self,
        subaccount: &str,
        agent: &str,
        message_id: &str,
        expires: i64,
    ) -> Option<String> {
        let conn = self.store.connection(subaccount, agent).await.ok()??;
        self.signed_link(conn.account, message_id, expires).await
    }

    async fn signed_link(
        &self,
        account: crate::store::AccountId,
        message_id: &str,
        expires: i64,
    ) -> Option<String> {
        let base = self.media.public_url.as_ref()?;
        let created = self.store.account_created(account).await.ok()??;
        let key = self.link_key().await.ok()?;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!(
            "{account}.{created}.{expires}.{}.{}",
            b.encode(message_id),
            b.encode(link_mac(key, account, created, expires, message_id))
        );
        Some(format!("{}/api/media/{token}", base.trim_end_matches('/')))
    }

    /// Opens the file a signed link names, if the link is genuine and unexpired: its MAC
    /// (constant-time) and expiry are checked before any account, message or file is looked
    /// up (only the signing key is read, once per process), so a forged link learns nothing,
    /// not even whether the message exists; and only a file already stored is given (a link
    /// never starts a download).
    pub async fn open_media_link(
        self: &Arc<Self>,
        token: &str,
        range: Option<(u64, u64)>,
    ) -> Result<LinkedFile, super::ServiceError> {
        use super::ServiceError as E;
        let (account, created, expires, id, mac) = link_parts(token).ok_or(E::MediaLink)?;
        let want = link_mac(self.link_key().await?, account, created, expires, &id);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&want[..], &mac[..])) {
            return Err(E::MediaLink);
        }
        if super::now_ms() / 1000 > expires {
            return Err(E::MediaLinkExpired);
        }
        // The account the link was made for, not a later one given its id.
        if self.store.account_created(account).await? != Some(created) {
            return Err(E::MediaNotAvailable("the account is gone".into()));
        }
        let file = self
            .open_account_media(account, &id, range, Fetch::StoredOnly)
            .await?;
        Ok(LinkedFile { file, expires })
    }
}

#[cfg(test)]
mod link_tests {
    use super::*;

    #[test]
    fn a_link_token_reads_back_and_binds_every_field() {
        let key = [7u8; 32];
        let mac = link_mac(&key, 3, 1000, 2000, "3EB0A");
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!("3.1000.2000.{}.{}", b.encode("3EB0A"), b.encode(mac));
        assert_eq!(
            link_parts(&token),
            Some((3, 1000, 2000, "3EB0A".to_owned(), mac.to_vec()))
        );
        // Another account id, creation time, expiry or message: another MAC.
        for other in [
            link_mac(&key, 4, 1000, 2000, "3EB0A"),
            link_mac(&key, 3, 1001, 2000, "3EB0A"),
            link_mac(&key, 3, 1000, 2001, "3EB0A"),
            link_mac(&key, 3, 1000, 2000, "3EB0B"),
        ] {
            assert_ne!(other, mac);
        }
        assert_eq!(link_parts("3.2000.x.y"), None);
        assert_eq!(link_parts(&format!("{token}.extra")), None);
    }
}

/// The WhatsApp id inside a message id as the API names it (`true_<chat>_<id>`) or bare.
fn bare_id(id: &str) -> &str {
    match serialized_parts(id) {
        Some((_, _, bare)) => bare,
        None => id,
    }
}

/// `(from_me, chat, id)` of a serialized message id.
fn serialized_parts(id: &str) -> Option<(bool, &str, &str)> {
    let (from_me, rest) = if let Some(r) = id.strip_prefix("true_") {
        (true, r)
    } else {
        (false, id.strip_prefix("false_")?)
    };
    let (chat, bare) = rest.rsplit_once('_')?;
    Some((from_me, chat, bare))
}

/// The row `asked` names: a serialized id picks its own chat (or that chat's `lid`) and
/// direction (an id another chat's sender chose to repeat must not stand in for it); a bare
/// one, the earliest row.
fn pick_message(rows: Vec<MediaRow>, asked: &str, lid: Option<&str>) -> Option<MediaRow> {
    let Some((from_me, chat, _)) = serialized_parts(asked) else {
        return rows.into_iter().next();
    };
    rows.into_iter().find(|r| {
        r.from_me == from_me
            && (r.chat == chat
                || Some(r.chat.as_str()) == lid
                || r.chat.parse::<Jid>().is_ok_and(|j| j.c_us() == chat))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::media_ref::MediaRef;

    fn row(pk: i64, chat: &str, from_me: bool) -> MediaRow {
        MediaRow {
            message_pk: pk,
            account: 1,
            message_id: "3EB0ABC".into(),
            chat: chat.into(),
            sender: chat.into(),
            from_me,
            reference: MediaRef {
                kind: Kind::Document,
                media_key: None,
                direct_path: None,
                url: None,
                file_sha256: None,
                file_enc_sha256: None,
                file_length: None,
                mimetype: None,
                file_name: None,
                seconds: None,
                width: None,
                height: None,
            },
            state: MediaState::Pending,
            error: None,
            attempts: 0,
        }
    }

    #[test]
    fn a_serialized_id_picks_its_own_chat_and_direction() {
        assert_eq!(bare_id("true_123@c.us_3EB0ABC"), "3EB0ABC");
        assert_eq!(bare_id("false_1203630@g.us_3EB0ABC"), "3EB0ABC");
        assert_eq!(bare_id("3EB0ABC"), "3EB0ABC");
        // A bare id that merely holds an underscore is not cut.
        assert_eq!(bare_id("AB_CD"), "AB_CD");
        let rows = || {
            vec![
                row(1, "111@s.whatsapp.net", false),
                row(2, "222@s.whatsapp.net", false),
                row(3, "222@s.whatsapp.net", true),
            ]
        };
        let pk = |asked: &str| pick_message(rows(), asked, None).map(|r| r.message_pk);
        assert_eq!(pk("3EB0ABC"), Some(1));
        assert_eq!(pk("false_222@c.us_3EB0ABC"), Some(2));
        assert_eq!(pk("true_222@c.us_3EB0ABC"), Some(3));
        assert_eq!(pk("false_222@s.whatsapp.net_3EB0ABC"), Some(2));
        assert_eq!(pk("true_111@c.us_3EB0ABC"), None);
        assert_eq!(pk("false_333@c.us_3EB0ABC"), None);
        // A phone number whose chat is kept under its LID since.
        let by_lid = pick_message(rows(), "true_999@c.us_3EB0ABC", Some("222@s.whatsapp.net"));
        assert_eq!(by_lid.map(|r| r.message_pk), Some(3));
    }
}
