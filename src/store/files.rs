//! A file's row as the disk changes it: first sight, changed content,
//! moves and renames over another file, deletion and return.

use rusqlite::params;

use super::history::history;
use super::{Result, Stat, State, Store};

impl Store {
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
            let (state, code, fld): (String, Option<String>, Option<i64>) = tx.query_row(
                "SELECT state, file_code, fld_id FROM files WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
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
                // The old copy stays on the host; with `on_new_version =
                // "trash"` the fix-ups move it once the new one is up.
                if state != State::Dmca.as_str()
                    && let Some(code) = &code
                {
                    tx.execute(
                        "INSERT OR IGNORE INTO superseded (file_code, file_id, fld_id, at)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![code, id, fld, now],
                    )?;
                }
            }
            tx.execute(
                "UPDATE files SET size = ?2, mtime_ns = ?3, dev = ?4, ino = ?5,
                   state = CASE WHEN state IN ('dmca') THEN state ELSE 'waiting' END,
                   file_code = CASE WHEN state IN ('dmca') THEN file_code ELSE NULL END,
                   attempts = 0, last_error = NULL, next_attempt_at = NULL,
                   unknown_since = CASE WHEN state IN ('dmca') THEN unknown_since ELSE NULL END,
                   stable_since = ?6, updated_at = ?6, playable = NULL, encoding = NULL,
                   incomplete = NULL, incomplete_reported_at = NULL, force_upload = 0
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
            // A reason it was held back no longer stands.
            let n = tx.execute(
                "UPDATE files SET state = 'queued', next_attempt_at = NULL, updated_at = ?2,
                   last_error = CASE WHEN last_error = incomplete THEN NULL ELSE last_error END,
                   incomplete = NULL, incomplete_reported_at = NULL
                 WHERE id = ?1 AND state = 'waiting'",
                params![id, now],
            )?;
            if n > 0 {
                history(tx, id, now, "queued", None, None)?;
            }
            Ok(())
        })
    }

    /// A waiting file that has settled but is not complete yet (holes, a
    /// container cut short, a writer): it stays `waiting` with the reason
    /// shown as its error. True when the reason is new (worth a log line).
    pub fn hold_incomplete(&self, id: i64, reason: &str, now: i64) -> Result<bool> {
        self.tx("holding back an incomplete file", |tx| {
            let old: Option<String> = tx.query_row(
                "SELECT incomplete FROM files WHERE id = ?1 AND state = 'waiting'",
                params![id],
                |r| r.get(0),
            )?;
            if old.as_deref() == Some(reason) {
                return Ok(false);
            }
            tx.execute(
                "UPDATE files SET incomplete = ?2, last_error = ?2, updated_at = ?3
                 WHERE id = ?1 AND state = 'waiting'",
                params![id, reason, now],
            )?;
            history(tx, id, now, "incomplete", None, Some(reason))?;
            Ok(true)
        })
    }

    /// The overdue incomplete file was reported (once per content).
    pub fn mark_incomplete_reported(&self, id: i64, now: i64) -> Result<()> {
        self.tx("noting an overdue report", |tx| {
            tx.execute(
                "UPDATE files SET incomplete_reported_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            history(tx, id, now, "incomplete_overdue", None, None)
        })
    }

    /// `vidsync retry PATH` on a file held back as incomplete: upload it
    /// anyway (until its content changes). Returns how many were waiting so.
    pub fn force_upload(&self, paths: &[std::path::PathBuf], now: i64) -> Result<usize> {
        let held: Vec<super::FileRow> = self
            .list(Some(State::Waiting))?
            .into_iter()
            .filter(|f| f.incomplete.is_some() && paths.iter().any(|p| *p == f.path()))
            .collect();
        self.tx("forcing an upload", |tx| {
            let mut done = 0;
            for f in &held {
                let n = tx.execute(
                    "UPDATE files SET force_upload = 1, updated_at = ?2
                     WHERE id = ?1 AND state = 'waiting'",
                    params![f.id, now],
                )?;
                if n > 0 {
                    history(
                        tx,
                        f.id,
                        now,
                        "forced",
                        None,
                        Some("vidsync retry: upload anyway"),
                    )?;
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

    /// Drop a row that never reached the host (a waiting file that vanished).
    pub fn forget(&self, id: i64) -> Result<()> {
        self.tx("forgetting a file", |tx| {
            tx.execute("DELETE FROM history WHERE file_id = ?1", params![id])?;
            tx.execute("DELETE FROM progress WHERE file_id = ?1", params![id])?;
            tx.execute("DELETE FROM files WHERE id = ?1", params![id])?;
            Ok(())
        })
    }
}
