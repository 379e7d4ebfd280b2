//! The progress task: upload progress into the store once a second (for
//! `status`), the systemd STATUS= line and WATCHDOG pings while the main
//! loop is alive.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::context::Context;

/// Writes upload progress to the store once a second (a bounded rate, so
/// `status` can show it without slowing uploads).
pub async fn task(ctxs: Vec<Arc<Context>>, stop: CancellationToken) {
    let Some(first) = ctxs.first().cloned() else {
        return;
    };
    let mut t = tokio::time::interval(Duration::from_secs(1));
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // The systemd STATUS= line: every 3 s, sent only when it changed; the
    // files are counted again only when the store changed (counting a
    // large library is the idle daemon's largest cost), and at least once
    // a minute (`vidsync retry` writes from another process).
    let mut n: u32 = 0;
    let mut last_status = String::new();
    let mut counted_at: Option<(u64, bool)> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = t.tick() => {
                for ctx in &ctxs {
                    ctx.progress.flush(&ctx.store, now_ms());
                }
            }
        }
        // WATCHDOG=1 every second while the scanner loop is alive. A scan
        // pass may legitimately wait on the host (paced calls, timeouts), so
        // the loop counts as hung only after `context::HUNG_AFTER` without a beat;
        // then the pings stop and systemd (WatchdogSec=) restarts us.
        // The hosts share one heartbeat.
        if first.heartbeat.alive() {
            crate::sdnotify::watchdog();
        }
        let key_ok = ctxs.iter().all(|c| c.host.account.key_ok());
        let now_seen = (first.store.changes(), key_ok);
        let stale = counted_at != Some(now_seen) || n.is_multiple_of(60);
        if n.is_multiple_of(3)
            && stale
            && let Some(counts) = summed_counts(&ctxs)
        {
            counted_at = Some(now_seen);
            let line = crate::sdnotify::status_line(&counts, key_ok);
            if line != last_status {
                crate::sdnotify::status(&line);
                last_status = line;
            }
        }
        n = n.wrapping_add(1);
    }
}

/// Files per state over every host (a file going to two hosts counts
/// twice), for the one STATUS= line systemd shows.
fn summed_counts(ctxs: &[Arc<Context>]) -> Option<Vec<(crate::store::State, u64)>> {
    let mut total = Vec::new();
    for ctx in ctxs {
        crate::store::add_counts(&mut total, &ctx.store.counts().ok()?);
    }
    Some(total)
}
