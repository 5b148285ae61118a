//! The client's run loop: connect, pair or log in, keep alive, reconnect with backoff, and stop
//! for good on logout, version refusal or QR timeout. It owns the connection state; every change
//! goes out as an event.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep};

use super::events::{ConnState, Event, Linked};
use super::iq::{IqError, IqTracker};
pub use super::keepalive::Keepalive;
use super::pair::{
    QrKeys, handle_pair_success, iq_result, pair_error_reply, parse_pair_device, qr_string,
};
use super::payload::{ClientProfile, RegistrationKeys, login_payload, registration_payload};
use super::reconnect::{Backoff, Setback};
use super::store::{Creds, CredsStore};
use crate::binary::{Jid, Node};
use crate::signal::store::PreKeyStore;
use crate::signal::{IdentityTrust, SessionCipher};
use crate::socket::{ClientConfig, Incoming, NodeSender, NoiseSocket, connect};

/// Time allowed for the client's own iqs (the references use 60 s; the server answers in ms).
const IQ_TIMEOUT: Duration = Duration::from_secs(20);

/// QR display times: 60 s for the first ref, 20 s for each later one (WhatsApp Web).
const QR_FIRST: Duration = Duration::from_secs(60);
const QR_NEXT: Duration = Duration::from_secs(20);

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
}

/// A running client; dropping it (or [`Client::stop`]) ends the run loop.
#[derive(Debug)]
pub struct Client {
    state: watch::Receiver<ConnState>,
    stop: watch::Sender<bool>,
    link: Arc<Link>,
}

/// What the handle and the run loop share about the live connection.
#[derive(Debug, Default)]
struct Link {
    iq: IqTracker,
    /// The logged-in connection's sender (None while down or pairing).
    sender: std::sync::Mutex<Option<NodeSender>>,
    /// One prekey refill at a time (count answer and low-count notice may race).
    refill: tokio::sync::Mutex<()>,
}

impl Link {
    fn set_sender(&self, s: Option<NodeSender>) {
        if let Ok(mut g) = self.sender.lock() {
            *g = s;
        }
    }
}

impl Client {
    /// Starts the run loop; events arrive on the returned receiver.
    pub fn start<S: CredsStore>(
        opts: ClientOptions,
        store: Arc<S>,
    ) -> (Client, mpsc::Receiver<Event>) {
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let (state_tx, state_rx) = watch::channel(ConnState::Connecting);
        let (stop_tx, stop_rx) = watch::channel(false);
        let link = Arc::new(Link::default());
        let run = Run {
            opts,
            store,
            events: ev_tx,
            state: state_tx,
            stop: stop_rx,
            link: link.clone(),
        };
        tokio::spawn(run.run());
        (
            Client {
                state: state_rx,
                stop: stop_tx,
                link,
            },
            ev_rx,
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

    /// The current state.
    pub fn state(&self) -> ConnState {
        self.state.borrow().clone()
    }

    /// Waits until `pred` holds for the state (or the loop is gone).
    pub async fn wait_for(&mut self, pred: impl Fn(&ConnState) -> bool) -> ConnState {
        if let Ok(s) = self.state.wait_for(|s| pred(s)).await {
            return s.clone();
        }
        self.state.borrow().clone()
    }

    /// Stops the run loop (the socket closes; credentials stay).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// How one connection ended.
enum Outcome {
    /// Reconnect after the policy's delay.
    Retry(Setback, String),
    /// Stop in this final state.
    Final(ConnState),
}

struct Run<S> {
    opts: ClientOptions,
    store: Arc<S>,
    events: mpsc::Sender<Event>,
    state: watch::Sender<ConnState>,
    stop: watch::Receiver<bool>,
    link: Arc<Link>,
}

/// Aborts the connection's helper tasks when the connection ends.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Tasks {
    /// Adds a task, forgetting finished ones so a long connection does not accumulate handles.
    fn push(&mut self, t: tokio::task::JoinHandle<()>) {
        self.0.retain(|t| !t.is_finished());
        self.0.push(t);
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
    async fn set(&self, s: ConnState) {
        if *self.state.borrow() != s {
            let _ = self.state.send(s.clone());
            let _ = self.events.send(Event::State(s)).await;
        }
    }

    async fn emit(&self, e: Event) {
        let _ = self.events.send(e).await;
    }

    async fn run(mut self) {
        let mut backoff = self.opts.backoff.clone();
        loop {
            if *self.stop.borrow() {
                self.set(ConnState::Stopped).await;
                return;
            }
            self.set(ConnState::Connecting).await;
            let started = Instant::now();
            let outcome = Box::pin(self.connection()).await;
            backoff.connection_ended(started.elapsed());
            match outcome {
                Outcome::Final(s) => {
                    if matches!(s, ConnState::LoggedOut { .. }) {
                        // Unlinked: the keys are useless now and must not linger.
                        if let Err(e) = Box::pin(self.store.wipe()).await {
                            tracing::warn!(error = %e, "could not wipe credentials after logout");
                        }
                    }
                    self.set(s).await;
                    return;
                }
                Outcome::Retry(setback, reason) => {
                    let delay = backoff.next_delay(setback, rand::random::<f64>());
                    if delay > Duration::ZERO {
                        self.set(ConnState::Disconnected {
                            reason,
                            retry_in: delay,
                        })
                        .await;
                    }
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        _ = sleep(delay) => {}
                        _ = stopped(&mut stop) => {}
                    }
                }
            }
        }
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
        // Rarely-active steps are boxed: the futures of idle connections stay small.
        let creds = match Box::pin(self.load_creds()).await {
            Ok(c) => c,
            Err(e) => return Outcome::Retry(Setback::Transient, e),
        };
        let payload = match &creds.me {
            Some(me) => match login_payload(&self.opts.profile, &me.jid, me.push_name.as_deref()) {
                Ok(p) => p,
                // Our stored data is unusable: a local fault, never a reason to wipe the link.
                Err(e) => {
                    return Outcome::Final(ConnState::LocalError {
                        reason: e.to_string(),
                    });
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
            Err(e) => return Outcome::Retry(Setback::Transient, e.to_string()),
        };
        match creds.me.clone() {
            None => {
                self.set(ConnState::AwaitingPair).await;
                Box::pin(self.pairing(socket, creds)).await
            }
            Some(me) => {
                self.set(ConnState::LoggingIn).await;
                self.logged_in(socket, creds, me.jid).await
            }
        }
    }

    /// A registration connection: show QR codes, handle pair-success, expect the 515 restart.
    async fn pairing(&mut self, mut s: NoiseSocket, mut creds: Creds) -> Outcome {
        let mut refs: Vec<String> = Vec::new();
        let mut shown = 0usize;
        let qr_deadline = sleep(Duration::from_secs(3600));
        tokio::pin!(qr_deadline);
        let mut stop = self.stop.clone();
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return Outcome::Final(ConnState::Stopped),
                _ = &mut qr_deadline, if !refs.is_empty() => {
                    if shown >= refs.len() {
                        return Outcome::Final(ConnState::QrTimeout);
                    }
                    let valid_for = if shown == 0 { QR_FIRST } else { QR_NEXT };
                    let code = qr_string(&refs[shown], QrKeys {
                        noise_public: &creds.noise.public,
                        identity_public: &creds.identity.public,
                        adv_secret: &creds.adv_secret,
                    }, self.opts.profile.qr_platform());
                    shown += 1;
                    qr_deadline.as_mut().reset(Instant::now() + valid_for);
                    self.emit(Event::QrCode { code, valid_for }).await;
                }
                ev = s.incoming.recv() => {
                    let node = match ev {
                        Some(Incoming::Node(n)) => *n,
                        Some(Incoming::Malformed(_)) => continue,
                        Some(Incoming::Closed(e)) => {
                            let why = e.map(|e| e.to_string()).unwrap_or_else(|| "closed".into());
                            return Outcome::Retry(Setback::Transient, why);
                        }
                        None => return Outcome::Retry(Setback::Transient, "closed".into()),
                    };
                    if let Some((id, new_refs)) = parse_pair_device(&node) {
                        let _ = s.sender.send(&iq_result(&id)).await;
                        refs = new_refs;
                        shown = 0;
                        // Show the first code now.
                        qr_deadline.as_mut().reset(Instant::now());
                        continue;
                    }
                    if node.child("pair-success").is_some() {
                        match handle_pair_success(&node, &creds.identity, &creds.adv_secret) {
                            Ok((paired, reply)) => {
                                creds.me = Some(paired.me());
                                // Persist before answering: a crash after the reply must not lose the link.
                                if let Err(e) = self.store.save(&creds).await {
                                    let _ = s.sender.send(&pair_error_reply(&paired.iq_id, &super::pair::PairError::Malformed("store"))).await;
                                    return Outcome::Retry(Setback::Transient, e.to_string());
                                }
                                let _ = s.sender.send(&reply).await;
                                self.emit(Event::PairSuccess(Box::new(Linked {
                                    jid: paired.jid,
                                    lid: paired.lid,
                                    platform: paired.platform,
                                    business_name: paired.business_name,
                                }))).await;
                                refs.clear();
                            }
                            Err(e) => {
                                let id = node.get_str("id").map(|s| s.into_owned()).unwrap_or_default();
                                let _ = s.sender.send(&pair_error_reply(&id, &e)).await;
                                self.emit(Event::PairError { reason: e.to_string() }).await;
                            }
                        }
                        continue;
                    }
                    if let Some(o) = stream_end(&node) {
                        return o;
                    }
                }
            }
        }
    }

    /// A login connection: wait for success, then keep alive until it ends.
    async fn logged_in(&mut self, s: NoiseSocket, creds: Creds, jid: Jid) -> Outcome {
        let outcome = self.serve_logged_in(s, creds, jid).await;
        self.link.set_sender(None);
        self.link.iq.fail_all();
        outcome
    }

    async fn serve_logged_in(&mut self, mut s: NoiseSocket, mut creds: Creds, jid: Jid) -> Outcome {
        let cipher = SessionCipher::new(
            self.store.signal(),
            jid.to_string(),
            IdentityTrust::AcceptChanges,
        );
        let mut stop = self.stop.clone();
        let mut tasks = Tasks(Vec::new());
        let link = self.link.clone();
        let keepalive = self.opts.keepalive.run(&link.iq, &s.sender);
        tokio::pin!(keepalive);
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return Outcome::Final(ConnState::Stopped),
                why = &mut keepalive => return Outcome::Retry(Setback::Transient, why),
                ev = s.incoming.recv() => {
                    let node = match ev {
                        Some(Incoming::Node(n)) => *n,
                        Some(Incoming::Malformed(_)) => continue,
                        Some(Incoming::Closed(e)) => {
                            let why = e.map(|e| e.to_string()).unwrap_or_else(|| "closed by server".into());
                            return Outcome::Retry(Setback::Transient, why);
                        }
                        None => return Outcome::Retry(Setback::Transient, "closed by server".into()),
                    };
                    if link.iq.resolve(&node) {
                        continue;
                    }
                    match node.tag.as_ref() {
                        "success" => {
                            link.set_sender(Some(s.sender.clone()));
                            tasks.push(tokio::spawn(after_login(link.clone(), s.sender.clone(), self.store.clone(), creds.clone())));
                            self.set(ConnState::Connected).await;
                            self.emit(Event::Connected { jid: jid.clone() }).await;
                        }
                        "failure" => return failure_outcome(&node, &self.opts.profile),
                        "message" => Box::pin(self.on_message(&s.sender, &cipher, &mut creds, &node)).await,
                        "iq" => {
                            // Server pings must be answered.
                            if node.get_str("xmlns").as_deref() == Some("urn:xmpp:ping") && node.get_str("type").as_deref() == Some("get")
                                && let Some(id) = node.get_str("id")
                            {
                                let _ = s.sender.send(&iq_result(&id)).await;
                            }
                        }
                        "notification" => {
                            let _ = s.sender.send(&ack(&node)).await;
                            // The server's low-prekey notice (whatsmeow handleEncryptNotification).
                            if node.get_str("type").as_deref() == Some("encrypt")
                                && let Some(n) = super::prekeys::parse_count(&node)
                            {
                                let (link, sender, store, creds) = (link.clone(), s.sender.clone(), self.store.clone(), creds.clone());
                                tasks.push(tokio::spawn(async move {
                                    if let Err(e) = refill_pre_keys(&link, &sender, &*store, &creds, n).await {
                                        tracing::warn!(error = %e, "prekey refill failed");
                                    }
                                }));
                            }
                        }
                        _ => {
                            if let Some(o) = stream_end(&node) {
                                return o;
                            }
                        }
                    }
                }
            }
        }
    }
}

impl<S: CredsStore> Run<S> {
    /// Decrypts a message, learns our push name from our own devices' messages, and answers
    /// with the receipt once what it taught us is stored.
    async fn on_message(
        &self,
        sender: &NodeSender,
        cipher: &SessionCipher<S::Signal>,
        creds: &mut Creds,
        node: &Node,
    ) {
        let Some(me) = creds.me.as_mut() else { return };
        let received = match super::recv::decrypt(cipher, node, me).await {
            Ok(r) => r,
            Err(e) => {
                // Retry receipts and the undecryptable report come with messaging.
                tracing::warn!(error = %e, "message not decrypted");
                return;
            }
        };
        if received.from_me
            && let Some(name) = received.push_name.clone().filter(|n| !n.is_empty())
            && me.push_name.as_deref() != Some(name.as_str())
        {
            me.push_name = Some(name.clone());
            if let Err(e) = self.store.save(creds).await {
                // Unreceipted, the server delivers it again.
                tracing::warn!(error = %e, "cannot store push name");
                return;
            }
            self.emit(Event::PushName { name }).await;
        }
        let _ = sender.send(&super::recv::receipt(&received)).await;
    }
}

/// After `<success>`: go active, then top up prekeys (PROTOCOL.md §7.3).
async fn after_login<S: CredsStore>(
    link: Arc<Link>,
    sender: NodeSender,
    store: Arc<S>,
    creds: Creds,
) {
    let passive = Node::new("iq")
        .attr("xmlns", "passive")
        .attr("type", "set")
        .children(vec![Node::new("active")]);
    if let Err(e) = link.iq.query(&sender, passive, IQ_TIMEOUT).await {
        tracing::warn!(error = %e, "passive/active iq failed");
    }
    let count = match link
        .iq
        .query(&sender, super::prekeys::count_query(), IQ_TIMEOUT)
        .await
    {
        Ok(answer) => super::prekeys::parse_count(&answer),
        Err(e) => {
            tracing::warn!(error = %e, "prekey count query failed");
            return;
        }
    };
    let Some(n) = count else {
        tracing::warn!("prekey count answer without a count");
        return;
    };
    if let Err(e) = refill_pre_keys(&link, &sender, &*store, &creds, n).await {
        tracing::warn!(error = %e, "prekey upload failed");
    }
}

/// Why a refill did not happen.
#[derive(Debug, thiserror::Error)]
enum RefillError {
    #[error(transparent)]
    Store(#[from] crate::signal::StoreError),
    #[error(transparent)]
    Iq(#[from] IqError),
}

/// Uploads prekeys when the server holds too few; keys are stored before they are offered.
async fn refill_pre_keys<S: CredsStore>(
    link: &Link,
    sender: &NodeSender,
    store: &S,
    creds: &Creds,
    server_count: u32,
) -> Result<(), RefillError> {
    let _one_at_a_time = link.refill.lock().await;
    let signal = store.signal();
    let allocated = signal.pre_keys_allocated().await?;
    let Some(n) = super::prekeys::wanted(server_count, allocated) else {
        return Ok(());
    };
    let keys = signal.create_pre_keys(n).await?;
    let node = super::prekeys::upload_node(
        creds.registration_id,
        &creds.identity.public,
        &keys,
        &creds.signed_pre_key,
    );
    link.iq.query(sender, node, IQ_TIMEOUT).await?;
    Ok(())
}

/// `<ack class=tag id to [type]/>` for a received notification.
fn ack(node: &Node) -> Node {
    let mut a = Node::new("ack").attr("class", node.tag.to_string());
    if let Some(id) = node.get_str("id") {
        a = a.attr("id", id.into_owned());
    }
    if let Some(from) = node.get("from") {
        a = a.attr("to", from.clone());
    }
    if let Some(t) = node.get_str("type") {
        a = a.attr("type", t.into_owned());
    }
    a
}

/// Resolves once a stop was requested (the watch guard never crosses an await).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A `<failure reason>` at login (PROTOCOL.md §7.1).
fn failure_outcome(node: &Node, profile: &ClientProfile) -> Outcome {
    let reason = node
        .get_str("reason")
        .map(|s| s.into_owned())
        .unwrap_or_default();
    match reason.as_str() {
        "405" => Outcome::Final(ConnState::ClientOutdated {
            message: format!(
                "WhatsApp refused WhatsApp Web version {} as outdated (405); set {} to the current \
                 version (e.g. from web.whatsapp.com) and restart",
                profile.version_string(),
                super::payload::WA_VERSION_ENV
            ),
        }),
        "401" | "403" | "406" => Outcome::Final(ConnState::LoggedOut {
            reason: format!("login refused ({reason})"),
        }),
        "429" => Outcome::Retry(Setback::RateLimited, "rate limited (429)".into()),
        "500" | "503" => Outcome::Retry(Setback::Transient, format!("server error ({reason})")),
        other => Outcome::Retry(Setback::Transient, format!("login failure {other}")),
    }
}

/// A `<stream:error>` or `<xmlstreamend>` ends the connection (PROTOCOL.md §7.2).
fn stream_end(node: &Node) -> Option<Outcome> {
    match node.tag.as_ref() {
        "xmlstreamend" => Some(Outcome::Retry(
            Setback::Transient,
            "server closed the stream".into(),
        )),
        "stream:error" => {
            let code = node
                .get_str("code")
                .map(|s| s.into_owned())
                .unwrap_or_default();
            let conflict = node
                .child("conflict")
                .and_then(|c| c.get_str("type").map(|s| s.into_owned()));
            Some(match (code.as_str(), conflict.as_deref()) {
                ("515", _) => {
                    Outcome::Retry(Setback::RestartRequired, "restart required (515)".into())
                }
                (_, Some("device_removed")) | ("401", _) => Outcome::Final(ConnState::LoggedOut {
                    reason: "device removed from the phone".into(),
                }),
                // Another connection with our credentials took over: stop, but keep the link
                // (whatsmeow and Baileys do not log out here either).
                (_, Some("replaced")) => Outcome::Final(ConnState::Replaced),
                ("503", _) => Outcome::Retry(Setback::Transient, "server restarting (503)".into()),
                ("429", _) => Outcome::Retry(Setback::RateLimited, "rate limited (429)".into()),
                (c, _) => Outcome::Retry(Setback::Transient, format!("stream error {c}")),
            })
        }
        _ => None,
    }
}
