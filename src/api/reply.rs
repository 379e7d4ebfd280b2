//! Reply shapes of the XVS API and the lenient parsing they need.
//!
//! Real hosts send numbers as strings (`"fld_id":"25"`) or as numbers
//! (`"canplay":1`), `status` as `403` or `"403"`, `storage_left` as a number or
//! `"unlimited"`, and HTML-escaped titles. Every field that has been seen in
//! both forms is read through one of the `lenient` helpers below, and every
//! title is unescaped here so that callers compare plain text.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Lenient field readers for `#[serde(deserialize_with = ...)]`.
pub(crate) mod lenient {
    use super::*;

    fn to_u64(v: &Value) -> Option<u64> {
        match v {
            Value::Number(n) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
            Value::String(s) => {
                let s = s.trim();
                if s.is_empty() {
                    Some(0)
                } else {
                    s.parse::<u64>()
                        .ok()
                        .or_else(|| s.parse::<f64>().ok().map(|f| f as u64))
                }
            }
            Value::Bool(b) => Some(u64::from(*b)),
            Value::Null => Some(0),
            _ => None,
        }
    }

    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let v = Value::deserialize(d)?;
        to_u64(&v).ok_or_else(|| serde::de::Error::custom(format!("expected a number, got {v}")))
    }

    fn to_i64(v: &Value) -> Option<i64> {
        match v {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => {
                let s = s.trim();
                s.parse::<i64>()
                    .ok()
                    .or_else(|| s.parse::<f64>().ok().map(|f| f as i64))
            }
            _ => None,
        }
    }

    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let v = Option::<Value>::deserialize(d)?;
        Ok(v.as_ref().and_then(to_i64))
    }

    /// A signed number (storage left goes negative over quota).
    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::Null => Ok(0),
            Value::String(s) if s.trim().is_empty() => Ok(0),
            _ => to_i64(&v)
                .ok_or_else(|| serde::de::Error::custom(format!("expected a number, got {v}"))),
        }
    }

    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let v = Option::<Value>::deserialize(d)?;
        Ok(v.as_ref().and_then(to_u64))
    }

    pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match &v {
            Value::Bool(b) => *b,
            Value::String(s) if s.eq_ignore_ascii_case("true") => true,
            other => to_u64(other).unwrap_or(0) != 0,
        })
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match v {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        })
    }

    /// A title or name: any scalar, HTML entities decoded.
    pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let s = string(d)?;
        Ok(super::unescape(&s))
    }
}

/// Decode the HTML entities hosts put in titles (`&#40;` for `(`).
pub fn unescape(s: &str) -> String {
    if s.contains('&') {
        html_escape::decode_html_entities(s).into_owned()
    } else {
        s.to_string()
    }
}

/// The reply envelope: `{msg, server_time, status, result}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope {
    #[serde(default, deserialize_with = "lenient::string")]
    pub msg: String,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub status: Option<u64>,
    #[serde(default)]
    pub result: Value,
    /// Only upload replies have this.
    #[serde(default)]
    pub files: Option<Vec<UploadedFile>>,
    /// Calls left in the current rate-limit period, on hosts that limit.
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub requests_available: Option<i64>,
    /// The host's local time, "YYYY-MM-DD HH:MM:SS" (no zone).
    #[serde(default, deserialize_with = "lenient::string")]
    pub server_time: String,
}

/// `storage_left` of account/info: the quota minus what is used, which is
/// negative when the account is over quota (not a key problem), or
/// "unlimited" when the account has no quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageLeft {
    Bytes(i64),
    Unlimited,
}

impl StorageLeft {
    /// Over quota: uploads wait (account-wide) until space is freed.
    pub fn over_quota(&self) -> bool {
        matches!(self, StorageLeft::Bytes(b) if *b < 0)
    }
}

fn storage_left<'de, D: Deserializer<'de>>(d: D) -> Result<StorageLeft, D::Error> {
    let v = Value::deserialize(d)?;
    if let Value::String(s) = &v
        && s.trim().eq_ignore_ascii_case("unlimited")
    {
        return Ok(StorageLeft::Unlimited);
    }
    lenient::i64(v)
        .map(StorageLeft::Bytes)
        .map_err(serde::de::Error::custom)
}

#[derive(Debug, Clone, Deserialize)]
pub struct AccountInfo {
    #[serde(default, deserialize_with = "lenient::string")]
    pub login: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub email: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub balance: String,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub premium: bool,
    #[serde(default, deserialize_with = "lenient::string")]
    pub premium_expire: String,
    /// As the host gives it (KB on the documented deployment): shown, never
    /// computed with.
    #[serde(default, deserialize_with = "lenient::u64")]
    pub storage_used: u64,
    #[serde(deserialize_with = "storage_left")]
    pub storage_left: StorageLeft,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub files_total: u64,
}

/// One day of account statistics; fields beyond the common ones are kept raw.
#[derive(Debug, Clone, Deserialize)]
pub struct StatsDay {
    #[serde(default, deserialize_with = "lenient::string")]
    pub day: String,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub views: u64,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub downloads: u64,
    #[serde(default, deserialize_with = "lenient::string")]
    pub profit_total: String,
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// One entry of an upload reply's `files` array.
#[derive(Debug, Clone, Deserialize)]
pub struct UploadedFile {
    #[serde(default, deserialize_with = "lenient::string")]
    pub filecode: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub filename: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub status: String,
}

/// file/info entry. `status` 200 = present, 404 = gone, 451 = DMCA scheduled.
#[derive(Debug, Clone, Deserialize)]
pub struct FileInfo {
    #[serde(default = "ok_status", deserialize_with = "lenient::u64")]
    pub status: u64,
    #[serde(deserialize_with = "lenient::string")]
    pub file_code: String,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub canplay: bool,
    #[serde(default, deserialize_with = "lenient::text")]
    pub file_title: String,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub file_length: u64,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub file_views: u64,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub file_views_full: u64,
    #[serde(default, deserialize_with = "lenient::string")]
    pub file_created: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub file_last_download: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub player_img: String,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub cat_id: Option<u64>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub file_fld_id: Option<u64>,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub file_public: bool,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub file_adult: bool,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub file_premium_only: bool,
    #[serde(default, deserialize_with = "lenient::text")]
    pub tags: String,
}

fn ok_status() -> u64 {
    200
}

/// A file as file/list and folder/list show it.
#[derive(Debug, Clone, Deserialize)]
pub struct ListedFile {
    #[serde(deserialize_with = "lenient::string")]
    pub file_code: String,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub fld_id: u64,
    #[serde(default, deserialize_with = "lenient::text")]
    pub title: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub uploaded: String,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub length: u64,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub public: bool,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub views: u64,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub canplay: bool,
    #[serde(default, deserialize_with = "lenient::string")]
    pub link: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub thumbnail: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FileListPage {
    #[serde(default)]
    pub files: Vec<ListedFile>,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub results_total: u64,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub pages: u64,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub results: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LinkVersion {
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub size: u64,
    #[serde(default, deserialize_with = "lenient::string")]
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DirectLinks {
    #[serde(default)]
    pub versions: Vec<LinkVersion>,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub file_length: u64,
    #[serde(default, deserialize_with = "lenient::string")]
    pub player_img: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub hls_direct: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Cloned {
    #[serde(deserialize_with = "lenient::string")]
    pub filecode: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletedBy {
    Me,
    Admin,
    Expired,
    Other(String),
}

impl DeletedBy {
    pub fn as_str(&self) -> &str {
        match self {
            DeletedBy::Me => "me",
            DeletedBy::Admin => "admin",
            DeletedBy::Expired => "expired",
            DeletedBy::Other(s) => s,
        }
    }
}

fn unknown_deleter() -> DeletedBy {
    DeletedBy::Other("unknown".into())
}

fn deleted_by<'de, D: Deserializer<'de>>(d: D) -> Result<DeletedBy, D::Error> {
    let s = lenient::string(d)?;
    Ok(match s.to_ascii_lowercase().as_str() {
        "me" => DeletedBy::Me,
        "admin" => DeletedBy::Admin,
        "expired" => DeletedBy::Expired,
        _ => DeletedBy::Other(s),
    })
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeletedFile {
    #[serde(deserialize_with = "lenient::string")]
    pub file_code: String,
    #[serde(default, deserialize_with = "lenient::text")]
    pub title: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub deleted: String,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub deleted_ago_sec: u64,
    /// Some hosts leave it out; then it is not known who deleted it.
    #[serde(default = "unknown_deleter", deserialize_with = "deleted_by")]
    pub deleted_by: DeletedBy,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DmcaEntry {
    #[serde(deserialize_with = "lenient::string")]
    pub file_code: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub del_time: String,
    /// Negative when the deletion is overdue.
    #[serde(default, deserialize_with = "lenient::i64")]
    pub del_in_sec: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Encoding {
    #[serde(deserialize_with = "lenient::string")]
    pub file_code: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub quality: String,
    #[serde(default, deserialize_with = "lenient::text")]
    pub title: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub status: String,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub progress: u64,
    #[serde(default, deserialize_with = "lenient::string")]
    pub link: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Folder {
    #[serde(deserialize_with = "lenient::u64")]
    pub fld_id: u64,
    #[serde(default, deserialize_with = "lenient::text")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub code: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FolderListing {
    #[serde(default)]
    pub folders: Vec<Folder>,
    #[serde(default)]
    pub files: Vec<ListedFile>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CreatedFolder {
    #[serde(deserialize_with = "lenient::u64")]
    pub fld_id: u64,
}

/// One job of the upload/url queue (file/url_uploads). A job leaves the
/// queue when its file is stored; a failed one stays, as `ERROR`, until
/// deleted. The real call gives no error text.
#[derive(Debug, Clone, Deserialize)]
pub struct UrlJob {
    #[serde(deserialize_with = "lenient::string")]
    pub file_code: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub remote_url: String,
    /// `PENDING`, `WORKING`, `ERROR`, or `STUCK` (working, no news for 5 min).
    #[serde(default, deserialize_with = "lenient::string")]
    pub status: String,
    #[serde(default, deserialize_with = "lenient::u64")]
    pub progress: u64,
}

impl UrlJob {
    /// The host gave up on this fetch.
    pub fn failed(&self) -> bool {
        self.status.eq_ignore_ascii_case("error")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct UrlUpload {
    #[serde(deserialize_with = "lenient::string")]
    pub filecode: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_strings_and_numbers() {
        let v: AccountInfo = serde_json::from_str(
            r#"{"files_total":"31","storage_left":1288483337,"login":"megauploader21",
            "email":"user@example.com","premium_expire":"2022-10-15 04:46:59",
            "balance":"108.00000","premium":1,"storage_used":"685101"}"#,
        )
        .unwrap();
        assert_eq!(v.files_total, 31);
        assert_eq!(v.storage_left, StorageLeft::Bytes(1288483337));
        assert_eq!(v.storage_used, 685101);
        assert!(v.premium);
        let v: AccountInfo =
            serde_json::from_str(r#"{"storage_left":"unlimited","storage_used":7}"#).unwrap();
        assert_eq!(v.storage_left, StorageLeft::Unlimited);
        let v: AccountInfo =
            serde_json::from_str(r#"{"storage_left":"-2048","storage_used":"1050"}"#).unwrap();
        assert_eq!(v.storage_left, StorageLeft::Bytes(-2048));
        assert!(v.storage_left.over_quota());
    }

    #[test]
    fn titles_are_unescaped() {
        let f: ListedFile = serde_json::from_str(
            r#"{"file_code":"abc","title":"Tom &amp; Jerry &#40;1940&#41; &quot;x&quot; &lt;b&gt; it&#39;s","fld_id":"3"}"#,
        )
        .unwrap();
        assert_eq!(f.title, "Tom & Jerry (1940) \"x\" <b> it's");
        assert_eq!(f.fld_id, 3);
    }

    #[test]
    fn status_as_string_or_number() {
        let e: Envelope = serde_json::from_str(r#"{"status":"403","msg":"Wrong auth"}"#).unwrap();
        assert_eq!(e.status, Some(403));
        let e: Envelope = serde_json::from_str(r#"{"status":200,"msg":"OK"}"#).unwrap();
        assert_eq!(e.status, Some(200));
    }
}
