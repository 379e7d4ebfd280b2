//! Small key/value facts (last reconcile, key state, ...).

use rusqlite::{OptionalExtension, params};

use super::{Result, Store};

impl Store {
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
