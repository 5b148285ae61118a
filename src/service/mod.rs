//! The service: one WhatsApp client per (subaccount, agent) over one store, started by
//! `connect`, resumed at start-up when still linked, stopped by `disconnect` or shutdown. It
//! keeps the connection rows and the activity log current from each client's events; its
//! in-memory maps hold only what is in use, and a maintenance task prunes old rows. It knows
//! the client and the store; it knows nothing of HTTP (the `api` layer maps its answers).

mod agents;
mod chats;
pub mod egress;
mod failure;
mod ids;
pub mod limits;
pub mod media;
mod media_probe;
pub use media_probe::{MAX_GIVEN_THUMBNAIL, MediaDraft, kind_of_mimetype};
mod outbox;
mod registry;
mod retention;
mod webhooks;

pub use crate::store::outbox::OutboxRow;
pub use crate::store::webhooks::{EVENTS as WEBHOOK_EVENTS, WebhookEvent};
pub use crate::store::webhooks::{FailureKind, ReplyIgnored};
pub use crate::store::{ConnectionCode, ConnectionStatus, DeliveryState, OutboxState};
pub use agents::DEFAULT_MAX_AGENTS;
pub use failure::SendFailure;
pub use ids::{Ids, RowContext};
pub use outbox::Pacing;
pub use retention::{PruneReport, Retention};
pub use webhooks::{
    ATTEMPT_HEADER, EVENT_HEADER, EVENT_ID_HEADER, MAX_ANSWER, REPLY_KEY_PREFIX, SIGNATURE_HEADER,
    WebhookSettings, WebhookView, signature,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::binary::{Jid, Server};
use crate::client::{Client, ClientOptions, ConnState, CredsStore, Event, SendError};
use crate::store::connections::{Activity, ConnectionRow, ConnectionUpdate, HistoryRow};
use crate::store::{AccountId, Store, StoreError};

/// How long `connect` waits for the first QR code (or the login of a linked account).
pub const CONNECT_WAIT: Duration = Duration::from_secs(20);

/// Why a service call failed (the API maps each to a status and a stable code).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No connection for this (subaccount, agent).
    #[error("no WhatsApp connection for this agent")]
    NotFound,
    /// The subaccount has as many agents as it may (`WA_GATEWAY_MAX_AGENTS`); a new one needs
    /// another removed first.
    #[error(
        "this subaccount has {0} agents, the most it may have; remove one \
         (DELETE /api/whatsapp/:subaccountId/:agentId) before adding another"
    )]
    AgentLimit(usize),
    /// The agent has no webhook.
    #[error("no webhook is set for this agent")]
    NoWebhook,
    /// No webhook event with that id.
    #[error("no webhook event with that id")]
    NoEvent,
    /// A webhook URL whose host is an address webhooks may not reach (loopback, private,
    /// link-local, …) while private addresses are not allowed.
    #[error(
        "`url` points at {0}, an address webhooks may not reach (loopback, private, link-local, \
         metadata or otherwise not public); WA_GATEWAY_WEBHOOK_ALLOW_PRIVATE=1 allows them"
    )]
    WebhookUrlNotAllowed(std::net::IpAddr),
    /// An idempotency key already used for another message or recipient (a client bug: a
    /// retry must repeat its request).
    #[error("this Idempotency-Key was used for another message or recipient")]
    IdempotencyKeyReused,
    /// An idempotency key in the space the service keeps for itself (webhook replies).
    #[error("Idempotency-Key may not start with `{0}` (the service's own keys)")]
    ReservedIdempotencyKey(&'static str),
    /// A send's outbox record went away before its outcome was known (its agent was removed,
    /// or the record pruned): whether it went out cannot be told.
    #[error(
        "the send was accepted, but its record was removed before it was confirmed; \
         whether it went out is unknown"
    )]
    SendGone,
    /// The media store failed.
    #[error("media store: {0}")]
    Blob(String),
    /// Media is off: no media store is configured.
    #[error("media is not available on this server (no media store)")]
    MediaOff,
    /// A file larger than its kind allows.
    #[error("the file is larger than {0} bytes, the most this kind of file may have")]
    MediaTooLarge(u64),
    /// An empty file.
    #[error("the file is empty")]
    MediaEmpty,
    /// No file to give for this message (none, or not fetched and not fetchable now).
    #[error("{0}")]
    MediaNotAvailable(String),
    /// The message's file could not be had (a check failed, it is gone, it is too large).
    #[error("the file could not be had: {0}")]
    MediaError(String),
    /// A byte range outside the file.
    #[error("the range lies outside the file")]
    BadRange,
    /// A signed media link that is not one of ours (malformed or its signature fails).
    #[error("this media link is not valid")]
    MediaLink,
    /// A signed media link past its time.
    #[error("this media link has expired")]
    MediaLinkExpired,
    /// A file that is not what it is sent as (its bytes, its mimetype and its kind disagree,
    /// or WhatsApp takes no such file for that kind).
    #[error("the file cannot be sent this way: {0}")]
    MediaRejected(String),
    /// A media URL that cannot or may not be fetched.
    #[error("the media URL cannot be used: {0}")]
    MediaUrl(String),
    /// The account is not connected to WhatsApp.
    #[error("WhatsApp is not connected for this agent ({0})")]
    NotConnected(String),
    /// WhatsApp did not answer in time (no QR, no login).
    #[error("WhatsApp did not answer in time")]
    Unreachable,
    /// The connection ended in a state that needs attention.
    #[error("the connection failed: {0}")]
    Failed(String),
    /// Sending failed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The database failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// One running client.
struct Session {
    account: AccountId,
    subaccount: String,
    agent: String,
    client: Client,
    /// The QR code showing now.
    qr: Mutex<Option<String>>,
}

/// What `connect` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connected {
    /// A QR code to scan.
    Qr(String),
    /// Already linked and logged in.
    Status(Status),
}

/// What `status` tells.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// Logged in to WhatsApp now.
    pub is_connected: bool,
    /// A client is running for it (connected, connecting, or showing a QR).
    pub is_active: bool,
    /// The QR code showing now, if any.
    pub qr: Option<String>,
    /// The guide's status: `not_initialized` (never connected), `pending`, `connected` or
    /// `disconnected`.
    pub status: ConnectionStatus,
    /// The precise state (None when `not_initialized`).
    pub code: Option<ConnectionCode>,
    /// The client's stable failure code, when the state came with one.
    pub reason: Option<String>,
    /// The phone number once linked.
    pub phone_number: Option<String>,
    /// The phone's platform.
    pub platform: Option<String>,
    /// The WhatsApp display name.
    pub pushname: Option<String>,
    /// The account's reach-out time-lock, once WhatsApp told it.
    pub reachout_timelock: Option<crate::client::ReachoutTimelock>,
}

/// The service over one store.
pub struct Service {
    store: Store,
    options: ClientOptions,
    sessions: Mutex<HashMap<AccountId, Arc<Session>>>,
    /// Serializes `connect`, `disconnect` and `delete_agent` per account (never two clients
    /// for one account); an account's entry lives while one of them runs.
    gates: registry::Registry<AccountId, tokio::sync::Mutex<()>>,
    /// How outboxes drain, and the subaccounts that drain unpaced.
    pacing: Pacing,
    unpaced: Vec<String>,
    /// How long a queued send may wait to be sent.
    send_ttl: Duration,
    /// A cold send while new chats are barred is refused (true) or held (`WA_GATEWAY_COLD_SEND`).
    cold_send: std::sync::atomic::AtomicBool,
    /// Wakes an account's drain when a send is queued; an entry lives while its drain runs.
    wakers: registry::Registry<AccountId, tokio::sync::Notify>,
    /// Wakes the requests waiting for a send's outcome (by outbox key); an entry lives while a
    /// request waits, and goes when the last one answers or is dropped.
    finished: registry::Registry<i64, tokio::sync::Notify>,
    /// Most agents a subaccount may have.
    max_agents: usize,
    /// How long old rows are kept, and how the pruner goes about it.
    retention: Retention,
    /// How webhooks are delivered, with what, and the dispatcher's wake-up.
    webhook_settings: WebhookSettings,
    http: reqwest::Client,
    /// The client for `media.url` fetches (`WA_GATEWAY_MEDIA_URL_ALLOW_PRIVATE`).
    media_http: reqwest::Client,
    /// The media link key, read from the store on first use.
    media_link_key: tokio::sync::OnceCell<zeroize::Zeroizing<[u8; 32]>>,
    webhook_wake: Arc<tokio::sync::Notify>,
    /// Set by `shutdown`: background tasks end.
    stopping: std::sync::atomic::AtomicBool,
    /// Some account has (or had) a webhook: client events wake the dispatcher.
    has_webhooks: std::sync::atomic::AtomicBool,
    /// Where media files are kept (None: media off).
    blobs: Option<Arc<dyn crate::store::blobs::BlobStore>>,
    /// Media limits and automatic download.
    media: media::MediaSettings,
    /// Wakes an account's downloader when a media message arrives.
    media_wakers: registry::Registry<AccountId, tokio::sync::Notify>,
    /// One fetch at a time per message's file (the downloader and a GET may both want it).
    media_flights: registry::Registry<i64, tokio::sync::Mutex<()>>,
}

/// How a service runs besides its store and client options.
#[derive(Debug, Clone, Default)]
pub struct ServiceOptions {
    /// How outboxes drain.
    pub pacing: Pacing,
    /// Subaccounts whose outboxes drain unpaced (load tests).
    pub unpaced: Vec<String>,
    /// How webhooks are delivered.
    pub webhooks: WebhookSettings,
    /// How long a queued send may wait to be sent; past it, it expires unsent
    /// (`WA_GATEWAY_SEND_TTL`; None: 24 h).
    pub send_ttl: Option<Duration>,
    /// Most agents one subaccount may have (`WA_GATEWAY_MAX_AGENTS`; None:
    /// [`DEFAULT_MAX_AGENTS`]).
    pub max_agents: Option<usize>,
    /// How long old rows are kept (`WA_GATEWAY_RETENTION_*`).
    pub retention: Retention,
    /// Where media files go, how large they may be, what is fetched unasked.
    pub media: media::MediaSettings,
}

/// How long a queued send waits at most unless configured (`WA_GATEWAY_SEND_TTL`).
pub const DEFAULT_SEND_TTL: Duration = Duration::from_secs(24 * 3600);

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field(
                "sessions",
                &self.sessions.lock().map(|s| s.len()).unwrap_or(0),
            )
            .finish()
    }
}

use crate::util::clock::now_ms_i64 as now_ms;

/// The connection row's state for a client state.
fn state_code(s: &ConnState) -> ConnectionCode {
    match s {
        ConnState::Connecting => ConnectionCode::Connecting,
        ConnState::AwaitingPair => ConnectionCode::AwaitingPair,
        ConnState::LoggingIn => ConnectionCode::LoggingIn,
        ConnState::Connected => ConnectionCode::Connected,
        ConnState::Disconnected { .. } => ConnectionCode::Reconnecting,
        ConnState::QrTimeout => ConnectionCode::QrTimeout,
        ConnState::LoggedOut { .. } => ConnectionCode::LoggedOut,
        ConnState::TempBanned { .. } => ConnectionCode::TempBanned,
        ConnState::ClientOutdated { .. } => ConnectionCode::ClientOutdated,
        ConnState::Replaced => ConnectionCode::Replaced,
        ConnState::LocalError { .. } => ConnectionCode::Error,
        ConnState::Stopped => ConnectionCode::Disconnected,
    }
}

impl Service {
    /// A service over `store`; each client gets `options` (labelled with its account);
    /// outboxes drain at the default pace.
    pub fn new(store: Store, options: ClientOptions) -> Arc<Service> {
        Service::with_pacing(store, options, Pacing::default(), Vec::new())
    }

    /// Like [`Service::new`], with outboxes drained at `pacing` except for the `unpaced`
    /// subaccounts (load tests).
    pub fn with_pacing(
        store: Store,
        options: ClientOptions,
        pacing: Pacing,
        unpaced: Vec<String>,
    ) -> Arc<Service> {
        Service::with_options(
            store,
            options,
            ServiceOptions {
                pacing,
                unpaced,
                ..Default::default()
            },
        )
    }

    /// A service over `store` run as `service` says; starts its webhook dispatcher (call within
    /// a Tokio runtime).
    pub fn with_options(
        store: Store,
        options: ClientOptions,
        service: ServiceOptions,
    ) -> Arc<Service> {
        let mut http = reqwest::Client::builder()
            // A webhook URL is where events go, not a place to be sent on from.
            .redirect(reqwest::redirect::Policy::none())
            // Through a proxy, the address connected to would be the proxy's and the resolver
            // below would check the wrong one: webhooks go direct.
            .no_proxy()
            .connect_timeout(service.webhooks.timeout)
            .user_agent(concat!("wa-gateway/", env!("CARGO_PKG_VERSION")));
        if !service.webhooks.allow_private {
            // Every name is resolved to public addresses only, at connection time.
            http = http.dns_resolver(Arc::new(egress::PublicOnly));
        }
        // Building fails only if the TLS backend cannot start; then no webhook could go.
        let http = http.build().expect("the webhook HTTP client starts");
        // Media URLs come from every caller, webhooks from operators: each has its own switch.
        let mut media_http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("wa-gateway/", env!("CARGO_PKG_VERSION")));
        if !service.media.url_allow_private {
            media_http = media_http.dns_resolver(Arc::new(egress::PublicOnly));
        }
        let media_http = media_http.build().expect("the media HTTP client starts");
        let blobs = service.media.blob_dir.as_ref().and_then(|dir| {
            match crate::store::blobs::FsBlobs::open(dir) {
                Ok(b) => Some(Arc::new(b) as Arc<dyn crate::store::blobs::BlobStore>),
                Err(e) => {
                    tracing::error!(error = %e, dir = %dir.display(), "media store unusable; media off");
                    None
                }
            }
        });
        let svc = Arc::new(Service {
            store,
            options,
            sessions: Mutex::new(HashMap::new()),
            gates: registry::Registry::default(),
            pacing: service.pacing,
            unpaced: service.unpaced,
            send_ttl: service.send_ttl.unwrap_or(DEFAULT_SEND_TTL),
            cold_send: std::sync::atomic::AtomicBool::new(false),
            wakers: registry::Registry::default(),
            finished: registry::Registry::default(),
            max_agents: service.max_agents.unwrap_or(DEFAULT_MAX_AGENTS),
            retention: service.retention,
            webhook_settings: service.webhooks,
            http,
            media_http,
            media_link_key: tokio::sync::OnceCell::new(),
            webhook_wake: Arc::default(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            has_webhooks: std::sync::atomic::AtomicBool::new(false),
            blobs,
            media: service.media,
            media_wakers: registry::Registry::default(),
            media_flights: registry::Registry::default(),
        });
        tokio::spawn(webhooks::dispatch(Arc::downgrade(&svc)));
        tokio::spawn(retention::maintain(Arc::downgrade(&svc)));
        if let Some(blobs) = svc.blobs.clone() {
            // Files a killed process was writing: never named, never served.
            tokio::spawn(async move {
                match blobs.clear_staging().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        files = n,
                        "unfinished media files of an earlier run removed"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot clear media staging"),
                }
            });
        }
        svc
    }

    /// How long a send request waits for WhatsApp's ack before answering `pending`.
    pub fn send_wait(&self) -> Duration {
        self.pacing.wait
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The gate of `account`: lock it to connect, disconnect or delete.
    fn gate(&self, account: AccountId) -> registry::Held<'_, AccountId, tokio::sync::Mutex<()>> {
        self.gates.hold(account)
    }

    fn session(&self, account: AccountId) -> Option<Arc<Session>> {
        self.sessions.lock().ok()?.get(&account).cloned()
    }

    /// Takes `account`'s session out of the map (only if it is `only`, when given) and wakes
    /// its drain, which then sees it is no longer current and ends, releasing its waker.
    fn end_session(&self, account: AccountId, only: Option<&Arc<Session>>) -> Option<Arc<Session>> {
        let ended = {
            let mut s = self.sessions.lock().ok()?;
            if only.is_some_and(|o| !s.get(&account).is_some_and(|c| Arc::ptr_eq(c, o))) {
                return None;
            }
            s.remove(&account)
        };
        self.wake(account);
        ended
    }

    /// Starts the clients of every linked connection (no QR: their credentials log in).
    pub async fn resume(self: &Arc<Self>) -> Result<usize, ServiceError> {
        let rows = self.store.resumable_connections().await?;
        let n = rows.len();
        let resumed: std::collections::HashSet<AccountId> =
            rows.iter().map(|r| r.account).collect();
        for row in rows {
            let gate = self.gate(row.account);
            let _g = gate.lock().await;
            if self.session(row.account).is_none() {
                self.start(row.account, &row.subaccount_id, &row.agent_id);
            }
        }
        // A row left `pending` or `connected` by a stop that no client takes up (a crash while
        // a QR showed: nothing was linked) is disconnected now; say so, in the row and by
        // webhook, rather than leave it `pending` for ever.
        for account in self.store.unsettled_connections().await? {
            if resumed.contains(&account) || self.session(account).is_some() {
                continue;
            }
            let gate = self.gate(account);
            let _g = gate.lock().await;
            if self.session(account).is_some() {
                continue;
            }
            let u = ConnectionUpdate {
                state: Some(ConnectionCode::Disconnected),
                reason: Some(Some("interrupted".into())),
                disconnected: true,
                ..Default::default()
            };
            self.store.update_connection(account, &u, now_ms()).await?;
        }
        Ok(n)
    }

    fn start(self: &Arc<Self>, account: AccountId, subaccount: &str, agent: &str) -> Arc<Session> {
        let mut options = self.options.clone();
        options.label = format!("{subaccount}/{agent}");
        let (client, events) = Client::start(options, Arc::new(self.store.creds(account)));
        let session = Arc::new(Session {
            account,
            subaccount: subaccount.to_owned(),
            agent: agent.to_owned(),
            client,
            qr: Mutex::new(None),
        });
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(account, session.clone());
        }
        tokio::spawn(self.clone().follow(session.clone(), events));
        tokio::spawn(self.clone().drain(session.clone()));
        tokio::spawn(self.clone().fetch_pending(session.clone()));
        session
    }

    /// Keeps the connection row and the activity log current from a client's events.
    async fn follow(self: Arc<Self>, session: Arc<Session>, mut events: crate::client::Events) {
        while let Some(e) = events.recv().await {
            // A session `disconnect` took out of the map speaks for nobody any more (its
            // logout must not overwrite the `disconnected` row).
            let current = self
                .session(session.account)
                .is_some_and(|s| Arc::ptr_eq(&s, &session));
            if !current {
                continue;
            }
            if let Event::Message(m) = &e
                && m.media.is_some()
            {
                self.media_wakers.with(session.account, |n| n.notify_one());
            }
            // A limit changed: the drain releases held sends once nothing bars new chats.
            if matches!(e, Event::ReachoutTimelock(_) | Event::NewChatCapping(_)) {
                self.wake(session.account);
            }
            let update = match &e {
                Event::QrCode { code, .. } => {
                    if let Ok(mut q) = session.qr.lock() {
                        *q = Some(code.clone());
                    }
                    Some(ConnectionUpdate {
                        qr_generated: Some(true),
                        state: Some(ConnectionCode::AwaitingPair),
                        ..Default::default()
                    })
                }
                Event::PairSuccess(l) => Some(ConnectionUpdate {
                    phone_number: Some(l.jid.user.clone()),
                    platform: l.platform.clone(),
                    ..Default::default()
                }),
                Event::PushName { name } => Some(ConnectionUpdate {
                    pushname: Some(name.clone()),
                    ..Default::default()
                }),
                Event::Connected { jid } => {
                    if let Ok(mut q) = session.qr.lock() {
                        *q = None;
                    }
                    self.activity(
                        &session,
                        None,
                        "whatsapp_connected",
                        serde_json::json!({
                            "phoneNumber": jid.user,
                        }),
                    )
                    .await;
                    Some(ConnectionUpdate {
                        state: Some(ConnectionCode::Connected),
                        reason: Some(None),
                        phone_number: Some(jid.user.clone()),
                        connected: true,
                        ..Default::default()
                    })
                }
                Event::State(s) => {
                    if !matches!(s, ConnState::AwaitingPair)
                        && let Ok(mut q) = session.qr.lock()
                    {
                        *q = None;
                    }
                    // Connected comes with its own event (and its phone number); a stop is
                    // ours (shutdown keeps the row as it was, so the link resumes at the next
                    // start; `disconnect` writes its own status).
                    (!matches!(s, ConnState::Connected | ConnState::Stopped)).then(|| {
                        ConnectionUpdate {
                            state: Some(state_code(s)),
                            reason: Some(s.code().map(str::to_owned)),
                            disconnected: s.is_final() && !matches!(s, ConnState::Stopped),
                            ..Default::default()
                        }
                    })
                }
                _ => None,
            };
            if let Some(u) = update
                && let Err(e) = self
                    .store
                    .update_connection(session.account, &u, now_ms())
                    .await
            {
                tracing::warn!(error = %e, "cannot update the connection row");
            }
            // The store may have queued a webhook event with what this announced, or with the
            // connection update just written.
            if matches!(
                e,
                Event::Message(_)
                    | Event::Receipt { .. }
                    | Event::State(_)
                    | Event::Connected { .. }
            ) {
                self.wake_webhooks();
            }
        }
        // The client has ended (its final state is in the row): the map keeps no client that
        // will never run again. One `disconnect` or `connect` replaced is not ours to remove.
        self.end_session(session.account, Some(&session));
    }

    async fn activity(
        &self,
        session: &Session,
        user: Option<&str>,
        kind: &str,
        details: serde_json::Value,
    ) {
        let a = activity(&session.subaccount, &session.agent, user, kind, &details);
        if let Err(e) = self.store.add_activity(&a).await {
            tracing::warn!(error = %e, "cannot log activity");
        }
    }

    /// Starts (or finds) the client of (subaccount, agent): the QR code to scan, or its status
    /// when it is linked and logs in. Never two clients for one agent.
    pub async fn connect(
        self: &Arc<Self>,
        subaccount: &str,
        agent: &str,
        user: Option<&str>,
    ) -> Result<Connected, ServiceError> {
        let account = self.account_within_cap(subaccount, agent).await?;
        let gate = self.gate(account);
        let _g = gate.lock().await;
        if self.store.find_account(subaccount, agent).await? != Some(account) {
            // Removed while this waited for its gate: connecting makes the agent anew.
            drop(_g);
            drop(gate);
            return Box::pin(self.connect(subaccount, agent, user)).await;
        }
        self.store.open_connection(account, user, now_ms()).await?;
        let session = match self.session(account) {
            Some(s) if !s.client.state().is_final() => s,
            _ => {
                self.store
                    .update_connection(
                        account,
                        &ConnectionUpdate {
                            state: Some(ConnectionCode::Connecting),
                            reason: Some(None),
                            ..Default::default()
                        },
                        now_ms(),
                    )
                    .await?;
                self.start(account, subaccount, agent)
            }
        };
        let wait = async {
            loop {
                if let Some(qr) = session.qr.lock().ok().and_then(|q| q.clone()) {
                    return Ok(Connected::Qr(qr));
                }
                let state = session.client.state();
                match state {
                    ConnState::Connected => {
                        return Ok(Connected::Status(
                            self.status_of(account, Some(&session)).await?,
                        ));
                    }
                    s if s.is_final() => {
                        return Err(ServiceError::Failed(state_code(&s).as_str().into()));
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(CONNECT_WAIT, wait)
            .await
            .unwrap_or(Err(ServiceError::Unreachable))
    }

    async fn status_of(
        &self,
        account: AccountId,
        session: Option<&Session>,
    ) -> Result<Status, ServiceError> {
        let row = self.store.connection_by_account(account).await?;
        Ok(status(row.as_ref(), session, self.liveness()))
    }

    /// The longest a live connection goes without receiving anything: a pong answers each
    /// ping, and pings go at most every keepalive interval.
    fn liveness(&self) -> Duration {
        let k = &self.options.keepalive;
        k.max_interval + k.deadline
    }

    /// The truth about (subaccount, agent).
    pub async fn status(&self, subaccount: &str, agent: &str) -> Result<Status, ServiceError> {
        let Some(row) = self.store.connection(subaccount, agent).await? else {
            return Ok(Status::default());
        };
        let session = self.session(row.account);
        Ok(status(Some(&row), session.as_deref(), self.liveness()))
    }

    /// Unlinks (subaccount, agent): the phone forgets the device, its keys are wiped, its
    /// client stops; what it still had to send is cancelled (its queued sends and its messages
    /// never acked, each with a `message.status` event), so nothing goes out after a later
    /// link, perhaps of another phone number; the connection row (status `disconnected`) and
    /// history stay.
    pub async fn disconnect(
        &self,
        subaccount: &str,
        agent: &str,
        user: Option<&str>,
    ) -> Result<(), ServiceError> {
        let Some(row) = self.store.connection(subaccount, agent).await? else {
            return Err(ServiceError::NotFound);
        };
        let gate = self.gate(row.account);
        let _g = gate.lock().await;
        let session = self.end_session(row.account, None);
        match &session {
            Some(s) => {
                s.client.logout().await;
            }
            None => {
                self.store
                    .creds(row.account)
                    .wipe()
                    .await
                    .map_err(|e| ServiceError::Failed(e.to_string()))?;
            }
        }
        // The client has stopped: nothing of the account is on its way any more.
        let cancelled = self.store.cancel_sends(row.account).await?;
        for pk in cancelled.sends.into_iter().chain(cancelled.sent) {
            self.finished(pk);
        }
        self.store
            .update_connection(
                row.account,
                &ConnectionUpdate {
                    state: Some(ConnectionCode::Disconnected),
                    reason: Some(None),
                    disconnected: true,
                    ..Default::default()
                },
                now_ms(),
            )
            .await?;
        let a = activity(
            subaccount,
            agent,
            user,
            "whatsapp_disconnected",
            &serde_json::json!({}),
        );
        self.store.add_activity(&a).await?;
        self.wake_webhooks();
        Ok(())
    }

    /// The history of (subaccount, agent), newest first.
    pub async fn history(
        &self,
        subaccount: &str,
        agent: &str,
        limit: u32,
        skip: u32,
    ) -> Result<(Vec<HistoryRow>, RowContext), ServiceError> {
        let Some(row) = self.store.connection(subaccount, agent).await? else {
            return Err(ServiceError::NotFound);
        };
        let mut rows = self.store.history(row.account, limit, skip).await?;
        let ctx = self.page_context(&row, &mut rows).await;
        Ok((rows, ctx))
    }

    /// The context of a page of `row`'s account's history rows (see
    /// [`Service::row_context`]).
    async fn page_context(&self, row: &ConnectionRow, rows: &mut [HistoryRow]) -> RowContext {
        let mut messages: Vec<&mut crate::client::messages::StoredMessage> =
            rows.iter_mut().map(|h| &mut h.message).collect();
        self.row_context(
            row.account,
            row.phone_number.as_deref(),
            &mut messages,
            &[],
            &[],
        )
        .await
    }

    /// A subaccount's connections, each with the status `status` would answer for it (its
    /// running client's, not what the row last said).
    pub async fn connections(&self, subaccount: &str) -> Result<Vec<ConnectionRow>, ServiceError> {
        let mut rows = self.store.connections(subaccount).await?;
        for row in &mut rows {
            let session = self.session(row.account);
            let now = status(Some(row), session.as_deref(), self.liveness());
            row.status = now.status;
            if let Some(code) = now.code {
                row.code = code;
            }
            row.reason = now.reason;
        }
        Ok(rows)
    }

    /// A subaccount's activities, newest first.
    pub async fn activities(
        &self,
        subaccount: &str,
        limit: u32,
        skip: u32,
    ) -> Result<Vec<Activity>, ServiceError> {
        Ok(self.store.activities(subaccount, limit, skip).await?)
    }

    /// Stops every client cleanly (what each was handling is stored; links stay) and the
    /// webhook dispatcher (an attempt cut short is made again at the next start).
    pub async fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.webhook_wake.notify_one();
        let sessions: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .map(|mut s| s.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        for s in sessions {
            // Its drain ends at once rather than at its next look at the queue.
            self.wake(s.account);
            s.client.shutdown().await;
        }
    }

    /// Whether the database answers.
    pub async fn database_ok(&self) -> bool {
        self.store.ping().await
    }

    /// How many clients are running.
    pub fn running(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// How many entries the service's in-memory maps hold now (logged by the maintenance
    /// task): each should follow what is in use, never grow with what has been.
    pub fn stats(&self) -> ServiceStats {
        ServiceStats {
            sessions: self.running(),
            gates: self.gates.len(),
            drains: self.wakers.len(),
            waiting_sends: self.finished.len(),
        }
    }
}

/// The sizes of the service's in-memory maps (see [`Service::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServiceStats {
    /// Clients kept (running, or showing a QR code).
    pub sessions: usize,
    /// Accounts whose connect, disconnect or delete is under way or waiting.
    pub gates: usize,
    /// Outbox drains running (one per account with a live client).
    pub drains: usize,
    /// Sends whose outcome at least one request is waiting for.
    pub waiting_sends: usize,
}

/// An activity of (subaccount, agent) now, in the guide's `chat` category.
fn activity(
    subaccount: &str,
    agent: &str,
    user: Option<&str>,
    kind: &str,
    details: &serde_json::Value,
) -> Activity {
    Activity {
        id: 0,
        subaccount_id: subaccount.to_owned(),
        agent_id: agent.to_owned(),
        user_id: user.map(str::to_owned),
        kind: kind.to_owned(),
        category: "chat".into(),
        details: details.to_string(),
        at_ms: now_ms(),
    }
}

/// A status from the stored row and the running client.
fn status(row: Option<&ConnectionRow>, session: Option<&Session>, liveness: Duration) -> Status {
    let Some(row) = row else {
        return Status::default();
    };
    let state = session.map(|s| s.client.state());
    // Logged in is not enough: a connection that has heard nothing (not even a pong) for longer
    // than a live one can is not reported connected, whatever its state says.
    let silent = session
        .and_then(|s| s.client.silent_for())
        .is_none_or(|d| d > liveness);
    let is_connected = state == Some(ConnState::Connected) && !silent;
    let qr = session.and_then(|s| s.qr.lock().ok().and_then(|q| q.clone()));
    let code = match &state {
        Some(ConnState::Connected) if silent => ConnectionCode::Unresponsive,
        Some(s) => state_code(s),
        // No client runs for it: whatever the row last said, it is not on its way any more.
        None if row.code.status() != ConnectionStatus::Disconnected => ConnectionCode::Disconnected,
        None => row.code,
    };
    Status {
        is_connected,
        is_active: state.as_ref().is_some_and(|s| !s.is_final()),
        qr,
        status: code.status(),
        code: Some(code),
        reason: match &state {
            Some(s) => s.code().map(str::to_owned),
            None => row.reason.clone(),
        },
        phone_number: row.phone_number.clone(),
        platform: row.platform.clone(),
        pushname: row.pushname.clone(),
        reachout_timelock: session.and_then(|s| s.client.reachout_timelock()),
    }
}

/// A user or group as the guide writes it: `…@c.us` for phone numbers, others as they are.
pub fn wire_user(j: &Jid) -> String {
    j.c_us()
}

/// A message as the guide's history lists it (webhooks carry the same object).
///
/// `fromPn`/`fromLid` name the author (the account itself for an outbound message),
/// `toPn`/`toLid` the recipient (the account itself for an inbound 1:1 message; both null for
/// a group message, whose `chat` names the group); null where the other form is not known.
/// `error` says why a failed send failed and what would lift it (`errorCode` stays WhatsApp's).
pub fn message_json(
    m: &crate::client::messages::StoredMessage,
    created_ms: Option<i64>,
    media_url: Option<&str>,
    ctx: &RowContext,
) -> serde_json::Value {
    use serde_json::{Value, json};
    let ts = i64::try_from(m.timestamp)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    let iso = crate::util::clock::iso8601_ms;
    let content = match &m.content {
        Value::Null => json!({}),
        c => c.clone(),
    };
    let reactions: Vec<Value> = m
        .reactions
        .iter()
        .map(|r| {
            let mut v = json!({
                "from": wire_user(&r.sender),
                "emoji": r.emoji,
                "timestamp": iso(i64::try_from(r.t).unwrap_or(i64::MAX).saturating_mul(1000)),
            });
            ctx.ids.put(&mut v, "from", Some(&r.sender));
            v
        })
        .collect();
    let mut out = json!({
        "messageId": message_id(&m.chat, &m.id, m.from_me),
        "from": if m.from_me { Value::Null } else { json!(wire_user(&m.sender)) },
        "to": if m.from_me { json!(wire_user(&m.chat)) } else { Value::Null },
        "message": m.text,
        "direction": if m.from_me { "outbound" } else { "inbound" },
        "timestamp": iso(ts),
        "hasMedia": m.kind.has_media(),
        "type": m.kind.as_str(),
        "createdAt": iso(created_ms.unwrap_or(ts)),
        "chat": wire_user(&m.chat),
        "status": m.status.as_str(),
        "errorCode": m.error,
        "content": content,
        "ephemeral": m.ephemeral,
        "viewOnce": m.view_once,
        "editedAt": m.edited_at.map(|t| iso(i64::try_from(t).unwrap_or(i64::MAX).saturating_mul(1000))),
        "revoked": m.kind == crate::client::content::Kind::Revoked,
        "reactions": reactions,
        "error": ctx.error(m),
    });
    // The account is one side of every 1:1 message; a group is no user.
    let me = ctx.ids.me();
    let (author, recipient) = if m.from_me {
        (me, Some(m.chat.clone()))
    } else {
        (Some(m.sender.clone()), me)
    };
    let recipient = recipient.filter(|_| m.chat.server != Server::Group);
    ctx.ids.put(&mut out, "from", author.as_ref());
    ctx.ids.put(&mut out, "to", recipient.as_ref());
    if let Some(Value::Object(file)) = &m.file {
        let mut file = file.clone();
        file.insert("downloadUrl".into(), json!(media_url));
        out["media"] = Value::Object(file);
    }
    out
}

/// A page of history rows as `{count, messages}`, each with its media's download URL.
pub fn messages_page(
    sub: &str,
    agent: &str,
    rows: &[HistoryRow],
    ctx: &RowContext,
) -> serde_json::Value {
    use serde_json::{Value, json};
    let messages: Vec<Value> = rows
        .iter()
        .map(|h| {
            let url = h.message.file.as_ref().map(|_| {
                // The serialized id: it names the chat too, so a same id elsewhere cannot
                // stand in for this message.
                format!(
                    "/api/whatsapp/{sub}/{agent}/messages/{}/media",
                    message_id(&h.message.chat, &h.message.id, h.message.from_me)
                )
            });
            message_json(&h.message, h.created_ms, url.as_deref(), ctx)
        })
        .collect();
    json!({ "count": messages.len(), "messages": messages })
}

/// The guide's message id: `<fromMe>_<chat>_<id>` (whatsapp-web.js's serialized key).
pub fn message_id(chat: &Jid, id: &str, from_me: bool) -> String {
    crate::client::messages::serialized_id(chat, id, from_me)
}
