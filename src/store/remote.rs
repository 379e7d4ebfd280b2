//! What the host says of an uploaded file: deleted, DMCA, its title,
//! folder and encoding, and where it was last placed.

use std::collections::HashMap;

use rusqlite::params;

use super::history::history;
use super::{Result, Store};

/// What becomes of a file the host no longer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDeleted {
    /// The local file is queued again as a new version (the old code stays
    /// in the history).
    UploadAgain,
    /// It stays `remote_deleted`.
    KeepDeleted,
}

impl Store {
    /// The host no longer has the file `code`; `then` says what becomes of
    /// the local file. Applies only while the row still has that code (it may
    /// have been uploaded anew meanwhile); returns whether it applied.
    pub fn mark_remote_deleted(
        &self,
        id: i64,
        code: &str,
        by: &str,
        at: &str,
        then: OnDeleted,
        now: i64,
    ) -> Result<bool> {
        let reupload = then == OnDeleted::UploadAgain;
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
}

/// A copy on the host replaced by a new version of its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseded {
    pub file_id: i64,
    pub file_code: String,
    pub fld_id: Option<u64>,
}

impl Store {
    /// Copies replaced by a new version that is on the host now, not yet
    /// moved to the trash, of files in this root.
    pub fn superseded_to_trash(&self, root_id: i64) -> Result<Vec<Superseded>> {
        let conn = self.conn();
        let what = "listing replaced copies";
        let mut st = conn
            .prepare(
                "SELECT s.file_id, s.file_code, s.fld_id FROM superseded s
                 JOIN files f ON f.id = s.file_id
                 WHERE f.root_id = ?1 AND f.state = 'uploaded' AND f.file_code IS NOT NULL
                   AND f.file_code != s.file_code AND s.trashed_at IS NULL
                 ORDER BY s.at",
            )
            .map_err(self.err(what))?;
        let rows = st
            .query_map(params![root_id], |r| {
                Ok(Superseded {
                    file_id: r.get(0)?,
                    file_code: r.get(1)?,
                    fld_id: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(self.err(what))?;
        Ok(rows)
    }

    /// A replaced copy was moved to the trash folder on the host.
    pub fn record_superseded_trashed(&self, s: &Superseded, trash_id: u64, now: i64) -> Result<()> {
        self.tx("recording a replaced copy trashed", |tx| {
            tx.execute(
                "UPDATE superseded SET trashed_at = ?2 WHERE file_code = ?1",
                params![s.file_code, now],
            )?;
            history(
                tx,
                s.file_id,
                now,
                "superseded_trashed",
                Some(&s.file_code),
                Some(&format!("old version moved to trash folder {trash_id}")),
            )
        })
    }
}

/// The watch links the host reports (file/list's `link`), by file code.
impl Store {
    /// Remember the links file/list gave for these codes.
    pub fn set_links(&self, links: &[(String, String)]) -> Result<()> {
        let host = self.host().to_string();
        self.tx("recording watch links", |tx| {
            for (code, link) in links {
                tx.execute(
                    "INSERT INTO links (host, code, link) VALUES (?1, ?2, ?3)
                     ON CONFLICT(host, code) DO UPDATE SET link = excluded.link",
                    params![host, code, link],
                )?;
            }
            Ok(())
        })
    }

    /// Every link known on this host, by code.
    pub fn links(&self) -> Result<HashMap<String, String>> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT code, link FROM links WHERE host = ?1")
            .map_err(self.err("reading watch links"))?;
        st.query_map(params![self.host()], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<HashMap<_, _>>>())
            .map_err(self.err("reading watch links"))
    }

    /// Remote folders holding uploaded files whose link is not known yet.
    pub fn folders_without_links(&self) -> Result<Vec<u64>> {
        let conn = self.conn();
        let mut st = conn
            .prepare(
                "SELECT DISTINCT f.fld_id FROM files f JOIN roots r ON r.id = f.root_id
                 WHERE r.host = ?1 AND f.state = 'uploaded' AND f.file_code IS NOT NULL
                   AND f.fld_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM links l WHERE l.host = r.host AND l.code = f.file_code)
                 ORDER BY f.fld_id",
            )
            .map_err(self.err("listing folders without links"))?;
        st.query_map(params![self.host()], |r| r.get::<_, i64>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map(|v| v.into_iter().map(|f| f as u64).collect())
            .map_err(self.err("listing folders without links"))
    }
}
