//! HTTPS to WhatsApp's media CDN (CLIENT-FEATURES §2.3, §2.5): one pooled HTTP client shared by
//! every account, trusting the same roots as the socket (webpki plus `WA_GATEWAY_WS_CA`). It
//! moves encrypted bytes only; keys, hashes and what the bytes mean are the caller's.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;

/// Why a CDN request failed.
#[derive(Debug, thiserror::Error)]
pub enum CdnError {
    /// The host could not be reached, or the connection broke.
    #[error("CDN unreachable: {0}")]
    Network(String),
    /// The CDN answered with an error status.
    #[error("CDN answered HTTP {0}")]
    Status(u16),
    /// The CDN's answer could not be read.
    #[error("CDN answer malformed: {0}")]
    BadAnswer(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Setup(String),
}

impl CdnError {
    /// The file is gone from the CDN (404, 410): only the phone can upload it again.
    pub fn is_gone(&self) -> bool {
        matches!(self, CdnError::Status(404 | 410))
    }

    /// The upload token was refused (401, 403): a fresh `media_conn` may help.
    pub fn is_auth(&self) -> bool {
        matches!(self, CdnError::Status(401 | 403))
    }
}

fn network(e: reqwest::Error) -> CdnError {
    // reqwest's message names the URL, whose query carries the upload token.
    CdnError::Network(e.without_url().to_string())
}

/// What an upload answers (whatsmeow `UploadResponse`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct UploadAnswer {
    /// The full URL of the uploaded file.
    pub url: String,
    /// The host-relative path recipients download from.
    pub direct_path: String,
    /// An opaque handle (newsletters), if any.
    #[serde(default)]
    pub handle: Option<String>,
    /// The CDN's object id, if any.
    #[serde(default)]
    pub object_id: Option<String>,
}

/// Most bytes of an upload's JSON answer read: it is a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// The pooled HTTP client for the CDN; cheap to clone.
#[derive(Clone)]
pub struct Cdn {
    http: reqwest::Client,
}

impl std::fmt::Debug for Cdn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cdn")
    }
}

/// The origin WhatsApp Web's requests carry (whatsmeow `rawUpload`, Baileys).
const ORIGIN: &str = "https://web.whatsapp.com";

impl Cdn {
    /// A client trusting `tls`'s roots (None: the webpki roots). No redirects: a CDN answer
    /// that redirects is an error, never followed to wherever it points.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Result<Cdn, CdnError> {
        let tls = match tls {
            Some(t) => t,
            None => crate::socket::tls::client_config(&[])
                .map_err(|e| CdnError::Setup(e.to_string()))?,
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(20))
            // Between reads, not in total: a 2 GB file takes as long as it takes.
            .read_timeout(Duration::from_secs(60))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| CdnError::Setup(e.to_string()))?;
        Ok(Cdn { http })
    }

    /// Uploads `body` (`len` bytes of ciphertext ‖ MAC whose SHA-256 is `enc_sha256`) to
    /// `host` as `mms_type`: `POST https://<host>/mms/<type>/<token>?auth=…&token=…`, the token
    /// unpadded base64url (Baileys and whatsapp-rust; CLIENT-FEATURES Appendix A).
    pub async fn upload(
        &self,
        host: &str,
        auth: &str,
        mms_type: &str,
        enc_sha256: &[u8; 32],
        len: u64,
        body: reqwest::Body,
    ) -> Result<UploadAnswer, CdnError> {
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(enc_sha256);
        let mut url = reqwest::Url::parse(&format!("https://{host}/mms/{mms_type}/{token}"))
            .map_err(|e| CdnError::BadAnswer(format!("upload URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("auth", auth)
            .append_pair("token", &token);
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::ORIGIN, ORIGIN)
            .header(reqwest::header::REFERER, "https://web.whatsapp.com/")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await
            .map_err(network)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(CdnError::Status(status.as_u16()));
        }
        let bytes = read_capped(resp, MAX_ANSWER).await?;
        serde_json::from_slice(&bytes).map_err(|e| CdnError::BadAnswer(e.to_string()))
    }

    /// Starts a download of `https://<host><direct_path>` (the path as the message gives it,
    /// no auth: WA Web sends none). The caller reads the body chunk by chunk.
    pub async fn download(&self, host: &str, direct_path: &str) -> Result<Download, CdnError> {
        if !direct_path.starts_with('/') {
            return Err(CdnError::BadAnswer(
                "direct path is not host-relative".into(),
            ));
        }
        let url = reqwest::Url::parse(&format!("https://{host}{direct_path}"))
            .map_err(|e| CdnError::BadAnswer(format!("download URL: {e}")))?;
        let resp = self
            .http
            .get(url)
            .header(reqwest::header::ORIGIN, ORIGIN)
            .header(reqwest::header::REFERER, "https://web.whatsapp.com/")
            .send()
            .await
            .map_err(network)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(CdnError::Status(status.as_u16()));
        }
        Ok(Download {
            declared: resp.content_length(),
            resp,
        })
    }
}

/// A download in progress.
pub struct Download {
    /// The length the CDN declared (`Content-Length`), if it did.
    pub declared: Option<u64>,
    resp: reqwest::Response,
}

impl Download {
    /// The next chunk of the body; None at its end.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, CdnError> {
        self.resp.chunk().await.map_err(network)
    }
}

async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, CdnError> {
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.map_err(network)? {
        if out.len() + c.len() > cap {
            return Err(CdnError::BadAnswer("answer too large".into()));
        }
        out.extend_from_slice(&c);
    }
    Ok(out)
}
