//! The client's run loop: connect, pair or log in, reconnect with backoff, and stop for good on
//! logout, version refusal, QR timeout or a local error. It owns the connection state; every
//! change goes out as an event. What happens on a connection lives beside it: `linking.rs`
//! (QR pairing), `session.rs` (logged in: keepalive, messages, prekeys), `failure.rs` (what the
//! server's refusals mean).

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::watch;
use tokio::time::{Instant, sleep};
use tracing::Instrument;

use super::events::{ConnState, Event, EventHub, Events};
use super::iq::IqError;
pub use super::keepalive::Keepalive;
use super::link::{IQ_TIMEOUT, Link};
use super::messages::{GroupUpdate, StoredMessage};
use super::messenger::{
    GroupCall, GroupReply, Messaging, MessagingStats, Messenger, SendError, Sent,
};
use super::payload::{ClientProfile, RegistrationKeys, login_payload, registration_payload};
use super::reconnect::{Backoff, Setback};
use super::store::{Creds, CredsStore, CredsStoreError};
use crate::binary::{Jid, Node};
use crate::socket::{ClientConfig, NoiseSocket, connect};
use crate::stanza::group::{GroupInfo, MemberAction};

/// Everything a client needs besides its credential store.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Where and whom to connect to.
    pub socket: ClientConfig,
    /// How we describe ourselves (version, OS).
    pub profile: ClientProfile,
    /// Reconnect policy.
    pub backoff: Backoff,
    /// Keepalive timing.
    pub keepalive: Keepalive,
    /// Messaging behaviour.
    pub messaging: MessagingOptions,
    /// Names the account on every log line of this client (e.g. `subaccount/agent`).
    pub label: String,
}

/// How the client behaves as a messaging peer.
#[derive(Debug, Clone)]
pub struct MessagingOptions {
    /// How long a send waits for the server's ack before it answers `pending` (the message
    /// is then resent with the same id, after [`Self::resend_after`] or on the next
    /// connection).
    pub ack_timeout: Duration,
    /// The first delay before a message recorded but not acked is sent again after a failure
    /// that may pass (no ack in time, an iq timing out); it doubles with each try, up to ten
    /// minutes.
    pub resend_after: Duration,
    /// A message still not acked this long after it was first sent is given up: `failed`
    /// (the service sets it from `WA_GATEWAY_SEND_TTL`).
    pub give_up_after: Duration,
    /// Announce ourselves `available` after login, so our delivery receipts carry no type
    /// (WhatsApp shows us online while connected).
    pub announce_available: bool,
    /// A server-acked message no device receipts within this time is flagged
    /// ([`super::Event::Stuck`], counted in [`Client::stats`]).
    pub stuck_after: Duration,
    /// The HTTP client for WhatsApp's media CDN, shared by the clients of a process (None: the
    /// client makes its own on first use, trusting what its socket trusts).
    pub cdn: Option<super::cdn::Cdn>,
    /// How long a media retry waits for the phone to upload an expired file again
    /// (whatsapp-rust `MEDIA_RETRY_TIMEOUT`: 30 s).
    pub media_retry_wait: Duration,
}

impl Default for MessagingOptions {
    fn default() -> MessagingOptions {
        MessagingOptions {
            ack_timeout: Duration::from_secs(20),
            resend_after: Duration::from_secs(10),
            give_up_after: Duration::from_secs(24 * 3600),
            announce_available: true,
            stuck_after: Duration::from_secs(300),
            cdn: None,
            media_retry_wait: Duration::from_secs(30),
        }
    }
}

/// A running client; dropping it (or [`Client::stop`]) ends the run loop.
pub struct Client {
    state: watch::Receiver<ConnState>,
    link: Arc<Link>,
    hub: Arc<EventHub>,
    pub(super) messaging: Arc<dyn Messaging>,
    /// The client's span: calls made through this handle log under it too.
    span: tracing::Span,
    /// The media CDN's HTTP client: the shared one, or made on first use.
    pub(super) cdn: std::sync::OnceLock<super::cdn::Cdn>,
    /// What the socket trusts (the CDN trusts the same).
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
    /// How long a media retry waits for the phone.
    pub(super) media_retry_wait: Duration,
    /// The client's clock (what its stanzas and app-state actions are timed by).
    clock: Arc<dyn crate::util::clock::Clock>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts the run loop; events arrive on the returned receiver.
    pub fn start<S: CredsStore>(opts: ClientOptions, store: Arc<S>) -> (Client, Events) {
        let hub = Arc::new(EventHub::default());
        let events = hub.subscribe();
        let cdn = std::sync::OnceLock::new();
        if let Some(shared) = &opts.messaging.cdn {
            let _ = cdn.set(shared.clone());
        }
        let tls = opts.socket.tls.clone();
        let clock = opts.socket.clock.clone();
        let media_retry_wait = opts.messaging.media_retry_wait;
        let (state_tx, state_rx) = watch::channel(ConnState::Connecting);
        let link = Arc::new(Link::default());
        let messenger = Arc::new(Messenger::new(
            store.clone(),
            link.clone(),
            hub.clone(),
            opts.socket.clock.clone(),
            &opts.messaging,
            opts.socket.tls.clone(),
        ));
        let messaging: Arc<dyn Messaging> = messenger.clone();
        // Boxed: an async fn keeps both its argument and a moved copy of it in its future, so an
        // inline `Run` (424 bytes) was held twice by every client's task.
        let run = Box::new(Run {
            messenger,
            opts,
            store,
            events: hub.clone(),
            state: state_tx,
            link: link.clone(),
        });
        let closing = hub.clone();
        let span =
            tracing::info_span!("client", account = %run.opts.label, jid = tracing::field::Empty);
        // The messenger's workers log as the client does (every line names its account).
        run.messenger.start_workers(&span);
        let handle_span = span.clone();
        tokio::spawn(
            async move {
                run.run().await;
                // Subscribers end once they have read the final state.
                closing.close();
            }
            .instrument(span),
        );
        (
            Client {
                state: state_rx,
                link,
                hub,
                messaging,
                span: handle_span,
                cdn,
                tls,
                media_retry_wait,
                clock,
            },
            events,
        )
    }

    /// Sends an `<iq>` on the logged-in connection (id and `to` filled in when absent) and waits
    /// up to `timeout` for the answer; a `type="error"` answer is [`IqError::Server`].
    pub async fn query(&self, node: Node, timeout: Duration) -> Result<Node, IqError> {
        let sender = self
            .link
            .sender
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .ok_or(IqError::Disconnected)?;
        self.link.iq.query(&sender, node, timeout).await
    }

    /// Another subscriber to the client's events (from now on).
    pub fn subscribe(&self) -> Events {
        self.hub.subscribe()
    }

    /// A watch on the connection state (for a session manager).
    pub fn subscribe_state(&self) -> watch::Receiver<ConnState> {
        self.state.clone()
    }

    /// Now (unix seconds) on the client's clock: what a relative time given to the client
    /// (a mute of `seconds`) counts from, as its own app-state actions do.
    pub fn now_unix(&self) -> u64 {
        self.clock.now_unix()
    }

    /// The current state.
    pub fn state(&self) -> ConnState {
        self.state.borrow().clone()
    }

    /// How long the logged-in connection has received nothing (None while it is down). A live
    /// one hears a pong at least every keepalive interval plus its deadline.
    pub fn silent_for(&self) -> Option<Duration> {
        let at = (*self.link.heard.lock().ok()?)?;
        Some(at.elapsed())
    }

    /// Waits until `pred` holds for the state (or the loop is gone). Any number of callers
    /// may wait at once (the handle may be shared).
    pub async fn wait_for(&self, pred: impl Fn(&ConnState) -> bool) -> ConnState {
        let mut state = self.state.clone();
        if let Ok(s) = state.wait_for(|s| pred(s)).await {
            return s.clone();
        }
        state.borrow().clone()
    }

    /// Sends a text to `to` (a PN or LID user JID, or a group) and waits for the server's ack
    /// (up to the configured time). The message is stored before it is sent.
    pub async fn send_text(&self, to: &Jid, text: &str) -> Result<Sent, SendError> {
        self.messaging
            .send_text(to.clone(), text.to_owned(), None)
            .instrument(self.span.clone())
            .await
    }

    /// Like [`Client::send_text`] with the message id chosen by the caller (an outbox that
    /// recorded it first): sending an id already recorded (again, after a crash) transmits
    /// nothing and answers from the record — its status if acked or beyond, `pending` if it
    /// is still the resend loop's to send, [`SendError::AlreadyEnded`] if it failed, was
    /// cancelled or expired.
    pub async fn send_text_with_id(
        &self,
        to: &Jid,
        text: &str,
        id: &str,
    ) -> Result<Sent, SendError> {
        self.messaging
            .send_text(to.clone(), text.to_owned(), Some(id.to_owned()))
            .instrument(self.span.clone())
            .await
    }

    /// Sends a built message (see [`super::messages::Outgoing`]; media already uploaded) to
    /// `to`, with the id chosen by the caller when given (as [`Client::send_text_with_id`]).
    pub async fn send_message(
        &self,
        to: &Jid,
        out: super::messages::Outgoing,
        id: Option<&str>,
    ) -> Result<Sent, SendError> {
        self.messaging
            .send_content(to.clone(), out, id.map(str::to_owned))
            .instrument(self.span.clone())
            .await
    }

    /// Archives, pins, mutes or marks read a chat (or undoes it) as every device of the
    /// account sees it: an app-state patch (CLIENT-FEATURES §3.6). Needs the phone's key
    /// share; a conflicting change from another device is applied first.
    pub async fn chat_action(
        &self,
        chat: &Jid,
        action: super::messenger::ChatAction,
    ) -> Result<(), SendError> {
        self.messaging
            .chat_action(chat.clone(), action)
            .instrument(self.span.clone())
            .await
    }

    /// The account's reach-out time-lock as last learnt (WhatsApp's notification, or an
    /// answer after a 463); None until then.
    pub fn reachout_timelock(&self) -> Option<crate::stanza::mex::ReachoutTimelock> {
        self.messaging.timelock()
    }

    /// Whether a privacy token went with send `id`, which WhatsApp refused with 463 lately
    /// (this process, the last few hundred); None when not known.
    pub fn token_went(&self, id: &str) -> Option<bool> {
        self.messaging.token_went(id)
    }

    /// The account's new-chat message capping as last learnt (asked at connect, after a 463 or
    /// 475, or told by WhatsApp); None until then.
    pub fn new_chat_capping(&self) -> Option<crate::stanza::mex::NewChatCapping> {
        self.messaging.capping()
    }

    /// Whether `to` is warm (we hold its valid tctoken, or it wrote to us) or cold: what the
    /// reach-out limits apply to.
    pub async fn warmth(&self, to: &Jid) -> super::messenger::Warmth {
        self.messaging.warmth(to.clone()).await
    }

    /// Asks WhatsApp for the account's reach-out time-lock now.
    pub async fn fetch_reachout_timelock(
        &self,
    ) -> Result<crate::stanza::mex::ReachoutTimelock, SendError> {
        self.messaging
            .fetch_timelock()
            .instrument(self.span.clone())
            .await
    }

    /// Tells `author` (in `chat`) that we read the messages `ids`.
    pub async fn mark_read(
        &self,
        chat: &Jid,
        author: &Jid,
        ids: &[String],
    ) -> Result<(), SendError> {
        self.messaging
            .mark_read(chat.clone(), author.clone(), ids.to_vec())
            .instrument(self.span.clone())
            .await
    }

    async fn group(&self, call: GroupCall) -> Result<GroupReply, SendError> {
        self.messaging
            .group(call)
            .instrument(self.span.clone())
            .await
    }

    /// A group's metadata, asked of the server (and stored).
    pub async fn group_info(&self, group: &Jid) -> Result<GroupInfo, SendError> {
        match self.group(GroupCall::Info(group.clone())).await? {
            GroupReply::Info(i) => Ok(*i),
            _ => Err(unexpected()),
        }
    }

    /// Creates a group with `participants` (user JIDs); we are its creator and admin.
    pub async fn create_group(
        &self,
        subject: &str,
        participants: &[Jid],
    ) -> Result<GroupInfo, SendError> {
        match self
            .group(GroupCall::Create(subject.to_owned(), participants.to_vec()))
            .await?
        {
            GroupReply::Info(i) => Ok(*i),
            _ => Err(unexpected()),
        }
    }

    /// Adds, removes, promotes or demotes members of `group`; each member's outcome (an error
    /// code when refused). Removing members starts our sender key over.
    pub async fn change_group_members(
        &self,
        group: &Jid,
        action: MemberAction,
        members: &[Jid],
    ) -> Result<Vec<(Jid, Option<u16>)>, SendError> {
        match self
            .group(GroupCall::Members(group.clone(), action, members.to_vec()))
            .await?
        {
            GroupReply::Members(m) => Ok(m),
            _ => Err(unexpected()),
        }
    }

    /// Leaves `group`.
    pub async fn leave_group(&self, group: &Jid) -> Result<(), SendError> {
        self.group(GroupCall::Leave(group.clone()))
            .await
            .map(|_| ())
    }

    /// Changes `group`'s subject.
    pub async fn set_group_subject(&self, group: &Jid, subject: &str) -> Result<(), SendError> {
        self.group(GroupCall::Subject(group.clone(), subject.to_owned()))
            .await
            .map(|_| ())
    }

    /// The stored changes of `group` (members, subject), newest first.
    pub async fn group_updates(
        &self,
        group: &Jid,
        limit: u32,
    ) -> Result<Vec<GroupUpdate>, SendError> {
        match self.group(GroupCall::Updates(group.clone(), limit)).await? {
            GroupReply::Updates(u) => Ok(u),
            _ => Err(unexpected()),
        }
    }

    /// Counts of decrypt failures, identity changes, refusals and stuck messages.
    pub fn stats(&self) -> MessagingStats {
        self.messaging.stats()
    }

    /// Stored messages, newest first (one chat, or all).
    pub async fn messages(
        &self,
        chat: Option<&Jid>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<StoredMessage>, CredsStoreError> {
        self.messaging
            .messages(chat.cloned(), limit, offset)
            .instrument(self.span.clone())
            .await
    }

    /// Asks our phone for up to `count` older messages of `chat` (before the oldest stored);
    /// they arrive as an `ON_DEMAND` history chunk. Returns the request's message id.
    pub async fn request_history(&self, chat: &Jid, count: u32) -> Result<String, SendError> {
        self.messaging
            .request_history(chat.clone(), count)
            .instrument(self.span.clone())
            .await
    }

    /// The account's chats: pinned first, then by their newest message.
    pub async fn chats(
        &self,
        limit: u32,
        skip: u32,
    ) -> Result<Vec<super::account::ChatSummary>, CredsStoreError> {
        match self
            .messaging
            .account_store(super::messenger::AccountCall::Chats(limit, skip))
            .await?
        {
            super::messenger::AccountReply::Chats(c) => Ok(c),
            _ => Ok(Vec::new()),
        }
    }

    /// The account's contacts.
    pub async fn contacts(
        &self,
        limit: u32,
        skip: u32,
    ) -> Result<Vec<super::account::Contact>, CredsStoreError> {
        match self
            .messaging
            .account_store(super::messenger::AccountCall::Contacts(limit, skip))
            .await?
        {
            super::messenger::AccountReply::Contacts(c) => Ok(c),
            _ => Ok(Vec::new()),
        }
    }

    /// One contact, by its phone-number or LID JID.
    pub async fn contact(
        &self,
        jid: &Jid,
    ) -> Result<Option<super::account::Contact>, CredsStoreError> {
        match self
            .messaging
            .account_store(super::messenger::AccountCall::Contact(jid.to_non_ad()))
            .await?
        {
            super::messenger::AccountReply::Contact(c) => Ok(*c),
            _ => Ok(None),
        }
    }

    /// Stops the run loop (the socket closes; credentials stay).
    pub fn stop(&self) {
        self.link.stop.request();
    }

    /// Stops the client and returns once its connection is closed and what it was handling
    /// is stored (messages in flight are committed and receipted, or left for redelivery).
    pub async fn shutdown(&self) -> ConnState {
        self.stop();
        self.wait_for(ConnState::is_final).await
    }

    /// Unlinks this device: asks WhatsApp to remove it from the phone's linked devices, then
    /// wipes its keys and stops (`LoggedOut` with code `logout`). Messages stay stored. The
    /// keys are wiped even when WhatsApp cannot be told (offline): the link is then dead on
    /// our side and the phone shows it until it expires.
    pub async fn logout(&self) -> ConnState {
        let me = self.link.own_jid();
        if let Some(jid) = me {
            let iq = Node::new("iq")
                .attr("xmlns", "md")
                .attr("type", "set")
                .attr("to", Jid::server_jid())
                .children(vec![
                    Node::new("remove-companion-device")
                        .attr("jid", jid)
                        .attr("reason", "user_initiated"),
                ]);
            if let Err(e) = self
                .query(iq, IQ_TIMEOUT)
                .instrument(self.span.clone())
                .await
            {
                tracing::warn!(error = %e, "logout not confirmed by the server; wiping anyway");
            }
        }
        self.link
            .logging_out
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop();
        self.wait_for(ConnState::is_final).await
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.link.stop.request();
    }
}

/// How one connection ended.
pub(super) enum Outcome {
    /// Reconnect after the policy's delay: why (a stable code and the text).
    Retry(Setback, &'static str, String),
    /// Stop in this final state.
    Final(ConnState),
}

/// The run loop's state; the connection kinds are in `linking.rs` (QR pairing) and
/// `session.rs` (a logged-in connection).
pub(super) struct Run<S: CredsStore> {
    pub(super) messenger: Arc<Messenger<S>>,
    pub(super) opts: ClientOptions,
    pub(super) store: Arc<S>,
    pub(super) events: Arc<EventHub>,
    pub(super) state: watch::Sender<ConnState>,
    pub(super) link: Arc<Link>,
}

/// Aborts the connection's helper tasks when the connection ends.
pub(super) struct Tasks(pub(super) Vec<tokio::task::JoinHandle<()>>);

impl Tasks {
    /// Spawns a helper task, forgetting finished ones so a long connection does not accumulate
    /// handles. The future is boxed: a task's memory lives as long as its handle (here, until
    /// the connection ends or the next helper starts), while a boxed future is freed as soon as
    /// it completes. Unboxed, the finished login task kept 10.4 KB per idle client (massif,
    /// benches/README.md).
    pub(super) fn spawn(&mut self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        self.0.retain(|t| !t.is_finished());
        self.0.push(tokio::spawn(Box::pin(f)));
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl<S: CredsStore> Run<S> {
    pub(super) async fn set(&self, s: ConnState) {
        if *self.state.borrow() != s {
            let _ = self.state.send(s.clone());
            self.events.publish(Event::State(s));
        }
    }

    pub(super) async fn emit(&self, e: Event) {
        self.events.publish(e);
    }

    async fn run(mut self: Box<Self>) {
        let mut backoff = self.opts.backoff.clone();
        loop {
            if self.link.stop.is_requested() {
                self.finish(ConnState::Stopped).await;
                return;
            }
            self.set(ConnState::Connecting).await;
            let started = Instant::now();
            let outcome = Box::pin(self.connection()).await;
            backoff.connection_ended(started.elapsed());
            match outcome {
                Outcome::Final(s) => {
                    self.finish(s).await;
                    return;
                }
                Outcome::Retry(setback, code, reason) => {
                    let delay = backoff.next_delay(setback, rand::random::<f64>());
                    if delay > Duration::ZERO {
                        self.set(ConnState::Disconnected {
                            code,
                            reason,
                            retry_in: delay,
                        })
                        .await;
                    }
                    let link = self.link.clone();
                    tokio::select! {
                        _ = sleep(delay) => {}
                        _ = link.stop.requested() => {}
                    }
                }
            }
        }
    }

    /// Ends the run loop in state `s`, wiping the keys when the link is gone (WhatsApp logged
    /// us out, or the owner asked to).
    async fn finish(&self, mut s: ConnState) {
        if self
            .link
            .logging_out
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            s = ConnState::LoggedOut {
                code: "logout",
                reason: "logged out by the owner".into(),
            };
        }
        if matches!(s, ConnState::LoggedOut { .. }) {
            // Unlinked: the keys are useless now and must not linger.
            if let Err(e) = Box::pin(self.store.wipe()).await {
                tracing::warn!(error = %e, "could not wipe credentials after logout");
            }
        }
        self.set(s).await;
    }

    async fn load_creds(&self) -> Result<Creds, String> {
        match self.store.load().await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => {
                let now_ms = self.opts.socket.clock.now_unix() * 1000;
                let c = Creds::generate(now_ms);
                self.store.save(&c).await.map_err(|e| e.to_string())?;
                Ok(c)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// One connection from handshake to close.
    async fn connection(&mut self) -> Outcome {
        // Opening is boxed and over before the connection idles, so what it held (the payload,
        // copies of the credentials, the handshake) is freed: inline, it stayed in every idle
        // client's connection future (1.8 KB, rustc -Zprint-type-sizes).
        match Box::pin(self.open()).await {
            Opened::Ended(outcome) => outcome,
            Opened::Pairing(socket, creds) => {
                self.set(ConnState::AwaitingPair).await;
                Box::pin(self.pairing(socket, *creds)).await
            }
            Opened::LoggingIn(socket, creds, jid) => {
                self.set(ConnState::LoggingIn).await;
                self.logged_in(socket, creds, jid).await
            }
        }
    }

    /// Loads (or creates) the credentials and runs the handshake with the payload they call for.
    async fn open(&mut self) -> Opened {
        let creds = match Box::pin(self.load_creds()).await {
            Ok(c) => c,
            Err(e) => {
                return Opened::Ended(Outcome::Retry(Setback::Transient, "store_unavailable", e));
            }
        };
        let payload = match &creds.me {
            Some(me) => match login_payload(&self.opts.profile, &me.jid, me.push_name.as_deref()) {
                Ok(p) => p,
                // Our stored data is unusable: a local fault, never a reason to wipe the link.
                Err(e) => {
                    return Opened::Ended(Outcome::Final(ConnState::LocalError {
                        reason: e.to_string(),
                    }));
                }
            },
            None => registration_payload(
                &self.opts.profile,
                RegistrationKeys {
                    registration_id: creds.registration_id,
                    identity: &creds.identity.public,
                    signed_pre_key_id: creds.signed_pre_key.id,
                    signed_pre_key: &creds.signed_pre_key.key_pair.public,
                    signed_pre_key_signature: &creds.signed_pre_key.signature,
                },
            ),
        };
        let socket = match Box::pin(connect(
            &self.opts.socket,
            creds.noise.clone(),
            &payload.encode_to_vec(),
        ))
        .await
        {
            Ok((s, _)) => s,
            Err(e) => {
                return Opened::Ended(Outcome::Retry(
                    Setback::Transient,
                    "connect_failed",
                    e.to_string(),
                ));
            }
        };
        match creds.me.as_ref().map(|me| me.jid.clone()) {
            None => Opened::Pairing(socket, Box::new(creds)),
            Some(jid) => Opened::LoggingIn(socket, Arc::new(creds), jid),
        }
    }
}

/// Where opening a connection led.
enum Opened {
    /// A new device: show QR codes (boxed: this variant is rare and the credentials large).
    Pairing(NoiseSocket, Box<Creds>),
    /// A linked device: log in as this JID; the logged-in connection shares the credentials
    /// with its helper tasks instead of copying them.
    LoggingIn(NoiseSocket, Arc<Creds>, Jid),
    /// It ended before a socket was up.
    Ended(Outcome),
}

/// A reply of the wrong kind to a group call (a bug, never the peer's doing).
fn unexpected() -> SendError {
    SendError::Iq(super::iq::IqError::Server {
        code: 500,
        text: "unexpected group reply".into(),
    })
}
