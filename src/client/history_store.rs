//! The durable queue of history-sync notifications (CLIENT-FEATURES §5), and the storage trait
//! for it. A `HistorySyncNotification` from our phone is kept here before its message's Signal
//! advance is committed and its delivery receipt sent (the server never delivers an
//! acknowledged message again), so a crash between the receipt and the chunk being stored
//! loses nothing: the worker takes the kept notifications up again at the next start, oldest
//! first. A stored chunk's row then waits only for its `hist_sync` receipt to the phone, and
//! goes once that receipt is sent (at the next connection if none is up).

use std::future::Future;

use super::store::CredsStoreError;

/// Most rows (waiting to be stored, or waiting for their receipt) one account keeps. Decision:
/// beyond it a new notification is refused, not an older one dropped: refused, its message
/// gets no receipt and no Signal advance, so the server keeps it and delivers it again later
/// (by when the worker has caught up), and nothing is lost. A phone sends a few dozen chunks
/// at linking and one per on-demand request, so a few hundred is far above real use while
/// bounding what our own phone (or whoever holds it) can make us store.
pub const MAX_PENDING_HISTORY: usize = 256;

/// Most times the worker starts on one kept notification. Decision: an interrupted or
/// transiently failed chunk (store error, network error, shutdown, a crash mid-chunk) is tried
/// again at the next round (a new connection, or a timer of 1 minute doubling to 1 hour: about
/// two hours of failures before the last); the attempt is counted when the worker starts on
/// it, so a chunk that kills the process each time it is read is given up (with a
/// `HistorySyncFailed` event) after this many starts instead of looping forever.
pub const MAX_HISTORY_ATTEMPTS: u32 = 8;

/// A kept notification. `Debug` hides the notification (it holds the blob's media key).
#[derive(Clone, PartialEq, Eq)]
pub struct PendingHistory {
    /// Arrival order (increasing; the worker takes the smallest first).
    pub seq: i64,
    /// The id of the message that carried it (its `hist_sync` receipt names it).
    pub id: String,
    /// The `HistorySyncNotification` protobuf, as it arrived.
    pub notification: zeroize::Zeroizing<Vec<u8>>,
    /// How many times the worker started on it.
    pub attempts: u32,
}

impl std::fmt::Debug for PendingHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingHistory")
            .field("seq", &self.seq)
            .field("id", &self.id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// What [`PendingHistoryStore::queue_history`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Kept now.
    New,
    /// Kept before (a redelivery after a crash): left as it was.
    Known,
    /// The account holds [`MAX_PENDING_HISTORY`] rows: not kept.
    Full,
}

/// Where a client keeps the history notifications it acknowledged but has not finished with.
/// Rows are keyed by (account, message id); the notification is a secret (sealed at rest
/// where the store seals key material).
pub trait PendingHistoryStore: Send + Sync {
    /// Keeps notification `notification` of message `id`, unless kept before (idempotent on
    /// the id) or the account is at [`MAX_PENDING_HISTORY`].
    fn queue_history(
        &self,
        id: &str,
        notification: &[u8],
    ) -> impl Future<Output = Result<Queued, CredsStoreError>> + Send;
    /// The oldest kept notification not yet stored whose `seq` is above `after`.
    fn next_history(
        &self,
        after: i64,
    ) -> impl Future<Output = Result<Option<PendingHistory>, CredsStoreError>> + Send;
    /// Counts one more start on message `id`'s notification; returns the count now (0 when
    /// it is no longer kept).
    fn history_attempt(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<u32, CredsStoreError>> + Send;
    /// Message `id`'s chunk is stored: its receipt is due. The notification itself is dropped
    /// (nothing reads it again, and it holds a key).
    fn history_stored(&self, id: &str) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// Ids of the messages whose chunk is stored and whose `hist_sync` receipt is due, in
    /// arrival order.
    fn history_receipts_due(
        &self,
    ) -> impl Future<Output = Result<Vec<String>, CredsStoreError>> + Send;
    /// Forgets message `id`'s row (its receipt was sent, or its chunk failed for good).
    fn forget_history(&self, id: &str) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
}
