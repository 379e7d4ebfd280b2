//! The row types the store hands out: a file's `State` (part of the
//! `list --json` interface), its `Stat`, and one struct per kind of row.

use std::fmt;
use std::path::PathBuf;

/// Where a tracked file stands. The names are part of the `list --json`
/// interface: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Seen, not yet complete (still changing, or not settled yet).
    Waiting,
    Queued,
    Uploading,
    Uploaded,
    Failed,
    RemoteDeleted,
    Dmca,
    LocalDeleted,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Waiting,
        State::Queued,
        State::Uploading,
        State::Uploaded,
        State::Failed,
        State::RemoteDeleted,
        State::Dmca,
        State::LocalDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Queued => "queued",
            State::Uploading => "uploading",
            State::Uploaded => "uploaded",
            State::Failed => "failed",
            State::RemoteDeleted => "remote_deleted",
            State::Dmca => "dmca",
            State::LocalDeleted => "local_deleted",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which queued file goes up first (`[upload] order`): with API calls
/// rationed, the order decides what is online by tonight. Files whose retry
/// is not due yet wait whatever the order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueOrder {
    /// The oldest file (by modification time) first: a library's backlog in
    /// the order it was made.
    #[default]
    Oldest,
    /// The newest first: what was just downloaded is what viewers want.
    Newest,
    /// The smallest first: the most files per hour on a slow line.
    Smallest,
}

impl QueueOrder {
    /// The SQL ORDER BY of each order (ties: the file seen first).
    pub(crate) fn sql(self) -> &'static str {
        match self {
            QueueOrder::Oldest => "f.mtime_ns, f.id",
            QueueOrder::Newest => "f.mtime_ns DESC, f.id",
            QueueOrder::Smallest => "f.size, f.id",
        }
    }
}

/// Add `more` (files per state) into `total`: the counts of a library whose
/// files go to several hosts (a file going to two counts twice).
pub fn add_counts(total: &mut Vec<(State, u64)>, more: &[(State, u64)]) {
    for (state, n) in more {
        match total.iter_mut().find(|(s, _)| s == state) {
            Some((_, m)) => *m += n,
            None => total.push((*state, *n)),
        }
    }
}

/// What the filesystem says about a file, enough to know whether it changed
/// and to recognise it after a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    pub mtime_ns: i64,
    pub dev: u64,
    pub ino: u64,
}

impl Stat {
    /// The stat of a file as the store records it.
    pub fn of(md: &std::fs::Metadata) -> Stat {
        use std::os::unix::fs::MetadataExt;
        Stat {
            size: md.len(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            dev: md.dev(),
            ino: md.ino(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RootRow {
    pub id: i64,
    pub local: PathBuf,
    pub remote: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileRow {
    pub id: i64,
    pub root_id: i64,
    pub root: PathBuf,
    /// Relative to the root, '/'-separated.
    pub rel_path: String,
    pub stat: Stat,
    pub state: State,
    pub file_code: Option<String>,
    pub fld_id: Option<u64>,
    pub title: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<i64>,
    /// Start of the earliest upload attempt whose outcome is unknown (lost
    /// reply, crash): the host must be searched from then on before any new
    /// upload of this file.
    pub unknown_since: Option<i64>,
    pub first_seen_at: i64,
    pub stable_since: i64,
    pub updated_at: i64,
    pub playable: Option<bool>,
    pub encoding: Option<String>,
    pub deleted_by: Option<String>,
    /// Deletion time (remote_deleted) or scheduled deletion time (dmca), as the host wrote it.
    pub remote_event_at: Option<String>,
    /// The relative path the file had when it was last placed on the host.
    pub placed_path: Option<String>,
    pub encoding_progress: Option<u32>,
    /// Why a waiting file is held back as not complete yet (holes, its
    /// container cut short, a writer); None when nothing says so.
    pub incomplete: Option<String>,
    /// The user said to upload it anyway (`vidsync retry PATH`): no
    /// completeness check holds it back until its content changes.
    pub force_upload: bool,
}

impl FileRow {
    pub fn path(&self) -> PathBuf {
        self.root.join(&self.rel_path)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub at: i64,
    pub event: String,
    pub file_code: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub file_id: i64,
    pub path: PathBuf,
    pub sent: u64,
    pub total: u64,
    pub started_at: i64,
    pub updated_at: i64,
    /// Bytes per second over the last few seconds.
    pub rate: u64,
}
