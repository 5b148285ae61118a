//! The simulator's handle and Rust API: it starts the listener (plain `ws://` or `wss://` with
//! its own CA) and the media CDN (HTTPS with the same CA), accepts WebSocket connections, at most [`MAX_HANDSHAKES`] in their handshake at
//! once, hands each to `conn.rs`, runs the delivery task, and lets tests and the control API
//! drive simulated users, inject faults and read what happened (what each user's devices
//! read, the stanzas the server answered and how many times each id was transmitted).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::cdn::{CdnConfig, CdnFault, MediaInfo, Refusal, StoreError, TransferInfo, Uploaded};
use super::deliver::DELIVERY_QUEUE;
use super::error::SimError;
use super::inbox::Received;
use super::pair::{Tamper, parse_qr};
use super::phone_media::{MediaSend, SentMedia};
use super::server::{
    Control, Eavesdrop, Fault, HistorySent, MAX_HANDSHAKES, Scan, Shared, State, Work, timelock,
    valid_number,
};
use super::stanza_log::{Logged, StanzaLog, Transmissions};
use crate::binary::{Jid, Node, Server};
use crate::proto::wa;
use crate::socket::ServerIdentity;
use crate::stanza::group::{AddressingMode, GroupInfo, MemberAction};
use crate::util::clock::{Clock, SystemClock};

/// How long a reach-out lock set through the control API lasts.
const REACH_OUT_LOCK_SECS: u64 = 24 * 3600;

/// Where a simulator listens, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listeners {
    /// The WebSocket listener (port 0 picks a free port).
    pub ws: SocketAddr,
    /// Serve `wss://` with the simulator's CA, as WhatsApp does, rather than plain `ws://`.
    pub wss: bool,
    /// The media CDN's HTTPS listener; None: the WebSocket's IP, a free port.
    pub cdn: Option<SocketAddr>,
}

/// A running simulator.
#[derive(Clone)]
pub struct Simulator {
    pub(super) shared: Arc<Shared>,
    ws_url: String,
    cdn_url: String,
    /// The CA behind the CDN's certificate (and the `wss://` one).
    ca_pem: Arc<str>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Simulator {{ ws_url: {}, cdn_url: {} }}",
            self.ws_url, self.cdn_url
        )
    }
}

/// A host clients can reach `addr` at: a wildcard address becomes loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

impl Simulator {
    /// Starts listening on `listen` (port 0 picks a free port) with a fresh certificate chain,
    /// serving plain `ws://` (the media CDN is HTTPS all the same, on the same IP).
    pub async fn start(listen: SocketAddr) -> Result<Simulator, SimError> {
        Simulator::start_on(Listeners {
            ws: listen,
            wss: false,
            cdn: None,
        })
        .await
    }

    /// Like [`Simulator::start`], serving `wss://` as WhatsApp does, with a TLS certificate
    /// for `localhost` and the listening IP issued by a CA generated here
    /// ([`Simulator::ca_cert_pem`]: what a client must trust besides the webpki roots).
    pub async fn start_tls(listen: SocketAddr) -> Result<Simulator, SimError> {
        Simulator::start_on(Listeners {
            ws: listen,
            wss: true,
            cdn: None,
        })
        .await
    }

    /// Starts the WebSocket listener and the media CDN where `at` says. A CA is generated
    /// either way: it issues the CDN's certificate, and the socket's with `wss`.
    pub async fn start_on(at: Listeners) -> Result<Simulator, SimError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let identity = ServerIdentity::generate(clock.now_unix(), 365 * 86_400);
        let listener = TcpListener::bind(at.ws).await?;
        let addr = listener.local_addr()?;
        let cdn_listener =
            TcpListener::bind(at.cdn.unwrap_or_else(|| SocketAddr::new(addr.ip(), 0))).await?;
        let cdn_addr = reachable(cdn_listener.local_addr()?);
        let tls = super::tls::SimTls::generate(&[addr.ip(), cdn_addr.ip()])?;
        let cdn = Arc::new(super::cdn::Cdn::new(cdn_addr.to_string(), clock.clone())?);
        tokio::spawn(super::cdn_http::serve(
            cdn_listener,
            tls.acceptor.clone(),
            Arc::downgrade(&cdn),
        ));
        let (deliveries, mut queued) = mpsc::channel::<Box<dyn Work>>(DELIVERY_QUEUE);
        let shared = Arc::new(Shared {
            identity,
            clock,
            state: Mutex::new(State::default()),
            deliveries,
            cdn,
        });
        // The worker holds the state weakly: dropping the simulator ends it.
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            while let Some(w) = queued.recv().await {
                let Some(shared) = weak.upgrade() else { break };
                w.run(&shared).await;
            }
        });
        let s = shared.clone();
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let acceptor = at.wss.then(|| tls.acceptor.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (s, handshakes, acceptor) = (s.clone(), handshakes.clone(), acceptor.clone());
                tokio::spawn(async move {
                    // Waiting for a slot and the TLS handshake count against the handshake
                    // timeout: a flood of silent sockets holds a slot for 20 s at most.
                    let limit = tokio::time::sleep(crate::socket::conn::HANDSHAKE_TIMEOUT);
                    tokio::pin!(limit);
                    let permit = tokio::select! {
                        p = handshakes.acquire_owned() => p,
                        _ = &mut limit => return,
                    };
                    let Ok(permit) = permit else { return };
                    match acceptor {
                        None => super::conn::serve(s, tcp, permit).await,
                        Some(acceptor) => {
                            let tls = tokio::select! {
                                t = acceptor.accept(tcp) => t,
                                _ = &mut limit => return,
                            };
                            if let Ok(stream) = tls {
                                super::conn::serve(s, stream, permit).await;
                            }
                        }
                    }
                });
            }
        });
        let scheme = if at.wss { "wss" } else { "ws" };
        Ok(Simulator {
            shared,
            ws_url: format!("{scheme}://{addr}/ws/chat"),
            cdn_url: format!("https://{cdn_addr}"),
            ca_pem: Arc::from(tls.ca_pem.as_str()),
        })
    }

    /// The WebSocket URL clients connect to.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// The PEM of the simulator's CA: it issued the media CDN's certificate and, with
    /// `wss://`, the socket's. Always present now (an `Option` from when only `wss://` had a
    /// CA).
    pub fn ca_cert_pem(&self) -> Option<&str> {
        Some(&self.ca_pem)
    }

    /// The media CDN's `host:port`, as `media_conn` names it (`<host hostname>`).
    pub fn cdn_host(&self) -> &str {
        self.shared.cdn.host()
    }

    /// The media CDN's base URL (`https://host:port`).
    pub fn cdn_url(&self) -> &str {
        &self.cdn_url
    }

    /// The CDN's lifetimes and limits in force.
    pub fn cdn_config(&self) -> CdnConfig {
        self.shared.cdn.config()
    }

    /// Changes the CDN's lifetimes and limits (for auth and links handed out from now on).
    pub fn set_cdn_config(&self, config: CdnConfig) {
        self.shared.cdn.set_config(config);
    }

    /// Injects a CDN fault; returns how many blobs it touched (1 for the upload and auth
    /// faults, 0 when no blob matched).
    pub fn cdn_fault(&self, fault: &CdnFault) -> usize {
        self.shared.cdn.fault(fault)
    }

    /// The blobs the CDN holds, oldest first.
    pub fn cdn_media(&self) -> Vec<MediaInfo> {
        self.shared.cdn.list()
    }

    /// The CDN's uploads and downloads under way, oldest first.
    pub fn cdn_transfers(&self) -> Vec<TransferInfo> {
        self.shared.cdn.transfers()
    }

    /// Stores already-encrypted `bytes` as a blob of `mms_type` on the CDN, as a simulated
    /// phone does with its own media before sending it: its URL and direct path.
    pub fn store_media(&self, mms_type: &str, bytes: &[u8]) -> Result<Uploaded, StoreError> {
        self.shared.cdn.store(mms_type, bytes)
    }

    /// The bytes the CDN serves for `direct_path` (read whole: for tests and small blobs), or
    /// why it refuses them.
    pub fn media_bytes(&self, direct_path: &str) -> Result<Vec<u8>, Refusal> {
        use std::io::Read;
        let (mut f, size) = self.shared.cdn.open(direct_path)?;
        let mut v = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 26));
        f.read_to_end(&mut v).map_err(|_| Refusal::NotFound)?;
        Ok(v)
    }

    /// The directory the CDN keeps blobs in (removed with the simulator's state).
    pub fn cdn_dir(&self) -> &std::path::Path {
        self.shared.cdn.dir()
    }

    /// The root public key clients must trust.
    pub fn root_public_key(&self) -> [u8; 32] {
        self.shared.identity.root.public
    }

    /// Injects `fault` into the connections of the phone `number`'s companion devices; returns
    /// how many devices it reached.
    pub async fn fault(&self, number: &str, fault: Fault) -> usize {
        // Faults of the simulated user rather than of its connections.
        match fault {
            Fault::CorruptNext
            | Fault::WithholdReceipts(_)
            | Fault::WithholdAcks(_)
            | Fault::ReachOutLock(_)
            | Fault::LidUnmigrated(_)
            | Fault::AggregateReceipts(_)
            | Fault::MediaDeleted(_)
            | Fault::RequireCsToken(_) => {
                if !valid_number(number) {
                    return 0;
                }
                {
                    let Ok(mut st) = self.shared.state.lock() else {
                        return 0;
                    };
                    let phone = st.phone(number, None);
                    match fault {
                        Fault::CorruptNext => phone.corrupt_next += 1,
                        Fault::WithholdReceipts(on) => phone.withhold_receipts = on,
                        Fault::ReachOutLock(on) => {
                            phone.reach_out_lock = on;
                            phone.reach_out_until = if on {
                                self.shared.clock.now_unix() + REACH_OUT_LOCK_SECS
                            } else {
                                0
                            };
                        }
                        Fault::LidUnmigrated(on) => phone.lid_unmigrated = on,
                        Fault::AggregateReceipts(on) => phone.aggregate_receipts = on,
                        Fault::MediaDeleted(on) => phone.gallery.deleted = on,
                        Fault::RequireCsToken(on) => phone.require_cstoken = on,
                        Fault::WithholdAcks(true) => {
                            st.withhold_acks.insert(number.to_owned());
                        }
                        _ => {}
                    }
                }
                if fault == Fault::WithholdAcks(false) {
                    super::accept::release_held(&self.shared, number).await;
                }
                if let Fault::ReachOutLock(_) = fault {
                    // The account's devices are told (a `w:mex` notification), as WhatsApp
                    // does when it sets or lifts the time-lock.
                    self.announce_timelock(number);
                }
                return 1;
            }
            _ => {}
        }
        let (targets, unlinked): (Vec<mpsc::UnboundedSender<Control>>, usize) = {
            let Ok(mut st) = self.shared.state.lock() else {
                return 0;
            };
            let keys: Vec<String> = st
                .companions
                .iter()
                .filter(|(_, c)| c.device.jid.user == number)
                .map(|(k, _)| k.clone())
                .collect();
            let unlinked = if fault == Fault::Unlink {
                // The server forgets the devices and everything they published.
                for k in &keys {
                    st.companions.remove(k);
                }
                keys.len()
            } else {
                0
            };
            (
                keys.iter()
                    .filter_map(|k| st.live.get(k).cloned())
                    .collect(),
                unlinked,
            )
        };
        let control = match fault {
            Fault::Drop => Control::Close(None),
            Fault::AnswerPings(on) => Control::AnswerPings(on),
            Fault::StreamError { code, conflict } => {
                let mut n = Node::new("stream:error");
                if let Some(c) = code {
                    n = n.attr("code", c.to_string());
                }
                if let Some(t) = conflict {
                    n = n.children(vec![Node::new("conflict").attr("type", t)]);
                }
                Control::Close(Some(n))
            }
            Fault::Unlink => Control::Close(Some(
                Node::new("stream:error")
                    .attr("code", "401")
                    .children(vec![Node::new("conflict").attr("type", "device_removed")]),
            )),
            // Handled above.
            Fault::CorruptNext
            | Fault::WithholdReceipts(_)
            | Fault::WithholdAcks(_)
            | Fault::ReachOutLock(_)
            | Fault::LidUnmigrated(_)
            | Fault::AggregateReceipts(_)
            | Fault::MediaDeleted(_)
            | Fault::RequireCsToken(_) => {
                return 0;
            }
        };
        let mut reached = 0;
        for t in targets {
            if t.send(control.clone()).is_ok() {
                reached += 1;
            }
        }
        reached.max(unlinked)
    }

    /// Sends `node` as the server to the live companion devices of `number` (not queued):
    /// for stanzas the simulator makes nowhere by itself, such as a receipt whose claims a
    /// client must not take on trust. Returns how many devices it reached.
    pub fn push_stanza(&self, number: &str, node: &Node) -> usize {
        let Ok(st) = self.shared.state.lock() else {
            return 0;
        };
        let mut reached = 0;
        for (k, c) in st.companions.iter() {
            if c.device.jid.user == number
                && let Some(live) = st.live.get(k)
                && live.send(Control::Deliver(Box::new(node.clone()))).is_ok()
            {
                reached += 1;
            }
        }
        reached
    }

    /// Sets (Some) or clears (None) the new-chat message capping of `number` (created on first
    /// use) and tells its live companions (a `MessageCappingInfoNotification`). A new state
    /// starts a new cycle's count of new chats. Returns how many devices were told.
    pub fn set_capping(
        &self,
        number: &str,
        capping: Option<crate::stanza::mex::NewChatCapping>,
    ) -> Result<usize, SimError> {
        if !valid_number(number) {
            return Err(SimError::BadNumber);
        }
        let mut st = self.shared.state.lock().map_err(|_| SimError::Internal)?;
        let now = self.shared.clock.now_unix();
        let phone = st.phone(number, None);
        phone.new_chats.clear();
        phone.capping = capping.map(|mut c| {
            c.server_sent = Some(now);
            c
        });
        let told = phone.capping.clone().unwrap_or_default();
        let mut reached = 0;
        for (k, c) in st.companions.iter() {
            if c.device.jid.user != number {
                continue;
            }
            if let Some(live) = st.live.get(k) {
                let id = crate::util::ids::phone_message_id();
                let n = crate::stanza::mex::capping_notification(&id, now, &told);
                if live.send(Control::Deliver(Box::new(n))).is_ok() {
                    reached += 1;
                }
            }
        }
        Ok(reached)
    }

    /// The privacy-token issue iqs the devices of `number` sent: (holder number, the iq's
    /// `t`), oldest first.
    pub fn token_issues(&self, number: &str) -> Vec<(String, u64)> {
        let Ok(st) = self.shared.state.lock() else {
            return Vec::new();
        };
        st.token_issues
            .iter()
            .filter(|(i, _, _)| i == number)
            .map(|(_, h, t)| (h.clone(), *t))
            .collect()
    }

    /// The new-chat message capping of `number` as the server counts it now.
    pub fn capping(&self, number: &str) -> Option<crate::stanza::mex::NewChatCapping> {
        self.shared
            .state
            .lock()
            .ok()?
            .phones
            .get(number)?
            .capping
            .clone()
    }

    /// Tells the live companions of `number` its reach-out time-lock as it is now.
    fn announce_timelock(&self, number: &str) {
        let Ok(st) = self.shared.state.lock() else {
            return;
        };
        let Some(phone) = st.phones.get(number) else {
            return;
        };
        let lock = timelock(phone);
        let now = self.shared.clock.now_unix();
        for (k, c) in st.companions.iter() {
            if c.device.jid.user != number {
                continue;
            }
            if let Some(live) = st.live.get(k) {
                let id = crate::util::ids::phone_message_id();
                let n = crate::stanza::mex::timelock_notification(&id, now, &lock);
                let _ = live.send(Control::Deliver(Box::new(n)));
            }
        }
    }

    /// User `number`'s phone sends `text` to `to` (digits, or a PN or LID JID); users are
    /// created on first use. Returns the message id.
    pub async fn phone_send(&self, number: &str, to: &str, text: &str) -> Result<String, SimError> {
        let m = wa::Message {
            conversation: Some(text.to_owned()),
            ..Default::default()
        };
        self.phone_send_message(number, to, &m.encode_to_vec(), false)
            .await
    }

    /// User `number`'s phone sends the `Message` plaintext `plain` to `to` (digits, or a PN,
    /// LID or group JID) exactly as given: any content, fields this build does not know
    /// included. The stanza's `type`, `edit` and `mediatype` follow the content (`admin`: a
    /// revoke of someone else's group message, `edit="8"`). Returns the message id.
    pub async fn phone_send_message(
        &self,
        number: &str,
        to: &str,
        plain: &[u8],
        admin: bool,
    ) -> Result<String, SimError> {
        if !valid_number(number) {
            return Err(SimError::BadNumber);
        }
        let to: Jid = if to.contains('@') {
            to.parse().map_err(|_| SimError::BadNumber)?
        } else {
            Jid::new(to, Server::User)
        };
        if plain.is_empty() {
            return Err(SimError::BadMessage);
        }
        let id = crate::util::ids::phone_message_id();
        let id = self.send_as(number, &to, id, plain, admin).await?;
        // The phone's app shows what it sent in the chat: it is history from now on.
        if to.server != Server::Group
            && let Ok(m) = wa::Message::decode(plain)
            && let Ok(mut st) = self.shared.state.lock()
            && let Some(p) = st.phones.get_mut(number)
        {
            let t = self.shared.clock.now_unix();
            p.history.record_sent(&to, &id, &m, t);
        }
        Ok(id)
    }

    /// Seeds user `number`'s phone with chat history (created on first use), sent to the
    /// companions linked after this (see [`super::history::HistorySeed`]).
    pub fn seed_history(
        &self,
        number: &str,
        seed: &super::history::HistorySeed,
    ) -> Result<(), SimError> {
        if !valid_number(number) {
            return Err(SimError::BadNumber);
        }
        let now = self.shared.clock.now_unix();
        let mut st = self.shared.state.lock().map_err(|_| SimError::Internal)?;
        st.phone(number, None).history.seed(seed, now);
        Ok(())
    }

    async fn send_as(
        &self,
        number: &str,
        to: &Jid,
        id: String,
        plain: &[u8],
        admin: bool,
    ) -> Result<String, SimError> {
        if to.server == Server::Group {
            super::groups::phone_send(&self.shared, number, &to.user, id, plain, admin).await
        } else {
            super::route::phone_send(&self.shared, number, to, id, plain, admin).await
        }
    }

    /// User `number`'s phone sends a media message to `to` (digits, or a PN, LID or group
    /// JID): the file is encrypted in chunks under a fresh media key, stored on the CDN, and
    /// its message (CLIENT-FEATURES §2.4; `type="media"` and `mediatype` on the stanza) goes
    /// the way [`Simulator::phone_send_message`] sends. The phone keeps the file for media
    /// retries. Returns the message id and the file's hashes.
    pub async fn phone_send_media(
        &self,
        number: &str,
        to: &str,
        media: MediaSend,
    ) -> Result<(String, SentMedia), SimError> {
        if !valid_number(number) {
            return Err(SimError::BadNumber);
        }
        let to: Jid = if to.contains('@') {
            to.parse().map_err(|_| SimError::BadNumber)?
        } else {
            Jid::new(to, Server::User)
        };
        let prepared = super::phone_media::prepare(&self.shared, media).await?;
        let id = crate::util::ids::phone_message_id();
        {
            let mut st = self.shared.state.lock().map_err(|_| SimError::Internal)?;
            st.phone(number, None);
            super::phone_media::keep_sent(&mut st, number, &id, &to, &prepared);
        }
        let plain = prepared.message.encode_to_vec();
        let id = self.send_as(number, &to, id, &plain, false).await?;
        Ok((id, prepared.info))
    }

    /// Creates a group of simulated users (and whoever else is named: linked real clients'
    /// numbers are members like any other), `creator` its super admin; every member device is
    /// told. Returns its JID.
    pub fn create_group(
        &self,
        subject: &str,
        creator: &str,
        participants: &[String],
        mode: AddressingMode,
    ) -> Result<Jid, SimError> {
        super::groups::create_from_api(&self.shared, subject, creator, participants, mode)
    }

    /// Adds and removes members of `group` (by phone number); every member device is told
    /// unless `quiet` (a stale-member-list test: the server changes, the clients do not know).
    /// Returns each asked member's error code, if refused.
    pub async fn group_members(
        &self,
        group: &Jid,
        add: &[String],
        remove: &[String],
        quiet: bool,
    ) -> Result<Vec<(String, Option<u16>)>, SimError> {
        let t = self.shared.clock.now_unix();
        let mut out = Vec::new();
        for (action, members) in [(MemberAction::Add, add), (MemberAction::Remove, remove)] {
            if members.is_empty() {
                continue;
            }
            let (results, rotate) = {
                let mut st = self.shared.state.lock().map_err(|_| SimError::Internal)?;
                let creator = st.groups.get(&group.user).map(|g| g.creator.clone());
                super::groups::change_members(
                    &mut st,
                    &group.user,
                    creator.as_deref(),
                    action,
                    members,
                    quiet,
                    None,
                    t,
                )?
            };
            super::groups::rotate_keys(&group.user, rotate).await;
            out.extend(results);
        }
        Ok(out)
    }

    /// Moves `group` to addressing `mode` without telling anyone (as a migration the clients
    /// have not heard of yet): their next group send in the old mode is refused with `421`.
    pub fn set_group_addressing(&self, group: &Jid, mode: AddressingMode) -> Result<(), SimError> {
        let mut st = self.shared.state.lock().map_err(|_| SimError::Internal)?;
        let g = st
            .groups
            .get_mut(&group.user)
            .ok_or(SimError::NoSuchGroup)?;
        g.mode = mode;
        Ok(())
    }

    /// A group's metadata as its members read it.
    pub fn group_info(&self, group: &Jid) -> Option<GroupInfo> {
        super::groups::group_info(&self.shared, &group.user)
    }

    /// What former members of `group` made of message `id` (each device tried; none may
    /// read it).
    pub fn eavesdrops(&self, group: &Jid, id: &str) -> Vec<Eavesdrop> {
        let g = group.to_string();
        self.shared
            .state
            .lock()
            .map(|st| {
                st.eavesdrops
                    .iter()
                    .filter(|e| e.group == g && e.id == id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What user `number`'s devices received and decrypted, oldest first, each message once
    /// (as its app shows it) with how many stanzas carried it.
    pub fn phone_messages(&self, number: &str) -> Vec<Received> {
        self.shared
            .state
            .lock()
            .ok()
            .and_then(|st| st.phones.get(number).map(|p| p.inbox.shown()))
            .unwrap_or_default()
    }

    /// Whether someone reported user `number`'s message `id` read.
    pub fn was_read(&self, number: &str, id: &str) -> bool {
        self.shared
            .state
            .lock()
            .ok()
            .and_then(|st| st.phones.get(number).map(|p| p.read.contains(id)))
            .unwrap_or(false)
    }

    /// Makes user `number` answer every text with the same text (or stop).
    pub fn set_echo(&self, number: &str, on: bool) -> Result<(), SimError> {
        if !valid_number(number) {
            return Err(SimError::BadNumber);
        }
        let mut st = self.shared.state.lock().map_err(|_| SimError::Internal)?;
        st.phone(number, None).echo = on;
        Ok(())
    }

    /// Sets how many simulated devices user `number` has (the phone included).
    pub fn set_devices(&self, number: &str, count: usize) -> Result<(), SimError> {
        if !valid_number(number) {
            return Err(SimError::BadNumber);
        }
        let mut st = self.shared.state.lock().map_err(|_| SimError::Internal)?;
        if st.phone(number, None).set_devices(count) {
            Ok(())
        } else {
            Err(SimError::BadDeviceCount)
        }
    }

    /// User `number` deletes their account: its linked companions are unlinked, and the number
    /// is no longer on WhatsApp (usync lists no device for it, its keys are not served, groups
    /// lose it as a member). Naming it again later makes a new user.
    pub async fn delete_account(&self, number: &str) -> Result<(), SimError> {
        if !valid_number(number) {
            return Err(SimError::BadNumber);
        }
        self.fault(number, Fault::Unlink).await;
        let mut st = self.shared.state.lock().map_err(|_| SimError::Internal)?;
        if let Some(p) = st.phones.remove(number) {
            st.lids.remove(&p.account.lid);
        }
        for g in st.groups.values_mut() {
            g.members.retain(|(n, _)| n != number);
        }
        st.tokens.retain(|(a, b), _| a != number && b != number);
        Ok(())
    }

    /// The LID user of `number` (created on first use).
    pub fn lid_of(&self, number: &str) -> Option<String> {
        if !valid_number(number) {
            return None;
        }
        let mut st = self.shared.state.lock().ok()?;
        Some(st.phone(number, None).account.lid.clone())
    }

    /// The latest `<message>` stanzas the server accepted from real devices (for tests that
    /// check what went over the wire), oldest first.
    pub fn message_log(&self) -> Vec<Logged> {
        self.shared
            .state
            .lock()
            .map(|st| st.log.all())
            .unwrap_or_default()
    }

    /// How many times real devices transmitted message `id`: accepted originals, accepted
    /// answers to retry receipts, refused stanzas, and stanzas held unanswered now (with
    /// every answered stanza: from whom, to whom).
    pub fn transmissions(&self, id: &str) -> Transmissions {
        self.shared
            .state
            .lock()
            .map(|st| {
                let held = st
                    .held
                    .iter()
                    .filter(|(_, n)| n.get_str("id").as_deref() == Some(id))
                    .count();
                st.log.transmissions(id, held)
            })
            .unwrap_or_else(|_| StanzaLog::default().transmissions(id, 0))
    }

    /// Whether the device `jid` has a logged-in connection now.
    pub fn connected(&self, jid: &Jid) -> bool {
        self.shared
            .state
            .lock()
            .is_ok_and(|st| st.live.contains_key(&jid.to_string()))
    }

    /// Stanzas queued for the device `jid` (waiting for its receipt or ack).
    pub fn queued(&self, jid: &Jid) -> usize {
        self.shared
            .state
            .lock()
            .ok()
            .and_then(|st| st.queues.get(&jid.to_string()).map(|q| q.len()))
            .unwrap_or(0)
    }

    /// Refuses logins and registrations below `version` with 405 (None accepts all).
    pub fn set_min_version(&self, version: Option<[u32; 3]>) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.min_version = version;
        }
    }

    /// Makes the next pair-success defective (companions must refuse it).
    pub fn tamper_next_pair_success(&self, tamper: Tamper) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.tamper = Some(tamper);
        }
    }

    /// WebSocket connections that completed the Noise handshake so far.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.state.lock().map(|st| st.accepted).unwrap_or(0)
    }

    /// One-time prekeys the device `jid` has uploaded.
    pub fn uploaded_pre_keys(&self, jid: &Jid) -> usize {
        self.shared
            .state
            .lock()
            .ok()
            .and_then(|st| st.companions.get(&jid.to_string()).map(|c| c.prekeys.len()))
            .unwrap_or(0)
    }

    /// Receipts the device `jid` sent: (message id, receipt type).
    pub fn receipts(&self, jid: &Jid) -> Vec<(String, Option<String>)> {
        self.shared
            .state
            .lock()
            .ok()
            .and_then(|st| {
                st.companions
                    .get(&jid.to_string())
                    .map(|c| c.receipts.iter().cloned().collect())
            })
            .unwrap_or_default()
    }

    /// The history-sync notifications the phone sent companion `jid` (message ids, oldest
    /// first; the latest 1,024).
    pub fn history_sent(&self, jid: &Jid) -> Vec<HistorySent> {
        self.shared
            .state
            .lock()
            .ok()
            .and_then(|st| {
                st.companions
                    .get(&jid.to_string())
                    .map(|c| c.history_sent.iter().cloned().collect())
            })
            .unwrap_or_default()
    }

    /// Companion devices linked to the phone `number`.
    pub fn linked_devices(&self, number: &str) -> Vec<Jid> {
        self.shared
            .state
            .lock()
            .map(|st| st.linked_devices(number))
            .unwrap_or_default()
    }

    /// A phone with `number` scans `qr` (the phone is created on first use). Resolves once the
    /// companion has answered with a valid device signature: returns the new device JID.
    pub async fn scan(
        &self,
        number: &str,
        qr: &str,
        push_name: Option<&str>,
        platform: Option<&str>,
    ) -> Result<Jid, SimError> {
        if !valid_number(number) {
            return Err(SimError::BadNumber);
        }
        let scanned = parse_qr(qr)?;
        let (phone, tx) = {
            let mut st = self.shared.state.lock().map_err(|_| SimError::Internal)?;
            let tx = st
                .showing
                .get(&scanned.r#ref)
                .cloned()
                .ok_or(SimError::UnknownRef)?;
            let phone = st.phone(number, platform);
            // The user may have renamed themselves since the last scan.
            if let Some(name) = push_name {
                phone.account.push_name = Some(name.to_owned());
            }
            (phone.account.clone(), tx)
        };
        let (done, rx) = oneshot::channel();
        tx.send(Scan {
            phone,
            qr: scanned,
            done,
        })
        .await
        .map_err(|_| SimError::UnknownRef)?;
        rx.await
            .map_err(|_| SimError::PairingFailed("connection closed".into()))?
    }
}
