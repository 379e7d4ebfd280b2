//! Local directory -> remote folder id: find an existing folder by name,
//! create it once when missing, remember the id in the store.
//!
//! One async lock serialises resolution, so that several uploads into a new
//! directory create its remote folder once. Folder creation is rare (once
//! per directory, ever), so the lock costs nothing in practice.
//!
//! What each remote parent holds is listed once and kept a while, and a
//! folder vidsync just created is known to be empty: a tree of new
//! directories costs one folder/create per directory, not a listing before
//! each (hosts ration API calls).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::{ApiError, Client};
use crate::lock::lock;
use crate::store::{Store, StoreError};

/// How long a parent's listing answers "is there a folder named X": a
/// folder someone else creates meanwhile under the same parent could get a
/// twin of the same name, so not long. Folder renames vidsync makes, and a
/// folder found missing, forget every listing at once.
const CHILDREN_TTL: Duration = Duration::from_secs(600);

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

/// A remote folder's sub-folders (name as the host stores it -> id), and
/// when they were listed.
type Children = (Instant, HashMap<String, u64>);

#[derive(Debug, Default)]
pub struct Folders {
    lock: tokio::sync::Mutex<()>,
    /// Sub-folders of remote folders (name as the host stores it -> id), as
    /// listed or created, by parent id.
    children: Mutex<HashMap<u64, Children>>,
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
    /// Forget what the remote folders were listed to hold (after a rename
    /// on the host, or a folder found missing).
    pub fn forget_listings(&self) {
        lock(&self.children).clear();
    }

    /// `find_or_create`, with each parent listed at most once a while.
    async fn find_or_create_cached(
        &self,
        client: &Client,
        parent: u64,
        name: &str,
        shown: &str,
    ) -> Result<(u64, bool), FolderError> {
        let doubled = name.replace('\\', "\\\\");
        let known = {
            let children = lock(&self.children);
            children
                .get(&parent)
                .filter(|(at, _)| at.elapsed() < CHILDREN_TTL)
                .map(|(_, c)| c.get(name).or_else(|| c.get(&doubled)).copied())
        };
        match known {
            Some(Some(id)) => return Ok((id, false)),
            Some(None) => {}
            None => {
                let listing =
                    client
                        .folder_list(parent, false)
                        .await
                        .map_err(|source| FolderError::Api {
                            path: shown.to_string(),
                            source,
                        })?;
                let found: HashMap<String, u64> = listing
                    .folders
                    .iter()
                    .map(|f| (f.name.clone(), f.fld_id))
                    .collect();
                let id = found.get(name).or_else(|| found.get(&doubled)).copied();
                lock(&self.children).insert(parent, (Instant::now(), found));
                if let Some(id) = id {
                    return Ok((id, false));
                }
            }
        }
        let (id, created) = find_or_create_listed(client, parent, name, shown, false).await?;
        let mut children = lock(&self.children);
        if let Some((_, c)) = children.get_mut(&parent) {
            c.insert(name.to_string(), id);
        }
        if created {
            // Just made: nothing in it yet.
            children.insert(id, (Instant::now(), HashMap::new()));
        }
        Ok((id, created))
    }

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
                        let (next, created) = self
                            .find_or_create_cached(
                                client,
                                id,
                                &remote_name(name),
                                &remote.join("/"),
                            )
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
            let (id, created) = self
                .find_or_create_cached(client, base, &remote_name(name), &dir)
                .await?;
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
    find_or_create_listed(client, parent, name, shown, true).await
}

/// `find_or_create`; `look_first` false when the caller listed the parent
/// already and the name is not there.
async fn find_or_create_listed(
    client: &Client,
    parent: u64,
    name: &str,
    shown: &str,
    look_first: bool,
) -> Result<(u64, bool), FolderError> {
    let err = |source| FolderError::Api {
        path: shown.to_string(),
        source,
    };
    let find = async || find_only(client, parent, name).await.map_err(err);
    if look_first && let Some(id) = find().await? {
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
