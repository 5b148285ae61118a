//! What the client handle, the run loop and the messenger share about the live connection: the
//! iq tracker, the logged-in sender, our own JID and liveness. It knows no messaging.

use std::time::Duration;

use super::iq::IqTracker;
use crate::binary::Jid;
use crate::socket::NodeSender;

/// Time allowed for the client's own iqs (the references use 60 s; the server answers in ms).
pub(crate) const IQ_TIMEOUT: Duration = Duration::from_secs(20);

/// What the handle and the run loop share about the live connection.
#[derive(Debug, Default)]
pub(super) struct Link {
    pub(super) iq: IqTracker,
    /// The logged-in connection's sender (None while down or pairing).
    pub(super) sender: std::sync::Mutex<Option<NodeSender>>,
    /// Our device JID once logged in.
    pub(super) own: std::sync::Mutex<Option<Jid>>,
    /// The owner asked to log out: wipe the credentials when stopping.
    pub(super) logging_out: std::sync::atomic::AtomicBool,
    /// One prekey refill at a time (count answer and low-count notice may race).
    pub(super) refill: tokio::sync::Mutex<()>,
    /// When the logged-in connection last received anything (None while down).
    pub(super) heard: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// The owner asked the run loop to stop.
    pub(super) stop: Stop,
}

/// A stop request from the client's owner: a flag and a wake-up, in place of a `watch` channel
/// (whose shared state, eight notifiers wide, cost ~0.4 KB per client while idle).
#[derive(Debug, Default)]
pub(super) struct Stop {
    requested: std::sync::atomic::AtomicBool,
    wake: tokio::sync::Notify,
}

impl Stop {
    /// Asks the run loop to stop (idempotent).
    pub(super) fn request(&self) {
        self.requested
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    /// Whether a stop was asked for.
    pub(super) fn is_requested(&self) -> bool {
        self.requested.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once a stop was asked for (at once if it already was).
    pub(super) async fn requested(&self) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            // Registered before the flag is read, so a request in between is not missed.
            woken.as_mut().enable();
            if self.is_requested() {
                return;
            }
            woken.await;
        }
    }
}

impl Link {
    /// Our device JID while logged in.
    pub(super) fn own_jid(&self) -> Option<Jid> {
        self.own.lock().ok().and_then(|g| g.clone())
    }

    pub(super) fn set_own(&self, jid: Option<Jid>) {
        if let Ok(mut g) = self.own.lock() {
            *g = jid;
        }
    }

    /// Notes that the connection just received something (`None`: it is gone).
    pub(super) fn set_heard(&self, at: Option<tokio::time::Instant>) {
        if let Ok(mut g) = self.heard.lock() {
            *g = at;
        }
    }

    pub(super) fn set_sender(&self, s: Option<NodeSender>) {
        if let Ok(mut g) = self.sender.lock() {
            *g = s;
        }
    }
}
