//! The account's state as the daemon knows it: whether the key works, an
//! account-wide pause (rate limits, a daily limit, refusals in a row), and
//! whether the account is over its storage quota. Recorded in the store for
//! `status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use crate::api::Client;
use crate::clock::now_ms;
use crate::store::{AccountPause, EventKind, Notice, Store};

#[derive(Debug)]
pub struct Account {
    store: Arc<Store>,
    /// The longest retry delay (`upload.retry_max`).
    retry_max: Duration,
    key_ok: AtomicBool,
    /// The account is over its storage quota (account/info said so, or an
    /// upload was refused for disk space): no upload is sent until a
    /// recheck of account/info shows space again.
    over_quota: AtomicBool,
    pause_until: AtomicI64,
    streak: AtomicU32,
}

impl Account {
    pub fn new(store: Arc<Store>, retry_max: Duration) -> Account {
        Account {
            store,
            retry_max,
            key_ok: AtomicBool::new(true),
            over_quota: AtomicBool::new(false),
            pause_until: AtomicI64::new(0),
            streak: AtomicU32::new(0),
        }
    }

    pub fn key_ok(&self) -> bool {
        self.key_ok.load(Ordering::SeqCst)
    }

    pub fn key_rejected(&self, msg: &str) {
        if self.key_ok.swap(false, Ordering::SeqCst) {
            tracing::error!(error = %msg, "THE HOST REJECTED THE API KEY: all uploads are paused until it works again (check api.key)");
            let _ = self.store.set_key_ok(false);
            self.store
                .notice(&Notice::account(EventKind::KeyRejected, msg), now_ms());
            self.record_error(msg);
        }
    }

    pub fn key_accepted(&self) {
        if !self.key_ok.swap(true, Ordering::SeqCst) {
            tracing::info!("the host accepts the API key again; uploads resume");
        }
        let _ = self.store.set_key_ok(true);
        // Told only after a rejection was (the store pairs the two).
        self.store.notice(
            &Notice::account(EventKind::KeyOkAgain, "uploads resume"),
            now_ms(),
        );
    }

    /// Remember the latest error for `status` (with its time, so an old
    /// one is seen as old).
    pub fn record_error(&self, msg: &str) {
        if let Err(e) = self.store.set_last_error(now_ms(), msg) {
            tracing::debug!(error = %e, "cannot record the last error");
        }
    }

    pub fn pause_until(&self) -> Option<i64> {
        let t = self.pause_until.load(Ordering::SeqCst);
        let now = now_ms();
        if t > now + self.longest_delay_ms() {
            // Set by a clock that has gone back since: over.
            self.pause_until.store(0, Ordering::SeqCst);
            return None;
        }
        (t > now).then_some(t)
    }

    pub fn pause(&self, until: i64) {
        self.pause_until.fetch_max(until, Ordering::SeqCst);
    }

    /// Over quota: hold every upload (a whole file would be sent only to be
    /// refused) until the key watch finds space with account/info.
    pub fn mark_over_quota(&self, client: &Client, msg: &str) {
        if !self.over_quota.swap(true, Ordering::SeqCst) {
            tracing::warn!("{msg}");
            self.record_error(msg);
            self.store
                .notice(&Notice::account(EventKind::OverQuota, msg), now_ms());
        }
        let until = now_ms() + self.quota_recheck().as_millis() as i64;
        self.record_pause(client, until, msg);
    }

    pub fn over_quota(&self) -> bool {
        self.over_quota.load(Ordering::SeqCst)
    }

    /// account/info shows space again: true if the account was over quota.
    pub(super) fn quota_ok(&self) -> bool {
        self.over_quota.swap(false, Ordering::SeqCst)
    }

    /// How often account/info is asked again while over quota: rarely
    /// (hosts ration calls), at most `retry_max` apart.
    pub fn quota_recheck(&self) -> Duration {
        self.retry_max
            .min(Duration::from_secs(300))
            .max(Duration::from_millis(100))
    }

    /// Tell `status` why uploads wait for the account (quota, rate limit,
    /// a daily limit, plain-http upload servers) and until when.
    pub fn record_pause(&self, client: &Client, until: i64, reason: &str) {
        let reason = match client.held() {
            // Only a daily limit holds calls this long (a minute's, < 60 s).
            Some((d, why)) if d > Duration::from_secs(70) => {
                let reason = format!(
                    "{why}; API calls resume in {} min",
                    d.as_secs().div_ceil(60)
                );
                self.store
                    .notice(&Notice::account(EventKind::DailyLimit, &reason), now_ms());
                reason
            }
            _ => reason.to_string(),
        };
        if let Err(e) = self
            .store
            .set_account_pause(&AccountPause { until, reason })
        {
            tracing::debug!(error = %e, "cannot record the account pause");
        }
    }

    /// No retry is scheduled further ahead than this (twice `retry_max`,
    /// and at least a minute: some waits are fixed, like the second before
    /// a file that cannot be stat'ed is looked at again): anything later
    /// comes from a clock that went back. Without the floor, a small
    /// `retry_max` made such a wait "due at once", and a vanished sync
    /// folder spun the worker at ~200 tries a second.
    pub fn longest_delay_ms(&self) -> i64 {
        (self.retry_max.as_millis() as i64)
            .saturating_mul(2)
            .max(60_000)
    }

    /// Count an account-wide refusal; returns the streak length.
    pub fn refused(&self) -> u32 {
        self.streak.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn after_success(&self) {
        self.streak.store(0, Ordering::SeqCst);
    }
}
