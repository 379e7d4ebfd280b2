//! Upload workers: take due files from the store queue, upload each exactly
//! once, record the outcome.
//!
//! The exactly-once protocol: the attempt is recorded (`unknown_since`)
//! before the request is sent; only a reply with a non-empty file code
//! counts as success; after any outcome that leaves doubt (lost reply,
//! proxy error, crash), the host is searched (file/list by folder and
//! creation time, matched by title) before the file is sent again, and a
//! match is adopted instead of uploading a second copy.
//!
//! With `copy_from`, a file the other host has already is copied host to
//! host instead of being sent (`copy.rs`).

mod copy;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, Created, ErrorClass, FileListQuery, UploadParams};
use crate::clock::now_ms;
use crate::context::metrics::UploadResult;
use crate::context::{Context, Root};
use crate::engine::{self, AfterError, RetryPolicy};

use crate::store::{Attempt, EventKind, FileRow, Holder, HostCopy, Placement, StoreError};

/// How often an idle worker looks at the queue when nothing woke it: files
/// another process queued (`vidsync retry`) are seen within this.
const IDLE_LOOK: Duration = Duration::from_secs(10);

/// Run one worker until `stop`: claim, upload, record, repeat.
pub async fn worker(ctx: Arc<Context>, n: usize, stop: CancellationToken) {
    loop {
        if stop.is_cancelled() {
            return;
        }
        if !ctx.host.account.key_ok() {
            // Everything waits for the key; the key task re-checks it.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ctx.host.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            continue;
        }
        if ctx.host.account.over_quota() {
            // Nothing is sent while the account is full; the key task asks
            // account/info again and wakes the workers when space is back.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ctx.host.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            continue;
        }
        if let Some(until) = ctx.host.account.pause_until() {
            let wait = until.saturating_sub(now_ms());
            if wait > 0 {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                }
                continue;
            }
        }
        // Registered before the queue is read, so a file queued between the
        // read and the wait still wakes this worker (no lost wake-up, so
        // the wait below can be long).
        let woken = ctx.host.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let now = now_ms();
        let row = match ctx.store.claim_next(
            now,
            now + ctx.host.account.longest_delay_ms(),
            ctx.config.upload.order,
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the upload queue");
                None
            }
        };
        let Some(row) = row else {
            // Nothing due: sleep until woken (something queued), the next
            // retry, or `IDLE_LOOK` (files queued by another process:
            // `vidsync retry`, `adopt`).
            let next = ctx.store.next_retry_at().ok().flatten();
            let idle = IDLE_LOOK.as_millis() as i64;
            let wait = next.map_or(idle, |t| (t - now_ms()).clamp(10, idle));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = woken => {}
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
            }
            continue;
        };
        let id = row.id;
        tokio::select! {
            // Cancelling mid-upload drops the request; the row stays
            // `uploading` with `unknown_since` set, and the next start
            // searches the host before sending it again.
            _ = stop.cancelled() => return,
            r = upload_one(&ctx, row) => {
                if let Err(e) = r {
                    tracing::error!(worker = n, file_id = id, error = %e, "cannot record upload outcome");
                }
            }
        }
        ctx.progress.clear(&ctx.store, id);
    }
}

fn policy(ctx: &Context) -> RetryPolicy {
    let u = &ctx.config.upload;
    RetryPolicy {
        min: u.retry_min,
        max: u.retry_max,
        max_attempts: u.max_attempts.get(),
    }
}

/// The most candidates whose size is asked with file/direct_link for one
/// file (each costs an API call).
const MAX_SIZED_CANDIDATES: usize = 8;

/// Look on the host, in folder `fld_id`, for a copy of the local file `row`
/// whose title (as the host stores it) is `title`: after an upload whose
/// outcome is unknown (`since_ms`: files created since the attempt began),
/// or for a file with no upload on record (`since_ms` None: the whole
/// folder). Codes other rows hold are never candidates; other local files
/// of the folder with the same title are rivals (see `engine::choose_adoption`).
pub async fn find_copy(
    ctx: &Context,
    row: &FileRow,
    fld_id: u64,
    title: &str,
    since_ms: Option<i64>,
) -> Result<engine::Adoption, ApiError> {
    let sanitize = ctx.config.api.sanitize_filename;
    // No title filter: the host matches it against its stored, escaped
    // title and ignores it when it holds `"`. The folder (and time window)
    // keep the listing short; titles are compared here, in stored form.
    let listed: Arc<Vec<crate::api::ListedFile>> = match since_ms {
        Some(since) => {
            // After a lost reply the listing must be fresh.
            let q = FileListQuery {
                fld_id: Some(fld_id),
                created: Some(created_since(since)),
                ..Default::default()
            };
            Arc::new(ctx.host.client.file_list_all(&q).await?)
        }
        // One listing serves every new file of the folder for a while.
        None => ctx.host.folder_files(fld_id).await?,
    };
    let mut candidates = Vec::new();
    for f in listed.iter().cloned() {
        if f.fld_id != fld_id || !engine::same_title(&f.title, title, sanitize) {
            continue;
        }
        // A file already recorded for another local file (or an earlier
        // version of this one) is not ours to adopt.
        if ctx.store.code_known(&f.file_code).unwrap_or(true) {
            continue;
        }
        candidates.push(engine::Candidate {
            file: f,
            size: None,
        });
    }
    // Where the host gives direct links, the original's size tells files
    // with one title apart.
    for c in candidates.iter_mut().take(MAX_SIZED_CANDIDATES) {
        c.size = ctx.host.client.original_size(&c.file.file_code).await?;
    }
    let rel_dir = engine::rel_dir_of(&row.rel_path);
    let rivals: Vec<engine::Rival> = ctx
        .store
        .codeless_in_dir(row.root_id, rel_dir)
        .map_err(|e| ApiError::Protocol {
            endpoint: "store".into(),
            detail: e.to_string(),
        })?
        .into_iter()
        .filter(|r| r.id != row.id)
        // After a lost reply only files that were sent could own a copy made
        // since; a file never on record could own any copy.
        .filter(|r| since_ms.is_none() || r.unknown_since.is_some())
        .map(|r| engine::Rival {
            title: ctx.title_for(&r.rel_path),
            size: r.stat.size,
            in_flight: r.state == crate::store::State::Uploading || r.unknown_since.is_some(),
        })
        .collect();
    let mode = if since_ms.is_some() {
        engine::AdoptMode::LostReply
    } else {
        engine::AdoptMode::Existing
    };
    Ok(engine::choose_adoption(
        mode,
        &candidates,
        title,
        row.stat.size,
        fld_id,
        &rivals,
        sanitize,
    ))
}

/// One upload attempt of a queued file, in the order exactly-once needs:
/// the file is still what settled; its remote folder; a copy already on
/// the host is adopted (a file never on record, or one whose last attempt
/// left doubt) instead of being sent again; only then the bytes go.
async fn upload_one(ctx: &Context, row: FileRow) -> Result<(), StoreError> {
    let Some(root) = ctx.root(row.root_id) else {
        // A root removed from the config: leave its rows alone.
        let later = now_ms() + ctx.config.upload.retry_max.as_millis() as i64;
        ctx.store.retry_later(
            row.id,
            "sync entry no longer configured",
            later,
            Attempt::Free,
            HostCopy::Unknown,
            now_ms(),
        )?;
        return Ok(());
    };
    if !still_settled(ctx, &row)? {
        return Ok(());
    }
    let title = ctx.title_for(&row.rel_path);
    let Some(fld_id) = remote_folder(ctx, root, &row).await? else {
        return Ok(());
    };
    // A copy begun before a restart is found and followed before anything
    // else: its job may still be making the file.
    let mut row = row;
    match copy::resume(ctx, &row, fld_id).await? {
        Some(copy::Copy::Settled) => return Ok(()),
        Some(copy::Copy::Disk) => {
            // Dropped: the host surely has nothing from it.
            row.unknown_since = None;
        }
        None => {}
    }
    if adopted_instead(ctx, root, &row, fld_id, &title).await? {
        return Ok(());
    }
    if row.unknown_since.is_none()
        && copy::copy_instead(ctx, root, &row, fld_id, &title).await? == copy::Copy::Settled
    {
        return Ok(());
    }
    send(ctx, root, &row, fld_id, &title).await
}

/// Is the file still what we saw settle? If not, the row goes back to the
/// scanner (changed: waiting again; gone or unreadable: it decides whether
/// the file moved or was deleted).
fn still_settled(ctx: &Context, row: &FileRow) -> Result<bool, StoreError> {
    let path = row.path();
    match std::fs::metadata(&path) {
        Ok(md) => {
            let st = crate::store::Stat::of(&md);
            if st.size != row.stat.size || st.mtime_ns != row.stat.mtime_ns {
                ctx.store.file_changed(row.id, st, now_ms())?;
                return Ok(false);
            }
            Ok(true)
        }
        Err(e) => {
            ctx.store.retry_later(
                row.id,
                &format!("cannot stat {}: {e}", path.display()),
                now_ms() + 1000,
                Attempt::Free,
                HostCopy::Unknown,
                now_ms(),
            )?;
            ctx.request_rescan(row.root_id);
            Ok(false)
        }
    }
}

/// The file's remote folder, found or created; None when that failed (the
/// failure is recorded on the row).
async fn remote_folder(
    ctx: &Context,
    root: &Root,
    row: &FileRow,
) -> Result<Option<u64>, StoreError> {
    let rel_dir = engine::rel_dir_of(&row.rel_path);
    match ctx.folder_for(root, rel_dir).await {
        Ok(f) => Ok(Some(f)),
        Err(e) => {
            let class = match e.api() {
                Some(api) if api.is_folder_missing() => {
                    // A remembered folder was deleted on the host or is not
                    // ours: forget the ids so the next try finds or creates it.
                    tracing::warn!(path = %row.path().display(), error = %e, "remote folder gone; it will be found or created again");
                    ctx.store.forget_folder_tree(row.root_id, "")?;
                    ctx.host.folders.forget_listings();
                    ErrorClass::Transient
                }
                Some(api) => api.class(),
                None => ErrorClass::Transient,
            };
            // Nothing was sent this try, but an earlier try's doubt (a lost
            // reply) stays: the host is still searched before any resend.
            after_error(
                ctx,
                row,
                host_side(class),
                &e.to_string(),
                HostCopy::Unknown,
            )?;
            Ok(None)
        }
    }
}

/// Is the file's copy already on the host? Looked for in two cases: a file
/// never on record (a lost database, another tool; a folder vidsync created
/// held nothing of anyone else's), and a file whose previous attempt may
/// have stored it. True when the row was settled without sending (adopted,
/// held as ambiguous, or the search failed and waits for a retry).
async fn adopted_instead(
    ctx: &Context,
    root: &Root,
    row: &FileRow,
    fld_id: u64,
    title: &str,
) -> Result<bool, StoreError> {
    let store = &ctx.store;
    let path = row.path();
    if row.unknown_since.is_none()
        && root.entry.adopt_existing
        && !store.ever_attempted(row.id)?
        && !store.created_folder(fld_id)?
    {
        match find_copy(ctx, row, fld_id, title, None).await {
            Ok(engine::Adoption::Adopt(code)) => {
                tracing::info!(path = %path.display(), code = %code, "already on the host; adopted instead of uploading");
                store.adopt_if_idle(
                    row.id,
                    &code,
                    fld_id,
                    title,
                    now_ms(),
                    "adopted",
                    Holder::ThisWorker,
                )?;
                ctx.metrics.upload(UploadResult::Adopted, row.stat.size);
                ctx.host.account.after_success();
                return Ok(true);
            }
            Ok(engine::Adoption::Nothing) => {}
            Ok(engine::Adoption::Ambiguous {
                codes,
                why,
                pending,
            }) => {
                hold_ambiguous(ctx, row, &codes, &why, pending, HostCopy::SurelyNone)?;
                return Ok(true);
            }
            Err(e) => {
                let msg = format!("looking for a copy on the host: {e}");
                after_error(ctx, row, search_class(&e), &msg, HostCopy::SurelyNone)?;
                return Ok(true);
            }
        }
    }
    // A previous attempt may have stored the file: find it before sending again.
    let Some(since) = row.unknown_since else {
        return Ok(false);
    };
    let search_fld = row.fld_id.unwrap_or(fld_id);
    let search_title = row.title.clone().unwrap_or_else(|| title.to_string());
    match find_copy(ctx, row, search_fld, &search_title, Some(since)).await {
        Ok(engine::Adoption::Ambiguous {
            codes,
            why,
            pending,
        }) => {
            hold_ambiguous(ctx, row, &codes, &why, pending, HostCopy::Unknown)?;
            Ok(true)
        }
        Ok(engine::Adoption::Adopt(code)) => {
            tracing::info!(path = %path.display(), code = %code, "found the file on the host after an interrupted upload; adopted it");
            // Found where the attempt put it; if the file has moved or
            // been renamed since, the fix-ups move it on the host.
            let misplaced = search_fld != fld_id || search_title != title;
            store.finish_uploaded_at(
                row.id,
                &code,
                search_fld,
                now_ms(),
                "adopted after an interrupted upload",
                if misplaced {
                    Placement::Outdated
                } else {
                    Placement::Current
                },
            )?;
            if misplaced {
                ctx.fixups.notify_one();
            }
            ctx.metrics.upload(UploadResult::Adopted, row.stat.size);
            ctx.host.account.after_success();
            Ok(true)
        }
        Ok(engine::Adoption::Nothing) => Ok(false),
        Err(e) => {
            let msg = format!("searching the host: {e}");
            after_error(ctx, row, search_class(&e), &msg, HostCopy::Unknown)?;
            Ok(true)
        }
    }
}

/// Send the file, with `unknown_since` recorded first, and record the
/// outcome: a code, a definite refusal, or doubt (then the host is
/// searched at once, and again no sooner than `list_grace`).
async fn send(
    ctx: &Context,
    root: &Root,
    row: &FileRow,
    fld_id: u64,
    title: &str,
) -> Result<(), StoreError> {
    let store = &ctx.store;
    let path = row.path();
    let params = upload_params(root, title, fld_id);
    store.begin_attempt(row.id, fld_id, title, now_ms())?;
    let sent = Arc::new(AtomicU64::new(0));
    ctx.progress.start(row.id, row.stat.size, sent.clone());
    let progress: crate::api::ProgressFn = {
        let sent = sent.clone();
        Arc::new(move |n| sent.store(n, Ordering::Relaxed))
    };
    let started = std::time::Instant::now();
    tracing::info!(path = %path.display(), size = row.stat.size, fld_id, "upload started");
    let result = ctx
        .host
        .client
        .upload_file(&path, &params, Some(progress))
        .await;
    match result {
        Ok(code) => {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                path = %path.display(), code = %code, size = row.stat.size,
                seconds = format!("{secs:.1}"),
                rate_mib_s = format!("{:.2}", row.stat.size as f64 / secs / 1048576.0),
                "upload finished"
            );
            store.finish_uploaded(row.id, &code, fld_id, now_ms(), "uploaded")?;
            store.notice_file(EventKind::UploadDone, row.id, Some(&code), None, now_ms());
            ctx.metrics.upload_ok(row.stat.size, started.elapsed());
            ctx.host.account.after_success();
            if !path.exists() {
                // Renamed or moved while it was being sent: the scanner held
                // off until now; let it follow the move on the host.
                ctx.request_rescan(row.root_id);
            }
        }
        Err(err) if err.outcome_unknown() => {
            ctx.metrics
                .upload(UploadResult::Unknown, sent.load(Ordering::Relaxed));
            let since = row
                .unknown_since
                .unwrap_or(now_ms() - started.elapsed().as_millis() as i64);
            after_lost_reply(ctx, row, fld_id, title, since, &err).await?;
        }
        Err(err) => {
            // A definite answer: the host did not keep this file.
            tracing::warn!(path = %path.display(), error = %err, "upload refused");
            ctx.metrics
                .upload(UploadResult::Failed, sent.load(Ordering::Relaxed));
            if err.is_over_quota() {
                ctx.host.account.mark_over_quota(&ctx.host.client, &format!(
                    "the host refused an upload for lack of space ({err}); uploads wait until space is freed"
                ));
            }
            after_error(
                ctx,
                row,
                upload_class(&err),
                &err.to_string(),
                HostCopy::SurelyNone,
            )?;
        }
    }
    Ok(())
}

/// file/list's `created` filter for files made since `since` (unix ms):
/// "the last N minutes" avoids any time zone arithmetic (the host's clock
/// is local time without a zone), with two minutes of margin for skew.
fn created_since(since: i64) -> Created {
    Created::LastMinutes(((now_ms() - since).max(0) as u64).div_ceil(60_000) + 2)
}

/// What a file of `root` is sent (or copied) with.
fn upload_params(root: &Root, title: &str, fld_id: u64) -> UploadParams {
    let e = &root.entry;
    UploadParams {
        title: title.to_string(),
        descr: None,
        fld_id,
        cat_id: e.cat_id.map(u64::from),
        tags: (!e.tags.is_empty()).then(|| e.tags.join(",")),
        public: e.public,
        adult: e.adult,
    }
}

/// The reply was lost: the host may have stored the file anyway. Search
/// the folder's files created since `since`; adopt a certain match, hold
/// an ambiguous one, and otherwise wait `list_grace` before any resend.
async fn after_lost_reply(
    ctx: &Context,
    row: &FileRow,
    fld_id: u64,
    title: &str,
    since: i64,
    err: &ApiError,
) -> Result<(), StoreError> {
    let path = row.path();
    tracing::warn!(path = %path.display(), error = %err, "upload outcome unknown; searching the host");
    ctx.host.forget_listing(fld_id);
    match find_copy(ctx, row, fld_id, title, Some(since)).await {
        Ok(engine::Adoption::Ambiguous {
            codes,
            why,
            pending,
        }) => hold_ambiguous(ctx, row, &codes, &why, pending, HostCopy::Unknown),
        Ok(engine::Adoption::Adopt(code)) => {
            tracing::info!(path = %path.display(), code = %code, "the host had stored it; adopted");
            ctx.store.finish_uploaded(
                row.id,
                &code,
                fld_id,
                now_ms(),
                "adopted after a lost reply",
            )?;
            ctx.store
                .notice_file(EventKind::UploadDone, row.id, Some(&code), None, now_ms());
            ctx.metrics.upload(UploadResult::Adopted, row.stat.size);
            ctx.host.account.after_success();
            Ok(())
        }
        // Not (yet) listed. Some hosts list a new file only after a
        // while: wait that long before any resend, then search again.
        _ => after_error_at_least(
            ctx,
            row,
            upload_class(err),
            &err.to_string(),
            HostCopy::Unknown,
            ctx.list_grace(),
        ),
    }
}

/// Copies on the host that may be this file's, and none surely is: neither
/// adopt nor upload. While a rival is in flight (`pending`), its own search
/// may claim its copy and settle this case: ask again after `list_grace`.
/// Otherwise waiting makes nothing clearer (the host will not tell more
/// later), so the file is set aside as `failed` with the reason, and
/// `scan` ends: `vidsync adopt --dry-run` lists it and `vidsync adopt PATH
/// CODE` settles it. After a lost reply it keeps `unknown_since`, so even
/// `vidsync retry` searches again before it could send anything.
fn hold_ambiguous(
    ctx: &Context,
    row: &FileRow,
    codes: &[String],
    why: &str,
    pending: bool,
    copy: HostCopy,
) -> Result<(), StoreError> {
    let msg = format!(
        "ambiguous: the host has {} ({}) that may be this file: {why}; not uploading again; see `vidsync adopt --dry-run`",
        if codes.len() == 1 {
            "a copy".to_string()
        } else {
            format!("{} copies", codes.len())
        },
        codes.join(", ")
    );
    if pending {
        let next = now_ms() + ctx.list_grace().as_millis().max(1000) as i64;
        return ctx
            .store
            .retry_later(row.id, &msg, next, Attempt::Free, copy, now_ms());
    }
    tracing::warn!(path = %row.path().display(), "{msg}");
    ctx.host
        .account
        .record_error(&format!("{}: {msg}", row.path().display()));
    ctx.store.fail(row.id, &msg, Attempt::Free, copy, now_ms())
}

/// An error of an API call made around the upload (upload/server,
/// folder/list, the search) says the host is unwell, not this file: such
/// passing errors retry without limit, like rate limits. Only the upload
/// request itself counts against the file, so an hour of outage does not
/// end with every queued file `failed`.
fn host_side(class: ErrorClass) -> ErrorClass {
    match class {
        ErrorClass::Transient | ErrorClass::Protocol => ErrorClass::AccountWide,
        c => c,
    }
}

/// The search for a copy is never a verdict on the file: whatever stops it
/// (a host that words a refusal differently, an odd listing) waits like an
/// outage, never fails the file for good.
fn search_class(err: &ApiError) -> ErrorClass {
    match err.class() {
        ErrorClass::KeyRejected => ErrorClass::KeyRejected,
        _ => ErrorClass::AccountWide,
    }
}

/// The class of an error from `upload_file`: the upload request's own
/// errors count against the file; those of the upload/server call before it
/// are the host's.
fn upload_class(err: &ApiError) -> ErrorClass {
    if err.is_upload_request() {
        err.class()
    } else {
        host_side(err.class())
    }
}

/// Record an error per the retry policy; `copy` says whether the host may
/// hold a copy from this attempt.
fn after_error(
    ctx: &Context,
    row: &FileRow,
    class: ErrorClass,
    msg: &str,
    copy: HostCopy,
) -> Result<(), StoreError> {
    after_error_at_least(ctx, row, class, msg, copy, Duration::ZERO)
}

/// `after_error` with a floor on the retry delay.
fn after_error_at_least(
    ctx: &Context,
    row: &FileRow,
    class: ErrorClass,
    msg: &str,
    copy: HostCopy,
    min_delay: Duration,
) -> Result<(), StoreError> {
    let now = now_ms();
    let streak = if class == ErrorClass::AccountWide {
        ctx.host.account.refused()
    } else {
        0
    };
    if class != ErrorClass::KeyRejected {
        ctx.host
            .account
            .record_error(&format!("{}: {msg}", row.path().display()));
    }
    let decision = engine::after_error(
        class,
        row.attempts,
        streak,
        policy(ctx),
        rand::random::<f64>(),
    );
    match decision {
        AfterError::Retry { delay, counted } => {
            // The client knows when a used-up rate limit (a minute, or a
            // day) lets calls through again: no retry before then.
            // (Capped: a pause longer than the retry horizon would be taken
            // for a clock gone back; the client refuses calls meanwhile
            // without sending them, so waking early costs nothing.)
            let held = ctx
                .host
                .client
                .held()
                .map_or(Duration::ZERO, |(d, _)| d.min(ctx.config.upload.retry_max));
            let next = now + delay.max(min_delay).max(held).as_millis() as i64;
            if class == ErrorClass::AccountWide {
                // Quota and rate limits concern every file: hold all workers.
                ctx.host.account.pause(next);
                ctx.host.account.record_pause(&ctx.host.client, next, msg);
            }
            ctx.store
                .retry_later(row.id, msg, next, Attempt::counted_if(counted), copy, now)
        }
        AfterError::Fail => {
            tracing::error!(path = %row.path().display(), error = %msg, "upload failed for good");
            ctx.store
                .notice_file(EventKind::Failed, row.id, None, Some(msg), now);
            // Every try counts, the one the host refused for good too: a
            // file refused at its first try shows `attempts: 1`.
            ctx.store.fail(row.id, msg, Attempt::Counted, copy, now)
        }
        AfterError::PauseForKey => {
            ctx.host.account.key_rejected(msg);
            ctx.store
                .retry_later(row.id, msg, now, Attempt::Free, copy, now)
        }
    }
}
