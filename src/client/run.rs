//! The client's run loop: connect, pair or log in, keep alive, reconnect with backoff, and stop
//! for good on logout, version refusal or QR timeout. It owns the connection state; every change
//! goes out as an event.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep};

use super::events::{ConnState, Event};
use super::pair::{
    QrKeys, handle_pair_success, iq_result, pair_error_reply, parse_pair_device, qr_string,
};
use super::payload::{ClientProfile, RegistrationKeys, login_payload, registration_payload};
use super::reconnect::{Backoff, Setback};
use super::store::{Creds, CredsStore, Me};
use crate::binary::{Jid, Node};
use crate::socket::{ClientConfig, Incoming, NoiseSocket, connect};

/// QR display times: 60 s for the first ref, 20 s for each later one (WhatsApp Web).
const QR_FIRST: Duration = Duration::from_secs(60);
const QR_NEXT: Duration = Duration::from_secs(20);

/// Keepalive timing (whatsmeow: ping every 20–30 s, 10 s to answer).
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    /// Shortest interval between pings.
    pub min_interval: Duration,
    /// Longest interval between pings.
    pub max_interval: Duration,
    /// How long a ping may go unanswered.
    pub deadline: Duration,
}

impl Default for Keepalive {
    fn default() -> Keepalive {
        Keepalive {
            min_interval: Duration::from_secs(20),
            max_interval: Duration::from_secs(30),
            deadline: Duration::from_secs(10),
        }
    }
}

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
        let run = Run {
            opts,
            store,
            events: ev_tx,
            state: state_tx,
            stop: stop_rx,
        };
        tokio::spawn(run.run());
        (
            Client {
                state: state_rx,
                stop: stop_tx,
            },
            ev_rx,
        )
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
            let outcome = self.connection().await;
            backoff.connection_ended(started.elapsed());
            match outcome {
                Outcome::Final(s) => {
                    if matches!(s, ConnState::LoggedOut { .. }) {
                        // Unlinked: the keys are useless now and must not linger.
                        if let Err(e) = self.store.wipe().await {
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
        let creds = match self.load_creds().await {
            Ok(c) => c,
            Err(e) => return Outcome::Retry(Setback::Transient, e),
        };
        let payload = match &creds.me {
            Some(me) => match login_payload(&self.opts.profile, &me.jid, me.push_name.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    return Outcome::Final(ConnState::LoggedOut {
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
        let socket = match connect(
            &self.opts.socket,
            creds.noise.clone(),
            &payload.encode_to_vec(),
        )
        .await
        {
            Ok((s, _)) => s,
            Err(e) => return Outcome::Retry(Setback::Transient, e.to_string()),
        };
        match creds.me.clone() {
            None => {
                self.set(ConnState::AwaitingPair).await;
                self.pairing(socket, creds).await
            }
            Some(me) => {
                self.set(ConnState::LoggingIn).await;
                self.logged_in(socket, &creds, me.jid).await
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
                        Some(Incoming::Node(n)) => n,
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
                                creds.me = Some(Me {
                                    jid: paired.jid.clone(),
                                    lid: paired.lid.clone(),
                                    platform: paired.platform.clone(),
                                    business_name: paired.business_name.clone(),
                                    push_name: None,
                                    signed_identity: paired.signed_identity.clone(),
                                    account_signature_key: paired.account_signature_key,
                                });
                                // Persist before answering: a crash after the reply must not lose the link.
                                if let Err(e) = self.store.save(&creds).await {
                                    let _ = s.sender.send(&pair_error_reply(&paired.iq_id, &super::pair::PairError::Malformed("store"))).await;
                                    return Outcome::Retry(Setback::Transient, e.to_string());
                                }
                                let _ = s.sender.send(&reply).await;
                                self.emit(Event::PairSuccess {
                                    jid: paired.jid,
                                    lid: paired.lid,
                                    platform: paired.platform,
                                    business_name: paired.business_name,
                                }).await;
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
    async fn logged_in(&mut self, mut s: NoiseSocket, creds: &Creds, jid: Jid) -> Outcome {
        let ka = self.opts.keepalive;
        let mut stop = self.stop.clone();
        let mut next_ping = Instant::now() + ka.max_interval;
        let mut awaiting: Option<(String, Instant)> = None;
        let mut ping_seq = 0u64;
        loop {
            let wake = awaiting.as_ref().map(|(_, d)| *d).unwrap_or(next_ping);
            tokio::select! {
                _ = stopped(&mut stop) => return Outcome::Final(ConnState::Stopped),
                _ = tokio::time::sleep_until(wake) => {
                    if awaiting.is_some() {
                        return Outcome::Retry(Setback::Transient, "keepalive ping timed out".into());
                    }
                    ping_seq += 1;
                    let id = format!("ka-{ping_seq}");
                    let ping = Node::new("iq").attr("id", id.clone()).attr("xmlns", "w:p").attr("type", "get").attr("to", Jid::server_jid());
                    if s.sender.send(&ping).await.is_err() {
                        return Outcome::Retry(Setback::Transient, "socket closed".into());
                    }
                    awaiting = Some((id, Instant::now() + ka.deadline));
                }
                ev = s.incoming.recv() => {
                    let node = match ev {
                        Some(Incoming::Node(n)) => n,
                        Some(Incoming::Malformed(_)) => continue,
                        Some(Incoming::Closed(e)) => {
                            let why = e.map(|e| e.to_string()).unwrap_or_else(|| "closed by server".into());
                            return Outcome::Retry(Setback::Transient, why);
                        }
                        None => return Outcome::Retry(Setback::Transient, "closed by server".into()),
                    };
                    match node.tag.as_ref() {
                        "success" => {
                            let passive = Node::new("iq").attr("id", "passive-1").attr("xmlns", "passive").attr("type", "set").attr("to", Jid::server_jid()).children(vec![Node::new("active")]);
                            let _ = s.sender.send(&passive).await;
                            let _ = s.sender.send(&super::prekeys::count_query(COUNT_ID)).await;
                            self.set(ConnState::Connected).await;
                            self.emit(Event::Connected { jid: jid.clone() }).await;
                        }
                        "failure" => return failure_outcome(&node),
                        "iq" => {
                            let id = node.get_str("id").map(|s| s.into_owned());
                            if let (Some((want, _)), Some(id)) = (&awaiting, &id)
                                && want == id
                            {
                                awaiting = None;
                                let spread = ka.max_interval.saturating_sub(ka.min_interval).mul_f64(rand::random::<f64>());
                                next_ping = Instant::now() + ka.min_interval + spread;
                                continue;
                            }
                            if id.as_deref() == Some(COUNT_ID)
                                && let Some(n) = super::prekeys::parse_count(&node)
                            {
                                self.refill_pre_keys(&s, creds, n).await;
                                continue;
                            }
                            // Server pings must be answered.
                            if node.get_str("xmlns").as_deref() == Some("urn:xmpp:ping") && node.get_str("type").as_deref() == Some("get")
                                && let Some(id) = id
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
                                self.refill_pre_keys(&s, creds, n).await;
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

    /// Uploads prekeys when the server holds too few; keys are stored before they are offered.
    async fn refill_pre_keys(&self, s: &NoiseSocket, creds: &Creds, server_count: u32) {
        let next = match self.store.next_pre_key_id().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read prekey ids");
                return;
            }
        };
        let Some(n) = super::prekeys::wanted(server_count, next) else {
            return;
        };
        let keys = super::prekeys::generate(next, n);
        if let Err(e) = self.store.store_pre_keys(&keys).await {
            tracing::warn!(error = %e, "cannot store prekeys");
            return;
        }
        let node = super::prekeys::upload_node(
            UPLOAD_ID,
            creds.registration_id,
            &creds.identity.public,
            &keys,
            &creds.signed_pre_key,
        );
        let _ = s.sender.send(&node).await;
    }
}

/// Ids of the prekey iqs (one of each in flight per connection).
const COUNT_ID: &str = "prekey-count";
const UPLOAD_ID: &str = "prekey-upload";

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
fn failure_outcome(node: &Node) -> Outcome {
    let reason = node
        .get_str("reason")
        .map(|s| s.into_owned())
        .unwrap_or_default();
    match reason.as_str() {
        "405" => Outcome::Final(ConnState::ClientOutdated),
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
