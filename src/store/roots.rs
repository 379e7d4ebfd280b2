//! Sync roots: a local folder and the remote path it mirrors to, once per
//! host it goes to; and the hosts the records belong to.

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
                    "SELECT id, remote FROM roots WHERE host = ?1 AND local = ?2",
                    params![self.host(), local_s],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((id, old_remote)) = old
                && old_remote != remote
            {
                tx.execute("DELETE FROM folders WHERE root_id = ?1", params![id])?;
            }
            tx.execute(
                "INSERT INTO roots (host, local, remote) VALUES (?1, ?2, ?3)
                 ON CONFLICT(host, local) DO UPDATE SET remote = excluded.remote",
                params![self.host(), local_s, remote],
            )?;
            tx.query_row(
                "SELECT id FROM roots WHERE host = ?1 AND local = ?2",
                params![self.host(), local_s],
                |r| r.get(0),
            )
        })
    }

    pub fn roots(&self) -> Result<Vec<RootRow>> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT id, local, remote FROM roots WHERE host = ?1 ORDER BY id")
            .map_err(self.err("listing roots"))?;
        let rows = st
            .query_map([self.host()], |r| {
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

    // ---- hosts ----

    /// The hosts that have records here, with the API URL each was last
    /// used with (None: recorded before URLs were).
    pub fn known_hosts(&self) -> Result<Vec<(String, Option<String>)>> {
        let conn = self.conn();
        let mut st = conn
            .prepare(
                "SELECT n.host, h.url FROM (SELECT host FROM roots UNION SELECT name FROM hosts) n
                 LEFT JOIN hosts h ON h.name = n.host ORDER BY n.host",
            )
            .map_err(self.err("listing hosts"))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.err("listing hosts"))?;
        Ok(rows)
    }

    /// Remember the API URL this host is used with.
    pub fn note_host_url(&self, url: &str) -> Result<()> {
        self.tx("recording a host", |tx| {
            tx.execute(
                "INSERT INTO hosts (name, url) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET url = excluded.url",
                params![self.host(), url],
            )?;
            Ok(())
        })
    }

    /// Give the records of host `from` to this host (a host renamed in the
    /// config). Refused (false) if this host has records already.
    pub fn take_over_host(&self, from: &str) -> Result<bool> {
        self.tx("renaming a host", |tx| {
            let mine: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM roots WHERE host = ?1)",
                params![self.host()],
                |r| r.get(0),
            )?;
            if mine {
                return Ok(false);
            }
            for table in ["created_folders", "trash_folders", "host_meta"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE host = ?1"),
                    params![self.host()],
                )?;
                tx.execute(
                    &format!("UPDATE {table} SET host = ?2 WHERE host = ?1"),
                    params![from, self.host()],
                )?;
            }
            tx.execute(
                "UPDATE roots SET host = ?2 WHERE host = ?1",
                params![from, self.host()],
            )?;
            tx.execute("DELETE FROM hosts WHERE name = ?1", params![from])?;
            Ok(true)
        })
    }
}
