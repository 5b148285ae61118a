//! The simulated WhatsApp server: its in-memory state (phones, linked devices, published keys,
//! live connections) and the Rust API over it; it accepts WebSocket connections (plain or TLS),
//! at most [`MAX_HANDSHAKES`] in their handshake at once, and hands each to `conn.rs`. Every
//! per-device and per-phone collection is bounded, so a long-running `simulate` stays flat.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::iq::KeyBundle;
use super::pair::{PhoneAccount, ScannedQr, SimPairError, Tamper, parse_qr};
use super::phone::SimPeer;
use crate::binary::{Jid, Node};
use crate::signal::KeyPair;
use crate::socket::ServerIdentity;
use crate::stanza::group::{AddressingMode, GroupInfo, MemberAction};
use crate::util::clock::{Clock, SystemClock};

/// Errors of the simulator's control surface.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding the listener failed.
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    /// The QR did not parse.
    #[error(transparent)]
    Pair(#[from] SimPairError),
    /// No connection is showing that ref (expired, or never issued).
    #[error("no companion is showing this QR (expired or unknown ref)")]
    UnknownRef,
    /// The companion refused the pairing or went away.
    #[error("pairing failed: {0}")]
    PairingFailed(String),
    /// The TLS certificate could not be made.
    #[error("TLS set-up: {0}")]
    Tls(String),
    /// Not a phone number WhatsApp could have (1–15 digits, E.164).
    #[error("phone number must be 1–15 digits")]
    BadNumber,
    /// A user has 1 to 16 simulated devices.
    #[error("device count must be 1–16")]
    BadDeviceCount,
    /// The simulator's state is unusable (a task panicked while holding it).
    #[error("simulator state unavailable")]
    Internal,
    /// No group with that JID.
    #[error("no such group")]
    NoSuchGroup,
    /// The user is not a member of the group.
    #[error("not a member of the group")]
    NotInGroup,
    /// Past a limit (members per group, groups).
    #[error("too many members or groups")]
    TooMany,
}

/// Longest phone number (E.164): it also keeps every number within a u64, which logins need.
pub const MAX_NUMBER_DIGITS: usize = 15;

/// Whether `number` is a phone number a simulated user may have.
pub fn valid_number(number: &str) -> bool {
    (1..=MAX_NUMBER_DIGITS).contains(&number.len()) && number.bytes().all(|c| c.is_ascii_digit())
}

/// One-time prekeys the server holds per device; past it the oldest are dropped (a device
/// uploads 812 at first and 50 per refill, so only a misbehaving client reaches it).
pub const MAX_HELD_PREKEYS: usize = 2048;

/// Companion device ids a phone can hand out over its life: ids only grow, and the AD-JID wire
/// form carries a device in one byte.
pub const MAX_DEVICE_ID: u16 = u8::MAX as u16;

/// Registrations showing QR refs at once; past it a new registration is refused with 503.
pub const MAX_REGISTRATIONS: usize = 1024;

/// Noise handshakes in progress at once; further connections wait their turn (within the
/// handshake timeout), so a flood of unauthenticated sockets cannot pin unbounded memory.
pub const MAX_HANDSHAKES: usize = 256;

/// A paired companion device.
#[derive(Debug, Clone)]
pub(super) struct Device {
    pub(super) jid: Jid,
    pub(super) lid: Jid,
    pub(super) noise_public: [u8; 32],
    pub(super) identity_public: [u8; 32],
}

/// A scan delivered to the connection showing the QR.
pub(super) struct Scan {
    pub(super) phone: PhoneAccount,
    pub(super) qr: ScannedQr,
    pub(super) done: oneshot::Sender<Result<Jid, SimError>>,
}

/// A simulated user: the phone's account and Signal state (device 0), its simulated companion
/// devices, the last companion id it handed out (ids only grow: an unlinked id is never
/// reused), what its devices received, and its behaviour settings.
pub(super) struct Phone {
    pub(super) account: PhoneAccount,
    pub(super) signal: Arc<SimPeer>,
    pub(super) last_device: u16,
    /// Simulated companions (real Signal peers with their own identities).
    pub(super) sims: Vec<Arc<SimPeer>>,
    /// Messages its devices received and decrypted, oldest first.
    pub(super) inbox: VecDeque<super::route::Received>,
    /// Answer every text with the same text.
    pub(super) echo: bool,
    /// Its devices send no receipts.
    pub(super) withhold_receipts: bool,
    /// The next message to one of its devices arrives with a broken MAC.
    pub(super) corrupt_next: bool,
    /// What it sent lately (for retry receipts): id, chat, message.
    pub(super) sent: VecDeque<(String, Jid, crate::proto::wa::Message)>,
    /// Retry receipts its devices sent per (sender device, id).
    pub(super) retries: HashMap<(String, String), u32>,
    /// The account is not migrated to LID 1:1 chats: its LID-addressed DMs are refused (400).
    pub(super) lid_unmigrated: bool,
    /// Ids of its messages someone reported read.
    pub(super) read: std::collections::HashSet<String>,
    /// First messages to strangers need their privacy token (else 463), as WhatsApp
    /// restricts accounts that reach out too much.
    pub(super) reach_out_lock: bool,
    /// When the reach-out lock ends (unix seconds), while it is on.
    pub(super) reach_out_until: u64,
    /// (group id, device) pairs its phone sent its current sender key to.
    pub(super) group_keys_sent: std::collections::HashSet<(String, String)>,
    /// Group receipts for its messages are sent aggregated.
    pub(super) aggregate_receipts: bool,
}

/// Devices a simulated user starts with (the phone and one companion).
pub const DEFAULT_DEVICES: usize = 2;
/// Most devices a simulated user may have.
pub const MAX_SIM_DEVICES: usize = 16;
/// Received messages kept per simulated user.
pub const INBOX_KEPT: usize = 10_000;
/// Sent messages kept per simulated user for retries.
pub(super) const SENT_KEPT: usize = 256;

impl Phone {
    /// Sets how many simulated devices the user has (the phone counts; 1..=[`MAX_SIM_DEVICES`]):
    /// new companions get fresh ids and identities, removed ones are forgotten.
    pub(super) fn set_devices(&mut self, count: usize) -> bool {
        if !(1..=MAX_SIM_DEVICES).contains(&count) {
            return false;
        }
        while self.sims.len() + 1 > count {
            self.sims.pop();
        }
        while self.sims.len() + 1 < count {
            let Some(id) = self.next_device() else {
                return false;
            };
            let jid =
                Jid::with_device(self.account.number.clone(), id, crate::binary::Server::User);
            self.sims
                .push(Arc::new(SimPeer::new(jid, KeyPair::generate())));
        }
        true
    }

    /// One of its devices decrypted `m`: a new inbox entry, or one more device on the entry
    /// of the same (id, author).
    pub(super) fn received(&mut self, m: super::route::Received, device: u16) {
        match self
            .inbox
            .iter_mut()
            .find(|r| r.id == m.id && r.from == m.from)
        {
            Some(r) => r.add_device(device),
            None => {
                if self.inbox.len() >= INBOX_KEPT {
                    self.inbox.pop_front();
                }
                let mut m = m;
                m.add_device(device);
                self.inbox.push_back(m);
            }
        }
    }

    /// The simulated device with id `device` (0 = the phone).
    pub(super) fn sim_device(&self, device: u16) -> Option<Arc<SimPeer>> {
        if device == 0 {
            return Some(self.signal.clone());
        }
        self.sims.iter().find(|p| p.jid.device == device).cloned()
    }

    /// Every simulated device, the phone first.
    pub(super) fn sim_devices(&self) -> Vec<Arc<SimPeer>> {
        std::iter::once(self.signal.clone())
            .chain(self.sims.iter().cloned())
            .collect()
    }

    /// The next companion device id (ids and key indexes only grow: an unlinked id is never
    /// reused); None once [`MAX_DEVICE_ID`] was handed out.
    pub(super) fn next_device(&mut self) -> Option<u16> {
        if self.last_device >= MAX_DEVICE_ID {
            return None;
        }
        self.last_device += 1;
        Some(self.last_device)
    }
}

/// Receipts kept per companion (the simulator may run for days).
const RECEIPTS_KEPT: usize = 1024;

/// One-time prekeys a device uploaded, served oldest first; a re-uploaded id replaces its key.
/// Every operation is logarithmic, so no upload is quadratic under the state lock.
#[derive(Default)]
pub(super) struct HeldPreKeys {
    /// Upload order → (id, public key).
    by_seq: BTreeMap<u64, (u32, [u8; 32])>,
    /// id → upload order.
    seq_of: HashMap<u32, u64>,
    next_seq: u64,
}

impl HeldPreKeys {
    pub(super) fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_seq.values().map(|(id, _)| *id)
    }

    /// Adds uploaded keys, dropping the oldest beyond [`MAX_HELD_PREKEYS`].
    pub(super) fn add(&mut self, keys: impl IntoIterator<Item = (u32, [u8; 32])>) {
        for (id, key) in keys {
            if let Some(old) = self.seq_of.remove(&id) {
                self.by_seq.remove(&old);
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.by_seq.insert(seq, (id, key));
            self.seq_of.insert(id, seq);
            if self.by_seq.len() > MAX_HELD_PREKEYS {
                self.take();
            }
        }
    }

    /// Serves (and forgets) the oldest key, as the server does when it hands out a bundle.
    pub(super) fn take(&mut self) -> Option<(u32, [u8; 32])> {
        let (_, (id, key)) = self.by_seq.pop_first()?;
        self.seq_of.remove(&id);
        Some((id, key))
    }
}

/// A linked companion and everything it published; unlinking drops it whole.
pub(super) struct Companion {
    pub(super) device: Device,
    /// Registration id and signed prekey, once uploaded.
    pub(super) bundle: Option<KeyBundle>,
    /// One-time prekeys held; served to peers.
    pub(super) prekeys: HeldPreKeys,
    /// Whether the phone has sent its first peer messages.
    pub(super) greeted: bool,
    /// The latest receipts it sent: (message id, receipt type).
    pub(super) receipts: VecDeque<(String, Option<String>)>,
}

impl Companion {
    pub(super) fn new(device: Device) -> Companion {
        Companion {
            device,
            bundle: None,
            prekeys: HeldPreKeys::default(),
            greeted: false,
            receipts: VecDeque::new(),
        }
    }

    /// Records a receipt, forgetting the oldest beyond [`RECEIPTS_KEPT`].
    pub(super) fn receipt(&mut self, id: String, kind: Option<String>) {
        if self.receipts.len() == RECEIPTS_KEPT {
            self.receipts.pop_front();
        }
        self.receipts.push_back((id, kind));
    }
}

#[derive(Default)]
pub(super) struct State {
    /// Phones by number.
    pub(super) phones: HashMap<String, Phone>,
    /// Phone numbers by LID user (LIDs are unique).
    pub(super) lids: HashMap<String, String>,
    /// Registrations currently showing refs.
    pub(super) registrations: usize,
    /// Linked companions by device JID string.
    pub(super) companions: HashMap<String, Companion>,
    pub(super) showing: HashMap<String, mpsc::Sender<Scan>>,
    /// Logged-in connections by device JID string.
    pub(super) live: HashMap<String, mpsc::UnboundedSender<Control>>,
    /// Devices whose offline queue was flushed on this connection: new stanzas go straight
    /// to them (and stay queued until answered).
    pub(super) online: std::collections::HashSet<String>,
    /// Stanzas per real device, kept until it sends a receipt or ack for them.
    pub(super) queues: HashMap<String, VecDeque<super::route::Queued>>,
    /// Messages accepted: (sender device, id) → server `t`, for acking a resend alike.
    pub(super) seen: HashMap<(String, String), u64>,
    pub(super) seen_order: VecDeque<(String, String)>,
    /// Senders (phone numbers) whose messages the server holds unacked.
    pub(super) withhold_acks: std::collections::HashSet<String>,
    /// Held messages: (sender device, stanza).
    pub(super) held: Vec<(Device, Node)>,
    /// The latest messages the server accepted from real devices, oldest first.
    pub(super) log: VecDeque<super::route::Logged>,
    /// Privacy tokens: (issuer number, holder number) → token.
    pub(super) tokens: HashMap<(String, String), Vec<u8>>,
    /// Groups by id (the user part of their JID).
    pub(super) groups: HashMap<String, super::groups::Group>,
    /// Former members' attempts to read group messages sent after they left.
    pub(super) eavesdrops: VecDeque<super::groups::Eavesdrop>,
    /// Oldest WhatsApp Web version accepted (405 below it).
    pub(super) min_version: Option<[u32; 3]>,
    /// A defect for the next pair-success.
    pub(super) tamper: Option<Tamper>,
    pub(super) accepted: u64,
}

impl State {
    /// Shows a registration's refs unless [`MAX_REGISTRATIONS`] are already showing.
    pub(super) fn admit_registration(
        &mut self,
        refs: &[String],
        scans: &mpsc::Sender<Scan>,
    ) -> bool {
        if self.registrations >= MAX_REGISTRATIONS {
            return false;
        }
        self.registrations += 1;
        for r in refs {
            self.showing.insert(r.clone(), scans.clone());
        }
        true
    }

    /// The phone `number`, created on first use with a fresh identity and a unique LID.
    pub(super) fn phone(&mut self, number: &str, platform: Option<&str>) -> &mut Phone {
        if !self.phones.contains_key(number) {
            let lid = loop {
                // 15-digit LIDs, as WhatsApp's look; drawn again on the rare collision.
                let lid = (100_000_000_000_000u64 + rand::random::<u64>() % 900_000_000_000_000)
                    .to_string();
                if !self.lids.contains_key(&lid) && !self.phones.contains_key(&lid) {
                    break lid;
                }
            };
            self.lids.insert(lid.clone(), number.to_owned());
            let account = PhoneAccount {
                number: number.to_owned(),
                lid,
                identity: KeyPair::generate(),
                platform: platform.unwrap_or("android").to_owned(),
                push_name: None,
                business_name: None,
            };
            let mut phone = Phone {
                signal: Arc::new(SimPeer::phone(&account)),
                account,
                last_device: 0,
                sims: Vec::new(),
                inbox: VecDeque::new(),
                echo: false,
                withhold_receipts: false,
                corrupt_next: false,
                sent: VecDeque::new(),
                retries: HashMap::new(),
                reach_out_lock: false,
                reach_out_until: 0,
                read: std::collections::HashSet::new(),
                lid_unmigrated: false,
                group_keys_sent: std::collections::HashSet::new(),
                aggregate_receipts: false,
            };
            // Users have a phone and one more device unless told otherwise.
            phone.set_devices(DEFAULT_DEVICES);
            self.phones.insert(number.to_owned(), phone);
        }
        self.phones
            .get_mut(number)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }

    /// The phone whose number or LID user is `user`.
    #[cfg(test)]
    pub(super) fn phone_by_user(&self, user: &str) -> Option<&Phone> {
        self.phones
            .get(user)
            .or_else(|| self.phones.get(self.lids.get(user)?))
    }

    /// The companion JIDs of phone `number`, by device id.
    pub(super) fn linked_devices(&self, number: &str) -> Vec<Jid> {
        let mut jids: Vec<Jid> = self
            .companions
            .values()
            .filter(|c| c.device.jid.user == number)
            .map(|c| c.device.jid.clone())
            .collect();
        jids.sort_by_key(|j| j.device);
        jids
    }
}

/// A fault to inject (Rust API; the control endpoint maps onto it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Close the account's connections without a word.
    Drop,
    /// Stop (false) or resume (true) answering the account's pings.
    AnswerPings(bool),
    /// Send `<stream:error code>` (and a `<conflict type>` child when given), then close.
    StreamError {
        /// The code attribute (515, 503, 401…), if any.
        code: Option<u16>,
        /// `replaced` or `device_removed`, if any.
        conflict: Option<String>,
    },
    /// The phone unlinks its companion devices: they are forgotten and told `device_removed`.
    Unlink,
    /// The next message to one of the user's devices arrives with a broken MAC.
    CorruptNext,
    /// The user's devices stop (true) or resume (false) sending receipts.
    WithholdReceipts(bool),
    /// The server holds the user's messages unacked and undelivered (true); lifting it (false)
    /// delivers and acks each once.
    WithholdAcks(bool),
    /// The user's first messages to strangers need a privacy token (true), or not (false).
    ReachOutLock(bool),
    /// The account is not LID-migrated (true): its LID-addressed DMs get `ack error="400"`.
    LidUnmigrated(bool),
    /// Group receipts for the account's messages arrive aggregated (true): `<receipt
    /// from=<group>><participants key=<id>><user jid t/>…`, as WhatsApp may send them.
    AggregateReceipts(bool),
}

/// How long a reach-out lock set through the control API lasts.
const REACH_OUT_LOCK_SECS: u64 = 24 * 3600;

/// A simulated account's reach-out time-lock, as WhatsApp's `w:mex` answers state it.
pub(super) fn timelock(phone: &Phone) -> crate::stanza::mex::ReachoutTimelock {
    crate::stanza::mex::ReachoutTimelock {
        active: phone.reach_out_lock,
        ends_at: phone.reach_out_lock.then_some(phone.reach_out_until),
        enforcement: crate::stanza::mex::DEFAULT_ENFORCEMENT.into(),
    }
}

/// No time-lock.
pub(super) fn timelock_off() -> crate::stanza::mex::ReachoutTimelock {
    crate::stanza::mex::ReachoutTimelock {
        active: false,
        ends_at: None,
        enforcement: crate::stanza::mex::DEFAULT_ENFORCEMENT.into(),
    }
}

/// What a live connection is told to do.
#[derive(Debug, Clone)]
pub(super) enum Control {
    Close(Option<Node>),
    AnswerPings(bool),
    /// Send this stanza.
    Deliver(Box<Node>),
}

pub(super) struct Shared {
    pub(super) identity: ServerIdentity,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) state: Mutex<State>,
    /// Group deliveries to simulated devices, handled in order by a background task: the
    /// server acks a group message on acceptance, not once every member decrypted it.
    pub(super) deliveries: mpsc::Sender<super::groups::Delivery>,
}

/// Group deliveries to simulated devices waiting at most; past it the sender's connection
/// delivers them itself (slower acks: backpressure, never unbounded memory).
pub const DELIVERY_QUEUE: usize = 65_536;

/// A running simulator.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
    ws_url: String,
    /// The CA behind the `wss://` certificate (None for `ws://`).
    ca_pem: Option<Arc<str>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Simulator {{ ws_url: {} }}", self.ws_url)
    }
}

impl Simulator {
    /// Starts listening on `listen` (port 0 picks a free port) with a fresh certificate chain,
    /// serving plain `ws://`.
    pub async fn start(listen: SocketAddr) -> Result<Simulator, SimError> {
        Simulator::start_with(listen, None).await
    }

    /// Like [`Simulator::start`], serving `wss://` as WhatsApp does, with a TLS certificate
    /// for `localhost` and the listening IP issued by a CA generated here
    /// ([`Simulator::ca_cert_pem`]: what a client must trust besides the webpki roots).
    pub async fn start_tls(listen: SocketAddr) -> Result<Simulator, SimError> {
        let tls = super::tls::SimTls::generate(listen.ip())?;
        Simulator::start_with(listen, Some(tls)).await
    }

    async fn start_with(
        listen: SocketAddr,
        tls: Option<super::tls::SimTls>,
    ) -> Result<Simulator, SimError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let identity = ServerIdentity::generate(clock.now_unix(), 365 * 86_400);
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (deliveries, mut queued) = mpsc::channel(DELIVERY_QUEUE);
        let shared = Arc::new(Shared {
            identity,
            clock,
            state: Mutex::new(State::default()),
            deliveries,
        });
        // The worker holds the state weakly: dropping the simulator ends it.
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            while let Some(d) = queued.recv().await {
                let Some(shared) = weak.upgrade() else { break };
                super::groups::deliver(&shared, d).await;
            }
        });
        let s = shared.clone();
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
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
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        Ok(Simulator {
            shared,
            ws_url: format!("{scheme}://{addr}/ws/chat"),
            ca_pem: tls.map(|t| Arc::from(t.ca_pem.as_str())),
        })
    }

    /// The WebSocket URL clients connect to.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// The PEM of the CA that issued the `wss://` certificate, when serving TLS.
    pub fn ca_cert_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
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
            | Fault::AggregateReceipts(_) => {
                if !valid_number(number) {
                    return 0;
                }
                {
                    let Ok(mut st) = self.shared.state.lock() else {
                        return 0;
                    };
                    let phone = st.phone(number, None);
                    match fault {
                        Fault::CorruptNext => phone.corrupt_next = true,
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
                        Fault::WithholdAcks(true) => {
                            st.withhold_acks.insert(number.to_owned());
                        }
                        _ => {}
                    }
                }
                if fault == Fault::WithholdAcks(false) {
                    super::route::release_held(&self.shared, number).await;
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
            | Fault::AggregateReceipts(_) => {
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
        if !valid_number(number) {
            return Err(SimError::BadNumber);
        }
        let to: Jid = if to.contains('@') {
            to.parse().map_err(|_| SimError::BadNumber)?
        } else {
            Jid::new(to, crate::binary::Server::User)
        };
        super::route::phone_send(&self.shared, number, &to, text).await
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
    pub fn eavesdrops(&self, group: &Jid, id: &str) -> Vec<super::groups::Eavesdrop> {
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

    /// What user `number`'s devices received and decrypted, oldest first.
    pub fn phone_messages(&self, number: &str) -> Vec<super::route::Received> {
        self.shared
            .state
            .lock()
            .ok()
            .and_then(|st| {
                st.phones
                    .get(number)
                    .map(|p| p.inbox.iter().cloned().collect())
            })
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
    pub fn message_log(&self) -> Vec<super::route::Logged> {
        self.shared
            .state
            .lock()
            .map(|st| st.log.iter().cloned().collect())
            .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_prekeys_replace_by_id_serve_oldest_first_and_stay_capped() {
        let mut h = HeldPreKeys::default();
        h.add((1..=3).map(|i| (i, [i as u8; 32])));
        // A re-uploaded id replaces its key and moves to the back.
        h.add([(1, [9; 32])]);
        assert_eq!(h.len(), 3);
        assert_eq!(h.ids().collect::<Vec<_>>(), [2, 3, 1]);
        assert_eq!(h.take(), Some((2, [2; 32])));
        // An upload far past the cap keeps only the newest MAX_HELD_PREKEYS.
        let n = (MAX_HELD_PREKEYS * 3) as u32;
        h.add((100..100 + n).map(|i| (i, [0; 32])));
        assert_eq!(h.len(), MAX_HELD_PREKEYS);
        assert_eq!(
            h.seq_of.len(),
            MAX_HELD_PREKEYS,
            "both indexes shrink together"
        );
        assert_eq!(
            h.take().map(|k| k.0),
            Some(100 + n - MAX_HELD_PREKEYS as u32)
        );
    }

    #[test]
    fn device_ids_stop_at_the_last_one_instead_of_wrapping() {
        let mut st = State::default();
        let phone = st.phone("15550000001", None);
        // The user's simulated companion took the first id.
        assert_eq!(phone.sims.len(), DEFAULT_DEVICES - 1);
        let first = phone.last_device;
        assert_eq!(phone.next_device(), Some(first + 1));
        // A phone that handed out ids for years (or a u16 near its end, before the cap).
        phone.last_device = MAX_DEVICE_ID - 1;
        assert_eq!(phone.next_device(), Some(MAX_DEVICE_ID));
        assert_eq!(phone.next_device(), None);
        phone.last_device = u16::MAX;
        assert_eq!(phone.next_device(), None, "no overflow");
    }

    #[test]
    fn registrations_past_the_cap_are_refused_and_show_no_refs() {
        let mut st = State::default();
        let (tx, _rx) = mpsc::channel(1);
        for i in 0..MAX_REGISTRATIONS {
            assert!(st.admit_registration(&[format!("ref-{i}")], &tx));
        }
        assert!(!st.admit_registration(&["ref-over".into()], &tx));
        assert_eq!(st.showing.len(), MAX_REGISTRATIONS);
        assert!(!st.showing.contains_key("ref-over"));
    }

    #[test]
    fn phones_get_unique_lids_that_are_no_phone_number() {
        let mut st = State::default();
        let mut lids = std::collections::HashSet::new();
        for i in 0..2000 {
            let number = format!("1555{i:07}");
            let lid = st.phone(&number, None).account.lid.clone();
            assert_eq!(lid.len(), 15, "{lid}");
            assert!(!st.phones.contains_key(&lid));
            assert!(lids.insert(lid.clone()), "LID {lid} handed out twice");
            assert_eq!(st.phone_by_user(&lid).unwrap().account.number, number);
        }
        // The same number is the same phone (and keeps its LID).
        let again = st.phone("15550000007", None).account.lid.clone();
        assert_eq!(
            st.phone_by_user(&again).unwrap().account.number,
            "15550000007"
        );
        assert_eq!(st.lids.len(), 2000);
    }
}
