//! The simulator's media CDN as state (WhatsApp's `mmg.whatsapp.net`, CLIENT-FEATURES.md §2):
//! the upload auth `media_conn` hands a logged-in device, the encrypted blobs devices uploaded
//! and simulated phones stored in-process (on disk, in a directory of the simulator's own), the
//! signed direct paths naming them, and the CDN faults in force. It serves no HTTP
//! (`cdn_http.rs` does) and knows no other part of the server: a leaf, so iq answers, phones
//! and the handle may all use it.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::stanza::media::MediaConnInfo;
use crate::util::clock::Clock;

/// The `mms-type`s an upload may name (`POST /mms/<mms-type>/…`): whatsmeow's
/// `mediaTypeToMMSType` (image, audio, video, document, md-msg-hist, md-app-state,
/// sticker-pack, thumbnail-link), Baileys' `MEDIA_PATH_MAP` (a subset: stickers and link
/// thumbnails go to `/mms/image`) and whatsapp-rust's `thumbnail-sticker-pack`
/// (CLIENT-FEATURES.md §2.2). whatsmeow's `ptt` exists only under Messenger's `wa-msgr/mms`.
pub const MMS_TYPES: &[&str] = &[
    "image",
    "video",
    "audio",
    "document",
    "sticker-pack",
    "thumbnail-link",
    "thumbnail-sticker-pack",
    "md-msg-hist",
    "md-app-state",
];

/// Blobs kept at once; past it the oldest is deleted, so a long-running `simulate` stays
/// bounded in memory and on disk.
pub const MAX_STORED_MEDIA: usize = 4096;

/// Bytes read and written at a time when a file is stored in-process.
const COPY_CHUNK: usize = 64 * 1024;

/// Auth grants held before the expired ones are swept (one per device that asked).
const AUTH_SWEEP_AT: usize = 4096;

/// The query every direct path carries after `oh`/`oe`, as real ones do (`ccb=11-4` first,
/// `_nc_sid=5e03e0` last: seen in every `mmg.whatsapp.net` URL in public samples).
const CCB: &str = "ccb=11-4";
const NC_SID: &str = "_nc_sid=5e03e0";

/// The CDN's lifetimes and limits (the server state's, changeable by tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdnConfig {
    /// `ttl` of a `media_conn` answer: how long a client may cache it (seconds).
    pub media_conn_ttl: u64,
    /// `auth_ttl`: how long an upload auth token is accepted (seconds).
    pub auth_ttl: u64,
    /// Largest upload body accepted (413 beyond).
    pub max_upload_bytes: u64,
    /// How long a direct path works after its upload (its `oe`; 410 afterwards).
    pub link_ttl: u64,
}

impl Default for CdnConfig {
    fn default() -> CdnConfig {
        CdnConfig {
            // Of the order WhatsApp answers with; no reference here records a real answer
            // (CLIENT-FEATURES.md Appendix C), so these are chosen: 5 min and 6 h.
            media_conn_ttl: 300,
            auth_ttl: 21_600,
            // WhatsApp's 2 GB document limit, plus the cipher's padding and MAC and slack.
            max_upload_bytes: (2 << 30) + (1 << 20),
            // Chosen: 30 days, so only a test that asks for it sees a link expire.
            link_ttl: 30 * 86_400,
        }
    }
}

/// A stored blob's names, as the upload answer gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// `https://<host><direct_path>&mms3=true`, as WhatsApp's upload answer `url`.
    pub url: String,
    /// `/v/t62.<class>-24/<id>_n.enc?ccb=11-4&oh=<signature>&oe=<expiry>&_nc_sid=5e03e0`.
    pub direct_path: String,
    /// The blob's object id.
    pub object_id: String,
    /// SHA-256 of the stored bytes.
    pub enc_sha256: [u8; 32],
    /// Its length.
    pub size: u64,
}

/// A stored blob, as the control API lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MediaInfo {
    /// SHA-256 of the stored bytes, base64 (as message JSON shows `fileEncSha256`).
    pub enc_sha256: String,
    /// Its length in bytes.
    pub size: u64,
    /// The `mms-type` it was uploaded as.
    pub mms_type: String,
    /// Its direct path.
    pub direct_path: String,
    /// Its download URL.
    pub url: String,
    /// Deleted by an expire fault: downloads answer 404.
    pub expired: bool,
}

/// A CDN fault (Rust API; `POST /cdn/faults` maps onto it). Media are named by their enc
/// SHA-256 (base64, padded or not, standard or URL alphabet, or hex) or their direct path
/// (or URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CdnFault {
    /// The blob is deleted: downloads answer 404 (what makes a client ask for media retry).
    Expire(String),
    /// One byte in the middle of the stored blob is flipped in place, so its SHA-256 no longer
    /// matches the message's `fileEncSha256`.
    Corrupt(String),
    /// The next n uploads answer 401, as an auth the server stopped accepting.
    RefuseUploads(u32),
    /// Every `media_conn` auth handed out so far expires now.
    ExpireAuth,
    /// Uploads are read and downloads served at most this many bytes a second (a slow link),
    /// transfers under way included; None lifts it.
    SlowTransfers(Option<u64>),
}

/// A transfer under way, as the control API lists it (`GET /cdn/transfers`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TransferInfo {
    /// `upload` or `download`.
    pub direction: &'static str,
    /// Bytes moved so far.
    pub bytes: u64,
}

/// Why a download is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No such blob (never stored, evicted, or expired by a fault): 404.
    #[error("no such media")]
    NotFound,
    /// The direct path's `oh` does not sign its path and `oe` (forged or tampered): 403.
    #[error("the link's signature does not match it")]
    BadSignature,
    /// The direct path's `oe` has passed: 410.
    #[error("the link has expired")]
    LinkExpired,
}

/// Why a blob cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Not one of [`MMS_TYPES`].
    #[error("unknown mms-type")]
    UnknownType,
    /// An empty body (an encrypted blob has at least one AES block and the MAC).
    #[error("empty media")]
    Empty,
    /// Past [`CdnConfig::max_upload_bytes`].
    #[error("media larger than the upload limit")]
    TooLarge,
    /// The simulator's disk.
    #[error("cannot store media: {0}")]
    Io(#[from] std::io::Error),
}

/// The `mms-type` named `name`, if it is one.
pub(crate) fn mms_type(name: &str) -> Option<&'static str> {
    MMS_TYPES.iter().find(|t| **t == name).copied()
}

/// Base64 of either alphabet's sibling with or without padding: upload tokens come padded from
/// whatsmeow and unpadded from Baileys and whatsapp-rust (CLIENT-FEATURES.md §2.3).
const B64_URL_ANY: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const B64_STD_ANY: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A SHA-256 given as URL-safe base64 (padded or not): an upload token.
pub(crate) fn token_hash(token: &str) -> Option<[u8; 32]> {
    B64_URL_ANY.decode(token).ok()?.try_into().ok()
}

/// A SHA-256 given as base64 of either alphabet (padded or not) or hex.
fn any_hash(s: &str) -> Option<[u8; 32]> {
    let bytes = B64_URL_ANY
        .decode(s)
        .or_else(|_| B64_STD_ANY.decode(s))
        .ok()
        .filter(|b| b.len() == 32)
        .or_else(|| crate::util::hex::decode(s))?;
    bytes.try_into().ok()
}

/// The `t62.<class>-24` segment real direct paths carry per media class (7118 image, 7161
/// video, 7117 audio, 7119 document in public samples; the others are not recorded anywhere
/// here, so they share 7119).
fn class(mms_type: &str) -> &'static str {
    match mms_type {
        "image" | "sticker-pack" | "thumbnail-link" | "thumbnail-sticker-pack" => "7118",
        "video" => "7161",
        "audio" => "7117",
        _ => "7119",
    }
}

struct Grant {
    device: String,
    expires: u64,
}

struct Stored {
    mms_type: &'static str,
    enc_sha256: [u8; 32],
    size: u64,
    /// The signed path (the direct path before `?`).
    path: String,
    direct_path: String,
    expired: bool,
}

#[derive(Default)]
struct Inner {
    config: CdnConfig,
    /// Auth token → grant.
    grants: HashMap<String, Grant>,
    /// Device JID → its auth token.
    by_device: HashMap<String, String>,
    /// Blob name (`<a>_<b>_<c>`) → what is stored.
    media: HashMap<String, Stored>,
    /// Blob names, oldest first.
    order: VecDeque<String>,
    refuse_uploads: u32,
    next_part: u64,
    /// Transfer id → direction and bytes moved.
    transfers: HashMap<u64, (&'static str, u64)>,
    next_transfer: u64,
    /// Bytes a second each transfer may move (a slow-transfers fault).
    rate: Option<u64>,
}

/// One upload or download under way, counted while it lives: dropped when its connection
/// ends, complete or not.
pub(crate) struct Transfer {
    cdn: Arc<Cdn>,
    id: u64,
}

impl Transfer {
    /// Counts `n` more bytes moved; how long to wait before moving more, under a slow-transfers
    /// fault.
    pub(crate) fn moved(&self, n: usize) -> std::time::Duration {
        let mut g = self.cdn.lock();
        if let Some(t) = g.transfers.get_mut(&self.id) {
            t.1 += n as u64;
        }
        match g.rate {
            Some(rate) => std::time::Duration::from_secs_f64(n as f64 / rate.max(1) as f64),
            None => std::time::Duration::ZERO,
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.cdn.lock().transfers.remove(&self.id);
    }
}

/// The CDN's state: its directory (removed when the last reference goes), host, link-signing
/// secret and clock.
pub(crate) struct Cdn {
    dir: PathBuf,
    host: String,
    secret: [u8; 32],
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Cdn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Cdn {{ host: {}, dir: {} }}",
            self.host,
            self.dir.display()
        )
    }
}

impl Drop for Cdn {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cdn {
    /// A CDN reached at `host` (`ip:port`), storing under a fresh directory in the system's
    /// temp directory (mode 0700).
    pub(crate) fn new(host: String, clock: Arc<dyn Clock>) -> std::io::Result<Cdn> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!(
            "wa-gateway-sim-cdn-{}-{}",
            std::process::id(),
            crate::util::hex::encode(&rand::random::<[u8; 8]>())
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Cdn {
            dir,
            host,
            secret: rand::random(),
            clock,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves maps that are still consistent one by one.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The CDN's `host:port`.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// Where blobs are kept.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lifetimes and limits in force.
    pub(crate) fn config(&self) -> CdnConfig {
        self.lock().config.clone()
    }

    /// Changes the lifetimes and limits (for what comes next; links and grants already made
    /// keep theirs).
    pub(crate) fn set_config(&self, config: CdnConfig) {
        self.lock().config = config;
    }

    /// The `media_conn` answer for the device `device`: its auth token, kept while it has at
    /// least the answer's `ttl` to live (a client caching the answer never holds a dead
    /// token), else a fresh one, and this CDN as the one host. `max_buckets` means nothing
    /// known (CLIENT-FEATURES.md Appendix C) but whatsmeow requires it; 12 is a plausible value.
    pub(crate) fn media_conn(&self, device: &str) -> MediaConnInfo {
        let now = self.clock.now_unix();
        let mut g = self.lock();
        let config = g.config.clone();
        let current = g
            .by_device
            .get(device)
            .and_then(|a| Some((a.clone(), g.grants.get(a)?.expires)))
            .filter(|(_, expires)| *expires > now.saturating_add(config.media_conn_ttl));
        let (auth, expires) = match current {
            Some(c) => c,
            None => {
                if g.grants.len() >= AUTH_SWEEP_AT {
                    g.grants.retain(|_, grant| grant.expires > now);
                    let Inner {
                        grants, by_device, ..
                    } = &mut *g;
                    by_device.retain(|_, a| grants.contains_key(a));
                }
                if let Some(old) = g.by_device.remove(device) {
                    g.grants.remove(&old);
                }
                let auth = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(rand::random::<[u8; 32]>());
                let expires = now.saturating_add(config.auth_ttl);
                g.grants.insert(
                    auth.clone(),
                    Grant {
                        device: device.to_owned(),
                        expires,
                    },
                );
                g.by_device.insert(device.to_owned(), auth.clone());
                (auth, expires)
            }
        };
        MediaConnInfo {
            auth,
            ttl: config.media_conn_ttl,
            auth_ttl: expires.saturating_sub(now),
            max_buckets: Some(12),
            hosts: vec![self.host.clone()],
        }
    }

    /// The device whose unexpired auth token `auth` is.
    pub(crate) fn authorized(&self, auth: &str) -> Option<String> {
        let now = self.clock.now_unix();
        let g = self.lock();
        g.grants
            .get(auth)
            .filter(|grant| grant.expires > now)
            .map(|grant| grant.device.clone())
    }

    /// Whether a refuse-uploads fault answers this upload (counting it off).
    pub(crate) fn take_refusal(&self) -> bool {
        let mut g = self.lock();
        if g.refuse_uploads == 0 {
            return false;
        }
        g.refuse_uploads -= 1;
        true
    }

    /// Starts counting a transfer (`upload` or `download`).
    pub(crate) fn transfer(self: &Arc<Cdn>, direction: &'static str) -> Transfer {
        let mut g = self.lock();
        g.next_transfer += 1;
        let id = g.next_transfer;
        g.transfers.insert(id, (direction, 0));
        Transfer {
            cdn: self.clone(),
            id,
        }
    }

    /// The transfers under way.
    pub(crate) fn transfers(&self) -> Vec<TransferInfo> {
        let g = self.lock();
        let mut v: Vec<(u64, TransferInfo)> = g
            .transfers
            .iter()
            .map(|(id, (direction, bytes))| {
                (
                    *id,
                    TransferInfo {
                        direction,
                        bytes: *bytes,
                    },
                )
            })
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v.into_iter().map(|(_, t)| t).collect()
    }

    /// A fresh path to write an upload to before it is checked.
    pub(crate) fn part_path(&self) -> PathBuf {
        let mut g = self.lock();
        g.next_part += 1;
        self.dir.join(format!("upload-{}.part", g.next_part))
    }

    /// A fresh path in the CDN's directory for a file kept beside the blobs (a simulated
    /// phone's copy of its media), so it goes with the simulator's state.
    pub(crate) fn side_path(&self) -> PathBuf {
        self.dir.join(format!(
            "phone-{}.enc",
            crate::util::hex::encode(&rand::random::<[u8; 12]>())
        ))
    }

    /// Keeps the checked upload written at `part` as a blob of `mms_type` (moved, not
    /// copied) and names it.
    pub(crate) fn commit(
        &self,
        part: &Path,
        mms_type: &'static str,
        enc_sha256: [u8; 32],
        size: u64,
    ) -> std::io::Result<Uploaded> {
        // Three numbers, as real blob names (`<8 digits>_<15–16>_<18–19>_n.enc`).
        let object_id =
            (1_000_000_000_000_000 + rand::random::<u64>() % 9_000_000_000_000_000).to_string();
        let name = format!(
            "{}_{}_{}",
            10_000_000 + rand::random::<u32>() % 90_000_000,
            object_id,
            100_000_000_000_000_000 + rand::random::<u64>() % 900_000_000_000_000_000
        );
        std::fs::rename(part, self.blob(&name))?;
        let path = format!("/v/t62.{}-24/{name}_n.enc", class(mms_type));
        let oe = self
            .clock
            .now_unix()
            .saturating_add(self.lock().config.link_ttl);
        let direct_path = format!(
            "{path}?{CCB}&oh=01_{}&oe={oe:08X}&{NC_SID}",
            self.sign(&path, oe)
        );
        let url = format!("https://{}{direct_path}&mms3=true", self.host);
        let evicted = {
            let mut g = self.lock();
            g.media.insert(
                name.clone(),
                Stored {
                    mms_type,
                    enc_sha256,
                    size,
                    path,
                    direct_path: direct_path.clone(),
                    expired: false,
                },
            );
            g.order.push_back(name);
            let mut evicted = Vec::new();
            while g.order.len() > MAX_STORED_MEDIA {
                if let Some(old) = g.order.pop_front() {
                    g.media.remove(&old);
                    evicted.push(old);
                }
            }
            evicted
        };
        for old in evicted {
            let _ = std::fs::remove_file(self.blob(&old));
        }
        Ok(Uploaded {
            url,
            direct_path,
            object_id,
            enc_sha256,
            size,
        })
    }

    /// Stores already-encrypted bytes handed over in-process (a simulated phone's own
    /// outgoing media, or its re-upload answering a media retry): a fresh direct path.
    pub(crate) fn store(&self, mms_type: &str, bytes: &[u8]) -> Result<Uploaded, StoreError> {
        self.store_from(mms_type, &mut &bytes[..], bytes.len() as u64)
    }

    /// Stores the already-encrypted file at `src` (a simulated phone's copy), streamed in
    /// chunks: a 300 MB file is never held whole.
    pub(crate) fn store_file(&self, mms_type: &str, src: &Path) -> Result<Uploaded, StoreError> {
        let mut f = File::open(src)?;
        let len = f.metadata()?.len();
        self.store_from(mms_type, &mut f, len)
    }

    fn store_from(
        &self,
        mms_type: &str,
        src: &mut dyn Read,
        len: u64,
    ) -> Result<Uploaded, StoreError> {
        let mms_type = self::mms_type(mms_type).ok_or(StoreError::UnknownType)?;
        if len == 0 {
            return Err(StoreError::Empty);
        }
        if len > self.config().max_upload_bytes {
            return Err(StoreError::TooLarge);
        }
        let part = self.part_path();
        let copied = (|| -> std::io::Result<([u8; 32], u64)> {
            let mut out = File::create(&part)?;
            let mut hash = Sha256::new();
            let mut buf = vec![0u8; COPY_CHUNK];
            let mut size = 0u64;
            loop {
                let n = src.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hash.update(&buf[..n]);
                out.write_all(&buf[..n])?;
                size += n as u64;
            }
            Ok((hash.finalize().into(), size))
        })();
        let result = copied
            .and_then(|(hash, size)| self.commit(&part, mms_type, hash, size))
            .map_err(StoreError::from);
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        result
    }

    /// Opens the blob a download names: `target` is a direct path as handed out, with whatever
    /// query parameters a client appends (whatsmeow's `&hash=…&mms-type=…&__wa-mms=`,
    /// whatsapp-rust's `token`/`auth`); none of them is required, as WA Web sends no auth on
    /// downloads (CLIENT-FEATURES.md §0). The file and its length.
    pub(crate) fn open(&self, target: &str) -> Result<(File, u64), Refusal> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        // The first `oh` and `oe` are the server's: clients only append after them.
        let param = |key: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        };
        let oh = param("oh").ok_or(Refusal::BadSignature)?;
        let oe = param("oe")
            .and_then(|oe| u64::from_str_radix(oe, 16).ok())
            .ok_or(Refusal::BadSignature)?;
        let mac = oh
            .strip_prefix("01_")
            .and_then(|s| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(s)
                    .ok()
            })
            .ok_or(Refusal::BadSignature)?;
        self.mac(path, oe)
            .verify_slice(&mac)
            .map_err(|_| Refusal::BadSignature)?;
        if self.clock.now_unix() >= oe {
            return Err(Refusal::LinkExpired);
        }
        let name = path
            .rsplit('/')
            .next()
            .and_then(|n| n.strip_suffix("_n.enc"))
            .ok_or(Refusal::NotFound)?;
        {
            let g = self.lock();
            let s = g.media.get(name).ok_or(Refusal::NotFound)?;
            if s.path != path || s.expired {
                return Err(Refusal::NotFound);
            }
        }
        let file = File::open(self.blob(name)).map_err(|_| Refusal::NotFound)?;
        let size = file.metadata().map_err(|_| Refusal::NotFound)?.len();
        Ok((file, size))
    }

    /// Applies `fault`; how many blobs it touched (1 for the upload and auth faults).
    pub(crate) fn fault(&self, fault: &CdnFault) -> usize {
        match fault {
            CdnFault::RefuseUploads(n) => {
                self.lock().refuse_uploads = *n;
                1
            }
            CdnFault::ExpireAuth => {
                let mut g = self.lock();
                let now = self.clock.now_unix();
                for grant in g.grants.values_mut() {
                    grant.expires = grant.expires.min(now);
                }
                1
            }
            CdnFault::SlowTransfers(rate) => {
                self.lock().rate = *rate;
                1
            }
            CdnFault::Expire(which) => {
                let names = {
                    let mut g = self.lock();
                    let names = select(&g, which);
                    for n in &names {
                        if let Some(s) = g.media.get_mut(n) {
                            s.expired = true;
                        }
                    }
                    names
                };
                for n in &names {
                    let _ = std::fs::remove_file(self.blob(n));
                }
                names.len()
            }
            CdnFault::Corrupt(which) => {
                let names = select(&self.lock(), which);
                names.iter().filter(|n| self.flip_byte(n).is_ok()).count()
            }
        }
    }

    /// The blobs stored now, oldest first (expired ones included).
    pub(crate) fn list(&self) -> Vec<MediaInfo> {
        let g = self.lock();
        g.order
            .iter()
            .filter_map(|n| g.media.get(n))
            .map(|s| MediaInfo {
                enc_sha256: base64::engine::general_purpose::STANDARD.encode(s.enc_sha256),
                size: s.size,
                mms_type: s.mms_type.to_owned(),
                direct_path: s.direct_path.clone(),
                url: format!("https://{}{}&mms3=true", self.host, s.direct_path),
                expired: s.expired,
            })
            .collect()
    }

    fn blob(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.enc"))
    }

    fn mac(&self, path: &str, oe: u64) -> Hmac<Sha256> {
        // HMAC keys of any length are accepted.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(path.as_bytes());
        m.update(&[0]);
        m.update(&oe.to_be_bytes());
        m
    }

    /// `oh` without its `01_` version prefix: an HMAC of the path and expiry under the
    /// simulator's secret, so a forged or edited direct path is refused.
    fn sign(&self, path: &str, oe: u64) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.mac(path, oe).finalize().into_bytes())
    }

    /// Flips (xor 0xff) the byte in the middle of blob `name`.
    fn flip_byte(&self, name: &str) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.blob(name))?;
        let at = f.metadata()?.len() / 2;
        let mut b = [0u8];
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut b)?;
        b[0] ^= 0xff;
        f.seek(SeekFrom::Start(at))?;
        f.write_all(&b)
    }
}

/// The names of the blobs `which` names: a direct path or URL, or an enc SHA-256.
fn select(g: &Inner, which: &str) -> Vec<String> {
    let which = which.trim();
    let path = which
        .strip_prefix("https://")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .or_else(|| which.starts_with('/').then_some(which));
    match path {
        Some(p) => {
            let p = p.split_once('?').map_or(p, |(p, _)| p);
            g.order
                .iter()
                .filter(|n| g.media.get(*n).is_some_and(|s| s.path == p))
                .cloned()
                .collect()
        }
        None => match any_hash(which) {
            Some(h) => g
                .order
                .iter()
                .filter(|n| g.media.get(*n).is_some_and(|s| s.enc_sha256 == h))
                .cloned()
                .collect(),
            None => Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::clock::FixedClock;

    fn cdn(now: u64) -> (Cdn, FixedClock) {
        let clock = FixedClock::new(now);
        (
            Cdn::new("127.0.0.1:1".into(), Arc::new(clock.clone())).unwrap(),
            clock,
        )
    }

    #[test]
    fn a_stored_blob_opens_by_its_direct_path_with_appended_parameters_only() {
        let (cdn, clock) = cdn(1_700_000_000);
        let up = cdn.store("image", b"0123456789abcdefXYZ").unwrap();
        assert!(
            up.direct_path.starts_with("/v/t62.7118-24/"),
            "{}",
            up.direct_path
        );
        assert!(up.direct_path.contains("?ccb=11-4&oh=01_"));
        assert!(up.direct_path.ends_with("&_nc_sid=5e03e0"));
        assert_eq!(
            up.url,
            format!("https://127.0.0.1:1{}&mms3=true", up.direct_path)
        );
        let read = |target: &str| {
            cdn.open(target).map(|(mut f, n)| {
                let mut v = Vec::new();
                f.read_to_end(&mut v).unwrap();
                assert_eq!(v.len() as u64, n);
                v
            })
        };
        assert_eq!(read(&up.direct_path).unwrap(), b"0123456789abcdefXYZ");
        // whatsmeow's and whatsapp-rust's additions do not matter.
        let wm = format!("{}&hash=abc=&mms-type=image&__wa-mms=", up.direct_path);
        assert!(read(&wm).is_ok());
        assert!(read(&format!("{}?token=abc", up.direct_path)).is_ok());
        // A later `oe` or another path does not carry the signature.
        let later = up.direct_path.replace("&oe=", "&oe=1");
        assert_eq!(read(&later).unwrap_err(), Refusal::BadSignature);
        let other = up.direct_path.replacen("7118", "7119", 1);
        assert_eq!(read(&other).unwrap_err(), Refusal::BadSignature);
        let bare = up.direct_path.split('?').next().unwrap().to_owned();
        assert_eq!(read(&bare).unwrap_err(), Refusal::BadSignature);
        // Past `oe`, 410.
        clock.set(1_700_000_000 + CdnConfig::default().link_ttl);
        assert_eq!(read(&up.direct_path).unwrap_err(), Refusal::LinkExpired);
    }

    #[test]
    fn faults_expire_and_corrupt_by_hash_or_path() {
        let (cdn, _) = cdn(1_700_000_000);
        let a = cdn.store("document", &[7u8; 100]).unwrap();
        let b = cdn.store("video", &[9u8; 33]).unwrap();
        assert_eq!(cdn.fault(&CdnFault::Corrupt(a.direct_path.clone())), 1);
        let (mut f, _) = cdn.open(&a.direct_path).unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        assert_eq!(v.iter().filter(|x| **x != 7).count(), 1);
        assert_eq!(v[50], !7u8);
        let hex = crate::util::hex::encode(&b.enc_sha256);
        assert_eq!(cdn.fault(&CdnFault::Expire(hex)), 1);
        assert_eq!(cdn.open(&b.direct_path).unwrap_err(), Refusal::NotFound);
        let listed = cdn.list();
        assert_eq!(listed.len(), 2);
        assert!(!listed[0].expired && listed[1].expired);
        assert_eq!(cdn.fault(&CdnFault::Expire("nothing".into())), 0);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(a.enc_sha256);
        assert_eq!(cdn.fault(&CdnFault::Expire(b64)), 1);
    }

    #[test]
    fn auth_is_per_device_kept_while_it_outlives_the_answer_and_expires() {
        let (cdn, clock) = cdn(1_000);
        let a = cdn.media_conn("1@s.whatsapp.net");
        assert_eq!(cdn.media_conn("1@s.whatsapp.net").auth, a.auth);
        assert_ne!(cdn.media_conn("2@s.whatsapp.net").auth, a.auth);
        assert_eq!(cdn.authorized(&a.auth).as_deref(), Some("1@s.whatsapp.net"));
        assert_eq!(a.auth_ttl, CdnConfig::default().auth_ttl);
        // Near its end, a fresh token replaces it.
        clock.set(1_000 + a.auth_ttl - a.ttl);
        let b = cdn.media_conn("1@s.whatsapp.net");
        assert_ne!(b.auth, a.auth);
        assert_eq!(cdn.authorized(&a.auth), None, "the old one is forgotten");
        cdn.fault(&CdnFault::ExpireAuth);
        assert_eq!(cdn.authorized(&b.auth), None);
        assert_ne!(cdn.media_conn("1@s.whatsapp.net").auth, b.auth);
    }

    #[test]
    fn tokens_decode_padded_or_not_and_the_store_stays_bounded() {
        let h = [0xfbu8; 32];
        let padded = base64::engine::general_purpose::URL_SAFE.encode(h);
        assert!(padded.ends_with('='));
        assert_eq!(token_hash(&padded), Some(h));
        assert_eq!(token_hash(padded.trim_end_matches('=')), Some(h));
        assert_eq!(token_hash("abc"), None);
        let (cdn, _) = cdn(1_000);
        let first = cdn.store("image", b"x").unwrap();
        for _ in 0..MAX_STORED_MEDIA {
            cdn.store("image", b"y").unwrap();
        }
        assert_eq!(cdn.list().len(), MAX_STORED_MEDIA);
        assert_eq!(cdn.open(&first.direct_path).unwrap_err(), Refusal::NotFound);
        assert!(matches!(
            cdn.store("ptt", b"x"),
            Err(StoreError::UnknownType)
        ));
        let dir = cdn.dir().to_owned();
        drop(cdn);
        assert!(!dir.exists(), "the directory goes with the CDN");
    }

    #[test]
    fn transfers_are_listed_while_they_last_and_paced_under_a_slow_link() {
        let cdn = Arc::new(cdn(1_700_000_000).0);
        let up = cdn.transfer("upload");
        assert_eq!(up.moved(1000), std::time::Duration::ZERO);
        let down = cdn.transfer("download");
        assert_eq!(cdn.fault(&CdnFault::SlowTransfers(Some(4000))), 1);
        assert_eq!(down.moved(1000), std::time::Duration::from_millis(250));
        let listed = |d: &'static str, bytes: u64| TransferInfo {
            direction: d,
            bytes,
        };
        assert_eq!(
            cdn.transfers(),
            vec![listed("upload", 1000), listed("download", 1000)]
        );
        drop(up);
        assert_eq!(cdn.transfers(), vec![listed("download", 1000)]);
        cdn.fault(&CdnFault::SlowTransfers(None));
        assert_eq!(down.moved(10), std::time::Duration::ZERO);
        drop(down);
        assert!(cdn.transfers().is_empty());
    }
}
