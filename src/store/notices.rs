//! Notifications waiting to be told: events as they happen (`notice`), their
//! fan-out to the configured targets (`fan_out`), and each target's sends
//! (due, sent, failed, given up) with the target's health for `status`.
//!
//! Emitting is one small insert that never fails the caller's work (errors
//! are only logged), and deduplicates: at most one notice per event kind and
//! file (its code, or its path when it has none), one per account-wide
//! condition a day, and the key's two events alternate. Delivery is the
//! `notify` task's; the queue survives restarts like everything else here.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Result, Store};

/// What happened. The strings are on disk and in the webhook payload:
/// never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Dmca,
    RemoteDeleted,
    Failed,
    KeyRejected,
    KeyOkAgain,
    OverQuota,
    DailyLimit,
    MassDeleteHeld,
    /// A file held back as incomplete past `[watch] incomplete_timeout`.
    Incomplete,
    UploadDone,
    DailySummary,
    /// `vidsync notify-test`; never configured, never queued.
    #[serde(skip_deserializing)]
    Test,
}

impl EventKind {
    /// Every kind a `[[notify]] events` list may name.
    pub const CONFIGURABLE: &[EventKind] = &[
        EventKind::Dmca,
        EventKind::RemoteDeleted,
        EventKind::Failed,
        EventKind::KeyRejected,
        EventKind::KeyOkAgain,
        EventKind::OverQuota,
        EventKind::DailyLimit,
        EventKind::MassDeleteHeld,
        EventKind::Incomplete,
        EventKind::UploadDone,
        EventKind::DailySummary,
    ];

    /// The events a target gets when it names none: the ones that need
    /// the owner (not `upload_done`, not `daily_summary`).
    pub const DEFAULT: &[EventKind] = &[
        EventKind::Dmca,
        EventKind::RemoteDeleted,
        EventKind::Failed,
        EventKind::KeyRejected,
        EventKind::KeyOkAgain,
        EventKind::OverQuota,
        EventKind::DailyLimit,
        EventKind::MassDeleteHeld,
        EventKind::Incomplete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Dmca => "dmca",
            EventKind::RemoteDeleted => "remote_deleted",
            EventKind::Failed => "failed",
            EventKind::KeyRejected => "key_rejected",
            EventKind::KeyOkAgain => "key_ok_again",
            EventKind::OverQuota => "over_quota",
            EventKind::DailyLimit => "daily_limit",
            EventKind::MassDeleteHeld => "mass_delete_held",
            EventKind::Incomplete => "incomplete",
            EventKind::UploadDone => "upload_done",
            EventKind::DailySummary => "daily_summary",
            EventKind::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::CONFIGURABLE
            .iter()
            .chain([&EventKind::Test])
            .copied()
            .find(|k| k.as_str() == s)
    }

    /// About one file (deduplicated per file), or about the account.
    fn per_file(self) -> bool {
        matches!(
            self,
            EventKind::Dmca
                | EventKind::RemoteDeleted
                | EventKind::Failed
                | EventKind::Incomplete
                | EventKind::UploadDone
        )
    }
}

/// One event to tell. Build it with [`Notice::file`] or [`Notice::account`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: EventKind,
    /// The local file it concerns.
    pub path: Option<String>,
    /// Its code on the host.
    pub code: Option<String>,
    /// The host's or vidsync's words: an error, a reason, a summary.
    pub detail: Option<String>,
    /// Which content of the file it is about (size and mtime), for files
    /// with no code: the same kind is told again for new content (a file
    /// that fails again after `retry` and a change, a new download held at
    /// the same path), never twice for the same.
    pub version: Option<String>,
}

impl Notice {
    pub fn file(
        kind: EventKind,
        path: impl Into<String>,
        code: Option<&str>,
        detail: Option<&str>,
    ) -> Notice {
        Notice {
            kind,
            path: Some(path.into()),
            code: code.map(str::to_string),
            detail: detail.map(str::to_string),
            version: None,
        }
    }

    pub fn account(kind: EventKind, detail: impl Into<String>) -> Notice {
        Notice {
            kind,
            path: None,
            code: None,
            detail: Some(detail.into()),
            version: None,
        }
    }
}

/// A queued notice as a target's send sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedNotice {
    pub id: i64,
    pub kind: EventKind,
    /// The host it happened on; None for the library's (the summary).
    pub host: Option<String>,
    pub path: Option<String>,
    pub code: Option<String>,
    pub detail: Option<String>,
    pub at: i64,
    /// Failed tries of this send so far.
    pub tries: u32,
}

/// A target's health, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetHealth {
    pub target: String,
    pub label: String,
    pub last_ok_at: Option<i64>,
    /// Since when every send failed (None: the last one went through).
    pub failing_since: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// Messages given up on (too many tries, or too old).
    pub gave_up: i64,
    /// Sends still to go.
    pub pending: i64,
}

/// Account-wide conditions are told at most once in this long (a full
/// account is rechecked every few minutes; the owner needs one message).
const ACCOUNT_QUIET_MS: i64 = 24 * 3600 * 1000;

impl Store {
    /// Queue an event. False when it was told already (this kind for this
    /// file, or this condition recently). Errors are logged, never
    /// returned: telling is never a reason for sync work to fail.
    pub fn notice(&self, n: &Notice, now: i64) -> bool {
        match self.try_notice(n, now) {
            Ok(queued) => queued,
            Err(e) => {
                tracing::debug!(error = %e, kind = n.kind.as_str(), "cannot queue a notification");
                false
            }
        }
    }

    fn try_notice(&self, n: &Notice, now: i64) -> Result<bool> {
        let kind = n.kind.as_str();
        self.tx("queuing a notification", |tx| {
            let subject: Option<String> = if n.kind.per_file() {
                n.code.clone().or_else(|| {
                    n.path
                        .as_ref()
                        .map(|p| format!("{p}#{}", n.version.as_deref().unwrap_or("")))
                })
            } else {
                None
            };
            if !n.kind.per_file() {
                let pair = [
                    EventKind::KeyRejected.as_str(),
                    EventKind::KeyOkAgain.as_str(),
                ];
                let told = if pair.contains(&kind) {
                    // The key's events alternate: a rejection is told once
                    // until the key works again, and "works again" only
                    // after a rejection (not at every start).
                    let last: Option<String> = tx
                        .query_row(
                            "SELECT kind FROM notices WHERE kind IN (?1, ?2) AND host IS ?3
                             ORDER BY id DESC LIMIT 1",
                            params![pair[0], pair[1], self.host()],
                            |r| r.get(0),
                        )
                        .optional()?;
                    match last {
                        Some(last) => last == kind,
                        None => n.kind == EventKind::KeyOkAgain,
                    }
                } else {
                    tx.query_row(
                        "SELECT EXISTS(SELECT 1 FROM notices
                           WHERE kind = ?1 AND target IS NULL AND at > ?2 AND host IS ?3)",
                        params![kind, now - ACCOUNT_QUIET_MS, self.host()],
                        |r| r.get(0),
                    )?
                };
                if told {
                    return Ok(false);
                }
            }
            let added = tx.execute(
                "INSERT OR IGNORE INTO notices (kind, subject, path, code, detail, at, host)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![kind, subject, n.path, n.code, n.detail, now, self.host()],
            )?;
            Ok(added == 1)
        })
    }

    /// Queue an event about a tracked file, named by its path (see `notice`).
    pub fn notice_file(
        &self,
        kind: EventKind,
        id: i64,
        code: Option<&str>,
        detail: Option<&str>,
        now: i64,
    ) -> bool {
        let row = self.file(id).ok().flatten();
        let path = row
            .as_ref()
            .map_or_else(|| format!("file #{id}"), |r| r.path().display().to_string());
        let mut n = Notice::file(kind, path, code, detail);
        n.version = row.map(|r| format!("{}:{}", r.stat.size, r.stat.mtime_ns));
        self.notice(&n, now)
    }

    /// Queue a notice for one target only, once per `subject` (the daily
    /// summary: one per target and day). False if already queued.
    pub fn notice_to(&self, target: &str, subject: &str, n: &Notice, now: i64) -> Result<bool> {
        self.tx("queuing a notification", |tx| {
            let added = tx.execute(
                "INSERT OR IGNORE INTO notices (kind, subject, path, code, detail, at, target)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    n.kind.as_str(),
                    subject,
                    n.path,
                    n.code,
                    n.detail,
                    now,
                    target
                ],
            )?;
            Ok(added == 1)
        })
    }

    /// Give every new notice to the targets that want it: `route` names
    /// them (by target key) for a kind. Addressed notices go to their
    /// target only, if it is still configured. Returns how many sends.
    pub fn fan_out(
        &self,
        route: impl Fn(EventKind) -> Vec<String>,
        configured: &[String],
        now: i64,
    ) -> Result<usize> {
        self.tx("fanning out notifications", |tx| {
            let fresh: Vec<(i64, String, Option<String>)> = {
                let mut st = tx.prepare(
                    "SELECT id, kind, target FROM notices WHERE fanned = 0 ORDER BY id",
                )?;
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let mut sends = 0;
            for (id, kind, target) in fresh {
                let targets = match (target, EventKind::parse(&kind)) {
                    (Some(t), _) => configured.iter().filter(|c| **c == t).cloned().collect(),
                    (None, Some(k)) => route(k),
                    // A kind a newer vidsync wrote: nobody here can tell it.
                    (None, None) => Vec::new(),
                };
                for t in targets {
                    sends += tx.execute(
                        "INSERT OR IGNORE INTO notice_sends (notice_id, target, next_at) VALUES (?1, ?2, ?3)",
                        params![id, t, now],
                    )?;
                }
                tx.execute("UPDATE notices SET fanned = 1 WHERE id = ?1", params![id])?;
            }
            Ok(sends)
        })
    }

    /// Sends of configured targets only: a target removed from the config
    /// takes its pending sends and its health record with it.
    pub fn forget_targets_except(&self, keep: &[String]) -> Result<()> {
        self.tx("forgetting notification targets", |tx| {
            let known: Vec<String> = {
                let mut st = tx.prepare(
                    "SELECT DISTINCT target FROM notice_sends UNION SELECT target FROM notify_targets",
                )?;
                st.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            for t in known.iter().filter(|t| !keep.contains(t)) {
                tx.execute("DELETE FROM notice_sends WHERE target = ?1", params![t])?;
                tx.execute("DELETE FROM notify_targets WHERE target = ?1", params![t])?;
            }
            Ok(())
        })
    }

    /// A target's sends that are due (oldest first): not done, retry time
    /// reached, and the notice older than `settled_before` (so that a burst
    /// has arrived whole before it is told).
    pub fn due_sends(
        &self,
        target: &str,
        now: i64,
        settled_before: i64,
        limit: usize,
    ) -> Result<Vec<QueuedNotice>> {
        let conn = self.conn();
        let mut st = conn
            .prepare(
                "SELECT n.id, n.kind, n.path, n.code, n.detail, n.at, s.tries, n.host
                 FROM notice_sends s JOIN notices n ON n.id = s.notice_id
                 WHERE s.target = ?1 AND s.done_at IS NULL AND s.next_at <= ?2 AND n.at <= ?3
                 ORDER BY n.id LIMIT ?4",
            )
            .map_err(self.err("reading notifications"))?;
        let rows = st
            .query_map(params![target, now, settled_before, limit as i64], |r| {
                let kind: String = r.get(1)?;
                Ok((
                    kind,
                    QueuedNotice {
                        id: r.get(0)?,
                        kind: EventKind::Test,
                        host: r.get(7)?,
                        path: r.get(2)?,
                        code: r.get(3)?,
                        detail: r.get(4)?,
                        at: r.get(5)?,
                        tries: r.get(6)?,
                    },
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err("reading notifications"))?;
        Ok(rows
            .into_iter()
            .filter_map(|(kind, mut q)| {
                q.kind = EventKind::parse(&kind)?;
                Some(q)
            })
            .collect())
    }

    /// The sends went through.
    pub fn sends_done(&self, target: &str, label: &str, ids: &[i64], now: i64) -> Result<()> {
        self.tx("recording notifications sent", |tx| {
            for id in ids {
                tx.execute(
                    "UPDATE notice_sends SET done_at = ?3 WHERE target = ?1 AND notice_id = ?2",
                    params![target, id, now],
                )?;
            }
            upsert_target(tx, target, label)?;
            tx.execute(
                "UPDATE notify_targets SET last_ok_at = ?2, failing_since = NULL WHERE target = ?1",
                params![target, now],
            )?;
            Ok(())
        })
    }

    /// The sends failed: try again at `next_at`, or (`give_up`) never.
    pub fn sends_failed(
        &self,
        target: &str,
        label: &str,
        ids: &[i64],
        error: &str,
        next_at: Option<i64>,
        now: i64,
    ) -> Result<()> {
        self.tx("recording a failed notification", |tx| {
            for id in ids {
                match next_at {
                    Some(at) => tx.execute(
                        "UPDATE notice_sends SET tries = tries + 1, next_at = ?3 WHERE target = ?1 AND notice_id = ?2",
                        params![target, id, at],
                    )?,
                    None => tx.execute(
                        "UPDATE notice_sends SET tries = tries + 1, done_at = ?3, gave_up = 1 WHERE target = ?1 AND notice_id = ?2",
                        params![target, id, now],
                    )?,
                };
            }
            upsert_target(tx, target, label)?;
            tx.execute(
                "UPDATE notify_targets SET failing_since = COALESCE(failing_since, ?2),
                     last_error = ?3, last_error_at = ?2,
                     gave_up = gave_up + ?4 WHERE target = ?1",
                params![
                    target,
                    now,
                    error,
                    if next_at.is_none() { ids.len() as i64 } else { 0 }
                ],
            )?;
            Ok(())
        })
    }

    /// Every target's health, with its pending sends.
    pub fn notify_health(&self) -> Result<Vec<TargetHealth>> {
        let conn = self.conn();
        let mut st = conn
            .prepare(
                "SELECT t.target, t.label, t.last_ok_at, t.failing_since, t.last_error, t.last_error_at, t.gave_up,
                   (SELECT COUNT(*) FROM notice_sends s WHERE s.target = t.target AND s.done_at IS NULL)
                 FROM notify_targets t ORDER BY t.label",
            )
            .map_err(self.err("reading notification targets"))?;
        st.query_map([], |r| {
            Ok(TargetHealth {
                target: r.get(0)?,
                label: r.get(1)?,
                last_ok_at: r.get(2)?,
                failing_since: r.get(3)?,
                last_error: r.get(4)?,
                last_error_at: r.get(5)?,
                gave_up: r.get(6)?,
                pending: r.get(7)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err("reading notification targets"))
    }

    /// Make sure a target has a health row (so `status` lists it before
    /// its first message).
    pub fn register_target(&self, target: &str, label: &str) -> Result<()> {
        self.tx("registering a notification target", |tx| {
            upsert_target(tx, target, label)
        })
    }

    /// How many notices of each kind were queued since `since` (for the
    /// daily summary: they are kept whether or not a target wanted them).
    pub fn notice_counts_since(&self, since: i64) -> Result<Vec<(EventKind, i64)>> {
        let conn = self.conn();
        let mut st = conn
            .prepare(
                "SELECT kind, COUNT(*) FROM notices WHERE at >= ?1 AND target IS NULL GROUP BY kind ORDER BY kind",
            )
            .map_err(self.err("counting notifications"))?;
        let rows = st
            .query_map(params![since], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err("counting notifications"))?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, n)| Some((EventKind::parse(&k)?, n)))
            .collect())
    }

    /// Finished sends older than `before` are dropped (the notices stay:
    /// they remember what was told, so it is not told twice).
    pub fn prune_sends(&self, before: i64) -> Result<usize> {
        self.tx("pruning notifications", |tx| {
            tx.execute(
                "DELETE FROM notice_sends WHERE done_at IS NOT NULL AND done_at < ?1",
                params![before],
            )
        })
    }
}

fn upsert_target(
    tx: &rusqlite::Transaction<'_>,
    target: &str,
    label: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO notify_targets (target, label) VALUES (?1, ?2)
         ON CONFLICT(target) DO UPDATE SET label = excluded.label",
        params![target, label],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::open;
    use super::*;

    fn dmca(code: &str) -> Notice {
        Notice::file(EventKind::Dmca, format!("/m/{code}.mp4"), Some(code), None)
    }

    #[test]
    fn a_file_is_told_once_per_kind() {
        let (_d, s) = open();
        assert!(s.notice(&dmca("a"), 1));
        assert!(!s.notice(&dmca("a"), 2), "same kind, same file");
        assert!(s.notice(&dmca("b"), 3));
        let failed = Notice::file(EventKind::Failed, "/m/a.mp4", None, Some("HTTP 500"));
        assert!(s.notice(&failed, 4), "another kind of the same file");
        assert!(!s.notice(&failed, 5));
    }

    #[test]
    fn account_conditions_are_told_once_a_day_and_the_key_alternates() {
        let (_d, s) = open();
        let quota = Notice::account(EventKind::OverQuota, "full");
        assert!(s.notice(&quota, 0));
        assert!(!s.notice(&quota, 3_600_000));
        assert!(s.notice(&quota, ACCOUNT_QUIET_MS + 1));

        let ok = Notice::account(EventKind::KeyOkAgain, "ok");
        let bad = Notice::account(EventKind::KeyRejected, "bad");
        assert!(!s.notice(&ok, 1), "works again, but never failed");
        assert!(s.notice(&bad, 2));
        assert!(!s.notice(&bad, 3), "still rejected: told already");
        assert!(s.notice(&ok, 4));
        assert!(!s.notice(&ok, 5));
        assert!(s.notice(&bad, 6), "rejected again after it worked");
    }

    #[test]
    fn each_host_tells_its_own_failures_and_key_rejections_and_names_itself() {
        let (_d, s) = open();
        let b = s.for_host("b");
        // The same file failing on two hosts: two things to tell.
        let failed = Notice::file(EventKind::Failed, "/m/a.mp4", None, Some("HTTP 500"));
        assert!(s.notice(&failed, 1));
        assert!(b.notice(&failed, 2), "the same file failed on b too");
        assert!(!b.notice(&failed, 3), "once per host");
        let bad = Notice::account(EventKind::KeyRejected, "bad");
        assert!(s.notice(&bad, 4));
        assert!(b.notice(&bad, 5), "b's key is rejected too");
        let quota = Notice::account(EventKind::OverQuota, "full");
        assert!(s.notice(&quota, 6));
        assert!(b.notice(&quota, 7), "b is full too");
        let t = vec!["t".to_string()];
        s.fan_out(|_| t.clone(), &t, 10).unwrap();
        let hosts: Vec<Option<String>> = s
            .due_sends("t", 10, 10, 10)
            .unwrap()
            .into_iter()
            .map(|n| n.host)
            .collect();
        let (a, b) = (Some(s.host().to_string()), Some("b".to_string()));
        assert_eq!(
            hosts,
            vec![a.clone(), b.clone(), a.clone(), b.clone(), a, b]
        );
    }

    #[test]
    fn sends_fan_out_retry_and_give_up_with_the_targets_health() {
        let (_d, s) = open();
        s.notice(&dmca("a"), 10);
        s.notice(
            &Notice::file(EventKind::UploadDone, "/m/u.mp4", Some("u"), None),
            11,
        );
        let t = vec!["t1".to_string()];
        let n = s
            .fan_out(
                |k| {
                    if k == EventKind::Dmca {
                        t.clone()
                    } else {
                        Vec::new()
                    }
                },
                &t,
                20,
            )
            .unwrap();
        assert_eq!(n, 1, "only the kind the target wants");
        assert_eq!(s.fan_out(|_| t.clone(), &t, 21).unwrap(), 0, "fanned once");
        assert!(
            s.due_sends("t1", 20, 5, 10).unwrap().is_empty(),
            "not settled yet"
        );
        let due = s.due_sends("t1", 20, 10, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].kind, due[0].tries), (EventKind::Dmca, 0));

        s.sends_failed("t1", "webhook x", &[due[0].id], "HTTP 502", Some(100), 30)
            .unwrap();
        assert!(s.due_sends("t1", 99, 99, 10).unwrap().is_empty(), "waits");
        let again = s.due_sends("t1", 100, 100, 10).unwrap();
        assert_eq!(again[0].tries, 1);
        let h = &s.notify_health().unwrap()[0];
        assert_eq!((h.failing_since, h.pending, h.gave_up), (Some(30), 1, 0));
        assert_eq!(h.last_error.as_deref(), Some("HTTP 502"));

        s.sends_failed("t1", "webhook x", &[due[0].id], "HTTP 502", None, 40)
            .unwrap();
        assert!(
            s.due_sends("t1", 1000, 1000, 10).unwrap().is_empty(),
            "given up"
        );
        let h = &s.notify_health().unwrap()[0];
        assert_eq!((h.pending, h.gave_up), (0, 1));

        s.notice(&dmca("b"), 50);
        s.fan_out(|_| t.clone(), &t, 50).unwrap();
        let due = s.due_sends("t1", 60, 60, 10).unwrap();
        s.sends_done("t1", "webhook x", &[due[0].id], 61).unwrap();
        let h = &s.notify_health().unwrap()[0];
        assert_eq!((h.last_ok_at, h.failing_since), (Some(61), None));

        s.forget_targets_except(&[]).unwrap();
        assert!(s.notify_health().unwrap().is_empty());
    }

    #[test]
    fn an_addressed_notice_goes_to_its_target_once() {
        let (_d, s) = open();
        let n = Notice::account(EventKind::DailySummary, "all quiet");
        assert!(s.notice_to("t2", "2024-01-02", &n, 1).unwrap());
        assert!(!s.notice_to("t2", "2024-01-02", &n, 2).unwrap());
        let all = vec!["t1".to_string(), "t2".to_string()];
        assert_eq!(s.fan_out(|_| all.clone(), &all, 3).unwrap(), 1);
        assert_eq!(s.due_sends("t2", 3, 3, 10).unwrap().len(), 1);
        assert!(s.due_sends("t1", 3, 3, 10).unwrap().is_empty());
    }

    // Regression: a file's notice with no code was deduplicated by its path
    // for ever: a new download held at the same path was never told.
    #[test]
    fn a_file_with_no_code_is_told_again_for_new_content_only() {
        let (_d, s) = open();
        let mut n = Notice::file(EventKind::Incomplete, "/m/a.mkv", None, Some("hole"));
        n.version = Some("10:1".into());
        assert!(s.notice(&n, 1));
        assert!(!s.notice(&n, 2), "the same content twice");
        n.version = Some("20:2".into());
        assert!(s.notice(&n, 3), "new content at the same path");
    }
}
