//! The only SQL in vidsync: schema, append-only migrations, typed queries.
//!
//! The store is both the queue and the memory of the daemon: every state
//! change is one transaction, so a crash at any instant leaves a database that
//! a restart can resume from. Times are unix milliseconds passed in by the
//! caller (one clock, chosen by the daemon), which keeps this module free of
//! hidden time and easy to test.

mod migrations;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, params};

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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {}: {what}: {source}", path.display())]
    Sql {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "database {}: written by a newer vidsync (schema {found}, this one knows {known})",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "database {}: schema {found} is older than this vidsync's ({known}); run `vidsync run` or `vidsync scan` once to upgrade it",
        path.display()
    )]
    TooOld {
        path: PathBuf,
        found: i64,
        known: i64,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

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

/// The one owner of the SQLite connection.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

const FILE_COLUMNS: &str = "f.id, f.root_id, r.local, f.rel_path, f.size, f.mtime_ns, f.dev, f.ino, \
     f.state, f.file_code, f.fld_id, f.title, f.attempts, f.last_error, f.next_attempt_at, \
     f.unknown_since, f.first_seen_at, f.stable_since, f.updated_at, f.playable, f.encoding, \
     f.deleted_by, f.remote_event_at, f.placed_path, f.encoding_progress";

impl Store {
    /// Open (creating if needed) the database and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                what: "creating the database directory",
                source,
            })?;
        }
        let sql = |what| {
            let path = path.to_path_buf();
            move |source| StoreError::Sql { path, what, source }
        };
        let mut conn = Connection::open(path).map_err(sql("opening"))?;
        // WAL lets `status` and `list` read while the daemon writes;
        // synchronous=NORMAL is durable across process crashes in WAL mode.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql("enabling WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql("setting synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql("enabling foreign keys"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql("setting busy timeout"))?;
        migrations::migrate(&mut conn, path)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// Open an existing database for the commands that look at it beside a
    /// running daemon (`status`, `list`, `retry`): never create it, never
    /// migrate it (a new binary's `status` must not upgrade the schema under
    /// an old daemon), and refuse a schema other than this build's.
    pub fn open_existing(path: &Path) -> Result<Store> {
        let sql = |what| {
            let path = path.to_path_buf();
            move |source| StoreError::Sql { path, what, source }
        };
        if !path.exists() {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                what: "opening the database (has `vidsync run` or `scan` run yet?)",
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql("opening"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql("setting busy timeout"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql("enabling foreign keys"))?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql("reading the schema version"))?;
        let known = migrations::known();
        if found > known {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                known,
            });
        }
        if found < known {
            return Err(StoreError::TooOld {
                path: path.to_path_buf(),
                found,
                known,
            });
        }
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sql {
            path: self.path.clone(),
            what,
            source,
        }
    }

    /// Run `f` in one transaction: all of it lands, or none.
    fn tx<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn();
        // IMMEDIATE: take the write lock first. Many changes read then
        // write; a deferred transaction could find its snapshot stale when
        // another process (`vidsync retry`) wrote meanwhile, an error the
        // busy timeout does not cover.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err(what))?;
        let out = f(&tx).map_err(self.err(what))?;
        tx.commit().map_err(self.err(what))?;
        Ok(out)
    }

    // ---- roots and folders ----

    /// The id of a sync root, registering it on first sight.
    pub fn ensure_root(&self, local: &Path, remote: &str) -> Result<i64> {
        let local_s = path_text(local);
        self.tx("registering a sync root", |tx| {
            // A new remote path: the remembered folders belong to the old
            // one. New uploads go to the new path (files already uploaded
            // stay where they are on the host).
            let old: Option<(i64, String)> = tx
                .query_row(
                    "SELECT id, remote FROM roots WHERE local = ?1",
                    params![local_s],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((id, old_remote)) = old
                && old_remote != remote
            {
                tx.execute("DELETE FROM folders WHERE root_id = ?1", params![id])?;
            }
            tx.execute(
                "INSERT INTO roots (local, remote) VALUES (?1, ?2)
                 ON CONFLICT(local) DO UPDATE SET remote = excluded.remote",
                params![local_s, remote],
            )?;
            tx.query_row(
                "SELECT id FROM roots WHERE local = ?1",
                params![local_s],
                |r| r.get(0),
            )
        })
    }

    pub fn roots(&self) -> Result<Vec<RootRow>> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT id, local, remote FROM roots ORDER BY id")
            .map_err(self.err("listing roots"))?;
        let rows = st
            .query_map([], |r| {
                Ok(RootRow {
                    id: r.get(0)?,
                    local: PathBuf::from(r.get::<_, String>(1)?),
                    remote: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(self.err("listing roots"))?;
        Ok(rows)
    }

    /// The remembered remote folder of a local directory ("" = the root).
    pub fn folder(&self, root_id: i64, rel_dir: &str) -> Result<Option<u64>> {
        self.conn()
            .query_row(
                "SELECT fld_id FROM folders WHERE root_id = ?1 AND rel_dir = ?2",
                params![root_id, rel_dir],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|o| o.map(|v| v as u64))
            .map_err(self.err("reading a folder"))
    }

    pub fn set_folder(
        &self,
        root_id: i64,
        rel_dir: &str,
        fld_id: u64,
        dir_ino: Option<u64>,
    ) -> Result<()> {
        self.tx("recording a folder", |tx| {
            tx.execute(
                "INSERT INTO folders (root_id, rel_dir, fld_id, ino) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(root_id, rel_dir) DO UPDATE SET fld_id = excluded.fld_id,
                 ino = COALESCE(excluded.ino, folders.ino)",
                params![root_id, rel_dir, fld_id as i64, dir_ino.map(|i| i as i64)],
            )?;
            Ok(())
        })
    }

    /// vidsync created this remote folder (it was empty then).
    pub fn note_created_folder(&self, fld_id: u64) -> Result<()> {
        self.tx("recording a created folder", |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO created_folders (fld_id) VALUES (?1)",
                params![fld_id as i64],
            )?;
            Ok(())
        })
    }

    /// Did vidsync create this remote folder?
    pub fn created_folder(&self, fld_id: u64) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM created_folders WHERE fld_id = ?1)",
                params![fld_id as i64],
                |r| r.get(0),
            )
            .map_err(self.err("reading created folders"))
    }

    /// All remembered folders of a root: (rel_dir, fld_id, dir inode).
    pub fn folders(&self, root_id: i64) -> Result<Vec<(String, u64, Option<u64>)>> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT rel_dir, fld_id, ino FROM folders WHERE root_id = ?1 ORDER BY rel_dir")
            .map_err(self.err("listing folders"))?;
        let rows = st
            .query_map(params![root_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(self.err("listing folders"))?;
        Ok(rows)
    }

    /// A local directory was renamed: move its folder rows and the rows of
    /// every file below it to the new relative path, in one transaction.
    pub fn rename_dir(&self, root_id: i64, from: &str, to: &str, now: i64) -> Result<()> {
        // substr(x, length(from) + 1) of "from/rest" is "/rest".
        self.tx("renaming a directory", |tx| {
            tx.execute(
                "UPDATE folders SET rel_dir = ?3 || substr(rel_dir, length(?2) + 1)
                 WHERE root_id = ?1 AND (rel_dir = ?2 OR substr(rel_dir, 1, length(?2) + 1) = ?2 || '/')",
                params![root_id, from, to],
            )?;
            tx.execute(
                "UPDATE files SET rel_path = ?3 || substr(rel_path, length(?2) + 1), updated_at = ?4
                 WHERE root_id = ?1 AND substr(rel_path, 1, length(?2) + 1) = ?2 || '/'",
                params![root_id, from, to, now],
            )?;
            // The remote folder was renamed with the directory: files in it
            // are where they belong without an edit of their own.
            tx.execute(
                "UPDATE files SET placed_path = ?3 || substr(placed_path, length(?2) + 1)
                 WHERE root_id = ?1 AND substr(placed_path, 1, length(?2) + 1) = ?2 || '/'",
                params![root_id, from, to],
            )?;
            Ok(())
        })
    }

    // ---- files ----

    fn file_from_row(r: &Row<'_>) -> rusqlite::Result<FileRow> {
        let state: String = r.get(8)?;
        Ok(FileRow {
            id: r.get(0)?,
            root_id: r.get(1)?,
            root: PathBuf::from(r.get::<_, String>(2)?),
            rel_path: r.get(3)?,
            stat: Stat {
                size: r.get::<_, i64>(4)? as u64,
                mtime_ns: r.get(5)?,
                dev: r.get::<_, i64>(6)? as u64,
                ino: r.get::<_, i64>(7)? as u64,
            },
            state: State::parse(&state).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    8,
                    rusqlite::types::Type::Text,
                    format!("unknown state {state:?}").into(),
                )
            })?,
            file_code: r.get(9)?,
            fld_id: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
            title: r.get(11)?,
            attempts: r.get::<_, i64>(12)? as u32,
            last_error: r.get(13)?,
            next_attempt_at: r.get(14)?,
            unknown_since: r.get(15)?,
            first_seen_at: r.get(16)?,
            stable_since: r.get(17)?,
            updated_at: r.get(18)?,
            playable: r.get::<_, Option<i64>>(19)?.map(|v| v != 0),
            encoding: r.get(20)?,
            deleted_by: r.get(21)?,
            remote_event_at: r.get(22)?,
            placed_path: r.get(23)?,
            encoding_progress: r.get::<_, Option<i64>>(24)?.map(|v| v as u32),
        })
    }

    fn query_files(
        &self,
        what: &'static str,
        where_sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<FileRow>> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files f JOIN roots r ON r.id = f.root_id {where_sql}"
        );
        let mut st = conn.prepare(&sql).map_err(self.err(what))?;
        let rows = st
            .query_map(args, Self::file_from_row)
            .and_then(|rows| rows.collect())
            .map_err(self.err(what))?;
        Ok(rows)
    }

    pub fn file(&self, id: i64) -> Result<Option<FileRow>> {
        Ok(self
            .query_files("reading a file", "WHERE f.id = ?1", &[&id])?
            .into_iter()
            .next())
    }

    pub fn file_by_path(&self, root_id: i64, rel_path: &str) -> Result<Option<FileRow>> {
        Ok(self
            .query_files(
                "reading a file",
                "WHERE f.root_id = ?1 AND f.rel_path = ?2",
                &[&root_id, &rel_path],
            )?
            .into_iter()
            .next())
    }

    pub fn files_in_root(&self, root_id: i64) -> Result<Vec<FileRow>> {
        self.query_files(
            "listing files",
            "WHERE f.root_id = ?1 ORDER BY f.rel_path",
            &[&root_id],
        )
    }

    /// Is this file code recorded for some file, now or in the history (an
    /// earlier version's code must not be adopted for a new version)?
    pub fn code_known(&self, code: &str) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM files WHERE file_code = ?1)
                     OR EXISTS(SELECT 1 FROM history WHERE file_code = ?1)",
                params![code],
                |r| r.get(0),
            )
            .map_err(self.err("looking up a file code"))
    }

    /// Has this file ever been sent or had a code on the host (any
    /// version)? Only a file never attempted may already be on the host
    /// from before the database (a lost database, another tool): a file
    /// sent before may have left an old version's copy there, which must
    /// not be adopted for new content.
    pub fn ever_attempted(&self, id: i64) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM files WHERE id = ?1
                                 AND (file_code IS NOT NULL OR unknown_since IS NOT NULL))
                     OR EXISTS(SELECT 1 FROM history WHERE file_id = ?1
                                 AND (file_code IS NOT NULL
                                      OR event IN ('upload_started', 'unknown_attempt_dropped')))",
                params![id],
                |r| r.get(0),
            )
            .map_err(self.err("reading a file's history"))
    }

    /// Files of one directory of a root that hold no code: each could own
    /// a copy on the host with the same title.
    pub fn codeless_in_dir(&self, root_id: i64, rel_dir: &str) -> Result<Vec<FileRow>> {
        let rows = self.query_files(
            "listing files without a code",
            "WHERE f.root_id = ?1 AND f.file_code IS NULL AND f.state NOT IN ('local_deleted') ORDER BY f.id",
            &[&root_id],
        )?;
        Ok(rows
            .into_iter()
            .filter(|r| crate::relpath::rel_dir_of(&r.rel_path) == rel_dir)
            .collect())
    }

    /// Adopt a copy found on the host for a file that is waiting in the
    /// queue (not being uploaded this instant, no code yet): the `adopt`
    /// command's way in, safe while the daemon runs. False if the row has
    /// moved on meanwhile.
    /// `claimed`: the caller is the upload worker that claimed the row
    /// (state `uploading`).
    #[allow(clippy::too_many_arguments)]
    pub fn adopt_if_idle(
        &self,
        id: i64,
        code: &str,
        fld_id: u64,
        title: &str,
        now: i64,
        how: &str,
        claimed: bool,
    ) -> Result<bool> {
        self.tx("adopting a file", |tx| {
            let states = if claimed {
                "('uploading')"
            } else {
                "('queued', 'waiting', 'failed')"
            };
            let n = tx.execute(
                &format!(
                    "UPDATE files SET state = 'uploaded', file_code = ?2, fld_id = ?3, title = ?5,
                   unknown_since = NULL, next_attempt_at = NULL, last_error = NULL,
                   playable = 0, encoding = NULL, encoding_progress = NULL,
                   deleted_by = NULL, remote_event_at = NULL,
                   placed_path = rel_path, updated_at = ?4
                 WHERE id = ?1 AND state IN {states} AND file_code IS NULL"
                ),
                params![id, code, fld_id as i64, now, title],
            )?;
            if n > 0 {
                history(tx, id, now, "uploaded", Some(code), Some(how))?;
            }
            Ok(n > 0)
        })
    }

    /// The files of a root still settling.
    pub fn waiting_in_root(&self, root_id: i64) -> Result<Vec<FileRow>> {
        self.query_files(
            "listing settling files",
            "WHERE f.root_id = ?1 AND f.state = 'waiting' ORDER BY f.id",
            &[&root_id],
        )
    }

    /// Every tracked file, optionally only those in one state.
    pub fn list(&self, state: Option<State>) -> Result<Vec<FileRow>> {
        match state {
            Some(s) => self.query_files(
                "listing files",
                "WHERE f.state = ?1 ORDER BY r.local, f.rel_path",
                &[&s.as_str()],
            ),
            None => self.query_files("listing files", "ORDER BY r.local, f.rel_path", &[]),
        }
    }

    /// Rows in one of the given states.
    pub fn in_states(&self, states: &[State]) -> Result<Vec<FileRow>> {
        let list = states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        self.query_files(
            "listing files",
            &format!("WHERE f.state IN ({list}) ORDER BY f.id"),
            &[],
        )
    }

    /// A file seen for the first time: `waiting` until it has settled.
    pub fn insert_file(&self, root_id: i64, rel_path: &str, stat: Stat, now: i64) -> Result<i64> {
        self.tx("recording a new file", |tx| {
            tx.execute(
                "INSERT INTO files (root_id, rel_path, size, mtime_ns, dev, ino, state,
                   first_seen_at, stable_since, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'waiting', ?7, ?7, ?7)",
                params![
                    root_id,
                    rel_path,
                    stat.size as i64,
                    stat.mtime_ns,
                    stat.dev as i64,
                    stat.ino as i64,
                    now
                ],
            )?;
            let id = tx.last_insert_rowid();
            history(
                tx,
                id,
                now,
                "seen",
                None,
                Some(&format!("{} bytes", stat.size)),
            )?;
            Ok(id)
        })
    }

    /// The file changed on disk. Before upload it goes back to `waiting`;
    /// after upload the old code goes to history and the new content will
    /// be uploaded as a new version.
    pub fn file_changed(&self, id: i64, stat: Stat, now: i64) -> Result<()> {
        self.tx("recording a change", |tx| {
            let (state, code): (String, Option<String>) = tx.query_row(
                "SELECT state, file_code FROM files WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let unknown: Option<i64> = tx.query_row(
                "SELECT unknown_since FROM files WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )?;
            if unknown.is_some() {
                // An attempt with a lost reply may have stored the old
                // content; searching for it now could adopt the old version
                // for the new one. The new content is uploaded; the note
                // says a stray copy of the old one may exist.
                history(
                    tx,
                    id,
                    now,
                    "unknown_attempt_dropped",
                    None,
                    Some("content changed after an upload whose reply was lost; the old version may be on the host"),
                )?;
            }
            let uploaded_before = code.is_some();
            if uploaded_before {
                history(
                    tx,
                    id,
                    now,
                    "replaced",
                    code.as_deref(),
                    Some(&format!("content changed while {state}; new version")),
                )?;
            }
            tx.execute(
                "UPDATE files SET size = ?2, mtime_ns = ?3, dev = ?4, ino = ?5,
                   state = CASE WHEN state IN ('dmca') THEN state ELSE 'waiting' END,
                   file_code = CASE WHEN state IN ('dmca') THEN file_code ELSE NULL END,
                   attempts = 0, last_error = NULL, next_attempt_at = NULL,
                   unknown_since = CASE WHEN state IN ('dmca') THEN unknown_since ELSE NULL END,
                   stable_since = ?6, updated_at = ?6, playable = NULL, encoding = NULL
                 WHERE id = ?1",
                params![
                    id,
                    stat.size as i64,
                    stat.mtime_ns,
                    stat.dev as i64,
                    stat.ino as i64,
                    now
                ],
            )?;
            Ok(())
        })
    }

    /// Set a state with a history line.
    pub fn set_state(&self, id: i64, state: State, now: i64, detail: Option<&str>) -> Result<()> {
        self.tx("changing a state", |tx| {
            tx.execute(
                "UPDATE files SET state = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, state.as_str(), now],
            )?;
            let code: Option<String> = tx.query_row(
                "SELECT file_code FROM files WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )?;
            history(tx, id, now, state.as_str(), code.as_deref(), detail)
        })
    }

    /// A waiting file has settled: queue it for upload.
    pub fn queue(&self, id: i64, now: i64) -> Result<()> {
        self.tx("queueing a file", |tx| {
            let n = tx.execute(
                "UPDATE files SET state = 'queued', next_attempt_at = NULL, updated_at = ?2
                 WHERE id = ?1 AND state = 'waiting'",
                params![id, now],
            )?;
            if n > 0 {
                history(tx, id, now, "queued", None, None)?;
            }
            Ok(())
        })
    }

    /// Take the next due queued file and mark it `uploading` (the attempt is
    /// recorded before anything is sent).
    pub fn claim_next(&self, now: i64, horizon: i64) -> Result<Option<FileRow>> {
        let conn = self.conn();
        let mut conn = conn;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err("claiming an upload"))?;
        // A retry scheduled beyond `horizon` (no delay is that long) was
        // scheduled by a clock that has since gone back: it is due now.
        let id: Option<i64> = tx
            .query_row(
                "SELECT f.id FROM files f WHERE f.state = 'queued'
                   AND (f.next_attempt_at IS NULL OR f.next_attempt_at <= ?1
                        OR f.next_attempt_at > ?2)
                 ORDER BY COALESCE(f.next_attempt_at, 0), f.id LIMIT 1",
                params![now, horizon],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err("claiming an upload"))?;
        let Some(id) = id else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE files SET state = 'uploading', updated_at = ?2 WHERE id = ?1",
            params![id, now],
        )
        .map_err(self.err("claiming an upload"))?;
        tx.commit().map_err(self.err("claiming an upload"))?;
        drop(conn);
        self.file(id)
    }

    /// Record that an upload request is about to be sent: from now until a
    /// definite answer, the file may exist on the host.
    pub fn begin_attempt(&self, id: i64, fld_id: u64, title: &str, now: i64) -> Result<()> {
        self.tx("recording an upload attempt", |tx| {
            tx.execute(
                "UPDATE files SET state = 'uploading', fld_id = ?2, title = ?3,
                   unknown_since = COALESCE(unknown_since, ?4), updated_at = ?4
                 WHERE id = ?1",
                params![id, fld_id as i64, title, now],
            )?;
            history(tx, id, now, "upload_started", None, None)
        })
    }

    /// The host has the file under `code` (from an upload reply, or adopted
    /// after a search).
    pub fn finish_uploaded(
        &self,
        id: i64,
        code: &str,
        fld_id: u64,
        now: i64,
        how: &str,
    ) -> Result<()> {
        self.finish_uploaded_at(id, code, fld_id, now, how, false)
    }

    /// `finish_uploaded`; `misplaced` = the host has it at an older place
    /// (adopted after the file moved): the next pass moves it, in the same
    /// transaction so a crash cannot forget it.
    pub fn finish_uploaded_at(
        &self,
        id: i64,
        code: &str,
        fld_id: u64,
        now: i64,
        how: &str,
        misplaced: bool,
    ) -> Result<()> {
        self.tx("recording an upload", |tx| {
            tx.execute(
                "UPDATE files SET state = 'uploaded', file_code = ?2, fld_id = ?3,
                   unknown_since = NULL, next_attempt_at = NULL, last_error = NULL,
                   playable = 0, encoding = NULL, encoding_progress = NULL,
                   deleted_by = NULL, remote_event_at = NULL,
                   placed_path = CASE WHEN ?5 THEN '' ELSE rel_path END, updated_at = ?4
                 WHERE id = ?1",
                params![id, code, fld_id as i64, now, misplaced],
            )?;
            history(tx, id, now, "uploaded", Some(code), Some(how))
        })
    }

    /// Put a file back in the queue after an error. `counted` errors add an
    /// attempt; `definite` means the host surely did not store it (a
    /// rejection), so no search is needed before the next try.
    pub fn retry_later(
        &self,
        id: i64,
        error: &str,
        next_at: i64,
        counted: bool,
        definite: bool,
        now: i64,
    ) -> Result<()> {
        self.tx("scheduling a retry", |tx| {
            tx.execute(
                "UPDATE files SET state = 'queued', last_error = ?2, next_attempt_at = ?3,
                   attempts = attempts + ?4,
                   unknown_since = CASE WHEN ?5 THEN NULL ELSE unknown_since END,
                   updated_at = ?6
                 WHERE id = ?1",
                params![id, error, next_at, i64::from(counted), definite, now],
            )?;
            // A quota that lasts for days retries a file many times: keep
            // one history line per distinct reason in a row, not one per try.
            let last: Option<(String, Option<String>)> = tx
                .query_row(
                    "SELECT event, detail FROM history WHERE file_id = ?1 ORDER BY id DESC LIMIT 1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let repeat = last.is_some_and(|(e, d)| e == "retry" && d.as_deref() == Some(error));
            if counted || !repeat {
                history(tx, id, now, "retry", None, Some(error))?;
            }
            Ok(())
        })
    }

    /// The file failed for good (permanent rejection, or too many attempts).
    pub fn fail(
        &self,
        id: i64,
        error: &str,
        counted: bool,
        definite: bool,
        now: i64,
    ) -> Result<()> {
        self.tx("recording a failure", |tx| {
            tx.execute(
                "UPDATE files SET state = 'failed', last_error = ?2, next_attempt_at = NULL,
                   attempts = attempts + ?3,
                   unknown_since = CASE WHEN ?4 THEN NULL ELSE unknown_since END,
                   updated_at = ?5
                 WHERE id = ?1",
                params![id, error, i64::from(counted), definite, now],
            )?;
            history(tx, id, now, "failed", None, Some(error))
        })
    }

    /// Put failed files back in the queue: all, or those whose absolute path
    /// is in `paths`. Returns how many.
    pub fn retry_failed(&self, paths: &[PathBuf], now: i64) -> Result<usize> {
        let failed = self.list(Some(State::Failed))?;
        let chosen: Vec<&FileRow> = failed
            .iter()
            .filter(|f| paths.is_empty() || paths.iter().any(|p| *p == f.path()))
            .collect();
        self.tx("retrying failed files", |tx| {
            let mut done = 0;
            for f in &chosen {
                // Only if still failed: the daemon may have moved it on.
                let n = tx.execute(
                    "UPDATE files SET state = 'queued', attempts = 0, next_attempt_at = NULL,
                       updated_at = ?2 WHERE id = ?1 AND state = 'failed'",
                    params![f.id, now],
                )?;
                if n > 0 {
                    history(tx, f.id, now, "queued", None, Some("vidsync retry"))?;
                    done += 1;
                }
            }
            Ok(done)
        })
    }

    /// A tracked file is now at another path (same inode): keep its row,
    /// code and history.
    pub fn move_file(&self, id: i64, root_id: i64, rel_path: &str, now: i64) -> Result<()> {
        self.tx("recording a move", |tx| {
            let old: String = tx.query_row(
                "SELECT rel_path FROM files WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )?;
            tx.execute(
                "UPDATE files SET root_id = ?2, rel_path = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, root_id, rel_path, now],
            )?;
            history(
                tx,
                id,
                now,
                "moved",
                None,
                Some(&format!("{old} -> {rel_path}")),
            )
        })
    }

    /// After a move on the host: the new folder and title.
    /// The host now has the file in `fld_id` under `title`, as worked out
    /// for the local path `placed`. If the file moved again meanwhile, its
    /// `rel_path` differs from `placed` and the next pass moves it again.
    pub fn set_remote_place(
        &self,
        id: i64,
        fld_id: u64,
        title: &str,
        placed: &str,
        now: i64,
    ) -> Result<()> {
        self.tx("recording a remote move", |tx| {
            tx.execute(
                "UPDATE files SET fld_id = ?2, title = ?3, placed_path = ?4, updated_at = ?5
                 WHERE id = ?1",
                params![id, fld_id as i64, title, placed, now],
            )?;
            Ok(())
        })
    }

    /// The host moved this file to the trash folder. If the file came back
    /// locally meanwhile, it is marked to be moved out again.
    pub fn record_trashed(&self, id: i64, trash_fld: u64, now: i64) -> Result<()> {
        self.tx("recording a trash move", |tx| {
            tx.execute(
                "UPDATE files SET fld_id = ?2, updated_at = ?3,
                   placed_path = CASE WHEN state = 'local_deleted' THEN placed_path ELSE '' END
                 WHERE id = ?1",
                params![id, trash_fld as i64, now],
            )?;
            history(tx, id, now, "trashed", None, None)
        })
    }

    /// Same content at the same path, new inode or device (a copy to a new
    /// disk): remember where it is now, nothing else.
    pub fn update_stat(&self, id: i64, stat: Stat) -> Result<()> {
        self.tx("recording a new inode", |tx| {
            tx.execute(
                "UPDATE files SET dev = ?2, ino = ?3 WHERE id = ?1",
                params![id, stat.dev as i64, stat.ino as i64],
            )?;
            Ok(())
        })
    }

    /// A file marked `local_deleted` is back, unchanged. An uploaded one is
    /// `uploaded` again and its place on the host is checked anew (it may
    /// have been moved to the trash folder meanwhile).
    pub fn reappeared(&self, id: i64, now: i64) -> Result<()> {
        self.tx("recording a reappearance", |tx| {
            tx.execute(
                "UPDATE files SET
                   state = CASE WHEN file_code IS NOT NULL THEN 'uploaded' ELSE 'waiting' END,
                   placed_path = CASE WHEN file_code IS NOT NULL THEN '' ELSE placed_path END,
                   stable_since = ?2, updated_at = ?2
                 WHERE id = ?1",
                params![id, now],
            )?;
            history(tx, id, now, "reappeared", None, None)
        })
    }

    /// Uploaded files whose local path changed since they were placed.
    pub fn misplaced(&self, root_id: i64) -> Result<Vec<FileRow>> {
        self.query_files(
            "listing moved files",
            "WHERE f.root_id = ?1 AND f.state = 'uploaded' AND f.placed_path IS NOT NULL
               AND f.placed_path != f.rel_path ORDER BY f.id",
            &[&root_id],
        )
    }

    /// Files deleted locally that still have a code on the host (for the
    /// trash policy), without loading the rest of the root.
    pub fn deleted_on_host_too(&self, root_id: i64) -> Result<Vec<FileRow>> {
        self.query_files(
            "listing local deletions",
            "WHERE f.root_id = ?1 AND f.state = 'local_deleted' AND f.file_code IS NOT NULL
             ORDER BY f.id",
            &[&root_id],
        )
    }

    /// Is any file of this root present locally (tracked, not deleted)?
    pub fn has_present(&self, root_id: i64) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM files WHERE root_id = ?1 AND state != 'local_deleted')",
                params![root_id],
                |r| r.get(0),
            )
            .map_err(self.err("checking for files"))
    }

    /// Forget the remote folder of a directory and of everything below it.
    /// Forget the folder ids of `rel_dir` and below ("" = the whole root).
    pub fn forget_folder_tree(&self, root_id: i64, rel_dir: &str) -> Result<()> {
        self.tx("forgetting a folder", |tx| {
            tx.execute(
                "DELETE FROM folders WHERE root_id = ?1
                   AND (?2 = '' OR rel_dir = ?2 OR substr(rel_dir, 1, length(?2) + 1) = ?2 || '/')",
                params![root_id, rel_dir],
            )?;
            Ok(())
        })
    }

    /// Is a file tracked at `rel`, or below it if it is a directory?
    /// (Range on the (root_id, rel_path) index: "rel/" to "rel0".)
    pub fn has_at_or_under(&self, root_id: i64, rel: &str) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM files WHERE root_id = ?1
                   AND (rel_path = ?2 OR (rel_path >= ?2 || '/' AND rel_path < ?2 || '0')))",
                params![root_id, rel],
                |r| r.get(0),
            )
            .map_err(self.err("looking up a path"))
    }

    /// Rows of any root whose file had this device and inode.
    pub fn by_inode(&self, dev: u64, ino: u64) -> Result<Vec<FileRow>> {
        self.query_files(
            "looking up an inode",
            "WHERE f.dev = ?1 AND f.ino = ?2 ORDER BY f.id",
            &[&(dev as i64), &(ino as i64)],
        )
    }

    /// The file of row `source` now sits at the path of row `target` (a
    /// rename over it): `target` takes over the source's identity (code,
    /// place on the host, state) and history; its own old code goes to the
    /// history as replaced, like a new version; `source` is removed.
    pub fn merge_into(&self, target: i64, source: i64, now: i64) -> Result<bool> {
        self.tx("recording a rename over a file", |tx| {
            let (old_code, src_path, busy): (Option<String>, String, bool) = tx.query_row(
                "SELECT t.file_code, s.rel_path,
                   t.state = 'uploading' OR s.state = 'uploading'
                 FROM files t, files s WHERE t.id = ?1 AND s.id = ?2",
                params![target, source],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            if busy {
                // An upload worker took one of them meanwhile: later.
                return Ok(false);
            }
            history(
                tx,
                target,
                now,
                "replaced",
                old_code.as_deref(),
                Some(&format!("replaced by the file renamed from {src_path}")),
            )?;
            tx.execute(
                "UPDATE history SET file_id = ?1 WHERE file_id = ?2",
                params![target, source],
            )?;
            tx.execute(
                "UPDATE files SET (size, mtime_ns, dev, ino, state, file_code, fld_id, title,
                   attempts, last_error, next_attempt_at, unknown_since, stable_since, playable,
                   encoding, encoding_progress, deleted_by, remote_event_at, placed_path) =
                   (SELECT size, mtime_ns, dev, ino, state, file_code, fld_id, title,
                     attempts, last_error, next_attempt_at, unknown_since, stable_since, playable,
                     encoding, encoding_progress, deleted_by, remote_event_at, placed_path
                    FROM files WHERE id = ?2),
                   updated_at = ?3
                 WHERE id = ?1",
                params![target, source, now],
            )?;
            tx.execute("DELETE FROM progress WHERE file_id = ?1", params![source])?;
            tx.execute("DELETE FROM files WHERE id = ?1", params![source])?;
            history(
                tx,
                target,
                now,
                "moved",
                None,
                Some(&format!("from {src_path}")),
            )?;
            Ok(true)
        })
    }

    /// Make the next pass check this uploaded file's place on the host
    /// (it moved between sync roots, or came back from the trash).
    pub fn mark_misplaced(&self, id: i64) -> Result<()> {
        self.tx("marking a file for a remote move", |tx| {
            tx.execute(
                "UPDATE files SET placed_path = '' WHERE id = ?1 AND file_code IS NOT NULL",
                params![id],
            )?;
            Ok(())
        })
    }

    /// A remembered directory is gone: forget its inode, so that a new
    /// directory that gets the freed inode is not taken for a rename.
    pub fn clear_folder_ino(&self, root_id: i64, rel_dir: &str) -> Result<()> {
        self.tx("forgetting a directory inode", |tx| {
            tx.execute(
                "UPDATE folders SET ino = NULL WHERE root_id = ?1 AND rel_dir = ?2",
                params![root_id, rel_dir],
            )?;
            Ok(())
        })
    }

    /// Is a root registered at this local path?
    pub fn root_by_local(&self, local: &Path) -> Result<Option<RootRow>> {
        Ok(self.roots()?.into_iter().find(|r| r.local == local))
    }

    /// A sync folder now resolves to another directory (a symlink pointed
    /// elsewhere, the library copied to a new disk): its records follow.
    pub fn relocate_root(&self, root_id: i64, local: &Path) -> Result<()> {
        let local_s = path_text(local);
        self.tx("moving a sync root", |tx| {
            tx.execute(
                "UPDATE roots SET local = ?2 WHERE id = ?1",
                params![root_id, local_s],
            )?;
            // Directory inodes of the old place mean nothing here.
            tx.execute(
                "UPDATE folders SET ino = NULL WHERE root_id = ?1",
                params![root_id],
            )?;
            Ok(())
        })
    }

    /// Drop a row that never reached the host (a waiting file that vanished).
    pub fn forget(&self, id: i64) -> Result<()> {
        self.tx("forgetting a file", |tx| {
            tx.execute("DELETE FROM history WHERE file_id = ?1", params![id])?;
            tx.execute("DELETE FROM progress WHERE file_id = ?1", params![id])?;
            tx.execute("DELETE FROM files WHERE id = ?1", params![id])?;
            Ok(())
        })
    }

    pub fn history(&self, id: i64) -> Result<Vec<HistoryRow>> {
        let conn = self.conn();
        let mut st = conn
            .prepare(
                "SELECT at, event, file_code, detail FROM history WHERE file_id = ?1 ORDER BY id",
            )
            .map_err(self.err("reading history"))?;
        let rows = st
            .query_map(params![id], |r| {
                Ok(HistoryRow {
                    at: r.get(0)?,
                    event: r.get(1)?,
                    file_code: r.get(2)?,
                    detail: r.get(3)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(self.err("reading history"))?;
        Ok(rows)
    }

    /// Number of files per state (every state present, zero included).
    pub fn counts(&self) -> Result<Vec<(State, u64)>> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT state, COUNT(*) FROM files GROUP BY state")
            .map_err(self.err("counting files"))?;
        let found: Vec<(String, i64)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.err("counting files"))?;
        Ok(State::ALL
            .iter()
            .map(|s| {
                let n = found
                    .iter()
                    .find(|(name, _)| name == s.as_str())
                    .map_or(0, |(_, n)| *n as u64);
                (*s, n)
            })
            .collect())
    }

    /// Does this root have files still settling? (Cheap: the scanner asks
    /// every tick.)
    pub fn has_waiting(&self, root_id: i64) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM files WHERE root_id = ?1 AND state = 'waiting')",
                params![root_id],
                |r| r.get(0),
            )
            .map_err(self.err("checking for waiting files"))
    }

    /// The earliest scheduled retry, if any.
    pub fn next_retry_at(&self) -> Result<Option<i64>> {
        self.conn()
            .query_row(
                "SELECT MIN(next_attempt_at) FROM files WHERE state = 'queued'",
                [],
                |r| r.get(0),
            )
            .map_err(self.err("reading the retry schedule"))
    }

    // ---- reconcile ----

    /// Rows that have a code on the host (any state).
    pub fn with_codes(&self) -> Result<Vec<FileRow>> {
        self.query_files(
            "listing known codes",
            "WHERE f.file_code IS NOT NULL ORDER BY f.id",
            &[],
        )
    }

    /// The host no longer has the file `code`. With `reupload`, the local
    /// file is queued again as a new version (the old code stays in the
    /// history). Applies only while the row still has that code (it may
    /// have been uploaded anew meanwhile); returns whether it applied.
    pub fn mark_remote_deleted(
        &self,
        id: i64,
        code: &str,
        by: &str,
        at: &str,
        reupload: bool,
        now: i64,
    ) -> Result<bool> {
        self.tx("recording a remote deletion", |tx| {
            let n = if reupload {
                tx.execute(
                    "UPDATE files SET state = 'queued', file_code = NULL, attempts = 0,
                       next_attempt_at = NULL, unknown_since = NULL, last_error = NULL,
                       playable = NULL, encoding = NULL, encoding_progress = NULL,
                       deleted_by = ?3, remote_event_at = ?4, updated_at = ?5
                     WHERE id = ?1 AND file_code = ?2",
                    params![id, code, by, at, now],
                )?
            } else {
                tx.execute(
                    "UPDATE files SET state = 'remote_deleted', deleted_by = ?3, remote_event_at = ?4,
                       updated_at = ?5 WHERE id = ?1 AND file_code = ?2",
                    params![id, code, by, at, now],
                )?
            };
            if n > 0 {
                history(tx, id, now, "remote_deleted", Some(code), Some(&format!("deleted by {by} {at}")))?;
                if reupload {
                    history(tx, id, now, "queued", None, Some("upload again after remote deletion"))?;
                }
            }
            Ok(n > 0)
        })
    }

    /// A DMCA deletion is scheduled for the file `code` (only while the row
    /// still has that code); returns whether it applied.
    pub fn mark_dmca(&self, id: i64, code: &str, del_time: &str, now: i64) -> Result<bool> {
        self.tx("recording a DMCA notice", |tx| {
            let n = tx.execute(
                "UPDATE files SET state = 'dmca', remote_event_at = ?3, next_attempt_at = NULL,
                   updated_at = ?4 WHERE id = ?1 AND file_code = ?2",
                params![id, code, del_time, now],
            )?;
            if n > 0 {
                history(
                    tx,
                    id,
                    now,
                    "dmca",
                    Some(code),
                    Some(&format!("deletion scheduled {del_time}")),
                )?;
            }
            Ok(n > 0)
        })
    }

    /// What the audit read on the host for the file `code`: its title,
    /// folder and playability (only while the row still has that code).
    pub fn refresh_remote(
        &self,
        id: i64,
        code: &str,
        title: &str,
        fld_id: Option<u64>,
        canplay: bool,
        now: i64,
    ) -> Result<()> {
        self.tx("refreshing from the host", |tx| {
            let changed = tx.execute(
                "UPDATE files SET title = ?3, fld_id = COALESCE(?4, fld_id), playable = ?5,
                   encoding = CASE WHEN ?5 THEN NULL ELSE encoding END, updated_at = ?6
                 WHERE id = ?1 AND file_code = ?2
                   AND (COALESCE(title, '') != ?3 OR COALESCE(fld_id, -1) != COALESCE(?4, fld_id, -1)
                        OR COALESCE(playable, 0) != ?5)",
                params![id, code, title, fld_id.map(|f| f as i64), canplay, now],
            )?;
            if changed > 0 {
                history(tx, id, now, "refreshed", Some(code), Some(&format!("host: title {title:?}, folder {fld_id:?}, playable {canplay}")))?;
            }
            Ok(())
        })
    }

    /// What the host says of an uploaded file's encoding.
    pub fn set_encoding(
        &self,
        id: i64,
        playable: bool,
        status: Option<&str>,
        progress: Option<u32>,
        now: i64,
    ) -> Result<()> {
        self.tx("recording encoding state", |tx| {
            tx.execute(
                "UPDATE files SET playable = ?2, encoding = ?3, encoding_progress = ?4, updated_at = ?5
                 WHERE id = ?1",
                params![id, playable, status, progress.map(i64::from), now],
            )?;
            Ok(())
        })
    }

    /// Uploaded files the host has not yet made playable.
    pub fn encoding_pending(&self) -> Result<Vec<FileRow>> {
        self.query_files(
            "listing encodings",
            "WHERE f.state = 'uploaded' AND COALESCE(f.playable, 0) = 0 ORDER BY f.id",
            &[],
        )
    }

    // ---- progress (written at a bounded rate by the uploader) ----

    pub fn set_progress(
        &self,
        file_id: i64,
        sent: u64,
        total: u64,
        rate: u64,
        now: i64,
    ) -> Result<()> {
        self.tx("recording progress", |tx| {
            tx.execute(
                "INSERT INTO progress (file_id, sent, total, started_at, updated_at, rate)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5)
                 ON CONFLICT(file_id) DO UPDATE SET sent = excluded.sent,
                   total = excluded.total, updated_at = excluded.updated_at,
                   rate = excluded.rate",
                params![file_id, sent as i64, total as i64, now, rate as i64],
            )?;
            Ok(())
        })
    }

    pub fn clear_progress(&self, file_id: i64) -> Result<()> {
        self.tx("clearing progress", |tx| {
            tx.execute("DELETE FROM progress WHERE file_id = ?1", params![file_id])?;
            Ok(())
        })
    }

    /// Drop all progress rows (at start: nothing is in flight yet).
    pub fn clear_all_progress(&self) -> Result<()> {
        self.tx("clearing progress", |tx| {
            tx.execute("DELETE FROM progress", [])?;
            Ok(())
        })
    }

    pub fn progress(&self) -> Result<Vec<Progress>> {
        let conn = self.conn();
        let mut st = conn
            .prepare(
                "SELECT p.file_id, r.local, f.rel_path, p.sent, p.total, p.started_at, p.updated_at,
                   p.rate
                 FROM progress p JOIN files f ON f.id = p.file_id JOIN roots r ON r.id = f.root_id
                 ORDER BY p.started_at",
            )
            .map_err(self.err("reading progress"))?;
        let rows = st
            .query_map([], |r| {
                Ok(Progress {
                    file_id: r.get(0)?,
                    path: PathBuf::from(r.get::<_, String>(1)?).join(r.get::<_, String>(2)?),
                    sent: r.get::<_, i64>(3)? as u64,
                    total: r.get::<_, i64>(4)? as u64,
                    started_at: r.get(5)?,
                    updated_at: r.get(6)?,
                    rate: r.get::<_, i64>(7)?.max(0) as u64,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(self.err("reading progress"))?;
        Ok(rows)
    }

    // ---- small key/value facts (last reconcile, key state, ...) ----

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn()
            .query_row("SELECT v FROM meta WHERE k = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err("reading meta"))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.tx("writing meta", |tx| {
            tx.execute(
                "INSERT INTO meta (k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                params![key, value],
            )?;
            Ok(())
        })
    }
}

fn history(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    now: i64,
    event: &str,
    code: Option<&str>,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO history (file_id, at, event, file_code, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, now, event, code, detail],
    )?;
    Ok(())
}

/// Paths are stored as text. Non-UTF-8 names are refused earlier (scan) with
/// a warning, so this lossy conversion never changes a stored path.
pub fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests;
