//! Media in the service: files that arrive with messages are fetched into the blob store by one
//! downloader per account (a media retry to the phone when WhatsApp's copy expired), files to
//! send are read from it, and a sweep deletes blobs no row names any more. A file is written
//! to staging and named only once every check passed: no half or unverified file is ever
//! served.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Service, Session};
use crate::client::media::{MediaFailure, MediaFuture, MediaSink};
use crate::client::messenger::RetryTarget;
use crate::store::MediaState;
use crate::store::blobs::{BlobError, BlobId, StagedBlob};
use crate::store::media::MediaRow;

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
        if let Some(sha) = r.file_sha256
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

    /// Deletes blobs no row names, older than `grace` (the sweep at start passes zero: nothing
    /// is being written then). Returns how many went.
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
                if !self.store.blob_in_use(&id.0).await? {
                    blobs
                        .delete(*id)
                        .await
                        .map_err(|e| super::ServiceError::Blob(e.to_string()))?;
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
