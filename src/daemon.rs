//! The daemon: prepares the context and wires the named tasks (watcher,
//! scanner, upload workers, fix-ups, progress, key watch, reconcile), in
//! two ways: `run` (until stopped) and `scan_once` (one full pass, then
//! return). It holds no state of its own.
//!
//! Data flows one way: events (watch, scan, timers) -> decisions (engine)
//! -> effects (api, filesystem) -> store. The store is the queue and the
//! memory; in-memory state is only a cache of what is in flight.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::ErrorClass;
use crate::clock::now_ms;
use crate::config::Config;
use crate::context::Context;
use crate::scan::Scanner;
use crate::store::{Attempt, HostCopy, State, StoreError};

pub use crate::context::{RunError, try_lock_database};

/// Prepare for work: rows a crash left `uploading` go back to the queue
/// (keeping `unknown_since`, so they are searched for before any resend).
fn recover(ctx: &Context) -> Result<(), StoreError> {
    let now = now_ms();
    for row in ctx.store.in_states(&[State::Uploading])? {
        tracing::info!(path = %row.path().display(), "resuming an upload interrupted by a stop or crash");
        ctx.store.retry_later(
            row.id,
            "interrupted",
            ctx.resume_at(&row, now),
            Attempt::Free,
            HostCopy::Unknown,
            now,
        )?;
    }
    ctx.store.clear_all_progress()?;
    Ok(())
}

/// Check the key once at start; a rejected key is fatal for `run` and `scan`.
async fn initial_key_check(ctx: &Context) -> Result<(), RunError> {
    match ctx.host.check_key().await {
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
fn requeue_cut_uploads(ctx: &Context) -> Result<(), StoreError> {
    let now = now_ms();
    for row in ctx.store.in_states(&[State::Uploading])? {
        ctx.store.retry_later(
            row.id,
            "interrupted by a stop",
            ctx.resume_at(&row, now),
            Attempt::Free,
            HostCopy::Unknown,
            now,
        )?;
    }
    ctx.store.clear_all_progress()
}

/// What `run` and `scan` do first: take the database lock, open the store,
/// and for each host: requeue uploads a crash cut, check the key. The lock
/// lives as long as the returned file.
async fn prepare(
    config: Config,
) -> Result<(std::fs::File, Vec<(Arc<Context>, Scanner)>), RunError> {
    let lock = crate::context::lock_database(&config.state.database)?;
    let settle = config.watch.settle;
    let library = Context::library(config)?;
    let several = library.len() > 1;
    let mut out = Vec::with_capacity(library.len());
    for (ctx, hints) in library {
        recover(&ctx)?;
        match initial_key_check(&ctx).await {
            // With several hosts, one whose key is rejected holds back only
            // its own copies: the others go on, and its key is checked
            // again by the key watch.
            Err(RunError::KeyRejected(e)) if several => {
                tracing::error!(host = ctx.name(), error = %e, "the host rejected the API key; its uploads wait until it accepts it");
            }
            r => r?,
        }
        out.push((Arc::new(ctx), Scanner::new(hints, settle)));
    }
    Ok((lock, out))
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
    let (_lock, hosts) = prepared?;
    let ctxs: Vec<Arc<Context>> = hosts.iter().map(|(c, _)| c.clone()).collect();
    let Some(first) = ctxs.first().cloned() else {
        return Err(RunError::Setup("no host is configured".into()));
    };
    let tasks = CancellationToken::new();
    let mut set = JoinSet::new();
    if let Some(addr) = first.config.metrics.listen {
        // Asked for and not possible (the port taken): say so at start
        // rather than run without what the user's monitoring expects.
        let listener = crate::exporter::bind(addr)
            .await
            .map_err(|e| RunError::Setup(format!("cannot listen for metrics on {addr}: {e}")))?;
        set.spawn(crate::exporter::task(
            listener,
            Arc::new(ctxs.clone()),
            tasks.clone(),
        ));
    }
    let (_watcher, polled) = crate::watch::start(&ctxs);
    let mut hosts = hosts;
    for (ctx, scanner) in &mut hosts {
        scanner.poll(ctx, &polled);
    }
    // Ready: the store is open and the first scan starts now. Not later:
    // uploads may take hours, and systemd would time the start out.
    crate::sdnotify::ready();
    // Progress (and the watchdog) before the first scan, which may be long.
    set.spawn(crate::progress::task(ctxs.clone(), tasks.clone()));
    for (ctx, scanner) in &hosts {
        tokio::select! {
            _ = scanner.scan_all(ctx) => {}
            _ = stop.cancelled() => {}
        }
    }
    for (ctx, scanner) in hosts {
        for n in 0..ctx.config.upload.concurrency.get() {
            set.spawn(crate::upload::worker(ctx.clone(), n, tasks.clone()));
        }
        set.spawn(scanner.run(ctx.clone(), tasks.clone()));
        set.spawn(crate::fixup::task(ctx.clone(), tasks.clone()));
        let watch_ctx = ctx.clone();
        let watch_stop = tasks.clone();
        set.spawn(async move {
            let retry_min = watch_ctx.config.upload.retry_min;
            watch_ctx.host.key_watch(retry_min, watch_stop).await
        });
        set.spawn(crate::reconcile::task(ctx.clone(), tasks.clone()));
    }
    // Notices are the library's, not a host's: one task sends them all.
    set.spawn(crate::notify::task(first.clone(), tasks.clone()));
    let roots: usize = ctxs.iter().map(|c| c.roots.len()).sum();
    tracing::info!(roots, hosts = ctxs.len(), "vidsync running");
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
    for ctx in &ctxs {
        requeue_cut_uploads(ctx)?;
    }
    Ok(())
}

/// Summary of a `scan` pass.
#[derive(Debug, Clone, Default)]
pub struct ScanSummary {
    /// Files per state, summed over the hosts (a file going to two hosts
    /// counts twice).
    pub counts: Vec<(State, u64)>,
    /// The counts of each host, when there are several.
    pub hosts: Vec<(String, Vec<(State, u64)>)>,
    pub failed: Vec<(PathBuf, String)>,
    /// Held back as not complete yet (holes, a container cut short, a
    /// writer): not uploaded by this scan.
    pub incomplete: Vec<(PathBuf, String)>,
    /// Stopped by a signal before every complete file was done.
    pub interrupted: bool,
}

impl ScanSummary {
    /// Add one host's pass: with several hosts, each failure says where.
    fn add(&mut self, host: &str, s: ScanSummary, several: bool) {
        crate::store::add_counts(&mut self.counts, &s.counts);
        let on = |e: String| {
            if several {
                format!("on {host}: {e}")
            } else {
                e
            }
        };
        self.failed
            .extend(s.failed.into_iter().map(|(p, e)| (p, on(e))));
        for (p, why) in s.incomplete {
            if !self.incomplete.iter().any(|(q, _)| *q == p) {
                self.incomplete.push((p, why));
            }
        }
        self.interrupted |= s.interrupted;
        if several {
            self.hosts.push((host.to_string(), s.counts));
        }
    }
}

/// One full pass: scan, wait for files to settle, upload every complete
/// file, then return (or return early when `stop` is cancelled). Each host
/// makes its pass at the same time; one that fails (its key rejected, its
/// account full) does not stop the others, and its error is returned once
/// they are done.
pub async fn scan_once(config: Config, stop: CancellationToken) -> Result<ScanSummary, RunError> {
    let (_lock, hosts) = prepare(config).await?;
    let several = hosts.len() > 1;
    let passes = hosts.into_iter().map(|(ctx, mut scanner)| {
        let stop = stop.clone();
        async move {
            let name = ctx.name().to_string();
            (name, scan_host(ctx, &mut scanner, stop).await)
        }
    });
    let results = futures_util::future::join_all(passes).await;
    let mut total = ScanSummary::default();
    let mut first_error = None;
    for (name, r) in results {
        match r {
            Ok(s) => {
                total.add(&name, s, several);
            }
            Err(e) => {
                tracing::error!(host = %name, error = %e, "scan failed for this host");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// One host's part of `scan`.
async fn scan_host(
    ctx: Arc<Context>,
    scanner: &mut Scanner,
    stop: CancellationToken,
) -> Result<ScanSummary, RunError> {
    ctx.renames.set_hold(false);
    let tasks = CancellationToken::new();
    let mut set = JoinSet::new();
    for n in 0..ctx.config.upload.concurrency.get() {
        set.spawn(crate::upload::worker(ctx.clone(), n, tasks.clone()));
    }
    set.spawn(crate::progress::task(vec![ctx.clone()], tasks.clone()));
    let tick = crate::scan::scanner::scan_tick(&ctx);
    // One walk of each root; then only the files settling are looked at
    // again (a large library is not walked on every tick until the last
    // upload is done).
    scanner.scan_all(&ctx).await;
    crate::fixup::fix_up_all(&ctx).await;
    loop {
        scanner.pass(&ctx, &stop).await;
        if ctx.renames.any() {
            // A directory renamed during the pass: its folder is renamed
            // (or given up) now, and the files below are applied by the
            // next pass, before `scan` may end.
            let before = ctx.renames.count();
            crate::fixup::fix_up_all(&ctx).await;
            if ctx.renames.count() < before {
                continue;
            }
        }
        let counts = ctx.store.counts()?;
        let busy: u64 = counts
            .iter()
            .filter(|(s, _)| matches!(s, State::Waiting | State::Queued | State::Uploading))
            .map(|(_, n)| *n)
            .sum();
        // Files held back as incomplete wait for their writer, not for
        // this scan: it ends without them (and says so).
        let held = ctx.store.held_incomplete()?.len() as u64;
        if busy <= held {
            break;
        }
        if ctx.host.account.over_quota() {
            // Ask the account once more; if it is still full, waiting
            // would never end a `scan`: say so and stop.
            let _ = ctx.host.check_key().await;
            if ctx.host.account.over_quota() {
                tasks.cancel();
                while set.join_next().await.is_some() {}
                requeue_cut_uploads(&ctx)?;
                return Err(RunError::Setup(format!(
                    "the account is over its storage quota: {busy} file(s) wait; free space on the host, then run scan again"
                )));
            }
        }
        if !ctx.host.account.key_ok() {
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
    requeue_cut_uploads(&ctx)?;
    let interrupted = stop.is_cancelled();
    if !interrupted {
        crate::fixup::fix_up_all(&ctx).await;
        match crate::reconcile::pass(&ctx, false, false).await {
            Ok(r) => tracing::info!("reconcile: {}", r.summary()),
            Err(e) => tracing::warn!(error = %e, "reconcile failed"),
        }
    }
    let failed = ctx
        .store
        .list(Some(State::Failed))?
        .into_iter()
        .map(|r| (r.path(), r.last_error.unwrap_or_default()))
        .collect();
    let incomplete = ctx
        .store
        .held_incomplete()?
        .into_iter()
        .map(|r| (r.path(), r.incomplete.unwrap_or_default()))
        .collect();
    Ok(ScanSummary {
        counts: ctx.store.counts()?,
        failed,
        incomplete,
        interrupted,
        hosts: Vec::new(),
    })
}

/// `vidsync reconcile`: one pass now (audit included), its report.
pub async fn reconcile_once(
    config: Config,
    force: bool,
) -> Result<Vec<(String, crate::reconcile::Report)>, RunError> {
    let mut reports = Vec::new();
    for (ctx, _hints) in Context::library(config)? {
        initial_key_check(&ctx).await?;
        let report = crate::reconcile::pass(&ctx, force, true)
            .await
            .map_err(|e| RunError::Setup(format!("{}: {e}", ctx.name())))?;
        if let Err(e) = crate::reconcile::poll_encodings(&ctx).await {
            tracing::warn!(host = ctx.name(), error = %e, "encoding poll failed");
        }
        reports.push((ctx.name().to_string(), report));
    }
    Ok(reports)
}
