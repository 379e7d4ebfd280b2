//! The shared state below the tasks: a `Context` holding the config, the
//! store, the host and small types that each own their lock (retry gates,
//! upload progress, pending directory renames, the heartbeat), plus the
//! sending side of the scanner's hint channel.
//!
//! A library mirrored to several hosts has one `Context` per host
//! (`Context::library`): each sees the config with its own `[[host]]` as
//! `api` and only the syncs that go to it, its own view of the store, its
//! own retry gates, renames and scanner; the heartbeat and the notes said
//! once are shared.
//!
//! Tasks (scan, fixup, upload, reconcile, watch) take a `&Context`; none of
//! them is imported here, so the layers go one way.

pub mod gates;
pub mod hints;
pub mod metrics;
pub mod progress;
pub mod renames;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::config::{Config, SyncEntry};
use crate::engine::Filter;
use crate::host::{FolderError, Host};
use crate::lock::lock;
use crate::store::{FileRow, State, Store, StoreError};

pub use gates::{Gate, Gates};
pub use hints::{Hint, HintReceiver, HintSender};
pub use metrics::{Exposition, Metrics};
pub use progress::Progress;
pub use renames::{DirRename, Renames};

/// The scanner loop counts as hung after this long without going round.
pub const HUNG_AFTER: Duration = Duration::from_secs(600);

/// A configured sync entry with its store id and compiled filter.
#[derive(Debug)]
pub struct Root {
    pub id: i64,
    pub entry: SyncEntry,
    pub filter: Filter,
}

/// Why the daemon stopped with an error; `exit_code` follows the exit codes
/// of docs/cli.md.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the host rejected the API key: {0}")]
    KeyRejected(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Api(#[from] crate::api::ApiError),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::KeyRejected(_) => 3,
            _ => 1,
        }
    }
}

/// Paths something was said about already, so that a note that stays true
/// (a symbolic link in a sync folder) is logged once, not on every walk.
#[derive(Debug, Default)]
pub struct Said(Mutex<std::collections::HashSet<PathBuf>>);

impl Said {
    /// True the first time for a path (then false until a restart).
    pub fn first_time(&self, path: &Path) -> bool {
        let mut said = lock(&self.0);
        if said.contains(path) {
            return false;
        }
        said.insert(path.to_path_buf())
    }
}

/// When the main loop last went round, for the systemd watchdog.
#[derive(Debug)]
pub struct Heartbeat(AtomicI64);

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat(AtomicI64::new(now_ms()))
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        self.0.store(now_ms(), Ordering::Relaxed);
    }

    pub fn alive(&self) -> bool {
        now_ms() - self.0.load(Ordering::Relaxed) < HUNG_AFTER.as_millis() as i64
    }
}

/// The host a context's host copies files from (`copy_from`): its client
/// and account (for direct links, and whether it is well), and its view
/// of the store (its record of each file).
pub struct CopySource {
    pub name: String,
    pub host: Arc<Host>,
    pub store: Arc<Store>,
    /// False once this context's host showed it cannot copy (upload/url
    /// disabled): files are sent from the disk until the next start.
    pub works: std::sync::atomic::AtomicBool,
    /// False once this context's host showed it has no file/url_uploads:
    /// copies are followed with file/info alone.
    pub url_uploads: std::sync::atomic::AtomicBool,
    /// Files (row ids) whose copy failed since the start: sent from the
    /// disk from then on, not copied again and again.
    pub failed: Mutex<std::collections::HashSet<i64>>,
}

impl CopySource {
    /// Is the source host able to get its copy up soon (its key works, no
    /// account-wide pause, not over quota)? Only then is a file worth
    /// waiting for rather than sent from the disk.
    pub fn well(&self) -> bool {
        let a = &self.host.account;
        a.key_ok() && !a.over_quota() && a.pause_until().is_none()
    }
}

/// Everything the tasks share.
pub struct Context {
    pub config: Config,
    pub store: Arc<Store>,
    pub host: Arc<Host>,
    /// Where files come from instead of the disk, when they can
    /// (`copy_from`).
    pub source: Option<CopySource>,
    pub roots: Vec<Root>,
    pub gates: Gates,
    pub progress: Progress,
    pub renames: Renames,
    pub heartbeat: Arc<Heartbeat>,
    /// Tells the scanner what changed.
    pub hints: HintSender,
    /// Wakes the fix-up task (moves, renames, trash on the host).
    pub fixups: Notify,
    /// Notes already logged, per path.
    pub said: Arc<Said>,
    /// Counters and gauges for `/metrics`: this host's.
    pub metrics: Metrics,
    /// What `/metrics` serves: every host's metrics (shared).
    pub exposition: Arc<Exposition>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

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
                let st = crate::store::Stat::of(&md);
                st.size == r.stat.size && st.mtime_ns == r.stat.mtime_ns
            })
        })
        .count();
    Ok(found * 2 >= rows.len())
}

impl Context {
    /// The context of the first configured host (the only one of a config
    /// with `[api]`). The receiving side of the hint channel goes to
    /// whoever runs the scanner.
    pub fn new(config: Config) -> Result<(Context, HintReceiver), RunError> {
        Context::library(config)?
            .into_iter()
            .next()
            .ok_or_else(|| RunError::Setup("no host is configured".into()))
    }

    /// Open the store once and build one context per configured host, in
    /// config order, each with the receiving side of its scanner's hints.
    pub fn library(config: Config) -> Result<Vec<(Context, HintReceiver)>, RunError> {
        let base = Store::open(&config.state.database)?;
        follow_renamed_hosts(&config, &base)?;
        let heartbeat = Arc::new(Heartbeat::default());
        let said = Arc::new(Said::default());
        // Every host first, so that each can name the one it copies from.
        let mut built = Vec::with_capacity(config.hosts.len());
        for entry in &config.hosts {
            let config = config.for_host(&entry.name).ok_or_else(|| {
                RunError::Setup(format!("host {}: not in the config", entry.name))
            })?;
            let store = Arc::new(base.for_host(&entry.name));
            store.note_host_url(config.api.url.as_str())?;
            let host = Arc::new(Host::new(&config, store.clone())?);
            built.push((entry, config, store, host));
        }
        let sources: Vec<Option<CopySource>> = built
            .iter()
            .map(|(entry, ..)| {
                let from = entry.copy_from.as_ref()?;
                let (_, _, store, host) = built.iter().find(|(e, ..)| &e.name == from)?;
                Some(CopySource {
                    name: from.clone(),
                    host: host.clone(),
                    store: store.clone(),
                    works: std::sync::atomic::AtomicBool::new(true),
                    url_uploads: std::sync::atomic::AtomicBool::new(true),
                    failed: Mutex::new(std::collections::HashSet::new()),
                })
            })
            .collect();
        let stats: Vec<(&str, &crate::api::ApiStats)> = built
            .iter()
            .map(|(e, _, _, h)| (e.name.as_str(), h.client.stats()))
            .collect();
        let (exposition, metrics) = Exposition::new(&stats);
        let exposition = Arc::new(exposition);
        let started = Arc::new(Notify::new());
        let mut out = Vec::with_capacity(built.len());
        for (((_, config, store, host), source), metrics) in
            built.into_iter().zip(sources).zip(metrics)
        {
            let roots = register_roots(&config, &store)?;
            let (hints, rx) = hints::channel();
            let ctx = Context {
                gates: Gates::new(config.upload.retry_min, config.upload.retry_max),
                config,
                store,
                host,
                source,
                roots,
                progress: Progress::telling(started.clone()),
                renames: Renames::default(),
                heartbeat: heartbeat.clone(),
                hints,
                fixups: Notify::new(),
                said: said.clone(),
                metrics,
                exposition: exposition.clone(),
            };
            out.push((ctx, rx));
        }
        Ok(out)
    }

    /// This context's host, as the config names it.
    pub fn name(&self) -> &str {
        self.store.host()
    }

    pub fn root(&self, id: i64) -> Option<&Root> {
        self.roots.iter().find(|r| r.id == id)
    }

    /// The root a local path belongs to.
    pub fn root_of(&self, path: &Path) -> Option<&Root> {
        self.roots.iter().find(|r| path.starts_with(&r.entry.local))
    }

    /// The remote folder of a directory of a root.
    pub async fn folder_for(&self, root: &Root, rel_dir: &str) -> Result<u64, FolderError> {
        self.host
            .folder_for(root.id, &root.entry.local, &root.entry.remote, rel_dir)
            .await
    }

    pub fn request_rescan(&self, root_id: i64) {
        self.hints.send(Hint::Rescan(root_id));
    }

    pub fn request_rescan_all(&self) {
        self.hints.send(Hint::RescanAll);
    }

    /// Scan this root again when the gate opens (not before: a walk of a
    /// large library on every tick while a host keeps refusing is what
    /// must not happen).
    pub fn rescan_when_allowed(&self, root_id: i64, gate: &Gate) {
        match self.gates.opens_at(gate) {
            Some(at) => self.hints.send(Hint::RescanAt(root_id, at)),
            None => self.request_rescan(root_id),
        }
    }

    /// The one title a file is sent with: the template filled from its
    /// path, in the form the host stores it.
    pub fn title_for(&self, rel_path: &str) -> String {
        crate::engine::stored_title(
            &crate::engine::render_title(&self.config.upload.title_template, rel_path),
            self.config.api.sanitize_filename,
        )
    }

    /// How long a file whose upload outcome is unknown waits before the
    /// host is searched again and, if nothing is found, it is sent again:
    /// some hosts list a new file only after a while. Bounded by
    /// `retry_max` (tests) and two minutes (real hosts list within seconds).
    pub fn list_grace(&self) -> Duration {
        self.config.upload.retry_max.min(Duration::from_secs(120))
    }

    /// When an upload cut by a stop or crash may be resumed: at once if it
    /// surely never reached the host, after `list_grace` otherwise.
    pub fn resume_at(&self, row: &FileRow, now: i64) -> i64 {
        if row.unknown_since.is_some() {
            now + self.list_grace().as_millis() as i64
        } else {
            now
        }
    }
}

/// A host renamed in the config keeps its records: a configured host with
/// none, and exactly one host with records that is no longer configured and
/// was used with the same API URL (or with an unrecorded one: the records
/// of a one-host release, named `default`), are the same account.
fn follow_renamed_hosts(config: &Config, store: &Store) -> Result<(), RunError> {
    let configured = |n: &str| config.hosts.iter().any(|h| h.name == n);
    for entry in &config.hosts {
        let known = store.known_hosts()?;
        let has_records = |name: &str| known.iter().any(|(n, _)| n == name);
        if has_records(&entry.name) {
            continue;
        }
        // Records without a URL can only be matched when one configured
        // host is new: with two, which one was it?
        let new_hosts = config
            .hosts
            .iter()
            .filter(|h| !has_records(&h.name))
            .count();
        let url = entry.api.url.as_str();
        let orphans: Vec<&String> = known
            .iter()
            .filter(|(n, _)| !configured(n))
            .filter(|(_, u)| match u {
                Some(u) => u == url,
                None => new_hosts == 1,
            })
            .map(|(n, _)| n)
            .collect();
        if let [old] = orphans.as_slice()
            && store.for_host(&entry.name).take_over_host(old)?
        {
            tracing::warn!(
                from = %old,
                to = %entry.name,
                "a host was renamed in the config: its records follow it"
            );
        }
    }
    Ok(())
}

/// The roots of the config, registered in the store. A sync folder that
/// resolves to a new directory (a symlink repointed to a copy on a new
/// disk) is the same library: if exactly one unconfigured root had its
/// remote path, its records follow (files match again by path, size and
/// mtime).
fn register_roots(config: &Config, store: &Store) -> Result<Vec<Root>, RunError> {
    let mut roots = Vec::new();
    for entry in &config.syncs {
        let remote = entry.remote.join("/");
        if store.root_by_local(&entry.local)?.is_none() {
            let orphans: Vec<_> = store
                .roots()?
                .into_iter()
                .filter(|r| r.remote == remote)
                .filter(|r| !config.syncs.iter().any(|e| e.local == r.local))
                .collect();
            if let [old] = orphans.as_slice()
                && same_library(store, old.id, &entry.local)?
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
    Ok(roots)
}

/// Only one `run` or `scan` may work on a database: a second one would take
/// the first one's uploads for crashed ones and send them again. The lock is
/// an flock on `<database>.lock`, released by the kernel if we die.
pub fn lock_database(db: &Path) -> Result<std::fs::File, RunError> {
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
