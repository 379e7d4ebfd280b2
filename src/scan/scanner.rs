//! The scanner task: owns the hint channel's receiving end, the writer
//! tracking and the sets of roots to walk and files to look at, and turns
//! them into full walks and targeted passes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Writers;
use crate::context::{Context, Hint, HintReceiver, Root};
use crate::store::{EventKind, StoreError};

/// What the scanner has been told and not yet acted on.
#[derive(Debug)]
pub struct Scanner {
    rx: HintReceiver,
    pub writers: Writers,
    /// Roots that need a full walk soon (tree events, errors).
    dirty: HashSet<i64>,
    /// Files seen written, per root: a targeted pass re-stats just these (a
    /// download in progress must not cost a walk of the library on every
    /// tick).
    touched: HashMap<i64, HashSet<PathBuf>>,
    /// Full walks due at a time (a directory rename waiting for its retry).
    due: HashMap<i64, Instant>,
    /// Roots polled instead of watched.
    polled: HashSet<i64>,
    /// When files held back as incomplete were last checked for being
    /// overdue (`incomplete_timeout`).
    overdue_checked: Option<Instant>,
}

impl Scanner {
    pub fn new(rx: HintReceiver, settle: Duration) -> Scanner {
        Scanner {
            rx,
            writers: Writers::new(settle),
            dirty: HashSet::new(),
            touched: HashMap::new(),
            due: HashMap::new(),
            polled: HashSet::new(),
            overdue_checked: None,
        }
    }

    /// Poll the roots in these sync folders (the watcher could not watch
    /// them).
    pub fn poll(&mut self, ctx: &Context, folders: &HashSet<PathBuf>) {
        self.polled.extend(
            ctx.roots
                .iter()
                .filter(|r| folders.contains(&r.entry.local))
                .map(|r| r.id),
        );
    }

    /// Take in every hint waiting now.
    pub fn drain(&mut self, ctx: &Context) {
        for h in self.rx.drain() {
            self.take(ctx, h);
        }
    }

    /// Note one hint. Content events concern one file: a targeted pass.
    /// Everything else (a new or renamed directory, a rename, a deletion)
    /// changes the tree: a full walk of the root, which can match moves.
    fn take(&mut self, ctx: &Context, hint: Hint) {
        let root_of = |p: &Path| ctx.root_of(p).map(|r| r.id);
        match hint {
            Hint::Writing { path, written } => {
                self.writers.writing(&path, written);
                self.touch(root_of(&path), path);
            }
            Hint::Closed(path) => {
                self.writers.closed(&path);
                self.touch(root_of(&path), path);
            }
            Hint::Touched(path) => self.touch(root_of(&path), path),
            Hint::Renamed(path) => {
                let Some(root) = ctx.root_of(&path) else {
                    return;
                };
                // Marks under a renamed or removed directory go with it.
                self.writers.closed_under(&path);
                match std::fs::symlink_metadata(&path) {
                    // A file renamed into place (a finished download, an
                    // rsync temporary): one file to look at. Where it came
                    // from is found by its inode.
                    Ok(md) if md.file_type().is_file() => self.touch(Some(root.id), path),
                    // Gone, and nothing tracked was there: nothing to do.
                    Err(_) if !tracked_at_or_under(ctx, root, &path) => {}
                    // A directory, or a tracked name gone: the tree changed.
                    _ => {
                        self.dirty.insert(root.id);
                    }
                }
            }
            Hint::Tree(path) => {
                if let Some(id) = root_of(&path) {
                    self.dirty.insert(id);
                }
            }
            Hint::Overflow => {
                tracing::warn!("file events were lost; rescanning every sync folder");
                self.writers.forget();
                self.dirty.extend(ctx.roots.iter().map(|r| r.id));
            }
            Hint::Poll(folders) => {
                for r in ctx
                    .roots
                    .iter()
                    .filter(|r| folders.contains(&r.entry.local))
                {
                    self.dirty.insert(r.id);
                    self.polled.insert(r.id);
                }
            }
            Hint::Rescan(id) => {
                self.dirty.insert(id);
            }
            Hint::RescanAt(id, at) => {
                let slot = self.due.entry(id).or_insert(at);
                *slot = (*slot).min(at);
            }
            Hint::RescanAll => self.dirty.extend(ctx.roots.iter().map(|r| r.id)),
        }
    }

    fn touch(&mut self, root: Option<i64>, path: PathBuf) {
        if let Some(id) = root {
            self.touched.entry(id).or_default().insert(path);
        }
    }

    /// Until the earliest timed full walk (a rename's retry), if any.
    fn until_due(&self) -> Duration {
        let now = Instant::now();
        self.due
            .values()
            .map(|at| at.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::MAX)
    }

    /// Roots due for a full walk now (dirty, or their timed rescan came).
    fn take_full(&mut self) -> HashSet<i64> {
        let now = Instant::now();
        let mut full = std::mem::take(&mut self.dirty);
        self.due.retain(|id, at| {
            if *at <= now {
                full.insert(*id);
                false
            } else {
                true
            }
        });
        full
    }

    /// One round over every root: a full walk where the tree changed,
    /// otherwise a targeted pass over the files written and the files
    /// settling.
    pub async fn pass(&mut self, ctx: &Context, stop: &CancellationToken) {
        self.drain(ctx);
        let full = self.take_full();
        let mut touched = std::mem::take(&mut self.touched);
        for root in &ctx.roots {
            if stop.is_cancelled() {
                return;
            }
            let paths = touched.remove(&root.id).unwrap_or_default();
            let result = self
                .pass_root(ctx, root, full.contains(&root.id), paths)
                .await;
            if let Err(e) = result {
                tracing::error!(root = %root.entry.local.display(), error = %e, "scan failed");
            }
        }
        // Once a minute (or as often as the timeout, if shorter) is early
        // enough to say that a file has waited a day.
        let every = ctx
            .config
            .watch
            .incomplete_timeout
            .min(Duration::from_secs(60));
        if self.overdue_checked.is_none_or(|at| at.elapsed() >= every) {
            self.overdue_checked = Some(Instant::now());
            if let Err(e) = report_overdue(ctx) {
                tracing::debug!(error = %e, "cannot check for overdue incomplete files");
            }
        }
    }

    async fn pass_root(
        &self,
        ctx: &Context,
        root: &Root,
        full: bool,
        touched: HashSet<PathBuf>,
    ) -> Result<(), StoreError> {
        if full {
            return super::scan_root(ctx, &self.writers, root).await.map(|_| ());
        }
        let mut settling = HashSet::new();
        if ctx.store.has_waiting(root.id).unwrap_or(false) {
            settling.extend(ctx.store.waiting_in_root(root.id)?.iter().map(|r| r.path()));
        }
        if touched.is_empty() && settling.is_empty() {
            return Ok(());
        }
        super::scan_paths(ctx, &self.writers, root, &touched, &settling).map(|_| ())
    }

    /// Walk every root once and log what changed.
    pub async fn scan_all(&self, ctx: &Context) {
        for root in &ctx.roots {
            // The first scan of `run` comes before the scanner task: it
            // counts as the main loop's heartbeat too.
            ctx.heartbeat.beat();
            match super::scan_root(ctx, &self.writers, root).await {
                Ok(r) if r != super::ScanReport::default() => {
                    tracing::debug!(root = %root.entry.local.display(), report = ?r, "scanned");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(root = %root.entry.local.display(), error = %e, "scan failed")
                }
            }
        }
    }

    /// The scanner task: walk dirty roots, look at files settling, every
    /// root on the rescan interval and polled roots on the poll interval.
    pub async fn run(mut self, ctx: Arc<Context>, stop: CancellationToken) {
        let tick = scan_tick(&ctx);
        let mut rescan = tokio::time::interval(ctx.config.watch.rescan);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        rescan.tick().await;
        let mut poll = tokio::time::interval(ctx.config.watch.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        poll.tick().await;
        let mut last_pass = crate::clock::now_ms();
        loop {
            let wait = next_wait(&ctx, tick, last_pass).min(self.until_due());
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = rescan.tick() => self.take(&ctx, Hint::RescanAll),
                _ = poll.tick() => self.dirty.extend(self.polled.iter().copied()),
                hint = self.rx.recv() => {
                    if let Some(h) = hint {
                        self.take(&ctx, h);
                    }
                    // Let a burst of events (a copy in progress) gather.
                    tokio::time::sleep(tick.min(Duration::from_millis(200))).await;
                }
                _ = tokio::time::sleep(wait) => {}
            }
            // The main loop, going round every <= 2 s: its heartbeat feeds
            // the systemd watchdog (see the progress task).
            ctx.heartbeat.beat();
            last_pass = crate::clock::now_ms();
            self.pass(&ctx, &stop).await;
        }
    }
}

/// How long the scanner sleeps when no event comes while nothing settles:
/// events, timers (rescan, poll, a rename's retry) and files settling wake
/// it; this only bounds the heartbeat's age (the watchdog allows
/// `HUNG_AFTER`) and the checks for files held back too long (once a
/// minute).
const IDLE_TICK: Duration = Duration::from_secs(30);

/// How long the scanner sleeps when nothing happens: until the next file
/// settles (its `settle` passed since the last pass looked), so its upload
/// starts then and not up to a tick later; at most `tick` while files
/// settle, `IDLE_TICK` when none does.
fn next_wait(ctx: &Context, tick: Duration, last_pass: i64) -> Duration {
    let settle = ctx.config.watch.settle.as_millis() as i64;
    let since = match ctx.store.first_settling_since() {
        Ok(Some(since)) => since,
        Ok(None) => return IDLE_TICK.max(tick),
        Err(_) => return tick,
    };
    let due = since.saturating_add(settle);
    if due <= last_pass {
        // Judged after its deadline already (a writer holds it open, say):
        // the regular tick looks again.
        return tick;
    }
    // A few ms past the deadline, so that the pass finds it settled.
    let ms = (due - crate::clock::now_ms()).max(0) as u64 + 5;
    Duration::from_millis(ms).min(tick)
}

/// How often the scanner looks at files settling: a quarter of `settle`,
/// within [50 ms, 2 s].
pub fn scan_tick(ctx: &Context) -> Duration {
    (ctx.config.watch.settle / 4).clamp(Duration::from_millis(50), Duration::from_secs(2))
}

/// Was anything tracked at or below this path (now gone)? If not, its
/// disappearance changes nothing (a finished `x.mkv.part`, an rsync
/// temporary, a folder of other files).
fn tracked_at_or_under(ctx: &Context, root: &Root, path: &Path) -> bool {
    let Some(rel) = path
        .strip_prefix(&root.entry.local)
        .ok()
        .and_then(|r| r.to_str())
    else {
        return true;
    };
    // When in doubt (a database error), look.
    ctx.store.has_at_or_under(root.id, rel).unwrap_or(true)
}

/// Files held back as incomplete and unchanged for `incomplete_timeout`:
/// said once in the log and in `status` (the last error), never uploaded
/// automatically.
fn report_overdue(ctx: &Context) -> Result<(), StoreError> {
    let timeout = ctx.config.watch.incomplete_timeout;
    let now = crate::clock::now_ms();
    let cutoff = now.saturating_sub(timeout.as_millis() as i64);
    for row in ctx.store.incomplete_overdue(cutoff)? {
        let msg = format!(
            "{}: still not complete after {} unchanged ({}); not uploaded: `vidsync retry PATH` uploads it anyway",
            row.path().display(),
            humantime::format_duration(timeout),
            row.incomplete.as_deref().unwrap_or("?"),
        );
        tracing::warn!("{msg}");
        ctx.host.account.record_error(&msg);
        ctx.store.mark_incomplete_reported(row.id, now)?;
        ctx.store.notice_file(
            EventKind::Incomplete,
            row.id,
            None,
            row.incomplete.as_deref(),
            now,
        );
    }
    Ok(())
}
