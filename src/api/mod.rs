//! The host API client: typed calls, lenient reply parsing, error classes, pacing, streamed uploads.
//!
//! `Client` is cheap to clone and shared by every task; all calls go through
//! one `Pacer`. Errors never carry the key: reqwest errors lose their URL,
//! anything else that could echo a request goes through `redact`.

mod error;
mod pace;
pub mod redact;
mod reply;
mod settings;
mod stats;

pub use error::{ApiError, ErrorClass, UPLOAD_ENDPOINT, classify_rejection};
pub use pace::{ByteLimiter, Pacer};
pub use reply::{
    AccountInfo, Cloned, DeletedBy, DeletedFile, DirectLinks, DmcaEntry, Encoding, FileInfo,
    FileListPage, Folder, FolderListing, LinkVersion, ListedFile, StatsDay, StorageLeft,
    UploadedFile, UrlJob, unescape,
};
pub use settings::{ApiConfig, ApiKey, ApiPaths};
pub use stats::{ApiStats, class_label};

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::lock::lock;
use reply::Envelope;

/// The alternative paths some hosts use for the deleted and DMCA lists.
const ALT_DELETED: &str = "/api/files/deleted";
const ALT_DMCA: &str = "/api/files/dmca";
/// Most codes file/info takes in one call.
pub const FILE_INFO_BATCH: usize = 50;
/// Chunk size of the streamed upload body: large enough for throughput,
/// small enough that memory stays flat.
const UPLOAD_CHUNK: usize = 256 * 1024;
/// Largest reply body accepted (file/list with 1000 entries is ~300 KB).
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;
/// How many read timeouts to wait for the upload reply after the last byte.
const REPLY_WAIT_FACTOR: u32 = 5;

/// Progress of an upload: called with the number of bytes of the file sent so far.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// Fields of one upload besides the file itself.
#[derive(Debug, Clone, Default)]
pub struct UploadParams {
    pub title: String,
    pub descr: Option<String>,
    pub fld_id: u64,
    pub cat_id: Option<u64>,
    pub tags: Option<String>,
    pub public: bool,
    pub adult: bool,
}

/// The `created` filter of file/list.
#[derive(Debug, Clone)]
pub enum Created {
    /// "YYYY-MM-DD HH:MM:SS" in the host's local time.
    Since(String),
    /// Files created in the last N minutes (no time zone to get wrong).
    LastMinutes(u64),
}

/// Filters and paging of file/list; `None` leaves a filter out.
#[derive(Debug, Clone, Default)]
pub struct FileListQuery {
    pub fld_id: Option<u64>,
    pub title: Option<String>,
    pub created: Option<Created>,
    pub public: Option<bool>,
    pub adult: Option<bool>,
    pub per_page: Option<u32>,
    pub page: Option<u32>,
}

/// Fields of file/edit; `None` leaves the field as it is on the host.
#[derive(Debug, Clone, Default)]
pub struct FileEdit {
    pub title: Option<String>,
    pub descr: Option<String>,
    pub cat_id: Option<u64>,
    pub fld_id: Option<u64>,
    pub public: Option<bool>,
    pub adult: Option<bool>,
    pub tags: Option<String>,
}

/// Fields of folder/edit; `None` leaves the field as it is.
#[derive(Debug, Clone, Default)]
pub struct FolderEdit {
    pub name: Option<String>,
    pub parent_id: Option<u64>,
    pub descr: Option<String>,
}

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// For uploads: no read timeout (reqwest's would bound the whole body
    /// send); `upload_file` watches progress instead.
    upload_http: reqwest::Client,
    base: url::Url,
    key: ApiKey,
    paths: ApiPaths,
    pacer: Pacer,
    /// Shared by every upload of this client.
    bandwidth: Option<Arc<ByteLimiter>>,
    read_timeout: Duration,
    /// Paths of the deleted/DMCA lists once a host has shown which it serves.
    learned_deleted: Mutex<Option<String>>,
    learned_dmca: Mutex<Option<String>>,
    allow_http_upload: bool,
    /// No call before this instant: the host's rate limit is (nearly) used
    /// up for its current minute or day. With the reason, for errors.
    hold: Mutex<Option<(tokio::time::Instant, String)>>,
    /// The host answered "not allowed in API" to file/direct_link.
    direct_link_disabled: AtomicBool,
    /// The upload server last handed out, and since when (see
    /// `UPLOAD_SERVER_REUSE`).
    upload_server: Mutex<Option<(url::Url, tokio::time::Instant)>>,
    /// Calls and errors, for the metrics.
    stats: ApiStats,
}

/// How long one upload server from upload/server serves further uploads.
/// The server software names a server by its address alone
/// (`{srv_cgi_url}/upload/{disk_id}`: no token, nothing per upload), picked
/// by free disk, round robin or load. Asking anew for every file costs an
/// API call per file, the scarce resource on hosts that allow 5 calls a
/// minute; reusing a server for ten minutes follows the host's rotation at
/// a coarser grain (a server filling up or turned off is left within ten
/// minutes), and any failure that is not a verdict on the file drops it at
/// once.
const UPLOAD_SERVER_REUSE: Duration = Duration::from_secs(600);

/// How long `get` waits in place for a rate-limit hold; a longer hold (a
/// daily limit) fails the call at once, so that no call burns the day's
/// counter and the caller can pause with a clear reason.
const MAX_INLINE_HOLD: Duration = Duration::from_secs(70);
/// Below this many calls left in the host's period, calls are spread over
/// what remains of it instead of spent at once.
const SLOW_DOWN_BELOW: i64 = 3;

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

fn flag(b: bool) -> String {
    if b { "1".into() } else { "0".into() }
}

impl Client {
    pub fn new(cfg: &ApiConfig) -> Result<Client, ApiError> {
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(cfg.connect_timeout)
                // Real hosts redirect http to https; a redirect elsewhere would
                // carry the key to a host the user did not name.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("vidsync/", env!("CARGO_PKG_VERSION")))
        };
        let setup_err = |e: reqwest::Error| ApiError::Network {
            endpoint: "client setup".into(),
            source: e.without_url(),
        };
        let builder = || {
            cfg.resolve
                .iter()
                .fold(builder(), |b, (name, addr)| b.resolve(name, *addr))
        };
        let http = builder()
            .read_timeout(cfg.read_timeout)
            .build()
            .map_err(setup_err)?;
        let upload_http = builder().build().map_err(setup_err)?;
        let mut base = cfg.url.clone();
        // The paths are absolute ("/api/..."): drop a trailing slash of the base.
        let trimmed = base.path().trim_end_matches('/').to_string();
        base.set_path(&trimmed);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                upload_http,
                base,
                key: cfg.key.clone(),
                paths: cfg.paths.clone(),
                pacer: Pacer::new(cfg.requests_per_minute),
                bandwidth: cfg
                    .bandwidth_limit
                    .filter(|b| *b > 0)
                    .map(|b| Arc::new(ByteLimiter::new(b))),
                read_timeout: cfg.read_timeout,
                learned_deleted: Mutex::new(None),
                learned_dmca: Mutex::new(None),
                allow_http_upload: cfg.allow_http_upload,
                hold: Mutex::new(None),
                direct_link_disabled: AtomicBool::new(false),
                upload_server: Mutex::new(None),
                stats: ApiStats::default(),
            }),
        })
    }

    pub fn paths(&self) -> &ApiPaths {
        &self.inner.paths
    }

    /// The calls this client (and its clones) sent, and their errors.
    pub fn stats(&self) -> &ApiStats {
        &self.inner.stats
    }

    fn endpoint_url(&self, path: &str) -> Result<url::Url, ApiError> {
        let full = format!("{}{}", self.inner.base.as_str().trim_end_matches('/'), path);
        url::Url::parse(&full).map_err(|e| ApiError::Protocol {
            endpoint: path.to_string(),
            detail: format!("bad endpoint URL: {e}"),
        })
    }

    fn network_error(endpoint: &str, e: reqwest::Error) -> ApiError {
        if e.is_timeout() {
            ApiError::Timeout {
                endpoint: endpoint.to_string(),
            }
        } else {
            ApiError::Network {
                endpoint: endpoint.to_string(),
                source: e.without_url(),
            }
        }
    }

    /// Read a reply body and check both layers: the HTTP status (proxies)
    /// and the JSON `status` (the host itself answers errors with HTTP 200).
    async fn read_envelope(
        &self,
        endpoint: &str,
        resp: reqwest::Response,
    ) -> Result<Envelope, ApiError> {
        let status = resp.status();
        if status.is_redirection() {
            return Err(ApiError::Protocol {
                endpoint: endpoint.to_string(),
                detail: format!(
                    "HTTP {} redirect (use the https:// URL of the host)",
                    status.as_u16()
                ),
            });
        }
        if status != reqwest::StatusCode::OK {
            return Err(ApiError::Http {
                endpoint: endpoint.to_string(),
                status: status.as_u16(),
            });
        }
        // Read the body in chunks with a cap: a reply is small, and a broken
        // proxy or a hostile upload server must not fill memory.
        let mut resp = resp;
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Self::network_error(endpoint, e))?
        {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(ApiError::Protocol {
                    endpoint: endpoint.to_string(),
                    detail: format!("reply larger than {MAX_REPLY_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        // Only an object is a reply: serde would also read a struct from
        // a JSON array, which some broken hosts send.
        let env: Envelope = match serde_json::from_slice::<Value>(&body) {
            Ok(v @ Value::Object(_)) => serde_json::from_value(v).ok(),
            _ => None,
        }
        .ok_or_else(|| {
            let text = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
            ApiError::NotJson {
                endpoint: endpoint.to_string(),
                snippet: redact::redact(&text, &self.inner.key),
            }
        })?;
        self.note_rate_limit(&env);
        match env.status {
            Some(200) => Ok(env),
            Some(s) => {
                let err = ApiError::from_status(
                    endpoint,
                    u16::try_from(s).unwrap_or(u16::MAX),
                    &redact::redact(&env.msg, &self.inner.key),
                );
                if let ApiError::RateLimited { .. } = &err {
                    let (wait, what) = if err.is_daily_limit() {
                        (secs_to_next_day(&env.server_time), "daily")
                    } else {
                        (secs_to_next_minute(&env.server_time), "per-minute")
                    };
                    self.hold_for(
                        Duration::from_secs(wait),
                        format!("the host's {what} API call limit is reached"),
                    );
                }
                Err(err)
            }
            None => Err(ApiError::Protocol {
                endpoint: endpoint.to_string(),
                detail: "reply has no status".into(),
            }),
        }
    }

    /// Hosts that limit calls say in every reply how many are left in the
    /// current period (`requests_available`). Spend the last few slowly
    /// and, at zero, hold every call until the host's next minute.
    fn note_rate_limit(&self, env: &Envelope) {
        let Some(left) = env.requests_available else {
            return;
        };
        let rest = secs_to_next_minute(&env.server_time);
        if left <= 0 {
            self.hold_for(
                Duration::from_secs(rest),
                "the host's API call limit for this minute is used up".into(),
            );
        } else if left < SLOW_DOWN_BELOW {
            let gap = Duration::from_secs(rest) / (left as u32 + 1);
            self.hold_for(gap, "few API calls left in the host's minute".into());
        }
    }

    fn hold_for(&self, d: Duration, why: String) {
        let until = tokio::time::Instant::now() + d;
        let mut h = lock(&self.inner.hold);
        if h.as_ref().is_none_or(|(t, _)| *t < until) {
            // A new pause, not one that is only extended.
            if h.as_ref()
                .is_none_or(|(t, _)| *t <= tokio::time::Instant::now())
            {
                self.inner.stats.rate_limit_pause();
            }
            if d > MAX_INLINE_HOLD {
                tracing::warn!(wait_s = d.as_secs(), reason = %why, "API calls paused");
            }
            *h = Some((until, why));
        }
    }

    /// While calls are held: how much longer, and why.
    pub fn held(&self) -> Option<(Duration, String)> {
        let h = lock(&self.inner.hold);
        let (until, why) = h.as_ref()?;
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        (!left.is_zero()).then(|| (left, why.clone()))
    }

    /// Wait out a short hold; refuse at once during a long one.
    async fn wait_for_hold(&self, endpoint: &str) -> Result<(), ApiError> {
        if let Some((left, why)) = self.held() {
            if left > MAX_INLINE_HOLD {
                return Err(ApiError::RateLimited {
                    endpoint: endpoint.to_string(),
                    msg: format!("{why}; calls resume in {} min", left.as_secs().div_ceil(60)),
                });
            }
            tokio::time::sleep(left).await;
        }
        Ok(())
    }

    /// One paced GET of an API endpoint; returns the envelope of a 200 reply.
    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Envelope, ApiError> {
        let url = self.endpoint_url(path)?;
        let endpoint = path.trim_start_matches("/api/");
        self.wait_for_hold(endpoint).await?;
        self.inner.pacer.acquire().await;
        // A reply that came in while this call waited for its turn may have
        // used up the period.
        self.wait_for_hold(endpoint).await?;
        let mut query: Vec<(&str, &str)> = vec![("key", self.inner.key.expose())];
        query.extend(params.iter().map(|(k, v)| (*k, v.as_str())));
        let started = Instant::now();
        let resp = self
            .inner
            .http
            .get(url)
            .query(&query)
            // A whole API reply is small: a call that takes longer than a few
            // read timeouts is stuck even if bytes trickle in.
            .timeout(self.inner.read_timeout * 3)
            .send()
            .await
            .map_err(|e| Self::network_error(endpoint, e));
        let result = match resp {
            Ok(resp) => self.read_envelope(endpoint, resp).await,
            Err(e) => Err(e),
        };
        self.inner.stats.record(endpoint, &result);
        tracing::trace!(
            endpoint,
            ok = result.is_ok(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "api call"
        );
        result
    }

    /// Deserialize a result; the error text quotes reply values, so it is
    /// redacted (a host that echoes the request would echo the key).
    fn parse<T: DeserializeOwned>(&self, endpoint: &str, v: Value) -> Result<T, ApiError> {
        serde_json::from_value(v).map_err(|e| ApiError::Protocol {
            endpoint: endpoint.to_string(),
            detail: redact::redact(&e.to_string(), &self.inner.key),
        })
    }

    /// A result that is a list, where some hosts send `{}` or `""` for "none".
    fn parse_list<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        v: Value,
    ) -> Result<Vec<T>, ApiError> {
        match v {
            Value::Array(_) => self.parse(endpoint, v),
            Value::Null => Ok(Vec::new()),
            Value::Object(ref m) if m.is_empty() => Ok(Vec::new()),
            Value::String(ref s) if s.is_empty() => Ok(Vec::new()),
            other => Err(ApiError::Protocol {
                endpoint: endpoint.to_string(),
                detail: format!("expected a list, got {}", kind_of(&other)),
            }),
        }
    }

    /// account/info: login, storage, file count. Also the way to check the key.
    pub async fn account_info(&self) -> Result<AccountInfo, ApiError> {
        let p = &self.inner.paths.account_info;
        let env = self.get(p, &[]).await?;
        self.parse(p, env.result)
    }

    /// account/stats for the last `days` days; no data is an empty list.
    pub async fn account_stats(&self, days: u32) -> Result<Vec<StatsDay>, ApiError> {
        let p = &self.inner.paths.account_stats;
        let env = self.get(p, &[("last", days.to_string())]).await?;
        self.parse_list(p, env.result)
    }

    /// upload/server: a fresh upload URL. "No servers available" comes back
    /// with status 200 and an empty result: it becomes `NoServers`.
    pub async fn upload_server(&self) -> Result<url::Url, ApiError> {
        let p = &self.inner.paths.upload_server;
        let env = self.get(p, &[]).await?;
        let s = match &env.result {
            Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                return Err(ApiError::NoServers {
                    endpoint: p.trim_start_matches("/api/").to_string(),
                });
            }
        };
        let url = url::Url::parse(&s).map_err(|e| ApiError::Protocol {
            endpoint: p.to_string(),
            detail: format!("upload server is not a URL ({e})"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ApiError::Protocol {
                endpoint: p.to_string(),
                detail: format!("upload server has scheme {}", url.scheme()),
            });
        }
        Ok(url)
    }

    /// Upload one file: ask for a fresh server, stream the file from disk in
    /// a multipart body (key and fields first), return its file code.
    ///
    /// An error whose `outcome_unknown()` is true may have stored the file:
    /// the caller must look for it before uploading again.
    pub async fn upload_file(
        &self,
        path: &Path,
        params: &UploadParams,
        progress: Option<ProgressFn>,
    ) -> Result<String, ApiError> {
        let server = match self.reusable_upload_server() {
            Some(s) => s,
            None => {
                let s = self
                    .secure_upload_server(self.upload_server().await?)
                    .await?;
                *lock(&self.inner.upload_server) = Some((s.clone(), tokio::time::Instant::now()));
                s
            }
        };
        let result = self.upload_to(server, path, params, progress).await;
        // A verdict on the file came from a working server; anything else
        // (no answer, an HTTP error, an unclear reply) may be the server's
        // doing: the next upload asks for a server again.
        if !matches!(result, Ok(_) | Err(ApiError::FileRejected { .. })) {
            *lock(&self.inner.upload_server) = None;
        }
        result
    }

    /// The upload server handed out less than `UPLOAD_SERVER_REUSE` ago.
    fn reusable_upload_server(&self) -> Option<url::Url> {
        let cached = lock(&self.inner.upload_server);
        cached
            .as_ref()
            .filter(|(_, at)| at.elapsed() < UPLOAD_SERVER_REUSE)
            .map(|(s, _)| s.clone())
    }

    /// `upload_file` once the server is known.
    async fn upload_to(
        &self,
        server: url::Url,
        path: &Path,
        params: &UploadParams,
        progress: Option<ProgressFn>,
    ) -> Result<String, ApiError> {
        let io_err = |what: &'static str| {
            let path = path.to_path_buf();
            move |source| ApiError::Io { path, what, source }
        };
        let file = tokio::fs::File::open(path)
            .await
            .map_err(io_err("opening"))?;
        let len = file
            .metadata()
            .await
            .map_err(io_err("reading size of"))?
            .len();
        let filename = upload_filename(path);
        let started = tokio::time::Instant::now();
        let (body, wire) = self.upload_body(file, len, progress, started);
        let part = reqwest::multipart::Part::stream_with_length(body, len)
            .file_name(filename.clone())
            .mime_str("application/octet-stream")
            .map_err(|e| ApiError::Network {
                endpoint: UPLOAD_ENDPOINT.into(),
                source: e.without_url(),
            })?;
        let form = self.upload_form(params, part);

        // No API token: the POST goes to the upload server, which the
        // hosts' call limits (`requests_available`, counted by the API
        // script) do not count; `concurrency` and `bandwidth_limit` bound
        // uploads.
        let endpoint = UPLOAD_ENDPOINT;
        let result = async {
            let send = self.inner.upload_http.post(server).multipart(form).send();
            let stall = self.inner.read_timeout;
            let resp = tokio::select! {
                r = send => r.map_err(|e| Self::network_error(endpoint, e))?,
                () = wire.stalled(started, stall) => return Err(ApiError::Timeout { endpoint: endpoint.into() }),
            };
            // The reply body may stall too (headers sent, then nothing).
            let env = tokio::time::timeout(
                stall * REPLY_WAIT_FACTOR,
                self.read_envelope(endpoint, resp),
            )
            .await
            .map_err(|_| ApiError::Timeout {
                endpoint: endpoint.into(),
            })?;
            self.upload_reply(env, &filename)
        }
        .await;
        self.inner.stats.record(endpoint, &result);
        result
    }

    /// The file as a streamed body: at most `len` bytes (a file that grows
    /// meanwhile must not overrun the length declared in the multipart
    /// header, or the host refuses the whole request as malformed), paced
    /// by the bandwidth limit, reporting progress, and noting on `Wire`
    /// when the last chunk went out.
    fn upload_body(
        &self,
        file: tokio::fs::File,
        len: u64,
        progress: Option<ProgressFn>,
        started: tokio::time::Instant,
    ) -> (reqwest::Body, Wire) {
        let limiter = self.inner.bandwidth.clone();
        let wire = Wire {
            last_progress: Arc::new(AtomicU64::new(0)),
            all_sent: Arc::new(AtomicBool::new(len == 0)),
        };
        let mut sent: u64 = 0;
        let reader = tokio::io::AsyncReadExt::take(file, len);
        let stream = {
            let wire = wire.clone();
            tokio_util::io::ReaderStream::with_capacity(reader, UPLOAD_CHUNK).then(move |chunk| {
                let progress = progress.clone();
                if let Ok(c) = &chunk {
                    sent += c.len() as u64;
                }
                let sent_now = sent;
                wire.progressed(started);
                if sent_now >= len {
                    wire.all_sent.store(true, Ordering::Relaxed);
                }
                let limiter = limiter.clone();
                let n = chunk.as_ref().map_or(0, |c| c.len() as u64);
                let wire = wire.clone();
                async move {
                    if let Some(l) = &limiter {
                        l.acquire(n).await;
                        // Our own throttle is not the host's silence.
                        wire.progressed(started);
                    }
                    if let Some(p) = &progress {
                        p(sent_now);
                    }
                    chunk
                }
            })
        };
        (reqwest::Body::wrap_stream(stream), wire)
    }

    /// The upload form. Field order matters to these hosts: the key and the
    /// fields before the file (a field after it does not apply to it).
    fn upload_form(
        &self,
        params: &UploadParams,
        part: reqwest::multipart::Part,
    ) -> reqwest::multipart::Form {
        let mut form = reqwest::multipart::Form::new()
            .percent_encode_noop()
            .text("key", self.inner.key.expose().to_string())
            .text("file_title", params.title.clone())
            .text("fld_id", params.fld_id.to_string())
            .text("file_public", flag(params.public))
            .text("file_adult", flag(params.adult));
        if let Some(d) = &params.descr {
            form = form.text("file_descr", d.clone());
        }
        if let Some(c) = params.cat_id {
            form = form.text("cat_id", c.to_string());
        }
        if let Some(t) = &params.tags {
            form = form.text("tags", t.clone());
        }
        form.part("file", part)
    }

    /// What the upload reply means. The body went out: whatever the reply,
    /// short of a file code or a verdict on the file, the host may have
    /// stored it. Never "failed for good" on such a reply; search before
    /// sending again.
    fn upload_reply(
        &self,
        env: Result<reply::Envelope, ApiError>,
        filename: &str,
    ) -> Result<String, ApiError> {
        let unclear = |detail: String| ApiError::Unclear {
            endpoint: UPLOAD_ENDPOINT.into(),
            detail,
        };
        let env = env.map_err(|e| match e {
            e @ (ApiError::Network { .. } | ApiError::Timeout { .. } | ApiError::Http { .. }) => e,
            other => unclear(other.to_string()),
        })?;
        let files = env.files.ok_or_else(|| unclear("no files list".into()))?;
        let Some(f) = files.into_iter().next() else {
            return Err(unclear("the files list is empty".into()));
        };
        // Only a non-empty code counts as success, whatever the status says.
        if !f.filecode.trim().is_empty() && f.status.eq_ignore_ascii_case("ok") {
            Ok(f.filecode.trim().to_string())
        } else if f.status.eq_ignore_ascii_case("ok") || f.status.trim().is_empty() {
            Err(unclear("OK without a file code".into()))
        } else {
            Err(ApiError::upload_rejection(
                filename,
                &redact::redact(&f.status, &self.inner.key),
            ))
        }
    }

    /// The key travels in the upload's form body: a plain-http upload server
    /// on another machine would see it in clear text. Try it as https
    /// (same host and path) first; use plain http only on loopback or when
    /// the user allowed it.
    async fn secure_upload_server(&self, server: url::Url) -> Result<url::Url, ApiError> {
        if server.scheme() != "http" || self.inner.allow_http_upload || is_loopback(&server) {
            return Ok(server);
        }
        let mut https = server.clone();
        if https.set_scheme("https").is_err() {
            return Err(ApiError::InsecureUploadServer {
                server: server_name(&server),
                detail: "cannot form an https URL".into(),
            });
        }
        // A HEAD costs no API call: it only asks whether anything answers
        // TLS there. Any HTTP answer will do.
        // A redirect (back to http) or a 404 (a default site) is not the
        // upload script answering.
        match self.inner.http.head(https.clone()).send().await {
            Ok(r)
                if !r.status().is_redirection() && r.status() != reqwest::StatusCode::NOT_FOUND =>
            {
                Ok(https)
            }
            Ok(r) => Err(ApiError::InsecureUploadServer {
                server: server_name(&server),
                detail: format!("https answered HTTP {}", r.status().as_u16()),
            }),
            Err(e) => Err(ApiError::InsecureUploadServer {
                server: server_name(&server),
                detail: e.without_url().to_string(),
            }),
        }
    }

    /// upload/url: ask the host to fetch a URL; returns the future file code.
    pub async fn upload_url(
        &self,
        source: &str,
        params: &UploadParams,
    ) -> Result<String, ApiError> {
        let p = &self.inner.paths.upload_url;
        let mut q = vec![
            ("url", source.to_string()),
            ("fld_id", params.fld_id.to_string()),
            ("file_public", flag(params.public)),
            ("file_adult", flag(params.adult)),
        ];
        if let Some(c) = params.cat_id {
            q.push(("cat_id", c.to_string()));
        }
        if let Some(t) = &params.tags {
            q.push(("tags", t.clone()));
        }
        let env = self.get(p, &q).await?;
        let r: reply::UrlUpload = self.parse(p, env.result)?;
        Ok(r.filecode)
    }

    /// file/url_uploads: this account's upload/url jobs still queued (all,
    /// or the one of `code`).
    pub async fn url_uploads(&self, code: Option<&str>) -> Result<Vec<UrlJob>, ApiError> {
        let p = &self.inner.paths.file_url_uploads;
        let q: Vec<(&str, String)> = code
            .map(|c| ("file_code", c.to_string()))
            .into_iter()
            .collect();
        let env = self.get(p, &q).await?;
        self.parse_list(p, env.result)
    }

    /// file/url_actions `delete_code`: drop upload/url jobs (a running
    /// fetch stops, and its file never appears).
    pub async fn url_delete(&self, codes: &[String]) -> Result<(), ApiError> {
        let p = &self.inner.paths.file_url_actions;
        self.get(p, &[("delete_code", codes.join(","))]).await?;
        Ok(())
    }

    /// file/info for any number of codes, in calls of at most 50.
    pub async fn file_info(&self, codes: &[String]) -> Result<Vec<FileInfo>, ApiError> {
        let p = &self.inner.paths.file_info;
        let mut out = Vec::with_capacity(codes.len());
        for batch in codes.chunks(FILE_INFO_BATCH) {
            let env = self.get(p, &[("file_code", batch.join(","))]).await?;
            out.extend(self.parse_list::<FileInfo>(p, env.result)?);
        }
        Ok(out)
    }

    /// file/edit. The host answers "true" even when no code matched: verify
    /// with `file_info` where it matters.
    pub async fn file_edit(&self, codes: &[String], edit: &FileEdit) -> Result<(), ApiError> {
        let p = &self.inner.paths.file_edit;
        let mut q = vec![("file_code", codes.join(","))];
        if let Some(t) = &edit.title {
            q.push(("file_title", t.clone()));
        }
        if let Some(d) = &edit.descr {
            q.push(("file_descr", d.clone()));
        }
        if let Some(c) = edit.cat_id {
            q.push(("cat_id", c.to_string()));
        }
        if let Some(f) = edit.fld_id {
            q.push(("file_fld_id", f.to_string()));
        }
        if let Some(b) = edit.public {
            q.push(("file_public", flag(b)));
        }
        if let Some(b) = edit.adult {
            q.push(("file_adult", flag(b)));
        }
        if let Some(t) = &edit.tags {
            q.push(("tags", t.clone()));
        }
        let env = self.get(p, &q).await?;
        expect_true(p, &env.result)
    }

    /// One page of file/list.
    pub async fn file_list(&self, query: &FileListQuery) -> Result<FileListPage, ApiError> {
        let p = &self.inner.paths.file_list;
        let mut q = Vec::new();
        if let Some(f) = query.fld_id {
            q.push(("fld_id", f.to_string()));
        }
        if let Some(t) = &query.title {
            q.push(("title", t.clone()));
        }
        match &query.created {
            Some(Created::Since(s)) => q.push(("created", s.clone())),
            Some(Created::LastMinutes(m)) => q.push(("created", m.to_string())),
            None => {}
        }
        if let Some(b) = query.public {
            q.push(("public", flag(b)));
        }
        if let Some(b) = query.adult {
            q.push(("adult", flag(b)));
        }
        if let Some(n) = query.per_page {
            q.push(("per_page", n.min(1000).to_string()));
        }
        if let Some(n) = query.page {
            q.push(("page", n.max(1).to_string()));
        }
        let env = self.get(p, &q).await?;
        self.parse(p, env.result)
    }

    /// Every page of file/list for a query (per_page 1000), newest first.
    pub async fn file_list_all(&self, query: &FileListQuery) -> Result<Vec<ListedFile>, ApiError> {
        let mut q = query.clone();
        q.per_page = Some(q.per_page.unwrap_or(1000));
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            q.page = Some(page);
            let res = self.file_list(&q).await?;
            let n = res.files.len();
            out.extend(res.files);
            // `pages` and `results_total` come from a cached count that
            // lags and is rounded down (1,001 files at 1,000 a page is "1
            // page"): read until a page comes back short.
            if (n as u64) < u64::from(q.per_page.unwrap_or(1000).clamp(1, 1000)) {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// A direct_link call: remembers a host that disables it, and turns
    /// the "uploading" answer (a file still being fetched) into `NotReady`.
    async fn direct_link_call(&self, params: &[(&str, String)]) -> Result<Value, ApiError> {
        let p = &self.inner.paths.file_direct_link;
        let endpoint = p.trim_start_matches("/api/");
        if self.inner.direct_link_disabled.load(Ordering::Relaxed) {
            return Err(ApiError::Disabled {
                endpoint: endpoint.to_string(),
                msg: "refused earlier".into(),
            });
        }
        match self.get(p, params).await {
            Ok(env) if env.result.is_null() && env.msg.eq_ignore_ascii_case("uploading") => {
                Err(ApiError::NotReady {
                    endpoint: endpoint.to_string(),
                })
            }
            Ok(env) => Ok(env.result),
            Err(e @ ApiError::Disabled { .. }) => {
                self.inner
                    .direct_link_disabled
                    .store(true, Ordering::Relaxed);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// file/direct_link with all versions; `hls` asks for the HLS link too.
    pub async fn direct_link(&self, code: &str, hls: bool) -> Result<DirectLinks, ApiError> {
        let mut q = vec![("file_code", code.to_string())];
        if hls {
            q.push(("hls", "1".to_string()));
        }
        let v = self.direct_link_call(&q).await?;
        self.parse(&self.inner.paths.file_direct_link, v)
    }

    /// file/direct_link for one quality (`n`, `h`, `l`, `o`): a plain URL,
    /// or `None` when the file has no such quality (the host answers "").
    pub async fn direct_link_quality(
        &self,
        code: &str,
        q: &str,
    ) -> Result<Option<String>, ApiError> {
        let v = self
            .direct_link_call(&[("file_code", code.to_string()), ("q", q.to_string())])
            .await?;
        match v {
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s)),
            Value::Null => Ok(None),
            other => Err(ApiError::Protocol {
                endpoint: self.inner.paths.file_direct_link.clone(),
                detail: format!("expected a URL string, got {}", kind_of(&other)),
            }),
        }
    }

    /// The size of a file's original (`o` version), when the host gives
    /// direct links: `None` when it disables them, the file is not ready,
    /// or it has no original version. Used to tell apart files whose titles
    /// are equal under the host's rules.
    pub async fn original_size(&self, code: &str) -> Result<Option<u64>, ApiError> {
        match self.direct_link(code, false).await {
            Ok(d) => Ok(d
                .versions
                .iter()
                .find(|v| v.name == "o")
                .map(|v| v.size)
                .filter(|s| *s > 0)),
            Err(ApiError::Disabled { .. } | ApiError::NotReady { .. }) => Ok(None),
            // A host that refuses the call in its own words (no such path,
            // "access denied"): it gives no sizes; stop asking.
            Err(e) if matches!(e.class(), ErrorClass::Permanent | ErrorClass::Protocol) => {
                tracing::info!(error = %e, "the host gives no direct links; sizes of copies are unknown");
                self.inner
                    .direct_link_disabled
                    .store(true, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// file/clone: a new code for the same content, optionally in a folder.
    pub async fn file_clone(
        &self,
        code: &str,
        title: Option<&str>,
        fld_id: Option<u64>,
    ) -> Result<Cloned, ApiError> {
        let p = &self.inner.paths.file_clone;
        let mut q = vec![("file_code", code.to_string())];
        if let Some(t) = title {
            q.push(("file_title", t.to_string()));
        }
        if let Some(f) = fld_id {
            q.push(("fld_id", f.to_string()));
        }
        let env = self.get(p, &q).await?;
        self.parse(p, env.result)
    }

    /// A list call that some hosts serve under `/api/files/...`: on a 400
    /// ("Invalid operation") from the configured path, try the alternative
    /// once, and remember whichever worked.
    async fn list_with_fallback(
        &self,
        configured: &str,
        alt: &str,
        learned: &Mutex<Option<String>>,
        params: &[(&str, String)],
    ) -> Result<Value, ApiError> {
        let current = lock(learned)
            .clone()
            .unwrap_or_else(|| configured.to_string());
        match self.get(&current, params).await {
            Ok(env) => Ok(env.result),
            Err(e) if e.host_status() == Some(400) => {
                let other = if current == alt { configured } else { alt };
                if other == current {
                    return Err(e);
                }
                tracing::info!(refused = %current, trying = %other, "host refused the list path; trying the alternative");
                let env = self.get(other, params).await?;
                *lock(learned) = Some(other.to_string());
                Ok(env.result)
            }
            Err(e) => Err(e),
        }
    }

    /// file/deleted: files deleted in the last `hours` hours.
    pub async fn deleted(&self, hours: u64) -> Result<Vec<DeletedFile>, ApiError> {
        let p = self.inner.paths.file_deleted.clone();
        let v = self
            .list_with_fallback(
                &p,
                ALT_DELETED,
                &self.inner.learned_deleted,
                &[("last", hours.to_string())],
            )
            .await?;
        self.parse_list(&p, v)
    }

    /// file/dmca: files with a DMCA deletion scheduled, reported in the last `hours`.
    pub async fn dmca(&self, hours: u64) -> Result<Vec<DmcaEntry>, ApiError> {
        let p = self.inner.paths.file_dmca.clone();
        let v = self
            .list_with_fallback(
                &p,
                ALT_DMCA,
                &self.inner.learned_dmca,
                &[("last", hours.to_string())],
            )
            .await?;
        self.parse_list(&p, v)
    }

    /// file/encodings, optionally for one file code.
    pub async fn encodings(&self, code: Option<&str>) -> Result<Vec<Encoding>, ApiError> {
        let p = &self.inner.paths.file_encodings;
        let q: Vec<(&str, String)> = code
            .map(|c| vec![("file_code", c.to_string())])
            .unwrap_or_default();
        let env = self.get(p, &q).await?;
        self.parse_list(p, env.result)
    }

    /// folder/list: subfolders of `fld_id` (0 = root), and its files if asked.
    pub async fn folder_list(&self, fld_id: u64, files: bool) -> Result<FolderListing, ApiError> {
        let p = &self.inner.paths.folder_list;
        let mut q = vec![("fld_id", fld_id.to_string())];
        if files {
            q.push(("files", "1".to_string()));
        }
        let env = self.get(p, &q).await?;
        self.parse(p, env.result)
    }

    /// folder/create under `parent_id`; returns the new folder id.
    pub async fn folder_create(
        &self,
        name: &str,
        parent_id: u64,
        descr: Option<&str>,
    ) -> Result<u64, ApiError> {
        let p = &self.inner.paths.folder_create;
        let mut q = vec![
            ("name", name.to_string()),
            ("parent_id", parent_id.to_string()),
        ];
        if let Some(d) = descr {
            q.push(("descr", d.to_string()));
        }
        let env = self.get(p, &q).await?;
        let r: reply::CreatedFolder = self.parse(p, env.result)?;
        Ok(r.fld_id)
    }

    /// folder/edit: rename, move or describe a folder.
    pub async fn folder_edit(&self, fld_id: u64, edit: &FolderEdit) -> Result<(), ApiError> {
        let p = &self.inner.paths.folder_edit;
        let mut q = vec![("fld_id", fld_id.to_string())];
        if let Some(n) = &edit.name {
            q.push(("name", n.clone()));
        }
        if let Some(pid) = edit.parent_id {
            q.push(("parent_id", pid.to_string()));
        }
        if let Some(d) = &edit.descr {
            q.push(("descr", d.clone()));
        }
        let env = self.get(p, &q).await?;
        expect_true(p, &env.result)
    }
}

impl ApiError {
    /// True when an upload may have stored the file although no code came
    /// back (the body may have arrived before the reply was lost). The caller
    /// must search the host before uploading again.
    pub fn outcome_unknown(&self) -> bool {
        if let ApiError::Network { source, .. } = self
            && source.is_connect()
        {
            // No connection, so nothing was sent.
            return false;
        }
        matches!(
            self,
            ApiError::Network { .. }
                | ApiError::Timeout { .. }
                | ApiError::Http { .. }
                | ApiError::NotJson { .. }
                | ApiError::Protocol { .. }
                | ApiError::Unclear { .. }
        )
    }
}

/// Plain http is fine where nothing leaves the machine.
fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// "http://host:port" of an upload server, for messages (its path may
/// carry a session id).
fn server_name(u: &url::Url) -> String {
    match u.port() {
        Some(p) => format!("{}://{}:{p}", u.scheme(), u.host_str().unwrap_or("?")),
        None => format!("{}://{}", u.scheme(), u.host_str().unwrap_or("?")),
    }
}

/// Seconds until the host's next calendar minute, from its `server_time`
/// ("YYYY-MM-DD HH:MM:SS"); a whole minute when it is missing or odd.
/// One second of margin for the trip.
fn secs_to_next_minute(server_time: &str) -> u64 {
    let sec = server_time
        .trim()
        .rsplit(':')
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s < 60);
    sec.map_or(61, |s| 60 - s + 1)
}

/// Seconds until the host's next day (its local midnight), from `server_time`.
fn secs_to_next_day(server_time: &str) -> u64 {
    let t = server_time.trim();
    let hms: Option<Vec<u64>> = t
        .rsplit(' ')
        .next()
        .map(|hms| hms.split(':').map(|x| x.parse::<u64>().ok()).collect())
        .and_then(|v: Option<Vec<u64>>| v.filter(|v| v.len() == 3));
    match hms {
        Some(v) if v[0] < 24 && v[1] < 60 && v[2] < 60 => {
            86_400 - (v[0] * 3600 + v[1] * 60 + v[2]) + 1
        }
        _ => 3600,
    }
}

fn expect_true(endpoint: &str, v: &Value) -> Result<(), ApiError> {
    let ok = match v {
        Value::String(s) => s.trim().eq_ignore_ascii_case("true"),
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_u64() == Some(1),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::Protocol {
            endpoint: endpoint.to_string(),
            detail: format!("expected \"true\", got {}", kind_of(v)),
        })
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The file name sent in the multipart header. Sent as raw UTF-8 (as browsers
/// do); only the characters that would break the header are replaced. The
/// title travels separately, so nothing of the user's name is lost.
fn upload_filename(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "video".into());
    name.chars()
        .map(|c| match c {
            '"' | '\\' | '\r' | '\n' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// What the stall watchdog of an upload reads: when the body last made
/// progress (ms since the start) and whether the whole file went out.
#[derive(Clone)]
struct Wire {
    last_progress: Arc<AtomicU64>,
    all_sent: Arc<AtomicBool>,
}

impl Wire {
    fn progressed(&self, started: tokio::time::Instant) {
        self.last_progress
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves when the upload has been silent too long. A large upload
    /// takes as long as it takes; what must not last is silence: no body
    /// progress for `stall` while sending, or no reply for
    /// `REPLY_WAIT_FACTOR` times that after the last byte (the host may
    /// check a large file before it answers).
    async fn stalled(&self, started: tokio::time::Instant, stall: Duration) {
        let mut tick = tokio::time::interval((stall / 4).max(Duration::from_millis(20)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let quiet = started.elapsed().saturating_sub(Duration::from_millis(
                self.last_progress.load(Ordering::Relaxed),
            ));
            let limit = if self.all_sent.load(Ordering::Relaxed) {
                stall * REPLY_WAIT_FACTOR
            } else {
                stall
            };
            if quiet > limit {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_periods_follow_the_host_clock() {
        assert_eq!(secs_to_next_minute("2021-08-15 19:04:06"), 55);
        assert_eq!(secs_to_next_minute("2021-08-15 19:04:59"), 2);
        assert_eq!(secs_to_next_minute(""), 61);
        assert_eq!(secs_to_next_day("2021-08-15 23:59:00"), 61);
        assert_eq!(secs_to_next_day("2021-08-15 00:00:00"), 86_401);
        assert_eq!(secs_to_next_day("garbage"), 3600);
    }

    #[test]
    fn loopback_upload_servers_may_be_plain_http() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(is_loopback(&u("http://127.0.0.1:9/upload/01")));
        assert!(is_loopback(&u("http://[::1]:9/upload/01")));
        assert!(is_loopback(&u("http://localhost/upload/01")));
        assert!(!is_loopback(&u("http://s1.host.example/upload/01")));
        assert!(!is_loopback(&u("http://10.0.0.1/upload/01")));
    }
}
