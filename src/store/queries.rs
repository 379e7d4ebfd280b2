//! Reads of file rows: by id, path, inode, state, and the counts `status`
//! shows.

use std::path::PathBuf;

use rusqlite::{Row, params};

use super::{FileRow, Result, Stat, State, Store};

const FILE_COLUMNS: &str = "f.id, f.root_id, r.local, f.rel_path, f.size, f.mtime_ns, f.dev, f.ino, \
     f.state, f.file_code, f.fld_id, f.title, f.attempts, f.last_error, f.next_attempt_at, \
     f.unknown_since, f.first_seen_at, f.stable_since, f.updated_at, f.playable, f.encoding, \
     f.deleted_by, f.remote_event_at, f.placed_path, f.encoding_progress, \
     f.incomplete, f.force_upload";

impl Store {
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
            incomplete: r.get(25)?,
            force_upload: r.get::<_, i64>(26)? != 0,
        })
    }

    fn query_files(
        &self,
        what: &'static str,
        where_sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<FileRow>> {
        let conn = self.conn();
        let host = self.host_sql();
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files f JOIN roots r ON r.id = f.root_id AND r.host = {host} \
             {where_sql}"
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

    /// Files held back as incomplete, unchanged since `cutoff` or longer,
    /// not reported yet.
    pub fn incomplete_overdue(&self, cutoff: i64) -> Result<Vec<FileRow>> {
        self.query_files(
            "listing overdue incomplete files",
            "WHERE f.state = 'waiting' AND f.incomplete IS NOT NULL
             AND f.incomplete_reported_at IS NULL AND f.stable_since <= ?1",
            &[&cutoff],
        )
    }

    /// The files held back as incomplete now.
    pub fn held_incomplete(&self) -> Result<Vec<FileRow>> {
        self.query_files(
            "listing incomplete files",
            "WHERE f.state = 'waiting' AND f.incomplete IS NOT NULL AND f.force_upload = 0",
            &[],
        )
    }

    pub fn files_in_root(&self, root_id: i64) -> Result<Vec<FileRow>> {
        self.query_files(
            "listing files",
            "WHERE f.root_id = ?1 ORDER BY f.rel_path",
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

    /// The files of a root still settling.
    pub fn waiting_in_root(&self, root_id: i64) -> Result<Vec<FileRow>> {
        self.query_files(
            "listing settling files",
            "WHERE f.root_id = ?1 AND f.state = 'waiting' ORDER BY f.id",
            &[&root_id],
        )
    }

    /// When the file waiting longest to settle became unchanged (files held
    /// back as incomplete wait for an event instead): the scanner looks at
    /// it again the moment `settle` has passed.
    pub fn first_settling_since(&self) -> Result<Option<i64>> {
        self.conn()
            .query_row(
                "SELECT MIN(f.stable_since) FROM files f JOIN roots r ON r.id = f.root_id
                 WHERE r.host = ?1 AND f.state = 'waiting' AND f.incomplete IS NULL",
                params![self.host()],
                |r| r.get(0),
            )
            .map_err(self.err("finding the next file to settle"))
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

    /// Is this file code recorded for some file, now or in the history (an
    /// earlier version's code must not be adopted for a new version)?
    pub fn code_known(&self, code: &str) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM files f JOIN roots r ON r.id = f.root_id
                               WHERE f.file_code = ?1 AND r.host = ?2)
                     OR EXISTS(SELECT 1 FROM history h JOIN files f ON f.id = h.file_id
                               JOIN roots r ON r.id = f.root_id
                               WHERE h.file_code = ?1 AND r.host = ?2)",
                params![code, self.host()],
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

    /// Rows that have a code on the host (any state).
    pub fn with_codes(&self) -> Result<Vec<FileRow>> {
        self.query_files(
            "listing known codes",
            "WHERE f.file_code IS NOT NULL ORDER BY f.id",
            &[],
        )
    }

    /// Uploaded files the host has not yet made playable.
    pub fn encoding_pending(&self) -> Result<Vec<FileRow>> {
        self.query_files(
            "listing encodings",
            "WHERE f.state = 'uploaded' AND COALESCE(f.playable, 0) = 0 ORDER BY f.id",
            &[],
        )
    }

    /// Number of files per state (every state present, zero included).
    pub fn counts(&self) -> Result<Vec<(State, u64)>> {
        let conn = self.conn();
        let mut st = conn
            .prepare(
                "SELECT f.state, COUNT(*) FROM files f JOIN roots r ON r.id = f.root_id
                 WHERE r.host = ?1 GROUP BY f.state",
            )
            .map_err(self.err("counting files"))?;
        let found: Vec<(String, i64)> = st
            .query_map([self.host()], |r| Ok((r.get(0)?, r.get(1)?)))
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

    /// Queued files whose turn has come (no retry scheduled later than
    /// `now`): the upload queue's length, for the metrics.
    pub fn queued_due(&self, now: i64) -> Result<u64> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM files f JOIN roots r ON r.id = f.root_id
                 WHERE r.host = ?2 AND f.state = 'queued'
                   AND (f.next_attempt_at IS NULL OR f.next_attempt_at <= ?1)",
                params![now, self.host()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(self.err("counting the upload queue"))
    }

    /// The earliest scheduled retry, if any.
    pub fn next_retry_at(&self) -> Result<Option<i64>> {
        self.conn()
            .query_row(
                "SELECT MIN(f.next_attempt_at) FROM files f JOIN roots r ON r.id = f.root_id
                 WHERE r.host = ?1 AND f.state = 'queued'",
                [self.host()],
                |r| r.get(0),
            )
            .map_err(self.err("reading the retry schedule"))
    }
}
