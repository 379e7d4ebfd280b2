//! The daemon: shared state, the named tasks (watch, scanner, uploaders,
//! progress), and the two ways to drive them: `run` (until stopped) and
//! `scan_once` (one full pass, then return).
//!
//! Data flows one way: events (watch, scan, timers) -> decisions (engine)
//! -> effects (api, filesystem) -> store. The store is the queue and the
//! memory; in-memory state here is only a cache of what is in flight.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, Client, ErrorClass};
use crate::config::{Config, SyncEntry};
use crate::engine::Filter;
use crate::folders::{FolderError, Folders};
use crate::store::{AccountPause, Attempt, HostCopy, State, StorageLeft, Store, StoreError};

/// A remote folder's files and when they were listed.
type Listing = (std::time::Instant, Arc<Vec<crate::api::ListedFile>>);

/// How long a folder listing serves the search for copies already there.
const LISTING_TTL: Duration = Duration::from_secs(60);

pub use crate::clock::now_ms;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The scanner loop counts as hung after this long without going round.
pub const HUNG_AFTER: Duration = Duration::from_secs(600);

/// Does `dir` hold the library the root `root_id` recorded? At least half
/// of a sample of its files must be there with the same size and mtime (a
/// copy made with `cp -a` or `rsync -a`), so that an unrelated folder given
/// the same remote path does not inherit (and delete) the old records.
fn same_library(store: &Store, root_id: i64, dir: &Path) -> Result<bool, StoreError> {
    let rows: Vec<_> = store
        .files_in_root(root_id)?
        .into_iter()
        .filter(|r| r.state != State::LocalDeleted)
        .take(50)
        .collect();
    if rows.is_empty() {
        return Ok(false);
    }
    let found = rows
        .iter()
        .filter(|r| {
            std::fs::symlink_metadata(dir.join(&r.rel_path)).is_ok_and(|md| {
                let st = crate::scan::stat_of(&md);
                st.size == r.stat.size && st.mtime_ns == r.stat.mtime_ns
            })
        })
        .count();
    Ok(found * 2 >= rows.len())
}

/// A configured sync entry with its store id and compiled filter.
#[derive(Debug)]
pub struct Root {
    pub id: i64,
    pub entry: SyncEntry,
    pub filter: Filter,
}

/// Why the daemon stopped with an error; `exit_code` follows PRODUCT.md.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the host rejected the API key: {0}")]
    KeyRejected(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Api(#[from] ApiError),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::KeyRejected(_) => 3,
            _ => 1,
        }
    }
}

/// State shared by every task of the daemon.
pub struct Shared {
    pub config: Config,
    pub store: Arc<Store>,
    pub client: Client,
    pub roots: Vec<Root>,
    pub folders: Folders,
    /// Wakes idle upload workers when something is queued.
    pub wake: Notify,
    key_ok: AtomicBool,
    /// The account is over its storage quota (account/info said so, or an
    /// upload was refused for disk space): no upload is sent until a
    /// recheck of account/info shows space again.
    over_quota: AtomicBool,
    account_pause_until: AtomicI64,
    account_streak: AtomicU32,
    /// Files inotify saw being written and not yet closed, with the time of
    /// the last write event.
    writers: Mutex<HashMap<PathBuf, (std::time::Instant, bool)>>,
    /// Roots that need a scan soon (events, errors).
    dirty: Mutex<HashSet<i64>>,
    /// Files inotify saw written, per root: a targeted pass re-stats just
    /// these (a download in progress must not cost a walk of the library
    /// on every tick).
    touched: Mutex<HashMap<i64, HashSet<PathBuf>>>,
    pub dirty_notify: Notify,
    /// Wakes the fix-up task (moves, renames, trash on the host).
    pub fixups: Notify,
    /// Full scans due at a time (a directory rename waiting for its retry).
    rescan_due: Mutex<HashMap<i64, std::time::Instant>>,
    /// Directory renames still to be done on the host, per root: (old, new).
    /// Files on either side are left alone until then.
    pending_renames: Mutex<HashMap<i64, Vec<(String, String)>>>,
    /// Wait for a refused folder rename (`run`), or give up on it at once and
    /// move the files one by one (`scan`, which must finish).
    hold_renames: AtomicBool,
    /// Remote fix-ups (folder renames, file moves, trash moves) that failed:
    /// failures in a row and the earliest next try, so a host that keeps
    /// refusing is not asked again on every scan.
    fix_gates: Mutex<HashMap<String, (u32, std::time::Instant)>>,
    /// When the scanner loop last went round (unix ms).
    heartbeat: AtomicI64,
    /// Last progress sample of each upload: (sent, at ms, smoothed rate).
    rates: Mutex<HashMap<i64, (u64, i64, f64)>>,
    /// Bytes sent of each upload in flight: (total, sent).
    inflight: Mutex<HashMap<i64, (u64, Arc<AtomicU64>)>>,
    /// Recent file listings of remote folders, for the search for copies
    /// already there (one listing serves every new file of a folder).
    listings: Mutex<HashMap<u64, Listing>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Open the store, register the roots, build the client.
    pub fn new(config: Config) -> Result<Shared, RunError> {
        let store = Arc::new(Store::open(&config.state.database)?);
        let client = Client::new(&config.api)?;
        let mut roots = Vec::new();
        for entry in &config.syncs {
            let remote = entry.remote.join("/");
            if store.root_by_local(&entry.local)?.is_none() {
                // A sync folder that resolves to a new directory (a symlink
                // repointed to a copy on a new disk) is the same library:
                // if exactly one unconfigured root had this remote path, its
                // records follow (files match again by path, size and mtime).
                let orphans: Vec<_> = store
                    .roots()?
                    .into_iter()
                    .filter(|r| r.remote == remote)
                    .filter(|r| !config.syncs.iter().any(|e| e.local == r.local))
                    .collect();
                if let [old] = orphans.as_slice()
                    && same_library(&store, old.id, &entry.local)?
                {
                    tracing::warn!(
                        from = %old.local.display(),
                        to = %entry.local.display(),
                        remote = %remote,
                        "sync folder now resolves to another directory; its records follow it"
                    );
                    store.relocate_root(old.id, &entry.local)?;
                }
            }
            let id = store.ensure_root(&entry.local, &remote)?;
            let mut exclude = config.watch.exclude.clone();
            exclude.extend(entry.exclude.iter().cloned());
            let filter = Filter::new(&config.watch.extensions, &exclude)
                .map_err(|e| RunError::Setup(format!("sync {}: {e}", entry.local.display())))?;
            roots.push(Root {
                id,
                entry: entry.clone(),
                filter,
            });
        }
        Ok(Shared {
            config,
            store,
            client,
            roots,
            folders: Folders::default(),
            wake: Notify::new(),
            key_ok: AtomicBool::new(true),
            over_quota: AtomicBool::new(false),
            account_pause_until: AtomicI64::new(0),
            account_streak: AtomicU32::new(0),
            writers: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            touched: Mutex::new(HashMap::new()),
            dirty_notify: Notify::new(),
            fixups: Notify::new(),
            rescan_due: Mutex::new(HashMap::new()),
            pending_renames: Mutex::new(HashMap::new()),
            hold_renames: AtomicBool::new(true),
            inflight: Mutex::new(HashMap::new()),
            rates: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            fix_gates: Mutex::new(HashMap::new()),
            heartbeat: AtomicI64::new(now_ms()),
        })
    }

    pub fn root(&self, id: i64) -> Option<&Root> {
        self.roots.iter().find(|r| r.id == id)
    }

    /// The root a local path belongs to.
    pub fn root_of(&self, path: &Path) -> Option<&Root> {
        self.roots.iter().find(|r| path.starts_with(&r.entry.local))
    }

    pub async fn folder_for(&self, root: &Root, rel_dir: &str) -> Result<u64, FolderError> {
        let local = root.entry.local.clone();
        let ino = move |d: &str| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(if d.is_empty() {
                local.clone()
            } else {
                local.join(d)
            })
            .ok()
            .map(|m| m.ino())
        };
        self.folders
            .resolve(
                &self.store,
                &self.client,
                root.id,
                &root.entry.remote,
                rel_dir,
                ino,
            )
            .await
    }

    // ---- key and account-wide pauses ----

    pub fn key_ok(&self) -> bool {
        self.key_ok.load(Ordering::SeqCst)
    }

    pub fn key_rejected(&self, msg: &str) {
        if self.key_ok.swap(false, Ordering::SeqCst) {
            tracing::error!(error = %msg, "THE HOST REJECTED THE API KEY: all uploads are paused until it works again (check api.key)");
            let _ = self.store.set_key_ok(false);
            self.record_error(msg);
        }
    }

    /// Remember the latest error for `status` (with its time, so an old
    /// one is seen as old).
    pub fn record_error(&self, msg: &str) {
        if let Err(e) = self.store.set_last_error(now_ms(), msg) {
            tracing::debug!(error = %e, "cannot record the last error");
        }
    }

    pub fn key_accepted(&self) {
        if !self.key_ok.swap(true, Ordering::SeqCst) {
            tracing::info!("the host accepts the API key again; uploads resume");
        }
        let _ = self.store.set_key_ok(true);
        self.wake.notify_waiters();
    }

    pub fn account_pause_until(&self) -> Option<i64> {
        let t = self.account_pause_until.load(Ordering::SeqCst);
        let now = now_ms();
        if t > now + self.longest_delay_ms() {
            // Set by a clock that has gone back since: over.
            self.account_pause_until.store(0, Ordering::SeqCst);
            return None;
        }
        (t > now).then_some(t)
    }

    pub fn pause_account_until(&self, t: i64) {
        self.account_pause_until.fetch_max(t, Ordering::SeqCst);
    }

    /// Over quota: hold every upload (a whole file would be sent only to be
    /// refused) until `key_watch` finds space with account/info.
    pub fn mark_over_quota(&self, msg: &str) {
        if !self.over_quota.swap(true, Ordering::SeqCst) {
            tracing::warn!("{msg}");
            self.record_error(msg);
        }
        let until = now_ms() + self.quota_recheck().as_millis() as i64;
        self.record_pause(until, msg);
    }

    pub fn over_quota(&self) -> bool {
        self.over_quota.load(Ordering::SeqCst)
    }

    /// How often account/info is asked again while over quota: rarely
    /// (hosts ration calls), at most `retry_max` apart.
    pub fn quota_recheck(&self) -> Duration {
        self.config
            .upload
            .retry_max
            .min(Duration::from_secs(300))
            .max(Duration::from_millis(100))
    }

    /// Tell `status` why uploads wait for the account (quota, rate limit,
    /// a daily limit, plain-http upload servers) and until when.
    pub fn record_pause(&self, until: i64, reason: &str) {
        let reason = match self.client.held() {
            Some((d, why)) if d > Duration::from_secs(70) => format!(
                "{why}; API calls resume in {} min",
                d.as_secs().div_ceil(60)
            ),
            _ => reason.to_string(),
        };
        if let Err(e) = self
            .store
            .set_account_pause(&AccountPause { until, reason })
        {
            tracing::debug!(error = %e, "cannot record the account pause");
        }
    }

    /// No retry is scheduled further ahead than this (twice `retry_max`,
    /// and at least a minute: some waits are fixed, like the second before
    /// a file that cannot be stat'ed is looked at again): anything later
    /// comes from a clock that went back. Without the floor, a small
    /// `retry_max` made such a wait "due at once", and a vanished sync
    /// folder spun the worker at ~200 tries a second.
    pub fn longest_delay_ms(&self) -> i64 {
        (self.config.upload.retry_max.as_millis() as i64)
            .saturating_mul(2)
            .max(60_000)
    }

    /// Count an account-wide refusal; returns the streak length.
    pub fn account_refused(&self) -> u32 {
        self.account_streak.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn after_success(&self) {
        self.account_streak.store(0, Ordering::SeqCst);
    }

    // ---- exactly once ----

    /// How long a file whose upload outcome is unknown waits before the
    /// host is searched again and, if nothing is found, it is sent again:
    /// some hosts list a new file only after a while. Bounded by
    /// `retry_max` (tests) and two minutes (real hosts list within seconds).
    pub fn list_grace(&self) -> Duration {
        self.config.upload.retry_max.min(Duration::from_secs(120))
    }

    /// When an upload cut by a stop or crash may be resumed: at once if it
    /// surely never reached the host, after `list_grace` otherwise.
    pub fn resume_at(&self, row: &crate::store::FileRow, now: i64) -> i64 {
        if row.unknown_since.is_some() {
            now + self.list_grace().as_millis() as i64
        } else {
            now
        }
    }

    /// Every file of a remote folder, from a listing at most `LISTING_TTL`
    /// old. Codes found in it are checked against the store at use, so
    /// an older listing can only miss a file added since, never adopt one
    /// twice.
    pub async fn folder_files(
        &self,
        fld_id: u64,
    ) -> Result<Arc<Vec<crate::api::ListedFile>>, ApiError> {
        if let Some((at, list)) = lock(&self.listings).get(&fld_id)
            && at.elapsed() < LISTING_TTL
        {
            return Ok(list.clone());
        }
        let q = crate::api::FileListQuery {
            fld_id: Some(fld_id),
            ..Default::default()
        };
        let list = Arc::new(self.client.file_list_all(&q).await?);
        lock(&self.listings).insert(fld_id, (std::time::Instant::now(), list.clone()));
        Ok(list)
    }

    /// A folder's listing is stale once an upload into it may have stored
    /// a file that no reply told us about.
    pub fn forget_listing(&self, fld_id: u64) {
        lock(&self.listings).remove(&fld_id);
    }

    // ---- main-loop heartbeat (for the systemd watchdog) ----

    pub fn beat(&self) {
        self.heartbeat.store(now_ms(), Ordering::Relaxed);
    }

    pub fn alive(&self) -> bool {
        now_ms() - self.heartbeat.load(Ordering::Relaxed) < HUNG_AFTER.as_millis() as i64
    }

    // ---- retry gates of remote fix-ups ----

    pub fn retry_allowed(&self, key: &str) -> bool {
        lock(&self.fix_gates)
            .get(key)
            .is_none_or(|(_, at)| std::time::Instant::now() >= *at)
    }

    pub fn retry_failed(&self, key: &str) {
        let mut g = lock(&self.fix_gates);
        let n = g.get(key).map_or(0, |(n, _)| *n) + 1;
        let u = &self.config.upload;
        let delay = crate::engine::backoff(n, u.retry_min, u.retry_max, rand::random::<f64>());
        g.insert(key.to_string(), (n, std::time::Instant::now() + delay));
    }

    pub fn retry_succeeded(&self, key: &str) {
        lock(&self.fix_gates).remove(key);
    }

    /// Scan this root again when the gate `key` opens (not before: a walk
    /// of a large library on every tick while a host keeps refusing is
    /// what must not happen).
    pub fn rescan_when_allowed(&self, root_id: i64, key: &str) {
        let Some(at) = lock(&self.fix_gates).get(key).map(|(_, at)| *at) else {
            self.request_rescan(root_id);
            return;
        };
        let mut due = lock(&self.rescan_due);
        let slot = due.entry(root_id).or_insert(at);
        *slot = (*slot).min(at);
    }

    pub fn holds_renames(&self) -> bool {
        self.hold_renames.load(Ordering::Relaxed)
    }

    pub fn set_pending_renames(&self, root_id: i64, pending: Vec<(String, String)>) {
        let mut p = lock(&self.pending_renames);
        if pending.is_empty() {
            p.remove(&root_id);
        } else {
            p.insert(root_id, pending);
        }
    }

    /// Is this relative path on either side of a rename still to be done?
    pub fn under_pending_rename(&self, root_id: i64, rel: &str) -> bool {
        lock(&self.pending_renames).get(&root_id).is_some_and(|v| {
            v.iter().any(|(old, new)| {
                crate::engine::is_under(rel, old) || crate::engine::is_under(rel, new)
            })
        })
    }

    /// Roots whose timed rescan has come.
    fn take_due_rescans(&self) -> HashSet<i64> {
        let now = std::time::Instant::now();
        let mut due = lock(&self.rescan_due);
        let ready: HashSet<i64> = due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| *id)
            .collect();
        due.retain(|id, _| !ready.contains(id));
        ready
    }

    // ---- watcher hints ----

    /// Is a writer still at work on this file? A file seen written stays
    /// "open" until its close-write event (the kernel sends one even when
    /// the writer crashes). A file only seen created (a hard link, `ln`,
    /// never sends a close-write) expires after a while instead.
    pub fn is_open_for_write(&self, path: &Path) -> bool {
        let stale = (self.config.watch.settle * 4).max(Duration::from_secs(30));
        lock(&self.writers)
            .get(path)
            .is_some_and(|(t, written)| *written || t.elapsed() < stale)
    }

    /// inotify: the file was created (weak hint) or written (strong).
    pub fn mark_writing(&self, path: &Path, written: bool) {
        let mut w = lock(&self.writers);
        // Weak marks of files never closed (hard links) would pile up over
        // months: drop the expired ones now and then.
        if w.len() > 10_000 {
            let stale = (self.config.watch.settle * 4).max(Duration::from_secs(30));
            w.retain(|_, (t, strong)| *strong || t.elapsed() < stale);
        }
        let strong = written || w.get(path).is_some_and(|(_, s)| *s);
        w.insert(path.to_path_buf(), (std::time::Instant::now(), strong));
    }

    /// inotify: closed after writing, removed, or renamed away.
    pub fn mark_closed(&self, path: &Path) {
        lock(&self.writers).remove(path);
    }

    /// inotify: a path removed or renamed away, file or directory: no
    /// writer mark below it stays.
    pub fn mark_closed_under(&self, path: &Path) {
        lock(&self.writers).retain(|p, _| !p.starts_with(path));
    }

    /// After an event overflow nothing is known about open files: fall back
    /// to the settle time alone.
    pub fn forget_writers(&self) {
        lock(&self.writers).clear();
    }

    pub fn request_rescan(&self, root_id: i64) {
        lock(&self.dirty).insert(root_id);
        self.dirty_notify.notify_one();
    }

    pub fn request_rescan_all(&self) {
        let mut d = lock(&self.dirty);
        for r in &self.roots {
            d.insert(r.id);
        }
        drop(d);
        self.dirty_notify.notify_one();
    }

    fn take_dirty(&self) -> HashSet<i64> {
        std::mem::take(&mut *lock(&self.dirty))
    }

    /// A file of this root was written: a targeted pass will stat it.
    pub fn touch(&self, root_id: i64, path: &Path) {
        lock(&self.touched)
            .entry(root_id)
            .or_default()
            .insert(path.to_path_buf());
        self.dirty_notify.notify_one();
    }

    fn take_touched(&self) -> HashMap<i64, HashSet<PathBuf>> {
        std::mem::take(&mut *lock(&self.touched))
    }

    // ---- progress ----

    pub fn start_progress(&self, id: i64, total: u64, sent: Arc<AtomicU64>) {
        lock(&self.inflight).insert(id, (total, sent));
    }

    pub fn clear_progress(&self, id: i64) {
        lock(&self.inflight).remove(&id);
        let _ = self.store.clear_progress(id);
    }

    /// Write the progress of uploads in flight to the store (for `status`).
    fn flush_progress(&self) {
        let now = now_ms();
        let snapshot: Vec<(i64, u64, u64)> = lock(&self.inflight)
            .iter()
            .map(|(id, (total, sent))| (*id, sent.load(Ordering::Relaxed), *total))
            .collect();
        let mut rates = lock(&self.rates);
        rates.retain(|id, _| snapshot.iter().any(|(i, _, _)| i == id));
        for (id, sent, total) in snapshot {
            // The rate over the last flushes (smoothed), not the average
            // since the upload began (which counts waits for the pacer).
            let rate = match rates.get(&id) {
                Some((prev_sent, prev_at, prev_rate)) => {
                    let dt = (now - prev_at).max(1) as f64 / 1000.0;
                    let current = sent.saturating_sub(*prev_sent) as f64 / dt;
                    0.5 * current + 0.5 * prev_rate
                }
                None => 0.0,
            };
            rates.insert(id, (sent, now, rate));
            if let Err(e) = self.store.set_progress(id, sent, total, rate as u64, now) {
                tracing::debug!(error = %e, "cannot record progress");
            }
        }
    }

    /// Check the key with account/info. Errors other than a rejection leave
    /// the state as it is (the host may just be down).
    pub async fn check_key(&self) -> Result<(), ApiError> {
        match self.client.account_info().await {
            Ok(info) => {
                self.key_accepted();
                let left = match info.storage_left {
                    crate::api::StorageLeft::Bytes(b) => StorageLeft::Bytes(b),
                    crate::api::StorageLeft::Unlimited => StorageLeft::Unlimited,
                };
                let _ = self.store.set_storage_left(left);
                if info.storage_left.over_quota() {
                    // A negative storage_left is the quota exceeded, not the
                    // key: uploads wait (account-wide) and say why.
                    self.mark_over_quota(&format!(
                        "the account is over its storage quota (storage left: {left}, as the host reports it); uploads wait until space is freed"
                    ));
                } else if self.over_quota.swap(false, Ordering::SeqCst) {
                    // Space again. An account-wide backoff already running
                    // (a file refused for disk space) keeps its course: a
                    // little space is not room for every file in the queue.
                    tracing::info!("the account has storage space again; uploads resume");
                    self.wake.notify_waiters();
                }
                Ok(())
            }
            Err(e) => {
                if e.class() == ErrorClass::KeyRejected {
                    self.key_rejected(&e.to_string());
                }
                Err(e)
            }
        }
    }

    fn scan_tick(&self) -> Duration {
        (self.config.watch.settle / 4).clamp(Duration::from_millis(50), Duration::from_secs(2))
    }

    fn has_waiting(&self, root_id: i64) -> bool {
        self.store.has_waiting(root_id).unwrap_or(false)
    }
}

/// Scan every root once and log what changed.
pub async fn scan_all(shared: &Shared) {
    for root in &shared.roots {
        // The first scan of `run` comes before the scanner task: it counts
        // as the main loop's heartbeat too.
        shared.beat();
        match crate::scan::scan_root(shared, root).await {
            Ok(r) if r != crate::scan::ScanReport::default() => {
                tracing::debug!(root = %root.entry.local.display(), report = ?r, "scanned");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(root = %root.entry.local.display(), error = %e, "scan failed")
            }
        }
    }
}

/// The scanner task: scan dirty roots, roots with files settling, every
/// root on the rescan interval, and poll-mode roots on the poll interval.
async fn scanner(
    shared: Arc<Shared>,
    poll_roots: Arc<Mutex<HashSet<i64>>>,
    stop: CancellationToken,
) {
    let tick = shared.scan_tick();
    let mut rescan = tokio::time::interval(shared.config.watch.rescan);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    rescan.tick().await;
    let mut poll = tokio::time::interval(shared.config.watch.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    poll.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = rescan.tick() => shared.request_rescan_all(),
            _ = poll.tick() => {
                for id in lock(&poll_roots).iter() {
                    shared.request_rescan(*id);
                }
            }
            _ = shared.dirty_notify.notified() => {
                // Let a burst of events (a copy in progress) gather.
                tokio::time::sleep(tick.min(Duration::from_millis(200))).await;
            }
            _ = tokio::time::sleep(tick) => {}
        }
        // The main loop, ticking every <= 2 s: its heartbeat feeds the
        // systemd watchdog (see `progress_writer`).
        shared.beat();
        // Full walks for roots whose tree changed (or on a timer); targeted
        // passes for files written and files settling.
        let mut full = shared.take_dirty();
        full.extend(shared.take_due_rescans());
        let mut touched = shared.take_touched();
        for root in &shared.roots {
            if stop.is_cancelled() {
                return;
            }
            let paths = touched.remove(&root.id).unwrap_or_default();
            let result = pass_root(&shared, root, full.contains(&root.id), paths).await;
            if let Err(e) = result {
                tracing::error!(root = %root.entry.local.display(), error = %e, "scan failed");
            }
        }
    }
}

/// One pass over a root: a full walk when its tree changed, otherwise a
/// targeted pass over the files written (`paths`) and the files settling.
async fn pass_root(
    shared: &Shared,
    root: &Root,
    full: bool,
    mut paths: HashSet<PathBuf>,
) -> Result<(), StoreError> {
    if full {
        return crate::scan::scan_root(shared, root).await.map(|_| ());
    }
    if shared.has_waiting(root.id) {
        paths.extend(
            shared
                .store
                .waiting_in_root(root.id)?
                .iter()
                .map(|r| r.path()),
        );
    }
    if paths.is_empty() {
        return Ok(());
    }
    crate::scan::scan_paths(shared, root, &paths).map(|_| ())
}

/// Run the remote fix-ups of every root once.
async fn fix_up_all(shared: &Shared) {
    for root in &shared.roots {
        if let Err(e) = crate::scan::fix_remote_places(shared, root).await {
            tracing::error!(root = %root.entry.local.display(), error = %e, "remote fix-ups failed");
        }
    }
}

/// The fix-up task: tell the host about local moves, renames and (with the
/// trash policy) deletions. Apart from the scanner, because its calls are
/// paced: hundreds of renames must not hold up the noticing of new files.
async fn fixups(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.fixups.notified() => {}
            // Retries whose gates have opened.
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        if shared.key_ok() {
            fix_up_all(&shared).await;
        }
    }
}

/// Writes upload progress to the store once a second (a bounded rate, so
/// `status` can show it without slowing uploads).
async fn progress_writer(shared: Arc<Shared>, stop: CancellationToken) {
    let mut t = tokio::time::interval(Duration::from_secs(1));
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // The systemd STATUS= line: every 3 s, sent only when it changed.
    let mut n: u32 = 0;
    let mut last_status = String::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = t.tick() => shared.flush_progress(),
        }
        // WATCHDOG=1 every second while the scanner loop is alive. A scan
        // pass may legitimately wait on the host (paced calls, timeouts), so
        // the loop counts as hung only after `HUNG_AFTER` without a beat;
        // then the pings stop and systemd (WatchdogSec=) restarts us.
        if shared.alive() {
            crate::sdnotify::watchdog();
        }
        if n.is_multiple_of(3)
            && let Ok(counts) = shared.store.counts()
        {
            let line = crate::sdnotify::status_line(&counts, shared.key_ok());
            if line != last_status {
                crate::sdnotify::status(&line);
                last_status = line;
            }
        }
        n = n.wrapping_add(1);
    }
}

/// While the key is rejected, check it again now and then.
async fn key_watch(shared: Arc<Shared>, stop: CancellationToken) {
    // As often as the first retry, within [1 s, 60 s]: one cheap call.
    let every = shared
        .config
        .upload
        .retry_min
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    let every = every.min(shared.quota_recheck());
    let mut t = tokio::time::interval(every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_quota_check = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = t.tick() => {
                let quota_due = shared.over_quota()
                    && last_quota_check.elapsed() >= shared.quota_recheck();
                if !shared.key_ok() || quota_due {
                    last_quota_check = std::time::Instant::now();
                    let _ = shared.check_key().await;
                }
            }
        }
    }
}

/// Only one `run` or `scan` may work on a database: a second one would take
/// the first one's uploads for crashed ones and send them again. The lock is
/// an flock on `<database>.lock`, released by the kernel if we die.
fn lock_database(db: &Path) -> Result<std::fs::File, RunError> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| RunError::Setup(format!("creating {}: {e}", dir.display())))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| RunError::Setup(format!("opening {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(RunError::Setup(format!(
            "another vidsync (run or scan) is already using {}; stop it first",
            db.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(RunError::Setup(format!("locking {}: {e}", path.display())))
        }
    }
}

/// The database lock if no `run` or `scan` holds it (for commands that
/// do work a running daemon already does).
pub fn try_lock_database(db: &Path) -> Option<std::fs::File> {
    lock_database(db).ok()
}

/// Prepare for work: rows a crash left `uploading` go back to the queue
/// (keeping `unknown_since`, so they are searched for before any resend).
fn recover(shared: &Shared) -> Result<(), StoreError> {
    let now = now_ms();
    for row in shared.store.in_states(&[State::Uploading])? {
        tracing::info!(path = %row.path().display(), "resuming an upload interrupted by a stop or crash");
        shared.store.retry_later(
            row.id,
            "interrupted",
            shared.resume_at(&row, now),
            Attempt::Free,
            HostCopy::Unknown,
            now,
        )?;
    }
    shared.store.clear_all_progress()?;
    Ok(())
}

/// Check the key once at start; a rejected key is fatal for `run` and `scan`.
async fn initial_key_check(shared: &Shared) -> Result<(), RunError> {
    match shared.check_key().await {
        Ok(()) => Ok(()),
        Err(e) if e.class() == ErrorClass::KeyRejected => Err(RunError::KeyRejected(e.to_string())),
        Err(e) => {
            // The host may be down: start anyway, the uploads will retry.
            tracing::warn!(error = %e, "cannot reach the host to check the key; continuing");
            Ok(())
        }
    }
}

/// Uploads cut by a stop go back to the queue, still marked as "may be on
/// the host" (`unknown_since`): `list` shows no phantom upload, and the next
/// start searches before sending them again.
fn requeue_cut_uploads(shared: &Shared) -> Result<(), StoreError> {
    let now = now_ms();
    for row in shared.store.in_states(&[State::Uploading])? {
        shared.store.retry_later(
            row.id,
            "interrupted by a stop",
            shared.resume_at(&row, now),
            Attempt::Free,
            HostCopy::Unknown,
            now,
        )?;
    }
    shared.store.clear_all_progress()
}

/// What `run` and `scan` do first: take the database lock, open the store,
/// requeue uploads a crash cut, check the key. The lock lives as long as
/// the returned file.
async fn prepare(config: Config) -> Result<(std::fs::File, Arc<Shared>), RunError> {
    let lock = lock_database(&config.state.database)?;
    let shared = Arc::new(Shared::new(config)?);
    recover(&shared)?;
    initial_key_check(&shared).await?;
    Ok((lock, shared))
}

/// The daemon, until `stop` is cancelled. Returns Ok on a clean stop.
pub async fn run(config: Config, stop: CancellationToken) -> Result<(), RunError> {
    // Preparing checks the key with the host, which may take a while (a
    // slow host, a reload): keep the watchdog fed meanwhile, and let a stop
    // interrupt it.
    let pinger = tokio::spawn(async {
        loop {
            crate::sdnotify::watchdog();
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let prepared = tokio::select! {
        r = prepare(config) => r,
        _ = stop.cancelled() => {
            pinger.abort();
            return Ok(());
        }
    };
    pinger.abort();
    let (_lock, shared) = prepared?;
    let tasks = CancellationToken::new();
    let mut set = JoinSet::new();
    let poll_roots = Arc::new(Mutex::new(HashSet::new()));
    let _watcher = crate::watch::start(&shared, &poll_roots);
    // Ready: the store is open and the first scan starts now. Not later:
    // uploads may take hours, and systemd would time the start out.
    crate::sdnotify::ready();
    // Progress (and the watchdog) before the first scan, which may be long.
    set.spawn(progress_writer(shared.clone(), tasks.clone()));
    tokio::select! {
        _ = scan_all(&shared) => {}
        _ = stop.cancelled() => {}
    }
    for n in 0..shared.config.upload.concurrency {
        set.spawn(crate::upload::worker(shared.clone(), n, tasks.clone()));
    }
    set.spawn(scanner(shared.clone(), poll_roots.clone(), tasks.clone()));
    set.spawn(fixups(shared.clone(), tasks.clone()));
    set.spawn(key_watch(shared.clone(), tasks.clone()));
    set.spawn(crate::reconcile::task(shared.clone(), tasks.clone()));
    tracing::info!(roots = shared.roots.len(), "vidsync running");
    stop.cancelled().await;
    tracing::info!("stopping");
    tasks.cancel();
    // Tasks stop at their next await; uploads in flight are dropped and
    // resume (after a search) at the next start.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while set.join_next().await.is_some() {}
    })
    .await;
    set.abort_all();
    requeue_cut_uploads(&shared)?;
    Ok(())
}

/// Summary of a `scan` pass.
#[derive(Debug, Clone, Default)]
pub struct ScanSummary {
    pub counts: Vec<(State, u64)>,
    pub failed: Vec<(PathBuf, String)>,
    /// Stopped by a signal before every complete file was done.
    pub interrupted: bool,
}

/// One full pass: scan, wait for files to settle, upload every complete
/// file, then return (or return early when `stop` is cancelled).
pub async fn scan_once(config: Config, stop: CancellationToken) -> Result<ScanSummary, RunError> {
    let (_lock, shared) = prepare(config).await?;
    shared.hold_renames.store(false, Ordering::Relaxed);
    let tasks = CancellationToken::new();
    let mut set = JoinSet::new();
    for n in 0..shared.config.upload.concurrency {
        set.spawn(crate::upload::worker(shared.clone(), n, tasks.clone()));
    }
    set.spawn(progress_writer(shared.clone(), tasks.clone()));
    let tick = shared.scan_tick();
    // One walk of each root; then only the files settling are looked at
    // again (a large library is not walked on every tick until the last
    // upload is done).
    scan_all(&shared).await;
    fix_up_all(&shared).await;
    loop {
        let mut full = shared.take_dirty();
        full.extend(shared.take_due_rescans());
        for root in &shared.roots {
            let r = pass_root(&shared, root, full.contains(&root.id), HashSet::new()).await;
            if let Err(e) = r {
                tracing::error!(root = %root.entry.local.display(), error = %e, "scan failed");
            }
        }
        let counts = shared.store.counts()?;
        let busy: u64 = counts
            .iter()
            .filter(|(s, _)| matches!(s, State::Waiting | State::Queued | State::Uploading))
            .map(|(_, n)| *n)
            .sum();
        if busy == 0 {
            break;
        }
        if shared.over_quota() {
            // Ask the account once more; if it is still full, waiting
            // would never end a `scan`: say so and stop.
            let _ = shared.check_key().await;
            if shared.over_quota() {
                tasks.cancel();
                while set.join_next().await.is_some() {}
                requeue_cut_uploads(&shared)?;
                return Err(RunError::Setup(format!(
                    "the account is over its storage quota: {busy} file(s) wait; free space on the host, then run scan again"
                )));
            }
        }
        if !shared.key_ok() {
            tasks.cancel();
            return Err(RunError::KeyRejected(
                "the host rejected the API key during the scan".into(),
            ));
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
    }
    tasks.cancel();
    while set.join_next().await.is_some() {}
    requeue_cut_uploads(&shared)?;
    let interrupted = stop.is_cancelled();
    if !interrupted {
        fix_up_all(&shared).await;
        match crate::reconcile::pass(&shared, false, false).await {
            Ok(r) => tracing::info!("reconcile: {}", r.summary()),
            Err(e) => tracing::warn!(error = %e, "reconcile failed"),
        }
    }
    let failed = shared
        .store
        .list(Some(State::Failed))?
        .into_iter()
        .map(|r| (r.path(), r.last_error.unwrap_or_default()))
        .collect();
    Ok(ScanSummary {
        counts: shared.store.counts()?,
        failed,
        interrupted,
    })
}

/// `vidsync reconcile`: one pass now (audit included), its report.
pub async fn reconcile_once(
    config: Config,
    force: bool,
) -> Result<crate::reconcile::Report, RunError> {
    let shared = Shared::new(config)?;
    initial_key_check(&shared).await?;
    let report = crate::reconcile::pass(&shared, force, true)
        .await
        .map_err(|e| RunError::Setup(e.to_string()))?;
    if let Err(e) = crate::reconcile::poll_encodings(&shared).await {
        tracing::warn!(error = %e, "encoding poll failed");
    }
    Ok(report)
}
