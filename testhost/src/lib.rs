//! The faithful test host: a loopback XVS server with fault switches, for vidsync's tests and `vidsync demo`.
//!
//! It is its own crate in the workspace, importing nothing from vidsync: the
//! tests use it as a dev-dependency and the binary only through the default
//! `demo` feature, so a product built without that feature carries no HTTP
//! server (axum, hyper's server side, multer).
//!
//! By default it behaves like the real server software (docs/host-api.md in
//! the vidsync repository, "Quirks of the real server software"): upload titles
//! are rewritten, file/edit wipes tags, file/list totals are cached, folder calls on a
//! foreign folder answer 403, per-file upload errors come prefixed `0:0:0:`, and so on.
//! Options switch the configurable parts (quotas, rate limits, disabled calls).
//!
//! Codemap: `lib.rs` is the `TestHost` handle (start, inspect, mutate, stop) and its
//! options; `state.rs` the data; `api.rs` the `/api/...` calls; `upload.rs` the upload
//! listener; `links.rs` direct links (their shape, signature, expiry, and the route
//! serving them); `fetch.rs` the upload/url worker (loopback URLs are really fetched);
//! `title.rs` the host's text rules (title rewriting, tags, escaping);
//! `faults.rs` the fault rules; `server.rs` the accept loop that lets a fault
//! close a connection; `clock.rs` host time. Two listeners on 127.0.0.1: the API, and
//! the storage server: uploads go to it (`upload/server` points at it, a different
//! port, as real hosts upload to other machines) and direct links point at it.
//!
//! Several hosts can run in one test and copy between each other: B's upload/url
//! given A's direct link fetches the bytes from A over loopback (see
//! `bytes_uploaded`, `bytes_fetched`, `bytes_served` to tell a copy from an upload).
//!
//! ```no_run
//! use std::time::Duration;
//! use vidsync_testhost::{Fault, HostOptions, Scope, TestHost};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let host = TestHost::start_with(HostOptions {
//!     encode_time: Duration::from_millis(50),
//!     ..HostOptions::default()
//! })
//! .await?;
//! let (base, key) = (host.url(), host.key()); // client calls `{base}/api/...?key={key}`
//! host.faults().times(Fault::LoseReply, Scope::Upload, 1); // next upload: stored, no reply
//! host.advance(Duration::from_secs(3600)); // an hour passes on the host clock
//! let stored = host.files(); // what the host really holds
//! # let _ = (base, key, stored);
//! host.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod api;
mod clock;
mod faults;
mod fetch;
mod links;
mod server;
mod state;
mod title;
mod upload;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use api::escape_html;
pub use clock::{format_datetime, parse_datetime};
pub use faults::{Fault, FaultRule, Faults, Scope, Trigger};
pub use state::{
    DeletedBy, HostFile, HostFolder, HostTags, RequestRecord, UploadRecord, UrlStatus, UrlUpload,
};
pub use title::{VIDEO_EXTENSIONS, host_file_name, host_title, secure_str};

use state::{Account, Shared, State};

/// Locks a mutex, recovering the data if a panicking holder poisoned it: the host's
/// state stays usable for the rest of a test even after one handler panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a host behaves; `Default` is a fault-free host that behaves like the real
/// server software in its usual configuration.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// How long a new file stays in the encoding queue (PENDING, then ENCODING) before `canplay`.
    pub encode_time: Duration,
    /// Larger files are refused per file with "0:0:0:file is too big" (the host's
    /// `max_upload_filesize`, checked by its storage back end).
    pub max_file_size: Option<u64>,
    /// The account's disk quota in bytes (the host's `disk_space`); `None` or 0 =
    /// unlimited, reported as `"unlimited"`. account/info reports `storage_left` as
    /// this minus `storage_used`, which the real code counts in KB (a unit mix the
    /// real host has). An upload that would take the KB used past the quota is refused
    /// per file with "0:0:0:not enough disk space on your account".
    pub storage_quota: Option<u64>,
    /// Older name for the quota, kept for existing tests: when set (and
    /// `storage_quota` is not), the quota in bytes; may be negative (an account
    /// already over quota: every upload refused, `storage_left` negative).
    pub storage_left: Option<i64>,
    /// The host's `m_6_req_limit_min`: API calls per calendar minute of the host clock
    /// ("Requests limit reached: N per min"). With any limit set, every API reply
    /// carries `requests_available`.
    pub rate_limit_per_min: Option<u32>,
    /// The host's `m_6_req_limit_day`: API calls per calendar day (host clock, UTC);
    /// counted before the minute limit, so calls the minute limit refuses count too
    /// ("Requests limit reached: N per day").
    pub rate_limit_per_day: Option<u32>,
    /// Serve the deleted and DMCA lists only at `files/deleted` and `files/dmca`.
    pub alt_list_paths: bool,
    /// Where uploaded bytes go; `None` = a temporary directory removed with the host.
    pub data_dir: Option<PathBuf>,
    /// Seeds codes, keys and probabilistic faults, so runs repeat.
    pub seed: u64,
    /// Login of the default account.
    pub login: String,
    /// Key of the default account; `None` = 16 random `[a-z0-9]` characters from the seed.
    pub key: Option<String>,
    /// Titles longer than this many characters are cut (None: kept whole).
    pub max_title_chars: Option<usize>,
    /// A new file shows in file/list and folder/list only this long after
    /// it was stored (replicated listings lag behind on some hosts).
    pub list_lag: Duration,
    /// Loopback port of the API listener; 0 = any free port.
    pub api_port: u16,
    /// Loopback port of the upload listener; 0 = any free port.
    pub upload_port: u16,
    /// The host's `sanitize_filename`: upload titles (and file names) also get every
    /// run of chars other than ASCII letters, digits, `.`, `_`, `-` turned into `_`.
    pub sanitize_filename: bool,
    /// How long file/list's `results_total` is cached per account and filter set (the
    /// real host memcaches the count, `memcached_expire` = 60 s): a total can lag behind
    /// the files by up to this much host-clock time. Zero = always fresh.
    pub list_total_cache: Duration,
    /// file/direct_link answers 403 "This function not allowed in API" (`m_6_direct` off).
    pub direct_link_disabled: bool,
    /// file/clone answers 403 "This function not allowed in API" (`m_6_clone` off).
    pub clone_disabled: bool,
    /// Further calls (named as in the path, e.g. `"file/delete"`, `"folder/delete"`,
    /// `"file/url_uploads"`, `"file/url_actions"`) that answer 403 "This function not
    /// allowed in API", as hosts that turn the extra calls off do.
    pub disabled_calls: Vec<String>,
    /// When set, upload/server hands out `http://<upload_host>:<upload port>/upload/NN`
    /// instead of `http://127.0.0.1:...` (a host whose upload servers are other machines,
    /// on plain http; a test maps the name to 127.0.0.1 in the client's resolver).
    pub upload_host: Option<String>,
    /// How long an upload/url job takes at least: until then, and until its fetch has
    /// ended, the code is only in file/url_uploads (file/info answers 404,
    /// file/direct_link "uploading"). A loopback http URL (127.0.0.0/8, ::1,
    /// localhost) is really fetched, in the background; any other URL is never
    /// connected to and becomes an empty file.
    pub url_fetch_time: Duration,
    /// Every upload/url try (a new job, or one restarted) fails as a remote 500 would:
    /// nothing is fetched, and once `url_fetch_time` has passed the job shows ERROR
    /// ("File download failed:500 Internal Server Error"). Read when a try starts.
    pub url_fetch_fails: bool,
    /// How long a direct link works (host clock, from when file/direct_link gave it);
    /// after that its storage server answers 403. The real host's links last 6
    /// hours; `None` = for ever.
    pub direct_link_ttl: Option<Duration>,
    /// How late the host's periodic job carries out a scheduled DMCA deletion; until
    /// then file/dmca shows a negative `del_in_sec` and file/info 451.
    pub dmca_delete_delay: Duration,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            encode_time: Duration::from_secs(2),
            max_file_size: None,
            storage_quota: None,
            storage_left: None,
            rate_limit_per_min: None,
            rate_limit_per_day: None,
            alt_list_paths: false,
            data_dir: None,
            seed: 0x5eed,
            login: "demo".to_owned(),
            key: None,
            list_lag: Duration::ZERO,
            max_title_chars: None,
            api_port: 0,
            upload_port: 0,
            sanitize_filename: false,
            list_total_cache: Duration::from_secs(60),
            direct_link_disabled: false,
            clone_disabled: false,
            disabled_calls: Vec::new(),
            upload_host: None,
            url_fetch_time: Duration::from_secs(2),
            url_fetch_fails: false,
            direct_link_ttl: Some(Duration::from_secs(6 * 3600)),
            dmca_delete_delay: Duration::from_secs(60),
        }
    }
}

impl HostOptions {
    /// The quota in bytes, if any (0 counts as none, as on the real host).
    pub(crate) fn quota(&self) -> Option<i64> {
        match self.storage_quota {
            Some(q) => (q != 0).then(|| i64::try_from(q).unwrap_or(i64::MAX)),
            None => self.storage_left.filter(|q| *q != 0),
        }
    }
}

/// A running test host. Dropping it stops the listeners (tasks are aborted).
#[derive(Debug)]
pub struct TestHost {
    shared: Arc<Shared>,
    api_addr: SocketAddr,
    upload_addr: SocketAddr,
    key: String,
    tasks: Vec<JoinHandle<()>>,
    /// Kept so the directory lives as long as the host.
    _tempdir: Option<tempfile::TempDir>,
}

impl TestHost {
    /// Starts a host with default options on two loopback ports.
    pub async fn start() -> std::io::Result<TestHost> {
        TestHost::start_with(HostOptions::default()).await
    }

    /// Starts a host; must be called inside a tokio runtime (the listeners are spawned tasks).
    pub async fn start_with(opts: HostOptions) -> std::io::Result<TestHost> {
        let (data_dir, tempdir) = match &opts.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (dir.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("vidsync-testhost-")
                    .tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let api_listener = TcpListener::bind(("127.0.0.1", opts.api_port)).await?;
        let upload_listener = TcpListener::bind(("127.0.0.1", opts.upload_port)).await?;
        let api_addr = api_listener.local_addr()?;
        let upload_addr = upload_listener.local_addr()?;

        let mut st = State {
            accounts: Vec::new(),
            folders: BTreeMap::new(),
            next_fld_id: 1,
            files: HashMap::new(),
            next_seq: 0,
            rng: StdRng::seed_from_u64(opts.seed),
            rate: HashMap::new(),
            rate_day: HashMap::new(),
            list_cache: HashMap::new(),
            url_queue: Vec::new(),
            log: Vec::new(),
            upload_rr: 0,
            next_dmca: None,
            uploads: Vec::new(),
        };
        let key = match &opts.key {
            Some(k) => k.clone(),
            None => st.random_string(16),
        };
        // Its own stream, so that signing links changes no code a test sees.
        let link_secret = StdRng::seed_from_u64(opts.seed ^ 0x6c69_6e6b).random();
        st.accounts.push(Account {
            login: opts.login.clone(),
            key: key.clone(),
        });
        let shared = Arc::new(Shared {
            faults: Faults::new(opts.seed),
            login: opts.login.clone(),
            opts: Mutex::new(opts),
            clock: clock::Clock::default(),
            state: Mutex::new(st),
            data_dir,
            api_base: format!("http://{api_addr}"),
            upload_base: format!("http://{upload_addr}"),
            upload_port: upload_addr.port(),
            uploads_started: AtomicU64::new(0),
            tmp_counter: AtomicU64::new(0),
            bytes_uploaded: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
            bytes_served: AtomicU64::new(0),
            fetching: tokio::sync::watch::Sender::new(0),
            link_secret,
        });

        let api_router = Router::new()
            .fallback(api::api_entry)
            .with_state(shared.clone());
        let upload_router = Router::new()
            .route("/upload/{n}", post(upload::upload))
            .route("/v/{disk}/{dx}/{file}/{fname}", get(links::serve))
            .with_state(shared.clone());
        let tasks = vec![
            tokio::spawn(server::serve(api_listener, api_router)),
            tokio::spawn(server::serve(upload_listener, upload_router)),
        ];
        Ok(TestHost {
            shared,
            api_addr,
            upload_addr,
            key,
            tasks,
            _tempdir: tempdir,
        })
    }

    /// The API base, "http://127.0.0.1:PORT"; clients append `/api/...`.
    pub fn url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// The upload listener's base, "http://127.0.0.1:PORT" (what `upload/server` and
    /// direct links point at).
    pub fn upload_url(&self) -> String {
        format!("http://{}", self.upload_addr)
    }

    /// The default account's key.
    pub fn key(&self) -> String {
        self.key.clone()
    }

    /// The default account's login.
    pub fn login(&self) -> String {
        self.shared.login.clone()
    }

    /// The live fault rules; change them at any time.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// The directory holding uploaded bytes.
    pub fn data_dir(&self) -> PathBuf {
        self.shared.data_dir.clone()
    }

    /// Adds an account (or changes the key of an existing login).
    pub fn add_account(&self, login: &str, key: &str) {
        let mut st = lock(&self.shared.state);
        st.accounts.retain(|a| a.login != login);
        st.accounts.push(Account {
            login: login.to_owned(),
            key: key.to_owned(),
        });
    }

    /// Serves the deleted/DMCA lists only at the `files/...` paths (or back at `file/...`).
    pub fn set_alt_list_paths(&self, alt: bool) {
        self.configure(|o| o.alt_list_paths = alt);
    }

    /// Changes options while the host runs (e.g. storage running out, a rate limit
    /// appearing). Most take effect at the next request; `data_dir`, `seed`,
    /// `login`, `key` and the ports only matter at start.
    pub fn configure(&self, change: impl FnOnce(&mut HostOptions)) {
        change(&mut lock(&self.shared.opts));
    }

    /// The options in force.
    pub fn options(&self) -> HostOptions {
        self.shared.opts()
    }

    /// Moves the host clock forward.
    pub fn advance(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Host-clock Unix seconds.
    pub fn now(&self) -> u64 {
        self.shared.clock.now_secs()
    }

    /// Every file, deleted ones and ownerless ones included, oldest first.
    pub fn files(&self) -> Vec<HostFile> {
        let encode_ms = self.shared.opts().encode_ms();
        let now_ms = self.shared.clock.now_ms();
        let dmca_delay = self.shared.opts().dmca_delete_delay.as_secs();
        let mut st = lock(&self.shared.state);
        st.settle(now_ms, dmca_delay);
        let mut files: Vec<_> = st.files.values().collect();
        files.sort_by_key(|f| f.seq);
        files
            .into_iter()
            .map(|f| f.to_public(now_ms, encode_ms))
            .collect()
    }

    /// One file by code.
    pub fn file(&self, code: &str) -> Option<HostFile> {
        self.files().into_iter().find(|f| f.code == code)
    }

    /// Where the stored bytes of a file are (clones share their source's).
    pub fn file_path(&self, code: &str) -> Option<PathBuf> {
        lock(&self.shared.state)
            .files
            .get(code)
            .map(|f| f.blob.clone())
    }

    /// The stored bytes of a file (for small files).
    pub fn file_bytes(&self, code: &str) -> Option<Vec<u8>> {
        std::fs::read(self.file_path(code)?).ok()
    }

    /// Every folder of every account, by id.
    pub fn folders(&self) -> Vec<HostFolder> {
        lock(&self.shared.state).folders.values().cloned().collect()
    }

    /// Creates a folder for the default account (to pre-create remote folders); returns its id.
    pub fn create_folder(&self, parent: u64, name: &str) -> u64 {
        self.create_folder_for(&self.shared.login, parent, name)
    }

    /// Creates a folder for any login.
    pub fn create_folder_for(&self, login: &str, parent: u64, name: &str) -> u64 {
        lock(&self.shared.state).create_folder(login, parent, name, "")
    }

    /// Every request handled so far, in order, without keys.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        lock(&self.shared.state).log.clone()
    }

    /// How many requests hit `endpoint` (`"file/list"`, ..., `"upload"`).
    pub fn request_count(&self, endpoint: &str) -> usize {
        lock(&self.shared.state)
            .log
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .count()
    }

    /// Uploads that completed (reply sent or lost after storing), in order: part
    /// names as sent, file names, codes stored.
    pub fn upload_log(&self) -> Vec<UploadRecord> {
        lock(&self.shared.state).uploads.clone()
    }

    /// How many upload POSTs reached the upload listener (whatever happened to them).
    pub fn uploads_started(&self) -> u64 {
        self.shared.uploads_started.load(Ordering::Relaxed)
    }

    /// Deletes a file as `by` would, now (host clock). False if unknown or already deleted.
    pub fn delete_file(&self, code: &str, by: DeletedBy) -> bool {
        let now = self.now();
        let mut st = lock(&self.shared.state);
        match st.files.get_mut(code) {
            Some(f) if f.deleted.is_none() => {
                f.deleted = Some((now, by));
                f.dmca = None;
                true
            }
            _ => false,
        }
    }

    /// Schedules a DMCA deletion `delay` from now (reported now); the file is deleted
    /// by admin `dmca_delete_delay` after that time (until then file/dmca shows it
    /// overdue, with a negative `del_in_sec`). False if unknown or deleted.
    pub fn schedule_dmca(&self, code: &str, delay: Duration) -> bool {
        let now = self.now();
        let mut st = lock(&self.shared.state);
        match st.files.get_mut(code) {
            Some(f) if f.deleted.is_none() => {
                let at = now.saturating_add(delay.as_secs());
                f.dmca = Some((now, at));
                st.next_dmca = Some(st.next_dmca.map_or(at, |t| t.min(at)));
                true
            }
            _ => false,
        }
    }

    /// Marks a file's encoding STUCK (until `finish_encoding`).
    pub fn set_stuck(&self, code: &str) -> bool {
        let mut st = lock(&self.shared.state);
        match st.files.get_mut(code) {
            Some(f) => {
                f.stuck = true;
                true
            }
            None => false,
        }
    }

    /// Ends a file's encoding now: it leaves the queue and can play.
    pub fn finish_encoding(&self, code: &str) -> bool {
        let mut st = lock(&self.shared.state);
        match st.files.get_mut(code) {
            Some(f) => {
                f.stuck = false;
                f.encoded = true;
                true
            }
            None => false,
        }
    }

    /// Seeds a file for the default account as if another tool had uploaded it: the
    /// title rewritten as an upload's (`host_title`, plus the show-name tag), the
    /// bytes stored (so direct_link's `o` size is right), created now (host clock).
    /// Returns the code.
    pub fn add_file(&self, fld_id: u64, file_title: &str, bytes: &[u8], tags: &[&str]) -> String {
        let opts = self.shared.opts();
        let now_ms = self.shared.clock.now_ms();
        let mut st = lock(&self.shared.state);
        let code = st.new_file_code();
        let blob = self.shared.data_dir.join(&code);
        if let Err(e) = std::fs::write(&blob, bytes) {
            tracing::warn!(error = %e, "test host: add_file could not store bytes");
        }
        let title = upload::stored_title(file_title, "", &opts);
        let all_tags = title::upload_tags(&tags.join(","), &title);
        let seq = st.take_seq();
        st.files.insert(
            code.clone(),
            state::FileRec {
                code: code.clone(),
                title,
                descr: String::new(),
                fld_id,
                size: bytes.len() as u64,
                owner: Some(self.shared.login.clone()),
                created_ms: now_ms,
                seq,
                public: false,
                adult: false,
                cat_id: 0,
                tags: all_tags,
                blob,
                ..state::FileRec::default()
            },
        );
        code
    }

    /// Sets a file's tags as a user tagging by hand on the site would (normalised as
    /// the host does: lower-cased, short ones dropped). False if unknown.
    pub fn set_tags(&self, code: &str, tags: &[&str]) -> bool {
        let mut st = lock(&self.shared.state);
        match st.files.get_mut(code) {
            Some(f) => {
                f.tags.clear();
                title::parse_tags(&tags.join(","), &mut f.tags);
                true
            }
            None => false,
        }
    }

    /// Cleans the host's trash: deleted files vanish from file/deleted.
    pub fn empty_trash(&self) {
        let mut st = lock(&self.shared.state);
        for f in st.files.values_mut() {
            if f.deleted.is_some() {
                f.trash_cleaned = true;
            }
        }
    }

    /// File bytes received by the upload listener (`/upload/...`) since start: the
    /// bytes of every `file` part as read from the socket, whether the file was then
    /// stored, refused or cut off (form fields and multipart framing not counted).
    pub fn bytes_uploaded(&self) -> u64 {
        self.shared.bytes_uploaded.load(Ordering::Relaxed)
    }

    /// Body bytes received by this host's upload/url fetches since start, whatever
    /// became of them (an error page a fetch read counts too). URLs that are not
    /// fetched (not loopback http) add nothing.
    pub fn bytes_fetched(&self) -> u64 {
        self.shared.bytes_fetched.load(Ordering::Relaxed)
    }

    /// Body bytes sent from direct links since start, counted as each chunk is
    /// handed to the connection: the file's bytes, or the error page of a link
    /// refused (403) or of a file gone (404). So when host B fetches host A's link,
    /// A's `bytes_served` grows by what B's `bytes_fetched` does.
    pub fn bytes_served(&self) -> u64 {
        self.shared.bytes_served.load(Ordering::Relaxed)
    }

    /// Ends the waiting for every upload/url job now, as if `url_fetch_time` had
    /// passed: a job whose fetch is done becomes a file (or shows ERROR, if it
    /// failed), and a loopback fetch still running does so the moment it ends
    /// (await `wait_url_fetches` for that).
    pub fn finish_url_uploads(&self) {
        let now_ms = self.shared.clock.now_ms();
        let dmca_delay = self.shared.opts().dmca_delete_delay.as_secs();
        let mut st = lock(&self.shared.state);
        for j in &mut st.url_queue {
            j.done_ms = j.done_ms.min(now_ms);
        }
        st.settle(now_ms, dmca_delay);
    }

    /// Waits until no upload/url fetch is running on this host (each has ended, well
    /// or in ERROR). Returns at once when none runs. The jobs still wait for their
    /// `url_fetch_time` (or `finish_url_uploads`) before they become files.
    pub async fn wait_url_fetches(&self) {
        let mut running = self.shared.fetching.subscribe();
        // The sender lives in `shared`, which this host holds: it cannot be closed.
        let _ = running.wait_for(|n| *n == 0).await;
    }

    /// Codes still in the upload/url queue (not stored yet, ERROR ones included), oldest first.
    pub fn url_queue(&self) -> Vec<String> {
        lock(&self.shared.state)
            .url_queue
            .iter()
            .map(|j| j.code.clone())
            .collect()
    }

    /// The upload/url jobs of every account, oldest first, with their status as
    /// file/url_uploads shows it now and the error text that call does not show.
    pub fn url_uploads(&self) -> Vec<UrlUpload> {
        let now_ms = self.shared.clock.now_ms();
        let dmca_delay = self.shared.opts().dmca_delete_delay.as_secs();
        let mut st = lock(&self.shared.state);
        st.settle(now_ms, dmca_delay);
        st.url_queue.iter().map(|j| j.to_public(now_ms)).collect()
    }

    /// Stops the fetch tasks, which would otherwise outlive the host.
    fn abort_fetches(&self) {
        for j in &lock(&self.shared.state).url_queue {
            if let Some(t) = &j.task {
                t.abort();
            }
        }
    }

    /// Stops both listeners and every connection, and waits for them to end.
    pub async fn shutdown(mut self) {
        self.abort_fetches();
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.abort_fetches();
        for t in &self.tasks {
            t.abort();
        }
    }
}
