//! The history of each file: one line per event, kept across new
//! versions, so an old code is never adopted for new content.

use rusqlite::params;

use super::{HistoryRow, Result, Store};

impl Store {
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
}

/// Add a line to a file's history, inside the transaction of the change it records.
pub(super) fn history(
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
