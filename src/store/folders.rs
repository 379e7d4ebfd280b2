//! Remote folders: which host folder each local directory maps to, and
//! which of them vidsync created itself.

use rusqlite::{OptionalExtension, params};

use super::{Result, Store};

impl Store {
    /// The remembered remote folder of a local directory ("" = the root).
    pub fn folder(&self, root_id: i64, rel_dir: &str) -> Result<Option<u64>> {
        self.conn()
            .query_row(
                "SELECT fld_id FROM folders WHERE root_id = ?1 AND rel_dir = ?2",
                params![root_id, rel_dir],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|o| o.map(|v| v as u64))
            .map_err(self.err("reading a folder"))
    }

    pub fn set_folder(
        &self,
        root_id: i64,
        rel_dir: &str,
        fld_id: u64,
        dir_ino: Option<u64>,
    ) -> Result<()> {
        self.tx("recording a folder", |tx| {
            tx.execute(
                "INSERT INTO folders (root_id, rel_dir, fld_id, ino) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(root_id, rel_dir) DO UPDATE SET fld_id = excluded.fld_id,
                 ino = COALESCE(excluded.ino, folders.ino)",
                params![root_id, rel_dir, fld_id as i64, dir_ino.map(|i| i as i64)],
            )?;
            Ok(())
        })
    }

    /// All remembered folders of a root: (rel_dir, fld_id, dir inode).
    pub fn folders(&self, root_id: i64) -> Result<Vec<(String, u64, Option<u64>)>> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT rel_dir, fld_id, ino FROM folders WHERE root_id = ?1 ORDER BY rel_dir")
            .map_err(self.err("listing folders"))?;
        let rows = st
            .query_map(params![root_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(self.err("listing folders"))?;
        Ok(rows)
    }

    /// A local directory was renamed: move its folder rows and the rows of
    /// every file below it to the new relative path, in one transaction.
    pub fn rename_dir(&self, root_id: i64, from: &str, to: &str, now: i64) -> Result<()> {
        // substr(x, length(from) + 1) of "from/rest" is "/rest".
        self.tx("renaming a directory", |tx| {
            tx.execute(
                "UPDATE folders SET rel_dir = ?3 || substr(rel_dir, length(?2) + 1)
                 WHERE root_id = ?1 AND (rel_dir = ?2 OR substr(rel_dir, 1, length(?2) + 1) = ?2 || '/')",
                params![root_id, from, to],
            )?;
            tx.execute(
                "UPDATE files SET rel_path = ?3 || substr(rel_path, length(?2) + 1), updated_at = ?4
                 WHERE root_id = ?1 AND substr(rel_path, 1, length(?2) + 1) = ?2 || '/'",
                params![root_id, from, to, now],
            )?;
            // The remote folder was renamed with the directory: files in it
            // are where they belong without an edit of their own.
            tx.execute(
                "UPDATE files SET placed_path = ?3 || substr(placed_path, length(?2) + 1)
                 WHERE root_id = ?1 AND substr(placed_path, 1, length(?2) + 1) = ?2 || '/'",
                params![root_id, from, to],
            )?;
            Ok(())
        })
    }

    /// Forget the folder ids of `rel_dir` and below ("" = the whole root).
    pub fn forget_folder_tree(&self, root_id: i64, rel_dir: &str) -> Result<()> {
        self.tx("forgetting a folder", |tx| {
            tx.execute(
                "DELETE FROM folders WHERE root_id = ?1
                   AND (?2 = '' OR rel_dir = ?2 OR substr(rel_dir, 1, length(?2) + 1) = ?2 || '/')",
                params![root_id, rel_dir],
            )?;
            Ok(())
        })
    }

    /// A remembered directory is gone: forget its inode, so that a new
    /// directory that gets the freed inode is not taken for a rename.
    pub fn clear_folder_ino(&self, root_id: i64, rel_dir: &str) -> Result<()> {
        self.tx("forgetting a directory inode", |tx| {
            tx.execute(
                "UPDATE folders SET ino = NULL WHERE root_id = ?1 AND rel_dir = ?2",
                params![root_id, rel_dir],
            )?;
            Ok(())
        })
    }

    /// vidsync created this remote folder (it was empty then).
    pub fn note_created_folder(&self, fld_id: u64) -> Result<()> {
        self.tx("recording a created folder", |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO created_folders (host, fld_id) VALUES (?1, ?2)",
                params![self.host(), fld_id as i64],
            )?;
            Ok(())
        })
    }

    /// Did vidsync create this remote folder?
    pub fn created_folder(&self, fld_id: u64) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM created_folders WHERE host = ?1 AND fld_id = ?2)",
                params![self.host(), fld_id as i64],
                |r| r.get(0),
            )
            .map_err(self.err("reading created folders"))
    }

    /// The remote trash folder at `path` ('/'-separated), once found or
    /// created: it is looked up once, not on every pass.
    pub fn trash_folder(&self, path: &str) -> Result<Option<u64>> {
        self.conn()
            .query_row(
                "SELECT fld_id FROM trash_folders WHERE host = ?1 AND path = ?2",
                params![self.host(), path],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|o| o.map(|v| v as u64))
            .map_err(self.err("reading the trash folder"))
    }

    pub fn set_trash_folder(&self, path: &str, fld_id: u64) -> Result<()> {
        self.tx("recording the trash folder", |tx| {
            tx.execute(
                "INSERT INTO trash_folders (host, path, fld_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT(host, path) DO UPDATE SET fld_id = excluded.fld_id",
                params![self.host(), path, fld_id as i64],
            )?;
            Ok(())
        })
    }
}
