//! Walk a sync root and bring the store in line with what is on disk.
//!
//! The walk only stats (no reads), so a pass over an unchanged tree is cheap
//! and can run after every burst of events. Comparing with the store finds
//! new files (`waiting`), changed ones (back to `waiting`, or a new version
//! after upload), settled ones (`queued`), moved/renamed ones (same device,
//! inode, size and mtime: the row and its file code follow the file) and
//! deleted ones (`local_deleted`; never-uploaded rows are forgotten).

pub mod evidence;
pub mod scanner;
pub mod writers;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::clock::now_ms;
use crate::context::{Context, DirRename, Root};
use crate::engine::{self, is_under, rel_dir_of};
use crate::store::{FileRow, Stat, State, StoreError};

pub use scanner::Scanner;
pub use writers::Writers;

/// One video file found on disk.
#[derive(Debug, Clone)]
pub struct Observed {
    pub rel_path: String,
    pub stat: Stat,
}

/// Everything a walk found.
#[derive(Debug, Default)]
pub struct Walk {
    pub files: Vec<Observed>,
    /// Directories (relative, "" excluded) with their inode.
    pub dirs: Vec<(String, u64)>,
    /// Entries that could not be read: (path, error).
    pub errors: Vec<(PathBuf, String)>,
    /// Directories (relative, "" = the root) whose listing failed.
    pub unreadable: Vec<String>,
    /// Entries that are neither files nor directories: (path, what).
    pub skipped: Vec<(PathBuf, &'static str)>,
}

/// Walk `root` without following symlinks (a link could lead out of the
/// root, or into a loop). Blocking: run it on a blocking thread.
pub fn walk(root: &Path, filter: &engine::Filter) -> Walk {
    let mut out = Walk::default();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel_dir)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                out.errors.push((dir, e.to_string()));
                out.unreadable.push(rel_dir);
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    // A listing cut short: what follows is unknown, not gone.
                    out.errors.push((dir.clone(), e.to_string()));
                    out.unreadable.push(rel_dir.clone());
                    break;
                }
            };
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                // The store keeps paths as text; a name that is not UTF-8
                // cannot be recorded faithfully, so it is reported, not guessed.
                out.errors
                    .push((entry.path(), "file name is not valid UTF-8; skipped".into()));
                continue;
            };
            let rel = if rel_dir.is_empty() {
                name
            } else {
                format!("{rel_dir}/{name}")
            };
            let md = match entry.path().symlink_metadata() {
                Ok(m) => m,
                // Vanished between readdir and stat: a temporary file.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    out.errors.push((entry.path(), e.to_string()));
                    continue;
                }
            };
            let ft = md.file_type();
            if ft.is_dir() {
                if filter.wants_dir(&rel) {
                    out.dirs.push((rel.clone(), md.ino()));
                    stack.push((entry.path(), rel));
                }
            } else if ft.is_file() {
                if filter.wants_file(&rel) {
                    out.files.push(Observed {
                        rel_path: rel,
                        stat: Stat::of(&md),
                    });
                }
            } else if filter.wants_file(&rel) || filter.wants_dir(&rel) {
                // Not followed or read: a link could lead out of the root
                // or into a loop, a FIFO would block the reader. Said (once
                // per path, by the caller), not passed over in silence.
                let what = if ft.is_symlink() {
                    "a symbolic link (not followed)"
                } else {
                    "not a regular file (a FIFO, socket or device)"
                };
                out.skipped.push((entry.path(), what));
            }
        }
    }
    out
}

/// What a pass changed, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub new: usize,
    pub changed: usize,
    pub queued: usize,
    pub moved: usize,
    pub deleted: usize,
    pub waiting: usize,
    pub reappeared: usize,
}

fn same_file(a: &Stat, b: &Stat) -> bool {
    a.dev == b.dev && a.ino == b.ino && a.size == b.size && a.mtime_ns == b.mtime_ns
}

/// Scan one root now: walk it, detect renamed directories (the fix-up task
/// renames their remote folders), apply the rest of the walk to the store.
pub async fn scan_root(
    ctx: &Context,
    writers: &Writers,
    root: &Root,
) -> Result<ScanReport, StoreError> {
    let path = root.entry.local.clone();
    let filter = root.filter.clone();
    let walked = tokio::task::spawn_blocking(move || walk(&path, &filter))
        .await
        .unwrap_or_default();
    for (p, e) in &walked.errors {
        tracing::warn!(path = %p.display(), error = %e, "cannot read");
    }
    for (p, what) in &walked.skipped {
        if ctx.said.first_time(p) {
            tracing::info!(path = %p.display(), "skipped: {what}");
        }
    }
    tracing::debug!(root = %root.entry.local.display(), files = walked.files.len(), "full scan");
    if !root.entry.local.is_dir() {
        // The whole root is gone (unmounted disk): do not mark every file
        // deleted; wait for it to come back.
        tracing::warn!(root = %root.entry.local.display(), "sync folder is missing; skipping");
        return Ok(ScanReport::default());
    }
    // An unmounted disk leaves its empty mount point behind, on another
    // device: that is not "every file deleted". The root's device is
    // remembered; an empty root on a different device is skipped. (A root
    // that moved to a new disk with its files is accepted as such.)
    let dev_now = std::fs::metadata(&root.entry.local).map(|m| m.dev()).ok();
    let dev_known: Option<u64> = ctx.store.root_dev(root.id)?;
    let empty = walked.files.is_empty() && walked.dirs.is_empty();
    if let Some(now_dev) = dev_now {
        if empty && dev_known.is_some_and(|d| d != now_dev) && ctx.store.has_present(root.id)? {
            tracing::warn!(
                root = %root.entry.local.display(),
                "sync folder is empty and on another device than before (disk not mounted?); not treating its files as deleted"
            );
            return Ok(ScanReport::default());
        }
        if dev_known != Some(now_dev) {
            ctx.store.set_root_dev(root.id, now_dev)?;
        }
    }
    let pending = detect_renames(ctx, root, &walked)?;
    ctx.renames.set(root.id, pending.clone());
    // A directory rename still to be done on the host: leave both sides
    // alone for now (applying them would move the files one by one into a
    // new folder and leave the old one behind); the rest of the root goes on.
    let files: Vec<Observed> = walked
        .files
        .into_iter()
        .filter(|o| !pending.iter().any(|r| is_under(&o.rel_path, &r.new)))
        .collect();
    let mut unreadable = walked.unreadable;
    // Both sides: the fix-up task may finish a rename (rows moved to the
    // new path) between the read of the folders above and of the rows in
    // `apply`; rows on either side must not pass for deleted meanwhile.
    unreadable.extend(pending.into_iter().flat_map(|r| [r.old, r.new]));
    let report = apply(ctx, writers, root, &files, &unreadable)?;
    if report.queued > 0 {
        ctx.host.wake.notify_waiters();
    }
    // Renames, moves and deletions may need the host told: the fix-up task
    // does it, outside this loop (it makes paced API calls).
    ctx.fixups.notify_one();
    Ok(report)
}

/// Apply a walk to the store. Pure store work: no API calls.
///
/// `unreadable` are directories (relative, "" = the root) whose listing
/// failed: files below them are not "gone", we just could not see them.
pub fn apply(
    ctx: &Context,
    writers: &Writers,
    root: &Root,
    files: &[Observed],
    unreadable: &[String],
) -> Result<ScanReport, StoreError> {
    let store = &ctx.store;
    let now = now_ms();
    let mut report = ScanReport::default();
    let rows = store.files_in_root(root.id)?;
    let by_path: HashMap<&str, &FileRow> = rows.iter().map(|r| (r.rel_path.as_str(), r)).collect();
    let seen: HashSet<&str> = files.iter().map(|o| o.rel_path.as_str()).collect();
    let hidden = |rel: &str| unreadable.iter().any(|d| is_under(rel, d));
    // Rows whose file is gone from its path: moved (same inode elsewhere),
    // renamed over another file, or deleted.
    let mut vanished: Vec<&FileRow> = rows
        .iter()
        .filter(|r| {
            !seen.contains(r.rel_path.as_str())
                && r.state != State::LocalDeleted
                && !hidden(&r.rel_path)
        })
        .collect();
    let mut fresh: Vec<&Observed> = Vec::new();
    // New paths by inode: where a tracked file may have gone.
    let mut untracked: HashMap<(u64, u64), &Observed> = files
        .iter()
        .filter(|o| !by_path.contains_key(o.rel_path.as_str()))
        .map(|o| ((o.stat.dev, o.stat.ino), o))
        .collect();
    let mut claimed: HashSet<&str> = HashSet::new();
    let mut settled: Vec<FileRow> = Vec::new();

    for obs in files {
        if claimed.contains(obs.rel_path.as_str()) {
            continue;
        }
        let Some(row) = by_path.get(obs.rel_path.as_str()) else {
            fresh.push(obs);
            continue;
        };
        // The tracked file was moved away and another took its place
        // (`mv a.mp4 old.mp4`, then a new a.mp4): the row follows its file,
        // and this path holds a new one.
        if row.state != State::Uploading
            && (row.stat.ino != obs.stat.ino || row.stat.dev != obs.stat.dev)
            && let Some(moved_to) = untracked
                .remove(&(row.stat.dev, row.stat.ino))
                .filter(|o| same_file(&row.stat, &o.stat))
        {
            tracing::info!(from = %row.rel_path, to = %moved_to.rel_path, "file moved; a new file took its place");
            store.move_file(row.id, root.id, &moved_to.rel_path, now)?;
            claimed.insert(moved_to.rel_path.as_str());
            report.moved += 1;
            // This path is free now: whatever is here is matched like any
            // new path (it may be another tracked file renamed here).
            fresh.push(obs);
            continue;
        }
        // Another tracked file was renamed over this one (`mv tmp.mp4
        // a.mp4`): its content is already known (and maybe on the host).
        if row.state != State::Uploading
            && (row.stat.ino != obs.stat.ino || row.stat.dev != obs.stat.dev)
            && let Some(i) = vanished
                .iter()
                .position(|v| v.state != State::Uploading && same_file(&v.stat, &obs.stat))
        {
            let v = vanished.swap_remove(i);
            if store.merge_into(row.id, v.id, now)? {
                tracing::info!(from = %v.rel_path, over = %row.rel_path, "file renamed over another");
                report.moved += 1;
            } else {
                ctx.request_rescan(root.id);
            }
            continue;
        }
        if apply_existing(ctx, writers, root, row, obs, now, &mut report)? {
            settled.push((*row).clone());
        }
    }

    for obs in fresh
        .into_iter()
        .filter(|o| !claimed.contains(o.rel_path.as_str()))
    {
        // A file renamed while it is being uploaded: wait until the upload
        // has finished, then it is an ordinary move (not a second upload).
        if vanished
            .iter()
            .any(|r| r.state == State::Uploading && same_file(&r.stat, &obs.stat))
        {
            continue;
        }
        let moved = vanished
            .iter()
            .position(|r| r.state != State::Uploading && same_file(&r.stat, &obs.stat));
        if let Some(i) = moved {
            let row = vanished.swap_remove(i);
            tracing::info!(from = %row.rel_path, to = %obs.rel_path, "file moved");
            store.move_file(row.id, root.id, &obs.rel_path, now)?;
            report.moved += 1;
        } else {
            adopt_or_insert(ctx, root, obs, now, &mut report)?;
        }
    }
    for row in vanished {
        match row.state {
            // Still being sent from an open descriptor; the uploader decides.
            State::Uploading => {}
            // What the host or the user decided stays decided: a DMCA'd,
            // refused or remotely deleted file that comes back unchanged
            // must not turn into an upload.
            State::Dmca | State::Failed | State::RemoteDeleted => {}
            State::Waiting | State::Queued
                if row.file_code.is_none()
                    && row.unknown_since.is_none()
                    && row.fld_id.is_none() =>
            {
                // Never left this machine: nothing to remember.
                store.forget(row.id)?;
                report.deleted += 1;
            }
            _ => {
                store.set_state(row.id, State::LocalDeleted, now, Some("deleted locally"))?;
                report.deleted += 1;
            }
        }
    }
    // A full walk: files held back as incomplete are judged again.
    settle(ctx, settled, |_| true, now, &mut report)?;
    Ok(report)
}

/// A file at a path no row of this root has. Known by its inode elsewhere
/// (moved from another sync root, or back after it had gone), it keeps its
/// record and its file code; a second name of a file still present (a hard
/// link) is the same video and is not uploaded again; otherwise it is new.
fn adopt_or_insert(
    ctx: &Context,
    root: &Root,
    obs: &Observed,
    now: i64,
    report: &mut ScanReport,
) -> Result<(), StoreError> {
    let store = &ctx.store;
    let same: Vec<FileRow> = store
        .by_inode(obs.stat.dev, obs.stat.ino)?
        .into_iter()
        .filter(|r| same_file(&r.stat, &obs.stat))
        .collect();
    if same.iter().any(|r| r.state == State::Uploading) {
        // Being sent under another name right now: decide afterwards.
        return Ok(());
    }
    // Still there under its recorded path (same device and inode): this is
    // a second name. Gone, or another file there now: it moved here.
    let at_its_path = |r: &FileRow| {
        std::fs::symlink_metadata(r.path())
            .map(|md| {
                let st = Stat::of(&md);
                st.dev == r.stat.dev && st.ino == r.stat.ino
            })
            .unwrap_or(false)
    };
    if let Some(r) = same
        .iter()
        .find(|r| r.state == State::LocalDeleted || !at_its_path(r))
    {
        tracing::info!(from = %r.path().display(), to = %root.entry.local.join(&obs.rel_path).display(), "known file came back or moved between sync folders");
        let came_back = r.state == State::LocalDeleted;
        store.move_file(r.id, root.id, &obs.rel_path, now)?;
        if came_back {
            store.reappeared(r.id, now)?;
        } else if r.root_id != root.id {
            store.mark_misplaced(r.id)?;
        }
        report.moved += 1;
        return Ok(());
    }
    if let Some(r) = same.first() {
        tracing::debug!(path = %obs.rel_path, same_as = %r.path().display(), "a second name (hard link) of a tracked file; not uploaded again");
        return Ok(());
    }
    store.insert_file(root.id, &obs.rel_path, obs.stat, now)?;
    report.new += 1;
    report.waiting += 1;
    Ok(())
}

/// A tracked file seen on disk at its recorded path: note a change, bring
/// back a file that had vanished. True when it is waiting and has settled:
/// the caller queues it if nothing says it is incomplete (`settle`).
fn apply_existing(
    ctx: &Context,
    writers: &Writers,
    root: &Root,
    row: &FileRow,
    obs: &Observed,
    now: i64,
    report: &mut ScanReport,
) -> Result<bool, StoreError> {
    let store = &ctx.store;
    let settle = ctx.config.watch.settle;
    // Content changes show in size or mtime. A new inode alone (a copy
    // to a new disk, a restore from backup with times kept) is the same
    // video: record it, upload nothing.
    let changed = row.stat.size != obs.stat.size || row.stat.mtime_ns != obs.stat.mtime_ns;
    let relocated = row.stat.ino != obs.stat.ino || row.stat.dev != obs.stat.dev;
    match row.state {
        // The uploader owns an uploading row; it re-checks the file itself.
        State::Uploading => return Ok(false),
        // A DMCA'd file is never uploaded again automatically.
        State::Dmca => {}
        State::LocalDeleted if !changed => {
            store.reappeared(row.id, now)?;
            report.reappeared += 1;
        }
        _ if changed => {
            store.file_changed(row.id, obs.stat, now)?;
            report.changed += 1;
            report.waiting += 1;
            return Ok(false);
        }
        State::Waiting => {
            let open = writers.is_open(&root.entry.local.join(&row.rel_path));
            if relocated {
                store.update_stat(row.id, obs.stat)?;
            }
            if engine::is_complete(row.stable_since, now, settle, open) {
                return Ok(true);
            }
            report.waiting += 1;
            return Ok(false);
        }
        _ => {}
    }
    if relocated && !changed {
        store.update_stat(row.id, obs.stat)?;
    }
    Ok(false)
}

/// Settled files: queue those nothing says are incomplete; hold back the
/// others with the reason (`waiting`, the reason as their error). A file
/// already held back is looked at again only when `recheck` says so (a
/// full walk, or an event on it), not on every tick: the checks read the
/// file and sweep /proc.
fn settle(
    ctx: &Context,
    settled: Vec<FileRow>,
    recheck: impl Fn(&Path) -> bool,
    now: i64,
    report: &mut ScanReport,
) -> Result<(), StoreError> {
    let store = &ctx.store;
    let verify = ctx.config.watch.verify == crate::config::Verify::Structure;
    let mut check = Vec::new();
    for row in settled {
        if !verify || row.force_upload {
            store.queue(row.id, now)?;
            report.queued += 1;
        } else if row.incomplete.is_some() && !recheck(&row.path()) {
            report.waiting += 1;
        } else {
            check.push(row);
        }
    }
    if check.is_empty() {
        return Ok(());
    }
    let paths: HashSet<PathBuf> = check.iter().map(|r| r.path()).collect();
    let mut writers = evidence::writers_of(&paths);
    let found = evidence::facts_of_all(&check);
    for (row, facts) in check.into_iter().zip(found) {
        let path = row.path();
        let facts = match facts {
            Ok(mut f) => {
                f.writers = writers.remove(&path).unwrap_or_default();
                f
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                // Vanished or changed while being read: the next pass sees.
                tracing::debug!(path = %path.display(), error = %e, "cannot read to check completeness");
                report.waiting += 1;
                continue;
            }
            Err(e) => {
                // Unreadable (permissions): no evidence either way. It is
                // queued as before the checks existed; the upload names the
                // error (holding it here would keep `scan` waiting for ever).
                tracing::debug!(path = %path.display(), error = %e, "cannot read to check completeness; no claim");
                store.queue(row.id, now)?;
                report.queued += 1;
                continue;
            }
        };
        match engine::evidence::assess(&facts) {
            None => {
                store.queue(row.id, now)?;
                report.queued += 1;
            }
            Some(reason) => {
                if store.hold_incomplete(row.id, &reason, now)? {
                    tracing::info!(path = %path.display(), reason = %reason, "not uploaded yet: the file is not complete");
                }
                report.waiting += 1;
            }
        }
    }
    Ok(())
}

/// A targeted pass over some files of a root (those inotify saw written,
/// and those settling): stat just them, no walk. Anything that needs the
/// whole picture (a file gone: deleted or moved?) asks for a full scan.
pub fn scan_paths(
    ctx: &Context,
    writers: &Writers,
    root: &Root,
    touched: &HashSet<PathBuf>,
    settling: &HashSet<PathBuf>,
) -> Result<ScanReport, StoreError> {
    let now = now_ms();
    let mut report = ScanReport::default();
    let mut settled: Vec<FileRow> = Vec::new();
    for p in touched.union(settling) {
        let Some(rel) = p
            .strip_prefix(&root.entry.local)
            .ok()
            .and_then(|r| r.to_str())
            .filter(|r| !r.is_empty())
        else {
            continue;
        };
        // The file, and every directory above it, must be one the walk
        // would enter.
        let mut dir = rel_dir_of(rel);
        let mut wanted = root.filter.wants_file(rel);
        while wanted && !dir.is_empty() {
            wanted = root.filter.wants_dir(dir);
            dir = rel_dir_of(dir);
        }
        if !wanted || ctx.renames.holds_back(root.id, rel) {
            continue;
        }
        let md = match p.symlink_metadata() {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                ctx.request_rescan(root.id);
                continue;
            }
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "cannot stat");
                continue;
            }
        };
        if !md.file_type().is_file() {
            continue;
        }
        let obs = Observed {
            rel_path: rel.to_string(),
            stat: Stat::of(&md),
        };
        match ctx.store.file_by_path(root.id, rel)? {
            // Another file now at a tracked path: a rename over it, or a
            // move and a replacement. That needs the whole picture.
            Some(row) if row.stat.ino != obs.stat.ino || row.stat.dev != obs.stat.dev => {
                ctx.request_rescan(root.id);
            }
            Some(row) => {
                if apply_existing(ctx, writers, root, &row, &obs, now, &mut report)? {
                    settled.push(row);
                }
            }
            None => adopt_or_insert(ctx, root, &obs, now, &mut report)?,
        }
    }
    // A file held back as incomplete is judged again when an event names it.
    settle(ctx, settled, |p| touched.contains(p), now, &mut report)?;
    if report.queued > 0 {
        ctx.host.wake.notify_waiters();
    }
    if report.moved > 0 || report.reappeared > 0 {
        // A file came back or moved: its place on the host may need fixing.
        ctx.fixups.notify_one();
    }
    Ok(report)
}

/// A remembered directory whose path is gone while a new directory has its
/// inode was renamed or moved: the fix-up task renames its remote folder.
/// Returns those renames (old dir, new dir). Pure store work.
fn detect_renames(ctx: &Context, root: &Root, walked: &Walk) -> Result<Vec<DirRename>, StoreError> {
    let mut pending = Vec::new();
    let known = ctx.store.folders(root.id)?;
    let present: HashMap<&str, u64> = walked.dirs.iter().map(|(d, i)| (d.as_str(), *i)).collect();
    let unreadable = |rel: &str| {
        walked
            .unreadable
            .iter()
            .any(|d| rel == d || is_under(rel, d))
    };
    for (rel_dir, _fld_id, ino) in known {
        let (Some(ino), false) = (ino, rel_dir.is_empty()) else {
            continue;
        };
        if present.contains_key(rel_dir.as_str()) || unreadable(&rel_dir) {
            continue;
        }
        let Some((new_dir, _)) = walked.dirs.iter().find(|(d, i)| {
            *i == ino && !d.is_empty() && ctx.store.folder(root.id, d).ok().flatten().is_none()
        }) else {
            // Gone for good: forget the inode, or a new directory that gets
            // it from the filesystem later would pass for a rename.
            ctx.store.clear_folder_ino(root.id, &rel_dir)?;
            continue;
        };
        pending.push(DirRename {
            old: rel_dir,
            new: new_dir.clone(),
        });
    }
    Ok(pending)
}
