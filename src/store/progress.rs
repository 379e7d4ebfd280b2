//! Upload progress, written at a bounded rate by the uploader and read
//! by `status`.

use std::path::PathBuf;

use rusqlite::params;

use super::{Progress, Result, Store};

impl Store {
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

    /// Drop this host's progress rows (at start: nothing is in flight yet).
    pub fn clear_all_progress(&self) -> Result<()> {
        self.tx("clearing progress", |tx| {
            tx.execute(
                "DELETE FROM progress WHERE file_id IN
                   (SELECT f.id FROM files f JOIN roots r ON r.id = f.root_id WHERE r.host = ?1)",
                [self.host()],
            )?;
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
                 WHERE r.host = ?1 ORDER BY p.started_at",
            )
            .map_err(self.err("reading progress"))?;
        let rows = st
            .query_map([self.host()], |r| {
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
}
