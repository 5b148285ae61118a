//! The typed events a client emits for the service layer, and its connection states.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::messages::{GroupUpdate, MessageStatus, StoredMessage};
use crate::binary::Jid;

/// Where a client's connection stands. Only the client's run loop changes it, and every change
/// is emitted as [`Event::State`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Opening the socket and running the handshake.
    Connecting,
    /// A new device showing QR codes, waiting for a phone to scan.
    AwaitingPair,
    /// Paired; logging in.
    LoggingIn,
    /// Logged in and online.
    Connected,
    /// Down; the next attempt is scheduled.
    Disconnected {
        /// Why, as a stable code: `connection_lost`, `connect_failed`, `keepalive_timeout`,
        /// `restart_required`, `rate_limited`, `server_unavailable`, `stream_error`,
        /// `stream_end`, `login_failed`, `bad_user_agent` (409), `cat_expired` (413),
        /// `cat_invalid` (414), `store_unavailable`, `internal`.
        code: &'static str,
        /// Why the connection ended.
        reason: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// No phone scanned before the refs ran out; connect again to get new codes.
    QrTimeout,
    /// The phone unlinked this device (or the server says so); credentials were wiped.
    LoggedOut {
        /// Why, as a stable code: `logged_out` (401, device removed), `main_device_gone`
        /// (403), `unknown_logout` (406), `logout` (we asked for it).
        code: &'static str,
        /// What the server said.
        reason: String,
    },
    /// WhatsApp banned the account for a while (login failure 402); not reconnecting.
    TempBanned {
        /// WhatsApp's ban reason code, when it gave one.
        ban_code: Option<u32>,
        /// How long the ban lasts, when it said.
        expires_in: Option<Duration>,
    },
    /// The server refused our WhatsApp Web version (405); not reconnecting until the version
    /// setting is raised.
    ClientOutdated {
        /// What to do, naming the version refused and the setting to change.
        message: String,
    },
    /// Another connection with the same credentials took over; not reconnecting.
    Replaced,
    /// Something on our side prevents connecting (unusable stored credentials, a store that
    /// cannot be read). Not reconnecting, and nothing was wiped: the link may still be valid
    /// once the cause is mended. Only WhatsApp's own logout wipes credentials.
    LocalError {
        /// What went wrong.
        reason: String,
    },
    /// Stopped by its owner.
    Stopped,
}

impl ConnState {
    /// The machine name of the state (`connected`, `qr_timeout`, …).
    pub fn name(&self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::AwaitingPair => "awaiting_pair",
            ConnState::LoggingIn => "logging_in",
            ConnState::Connected => "connected",
            ConnState::Disconnected { .. } => "disconnected",
            ConnState::QrTimeout => "qr_timeout",
            ConnState::LoggedOut { .. } => "logged_out",
            ConnState::TempBanned { .. } => "temp_banned",
            ConnState::ClientOutdated { .. } => "client_outdated",
            ConnState::Replaced => "replaced",
            ConnState::LocalError { .. } => "local_error",
            ConnState::Stopped => "stopped",
        }
    }

    /// The stable failure code of a failed or stopped connection (None while it is fine or
    /// on its way): REST clients switch on it.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            ConnState::Disconnected { code, .. } | ConnState::LoggedOut { code, .. } => Some(code),
            ConnState::QrTimeout
            | ConnState::ClientOutdated { .. }
            | ConnState::Replaced
            | ConnState::LocalError { .. }
            | ConnState::TempBanned { .. } => Some(self.name()),
            _ => None,
        }
    }

    /// True for states the client does not leave by itself.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            ConnState::QrTimeout
                | ConnState::LoggedOut { .. }
                | ConnState::TempBanned { .. }
                | ConnState::ClientOutdated { .. }
                | ConnState::Replaced
                | ConnState::LocalError { .. }
                | ConnState::Stopped
        )
    }
}

/// Something the service layer wants to know. What must not be lost (messages, receipts) is
/// stored before its event goes out, so a consumer that lags re-reads the store.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The connection state changed.
    State(ConnState),
    /// A QR code to show until `valid_for` elapses (then the next one comes).
    QrCode {
        /// The QR text (render with [`super::qr::qr_data_url`]).
        code: String,
        /// How long this code is shown.
        valid_for: Duration,
    },
    /// A phone linked this device (boxed: events are queued per client, and this rare one is
    /// the largest).
    PairSuccess(Box<Linked>),
    /// A pair-success was refused (bad HMAC or signature); nothing was stored.
    PairError {
        /// Why.
        reason: String,
    },
    /// Logged in.
    Connected {
        /// Our device JID.
        jid: Jid,
    },
    /// Our push name (the name set on the phone) became known or changed; it is stored.
    PushName {
        /// The name.
        name: String,
    },
    /// A message was received (or sent by another of our devices) and stored.
    Message(Box<StoredMessage>),
    /// An outbound message moved up the ladder (server ack, a device's receipt) or failed.
    Receipt {
        /// The conversation.
        chat: Jid,
        /// The message id.
        id: String,
        /// The device that reported it; None for the server's ack.
        device: Option<Jid>,
        /// The message's status now.
        status: MessageStatus,
        /// The server's error code when it failed.
        error: Option<u16>,
    },
    /// A message could not be decrypted; a retry was asked for. A later successful retry
    /// arrives as [`Event::Message`] with the same id.
    Undecryptable {
        /// The sending device.
        from: Jid,
        /// The message id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A history sync chunk from the phone was processed (what it taught is stored).
    HistorySync(Box<HistoryReport>),
    /// A history sync chunk could not be used (download, inflate, not a `HistorySync`, too
    /// large, a store error); what earlier batches of it stored stays (each batch is whole).
    HistorySyncFailed {
        /// The chunk's position.
        chunk: Option<u32>,
        /// Why.
        reason: String,
        /// Whether the chunk is kept and tried again (a passing failure: at the next
        /// connection or notification); false: given up for good.
        will_retry: bool,
    },
    /// An app-state collection is up to date with the server at `version`.
    AppStateSynced {
        /// The collection (`regular_high`, …).
        collection: String,
        /// Its version now.
        version: u64,
    },
    /// What other devices (or we) did through app state: archive, pin, mute, read, contacts,
    /// push name, NCT salt… (already stored). One patch or snapshot may be told in several
    /// events, in order, of at most `MAX_ACTIONS_PER_EVENT` (1,000) actions each.
    AppStateActions {
        /// The collection they came in.
        collection: String,
        /// The actions, in order (records kept only raw are not listed).
        actions: Vec<crate::appstate::Action>,
    },
    /// An app-state collection failed to sync or verify, and what is being done about it:
    /// `full_resync` (synced again from a snapshot), `recovery_requested` (the phone was asked
    /// for its copy), `recovery_pending` (asked recently), `retry` (a passing failure: tried again with backoff),
    /// `retry_on_next_sync` (the server refused it), `gave_up`.
    AppStateFailed {
        /// The collection.
        collection: String,
        /// Why.
        reason: String,
        /// What happens next.
        recovery: String,
    },
    /// App-state keys a collection needs were asked of the phone.
    AppStateKeysRequested {
        /// How many keys.
        count: usize,
    },
    /// No history chunk is waiting any more (the last one kept was processed, or one that
    /// failed for the moment waits for the next connection).
    HistorySyncIdle {
        /// Chunks processed since the client started.
        chunks: u64,
    },
    /// A message the server accepted was receipted by no device within the configured time
    /// (the recipient may be offline for long, or something is wrong: see the logs).
    Stuck {
        /// The conversation.
        chat: Jid,
        /// The message id.
        id: String,
    },
    /// The messages queued while we were offline were all delivered (and handled).
    OfflineSync {
        /// How many stanzas the server had queued.
        count: u32,
    },
    /// A contact gave us its privacy token (stored; our messages to it carry it from now on).
    PrivacyToken {
        /// The contact.
        jid: Jid,
    },
    /// The account's reach-out time-lock changed (WhatsApp said so, or we asked after a 463):
    /// while active, new chats are refused.
    ReachoutTimelock(crate::stanza::mex::ReachoutTimelock),
    /// The account's new-chat message capping changed (WhatsApp's notification, or an answer
    /// we asked for at connect or after a 463/475).
    NewChatCapping(crate::stanza::mex::NewChatCapping),
    /// A contact's identity key changed (their security code changed).
    IdentityChanged {
        /// The contact's device.
        jid: Jid,
    },
    /// A group we are in changed (members, admins, subject, addressing); stored.
    GroupUpdate(Box<GroupUpdate>),
}

/// What a pair-success told us about our new link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    /// Our new device JID.
    pub jid: Jid,
    /// Our LID device JID.
    pub lid: Option<Jid>,
    /// The phone's platform.
    pub platform: Option<String>,
    /// Business name.
    pub business_name: Option<String>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The QR text carries key material: never print it.
            Event::QrCode { valid_for, .. } => {
                write!(f, "QrCode {{ code: <redacted>, valid_for: {valid_for:?} }}")
            }
            Event::State(s) => write!(f, "State({s:?})"),
            Event::PairSuccess(l) => {
                write!(
                    f,
                    "PairSuccess {{ jid: {}, platform: {:?} }}",
                    l.jid, l.platform
                )
            }
            Event::PairError { reason } => write!(f, "PairError {{ reason: {reason} }}"),
            Event::Connected { jid } => write!(f, "Connected {{ jid: {jid} }}"),
            // A name is personal data: logs show that it came, not what it is.
            Event::PushName { name } => {
                write!(f, "PushName {{ name: <{} chars> }}", name.chars().count())
            }
            // Content stays out of logs: ids and JIDs only.
            Event::Message(m) => write!(
                f,
                "Message {{ chat: {}, sender: {}, id: {}, from_me: {} }}",
                m.chat, m.sender, m.id, m.from_me
            ),
            Event::Receipt {
                chat,
                id,
                device,
                status,
                error,
            } => write!(
                f,
                "Receipt {{ chat: {chat}, id: {id}, device: {device:?}, status: {}, error: {error:?} }}",
                status.as_str()
            ),
            Event::Undecryptable { from, id, reason } => {
                write!(
                    f,
                    "Undecryptable {{ from: {from}, id: {id}, reason: {reason} }}"
                )
            }
            Event::IdentityChanged { jid } => write!(f, "IdentityChanged {{ jid: {jid} }}"),
            Event::PrivacyToken { jid } => write!(f, "PrivacyToken {{ jid: {jid} }}"),
            Event::ReachoutTimelock(t) => write!(f, "ReachoutTimelock({t:?})"),
            Event::NewChatCapping(c) => write!(f, "NewChatCapping({c:?})"),
            Event::Stuck { chat, id } => write!(f, "Stuck {{ chat: {chat}, id: {id} }}"),
            Event::OfflineSync { count } => write!(f, "OfflineSync {{ count: {count} }}"),
            Event::GroupUpdate(u) => write!(f, "GroupUpdate({u:?})"),
            Event::HistorySync(r) => write!(f, "HistorySync({r:?})"),
            Event::HistorySyncFailed {
                chunk,
                reason,
                will_retry,
            } => write!(
                f,
                "HistorySyncFailed {{ chunk: {chunk:?}, reason: {reason:?}, will_retry: {will_retry} }}"
            ),
            Event::HistorySyncIdle { chunks } => {
                write!(f, "HistorySyncIdle {{ chunks: {chunks} }}")
            }
            Event::AppStateSynced {
                collection,
                version,
            } => write!(
                f,
                "AppStateSynced {{ collection: {collection}, version: {version} }}"
            ),
            // Counts by kind: contact and push names stay out of logs.
            Event::AppStateActions {
                collection,
                actions,
            } => {
                let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
                for a in actions {
                    *kinds.entry(a.kind()).or_default() += 1;
                }
                write!(
                    f,
                    "AppStateActions {{ collection: {collection}, actions: {}, kinds: {kinds:?} }}",
                    actions.len()
                )
            }
            Event::AppStateFailed {
                collection,
                reason,
                recovery,
            } => write!(
                f,
                "AppStateFailed {{ collection: {collection}, reason: {reason:?}, recovery: {recovery} }}"
            ),
            Event::AppStateKeysRequested { count } => {
                write!(f, "AppStateKeysRequested {{ count: {count} }}")
            }
        }
    }
}

/// What one history sync chunk brought (CLIENT-FEATURES §5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryReport {
    /// `HistorySyncType` (0 initial bootstrap, 2 full, 3 recent, 4 push names, 6 on demand…).
    pub sync_type: Option<i32>,
    /// The chunk's position.
    pub chunk: Option<u32>,
    /// The phone's progress, percent.
    pub progress: Option<u32>,
    /// Conversations read.
    pub conversations: u64,
    /// Messages read.
    pub messages: u64,
    /// Of those, newly stored (the rest were stored before: live or an earlier chunk).
    pub stored: u64,
    /// Push names kept.
    pub push_names: u64,
    /// PN ↔ LID mappings read.
    pub mappings: u64,
    /// Address-book contacts kept.
    pub contacts: u64,
    /// Conversations over the size cap, skipped.
    pub skipped: u64,
}

/// Events a client keeps for a slow consumer; beyond it, per-message notices are dropped (and
/// counted as lag).
pub const EVENT_BUFFER: usize = 256;

/// Connection events (state, QR, link, push name) kept for a slow consumer however many
/// notices pass them; only beyond this many unread are they dropped too.
pub const STATE_BUFFER: usize = 64;

impl Event {
    /// Whether the event is part of the connection's story (its state, QR codes, the link, our
    /// push name): a consumer keeping a connection row needs every one, while the per-message
    /// notices have their truth in the store and may be skipped by a slow one.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Event::State(_)
                | Event::QrCode { .. }
                | Event::PairSuccess(_)
                | Event::PairError { .. }
                | Event::Connected { .. }
                | Event::PushName { .. }
        )
    }
}

/// The client's event stream, shared by every subscriber: publishing never waits for a
/// consumer. An event is kept only until every live subscriber has read it, so an idle client
/// holds none (nor the secrets some carry, such as a QR code) once they were read.
#[derive(Debug, Default)]
pub(super) struct EventHub {
    inner: Mutex<Ring>,
    notify: Notify,
}

/// Where one subscriber is: the sequence number it reads next, and what it missed. Changed
/// only under the ring's lock (atomics for shared ownership with the subscriber).
#[derive(Debug, Default)]
struct Cursor {
    next: AtomicU64,
    missed: AtomicU64,
}

#[derive(Debug, Default)]
struct Ring {
    buf: VecDeque<Event>,
    /// Sequence number of `buf[0]`.
    first: u64,
    closed: bool,
    /// Each live subscriber's cursor.
    readers: Vec<std::sync::Weak<Cursor>>,
}

impl Ring {
    fn end(&self) -> u64 {
        self.first + self.buf.len() as u64
    }

    fn cursors(&self) -> impl Iterator<Item = Arc<Cursor>> + '_ {
        self.readers.iter().filter_map(|r| r.upgrade())
    }

    /// Drops what every live subscriber has read (everything, when none is left).
    fn trim(&mut self) {
        self.readers.retain(|r| r.strong_count() > 0);
        let min = self
            .cursors()
            .map(|c| c.next.load(Ordering::Acquire))
            .min()
            .unwrap_or(self.end());
        while self.first < min && self.buf.pop_front().is_some() {
            self.first += 1;
        }
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            // An idle client holds no event slots (they kept ~0.6 KB per client, massif):
            // the next event allocates again, a cost only an active client pays.
            self.buf = VecDeque::new();
        }
    }

    /// Makes room for one event: drops the oldest notice, or the oldest event when only
    /// connection events are held ([`STATE_BUFFER`] or more). A reader that had not read the
    /// dropped event counts it missed; one past it keeps its place.
    fn make_room(&mut self) {
        let connection = self.buf.iter().filter(|e| e.is_connection()).count();
        let at = match self.buf.iter().position(|e| !e.is_connection()) {
            Some(i) if connection < STATE_BUFFER => i,
            _ => 0,
        };
        let seq = self.first + at as u64;
        if at == 0 {
            // The front goes: the rest keep their sequence numbers.
            self.buf.pop_front();
            self.first += 1;
        } else {
            // From the gap on, every event moves down one number.
            self.buf.remove(at);
        }
        for c in self.cursors() {
            let next = c.next.load(Ordering::Acquire);
            if next <= seq {
                c.missed.fetch_add(1, Ordering::AcqRel);
            } else if at > 0 {
                c.next.store(next - 1, Ordering::Release);
            }
        }
    }
}

impl EventHub {
    /// Publishes `e`; beyond [`EVENT_BUFFER`] unread events one is dropped (see
    /// [`Ring::make_room`]).
    pub(super) fn publish(&self, e: Event) {
        if let Ok(mut r) = self.inner.lock() {
            r.trim();
            if r.readers.is_empty() {
                // Nobody listens: nothing to keep.
                r.first += 1;
            } else {
                if r.buf.len() >= EVENT_BUFFER {
                    r.make_room();
                }
                r.buf.push_back(e);
            }
        }
        self.notify.notify_waiters();
    }

    /// Ends every subscriber's stream once it has read what is buffered.
    pub(super) fn close(&self) {
        if let Ok(mut r) = self.inner.lock() {
            r.closed = true;
        }
        self.notify.notify_waiters();
    }

    /// A subscriber that sees events published from now on.
    pub(super) fn subscribe(self: &Arc<Self>) -> Events {
        let cursor = Arc::new(Cursor::default());
        if let Ok(mut r) = self.inner.lock() {
            cursor.next.store(r.end(), Ordering::Release);
            r.readers.push(Arc::downgrade(&cursor));
        }
        Events {
            hub: self.clone(),
            cursor,
        }
    }

    /// Events held now (for tests of the buffer's bounds).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.inner.lock().map(|r| r.buf.len()).unwrap_or(0)
    }
}

/// One subscriber's view of a client's events.
#[derive(Debug)]
pub struct Events {
    hub: Arc<EventHub>,
    cursor: Arc<Cursor>,
}

impl Events {
    /// The next event; None once the client has stopped and everything was read. Notices this
    /// subscriber was too slow for are skipped and counted in [`Events::lagged`]; connection
    /// events are not (see [`Event::is_connection`]).
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            let notified = self.hub.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut r = self.hub.inner.lock().ok()?;
                let next = self.cursor.next.load(Ordering::Acquire).max(r.first);
                let idx = (next - r.first) as usize;
                if let Some(e) = r.buf.get(idx).cloned() {
                    self.cursor.next.store(next + 1, Ordering::Release);
                    r.trim();
                    return Some(e);
                }
                self.cursor.next.store(next, Ordering::Release);
                if r.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Events skipped because this subscriber fell more than [`EVENT_BUFFER`] behind.
    pub fn lagged(&self) -> u64 {
        self.cursor.missed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushname(i: usize) -> Event {
        Event::PushName {
            name: i.to_string(),
        }
    }

    fn notice(i: usize) -> Event {
        Event::Stuck {
            chat: crate::binary::Jid::new("15550001111", crate::binary::Server::User),
            id: i.to_string(),
        }
    }

    #[test]
    fn account_state_debug_shows_counts_and_kinds_never_names() {
        use crate::appstate::Action;
        use crate::binary::{Jid, Server};
        use crate::client::account::{ChatChange, ContactChange};
        let ann = Jid::new("15550001111", Server::User);
        let e = Event::AppStateActions {
            collection: "critical_unblock_low".into(),
            actions: vec![
                Action::Contact {
                    jid: ann.clone(),
                    full_name: Some("Ann Secretname".into()),
                    first_name: Some("Ann".into()),
                    lid: None,
                    pn: None,
                    username: Some("annhandle".into()),
                },
                Action::LidContact {
                    lid: Jid::new("900001", Server::Lid),
                    full_name: Some("Ann Secretname".into()),
                    first_name: None,
                    username: None,
                },
                Action::PushName("My Secretname".into()),
                Action::Archive {
                    chat: ann.clone(),
                    archived: false,
                },
                Action::Archive {
                    chat: ann.clone(),
                    archived: true,
                },
            ],
        };
        let shown = format!("{e:?}");
        assert!(shown.contains("actions: 5"), "{shown}");
        assert!(shown.contains("\"archive\": 2"), "{shown}");
        assert!(shown.contains("\"contact\": 1"), "{shown}");
        let Event::AppStateActions { actions, .. } = &e else {
            unreachable!()
        };
        let each = format!("{actions:?}");
        assert!(each.contains("15550001111"), "JIDs stay: {each}");
        let pushed = format!("{:?}", pushname(7));
        let change = format!(
            "{:?} {:?}",
            ChatChange {
                chat: ann.clone(),
                name: Some(Some("Secretname Group".into())),
                ..ChatChange::default()
            },
            ContactChange {
                jid: ann,
                full_name: Some("Ann Secretname".into()),
                push_name: Some("Annie Secretname".into()),
                username: Some("annhandle".into()),
                ..ContactChange::default()
            }
        );
        for s in [&shown, &each, &change] {
            assert!(!s.contains("Secretname") && !s.contains("annhandle"), "{s}");
        }
        assert!(!pushed.contains('7'), "{pushed}");
    }

    #[tokio::test]
    async fn a_slow_reader_loses_notices_but_never_a_connection_event() {
        let hub = Arc::new(EventHub::default());
        let mut slow = hub.subscribe();
        let mut fast = hub.subscribe();
        hub.publish(Event::State(ConnState::Connecting));
        for i in 0..EVENT_BUFFER * 2 {
            hub.publish(notice(i));
            if i == EVENT_BUFFER {
                hub.publish(Event::State(ConnState::Connected));
            }
            // The fast one reads as it goes and sees everything, in order.
            let e = fast.recv().await.unwrap();
            if i == 0 {
                assert_eq!(e, Event::State(ConnState::Connecting));
                assert_eq!(fast.recv().await, Some(notice(0)));
            } else if i == EVENT_BUFFER + 1 {
                assert_eq!(e, Event::State(ConnState::Connected));
                assert_eq!(fast.recv().await, Some(notice(i)));
            } else {
                assert_eq!(e, notice(i));
            }
        }
        assert_eq!(fast.lagged(), 0);
        assert!(hub.held() <= EVENT_BUFFER, "bounded: {}", hub.held());
        // The slow one gets both states, in order with the notices it still gets.
        hub.close();
        let mut got = Vec::new();
        while let Some(e) = slow.recv().await {
            got.push(e);
        }
        let states: Vec<usize> = got
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_connection())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(states.len(), 2, "both connection events");
        assert_eq!(got[states[0]], Event::State(ConnState::Connecting));
        assert_eq!(got[states[1]], Event::State(ConnState::Connected));
        let after = |n: usize| got[n + 1..].iter().all(|e| !e.is_connection());
        assert!(after(states[1]));
        assert_eq!(
            got.len() as u64 + slow.lagged(),
            (EVENT_BUFFER * 2 + 2) as u64,
            "every event read or counted missed"
        );
        assert!(slow.lagged() > 0);
        // What it read of the notices is in publishing order.
        let ids: Vec<usize> = got
            .iter()
            .filter_map(|e| match e {
                Event::Stuck { id, .. } => id.parse().ok(),
                _ => None,
            })
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[tokio::test]
    async fn read_events_are_dropped_and_a_slow_reader_counts_its_lag() {
        let hub = Arc::new(EventHub::default());
        hub.publish(pushname(0));
        assert_eq!(hub.held(), 0, "nobody listens: nothing kept");
        let mut fast = hub.subscribe();
        let mut slow = hub.subscribe();
        for i in 1..=3 {
            hub.publish(pushname(i));
        }
        for i in 1..=3 {
            assert_eq!(fast.recv().await, Some(pushname(i)));
        }
        assert_eq!(hub.held(), 3, "kept for the slow reader");
        assert_eq!(slow.recv().await, Some(pushname(1)));
        assert_eq!(hub.held(), 2);
        drop(slow);
        hub.publish(pushname(4));
        assert_eq!(fast.recv().await, Some(pushname(4)));
        assert_eq!(hub.held(), 0, "the dropped reader holds nothing back");
        // A reader that falls behind by more than the buffer skips and counts.
        for i in 0..EVENT_BUFFER + 10 {
            hub.publish(pushname(i));
        }
        assert_eq!(hub.held(), EVENT_BUFFER);
        assert_eq!(fast.recv().await, Some(pushname(10)));
        assert_eq!(fast.lagged(), 10);
        hub.close();
        let mut n = 1;
        while fast.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, EVENT_BUFFER);
    }
}
