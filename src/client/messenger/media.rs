//! The messaging side of media: the `media_conn` answer (CDN hosts and upload token) cached per
//! account, and the media retry — the `server-error` receipt asking our phone to upload an
//! expired file again, answered by a `mediaretry` notification.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Messenger, SendError};
use crate::binary::{Jid, Node};
use crate::client::link::IQ_TIMEOUT;
use crate::client::store::CredsStore;
use crate::stanza;
use crate::stanza::media::{MediaConnInfo, MediaRetryNotice};

/// Media retries one account may have waiting at once: each holds a waiter until answered or
/// timed out, so a burst of expired files cannot grow the map without bound.
const MAX_RETRY_WAITERS: usize = 64;

/// The cached `media_conn` answer and when it stops being good.
#[derive(Default)]
pub(super) struct MediaConnCache {
    pub(super) current: Option<(MediaConnInfo, Instant)>,
}

/// Waiters for `mediaretry` notifications, by message id: each with its own token, since two
/// fetches of one file may wait at once and each must leave only itself when it stops.
pub(super) type RetryWaiters = HashMap<String, Vec<(u64, oneshot::Sender<MediaRetryNotice>)>>;

/// Tokens for [`RetryWaiters`] entries.
static WAITER_TOKENS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The message a media retry is about, as its key names it.
#[derive(Debug, Clone)]
pub struct RetryTarget {
    /// The message id.
    pub id: String,
    /// Its chat.
    pub chat: Jid,
    /// Whether we (this account) sent it.
    pub from_me: bool,
    /// Its author in a group.
    pub participant: Option<Jid>,
}

struct WaiterGuard<'a> {
    map: &'a std::sync::Mutex<RetryWaiters>,
    id: String,
    token: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock()
            && let Some(list) = m.get_mut(&self.id)
        {
            list.retain(|(t, _)| *t != self.token);
            if list.is_empty() {
                m.remove(&self.id);
            }
        }
    }
}

impl<S: CredsStore> Messenger<S> {
    /// The account's `media_conn`: the cached answer while it is good (the shorter of `ttl`
    /// and `auth_ttl`, as whatsapp-rust and WA Web keep it), else a fresh one; `refresh` asks
    /// anew whatever the cache holds (an upload refused its token).
    pub(in crate::client) async fn media_conn(
        &self,
        refresh: bool,
    ) -> Result<MediaConnInfo, SendError> {
        if !refresh
            && let Ok(c) = self.media_conn.lock()
            && let Some((info, until)) = &c.current
            && Instant::now() < *until
        {
            return Ok(info.clone());
        }
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        let answer = self
            .link
            .iq
            .query(&sender, stanza::media::media_conn_query(), IQ_TIMEOUT)
            .await?;
        let info = stanza::media::parse_media_conn(&answer).ok_or_else(|| {
            SendError::Unexpected("media_conn answer without auth or hosts".into())
        })?;
        // The server's figure, kept within sense (a huge one would overflow the clock).
        let life = Duration::from_secs(info.ttl.min(info.auth_ttl).clamp(30, 86_400));
        if let Ok(mut c) = self.media_conn.lock()
            && let Some(until) = Instant::now().checked_add(life)
        {
            c.current = Some((info.clone(), until));
        }
        Ok(info)
    }

    /// Sends a media-retry receipt for `target` (the caller encrypted the request under the
    /// file's key) and waits up to `wait` for the phone's answer.
    pub(in crate::client) async fn media_retry(
        &self,
        target: RetryTarget,
        ciphertext: Vec<u8>,
        iv: [u8; 12],
        wait: Duration,
    ) -> Result<MediaRetryNotice, SendError> {
        let account = self.account().ok_or(SendError::NotConnected)?;
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        let (tx, rx) = oneshot::channel();
        let token = WAITER_TOKENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            let mut m = self
                .media_retries
                .lock()
                .map_err(|_| SendError::Unexpected("media retry waiters poisoned".into()))?;
            if m.values().map(Vec::len).sum::<usize>() >= MAX_RETRY_WAITERS {
                return Err(SendError::Unexpected(
                    "too many media retries waiting for the phone".into(),
                ));
            }
            m.entry(target.id.clone()).or_default().push((token, tx));
        }
        let _guard = WaiterGuard {
            map: &self.media_retries,
            id: target.id.clone(),
            token,
        };
        let receipt = stanza::media::media_retry_receipt(
            &target.id,
            &account.me.jid,
            &target.chat,
            target.from_me,
            target.participant.as_ref(),
            &ciphertext,
            &iv,
        );
        sender
            .send(&receipt)
            .await
            .map_err(|_| SendError::NotConnected)?;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(notice)) => Ok(notice),
            _ => Err(SendError::Unexpected(
                "the phone did not answer the media retry in time".into(),
            )),
        }
    }

    /// A `<notification type="mediaretry">` (acked by the reader: nothing is stored from it;
    /// a lost answer is asked again): handed to every retry waiting for that message.
    pub(super) fn on_media_retry(&self, node: &Node) {
        match stanza::media::parse_media_retry(node) {
            Some(notice) => {
                let waiters = self
                    .media_retries
                    .lock()
                    .ok()
                    .and_then(|mut m| m.remove(&notice.id))
                    .unwrap_or_default();
                if waiters.is_empty() {
                    tracing::debug!(id = notice.id, "media retry answer nobody waits for");
                }
                for (_, tx) in waiters {
                    let _ = tx.send(notice.clone());
                }
            }
            None => tracing::debug!("malformed mediaretry notification"),
        }
    }
}
