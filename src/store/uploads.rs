//! The upload transitions of the exactly-once protocol: claim, record
//! the attempt before sending, then uploaded, retry later or failed.

use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};

use super::history::history;
use super::{FileRow, Result, State, Store};

/// Does the try that just ended count against the file's attempt limit?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The file's own upload request failed: one attempt more is used.
    Counted,
    /// Not the file's doing (the host unwell, a stop, a wait): the file
    /// keeps its attempts.
    Free,
}

impl Attempt {
    pub fn counted_if(counted: bool) -> Attempt {
        if counted {
            Attempt::Counted
        } else {
            Attempt::Free
        }
    }
}

/// What the host may hold from the try that just ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCopy {
    /// Surely nothing (the host refused it): the next try needs no search
    /// for a copy first (`unknown_since` is cleared).
    SurelyNone,
    /// Nothing more is known: an earlier attempt whose outcome is unknown
    /// stays to be searched for before any new upload (`unknown_since` is
    /// kept).
    Unknown,
}

impl HostCopy {
    /// `definite`: the host surely has no copy from this attempt.
    pub fn none_if(definite: bool) -> HostCopy {
        if definite {
            HostCopy::SurelyNone
        } else {
            HostCopy::Unknown
        }
    }

    fn definite(self) -> bool {
        self == HostCopy::SurelyNone
    }
}

/// Where the host has a file just recorded as uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// At the place its local path gives now.
    Current,
    /// At an older place (adopted after the file moved or was renamed): the
    /// next pass moves it on the host.
    Outdated,
}

/// Who holds the row an adoption applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// The upload worker calling, which claimed it (state `uploading`).
    ThisWorker,
    /// Nobody: it waits in the queue (`queued`, `waiting` or `failed`).
    Nobody,
}

/// From now until a definite answer, the host may make a copy of file `id`
/// (an upload or a copy host to host is about to be asked for).
pub(super) fn mark_attempt(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    fld_id: u64,
    title: &str,
    now: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE files SET state = 'uploading', fld_id = ?2, title = ?3,
           unknown_since = COALESCE(unknown_since, ?4), updated_at = ?4
         WHERE id = ?1",
        params![id, fld_id as i64, title, now],
    )?;
    Ok(())
}

impl Store {
    /// Take the next due queued file and mark it `uploading` (the attempt is
    /// recorded before anything is sent).
    pub fn claim_next(
        &self,
        now: i64,
        horizon: i64,
        order: super::QueueOrder,
    ) -> Result<Option<FileRow>> {
        let conn = self.conn();
        let mut conn = conn;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err("claiming an upload"))?;
        // A retry scheduled beyond `horizon` (no delay is that long) was
        // scheduled by a clock that has since gone back: it is due now.
        let id: Option<i64> = tx
            .query_row(
                &format!(
                    "SELECT f.id FROM files f JOIN roots r ON r.id = f.root_id
                     WHERE r.host = ?3 AND f.state = 'queued'
                       AND (f.next_attempt_at IS NULL OR f.next_attempt_at <= ?1
                            OR f.next_attempt_at > ?2)
                     ORDER BY {} LIMIT 1",
                    order.sql()
                ),
                params![now, horizon, self.host()],
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
        self.changed();
        self.file(id)
    }

    /// Record that an upload request is about to be sent: from now until a
    /// definite answer, the file may exist on the host.
    pub fn begin_attempt(&self, id: i64, fld_id: u64, title: &str, now: i64) -> Result<()> {
        self.tx("recording an upload attempt", |tx| {
            mark_attempt(tx, id, fld_id, title, now)?;
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
        self.finish_uploaded_at(id, code, fld_id, now, how, Placement::Current)
    }

    /// `finish_uploaded` at a given place: an `Outdated` one is marked for
    /// the next pass to move, in the same transaction so a crash cannot
    /// forget it.
    pub fn finish_uploaded_at(
        &self,
        id: i64,
        code: &str,
        fld_id: u64,
        now: i64,
        how: &str,
        placement: Placement,
    ) -> Result<()> {
        let misplaced = placement == Placement::Outdated;
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

    /// Put a file back in the queue after an error, to be tried again at
    /// `next_at`.
    pub fn retry_later(
        &self,
        id: i64,
        error: &str,
        next_at: i64,
        attempt: Attempt,
        copy: HostCopy,
        now: i64,
    ) -> Result<()> {
        let counted = attempt == Attempt::Counted;
        self.tx("scheduling a retry", |tx| {
            tx.execute(
                "UPDATE files SET state = 'queued', last_error = ?2, next_attempt_at = ?3,
                   attempts = attempts + ?4,
                   unknown_since = CASE WHEN ?5 THEN NULL ELSE unknown_since END,
                   updated_at = ?6
                 WHERE id = ?1",
                params![id, error, next_at, i64::from(counted), copy.definite(), now],
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
        attempt: Attempt,
        copy: HostCopy,
        now: i64,
    ) -> Result<()> {
        let counted = attempt == Attempt::Counted;
        self.tx("recording a failure", |tx| {
            tx.execute(
                "UPDATE files SET state = 'failed', last_error = ?2, next_attempt_at = NULL,
                   attempts = attempts + ?3,
                   unknown_since = CASE WHEN ?4 THEN NULL ELSE unknown_since END,
                   updated_at = ?5
                 WHERE id = ?1",
                params![id, error, i64::from(counted), copy.definite(), now],
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

    /// Adopt a copy found on the host for a file that is waiting in the
    /// queue (not being uploaded this instant, no code yet): the `adopt`
    /// command's way in, safe while the daemon runs. False if the row has
    /// moved on meanwhile. The upload worker that claimed the row adopts
    /// it too (`Holder::ThisWorker`).
    #[allow(clippy::too_many_arguments)]
    pub fn adopt_if_idle(
        &self,
        id: i64,
        code: &str,
        fld_id: u64,
        title: &str,
        now: i64,
        how: &str,
        holder: Holder,
    ) -> Result<bool> {
        self.tx("adopting a file", |tx| {
            let states = if holder == Holder::ThisWorker {
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
}
