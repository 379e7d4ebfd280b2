//! One video host as a value: its API client, what the daemon knows of its
//! account, its remote folders and recent folder listings. Everything
//! per-host lives here, so that a library mirrored to two hosts is two
//! `Host`s, not two globals.

pub mod account;
pub mod folders;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::{ApiError, Client, ErrorClass, ListedFile};
use crate::config::Config;
use crate::lock::lock;
use crate::store::{StorageLeft, Store};

pub use account::Account;
pub use folders::{FolderError, Folders};

/// How long a folder listing serves the search for copies already there.
const LISTING_TTL: Duration = Duration::from_secs(60);

/// A remote folder's files and when they were listed.
type Listing = (Instant, Arc<Vec<ListedFile>>);

#[derive(Debug)]
pub struct Host {
    pub client: Client,
    pub account: Account,
    pub folders: Folders,
    /// Wakes idle upload workers: something was queued, or uploads may go
    /// on again (the key works, space came back).
    pub wake: tokio::sync::Notify,
    store: Arc<Store>,
    /// Recent file listings of remote folders, for the search for copies
    /// already there (one listing serves every new file of a folder).
    listings: Mutex<HashMap<u64, Listing>>,
}

impl Host {
    pub fn new(config: &Config, store: Arc<Store>) -> Result<Host, ApiError> {
        Ok(Host {
            client: Client::new(&config.api)?,
            account: Account::new(store.clone(), config.upload.retry_max),
            folders: Folders::default(),
            wake: tokio::sync::Notify::new(),
            store,
            listings: Mutex::new(HashMap::new()),
        })
    }

    /// Check the key with account/info (and the storage left). Errors other
    /// than a rejection leave the state as it is (the host may be down).
    pub async fn check_key(&self) -> Result<(), ApiError> {
        match self.client.account_info().await {
            Ok(info) => {
                self.account.key_accepted();
                self.wake.notify_waiters();
                let left = match info.storage_left {
                    crate::api::StorageLeft::Bytes(b) => StorageLeft::Bytes(b),
                    crate::api::StorageLeft::Unlimited => StorageLeft::Unlimited,
                };
                let _ = self.store.set_storage_left(left);
                if info.storage_left.over_quota() {
                    // A negative storage_left is the quota exceeded, not the
                    // key: uploads wait (account-wide) and say why.
                    self.account.mark_over_quota(
                        &self.client,
                        &format!(
                            "the account is over its storage quota (storage left: {left}, as the host reports it); uploads wait until space is freed"
                        ),
                    );
                } else if self.account.quota_ok() {
                    // Space again. An account-wide backoff already running
                    // (a file refused for disk space) keeps its course: a
                    // little space is not room for every file in the queue.
                    tracing::info!("the account has storage space again; uploads resume");
                    self.wake.notify_waiters();
                }
                Ok(())
            }
            Err(e) => {
                if e.class() == ErrorClass::KeyRejected {
                    self.account.key_rejected(&e.to_string());
                }
                Err(e)
            }
        }
    }

    /// Every file of a remote folder, from a listing at most `LISTING_TTL`
    /// old. Codes found in it are checked against the store at use, so
    /// an older listing can only miss a file added since, never adopt one
    /// twice.
    pub async fn folder_files(&self, fld_id: u64) -> Result<Arc<Vec<ListedFile>>, ApiError> {
        if let Some((at, list)) = lock(&self.listings).get(&fld_id)
            && at.elapsed() < LISTING_TTL
        {
            return Ok(list.clone());
        }
        let q = crate::api::FileListQuery {
            fld_id: Some(fld_id),
            ..Default::default()
        };
        let list = Arc::new(self.client.file_list_all(&q).await?);
        lock(&self.listings).insert(fld_id, (Instant::now(), list.clone()));
        Ok(list)
    }

    /// A folder's listing is stale once an upload into it may have stored
    /// a file that no reply told us about.
    pub fn forget_listing(&self, fld_id: u64) {
        lock(&self.listings).remove(&fld_id);
    }

    /// The remote folder of `rel_dir` ("" = the sync folder itself) under
    /// the remote path `remote` of root `root_id` whose local folder is
    /// `local`: found or created once.
    pub async fn folder_for(
        &self,
        root_id: i64,
        local: &std::path::Path,
        remote: &[String],
        rel_dir: &str,
    ) -> Result<u64, FolderError> {
        let local = local.to_path_buf();
        let ino = move |d: &str| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(if d.is_empty() {
                local.clone()
            } else {
                local.join(d)
            })
            .ok()
            .map(|m| m.ino())
        };
        self.folders
            .resolve(&self.store, &self.client, root_id, remote, rel_dir, ino)
            .await
    }

    /// While the key is rejected, check it again now and then; while the
    /// account is over quota, rarely (hosts ration calls).
    pub async fn key_watch(&self, retry_min: Duration, stop: tokio_util::sync::CancellationToken) {
        // As often as the first retry, within [1 s, 60 s]: one cheap call.
        let every = retry_min
            .clamp(Duration::from_secs(1), Duration::from_secs(60))
            .min(self.account.quota_recheck());
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_quota_check = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = t.tick() => {
                    let quota_due = self.account.over_quota()
                        && last_quota_check.elapsed() >= self.account.quota_recheck();
                    if !self.account.key_ok() || quota_due {
                        last_quota_check = Instant::now();
                        let _ = self.check_key().await;
                    }
                }
            }
        }
    }
}
