//! The configuration file: raw TOML -> validated `Config` (durations, paths, key source).
//!
//! serde does the reading: durations go through `humantime-serde`, byte
//! sizes through `bytesize`, counts that must not be zero are `NonZero*`, and
//! a value with a rule of its own (an extension, a glob, a log level, a
//! title template) is checked by its own `Deserialize`, so that toml points
//! at the offending value. What serde cannot see is checked after it, with
//! the value's span: the key and its four sources, the URL, paths relative
//! to the file, `retry_min <= retry_max`, the `[[sync]]` entries.
//!
//! Entry points: [`Config::load`] (the daemon), [`Config::load_with`] and
//! [`Config::parse_str`] (an injected environment, for tests and reload).
//!
//! Invariants:
//! - Every error is a [`ConfigError`] whose message starts with
//!   `path:line:column:` and says what was expected; the exit code is 2.
//! - The API key never appears in an error or a `Debug` output: errors are
//!   scrubbed of every candidate key (inline, key file, credential, env) even
//!   when the key was pasted into the wrong field.
//! - Default values are written only in the `Default` impls below (of the
//!   sections read as they are, and of the raw `api`, `upload` and `[[sync]]`
//!   tables); `config.example.toml` repeats them and a test keeps it true.
//! - Relative paths in the file are relative to the file's directory.
//!
//! Files: this one holds the public types, the errors and their place
//! (`Ctx`), the raw tables, the defaults, loading and `validate`; `values`
//! the values checked inside serde, `key` where the API key comes from,
//! `syncs` the `[[sync]]` entries, `tests` the tests.

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use crate::api::{ApiConfig, ApiKey, ApiPaths};
pub use crate::engine::DeletePolicy;

// The pieces read the private types here through `super::` (a child module
// sees its parent's private items); what this file needs of them is
// `pub(super)`, so that nothing new leaks out of `config`.
mod key;
mod notify;
mod syncs;
#[cfg(test)]
mod tests;
mod values;

use self::key::{early_secrets, resolve_key};
pub use self::notify::{NotifyKind, NotifyTarget, NotifyToken, TimeOfDay};
use self::syncs::check_syncs;
use self::values::{
    ByteRate, Period, extensions, fraction, globs, listen_addr, log_level, period, title_template,
};

// ---------------------------------------------------------------------------
// The validated configuration. The sections without cross-checks (`watch`,
// `reconcile`, `log`, `state`) are read straight into these structs.
// ---------------------------------------------------------------------------

/// The whole configuration, validated: durations parsed, paths resolved and
/// checked, the key loaded from whichever source provides it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The first host's (the only one of a config with `[api]`).
    pub api: ApiConfig,
    /// Where the API key came from, for `check` and for log lines (never the key).
    pub key_source: KeySource,
    /// Every host, in config order: the `[[host]]` tables, or `[api]` as
    /// the one host named `default`. Never empty.
    pub hosts: Vec<HostEntry>,
    pub state: StateConfig,
    pub watch: WatchConfig,
    pub upload: UploadConfig,
    pub reconcile: ReconcileConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub syncs: Vec<SyncEntry>,
    /// `[[notify]]`: where events are told.
    pub notify: Vec<NotifyTarget>,
    /// The file this configuration was read from (absolute), so that a reload
    /// on SIGHUP reads the same file.
    pub source: Option<PathBuf>,
}

/// One video host of the library: a `[[host]]` table (or `[api]`).
#[derive(Debug, Clone, PartialEq)]
pub struct HostEntry {
    pub name: String,
    pub api: ApiConfig,
    pub key_source: KeySource,
    /// Copy files already on this other host with upload/url instead of
    /// sending the bytes again.
    pub copy_from: Option<String>,
}

impl Config {
    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&HostEntry> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The config as one host sees it: that host's settings as `api`, and
    /// only the syncs that go to it.
    pub fn for_host(&self, name: &str) -> Option<Config> {
        let mut entry = self.host(name)?.clone();
        let mut c = self.clone();
        // `api` is the first host's: a change made to it (tests, `demo`)
        // is that host's.
        if self.hosts.first().is_some_and(|h| h.name == name) {
            entry.api = self.api.clone();
            entry.key_source = self.key_source.clone();
        }
        c.api = entry.api.clone();
        c.key_source = entry.key_source.clone();
        c.syncs.retain(|s| s.hosts.iter().any(|h| h == name));
        c.hosts = vec![entry];
        Some(c)
    }
}

/// Which of the key's sources was used, in precedence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `api.key` in the file.
    Inline,
    /// `api.key_file`, resolved against the config file's directory.
    KeyFile(PathBuf),
    /// `$CREDENTIALS_DIRECTORY/api_key` (systemd `LoadCredential=`).
    Credentials(PathBuf),
    /// The `VIDSYNC_API_KEY` environment variable.
    Env,
    /// A `[[host]]`'s environment variable, `VIDSYNC_<NAME>_API_KEY`.
    HostEnv(String),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Inline => f.write_str("api.key"),
            KeySource::KeyFile(p) => write!(f, "api.key_file {}", p.display()),
            KeySource::Credentials(p) => write!(f, "credential {}", p.display()),
            KeySource::Env => f.write_str("$VIDSYNC_API_KEY"),
            KeySource::HostEnv(var) => write!(f, "${var}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// The SQLite database; a relative path is resolved against the config
    /// file's directory.
    pub database: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// How long size and mtime must stay unchanged before a file is complete.
    /// Zero is allowed: upload as soon as a file is seen unchanged.
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    /// Full rescan period, a safety net for missed events.
    #[serde(deserialize_with = "period")]
    pub rescan: Duration,
    pub mode: WatchMode,
    /// Period of the polling watcher (poll mode, or the fallback).
    #[serde(deserialize_with = "period")]
    pub poll_interval: Duration,
    /// Video extensions, lowercase, without the dot.
    #[serde(deserialize_with = "extensions")]
    pub extensions: Vec<String>,
    /// User glob patterns (checked to compile with `globset`), matched against
    /// the path relative to the sync root and against the file name.
    #[serde(deserialize_with = "globs")]
    pub exclude: Vec<String>,
    /// Check a settled file's completeness before upload (holes, container
    /// structure, a zero tail, writers in /proc), or trust settle alone.
    pub verify: Verify,
    /// A file held back as incomplete and unchanged this long is reported
    /// once (log and `status`); it is never uploaded automatically.
    #[serde(deserialize_with = "period")]
    pub incomplete_timeout: Duration,
}

/// `[watch] verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// The evidence of completeness is checked before every upload.
    Structure,
    /// Only `settle` and the writers inotify saw.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    /// inotify, falling back to polling per folder when it cannot work.
    Auto,
    /// inotify only; a folder it cannot watch is an error.
    Notify,
    /// Polling only (network filesystems).
    Poll,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadConfig {
    /// Upload workers; zero would be a daemon that never uploads.
    pub concurrency: NonZeroUsize,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// For errors of one file; account-wide conditions retry without limit.
    pub max_attempts: NonZeroU32,
    /// Checked by [`parse_title_template`](crate::engine::template::parse_title_template);
    /// render with `engine::render_title`.
    pub title_template: String,
    /// Which queued file goes up first.
    pub order: crate::store::QueueOrder,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileConfig {
    #[serde(deserialize_with = "period")]
    pub interval: Duration,
    #[serde(deserialize_with = "period")]
    pub audit_interval: Duration,
    /// A reconcile pass that would mark more than this fraction of the known
    /// files as deleted is not applied (a host glitch, not a mass deletion).
    #[serde(deserialize_with = "fraction")]
    pub max_delete_fraction: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive: `info`, `vidsync=debug,warn`, ...
    #[serde(deserialize_with = "log_level")]
    pub level: String,
    pub format: LogFormat,
}

/// `[metrics]`: Prometheus metrics over HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `/metrics` and `/healthz` are served; None (the default): no
    /// listener at all. Port 0 lets the system choose (the address is logged).
    #[serde(deserialize_with = "listen_addr")]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// What to do on the host when a local file is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalDeletePolicy {
    /// Leave the remote file alone.
    Keep,
    /// Move the remote file to the entry's trash folder.
    Trash,
}

/// What to do on the host with the copy of a file that a new version
/// replaced (its content changed after upload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NewVersionPolicy {
    /// Leave the old copy where it is, beside the new one.
    Keep,
    /// Move the old copy to the entry's trash folder once the new one is up,
    /// so a broken or outdated copy does not stay live.
    Trash,
}

/// One `[[sync]]` entry: a local tree mirrored to a remote folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncEntry {
    /// Canonical absolute path of an existing directory.
    pub local: PathBuf,
    /// Remote folder path as components under the account root; empty = root.
    pub remote: Vec<String>,
    pub public: bool,
    pub adult: bool,
    pub cat_id: Option<u32>,
    pub tags: Vec<String>,
    /// The hosts this folder goes to (names of `Config::hosts`), never empty.
    pub hosts: Vec<String>,
    pub on_remote_delete: DeletePolicy,
    pub on_expired: DeletePolicy,
    pub on_local_delete: LocalDeletePolicy,
    pub on_new_version: NewVersionPolicy,
    /// Remote trash folder (for `on_local_delete` and `on_new_version`).
    pub trash: Option<Vec<String>>,
    /// Extra globs for this entry, on top of `watch.exclude`.
    pub exclude: Vec<String>,
    /// A file with no upload on record whose remote folder already holds a
    /// file with its title (as the host stores it) is adopted, not uploaded.
    pub adopt_existing: bool,
}

// ---------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------

/// A configuration that cannot be used. Its message names the file, the line
/// and column, and what was expected; it never contains the API key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        /// 1-based.
        line: usize,
        /// 1-based, in characters.
        column: usize,
        message: String,
    },
}

impl ConfigError {
    /// The process exit code for a configuration error (README.md: `run`
    /// exits 2 on a config error).
    pub fn exit_code(&self) -> i32 {
        2
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::Read { path, .. } | ConfigError::Invalid { path, .. } => path,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset into `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    // toml's spans are on char boundaries, but never panic if one is not.
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Stands for the key's name in the messages of the value checks (`values`): a
/// `Deserialize` does not know which key it reads, toml's error knows only
/// where. `Ctx::toml_err` puts the name in. A control character, so that no
/// value quoted in a message can spell it.
const KEY: &str = "\u{1}key\u{1}";

/// What an error needs to say where it is: the file, its text, and the
/// secrets that must be scrubbed from any message.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    secrets: Vec<String>,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message: self.scrub(message.into()),
        }
    }

    /// Replaces every secret with its name: a user who pasted the key into the
    /// wrong field must not see it echoed into a log or a terminal.
    fn scrub(&self, mut message: String) -> String {
        for secret in &self.secrets {
            if !secret.is_empty() && message.contains(secret.as_str()) {
                message = message.replace(secret.as_str(), "<api.key>");
            }
        }
        message
    }

    /// Turns toml's error into ours, prefixing path:line:col, and says the
    /// key's name where serde's words do not: "unknown field `x`, expected
    /// one of .." becomes "unknown key `x` in [table], ..", a `NonZero*` zero
    /// "upload.concurrency is 0", a bad duration names its key.
    fn toml_err(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let mut message = e.message().trim_end().to_string();
        if let Some(rest) = message.strip_prefix("unknown field ") {
            let (name, expected) = match rest.find(", expected") {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let table = self.table_at(span.start);
            // A table header the file has no use for: name it as written.
            // (What stands on the key's line before it: `[` or `[[`.)
            let before = self
                .text
                .get(..span.start.min(self.text.len()))
                .unwrap_or("");
            let line = before[before.rfind('\n').map_or(0, |i| i + 1)..].trim_start();
            message = if line.starts_with("[[") {
                format!("unknown table [[{}]]{expected}", name.trim_matches('`'))
            } else if line.starts_with('[') {
                format!("unknown table [{}]{expected}", name.trim_matches('`'))
            } else {
                format!("unknown key {name} in {table}{expected}")
            };
        } else if message == "duplicate key"
            && let Some(name) = self.text.get(span.clone())
        {
            // toml says only "duplicate key"; name it, and what to do.
            message = format!("duplicate key `{name}`, expected each key and table once");
        } else if message.contains(KEY) {
            message = message.replace(KEY, &self.key_at(span.start));
        } else if message.ends_with("expected a duration") {
            // humantime-serde's "invalid value: string \"x\", expected a
            // duration", also for a bare number.
            let value = self.text.get(span.clone()).unwrap_or_default();
            message = format!(
                "invalid duration {value} for {}; expected a number with a unit, like \"500ms\", \"10s\", \"5m\" or \"1h\"",
                self.key_at(span.start)
            );
        } else if message.starts_with("invalid value: integer `0`, expected a nonzero") {
            message = format!("{} is 0, expected at least 1", self.key_at(span.start));
        }
        self.err(span, message)
    }

    /// The `[table]` or `[[array]]` header in force at a byte offset, found
    /// by scanning back over the lines: toml's error does not expose it.
    fn table_at(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        before
            .lines()
            .rev()
            .map(str::trim_start)
            .find(|l| l.starts_with('['))
            .map(|l| match l.find('#') {
                Some(i) => l[..i].trim_end().to_string(),
                None => l.trim_end().to_string(),
            })
            .unwrap_or_else(|| "the top level".to_string())
    }

    /// The name of the key whose value is at a byte offset, as a user would
    /// look it up: "watch.settle", "api.paths.file_list", and "[[sync]]
    /// exclude" inside an array of tables. Found like `table_at`: the nearest
    /// line above with a `=` (a value may be an array over several lines).
    fn key_at(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let key = before
            .lines()
            .rev()
            .find_map(|l| l.split_once('='))
            .map_or("the value", |(k, _)| k.trim());
        let table = self.table_at(offset);
        if let Some(array) = table.strip_prefix("[[") {
            format!("[[{array} {key}")
        } else if let Some(name) = table.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            format!("{}.{key}", name.trim())
        } else {
            key.to_string()
        }
    }
}

// ---------------------------------------------------------------------------
// The tables that need checks across keys or a value's place, as serde
// reads them. Values that validation checks are `Spanned` so that its
// errors can point at them.
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    api: Option<Spanned<RawApi>>,
    #[serde(default)]
    host: Vec<Spanned<RawApi>>,
    #[serde(default)]
    state: StateConfig,
    #[serde(default)]
    watch: WatchConfig,
    #[serde(default)]
    upload: RawUpload,
    #[serde(default)]
    reconcile: ReconcileConfig,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    sync: Vec<Spanned<RawSync>>,
    #[serde(default)]
    notify: Vec<Spanned<notify::RawNotify>>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawApi {
    /// Only in `[[host]]`.
    name: Option<Spanned<String>>,
    /// Only in `[[host]]`.
    copy_from: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    requests_per_minute: NonZeroU32,
    #[serde(deserialize_with = "period")]
    connect_timeout: Duration,
    #[serde(deserialize_with = "period")]
    read_timeout: Duration,
    /// 0 = unlimited.
    bandwidth_limit: ByteRate,
    sanitize_filename: bool,
    allow_http_upload: bool,
    paths: RawPaths,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawUpload {
    concurrency: NonZeroUsize,
    retry_min: Spanned<Period>,
    retry_max: Spanned<Period>,
    max_attempts: NonZeroU32,
    #[serde(deserialize_with = "title_template")]
    title_template: String,
    order: crate::store::QueueOrder,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSync {
    local: Option<Spanned<String>>,
    remote: Spanned<String>,
    public: bool,
    adult: bool,
    cat_id: Option<u32>,
    tags: Vec<Spanned<String>>,
    /// Default: every host.
    hosts: Option<Spanned<Vec<Spanned<String>>>>,
    on_remote_delete: DeletePolicy,
    on_expired: DeletePolicy,
    on_local_delete: Spanned<LocalDeletePolicy>,
    /// Default: `trash` when a trash folder is set, else `keep`.
    on_new_version: Option<Spanned<NewVersionPolicy>>,
    trash: Option<Spanned<String>>,
    #[serde(deserialize_with = "globs")]
    exclude: Vec<String>,
    adopt_existing: bool,
}

/// `[api.paths]`: generated from the list of `ApiPaths` fields so that the
/// accepted keys and the struct cannot drift apart (see `resolve`).
macro_rules! raw_paths {
    ($($field:ident),* $(,)?) => {
        #[derive(Debug, Default, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct RawPaths {
            $($field: Option<Spanned<String>>,)*
        }

        impl RawPaths {
            fn resolve(self, ctx: &Ctx<'_>) -> Result<ApiPaths, ConfigError> {
                let mut paths = ApiPaths::default();
                // Exhaustive destructuring: a field added to `ApiPaths` but
                // not to the macro call is a compile error here.
                let ApiPaths { $($field),* } = &mut paths;
                $(
                    if let Some(p) = self.$field {
                        *$field = check_api_path(ctx, stringify!($field), p)?;
                    }
                )*
                Ok(paths)
            }
        }
    };
}

raw_paths!(
    account_info,
    account_stats,
    upload_server,
    upload_url,
    file_info,
    file_edit,
    file_list,
    file_direct_link,
    file_clone,
    file_deleted,
    file_dmca,
    file_encodings,
    file_url_uploads,
    file_url_actions,
    folder_list,
    folder_create,
    folder_edit,
);

// ---------------------------------------------------------------------------
// Defaults: the only place where default values are written down.
// `config.example.toml` repeats them, and a test checks that it agrees.
// ---------------------------------------------------------------------------

/// Video extensions found by default (compared case-insensitively).
pub const DEFAULT_EXTENSIONS: &[&str] = &[
    "mp4", "mkv", "avi", "mov", "webm", "m4v", "wmv", "flv", "mpg", "mpeg", "ts", "3gp", "ogv",
];

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A default value has no place in the file: its span is empty, and nothing
/// validation rejects is ever a default.
fn dflt<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

impl Default for RawApi {
    fn default() -> Self {
        RawApi {
            name: None,
            copy_from: None,
            url: None,
            key: None,
            key_file: None,
            requests_per_minute: const { NonZeroU32::new(60).unwrap() },
            connect_timeout: secs(10),
            read_timeout: secs(60),
            bandwidth_limit: ByteRate(0),
            sanitize_filename: false,
            allow_http_upload: false,
            paths: RawPaths::default(),
        }
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            database: PathBuf::from("/var/lib/vidsync/state.db"),
        }
    }
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            settle: secs(10),
            rescan: secs(3600),
            mode: WatchMode::Auto,
            poll_interval: secs(30),
            extensions: DEFAULT_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
            exclude: Vec::new(),
            verify: Verify::Structure,
            incomplete_timeout: secs(24 * 3600),
        }
    }
}

impl Default for RawUpload {
    fn default() -> Self {
        RawUpload {
            concurrency: const { NonZeroUsize::new(2).unwrap() },
            retry_min: dflt(Period(secs(30))),
            retry_max: dflt(Period(secs(3600))),
            max_attempts: const { NonZeroU32::new(8).unwrap() },
            title_template: "{stem}".to_string(),
            order: crate::store::QueueOrder::Oldest,
        }
    }
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            interval: secs(600),
            audit_interval: secs(24 * 3600),
            max_delete_fraction: 0.5,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            format: LogFormat::Text,
        }
    }
}

impl Default for RawSync {
    fn default() -> Self {
        RawSync {
            local: None,
            remote: dflt(String::new()),
            public: true,
            adult: false,
            cat_id: None,
            tags: Vec::new(),
            hosts: None,
            on_remote_delete: DeletePolicy::Keep,
            on_expired: DeletePolicy::Reupload,
            on_local_delete: dflt(LocalDeletePolicy::Keep),
            on_new_version: None,
            trash: None,
            exclude: Vec::new(),
            adopt_existing: true,
        }
    }
}

// ---------------------------------------------------------------------------
// Loading and validation.
// ---------------------------------------------------------------------------

/// Reads an environment variable. Injected so that tests never touch the
/// process environment (which is shared by every test thread).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for [`Config::load`].
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Reads and validates the file at `path`, taking the key from the process
    /// environment when the file does not give it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &process_env)
    }

    /// [`Config::load`] with an explicit environment.
    pub fn load_with(path: &Path, env: Env<'_>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Config::parse_str(&text, path, env)
    }

    /// Validates `text` as if read from `origin`: errors name `origin`, and
    /// relative paths in it (key_file, database, sync folders) are resolved
    /// against its directory, as a user reading the file would expect.
    pub fn parse_str(text: &str, origin: &Path, env: Env<'_>) -> Result<Config, ConfigError> {
        let source = std::path::absolute(origin).unwrap_or_else(|_| origin.to_path_buf());
        let base = source.parent().unwrap_or(Path::new("/")).to_path_buf();
        let mut ctx = Ctx {
            path: origin,
            text,
            secrets: early_secrets(text, &base, env),
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| ctx.toml_err(&e))?;
        validate(raw, &mut ctx, &base, env, source)
    }
}

fn validate(
    raw: RawConfig,
    ctx: &mut Ctx<'_>,
    base: &Path,
    env: Env<'_>,
    source: PathBuf,
) -> Result<Config, ConfigError> {
    let tables: Vec<(Option<String>, Spanned<RawApi>)> = match (raw.api, raw.host.is_empty()) {
        (Some(api), true) => {
            for (key, v) in [
                ("name", &api.get_ref().name),
                ("copy_from", &api.get_ref().copy_from),
            ] {
                if let Some(v) = v {
                    return Err(ctx.err(
                        v.span(),
                        format!("api.{key} is for [[host]] tables, expected it only there"),
                    ));
                }
            }
            vec![(None, api)]
        }
        (Some(api), false) => {
            return Err(ctx.err(
                api.span(),
                "both [api] and [[host]] tables, expected either [api] for one host or [[host]] tables, not both",
            ));
        }
        (None, false) => {
            let mut out = Vec::new();
            for h in raw.host {
                let name = check_host_name(ctx, &h, &out)?;
                out.push((Some(name), h));
            }
            out
        }
        (None, true) => {
            return Err(ctx.err(
                0..0,
                "missing [api] table, expected at least api.url and the API key (or [[host]] tables)",
            ));
        }
    };

    // The keys first: once known, every later message is scrubbed of them.
    let mut keys = Vec::with_capacity(tables.len());
    for (name, api) in &tables {
        let names = match name {
            Some(n) => key::KeyNames::host(n),
            None => key::KeyNames::api(),
        };
        let (key, key_source) = resolve_key(ctx, api.get_ref(), api.span(), base, env, &names)?;
        ctx.secrets.push(key.expose().to_string());
        keys.push((key, key_source));
    }
    let notify = notify::check_notify(ctx, base, env, raw.notify)?;
    let ctx = &*ctx;

    let names: Vec<String> = tables
        .iter()
        .map(|(n, _)| n.clone().unwrap_or_else(|| DEFAULT_HOST.to_string()))
        .collect();
    let mut hosts = Vec::with_capacity(tables.len());
    let mut copy_spans = Vec::with_capacity(tables.len());
    for (((name, table), (key, key_source)), host_name) in tables.into_iter().zip(keys).zip(&names)
    {
        copy_spans.push(table.get_ref().copy_from.as_ref().map(|c| c.span()));
        let api_span = table.span();
        let api = table.into_inner();
        let what = match &name {
            Some(n) => format!("host {n}: "),
            None => String::new(),
        };
        let copy_from = match api.copy_from {
            Some(c) if c.get_ref() == host_name => {
                return Err(ctx.err(
                    c.span(),
                    format!(
                        "{what}copy_from names this host itself, expected another [[host]]'s name"
                    ),
                ));
            }
            Some(c) if !names.contains(c.get_ref()) => {
                return Err(ctx.err(
                    c.span(),
                    format!(
                        "{what}copy_from = {:?} names no host, expected one of {}",
                        c.get_ref(),
                        names.join(", ")
                    ),
                ));
            }
            Some(c) => Some(c.into_inner()),
            None => None,
        };
        let Some(url) = api.url else {
            let key = if name.is_some() { "url" } else { "api.url" };
            return Err(ctx.err(
                api_span,
                format!("{what}missing {key}, expected the host's base URL, e.g. \"https://watching.vn\""),
            ));
        };
        let bandwidth = api.bandwidth_limit.0;
        let api = ApiConfig {
            url: check_url(ctx, url)?,
            key,
            requests_per_minute: api.requests_per_minute.get(),
            connect_timeout: api.connect_timeout,
            read_timeout: api.read_timeout,
            bandwidth_limit: (bandwidth > 0).then_some(bandwidth),
            sanitize_filename: api.sanitize_filename,
            allow_http_upload: api.allow_http_upload,
            resolve: Vec::new(),
            paths: api.paths.resolve(ctx)?,
        };
        hosts.push(HostEntry {
            name: host_name.clone(),
            api,
            key_source,
            copy_from,
        });
    }

    check_copy_circles(ctx, &hosts, &copy_spans)?;

    let state = StateConfig {
        database: base.join(raw.state.database),
    };

    Ok(Config {
        api: hosts[0].api.clone(),
        key_source: hosts[0].key_source.clone(),
        state,
        watch: raw.watch,
        upload: check_upload(ctx, raw.upload)?,
        reconcile: raw.reconcile,
        log: raw.log,
        metrics: raw.metrics,
        syncs: check_syncs(ctx, base, raw.sync, &names)?,
        hosts,
        notify,
        source: Some(source),
    })
}

/// `copy_from` chains must end at a host that sends files from the disk:
/// in a circle (a copies from b, b from a) each would wait for the other.
fn check_copy_circles(
    ctx: &Ctx<'_>,
    hosts: &[HostEntry],
    spans: &[Option<std::ops::Range<usize>>],
) -> Result<(), ConfigError> {
    for (i, start) in hosts.iter().enumerate() {
        let mut chain = vec![start.name.as_str()];
        let mut at = start;
        while let Some(next) = &at.copy_from {
            chain.push(next);
            if next == &start.name {
                return Err(ctx.err(
                    spans[i].clone().unwrap_or(0..0),
                    format!(
                        "host {}: copy_from goes round in a circle ({}), expected a chain that ends at a host without copy_from",
                        start.name,
                        chain.join(" -> ")
                    ),
                ));
            }
            match hosts.iter().find(|h| &h.name == next) {
                // A circle not through `start` is reported from its own hosts.
                Some(h) if chain.len() <= hosts.len() => at = h,
                _ => break,
            }
        }
    }
    Ok(())
}

/// The name of the host of a config with `[api]`: the store's, which the
/// records of a one-host database were given.
pub use crate::store::DEFAULT_HOST;

/// A `[[host]]`'s name: it names the host in `status`, `list` and `links`,
/// in `sync.hosts` and `copy_from`, in the key's environment variable and
/// credential file, and keys its records in the database.
fn check_host_name(
    ctx: &Ctx<'_>,
    table: &Spanned<RawApi>,
    before: &[(Option<String>, Spanned<RawApi>)],
) -> Result<String, ConfigError> {
    let Some(name) = &table.get_ref().name else {
        return Err(ctx.err(
            table.span(),
            "missing name in [[host]], expected a short name like name = \"streamwish\"",
        ));
    };
    let n = name.get_ref();
    let valid = n.len() <= 32
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(ctx.err(
            name.span(),
            format!("invalid host name {n:?}, expected 1 to 32 of a-z, 0-9, '-' and '_', starting with a letter"),
        ));
    }
    if before.iter().any(|(b, _)| b.as_deref() == Some(n.as_str())) {
        return Err(ctx.err(
            name.span(),
            format!("a second [[host]] named {n:?}, expected unique names"),
        ));
    }
    // `a-b` and `a_b` would share $VIDSYNC_A_B_API_KEY: one host would
    // silently take the other's key.
    let env_of = |s: &str| key::KeyNames::host(s).env;
    if let Some(other) = before
        .iter()
        .filter_map(|(b, _)| b.as_deref())
        .find(|b| env_of(b) == env_of(n))
    {
        return Err(ctx.err(
            name.span(),
            format!("host names {other:?} and {n:?} differ only by '-' and '_', expected names that stay apart in $VIDSYNC_<NAME>_API_KEY"),
        ));
    }
    Ok(n.clone())
}

/// https only, except for loopback hosts (the test host, a local proxy): over
/// plain http the key would cross the network in clear text.
fn check_url(ctx: &Ctx<'_>, value: Spanned<String>) -> Result<url::Url, ConfigError> {
    let span = value.span();
    let expected = "expected the host's base URL, e.g. \"https://watching.vn\"";
    let mut url = url::Url::parse(value.get_ref().trim())
        .map_err(|e| ctx.err(span.clone(), format!("invalid api.url: {e}, {expected}")))?;
    let host = url.host_str().unwrap_or_default().to_string();
    if host.is_empty() {
        return Err(ctx.err(span, format!("api.url has no host, {expected}")));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(ctx.err(
                span,
                format!(
                    "api.url uses http:// for {host}, which would send the API key in clear text; expected https:// (http:// is allowed only for localhost, 127.0.0.0/8 and ::1)"
                ),
            ));
        }
        other => {
            return Err(ctx.err(
                span,
                format!("api.url has scheme {other}:, expected https://"),
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ctx.err(
            span,
            format!("api.url contains credentials, {expected} (the key goes in api.key)"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ctx.err(
            span,
            format!("api.url has a query or fragment, {expected} (the key goes in api.key)"),
        ));
    }
    // "https://host/sub/" -> "https://host/sub", so that appending "/api/..."
    // gives a single slash.
    if url.path() != "/" && url.path().ends_with('/') {
        let path = url.path().trim_end_matches('/').to_string();
        url.set_path(&path);
    }
    Ok(url)
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn check_api_path(
    ctx: &Ctx<'_>,
    name: &str,
    value: Spanned<String>,
) -> Result<String, ConfigError> {
    let path = value.get_ref().trim();
    if !path.starts_with('/') || path.contains(['?', '#']) || path.contains(char::is_whitespace) {
        return Err(ctx.err(
            value.span(),
            format!("invalid api.paths.{name}, expected a path starting with /, e.g. \"/api/account/info\""),
        ));
    }
    Ok(path.to_string())
}

fn check_upload(ctx: &Ctx<'_>, u: RawUpload) -> Result<UploadConfig, ConfigError> {
    let retry_min = u.retry_min.get_ref().0;
    let retry_max = u.retry_max.get_ref().0;
    if retry_min > retry_max {
        // Point at the one the user wrote: the other may be a default.
        let span = if u.retry_max.span().is_empty() {
            u.retry_min.span()
        } else {
            u.retry_max.span()
        };
        return Err(ctx.err(
            span,
            format!(
                "upload.retry_min ({}) is longer than upload.retry_max ({}), expected retry_min <= retry_max",
                humantime::format_duration(retry_min),
                humantime::format_duration(retry_max)
            ),
        ));
    }
    Ok(UploadConfig {
        concurrency: u.concurrency,
        retry_min,
        retry_max,
        max_attempts: u.max_attempts,
        title_template: u.title_template,
        order: u.order,
    })
}
