//! The host's data: accounts, folders, files, the request log, and derived file states.
//!
//! Everything lives behind one `std::sync::Mutex`; handlers hold it only for
//! synchronous work, never across an `.await`. Times are host-clock Unix seconds
//! (milliseconds where encoding progress needs sub-second precision).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use rand::Rng;
use rand::rngs::StdRng;

use super::HostOptions;
use super::clock::Clock;
use super::faults::Faults;

/// Who deleted a file, as `file/deleted` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletedBy {
    Me,
    Admin,
    Expired,
}

impl DeletedBy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeletedBy::Me => "me",
            DeletedBy::Admin => "admin",
            DeletedBy::Expired => "expired",
        }
    }
}

/// A file's tags, in the order they were added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostTags(pub Vec<String>);

impl std::ops::Deref for HostTags {
    type Target = Vec<String>;
    fn deref(&self) -> &Vec<String> {
        &self.0
    }
}

impl PartialEq<&str> for HostTags {
    /// Equal to the tags joined by `,` (no spaces).
    fn eq(&self, other: &&str) -> bool {
        self.0.join(",") == *other
    }
}

impl PartialEq<str> for HostTags {
    fn eq(&self, other: &str) -> bool {
        self.0.join(",") == other
    }
}

impl PartialEq<[&str]> for HostTags {
    fn eq(&self, other: &[&str]) -> bool {
        self.0.len() == other.len() && self.0.iter().zip(other).all(|(a, b)| a == b)
    }
}

impl std::fmt::Display for HostTags {
    /// As `file/info` shows them: joined by `", "`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// A file as the host holds it (inspection copy). The title is the stored one,
/// exactly as the API returns it: an upload title after the host's rewriting
/// (`host_title`), a title set by file/edit or clone HTML-escaped (`secure_str`).
#[derive(Clone, Debug, PartialEq)]
pub struct HostFile {
    pub code: String,
    pub title: String,
    pub descr: String,
    pub fld_id: u64,
    pub size: u64,
    /// `None` for a file uploaded with a wrong key (the XVS quirk).
    pub owner: Option<String>,
    /// Host-clock Unix seconds.
    pub created: u64,
    pub public: bool,
    pub adult: bool,
    pub cat_id: u64,
    /// Tags as the host stores them (lower-cased, normalised); compares equal to a
    /// comma-joined `&str` too (`f.tags == "one,two"`).
    pub tags: HostTags,
    pub canplay: bool,
    /// Length in seconds (0 until encoded).
    pub length: u64,
    /// When (host-clock Unix seconds) and by whom it was deleted.
    pub deleted: Option<(u64, DeletedBy)>,
    /// Scheduled DMCA deletion time (host-clock Unix seconds).
    pub dmca: Option<u64>,
    /// Deleted and gone from the host's trash (`empty_trash`): no longer in file/deleted.
    pub trash_cleaned: bool,
}

/// A folder as the host holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFolder {
    pub fld_id: u64,
    /// 0 is the account root.
    pub parent: u64,
    pub name: String,
    pub code: String,
    pub descr: String,
    pub owner: String,
}

/// One handled request, for tests to count. Never holds the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// `"file/list"` etc. for API calls, `"upload"` for uploads.
    pub endpoint: String,
    /// The JSON status answered; the HTTP status for a proxy-style fault; 0 when the
    /// connection was dropped without a reply.
    pub status: u16,
}

/// What one upload request carried (never the key's value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRecord {
    /// Multipart part names in the order they arrived (`"key"`, `"file_title"`, ..., `"file"`).
    pub parts: Vec<String>,
    /// File names of the `file` parts, in order.
    pub filenames: Vec<String>,
    /// Codes stored (one per accepted file).
    pub codes: Vec<String>,
}

/// Where a file is in the encoding queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EncodeState {
    Pending,
    Encoding(u8),
    Stuck,
    Done,
}

/// `Default` is a file just stored: not deleted, not scheduled for DMCA,
/// encoding from its creation time, not a clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileRec {
    pub code: String,
    pub title: String,
    pub descr: String,
    pub fld_id: u64,
    pub size: u64,
    pub owner: Option<String>,
    pub created_ms: u64,
    /// Insertion order, to break ties between files created in the same millisecond.
    pub seq: u64,
    pub public: bool,
    pub adult: bool,
    pub cat_id: u64,
    pub tags: Vec<String>,
    /// Stored bytes; clones share their source's blob.
    pub blob: PathBuf,
    pub stuck: bool,
    /// Encoding finished early (by a test, or a clone of a playable file).
    pub encoded: bool,
    pub deleted: Option<(u64, DeletedBy)>,
    /// (scheduled at, deletion time), host-clock seconds.
    pub dmca: Option<(u64, u64)>,
    /// Gone from the trash: no longer listed by file/deleted.
    pub trash_cleaned: bool,
    /// A clone (shares its source's bytes; counts no storage).
    pub is_clone: bool,
}

impl FileRec {
    /// Encoding state, computed lazily from elapsed host time: PENDING for the first
    /// tenth of `encode_ms`, then ENCODING with progress by elapsed time, then done.
    pub(crate) fn encoding(&self, now_ms: u64, encode_ms: u64) -> EncodeState {
        if self.encoded {
            return EncodeState::Done;
        }
        if self.stuck {
            return EncodeState::Stuck;
        }
        let elapsed = now_ms.saturating_sub(self.created_ms);
        if elapsed >= encode_ms {
            EncodeState::Done
        } else if elapsed < encode_ms / 10 {
            EncodeState::Pending
        } else {
            EncodeState::Encoding((elapsed * 100 / encode_ms.max(1)).min(99) as u8)
        }
    }

    pub(crate) fn canplay(&self, now_ms: u64, encode_ms: u64) -> bool {
        self.encoding(now_ms, encode_ms) == EncodeState::Done
    }

    /// Video length in seconds: unknown (0) until encoded; otherwise derived from the
    /// size as if the video were 1 Mbit/s, which is enough for a fake.
    pub(crate) fn length(&self, now_ms: u64, encode_ms: u64) -> u64 {
        if self.canplay(now_ms, encode_ms) {
            (self.size / 125_000).max(1)
        } else {
            0
        }
    }

    pub(crate) fn visible_to(&self, login: &str) -> bool {
        self.deleted.is_none() && self.owner.as_deref() == Some(login)
    }

    pub(crate) fn to_public(&self, now_ms: u64, encode_ms: u64) -> HostFile {
        HostFile {
            code: self.code.clone(),
            title: self.title.clone(),
            descr: self.descr.clone(),
            fld_id: self.fld_id,
            size: self.size,
            owner: self.owner.clone(),
            created: self.created_ms / 1000,
            public: self.public,
            adult: self.adult,
            cat_id: self.cat_id,
            tags: HostTags(self.tags.clone()),
            canplay: self.canplay(now_ms, encode_ms),
            length: self.length(now_ms, encode_ms),
            deleted: self.deleted,
            dmca: self.dmca.map(|(_, at)| at),
            trash_cleaned: self.trash_cleaned,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Account {
    pub login: String,
    pub key: String,
}

/// Mutable host data, behind `Shared::state`.
#[derive(Debug)]
pub(crate) struct State {
    pub accounts: Vec<Account>,
    pub folders: BTreeMap<u64, HostFolder>,
    pub next_fld_id: u64,
    pub files: HashMap<String, FileRec>,
    pub next_seq: u64,
    pub rng: StdRng,
    /// Per login: (host-clock calendar minute, requests in it), for `rate_limit_per_min`.
    pub rate: HashMap<String, (u64, u32)>,
    /// Per login: (host-clock day, requests counted that day), for `rate_limit_per_day`.
    pub rate_day: HashMap<String, (u64, u32)>,
    /// file/list totals by (login, filters): (count, host-clock second it was taken).
    pub list_cache: HashMap<String, (u64, u64)>,
    /// upload/url jobs not stored yet (fetching, waiting for their time, or ERROR), oldest first.
    pub url_queue: Vec<UrlJob>,
    pub log: Vec<RequestRecord>,
    /// Round robin over the two upload server names.
    pub upload_rr: u64,
    /// Earliest scheduled DMCA deletion (may be stale-early, never late).
    pub next_dmca: Option<u64>,
    /// Completed uploads, for tests that check what a client sent.
    pub uploads: Vec<UploadRecord>,
}

/// An upload/url job (the real host's `QueueUpload` row). The file appears, with its
/// code, once the fetch has ended well AND `done_ms` (host clock) has come; a fetch
/// that failed shows as ERROR from `done_ms` on and stays until deleted or restarted.
#[derive(Clone, Debug)]
pub(crate) struct UrlJob {
    pub code: String,
    pub url: String,
    pub owner: String,
    pub fld_id: u64,
    pub cat_id: u64,
    pub public: bool,
    pub adult: bool,
    pub tags: String,
    /// The title the file will get (already rewritten): from the URL when queued, then
    /// from the name the fetch found.
    pub title: String,
    pub blob: PathBuf,
    pub queued_ms: u64,
    pub done_ms: u64,
    /// Where the fetch is.
    pub fetch: Fetch,
    /// Which try this is (restart_errors starts another); a fetch task that ends
    /// reports only to the try that started it.
    pub attempt: u64,
    /// The running fetch task of a loopback URL, aborted when the job is deleted.
    pub task: Option<tokio::task::AbortHandle>,
}

/// The fetch of an upload/url job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fetch {
    /// A loopback fetch in flight: body bytes so far, and the length the reply promised.
    Running { bytes: u64, total: Option<u64> },
    /// The bytes are in the blob (none for a URL that is not fetched); when it ended.
    Fetched { size: u64, at_ms: u64 },
    /// The worker's error text (what the real host stores in `QueueUpload.error`).
    Failed(String),
}

/// What file/url_uploads shows for a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlStatus {
    Pending,
    Working,
    Error,
}

impl UrlStatus {
    /// As file/url_uploads spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            UrlStatus::Pending => "PENDING",
            UrlStatus::Working => "WORKING",
            UrlStatus::Error => "ERROR",
        }
    }
}

/// One upload/url job as the host holds it (inspection copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlUpload {
    pub code: String,
    /// The URL as stored (unescaped and cleaned as the real host does).
    pub url: String,
    pub owner: String,
    /// As file/url_uploads shows it now.
    pub status: UrlStatus,
    /// Progress 0..99 as file/url_uploads shows it (0 for ERROR).
    pub progress: u64,
    /// The worker's error text, once the job is ERROR. The real host keeps it in the
    /// queue table; its file/url_uploads does not return it, so neither does this host.
    pub error: Option<String>,
    /// Body bytes this job's fetch has received so far (0 for a URL not fetched).
    pub bytes: u64,
    /// Whether the host really fetches this URL (http on a loopback address); other
    /// URLs are never connected to and end as an empty file.
    pub fetched_for_real: bool,
}

impl UrlJob {
    /// Status and progress at `now_ms`: ERROR once a failed fetch is due; otherwise
    /// PENDING for the first tenth of the fetch time, then WORKING, with progress by
    /// elapsed time, held back by the bytes of a fetch still running.
    pub(crate) fn status(&self, now_ms: u64) -> (UrlStatus, u64) {
        if matches!(self.fetch, Fetch::Failed(_)) && self.done_ms <= now_ms {
            return (UrlStatus::Error, 0);
        }
        let span = self.done_ms.saturating_sub(self.queued_ms).max(1);
        let elapsed = now_ms.saturating_sub(self.queued_ms);
        let mut progress = (elapsed.saturating_mul(100) / span).min(99);
        if let Fetch::Running { bytes, total } = self.fetch {
            let by_bytes = match total {
                Some(t) if t > 0 => bytes.saturating_mul(100) / t,
                _ => 0,
            };
            progress = progress.min(by_bytes.min(99));
        }
        if elapsed < span / 10 {
            (UrlStatus::Pending, 0)
        } else {
            (UrlStatus::Working, progress)
        }
    }

    pub(crate) fn to_public(&self, now_ms: u64) -> UrlUpload {
        let (status, progress) = self.status(now_ms);
        let bytes = match self.fetch {
            Fetch::Running { bytes, .. } => bytes,
            Fetch::Fetched { size, .. } => size,
            Fetch::Failed(_) => 0,
        };
        UrlUpload {
            code: self.code.clone(),
            url: self.url.clone(),
            owner: self.owner.clone(),
            status,
            progress,
            error: match (&self.fetch, status) {
                (Fetch::Failed(e), UrlStatus::Error) => Some(e.clone()),
                _ => None,
            },
            bytes,
            fetched_for_real: super::fetch::fetched_for_real(&self.url),
        }
    }

    /// Stops the fetch task, if one runs, and removes the bytes fetched so far.
    pub(crate) fn discard(&self) {
        if let Some(t) = &self.task {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.blob);
    }
}

const CODE_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

impl State {
    /// The next insertion sequence number (ties of equal creation times).
    pub(crate) fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    pub(crate) fn random_string(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| CODE_CHARS[self.rng.random_range(0..CODE_CHARS.len())] as char)
            .collect()
    }

    /// A fresh 12-char file code, unique on this host.
    pub(crate) fn new_file_code(&mut self) -> String {
        loop {
            let code = self.random_string(12);
            if !self.files.contains_key(&code) {
                return code;
            }
        }
    }

    pub(crate) fn login_for_key(&self, key: &str) -> Option<String> {
        self.accounts
            .iter()
            .find(|a| a.key == key)
            .map(|a| a.login.clone())
    }

    /// Brings the state up to `now_ms`: upload/url jobs whose fetch is done become
    /// files; DMCA schedules `dmca_delay` seconds overdue become deletions by admin
    /// (the real host deletes them from a periodic job, so they can be overdue).
    pub(crate) fn settle(&mut self, now_ms: u64, dmca_delay: u64) {
        let now_secs = now_ms / 1000;
        let ready = |j: &UrlJob| j.done_ms <= now_ms && matches!(j.fetch, Fetch::Fetched { .. });
        if self.url_queue.iter().any(ready) {
            let (done, left): (Vec<UrlJob>, Vec<UrlJob>) = std::mem::take(&mut self.url_queue)
                .into_iter()
                .partition(ready);
            self.url_queue = left;
            for j in done {
                let (size, at_ms) = match j.fetch {
                    Fetch::Fetched { size, at_ms } => (size, at_ms),
                    _ => (0, j.done_ms),
                };
                let seq = self.take_seq();
                let tags = super::title::upload_tags(&j.tags, &j.title);
                self.files.insert(
                    j.code.clone(),
                    FileRec {
                        code: j.code,
                        title: j.title,
                        descr: String::new(),
                        fld_id: j.fld_id,
                        size,
                        owner: Some(j.owner),
                        // Stored when both the fetch and the host's time were done.
                        created_ms: j.done_ms.max(at_ms),
                        seq,
                        public: j.public,
                        adult: j.adult,
                        cat_id: j.cat_id,
                        tags,
                        blob: j.blob,
                        ..FileRec::default()
                    },
                );
            }
        }
        // Every call settles first; skip the scan over all files unless a schedule is due,
        // so that hosts holding many files stay fast.
        if self
            .next_dmca
            .is_none_or(|t| now_secs < t.saturating_add(dmca_delay))
        {
            return;
        }
        self.next_dmca = None;
        for f in self.files.values_mut() {
            if let Some((_, at)) = f.dmca
                && at.saturating_add(dmca_delay) <= now_secs
                && f.deleted.is_none()
            {
                f.deleted = Some((at.saturating_add(dmca_delay), DeletedBy::Admin));
                f.dmca = None;
            } else if let Some((_, at)) = f.dmca {
                self.next_dmca = Some(self.next_dmca.map_or(at, |t| t.min(at)));
            }
        }
    }

    /// Live files (any owner) whose folder is `fld_id`.
    pub(crate) fn files_in_folder(&self, fld_id: u64) -> usize {
        self.files
            .values()
            .filter(|f| f.deleted.is_none() && f.fld_id == fld_id)
            .count()
    }

    /// Folders of an account.
    pub(crate) fn folder_count(&self, login: &str) -> usize {
        self.folders.values().filter(|f| f.owner == login).count()
    }

    pub(crate) fn create_folder(
        &mut self,
        owner: &str,
        parent: u64,
        name: &str,
        descr: &str,
    ) -> u64 {
        let fld_id = self.next_fld_id;
        self.next_fld_id += 1;
        let code = self.random_string(10);
        self.folders.insert(
            fld_id,
            HostFolder {
                fld_id,
                parent,
                name: name.to_owned(),
                code,
                descr: descr.to_owned(),
                owner: owner.to_owned(),
            },
        );
        fld_id
    }

    /// KB used as the real host counts it (`int(size/1024)` added per stored file; a
    /// clone adds nothing) and the count of an account's live files.
    pub(crate) fn usage_kb(&self, login: &str) -> (u64, u64) {
        self.files
            .values()
            .filter(|f| f.visible_to(login))
            .fold((0, 0), |(b, n), f| {
                (b + if f.is_clone { 0 } else { f.size / 1024 }, n + 1)
            })
    }

    /// Bytes and count of an account's live files.
    pub(crate) fn usage(&self, login: &str) -> (u64, u64) {
        self.files
            .values()
            .filter(|f| f.visible_to(login))
            .fold((0, 0), |(b, n), f| (b + f.size, n + 1))
    }

    pub(crate) fn log(&mut self, endpoint: &str, status: u16) {
        self.log.push(RequestRecord {
            endpoint: endpoint.to_owned(),
            status,
        });
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The options in force; tests may change them while the host runs.
    pub opts: Mutex<HostOptions>,
    /// The default account's login.
    pub login: String,
    pub clock: Clock,
    pub state: Mutex<State>,
    pub faults: Faults,
    pub data_dir: PathBuf,
    /// "http://127.0.0.1:PORT" of the API listener.
    pub api_base: String,
    /// "http://127.0.0.1:PORT" of the upload listener.
    pub upload_base: String,
    /// Port of the upload listener (for `upload_host`).
    pub upload_port: u16,
    pub uploads_started: AtomicU64,
    /// Names temporary upload files uniquely.
    pub tmp_counter: AtomicU64,
    /// Bytes of `file` parts read by the upload listener.
    pub bytes_uploaded: AtomicU64,
    /// Body bytes read by upload/url fetches.
    pub bytes_fetched: AtomicU64,
    /// Body bytes handed to connections by the direct-link route.
    pub bytes_served: AtomicU64,
    /// upload/url fetch tasks still running (for `TestHost::wait_url_fetches`).
    pub fetching: tokio::sync::watch::Sender<usize>,
    /// Signs direct links (`links.rs`); drawn from the seed.
    pub link_secret: u64,
}

impl HostOptions {
    pub(crate) fn encode_ms(&self) -> u64 {
        u64::try_from(self.encode_time.as_millis()).unwrap_or(u64::MAX)
    }
}

impl Shared {
    /// A snapshot of the options. Take it before locking `state` (lock order: opts, then state).
    pub(crate) fn opts(&self) -> HostOptions {
        super::lock(&self.opts).clone()
    }

    pub(crate) fn log(&self, endpoint: &str, status: u16) {
        super::lock(&self.state).log(endpoint, status);
    }
}
