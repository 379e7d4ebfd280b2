//! The progress task: upload progress into the store once a second (for
//! `status`), the systemd STATUS= line and WATCHDOG pings while the main
//! loop is alive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::context::Context;

/// Writes upload progress to the store once a second while uploads are in
/// flight (a bounded rate, so `status` can show it without slowing
/// uploads); sends WATCHDOG=1 on every round (at most `IDLE_ROUND` apart,
/// well inside the unit's `WatchdogSec=60s`) and the STATUS= line when it
/// changed.
pub async fn task(ctxs: Vec<Arc<Context>>, stop: CancellationToken) {
    let Some(first) = ctxs.first().cloned() else {
        return;
    };
    // The files are counted again only when the store changed (counting a
    // large library is the idle daemon's largest cost), at most every
    // 3 s. A `vidsync retry` from another process shows once a worker
    // claims the file.
    let mut last_status = String::new();
    let mut counted_at: Option<(u64, bool)> = None;
    let mut status_checked = Instant::now() - STATUS_EVERY;
    loop {
        let busy = ctxs.iter().any(|c| c.progress.busy());
        let round = if busy { BUSY_ROUND } else { IDLE_ROUND };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(round) => {}
            // An upload began: sample it from its first second.
            _ = first.progress.started(), if !busy => {}
        }
        for ctx in &ctxs {
            ctx.progress.flush(&ctx.store, now_ms());
        }
        // WATCHDOG=1 while the scanner loop is alive. A scan pass may
        // legitimately wait on the host (paced calls, timeouts), so the
        // loop counts as hung only after `context::HUNG_AFTER` without a
        // beat; then the pings stop and systemd (WatchdogSec=) restarts us.
        // The hosts share one heartbeat.
        if first.heartbeat.alive() {
            crate::sdnotify::watchdog();
        }
        let key_ok = ctxs.iter().all(|c| c.host.account.key_ok());
        let seen = (first.store.changes(), key_ok);
        if counted_at != Some(seen)
            && status_checked.elapsed() >= STATUS_EVERY
            && let Some(counts) = summed_counts(&ctxs)
        {
            counted_at = Some(seen);
            status_checked = Instant::now();
            let line = crate::sdnotify::status_line(&counts, key_ok);
            if line != last_status {
                crate::sdnotify::status(&line);
                last_status = line;
            }
        }
    }
}

/// A round while uploads are in flight: progress once a second.
const BUSY_ROUND: Duration = Duration::from_secs(1);
/// A round while none is: the watchdog and the STATUS= line only.
const IDLE_ROUND: Duration = Duration::from_secs(5);
/// The STATUS= line is looked at no more often than this.
const STATUS_EVERY: Duration = Duration::from_secs(3);

/// Files per state over every host (a file going to two hosts counts
/// twice), for the one STATUS= line systemd shows.
fn summed_counts(ctxs: &[Arc<Context>]) -> Option<Vec<(crate::store::State, u64)>> {
    let mut total = Vec::new();
    for ctx in ctxs {
        crate::store::add_counts(&mut total, &ctx.store.counts().ok()?);
    }
    Some(total)
}
