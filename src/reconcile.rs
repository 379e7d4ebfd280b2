//! Reconcile with the host: deleted and DMCA lists every interval, a full
//! audit with file/info once per audit interval, and encoding progress until
//! each upload is playable. Decisions are `engine::reconcile::plan`; this
//! module fetches, applies and records.

use std::time::Duration;

use crate::api::{ApiError, FileInfo};
use crate::clock::now_ms;
use crate::context::Context;
use crate::context::metrics::PassResult;
use crate::engine::reconcile::{self, Change, Known, Plan};
use crate::store::{EventKind, Notice, OnDeleted, ReconcileRecord, State, StoreError};

/// The host keeps its lists for at most this many hours.
pub const MAX_WINDOW_HOURS: u64 = 720;
/// Extra hours on top of the time since the last good poll: clocks differ,
/// and a list that reaches further back costs nothing.
const WINDOW_MARGIN_HOURS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reconcile: {0}")]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one pass did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub window_hours: u64,
    pub audited: bool,
    pub deleted: Vec<String>,
    pub reupload: Vec<String>,
    pub dmca: Vec<String>,
    pub blocked: bool,
    pub removals: usize,
    pub uploaded: usize,
}

impl Report {
    pub fn summary(&self) -> String {
        if self.blocked {
            format!(
                "NOT APPLIED: the host lists {} of {} uploaded files as deleted or DMCA'd (over the max_delete_fraction guard); run `vidsync reconcile --force` if that is real",
                self.removals, self.uploaded
            )
        } else {
            format!(
                "{} deleted ({} queued again), {} DMCA{}",
                self.deleted.len(),
                self.reupload.len(),
                self.dmca.len(),
                if self.audited { ", audit done" } else { "" }
            )
        }
    }
}

/// The `last` parameter of the list calls: the time since the last good
/// poll, rounded up, plus a margin; the host's maximum on the first poll.
pub fn window_hours(last_ok_ms: Option<i64>, now_ms: i64) -> u64 {
    match last_ok_ms {
        None => MAX_WINDOW_HOURS,
        Some(t) => {
            let hours = ((now_ms - t).max(0) as u64).div_ceil(3_600_000);
            (hours + WINDOW_MARGIN_HOURS).clamp(1, MAX_WINDOW_HOURS)
        }
    }
}

fn known(ctx: &Context) -> Result<Vec<Known>, StoreError> {
    Ok(ctx
        .store
        .with_codes()?
        .into_iter()
        .filter_map(|r| {
            let root = ctx.root(r.root_id)?;
            Some(Known {
                id: r.id,
                code: r.file_code.clone()?,
                state: r.state,
                on_remote_delete: root.entry.on_remote_delete,
                on_expired: root.entry.on_expired,
            })
        })
        .collect())
}

/// Files uploaded on this host (for the pass's record), counted by state.
fn uploaded_count(store: &crate::store::Store) -> usize {
    store
        .counts()
        .ok()
        .and_then(|c| c.into_iter().find(|(s, _)| *s == State::Uploaded))
        .map_or(0, |(_, n)| n as usize)
}

/// One reconcile pass. `force` applies a plan the guard would refuse;
/// `audit` forces the file/info audit now.
pub async fn pass(ctx: &Context, force: bool, audit: bool) -> Result<Report, ReconcileError> {
    let store = &ctx.store;
    let now = now_ms();
    let last_ok = store.reconcile_last_poll()?;
    let hours = window_hours(last_ok, now);
    let deleted = ctx.host.client.deleted(hours).await?;
    let dmca = ctx.host.client.dmca(hours).await?;
    let last_audit = store.reconcile_last_audit()?;
    // The audit interval counts from the first pass: files just uploaded
    // need no checking yet (and a first `scan` no calls for it).
    if last_audit.is_none() {
        store.set_reconcile_last_audit(now)?;
    }
    let audit_due = audit
        || last_audit
            .is_some_and(|t| now - t >= ctx.config.reconcile.audit_interval.as_millis() as i64);
    // Every file with a code is read only when there is something to match
    // it with: empty lists and no audit (the usual pass) cost no walk over
    // a large library.
    let needed = audit_due || !deleted.is_empty() || !dmca.is_empty();
    let known = if needed { known(ctx)? } else { Vec::new() };
    let audit_infos: Option<Vec<FileInfo>> = if audit_due && !known.is_empty() {
        let codes: Vec<String> = known
            .iter()
            .filter(|k| matches!(k.state, State::Uploaded | State::LocalDeleted))
            .map(|k| k.code.clone())
            .collect();
        Some(ctx.host.client.file_info(&codes).await?)
    } else {
        None
    };
    let plan = reconcile::plan(
        &known,
        &deleted,
        &dmca,
        audit_infos.as_deref(),
        ctx.config.reconcile.max_delete_fraction,
        force,
    );
    let report = apply(ctx, &plan, hours, audit_infos.is_some())?;
    if !plan.blocked {
        // Only a pass that was applied moves the window: a blocked pass must
        // see the same entries again.
        store.set_reconcile_last_poll(now)?;
    }
    // The audit's time moves even when the pass was blocked: a large library
    // must not be audited anew every interval while the guard holds
    // (`reconcile --force` audits again anyway).
    if audit_infos.is_some() || (needed && known.is_empty()) {
        store.set_reconcile_last_audit(now)?;
    }
    if audit_infos.is_some() {
        learn_links(ctx).await;
    }
    ctx.metrics.reconcile_pass(
        if plan.blocked {
            PassResult::Blocked
        } else {
            PassResult::Ok
        },
        report.deleted.len(),
        report.dmca.len(),
    );
    store.set_last_reconcile(&ReconcileRecord {
        at: now,
        ok: !plan.blocked,
        result: report.summary(),
        blocked: Some(plan.blocked),
        removals: Some(plan.removals),
        uploaded: Some(if needed {
            plan.uploaded
        } else {
            uploaded_count(store)
        }),
    })?;
    if plan.blocked {
        store.notice(
            &Notice::account(EventKind::MassDeleteHeld, report.summary()),
            now,
        );
        tracing::error!(
            removals = plan.removals,
            uploaded = plan.uploaded,
            "{}",
            report.summary()
        );
    } else if !report.deleted.is_empty() || !report.dmca.is_empty() {
        tracing::warn!("reconcile: {}", report.summary());
    } else {
        tracing::debug!("reconcile: {}", report.summary());
    }
    if !report.reupload.is_empty() {
        ctx.host.wake.notify_waiters();
    }
    Ok(report)
}

/// The most remote folders listed per audit to learn watch links (one
/// file/list call each, on hosts that ration calls).
const LINK_FOLDERS_PER_AUDIT: usize = 20;

/// Learn the watch links of uploaded files from file/list (the host's own
/// form of the link, which `vidsync links` shows): only folders with files
/// whose link is unknown, a few per audit. Links are a convenience: a
/// failure is logged and the pass goes on.
async fn learn_links(ctx: &Context) {
    let folders = match ctx.store.folders_without_links() {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list folders without links");
            return;
        }
    };
    for fld_id in folders.into_iter().take(LINK_FOLDERS_PER_AUDIT) {
        let q = crate::api::FileListQuery {
            fld_id: Some(fld_id),
            ..Default::default()
        };
        match ctx.host.client.file_list_all(&q).await {
            Ok(files) => {
                let links: Vec<(String, String)> = files
                    .into_iter()
                    .filter(|f| f.link.starts_with("http"))
                    .map(|f| (f.file_code, f.link))
                    .collect();
                if let Err(e) = ctx.store.set_links(&links) {
                    tracing::debug!(error = %e, "cannot record watch links");
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, fld_id, "cannot list a folder for watch links");
                return;
            }
        }
    }
}

fn apply(ctx: &Context, plan: &Plan, hours: u64, audited: bool) -> Result<Report, StoreError> {
    let mut report = Report {
        window_hours: hours,
        audited,
        blocked: plan.blocked,
        removals: plan.removals,
        uploaded: plan.uploaded,
        ..Report::default()
    };
    let now = now_ms();
    let store = &ctx.store;
    for c in &plan.changes {
        match c {
            Change::Seen {
                id,
                code,
                canplay,
                title,
                fld_id,
            } => {
                // The record follows the host: a title or folder changed by
                // hand there is what the file is now (and is not changed
                // back: only a local move or rename moves a file).
                store.refresh_remote(*id, code, title, *fld_id, *canplay, now)?;
            }
            _ if plan.blocked => {}
            Change::Deleted {
                id,
                code,
                by,
                at,
                reupload,
            } => {
                let then = if *reupload {
                    OnDeleted::UploadAgain
                } else {
                    OnDeleted::KeepDeleted
                };
                if store.mark_remote_deleted(*id, code, by, at, then, now)? {
                    store.notice_file(
                        EventKind::RemoteDeleted,
                        *id,
                        Some(code),
                        Some(&format!("deleted by {by}")),
                        now,
                    );
                    report.deleted.push(code.clone());
                    if *reupload {
                        report.reupload.push(code.clone());
                    }
                }
            }
            Change::Dmca { id, code, del_time } => {
                if store.mark_dmca(*id, code, del_time, now)? {
                    store.notice_file(EventKind::Dmca, *id, Some(code), None, now);
                    report.dmca.push(code.clone());
                }
            }
        }
    }
    Ok(report)
}

/// Poll encodings of uploaded files that are not yet playable: one
/// file/encodings call for the account plus file/info for `canplay`.
/// Returns whether anything changed (the caller backs off while nothing does).
pub async fn poll_encodings(ctx: &Context) -> Result<bool, ReconcileError> {
    let pending = ctx.store.encoding_pending()?;
    if pending.is_empty() {
        return Ok(false);
    }
    let encodings = ctx.host.client.encodings(None).await?;
    let codes: Vec<String> = pending.iter().filter_map(|r| r.file_code.clone()).collect();
    let infos = ctx.host.client.file_info(&codes).await?;
    let now = now_ms();
    let mut changed = false;
    for row in &pending {
        let Some(code) = &row.file_code else { continue };
        let playable = infos
            .iter()
            .any(|i| &i.file_code == code && i.status == 200 && i.canplay);
        let enc = encodings.iter().find(|e| &e.file_code == code);
        let status = if playable {
            None
        } else {
            Some(enc.map_or("PENDING", |e| e.status.as_str()))
        };
        let progress = enc.map(|e| e.progress.min(100) as u32);
        if status == Some("STUCK") && row.encoding.as_deref() != Some("STUCK") {
            tracing::warn!(path = %row.path().display(), code = %code, "the host's encoding of this file is STUCK");
        }
        if playable {
            tracing::info!(path = %row.path().display(), code = %code, "playable on the host");
        }
        if playable || row.encoding.as_deref() != status || row.encoding_progress != progress {
            changed = true;
            store_encoding(ctx, row.id, playable, status, progress, now)?;
        }
    }
    Ok(changed)
}

fn store_encoding(
    ctx: &Context,
    id: i64,
    playable: bool,
    status: Option<&str>,
    progress: Option<u32>,
    now: i64,
) -> Result<(), StoreError> {
    let status = if playable {
        None
    } else {
        status.or(Some("PENDING"))
    };
    ctx.store.set_encoding(id, playable, status, progress, now)
}

/// Longest pause between encoding polls while nothing changes (a file
/// stuck for days costs a call an hour, not one every 30 s).
const ENCODE_POLL_MAX: Duration = Duration::from_secs(3600);

/// The reconcile task: a pass at start and every interval (retried with
/// backoff on failure, the window growing meanwhile), and encoding polls
/// that slow down while nothing changes.
pub async fn task(ctx: std::sync::Arc<Context>, stop: tokio_util::sync::CancellationToken) {
    let interval = ctx.config.reconcile.interval;
    let encode_base = interval.min(Duration::from_secs(30));
    let mut encode_delay = encode_base;
    let mut next_pass = tokio::time::Instant::now();
    let mut next_encode = tokio::time::Instant::now() + encode_base;
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next_pass) => {
                if !ctx.host.account.key_ok() {
                    next_pass = tokio::time::Instant::now() + interval;
                    continue;
                }
                match pass(&ctx, false, false).await {
                    Ok(_) => {
                        failures = 0;
                        next_pass = tokio::time::Instant::now() + interval;
                    }
                    Err(e) => {
                        failures += 1;
                        ctx.metrics.reconcile_pass(PassResult::Failed, 0, 0);
                        let delay = crate::engine::backoff(failures, ctx.config.upload.retry_min, interval, rand::random::<f64>());
                        tracing::warn!(error = %e, retry_in = ?delay, "reconcile failed; will retry");
                        note_account_wide(&ctx, &e, delay);
                        ctx.host.account.record_error(&e.to_string());
                        let _ = ctx.store.set_last_reconcile(&ReconcileRecord::failed(now_ms(), e.to_string()));
                        next_pass = tokio::time::Instant::now() + delay;
                    }
                }
            }
            _ = tokio::time::sleep_until(next_encode) => {
                if ctx.host.account.key_ok() {
                    match poll_encodings(&ctx).await {
                        Ok(true) => encode_delay = encode_base,
                        Ok(false) => encode_delay = (encode_delay * 2).min(ENCODE_POLL_MAX.max(encode_base)),
                        Err(e) => {
                            tracing::debug!(error = %e, "encoding poll failed");
                            note_account_wide(&ctx, &e, encode_delay);
                            encode_delay = (encode_delay * 2).min(ENCODE_POLL_MAX.max(encode_base));
                        }
                    }
                }
                next_encode = tokio::time::Instant::now() + encode_delay;
            }
        }
    }
}

/// A rate limit or quota met by a background call holds the uploads too:
/// the limit is the account's, not the call's.
fn note_account_wide(ctx: &Context, e: &ReconcileError, delay: Duration) {
    if let ReconcileError::Api(api) = e {
        match api.class() {
            crate::api::ErrorClass::AccountWide => {
                ctx.host.account.pause(now_ms() + delay.as_millis() as i64)
            }
            crate::api::ErrorClass::KeyRejected => ctx.host.account.key_rejected(&api.to_string()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_covers_the_time_since_the_last_good_poll() {
        let h = 3_600_000;
        let cases = [
            (None, 0, 720),
            (Some(0), 0, 1),
            (Some(0), 1, 2),
            (Some(0), h, 2),
            (Some(0), h + 1, 3),
            (Some(0), 100 * h, 101),
            (Some(0), 10_000 * h, 720),
            (Some(10), 0, 1),
        ];
        for (last, now, want) in cases {
            assert_eq!(window_hours(last, now), want, "{last:?} {now}");
        }
    }
}
