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

/// Filesystem types where inotify sees only local changes: files written by
/// another machine (the usual case for a NAS share) send no events.
const NETWORK_FS: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "9p",
    "afs",
    "ceph",
    "glusterfs",
    "lustre",
    "gpfs",
    "beegfs",
    "davfs",
    "virtiofs",
];

/// Undo the octal escapes of /proc/self/mountinfo (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The filesystem type of the mount holding `path`, from mountinfo text:
/// the longest mount point that is a prefix of the path.
pub fn fs_type_in(mountinfo: &str, path: &std::path::Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount), Some(fstype)) = (fields.get(4), fields.get(sep + 1)) else {
            continue;
        };
        let mount = unescape_mount(mount);
        if path.starts_with(&mount) && best.as_ref().is_none_or(|(len, _)| mount.len() >= *len) {
            best = Some((mount.len(), (*fstype).to_string()));
        }
    }
    best.map(|(_, t)| t)
}

/// A network or FUSE filesystem under `path`, if it is on one.
fn network_fs(path: &std::path::Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let t = fs_type_in(&info, path)?;
    (NETWORK_FS.contains(&t.as_str()) || t.starts_with("fuse")).then_some(t)
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
    let polled = poll_roots.clone();
    let handler = move |res: notify::Result<notify::Event>| {
        let Some(shared) = weak.upgrade() else { return };
        match res {
            Ok(ev) => handle(&shared, &ev),
            // A directory created later could not be watched: the limit was
            // reached while running. Its root is polled from now on.
            Err(e) if is_watch_limit(&e) => {
                let mut p = polled.lock().unwrap_or_else(|e| e.into_inner());
                for root in &shared.roots {
                    let hit = e.paths.is_empty()
                        || e.paths.iter().any(|x| x.starts_with(&root.entry.local));
                    if hit && p.insert(root.id) {
                        tracing::warn!(
                            root = %root.entry.local.display(),
                            "too many inotify watches: raise the sysctl fs.inotify.max_user_watches (now {}); polling this folder instead",
                            max_user_watches()
                        );
                    }
                }
                drop(p);
                shared.request_rescan_all();
            }
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
        if mode == WatchMode::Auto
            && let Some(fs) = network_fs(&root.entry.local)
        {
            tracing::info!(
                root = %root.entry.local.display(),
                filesystem = %fs,
                interval = ?shared.config.watch.poll_interval,
                "sync folder is on a network filesystem: changes made on other machines send no inotify events; polling it"
            );
            poll_roots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(root.id);
            continue;
        }
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

/// Was anything tracked at or below this path (now gone)? If not, its
/// disappearance changes nothing (a finished `x.mkv.part`, an rsync
/// temporary, a folder of other files).
fn tracked_at_or_under(
    shared: &Shared,
    root_id: i64,
    root: &std::path::Path,
    path: &std::path::Path,
) -> bool {
    let Some(rel) = path.strip_prefix(root).ok().and_then(|r| r.to_str()) else {
        return true;
    };
    // When in doubt (a database error), look.
    shared.store.has_at_or_under(root_id, rel).unwrap_or(true)
}

fn handle(shared: &Shared, ev: &notify::Event) {
    if ev.need_rescan() {
        shared.forget_writers();
        shared.request_rescan_all();
        return;
    }
    for path in &ev.paths {
        let Some(root) = shared.root_of(path) else {
            continue;
        };
        // Content events concern one file: a targeted pass. Everything
        // else (a new or renamed directory, a rename, a deletion) changes
        // the tree: a full walk of the root, which can match moves.
        match ev.kind {
            EventKind::Create(CreateKind::File) => {
                shared.mark_writing(path, false);
                shared.touch(root.id, path);
            }
            EventKind::Modify(ModifyKind::Data(_)) => {
                shared.mark_writing(path, true);
                shared.touch(root.id, path);
            }
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                shared.mark_closed(path);
                shared.touch(root.id, path);
            }
            EventKind::Modify(ModifyKind::Metadata(_)) => shared.touch(root.id, path),
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                // Marks under a renamed or removed directory go with it.
                shared.mark_closed_under(path);
                match std::fs::symlink_metadata(path) {
                    // A file renamed into place (a finished download, an
                    // rsync temporary): one file to look at. Where it came
                    // from is found by its inode.
                    Ok(md) if md.file_type().is_file() => shared.touch(root.id, path),
                    // Gone, and nothing tracked was there: nothing to do.
                    Err(_) if !tracked_at_or_under(shared, root.id, &root.entry.local, path) => {}
                    // A directory, or a tracked name gone: the tree changed.
                    _ => shared.request_rescan(root.id),
                }
            }
            // Opening and reading (our own upload reads) change nothing.
            EventKind::Access(_) => {}
            _ => shared.request_rescan(root.id),
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
    fn the_filesystem_of_a_path_comes_from_the_longest_mount_point() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:50 / /srv/nas rw,relatime shared:20 - nfs4 nas:/export rw,vers=4.2
41 22 0:51 / /srv/my\\040share rw shared:21 - cifs //nas/share rw
42 22 0:52 / /mnt/fuse rw - fuse.sshfs host:/ rw
";
        let cases = [
            ("/home/x/Videos", Some("ext4")),
            ("/srv/nas/Movies", Some("nfs4")),
            ("/srv/nasty", Some("ext4")),
            ("/srv/my share/a", Some("cifs")),
            ("/mnt/fuse/x", Some("fuse.sshfs")),
        ];
        for (path, want) in cases {
            assert_eq!(
                fs_type_in(info, std::path::Path::new(path)).as_deref(),
                want,
                "{path}"
            );
        }
    }

    #[test]
    fn the_limit_is_read_from_proc() {
        let v = max_user_watches();
        assert!(v == "unknown" || v.parse::<u64>().is_ok(), "{v}");
    }
}
