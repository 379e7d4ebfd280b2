//! Local directory -> remote folder id: find an existing folder by name,
//! create it once when missing, remember the id in the store.
//!
//! One async lock serialises resolution, so that several uploads into a new
//! directory create its remote folder once. Folder creation is rare (once
//! per directory, ever), so the lock costs nothing in practice.

use crate::api::{ApiError, Client};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("remote folder {path:?}: {source}")]
    Api {
        path: String,
        #[source]
        source: ApiError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FolderError {
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            FolderError::Api { source, .. } => Some(source),
            FolderError::Store(_) => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Folders {
    lock: tokio::sync::Mutex<()>,
}

/// Hosts refuse folder names shorter than two characters; a one-letter
/// directory ("A", "B" for an alphabetical library) gets a trailing "_".
/// `<`, `>`, `"` and NUL, which folder/edit would silently skip, become
/// spaces, so a rename is never lost.
pub fn remote_name(local: &str) -> String {
    let name = crate::engine::edit_safe(local);
    if name.chars().count() < 2 {
        format!("{name}_")
    } else {
        name
    }
}

impl Folders {
    /// The folder id for `rel_dir` ("" = the sync root) of a root whose
    /// remote path is `remote` (components under the account root).
    pub async fn resolve(
        &self,
        store: &Store,
        client: &Client,
        root_id: i64,
        remote: &[String],
        rel_dir: &str,
        dir_ino: impl Fn(&str) -> Option<u64>,
    ) -> Result<u64, FolderError> {
        if let Some(id) = store.folder(root_id, rel_dir)? {
            return Ok(id);
        }
        let _guard = self.lock.lock().await;
        // Walk down from the deepest remembered ancestor.
        let mut parts: Vec<&str> = if rel_dir.is_empty() {
            Vec::new()
        } else {
            rel_dir.split('/').collect()
        };
        let mut missing: Vec<&str> = Vec::new();
        let mut base = loop {
            let dir = parts.join("/");
            if let Some(id) = store.folder(root_id, &dir)? {
                break id;
            }
            match parts.pop() {
                Some(p) => missing.push(p),
                None => {
                    // The sync root itself: resolve its remote path.
                    let mut id = 0;
                    for name in remote {
                        let (next, created) =
                            find_or_create(client, id, &remote_name(name), &remote.join("/"))
                                .await?;
                        if created {
                            store.note_created_folder(next)?;
                        }
                        id = next;
                    }
                    store.set_folder(root_id, "", id, dir_ino(""))?;
                    break id;
                }
            }
        };
        while let Some(name) = missing.pop() {
            parts.push(name);
            let dir = parts.join("/");
            let (id, created) = find_or_create(client, base, &remote_name(name), &dir).await?;
            if created {
                store.note_created_folder(id)?;
            }
            base = id;
            store.set_folder(root_id, &dir, base, dir_ino(&dir))?;
        }
        Ok(base)
    }
}

/// The id of the folder `name` under `parent`, if the host has it. The host
/// stores names with a `\` doubled, so both spellings are recognised.
pub async fn find_only(client: &Client, parent: u64, name: &str) -> Result<Option<u64>, ApiError> {
    let listing = client.folder_list(parent, false).await?;
    let doubled = name.replace('\\', "\\\\");
    Ok(listing
        .folders
        .iter()
        .find(|f| f.name == name || f.name == doubled)
        .map(|f| f.fld_id))
}

/// The folder id of a path of names under the root, without creating
/// anything: `None` if a folder on the way does not exist.
pub async fn find_path(client: &Client, names: &[String]) -> Result<Option<u64>, ApiError> {
    let mut id = 0;
    for name in names {
        match find_only(client, id, &remote_name(name)).await? {
            Some(next) => id = next,
            None => return Ok(None),
        }
    }
    Ok(Some(id))
}

/// The id of the folder `name` under `parent`, created if it does not
/// exist; `true` when this call created it.
pub async fn find_or_create(
    client: &Client,
    parent: u64,
    name: &str,
    shown: &str,
) -> Result<(u64, bool), FolderError> {
    let err = |source| FolderError::Api {
        path: shown.to_string(),
        source,
    };
    let find = async || find_only(client, parent, name).await.map_err(err);
    if let Some(id) = find().await? {
        return Ok((id, false));
    }
    match client.folder_create(name, parent, None).await {
        Ok(id) => {
            tracing::info!(folder = %shown, fld_id = id, "created remote folder");
            Ok((id, true))
        }
        // The reply may be lost after the host created it: look again
        // before anyone tries to create it a second time.
        Err(e) if e.outcome_unknown() => match find().await? {
            Some(id) => Ok((id, false)),
            None => Err(err(e)),
        },
        Err(e) => Err(err(e)),
    }
}
