//! notify (inotify) -> "this root changed" hints for the scanner, and which
//! files are still open for writing. Falls back to polling per root when
//! inotify cannot be used (the watch limit, or `mode = "poll"`).
//!
//! Events are hints, never the truth: the scanner re-stats and compares
//! with the store, so a lost or coalesced event costs a delay, not a file.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};

use crate::config::WatchMode;
use crate::daemon::Shared;

/// The current inotify watch limit, for the log line that tells the admin
/// which sysctl to raise.
fn max_user_watches() -> String {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Is this error the watch limit? notify reports ENOSPC (Linux error 28,
/// "No space left on device") from inotify_add_watch as `MaxFilesWatch` or
/// as that raw I/O error: it means "too many watches", not a full disk.
fn is_watch_limit(e: &notify::Error) -> bool {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => true,
        notify::ErrorKind::Io(io) => io.raw_os_error() == Some(28),
        _ => false,
    }
}

/// Start watching every root. Roots that cannot be watched are added to
/// `poll_roots` (the scanner polls them). The returned watcher must be kept
/// alive for as long as events are wanted.
pub fn start(
    shared: &Arc<Shared>,
    poll_roots: &Arc<Mutex<HashSet<i64>>>,
) -> Option<notify::RecommendedWatcher> {
    let mode = shared.config.watch.mode;
    let poll_all = |why: &str| {
        let mut p = poll_roots.lock().unwrap_or_else(|e| e.into_inner());
        for r in &shared.roots {
            p.insert(r.id);
        }
        tracing::info!(reason = why, interval = ?shared.config.watch.poll_interval, "polling every sync folder");
    };
    if mode == WatchMode::Poll {
        poll_all("watch.mode = \"poll\"");
        return None;
    }
    let weak = Arc::downgrade(shared);
    let handler = move |res: notify::Result<notify::Event>| {
        let Some(shared) = weak.upgrade() else { return };
        match res {
            Ok(ev) => handle(&shared, &ev),
            Err(e) => {
                // Typically a queue overflow: rescan everything.
                tracing::warn!(error = %e, "watch error; rescanning");
                shared.forget_writers();
                shared.request_rescan_all();
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start inotify; falling back to polling");
            poll_all("inotify unavailable");
            return None;
        }
    };
    for root in &shared.roots {
        if let Err(e) = watcher.watch(&root.entry.local, RecursiveMode::Recursive) {
            if is_watch_limit(&e) {
                tracing::warn!(
                    root = %root.entry.local.display(),
                    max_user_watches = %max_user_watches(),
                    "too many inotify watches: raise the sysctl fs.inotify.max_user_watches (now {}); polling this folder instead",
                    max_user_watches()
                );
            } else {
                tracing::warn!(root = %root.entry.local.display(), error = %e, "cannot watch; polling this folder instead");
            }
            poll_roots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(root.id);
        }
    }
    Some(watcher)
}

fn handle(shared: &Shared, ev: &notify::Event) {
    if ev.need_rescan() {
        shared.forget_writers();
        shared.request_rescan_all();
        return;
    }
    for path in &ev.paths {
        match ev.kind {
            EventKind::Create(CreateKind::File) => shared.mark_writing(path, false),
            EventKind::Modify(ModifyKind::Data(_)) => shared.mark_writing(path, true),
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_)) => shared.mark_closed(path),
            // Opening and reading (our own upload reads) change nothing.
            EventKind::Access(_) => continue,
            _ => {}
        }
        if let Some(root) = shared.root_of(path) {
            shared.request_rescan(root.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_28_from_inotify_means_the_watch_limit_not_a_full_disk() {
        let enospc = notify::Error::io(std::io::Error::from_raw_os_error(28));
        assert!(is_watch_limit(&enospc));
        assert!(is_watch_limit(&notify::Error::new(
            notify::ErrorKind::MaxFilesWatch
        )));
        let other = notify::Error::io(std::io::Error::from_raw_os_error(13));
        assert!(!is_watch_limit(&other));
        assert!(!is_watch_limit(&notify::Error::path_not_found()));
    }

    #[test]
    fn the_limit_is_read_from_proc() {
        let v = max_user_watches();
        assert!(v == "unknown" || v.parse::<u64>().is_ok(), "{v}");
    }
}
