//! notify (inotify) -> `Hint`s for the scanner, sent on its channel: the
//! callback only converts events (no SQL, no shared state on notify's
//! thread). Falls back to polling per root when inotify cannot be used
//! (the watch limit, a network filesystem, or `mode = "poll"`).
//!
//! Events are hints, never the truth: the scanner re-stats and compares
//! with the store, so a lost or coalesced event costs a delay, not a file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};

use crate::config::WatchMode;
use crate::context::{Context, Hint, HintSender};

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

/// Start watching the sync folders of every host (each folder once, however
/// many hosts it goes to); events become hints for each host's scanner.
/// Returns the watcher (keep it alive for as long as events are wanted) and
/// the folders to poll instead (they could not be watched).
pub fn start(
    ctxs: &[std::sync::Arc<Context>],
) -> (Option<notify::RecommendedWatcher>, HashSet<PathBuf>) {
    let Some(first) = ctxs.first() else {
        return (None, HashSet::new());
    };
    let mode = first.config.watch.mode;
    let interval = first.config.watch.poll_interval;
    let mut roots: Vec<PathBuf> = Vec::new();
    for r in ctxs.iter().flat_map(|c| c.roots.iter()) {
        if !roots.contains(&r.entry.local) {
            roots.push(r.entry.local.clone());
        }
    }
    let all: HashSet<PathBuf> = roots.iter().cloned().collect();
    let poll_all = |why: &str| {
        tracing::info!(reason = why, interval = ?interval, "polling every sync folder");
        (None, all.clone())
    };
    if mode == WatchMode::Poll {
        return poll_all("watch.mode = \"poll\"");
    }
    let hints = Fan(ctxs.iter().map(|c| c.hints.clone()).collect());
    let watched = roots.clone();
    // Roots already reported as polled (the warning is given once).
    let mut polled: HashSet<PathBuf> = HashSet::new();
    let mut throttle = Throttle::default();
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(ev) => convert(&ev, &hints, &mut throttle, Instant::now()),
        // A directory created later could not be watched: the limit was
        // reached while running. Its root is polled from now on.
        Err(e) if is_watch_limit(&e) => {
            let hit: Vec<PathBuf> = watched
                .iter()
                .filter(|local| e.paths.is_empty() || e.paths.iter().any(|x| x.starts_with(local)))
                .cloned()
                .collect();
            for local in &hit {
                if polled.insert(local.clone()) {
                    tracing::warn!(
                        root = %local.display(),
                        "too many inotify watches: raise the sysctl fs.inotify.max_user_watches (now {}); polling this folder instead",
                        max_user_watches()
                    );
                }
            }
            hints.send(Hint::Poll(hit));
        }
        Err(e) => {
            // Typically a queue overflow: rescan everything.
            tracing::warn!(error = %e, "watch error; rescanning");
            hints.send(Hint::Overflow);
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start inotify; falling back to polling");
            return poll_all("inotify unavailable");
        }
    };
    let mut poll = HashSet::new();
    for local in &roots {
        if mode == WatchMode::Auto
            && let Some(fs) = network_fs(local)
        {
            tracing::info!(
                root = %local.display(),
                filesystem = %fs,
                interval = ?interval,
                "sync folder is on a network filesystem: changes made on other machines send no inotify events; polling it"
            );
            poll.insert(local.clone());
            continue;
        }
        if let Err(e) = watcher.watch(local, RecursiveMode::Recursive) {
            if is_watch_limit(&e) {
                tracing::warn!(
                    root = %local.display(),
                    max_user_watches = %max_user_watches(),
                    "too many inotify watches: raise the sysctl fs.inotify.max_user_watches (now {}); polling this folder instead",
                    max_user_watches()
                );
            } else {
                tracing::warn!(root = %local.display(), error = %e, "cannot watch; polling this folder instead");
            }
            poll.insert(local.clone());
        }
    }
    (Some(watcher), poll)
}

/// Every host's scanner hears every event: each one decides for its own
/// roots.
struct Fan(Vec<HintSender>);

/// Where converted events go: one scanner's channel, or every host's.
trait Sink {
    fn send(&self, hint: Hint);
}

impl Sink for HintSender {
    fn send(&self, hint: Hint) {
        HintSender::send(self, hint)
    }
}

impl Sink for Fan {
    fn send(&self, hint: Hint) {
        if let [one] = self.0.as_slice() {
            one.send(hint);
            return;
        }
        for h in &self.0 {
            h.send(hint.clone());
        }
    }
}

/// How often a file being written is reported again: inotify sends an
/// event per `write()` (thousands a second for a fast copy), and one hint a
/// second per file keeps its writer mark fresh (also after an overflow made
/// the scanner forget it) without flooding the channel.
const WRITING_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// The files recently reported as being written, and when.
#[derive(Debug, Default)]
struct Throttle {
    sent: HashMap<PathBuf, Instant>,
}

impl Throttle {
    /// Report this write now?
    fn writing(&mut self, path: &Path, now: Instant) -> bool {
        if self
            .sent
            .get(path)
            .is_some_and(|at| now.duration_since(*at) < WRITING_AGAIN_AFTER)
        {
            return false;
        }
        if self.sent.len() > 10_000 {
            self.sent
                .retain(|_, at| now.duration_since(*at) < WRITING_AGAIN_AFTER);
        }
        self.sent.insert(path.to_path_buf(), now);
        true
    }

    /// Closed, removed or renamed: the next write is news again.
    fn done(&mut self, path: &Path) {
        self.sent.retain(|p, _| !p.starts_with(path));
    }
}

/// One inotify event -> hints. Content events concern one file (a targeted
/// pass); a rename or removal is looked at by the scanner (one file renamed
/// into place, or the tree changed); anything else changes the tree.
fn convert(ev: &notify::Event, hints: &impl Sink, throttle: &mut Throttle, now: Instant) {
    if ev.need_rescan() {
        hints.send(Hint::Overflow);
        return;
    }
    for path in &ev.paths {
        let hint = match ev.kind {
            EventKind::Create(CreateKind::File) => Hint::Writing {
                path: path.clone(),
                written: false,
            },
            EventKind::Modify(ModifyKind::Data(_)) => {
                if !throttle.writing(path, now) {
                    continue;
                }
                Hint::Writing {
                    path: path.clone(),
                    written: true,
                }
            }
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                throttle.done(path);
                Hint::Closed(path.clone())
            }
            EventKind::Modify(ModifyKind::Metadata(_)) => Hint::Touched(path.clone()),
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                throttle.done(path);
                Hint::Renamed(path.clone())
            }
            // Opening and reading (our own upload reads) change nothing.
            EventKind::Access(_) => continue,
            _ => Hint::Tree(path.clone()),
        };
        hints.send(hint);
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
    fn a_burst_of_writes_is_one_hint_a_second_and_a_close_is_always_sent() {
        let (tx, mut rx) = crate::context::hints::channel();
        let mut t = Throttle::default();
        let path = PathBuf::from("/m/a.mp4");
        let write = notify::Event::new(EventKind::Modify(ModifyKind::Data(
            notify::event::DataChange::Any,
        )))
        .add_path(path.clone());
        let close = notify::Event::new(EventKind::Access(AccessKind::Close(AccessMode::Write)))
            .add_path(path.clone());
        let t0 = Instant::now();
        for i in 0..1000 {
            convert(&write, &tx, &mut t, t0 + Duration::from_micros(i));
        }
        assert_eq!(rx.drain().len(), 1, "a burst of writes is one hint");
        convert(&write, &tx, &mut t, t0 + Duration::from_millis(1500));
        assert_eq!(rx.drain().len(), 1, "a write a second later is news again");
        convert(&close, &tx, &mut t, t0 + Duration::from_millis(1501));
        convert(&write, &tx, &mut t, t0 + Duration::from_millis(1502));
        let got = rx.drain();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], Hint::Closed(path.clone()));
        assert!(matches!(got[1], Hint::Writing { written: true, .. }));
    }

    #[test]
    fn the_limit_is_read_from_proc() {
        let v = max_user_watches();
        assert!(v == "unknown" || v.parse::<u64>().is_ok(), "{v}");
    }
}
