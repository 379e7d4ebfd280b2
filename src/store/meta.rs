//! Small facts kept beside the files, one typed accessor each: the key's
//! state, the latest error, an account-wide pause, the storage left and
//! reconcile's records, per host. Each is a row of the `host_meta` table; how a value is
//! written and read is known only here, so no other module formats or parses
//! one.

use std::fmt;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Result, Store};

/// The facts of the `host_meta` table, closed: a new one is a new variant with
/// its own accessors. The strings are on disk: never rename one.
#[derive(Debug, Clone, Copy)]
enum Fact {
    LastError,
    KeyOk,
    StorageLeft,
    AccountPause,
    ReconcileLastPoll,
    ReconcileLastAudit,
    LastReconcile,
    Copied,
}

impl Fact {
    fn as_str(self) -> &'static str {
        match self {
            Fact::LastError => "last_error",
            Fact::KeyOk => "key_ok",
            Fact::StorageLeft => "storage_left",
            Fact::AccountPause => "account_pause",
            Fact::ReconcileLastPoll => "reconcile_last_poll_ok",
            Fact::ReconcileLastAudit => "reconcile_last_audit",
            Fact::LastReconcile => "last_reconcile",
            Fact::Copied => "copied",
        }
    }
}

/// The latest error, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// When it happened; unknown for one written by an early version (plain
    /// text, before the time was kept).
    pub at: Option<i64>,
    pub error: String,
}

/// The storage the account has left, as the host last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageLeft {
    /// Negative when the account is over its quota.
    Bytes(i64),
    Unlimited,
}

impl fmt::Display for StorageLeft {
    /// The form `status` shows and the store keeps: a number, or `unlimited`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageLeft::Bytes(b) => write!(f, "{b}"),
            StorageLeft::Unlimited => f.write_str("unlimited"),
        }
    }
}

impl StorageLeft {
    fn parse(s: &str) -> Option<StorageLeft> {
        if s == "unlimited" {
            return Some(StorageLeft::Unlimited);
        }
        s.parse().ok().map(StorageLeft::Bytes)
    }
}

/// Why uploads wait for the account (quota, rate limit, daily limit) and
/// until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountPause {
    pub until: i64,
    pub reason: String,
}

/// The outcome of the latest reconcile pass, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileRecord {
    pub at: i64,
    pub ok: bool,
    /// A summary of what the pass did, or the error that stopped it.
    pub result: String,
    /// The plan's figures: absent when the pass failed before planning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removals: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded: Option<usize>,
}

impl ReconcileRecord {
    /// A pass that stopped on an error before it had a plan.
    pub fn failed(at: i64, error: String) -> ReconcileRecord {
        ReconcileRecord {
            at,
            ok: false,
            result: error,
            blocked: None,
            removals: None,
            uploaded: None,
        }
    }
}

/// What copies host to host (`copy_from`) brought to this host since it
/// was configured: files the host fetched from another host instead of
/// receiving them from this machine, and their bytes (the upload they
/// saved).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Copied {
    pub files: u64,
    pub bytes: u64,
}

/// Count one more finished copy of `bytes` for `host`, inside the caller's
/// transaction (the one that records the copy's code), so the count can
/// neither miss a copy nor count one twice.
pub(super) fn add_copied(
    tx: &rusqlite::Transaction<'_>,
    host: &str,
    bytes: u64,
) -> rusqlite::Result<()> {
    let mut c: Copied = read_fact(tx, host, Fact::Copied)?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default();
    c.files += 1;
    c.bytes += bytes;
    write_fact(
        tx,
        host,
        Fact::Copied,
        &serde_json::to_string(&c).unwrap_or_default(),
    )
}

/// A fact's stored text for `host` (the one SELECT of `host_meta`).
fn read_fact(
    conn: &rusqlite::Connection,
    host: &str,
    key: Fact,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT v FROM host_meta WHERE host = ?1 AND k = ?2",
        params![host, key.as_str()],
        |r| r.get(0),
    )
    .optional()
}

/// Store a fact's text for `host` (the one write of `host_meta`).
fn write_fact(
    conn: &rusqlite::Connection,
    host: &str,
    key: Fact,
    value: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO host_meta (host, k, v) VALUES (?1, ?2, ?3)
         ON CONFLICT(host, k) DO UPDATE SET v = excluded.v",
        params![host, key.as_str(), value],
    )?;
    Ok(())
}

/// The form `last_error` is written in.
#[derive(Serialize, Deserialize)]
struct LastErrorJson {
    at: i64,
    error: String,
}

impl Store {
    // Every fact is about one host's account: kept per host.
    fn meta(&self, key: Fact) -> Result<Option<String>> {
        read_fact(&self.conn(), self.host(), key).map_err(self.err("reading meta"))
    }

    fn set_meta(&self, key: Fact, value: &str) -> Result<()> {
        self.tx("writing meta", |tx| write_fact(tx, self.host(), key, value))
    }

    /// A JSON value, or None if absent or unreadable (a half-written or
    /// foreign value is no reason to fail `status`).
    fn meta_json<T: serde::de::DeserializeOwned>(&self, key: Fact) -> Result<Option<T>> {
        Ok(self.meta(key)?.and_then(|v| serde_json::from_str(&v).ok()))
    }

    fn set_meta_json<T: Serialize>(&self, key: Fact, value: &T) -> Result<()> {
        // Serialising these plain structs cannot fail; an empty object would
        // read back as absent.
        let text = serde_json::to_string(value).unwrap_or_default();
        self.set_meta(key, &text)
    }

    fn meta_ms(&self, key: Fact) -> Result<Option<i64>> {
        Ok(self.meta(key)?.and_then(|v| v.parse().ok()))
    }

    // ---- the key and the account ----

    /// What copies from other hosts brought to this one (zero if none).
    pub fn copied(&self) -> Result<Copied> {
        Ok(self.meta_json(Fact::Copied)?.unwrap_or_default())
    }

    /// Did the host accept the API key when last asked? None: never asked.
    pub fn key_ok(&self) -> Result<Option<bool>> {
        Ok(self.meta(Fact::KeyOk)?.map(|v| v == "true"))
    }

    pub fn set_key_ok(&self, ok: bool) -> Result<()> {
        self.set_meta(Fact::KeyOk, if ok { "true" } else { "false" })
    }

    pub fn last_error(&self) -> Result<Option<LastError>> {
        Ok(self.meta(Fact::LastError)?.map(|raw| {
            match serde_json::from_str::<LastErrorJson>(&raw) {
                Ok(v) => LastError {
                    at: Some(v.at),
                    error: v.error,
                },
                // Written by an early version: the plain text.
                Err(_) => LastError {
                    at: None,
                    error: raw,
                },
            }
        }))
    }

    pub fn set_last_error(&self, at: i64, error: &str) -> Result<()> {
        self.set_meta_json(
            Fact::LastError,
            &LastErrorJson {
                at,
                error: error.to_string(),
            },
        )
    }

    pub fn storage_left(&self) -> Result<Option<StorageLeft>> {
        Ok(self
            .meta(Fact::StorageLeft)?
            .and_then(|v| StorageLeft::parse(&v)))
    }

    pub fn set_storage_left(&self, left: StorageLeft) -> Result<()> {
        self.set_meta(Fact::StorageLeft, &left.to_string())
    }

    /// The latest account-wide pause (it may be over: compare `until`).
    pub fn account_pause(&self) -> Result<Option<AccountPause>> {
        self.meta_json(Fact::AccountPause)
    }

    pub fn set_account_pause(&self, pause: &AccountPause) -> Result<()> {
        self.set_meta_json(Fact::AccountPause, pause)
    }

    // ---- reconcile ----

    /// When the deleted/DMCA lists were last read and applied: the next
    /// poll's window starts there.
    pub fn reconcile_last_poll(&self) -> Result<Option<i64>> {
        self.meta_ms(Fact::ReconcileLastPoll)
    }

    pub fn set_reconcile_last_poll(&self, at: i64) -> Result<()> {
        self.set_meta(Fact::ReconcileLastPoll, &at.to_string())
    }

    /// When the last file/info audit ran.
    pub fn reconcile_last_audit(&self) -> Result<Option<i64>> {
        self.meta_ms(Fact::ReconcileLastAudit)
    }

    pub fn set_reconcile_last_audit(&self, at: i64) -> Result<()> {
        self.set_meta(Fact::ReconcileLastAudit, &at.to_string())
    }

    pub fn last_reconcile(&self) -> Result<Option<ReconcileRecord>> {
        self.meta_json(Fact::LastReconcile)
    }

    pub fn set_last_reconcile(&self, record: &ReconcileRecord) -> Result<()> {
        self.set_meta_json(Fact::LastReconcile, record)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::open;
    use super::*;

    #[test]
    fn each_fact_reads_back_as_written() {
        let (_d, s) = open();
        assert_eq!(s.key_ok().unwrap(), None);
        s.set_key_ok(false).unwrap();
        assert_eq!(s.key_ok().unwrap(), Some(false));
        s.set_key_ok(true).unwrap();
        assert_eq!(s.key_ok().unwrap(), Some(true));

        s.set_last_error(5, "HTTP 502").unwrap();
        assert_eq!(
            s.last_error().unwrap(),
            Some(LastError {
                at: Some(5),
                error: "HTTP 502".into()
            })
        );

        for left in [StorageLeft::Bytes(-3), StorageLeft::Unlimited] {
            s.set_storage_left(left).unwrap();
            assert_eq!(s.storage_left().unwrap(), Some(left));
        }

        let pause = AccountPause {
            until: 9,
            reason: "quota".into(),
        };
        s.set_account_pause(&pause).unwrap();
        assert_eq!(s.account_pause().unwrap(), Some(pause));

        s.set_reconcile_last_poll(11).unwrap();
        s.set_reconcile_last_audit(12).unwrap();
        assert_eq!(s.reconcile_last_poll().unwrap(), Some(11));
        assert_eq!(s.reconcile_last_audit().unwrap(), Some(12));

        let failed = ReconcileRecord::failed(13, "HTTP 502".into());
        s.set_last_reconcile(&failed).unwrap();
        assert_eq!(s.last_reconcile().unwrap(), Some(failed));
    }

    /// `status` shows these records as JSON: the shape is an interface.
    #[test]
    fn reconcile_records_keep_their_json_shape() {
        let failed = ReconcileRecord::failed(1, "boom".into());
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            serde_json::json!({"at": 1, "ok": false, "result": "boom"})
        );
        let applied = ReconcileRecord {
            at: 2,
            ok: true,
            result: "nothing".into(),
            blocked: Some(false),
            removals: Some(0),
            uploaded: Some(4),
        };
        assert_eq!(
            serde_json::to_value(&applied).unwrap(),
            serde_json::json!({"at": 2, "ok": true, "result": "nothing",
                               "blocked": false, "removals": 0, "uploaded": 4})
        );
    }

    #[test]
    fn a_plain_text_last_error_of_an_early_version_is_read() {
        let (_d, s) = open();
        s.set_meta(Fact::LastError, "disk full").unwrap();
        assert_eq!(
            s.last_error().unwrap(),
            Some(LastError {
                at: None,
                error: "disk full".into()
            })
        );
    }
}
