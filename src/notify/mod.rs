//! The notification task: tells the owner what happened (DMCA takedowns,
//! deletions on the host, failed uploads, the key, the quota, ...) on the
//! `[[notify]]` targets, without ever holding up sync work.
//!
//! Events are queued in the store where they happen (`Store::notice`, one
//! call); this task fans them out to the targets that want them and runs
//! one loop per target that sends what is due: a burst of one kind as one
//! message (after `group_wait`), at most one message per `min_interval`,
//! failures retried with backoff and given up after `MAX_TRIES` tries or
//! `MAX_AGE` (said once in the log; `status` shows the target failing).
//! `test_targets` is `vidsync notify-test`.

pub mod message;
pub mod send;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::{Config, NotifyTarget, TimeOfDay};
use crate::context::Context;
use crate::store::{EventKind, Notice, State, Store};

pub use message::Message;

/// A message that failed this many times is given up.
pub const MAX_TRIES: u32 = 10;
/// A message older than this is given up (news of yesterday's takedown is
/// still news; of last week's, it is noise after an outage).
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The longest wait between two tries.
const RETRY_MAX: Duration = Duration::from_secs(3600);
/// How often the queue is looked at.
const TICK: Duration = Duration::from_millis(500);

/// The fan-out round when no target is configured.
const IDLE_TICK: Duration = Duration::from_secs(30);
/// Notices one message may carry.
const BATCH: usize = 500;

/// The task: until `stop`.
pub async fn task(ctx: Arc<Context>, stop: CancellationToken) {
    let targets = &ctx.config.notify;
    let keys: Vec<String> = targets.iter().map(NotifyTarget::key).collect();
    if let Err(e) = ctx.store.forget_targets_except(&keys) {
        tracing::warn!(error = %e, "notify: cannot tidy the queue");
    }
    if targets.is_empty() {
        // Notices still queue (a target added later gets nothing old:
        // they are fanned out to nobody below).
        return fan_out_loop(&ctx, &stop).await;
    }
    let http = match send::http_client() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "notify: no notifications will be sent");
            return;
        }
    };
    let mut set = JoinSet::new();
    for t in targets {
        let _ = ctx.store.register_target(&t.key(), &t.label());
        set.spawn(target_loop(
            ctx.store.clone(),
            http.clone(),
            t.clone(),
            stop.clone(),
        ));
    }
    fan_out_loop(&ctx, &stop).await;
    while set.join_next().await.is_some() {}
}

/// The subject of a target's daily summary: one per target and day (a
/// subject of the day alone let only the first target have one).
fn summary_subject(target: &str, day: &str) -> String {
    format!("{target}:{day}")
}

/// Hands new notices to the targets that want them, queues the daily
/// summaries, and prunes old sends.
async fn fan_out_loop(ctx: &Context, stop: &CancellationToken) {
    let targets = &ctx.config.notify;
    let keys: Vec<String> = targets.iter().map(NotifyTarget::key).collect();
    // With no target, fanning out only marks notices told (so a target
    // added later gets nothing old): no hurry, and an idle daemon should
    // sleep.
    let mut t = tokio::time::interval(if targets.is_empty() { IDLE_TICK } else { TICK });
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut pruned_at = 0;
    let mut fanned_at: Option<u64> = None;
    let mut summarized: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = t.tick() => {}
        }
        let now = now_ms();
        for target in targets.iter().filter(|t| t.wants(EventKind::DailySummary)) {
            if let Some(day) = summary_due(now, target.summary_at) {
                // One summary per target and day (the subject names both);
                // built once, not on every tick for the rest of the day.
                let subject = summary_subject(&target.key(), &day);
                if summarized.contains(&subject) {
                    continue;
                }
                let text = summary(&ctx.store, now);
                let n = Notice::account(EventKind::DailySummary, text);
                match ctx.store.notice_to(&target.key(), &subject, &n, now) {
                    Ok(_) => {
                        summarized.insert(subject);
                    }
                    Err(e) => tracing::debug!(error = %e, "notify: cannot queue the daily summary"),
                }
            }
        }
        let route = |kind: EventKind| {
            targets
                .iter()
                .filter(|t| t.wants(kind))
                .map(NotifyTarget::key)
                .collect()
        };
        // Notices come with a change to the store: with none since the last
        // round there is nothing to fan out (an idle daemon must not open a
        // transaction twice a second). Another process's notices (none
        // today) would wait for the next change.
        let changes = ctx.store.changes();
        if fanned_at != Some(changes) {
            match ctx.store.fan_out(route, &keys, now) {
                Ok(_) => fanned_at = Some(changes),
                Err(e) => tracing::debug!(error = %e, "notify: cannot fan out notices"),
            }
        }
        if now - pruned_at > 3_600_000 {
            pruned_at = now;
            let _ = ctx.store.prune_sends(now - 7 * 24 * 3_600_000);
        }
    }
}

/// One target's sends, one message at a time.
async fn target_loop(
    store: Arc<Store>,
    http: reqwest::Client,
    target: NotifyTarget,
    stop: CancellationToken,
) {
    let key = target.key();
    let label = target.label();
    let mut ready_at = 0i64;
    let mut failures = 0u32;
    let mut t = tokio::time::interval(TICK);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = t.tick() => {}
        }
        let now = now_ms();
        if now < ready_at {
            continue;
        }
        let settled = now - target.group_wait.as_millis() as i64;
        let due = match store.due_sends(&key, now, settled, BATCH) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, target = %label, "notify: cannot read the queue");
                continue;
            }
        };
        let Some(msg) = Message::group(&due) else {
            continue;
        };
        let ids: Vec<i64> = msg.items.iter().map(|n| n.id).collect();
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = send::deliver(&http, &target, &msg) => r,
        };
        let now = now_ms();
        match result {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(target = %label, "notify: the target takes messages again");
                }
                failures = 0;
                tracing::debug!(target = %label, event = msg.kind.as_str(), count = ids.len(), "notify: sent");
                let _ = store.sends_done(&key, &label, &ids, now);
                ready_at = now + target.min_interval.as_millis() as i64;
            }
            Err(e) => {
                failures += 1;
                let delay = e.retry_after.unwrap_or_else(|| {
                    crate::engine::backoff(
                        failures,
                        target.min_interval,
                        RETRY_MAX.max(target.min_interval),
                        rand::random::<f64>(),
                    )
                });
                let tries = msg.items.iter().map(|n| n.tries).max().unwrap_or(0) + 1;
                let oldest = msg.items.iter().map(|n| n.at).min().unwrap_or(now);
                let give_up =
                    e.permanent || tries >= MAX_TRIES || now - oldest > MAX_AGE.as_millis() as i64;
                if give_up {
                    tracing::warn!(
                        target = %label, event = msg.kind.as_str(), count = ids.len(), tries,
                        error = %e,
                        "notify: giving up on this message"
                    );
                } else if failures == 1 {
                    tracing::warn!(target = %label, error = %e, "notify: sending failed; retrying with backoff");
                }
                let next = (!give_up).then(|| now + delay.as_millis() as i64);
                let _ = store.sends_failed(&key, &label, &ids, &e.message, next, now);
                ready_at = now + delay.max(target.min_interval).as_millis() as i64;
            }
        }
    }
}

/// `vidsync notify-test`: a test message to every target at once; each
/// target's label and outcome, in the file's order.
pub async fn test_targets(config: &Config) -> Vec<(String, Result<(), String>)> {
    let http = match send::http_client() {
        Ok(h) => h,
        Err(e) => {
            return config
                .notify
                .iter()
                .map(|t| (t.label(), Err(e.clone())))
                .collect();
        }
    };
    let msg = Message::test(now_ms());
    let sends = config.notify.iter().map(|t| {
        let (http, msg) = (&http, &msg);
        async move {
            let r = send::deliver(http, t, msg).await.map_err(|e| e.message);
            (t.label(), r)
        }
    });
    futures_util::future::join_all(sends).await
}

/// The local date ("2024-05-01") if the summary time has passed today.
fn summary_due(now: i64, at: TimeOfDay) -> Option<String> {
    let (date, hour, minute) = local_time(now)?;
    ((hour, minute) >= (at.hour, at.minute)).then_some(date)
}

/// The local date, hour and minute of a unix time in ms (the process's
/// time zone, as `TZ` or /etc/localtime say).
fn local_time(ms: i64) -> Option<(String, u8, u8)> {
    let secs: libc::time_t = (ms / 1000) as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which we own; it is the
    // thread-safe variant.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    ok.then(|| {
        (
            format!(
                "{:04}-{:02}-{:02}",
                tm.tm_year + 1900,
                tm.tm_mon + 1,
                tm.tm_mday
            ),
            tm.tm_hour as u8,
            tm.tm_min as u8,
        )
    })
}

/// The daily summary: what the last day brought, and where things stand.
fn summary(store: &Store, now: i64) -> String {
    let day = store
        .notice_counts_since(now - 24 * 3_600_000)
        .unwrap_or_default();
    let told = |k: EventKind| day.iter().find(|(x, _)| *x == k).map_or(0, |(_, n)| *n);
    let counts = store.counts().unwrap_or_default();
    let now_in = |s: State| counts.iter().find(|(x, _)| *x == s).map_or(0, |(_, n)| *n);
    let mut s = format!(
        "Last 24 h: {} uploaded, {} failed, {} taken down for DMCA, {} deleted on the host.\n\
         Now: {} uploaded in all, {} queued, {} waiting, {} failed",
        told(EventKind::UploadDone),
        told(EventKind::Failed),
        told(EventKind::Dmca),
        told(EventKind::RemoteDeleted),
        now_in(State::Uploaded),
        now_in(State::Queued),
        now_in(State::Waiting),
        now_in(State::Failed),
    );
    if store.key_ok().ok().flatten() == Some(false) {
        s.push_str("; the host REJECTS the API key");
    }
    if let Ok(Some(left)) = store.storage_left() {
        s.push_str(&format!("; storage left: {left}"));
    }
    s.push('.');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_due_once_its_time_has_passed() {
        let now = now_ms();
        let (_, h, m) = local_time(now).unwrap();
        let before = TimeOfDay { hour: 0, minute: 0 };
        assert!(summary_due(now, before).is_some());
        if (h, m) < (23, 59) {
            let later = TimeOfDay {
                hour: 23,
                minute: 59,
            };
            assert!(summary_due(now, later).is_none());
        }
    }

    // Regression: the daily summary's subject was the day alone, so only the
    // first target wanting it was given one.
    #[test]
    fn every_target_gets_its_daily_summary() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("s.db")).unwrap();
        let n = crate::store::Notice::account(EventKind::DailySummary, "all quiet");
        for t in ["t1", "t2"] {
            let subject = summary_subject(t, "2026-12-02");
            assert!(store.notice_to(t, &subject, &n, 1).unwrap(), "{t}");
            assert!(!store.notice_to(t, &subject, &n, 2).unwrap(), "{t} twice");
        }
    }
}
