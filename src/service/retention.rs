//! Retention: a maintenance task prunes what has aged past its time — finished sends,
//! activities, messages with their receipts, group changes, delivered and dead-lettered webhook
//! events — shortly after start and then every `every`, in bounded batches (the store keeps
//! what other rows still need), and logs what went with the sizes of the service's maps.

use std::sync::Weak;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{Service, ServiceError, now_ms};
use crate::store::prune::MessageCursor;

const DAY: Duration = Duration::from_secs(86_400);

/// How long each kind of row is kept (None: forever), and how the pruner goes about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Finished sends (`done`, `failed`, `cancelled`, `expired`; queued ones are never pruned),
    /// by when they were accepted; their idempotency keys go with them
    /// (`WA_GATEWAY_RETENTION_OUTBOX_DAYS`, 30).
    pub outbox: Option<Duration>,
    /// Activities (`WA_GATEWAY_RETENTION_ACTIVITIES_DAYS`, 90).
    pub activities: Option<Duration>,
    /// Messages and their receipts, by the message's own time
    /// (`WA_GATEWAY_RETENTION_MESSAGES_DAYS`; kept forever by default: the history is what
    /// the API serves, and pruning it is the operator's call).
    pub messages: Option<Duration>,
    /// Group membership and subject changes, by WhatsApp's time
    /// (`WA_GATEWAY_RETENTION_GROUP_UPDATES_DAYS`, 90).
    pub group_updates: Option<Duration>,
    /// Dead-lettered webhook events, by when they died
    /// (`WA_GATEWAY_RETENTION_WEBHOOK_DEAD_DAYS`, 30). Delivered ones follow
    /// `WebhookSettings::retain`.
    pub dead_webhook_events: Option<Duration>,
    /// Rows one batch deletes at most (each batch is its own short write transaction).
    pub batch: u32,
    /// How long after start the first pass runs.
    pub first_after: Duration,
    /// How often a pass runs after that.
    pub every: Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            outbox: Some(30 * DAY),
            activities: Some(90 * DAY),
            messages: None,
            group_updates: Some(90 * DAY),
            dead_webhook_events: Some(30 * DAY),
            batch: 500,
            first_after: Duration::from_secs(60),
            every: Duration::from_secs(3600),
        }
    }
}

impl Retention {
    /// A retention of `days` (0: forever).
    pub fn days(days: u64) -> Option<Duration> {
        (days > 0).then(|| DAY.saturating_mul(u32::try_from(days).unwrap_or(u32::MAX)))
    }
}

/// What one pass deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneReport {
    /// Finished outbox rows.
    pub outbox: u64,
    /// Activities.
    pub activities: u64,
    /// Messages.
    pub messages: u64,
    /// Receipts of those messages.
    pub receipts: u64,
    /// Group changes.
    pub group_updates: u64,
    /// Delivered webhook events.
    pub delivered_webhook_events: u64,
    /// Dead-lettered webhook events.
    pub dead_webhook_events: u64,
    /// Media files no row names any more (pruned messages and sends take theirs along).
    pub blobs: u64,
    /// Write transactions the pass took.
    pub batches: u64,
}

impl PruneReport {
    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.outbox
            + self.activities
            + self.messages
            + self.receipts
            + self.group_updates
            + self.delivered_webhook_events
            + self.dead_webhook_events
    }
}

/// The pause between two batches, so writers queued behind one get the database first.
const BETWEEN_BATCHES: Duration = Duration::from_millis(5);

fn cutoff_ms(keep: Duration) -> i64 {
    now_ms().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
}

impl Service {
    /// One pruning pass over every kind with a retention (the maintenance task runs it; tests
    /// and operators may too). Webhook events go before messages, so a message an event held
    /// can go in the same pass. Stops early at shutdown.
    pub async fn prune(&self) -> Result<PruneReport, ServiceError> {
        let r = self.retention.clone();
        let mut report = PruneReport::default();
        let limit = r.batch.max(1);
        let cut = |keep: Option<Duration>| keep.map(cutoff_ms);
        let kinds = [
            (cut(r.outbox), Kind::Outbox),
            (cut(r.activities), Kind::Activities),
            (cut(r.group_updates).map(|ms| ms / 1000), Kind::GroupUpdates),
            (cut(Some(self.webhook_settings.retain)), Kind::Delivered),
            (cut(r.dead_webhook_events), Kind::Dead),
        ];
        for (before, kind) in kinds {
            let Some(before) = before else { continue };
            loop {
                if self.stopping.load(Relaxed) {
                    return Ok(report);
                }
                let s = &self.store;
                let n = match kind {
                    Kind::Outbox => s.prune_outbox(before, limit).await?,
                    Kind::Activities => s.prune_activities(before, limit).await?,
                    Kind::GroupUpdates => s.prune_group_updates(before, limit).await?,
                    Kind::Delivered => s.prune_webhook_events(before, limit).await?,
                    Kind::Dead => s.prune_dead_webhook_events(before, limit).await?,
                };
                report.batches += 1;
                *kind.count(&mut report) += n;
                if n < u64::from(limit) {
                    break;
                }
                tokio::time::sleep(BETWEEN_BATCHES).await;
            }
        }
        if let Some(before) = cut(r.messages) {
            let before_s = before / 1000;
            for account in self.store.account_ids().await? {
                let mut from = MessageCursor::START;
                loop {
                    if self.stopping.load(Relaxed) {
                        return Ok(report);
                    }
                    let b = self
                        .store
                        .prune_messages(account, before_s, from, limit)
                        .await?;
                    report.batches += 1;
                    report.messages += b.deleted;
                    report.receipts += b.receipts;
                    let Some(next) = b.next else { break };
                    from = next;
                    tokio::time::sleep(BETWEEN_BATCHES).await;
                }
            }
        }
        report.blobs = self.sweep_blobs(super::media::SWEEP_GRACE).await?;
        Ok(report)
    }
}

/// The kinds pruned by age alone.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Outbox,
    Activities,
    GroupUpdates,
    Delivered,
    Dead,
}

impl Kind {
    fn count(self, r: &mut PruneReport) -> &mut u64 {
        match self {
            Kind::Outbox => &mut r.outbox,
            Kind::Activities => &mut r.activities,
            Kind::GroupUpdates => &mut r.group_updates,
            Kind::Delivered => &mut r.delivered_webhook_events,
            Kind::Dead => &mut r.dead_webhook_events,
        }
    }
}

/// The maintenance task: a pruning pass `first_after` the start, then every `every`, each
/// logged with what it deleted and the sizes of the service's maps. Ends when the service is
/// dropped or shut down.
pub(super) async fn maintain(service: Weak<Service>) {
    let (first, every) = match service.upgrade() {
        Some(s) => (
            s.retention.first_after,
            s.retention.every.max(Duration::from_secs(1)),
        ),
        None => return,
    };
    tokio::time::sleep(first).await;
    loop {
        let Some(svc) = service.upgrade() else { return };
        if svc.stopping.load(Relaxed) {
            return;
        }
        let started = tokio::time::Instant::now();
        match svc.prune().await {
            Ok(r) if r.total() > 0 => tracing::info!(
                outbox = r.outbox,
                activities = r.activities,
                messages = r.messages,
                receipts = r.receipts,
                group_updates = r.group_updates,
                delivered_webhook_events = r.delivered_webhook_events,
                dead_webhook_events = r.dead_webhook_events,
                batches = r.batches,
                ms = started.elapsed().as_millis() as u64,
                "old rows pruned"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning failed; trying again at the next pass"),
        }
        let m = svc.stats();
        tracing::debug!(
            sessions = m.sessions,
            gates = m.gates,
            drains = m.drains,
            waiting_sends = m.waiting_sends,
            "service maps"
        );
        drop(svc);
        tokio::time::sleep(every).await;
    }
}
