//! Copies host to host (`copy_from`): the same local file's record on the
//! host a copy comes from, and the upload/url job of a copy in progress,
//! recorded before the host is asked so that a crash cannot start a second.

use rusqlite::{OptionalExtension, params};

use super::history::history;
use super::meta::add_copied;
use super::uploads::mark_attempt;
use super::{Result, Stat, State, Store, path_text};

/// The record of the same local file (same sync folder, same path) on
/// another host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twin {
    pub state: State,
    pub code: Option<String>,
    /// Its size and mtime are the ones the asking row has: the same version.
    pub same_version: bool,
    /// When its next upload try is due, if it waits for one.
    pub next_attempt_at: Option<i64>,
}

/// A copy in progress: upload/url was (or was about to be) asked to fetch
/// `url`, a direct link on the host `source`; `code` is the host's answer,
/// unknown if the reply never came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyJob {
    pub source: String,
    pub url: String,
    pub code: Option<String>,
    pub size: u64,
    pub mtime_ns: i64,
    pub started_at: i64,
}

impl Store {
    /// The record host `source` has of the file `row` (this view's row).
    pub fn twin_on(&self, source: &str, row: &super::FileRow) -> Result<Option<Twin>> {
        let local = path_text(&row.root);
        type Found = (String, Option<String>, i64, i64, Option<i64>);
        let found: Option<Found> = self
            .conn()
            .query_row(
                "SELECT f.state, f.file_code, f.size, f.mtime_ns, f.next_attempt_at
                 FROM files f JOIN roots r ON r.id = f.root_id
                 WHERE r.host = ?1 AND r.local = ?2 AND f.rel_path = ?3",
                params![source, local, row.rel_path],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(self.err("reading another host's record"))?;
        Ok(
            found.and_then(|(state, code, size, mtime, next_attempt_at)| {
                Some(Twin {
                    state: State::parse(&state)?,
                    code,
                    same_version: size as u64 == row.stat.size && mtime == row.stat.mtime_ns,
                    next_attempt_at,
                })
            }),
        )
    }

    /// Record, before upload/url is called, that the host is about to be
    /// asked to fetch `url` for file `id`: from now on the host may make a
    /// copy, so `unknown_since` is set as for an upload.
    #[allow(clippy::too_many_arguments)]
    pub fn begin_copy(
        &self,
        id: i64,
        fld_id: u64,
        title: &str,
        source: &str,
        url: &str,
        stat: Stat,
        now: i64,
    ) -> Result<()> {
        self.tx("recording a copy from another host", |tx| {
            mark_attempt(tx, id, fld_id, title, now)?;
            tx.execute(
                "INSERT OR REPLACE INTO copies (file_id, source, url, code, size, mtime_ns, started_at)
                 VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6)",
                params![id, source, url, stat.size as i64, stat.mtime_ns, now],
            )?;
            history(
                tx,
                id,
                now,
                "copy_started",
                None,
                Some(&format!("from {source}")),
            )
        })
    }

    /// The host took the job: its future file code.
    pub fn copy_accepted(&self, id: i64, code: &str) -> Result<()> {
        self.tx("recording a copy's code", |tx| {
            tx.execute(
                "UPDATE copies SET code = ?2 WHERE file_id = ?1",
                params![id, code],
            )?;
            Ok(())
        })
    }

    /// The copy in progress for file `id`, if any.
    pub fn copy_job(&self, id: i64) -> Result<Option<CopyJob>> {
        self.conn()
            .query_row(
                "SELECT source, url, code, size, mtime_ns, started_at FROM copies WHERE file_id = ?1",
                params![id],
                |r| {
                    Ok(CopyJob {
                        source: r.get(0)?,
                        url: r.get(1)?,
                        code: r.get(2)?,
                        size: r.get::<_, i64>(3)? as u64,
                        mtime_ns: r.get(4)?,
                        started_at: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(self.err("reading a copy in progress"))
    }

    /// The host has the copy under `code`: the file is uploaded, its
    /// `bytes` counted as saved. Its title on the host (`host_title`) is the
    /// link's file name, not ours: recorded as it is and marked for the
    /// fix-up task to set (with the tags).
    /// False when the row is no longer being uploaded (it moved on meanwhile):
    /// nothing is recorded.
    pub fn finish_copied(
        &self,
        id: i64,
        code: &str,
        fld_id: u64,
        host_title: &str,
        bytes: u64,
        now: i64,
    ) -> Result<bool> {
        let host = self.host().to_string();
        self.tx("recording a copy", |tx| {
            let source: Option<String> = tx
                .query_row(
                    "SELECT source FROM copies WHERE file_id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            let n = tx.execute(
                "UPDATE files SET state = 'uploaded', file_code = ?2, fld_id = ?3, title = ?5,
                   unknown_since = NULL, next_attempt_at = NULL, last_error = NULL,
                   playable = 0, encoding = NULL, encoding_progress = NULL,
                   deleted_by = NULL, remote_event_at = NULL,
                   placed_path = '', updated_at = ?4
                 WHERE id = ?1 AND state = 'uploading'",
                params![id, code, fld_id as i64, now, host_title],
            )?;
            tx.execute("DELETE FROM copies WHERE file_id = ?1", params![id])?;
            if n == 0 {
                return Ok(false);
            }
            add_copied(tx, &host, bytes)?;
            let how = match source {
                Some(s) => format!("copied from {s}"),
                None => "copied from another host".to_string(),
            };
            history(tx, id, now, "uploaded", Some(code), Some(&how))?;
            Ok(true)
        })
    }

    /// The copy will not happen (the fetch failed, the job is gone or was
    /// deleted): the host surely has nothing from it, and the file is sent
    /// from the disk instead.
    pub fn drop_copy(&self, id: i64, why: &str, now: i64) -> Result<()> {
        self.tx("dropping a copy", |tx| {
            let n = tx.execute("DELETE FROM copies WHERE file_id = ?1", params![id])?;
            if n > 0 {
                tx.execute(
                    "UPDATE files SET unknown_since = NULL, updated_at = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
                history(tx, id, now, "copy_failed", None, Some(why))?;
            }
            Ok(())
        })
    }
}
