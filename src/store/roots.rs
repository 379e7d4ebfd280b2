//! Sync roots: a local folder and the remote path it mirrors to.

use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};

use super::{Result, RootRow, Store, path_text};

impl Store {
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

    /// The device a root's directory was last seen on. An unmounted disk
    /// leaves an empty mount point on another device: that is not "every
    /// file deleted".
    pub fn root_dev(&self, root_id: i64) -> Result<Option<u64>> {
        self.conn()
            .query_row(
                "SELECT dev FROM roots WHERE id = ?1",
                params![root_id],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
            .map(|o| o.flatten().map(|v| v as u64))
            .map_err(self.err("reading a root's device"))
    }

    pub fn set_root_dev(&self, root_id: i64, dev: u64) -> Result<()> {
        self.tx("recording a root's device", |tx| {
            tx.execute(
                "UPDATE roots SET dev = ?2 WHERE id = ?1",
                params![root_id, dev as i64],
            )?;
            Ok(())
        })
    }
}
