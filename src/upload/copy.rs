//! Copy host to host (`copy_from`): instead of sending a file's bytes from
//! this machine again, ask the host to fetch them (upload/url) from a
//! direct link of the host that has the file already, follow the fetch,
//! and fall back to a normal upload when the copy cannot be made.
//!
//! Exactly-once holds as for uploads: the link is recorded before
//! upload/url is called and the job's code right after (`store::copies`),
//! so a crash at any instant finds the job again, by its code or by its
//! URL in file/url_uploads, instead of starting a second one. A copy that
//! surely made nothing (its job failed or was deleted) is dropped, and the
//! file goes from the disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::api::{ApiError, ErrorClass, FileListQuery};
use crate::clock::now_ms;
use crate::context::metrics::UploadResult;
use crate::context::{Context, CopySource, Root};
use crate::engine;
use crate::lock::lock;
use crate::store::{Attempt, CopyJob, EventKind, FileRow, HostCopy, State, StoreError, Twin};

use super::{after_error, after_error_at_least, created_since, host_side, upload_params};

/// How often a file whose source host has not got it yet looks again (a
/// store read, no API call).
const WAIT_FOR_SOURCE: Duration = Duration::from_secs(2);

/// The first and the longest pause between two looks at a fetch in
/// progress (each look costs an API call or two; real fetches of large
/// files take minutes).
const FOLLOW_FIRST: Duration = Duration::from_millis(500);
const FOLLOW_MAX: Duration = Duration::from_secs(30);

/// A fetch that shows no progress for this long is given up (its job is
/// deleted on the host) and the file is sent from the disk.
const STALLED_AFTER: Duration = Duration::from_secs(30 * 60);

/// What became of a file the copy path looked at.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Copy {
    /// The row is settled for now: copied, or waiting (for the source host,
    /// a retry, the fetch).
    Settled,
    /// No copy (none possible, or it failed): send the file from the disk.
    Disk,
}

/// Copy `row` from the source host if it has this version, wait for it if
/// it will have it soon, else say `Disk`.
pub(super) async fn copy_instead(
    ctx: &Context,
    root: &Root,
    row: &FileRow,
    fld_id: u64,
    title: &str,
) -> Result<Copy, StoreError> {
    let Some(src) = &ctx.source else {
        return Ok(Copy::Disk);
    };
    if !src.works.load(Ordering::Relaxed) || lock(&src.failed).contains(&row.id) {
        return Ok(Copy::Disk);
    }
    let code = match ctx.store.twin_on(&src.name, row)? {
        Some(Twin {
            state: State::Uploaded,
            code: Some(code),
            same_version: true,
            ..
        }) => code,
        Some(Twin {
            state: State::Waiting | State::Queued | State::Uploading,
            same_version: true,
            next_attempt_at,
            ..
        }) if src.well() => {
            // The source host will have it soon: its bytes go up once.
            // Looked at again no sooner than its own next try.
            let msg = format!(
                "waiting for host {} to have it, to copy it from there (copy_from)",
                src.name
            );
            let now = now_ms();
            let at = next_attempt_at
                .unwrap_or(0)
                .max(now + WAIT_FOR_SOURCE.as_millis() as i64);
            ctx.store
                .retry_later(row.id, &msg, at, Attempt::Free, HostCopy::SurelyNone, now)?;
            return Ok(Copy::Settled);
        }
        // Not going there, failed there, another version, or the source
        // host is unwell: no reason to wait.
        _ => return Ok(Copy::Disk),
    };
    let link = match src.host.client.direct_link_quality(&code, "o").await {
        Ok(Some(url)) => url,
        Ok(None) => {
            tracing::info!(path = %row.path().display(), source = %src.name, code = %code,
                "the source host gives no original to copy; uploading from the disk");
            return Ok(Copy::Disk);
        }
        Err(e) => {
            tracing::info!(path = %row.path().display(), source = %src.name, error = %e,
                "no direct link from the source host; uploading from the disk");
            return Ok(Copy::Disk);
        }
    };
    let params = upload_params(root, title, fld_id);
    let started = now_ms();
    ctx.store
        .begin_copy(row.id, fld_id, title, &src.name, &link, row.stat, started)?;
    tracing::info!(path = %row.path().display(), source = %src.name, size = row.stat.size, fld_id,
        "copy started: the host fetches the file from the source host");
    match ctx.host.client.upload_url(&link, &params).await {
        Ok(job) => {
            ctx.store.copy_accepted(row.id, &job)?;
            follow(ctx, Some(src), row, fld_id, &job).await
        }
        Err(err) if err.outcome_unknown() => {
            // The job may exist: the next try looks for it by its URL, no
            // sooner than the host lists new files.
            let msg = format!("asking the host to copy it: {err}");
            after_error_at_least(
                ctx,
                row,
                host_side(err.class()),
                &msg,
                HostCopy::Unknown,
                ctx.list_grace(),
            )?;
            Ok(Copy::Settled)
        }
        Err(err) => refused(ctx, src, row, &err),
    }
}

/// upload/url answered with a definite error: no job exists.
fn refused(
    ctx: &Context,
    src: &CopySource,
    row: &FileRow,
    err: &ApiError,
) -> Result<Copy, StoreError> {
    let now = now_ms();
    ctx.store
        .drop_copy(row.id, &format!("upload/url: {err}"), now)?;
    match err.class() {
        // The host is unwell or the key is refused: a disk upload would
        // meet the same; wait like any upload.
        c @ (ErrorClass::KeyRejected | ErrorClass::AccountWide | ErrorClass::Transient) => {
            after_error(
                ctx,
                row,
                host_side(c),
                &err.to_string(),
                HostCopy::SurelyNone,
            )?;
            Ok(Copy::Settled)
        }
        _ => {
            if matches!(err, ApiError::Disabled { .. }) {
                tracing::warn!(source = %src.name, error = %err,
                    "this host does not fetch URLs for the API; copy_from is off until the next start, files are uploaded from the disk");
                src.works.store(false, Ordering::Relaxed);
            } else {
                tracing::info!(path = %row.path().display(), error = %err,
                    "the host refused to copy the file; uploading it from the disk");
            }
            Ok(Copy::Disk)
        }
    }
}

/// A copy begun before a stop or crash: find its job (by code, or by URL
/// when the reply never came) and follow it; or drop it when it surely
/// made nothing. `None`: the row has no copy in progress.
pub(super) async fn resume(
    ctx: &Context,
    row: &FileRow,
    fld_id: u64,
) -> Result<Option<Copy>, StoreError> {
    let Some(job) = ctx.store.copy_job(row.id)? else {
        return Ok(None);
    };
    let path = row.path();
    // (Checked whether or not copy_from is still configured: a copy of an
    // older version must never be recorded for the new one.)
    if job.size != row.stat.size || job.mtime_ns != row.stat.mtime_ns {
        // The local file changed since: that copy is of another version.
        if let Some(code) = &job.code {
            let _ = ctx.host.client.url_delete(std::slice::from_ref(code)).await;
            tracing::warn!(path = %path.display(), code = %code,
                "the file changed while the host copied an older version; that copy's job was deleted (if it finished already, the host keeps a stray copy under this code)");
        }
        ctx.store
            .drop_copy(row.id, "the local file changed", now_ms())?;
        return Ok(Some(Copy::Disk));
    }
    // With copy_from removed from the config meanwhile, the job may still
    // run: it is looked for without a source host to name.
    resume_job(ctx, ctx.source.as_ref(), row, fld_id, job)
        .await
        .map(Some)
}

async fn resume_job(
    ctx: &Context,
    src: Option<&CopySource>,
    row: &FileRow,
    fld_id: u64,
    job: CopyJob,
) -> Result<Copy, StoreError> {
    let fld_id = row.fld_id.unwrap_or(fld_id);
    if let Some(code) = &job.code {
        return follow(ctx, src, row, fld_id, code).await;
    }
    // upload/url's reply was lost: the host lists its jobs with their URLs.
    let queue_read = match ctx.host.client.url_uploads(None).await {
        Ok(jobs) => {
            if let Some(j) = jobs.iter().find(|j| j.remote_url.trim() == job.url.trim()) {
                tracing::info!(path = %row.path().display(), code = %j.file_code,
                    "found the copy begun before the restart in the host's URL queue");
                ctx.store.copy_accepted(row.id, &j.file_code)?;
                let code = j.file_code.clone();
                return follow(ctx, src, row, fld_id, &code).await;
            }
            true
        }
        Err(e) if is_missing_call(&e) => false,
        Err(e) => {
            let msg = format!("looking for a copy begun before: {e}");
            after_error(ctx, row, host_side(e.class()), &msg, HostCopy::Unknown)?;
            return Ok(Copy::Settled);
        }
    };
    // Absence says something only once the host had time to list a new
    // file (as after a lost upload reply).
    let now = now_ms();
    let grace = ctx.list_grace().as_millis() as i64;
    let look_again = |why: &str, at: i64| {
        ctx.store
            .retry_later(row.id, why, at, Attempt::Free, HostCopy::Unknown, now)
    };
    if now - job.started_at < grace {
        look_again(
            "a copy from another host whose reply was lost: looking for it again once the host lists new files",
            job.started_at + grace,
        )?;
        return Ok(Copy::Settled);
    }
    // Not queued: never asked, or already fetched. A fetched file is named
    // after the link's last path segment: look for one made since.
    let name = job
        .url
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let sanitize = ctx.config.api.sanitize_filename;
    let want = engine::host_title(&name, sanitize);
    let q = FileListQuery {
        fld_id: Some(fld_id),
        created: Some(created_since(job.started_at)),
        ..Default::default()
    };
    let listed = match ctx.host.client.file_list_all(&q).await {
        Ok(l) => l,
        Err(e) => {
            let msg = format!("looking for a copy begun before: {e}");
            after_error(ctx, row, host_side(e.class()), &msg, HostCopy::Unknown)?;
            return Ok(Copy::Settled);
        }
    };
    let found: Vec<_> = listed
        .into_iter()
        .filter(|f| f.fld_id == fld_id && engine::same_title(&f.title, &want, sanitize))
        .filter(|f| !ctx.store.code_known(&f.file_code).unwrap_or(true))
        .collect();
    match found.as_slice() {
        // Neither queued nor stored: it never reached the host.
        [] if queue_read => {
            ctx.store.drop_copy(
                row.id,
                "the host has no job and no file from the copy begun before",
                now_ms(),
            )?;
            Ok(Copy::Disk)
        }
        // Without the queue, a fetch may still be running: wait for it as
        // long as a fetch may take, then leave the decision to the owner.
        [] if now - job.started_at < STALLED_AFTER.as_millis() as i64 => {
            look_again(
                "a copy from another host whose reply was lost is not on the host yet; this host does not show its URL queue",
                now + grace,
            )?;
            Ok(Copy::Settled)
        }
        [] => {
            let msg = "a copy from another host whose reply was lost never appeared, and this host does not show its URL queue: not uploading again in case it still does; `vidsync retry PATH` uploads it";
            tracing::warn!(path = %row.path().display(), "{msg}");
            ctx.store
                .fail(row.id, msg, Attempt::Free, HostCopy::SurelyNone, now)?;
            ctx.store.drop_copy(row.id, msg, now)?;
            Ok(Copy::Settled)
        }
        [f] => {
            let code = f.file_code.clone();
            tracing::info!(path = %row.path().display(), code = %code,
                "the copy begun before the restart is on the host; adopted");
            done(ctx, src, row, fld_id, &code, &f.title)?;
            Ok(Copy::Settled)
        }
        several => {
            let codes: Vec<&str> = several.iter().map(|f| f.file_code.as_str()).collect();
            let msg = format!(
                "ambiguous: a copy from another host was begun before a restart and the host has {} files it may be ({}); not uploading again; see `vidsync adopt --dry-run`",
                codes.len(),
                codes.join(", ")
            );
            tracing::warn!(path = %row.path().display(), "{msg}");
            ctx.store
                .fail(row.id, &msg, Attempt::Free, HostCopy::Unknown, now_ms())?;
            Ok(Copy::Settled)
        }
    }
}

/// A call the host does not have or allow (file/url_uploads is not on
/// every host): not an outage. (A reply that cannot be read is no proof
/// the call is missing: it is waited out like an outage.)
fn is_missing_call(e: &ApiError) -> bool {
    matches!(e, ApiError::Disabled { .. }) || e.class() == ErrorClass::Permanent
}

/// Follow the job `code` until its file exists (then it is recorded), it
/// fails (then the file goes from the disk), or an API call fails (then
/// the row waits for a retry with the job on record).
async fn follow(
    ctx: &Context,
    src: Option<&CopySource>,
    row: &FileRow,
    fld_id: u64,
    code: &str,
) -> Result<Copy, StoreError> {
    let sent = Arc::new(AtomicU64::new(0));
    ctx.progress.start(row.id, row.stat.size, sent.clone());
    let mut pause = FOLLOW_FIRST;
    let mut last_progress = None;
    let mut moved_at = Instant::now();
    // A job gone from the queue whose file is not there yet may be between
    // the two (hosts store the file and drop the job in two steps): only a
    // second look, a pause later, says it failed.
    let mut vanished_once = false;
    let queue_known = || src.is_none_or(|s| s.url_uploads.load(Ordering::Relaxed));
    loop {
        let mut queued = None;
        if queue_known() {
            match ctx.host.client.url_uploads(Some(code)).await {
                Ok(jobs) => queued = Some(jobs.into_iter().find(|j| j.file_code == code)),
                Err(e) if is_missing_call(&e) => {
                    tracing::info!(error = %e, "the host has no file/url_uploads; copies are followed with file/info");
                    if let Some(s) = src {
                        s.url_uploads.store(false, Ordering::Relaxed);
                    }
                }
                Err(e) => return wait_on_error(ctx, row, &e),
            }
        }
        match queued {
            Some(Some(j)) if j.failed() => {
                return give_up(
                    ctx,
                    src,
                    row,
                    code,
                    "the host could not fetch it (ERROR in its URL queue)",
                    true,
                )
                .await;
            }
            Some(Some(j)) => {
                vanished_once = false;
                sent.store(row.stat.size / 100 * j.progress.min(100), Ordering::Relaxed);
                if last_progress != Some(j.progress) {
                    last_progress = Some(j.progress);
                    moved_at = Instant::now();
                }
            }
            // Not queued (or the host cannot say): is the file there?
            _ => match ctx.host.client.file_info(&[code.to_string()]).await {
                Ok(infos) => {
                    if let Some(f) = infos
                        .iter()
                        .find(|f| f.file_code == code && matches!(f.status, 200 | 451))
                    {
                        done(ctx, src, row, fld_id, code, &f.file_title)?;
                        return Ok(Copy::Settled);
                    }
                    if queued.is_some() {
                        if vanished_once {
                            return give_up(
                                ctx,
                                src,
                                row,
                                code,
                                "its job left the host's queue without a file",
                                false,
                            )
                            .await;
                        }
                        vanished_once = true;
                    }
                }
                Err(e) => return wait_on_error(ctx, row, &e),
            },
        }
        if moved_at.elapsed() > STALLED_AFTER {
            return give_up(
                ctx,
                src,
                row,
                code,
                "the fetch made no progress for 30 minutes",
                false,
            )
            .await;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(FOLLOW_MAX);
    }
}

/// An API call failed while following: the job stays on record and the
/// row waits like an upload does; the next try follows it again.
fn wait_on_error(ctx: &Context, row: &FileRow, e: &ApiError) -> Result<Copy, StoreError> {
    let msg = format!("following a copy from another host: {e}");
    after_error(ctx, row, host_side(e.class()), &msg, HostCopy::Unknown)?;
    Ok(Copy::Settled)
}

/// The copy failed: its job is deleted (so it cannot make a file later) and
/// the file is sent from the disk.
/// `failed`: the host said the job failed (ERROR); otherwise the job may
/// still be alive, and the file goes from the disk only once the job is
/// deleted (else it could land as a second copy).
async fn give_up(
    ctx: &Context,
    src: Option<&CopySource>,
    row: &FileRow,
    code: &str,
    why: &str,
    failed: bool,
) -> Result<Copy, StoreError> {
    if let Err(e) = ctx.host.client.url_delete(&[code.to_string()]).await {
        tracing::debug!(error = %e, code, "deleting the failed copy's job");
        if !failed {
            let msg = format!(
                "copy from another host: {why}, and its job could not be deleted ({e}); waiting for it rather than sending the file too"
            );
            after_error(ctx, row, ErrorClass::Transient, &msg, HostCopy::Unknown)?;
            return Ok(Copy::Settled);
        }
    }
    if let Some(s) = src {
        lock(&s.failed).insert(row.id);
    }
    tracing::warn!(path = %row.path().display(), code, "copy from another host failed: {why}; uploading from the disk");
    ctx.store.drop_copy(row.id, why, now_ms())?;
    Ok(Copy::Disk)
}

/// The copy is on the host: record it (title to be set by the fix-ups).
fn done(
    ctx: &Context,
    src: Option<&CopySource>,
    row: &FileRow,
    fld_id: u64,
    code: &str,
    host_title: &str,
) -> Result<(), StoreError> {
    let source = src.map_or("another host", |s| s.name.as_str());
    tracing::info!(path = %row.path().display(), code, source, size = row.stat.size,
        "copy finished: the host fetched the file from the source host");
    if !ctx
        .store
        .finish_copied(row.id, code, fld_id, host_title, row.stat.size, now_ms())?
    {
        tracing::warn!(path = %row.path().display(), code,
            "a copy finished for a file that moved on meanwhile: not recorded; the host keeps a stray copy under this code");
        return Ok(());
    }
    ctx.store
        .notice_file(EventKind::UploadDone, row.id, Some(code), None, now_ms());
    ctx.metrics.upload(UploadResult::Copied, row.stat.size);
    ctx.host.account.after_success();
    ctx.fixups.notify_one();
    Ok(())
}
