//! The configuration file: raw TOML -> validated `Config` (durations, paths, key source).
//!
//! Parsing happens in two steps: a raw serde struct that rejects unknown keys
//! and holds every default in one place, then validation into `Config`, whose
//! fields are ready to use (durations parsed, paths checked, the key loaded).
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
//! - Default values are written only in the `Default` impls of the raw
//!   structs; `config.example.toml` repeats them and a test keeps it true.
//! - Relative paths in the file are relative to the file's directory.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The account's API key. Its `Debug` and `Display` never show it: the only way
/// to read it is `expose()`, used where the key is put on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }
    /// The key itself, for the request that carries it. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Paths of each endpoint, relative to the host URL; each can be overridden in
/// `[api.paths]` because hosts of this family differ a little.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPaths {
    pub account_info: String,
    pub account_stats: String,
    pub upload_server: String,
    pub upload_url: String,
    pub file_info: String,
    pub file_edit: String,
    pub file_list: String,
    pub file_direct_link: String,
    pub file_clone: String,
    pub file_deleted: String,
    pub file_dmca: String,
    pub file_encodings: String,
    pub folder_list: String,
    pub folder_create: String,
    pub folder_edit: String,
}

impl Default for ApiPaths {
    fn default() -> Self {
        let p = |s: &str| format!("/api/{s}");
        ApiPaths {
            account_info: p("account/info"),
            account_stats: p("account/stats"),
            upload_server: p("upload/server"),
            upload_url: p("upload/url"),
            file_info: p("file/info"),
            file_edit: p("file/edit"),
            file_list: p("file/list"),
            file_direct_link: p("file/direct_link"),
            file_clone: p("file/clone"),
            file_deleted: p("file/deleted"),
            file_dmca: p("file/dmca"),
            file_encodings: p("file/encodings"),
            folder_list: p("folder/list"),
            folder_create: p("folder/create"),
            folder_edit: p("folder/edit"),
        }
    }
}

/// Everything the API client needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// Base URL, e.g. `https://watching.vn`. `url::Url` always keeps a `/` path
    /// for a bare host, so join endpoint paths with
    /// `url.as_str().trim_end_matches('/')` + path. No query, fragment or
    /// credentials: validation rejects them so that nothing secret hides here.
    pub url: url::Url,
    pub key: ApiKey,
    pub requests_per_minute: u32,
    pub connect_timeout: Duration,
    /// Longest silence on a connection before the call fails (read timeout).
    pub read_timeout: Duration,
    /// Optional upload bandwidth limit in bytes per second.
    pub bandwidth_limit: Option<u64>,
    pub paths: ApiPaths,
    /// The host runs with the `sanitize_filename` option: stored titles also
    /// have every run of characters other than letters, digits, `.`, `_`
    /// and `-` turned into `_` (see `engine::host_title`).
    pub sanitize_filename: bool,
    /// Accept plain-http upload servers (other than loopback); the key then
    /// travels in clear text. Off: such a server is tried as https first.
    pub allow_http_upload: bool,
    /// Test seam, never read from TOML: host names resolved to these
    /// addresses instead of through DNS (a test host posing as another machine).
    pub resolve: Vec<(String, std::net::SocketAddr)>,
}

// ---------------------------------------------------------------------------
// The validated configuration.
// ---------------------------------------------------------------------------

/// The whole configuration, validated: durations parsed, paths resolved and
/// checked, the key loaded from whichever source provides it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub api: ApiConfig,
    /// Where the API key came from, for `check` and for log lines (never the key).
    pub key_source: KeySource,
    pub state: StateConfig,
    pub watch: WatchConfig,
    pub upload: UploadConfig,
    pub reconcile: ReconcileConfig,
    pub log: LogConfig,
    pub syncs: Vec<SyncEntry>,
    /// The file this configuration was read from (absolute), so that a reload
    /// on SIGHUP reads the same file.
    pub source: Option<PathBuf>,
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
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Inline => f.write_str("api.key"),
            KeySource::KeyFile(p) => write!(f, "api.key_file {}", p.display()),
            KeySource::Credentials(p) => write!(f, "credential {}", p.display()),
            KeySource::Env => f.write_str("$VIDSYNC_API_KEY"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// The SQLite database; a relative path is resolved against the config
    /// file's directory.
    pub database: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    /// How long size and mtime must stay unchanged before a file is complete.
    pub settle: Duration,
    /// Full rescan period, a safety net for missed events.
    pub rescan: Duration,
    pub mode: WatchMode,
    /// Period of the polling watcher (poll mode, or the fallback).
    pub poll_interval: Duration,
    /// Video extensions, lowercase, without the dot.
    pub extensions: Vec<String>,
    /// User glob patterns (checked to compile with `globset`), matched against
    /// the path relative to the sync root and against the file name.
    pub exclude: Vec<String>,
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
    pub concurrency: usize,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// For errors of one file; account-wide conditions retry without limit.
    pub max_attempts: u32,
    /// Checked by [`parse_title_template`]; render with [`render_title`].
    pub title_template: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileConfig {
    pub interval: Duration,
    pub audit_interval: Duration,
    /// A reconcile pass that would mark more than this fraction of the known
    /// files as deleted is not applied (a host glitch, not a mass deletion).
    pub max_delete_fraction: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive: `info`, `vidsync=debug,warn`, ...
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// What to do with a file that disappeared from the host (deleted or expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletePolicy {
    /// Keep the record, do not upload again.
    Keep,
    /// Upload the local file again.
    Reupload,
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
    pub on_remote_delete: DeletePolicy,
    pub on_expired: DeletePolicy,
    pub on_local_delete: LocalDeletePolicy,
    /// Remote trash folder; `Some` exactly when `on_local_delete` is `Trash`.
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
    /// The process exit code for a configuration error (see PRODUCT.md).
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

    /// Turns toml's error into ours, prefixing path:line:col. Serde's "unknown
    /// field `x`, expected one of ..." becomes "unknown key `x` in [table], ...".
    fn toml_err(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let mut message = e.message().trim_end().to_string();
        if let Some(rest) = message.strip_prefix("unknown field ") {
            let (name, expected) = match rest.find(", expected") {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let table = self.table_at(span.start);
            message = format!("unknown key {name} in {table}{expected}");
        } else if message == "duplicate key"
            && let Some(name) = self.text.get(span.clone())
        {
            // toml says only "duplicate key"; name it, and what to do.
            message = format!("duplicate key `{name}`, expected each key and table once");
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
}

// ---------------------------------------------------------------------------
// The raw file, as serde reads it. Values that validation checks are
// `Spanned` so that its errors can point at them.
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    api: Option<Spanned<RawApi>>,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    watch: RawWatch,
    #[serde(default)]
    upload: RawUpload,
    #[serde(default)]
    reconcile: RawReconcile,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    sync: Vec<Spanned<RawSync>>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawApi {
    url: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    requests_per_minute: Spanned<u32>,
    connect_timeout: Spanned<String>,
    read_timeout: Spanned<String>,
    bandwidth_limit: Spanned<ByteRate>,
    sanitize_filename: bool,
    allow_http_upload: bool,
    paths: RawPaths,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawState {
    database: String,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawWatch {
    settle: Spanned<String>,
    rescan: Spanned<String>,
    mode: WatchMode,
    poll_interval: Spanned<String>,
    extensions: Vec<Spanned<String>>,
    exclude: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawUpload {
    concurrency: Spanned<usize>,
    retry_min: Spanned<String>,
    retry_max: Spanned<String>,
    max_attempts: Spanned<u32>,
    title_template: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawReconcile {
    interval: Spanned<String>,
    audit_interval: Spanned<String>,
    max_delete_fraction: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawLog {
    level: Spanned<String>,
    format: LogFormat,
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
    on_remote_delete: DeletePolicy,
    on_expired: DeletePolicy,
    on_local_delete: Spanned<LocalDeletePolicy>,
    trash: Option<Spanned<String>>,
    exclude: Vec<Spanned<String>>,
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
    folder_list,
    folder_create,
    folder_edit,
);

/// Bytes per second: an integer, or a string with a unit ("10MB", "500KiB").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteRate(u64);

impl<'de> Deserialize<'de> for ByteRate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteRate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes per second: an integer, or a string like \"10MB\" or \"500KiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteRate, E> {
                Ok(ByteRate(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteRate, E> {
                u64::try_from(v)
                    .map(ByteRate)
                    .map_err(|_| E::custom("expected a non-negative number of bytes per second"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteRate, E> {
                parse_byte_size(v).map(ByteRate).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// "10MB" -> 10_000_000, "500KiB" -> 512_000, "0" -> 0. Decimal units are
/// powers of 1000, binary units (KiB, MiB, GiB) powers of 1024.
fn parse_byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let expected = "expected a number of bytes with an optional unit: B, KB, MB, GB, KiB, MiB, GiB";
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid byte size \"{s}\", {expected}"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(format!("invalid byte size \"{s}\", {expected}")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("byte size \"{s}\" is too large"))
}

// ---------------------------------------------------------------------------
// Defaults: the only place where default values are written down.
// `config.example.toml` repeats them, and a test checks that it agrees.
// ---------------------------------------------------------------------------

/// Video extensions found by default (compared case-insensitively).
pub const DEFAULT_EXTENSIONS: &[&str] = &[
    "mp4", "mkv", "avi", "mov", "webm", "m4v", "wmv", "flv", "mpg", "mpeg", "ts", "3gp", "ogv",
];

/// A default value has no place in the file: its span is empty, and nothing
/// validation rejects is ever a default.
fn dflt<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

fn dflt_str(value: &str) -> Spanned<String> {
    dflt(value.to_string())
}

impl Default for RawApi {
    fn default() -> Self {
        RawApi {
            url: None,
            key: None,
            key_file: None,
            requests_per_minute: dflt(60),
            connect_timeout: dflt_str("10s"),
            read_timeout: dflt_str("60s"),
            bandwidth_limit: dflt(ByteRate(0)),
            sanitize_filename: false,
            allow_http_upload: false,
            paths: RawPaths::default(),
        }
    }
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            database: "/var/lib/vidsync/state.db".to_string(),
        }
    }
}

impl Default for RawWatch {
    fn default() -> Self {
        RawWatch {
            settle: dflt_str("10s"),
            rescan: dflt_str("1h"),
            mode: WatchMode::Auto,
            poll_interval: dflt_str("30s"),
            extensions: DEFAULT_EXTENSIONS.iter().map(|e| dflt_str(e)).collect(),
            exclude: Vec::new(),
        }
    }
}

impl Default for RawUpload {
    fn default() -> Self {
        RawUpload {
            concurrency: dflt(2),
            retry_min: dflt_str("30s"),
            retry_max: dflt_str("1h"),
            max_attempts: dflt(8),
            title_template: dflt_str("{stem}"),
        }
    }
}

impl Default for RawReconcile {
    fn default() -> Self {
        RawReconcile {
            interval: dflt_str("10m"),
            audit_interval: dflt_str("24h"),
            max_delete_fraction: dflt(0.5),
        }
    }
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: dflt_str("info"),
            format: LogFormat::Text,
        }
    }
}

impl Default for RawSync {
    fn default() -> Self {
        RawSync {
            local: None,
            remote: dflt_str(""),
            public: true,
            adult: false,
            cat_id: None,
            tags: Vec::new(),
            on_remote_delete: DeletePolicy::Keep,
            on_expired: DeletePolicy::Reupload,
            on_local_delete: dflt(LocalDeletePolicy::Keep),
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

/// Secrets known before the file is parsed, so that even a serde error about
/// a value in the wrong place is scrubbed: `api.key` and `api.key_file` read
/// leniently (an untyped table parses even when our structs would not),
/// `$CREDENTIALS_DIRECTORY/api_key` and `$VIDSYNC_API_KEY`. Read errors are
/// ignored here: validation reports them.
fn early_secrets(text: &str, base: &Path, env: Env<'_>) -> Vec<String> {
    let mut secrets = Vec::new();
    let table = toml::from_str::<toml::Table>(text).ok();
    let api_str = |name: &str| {
        table
            .as_ref()
            .and_then(|t| t.get("api"))
            .and_then(|api| api.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    secrets.extend(api_str("key"));
    if let Some(file) = api_str("key_file") {
        secrets.extend(std::fs::read_to_string(base.join(file)).ok());
    }
    if let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
        secrets.extend(std::fs::read_to_string(Path::new(&dir).join("api_key")).ok());
    }
    secrets.extend(env("VIDSYNC_API_KEY"));
    let mut secrets: Vec<String> = secrets
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    secrets.dedup();
    secrets
}

fn validate(
    raw: RawConfig,
    ctx: &mut Ctx<'_>,
    base: &Path,
    env: Env<'_>,
    source: PathBuf,
) -> Result<Config, ConfigError> {
    let Some(api) = raw.api else {
        return Err(ctx.err(
            0..0,
            "missing [api] table, expected at least api.url and the API key",
        ));
    };
    let api_span = api.span();
    let api = api.into_inner();

    // The key first: once known, every later message is scrubbed of it.
    let (key, key_source) = resolve_key(ctx, &api, api_span.clone(), base, env)?;
    ctx.secrets.push(key.expose().to_string());
    let ctx = &*ctx;

    let Some(url) = api.url else {
        return Err(ctx.err(
            api_span,
            "missing api.url, expected the host's base URL, e.g. \"https://watching.vn\"",
        ));
    };
    let url = check_url(ctx, url)?;

    let requests_per_minute = *api.requests_per_minute.get_ref();
    if requests_per_minute == 0 {
        return Err(ctx.err(
            api.requests_per_minute.span(),
            "api.requests_per_minute is 0, expected at least 1",
        ));
    }
    let bandwidth = api.bandwidth_limit.get_ref().0;
    let api = ApiConfig {
        url,
        key,
        requests_per_minute,
        connect_timeout: duration(ctx, "api.connect_timeout", &api.connect_timeout, false)?,
        read_timeout: duration(ctx, "api.read_timeout", &api.read_timeout, false)?,
        bandwidth_limit: (bandwidth > 0).then_some(bandwidth),
        sanitize_filename: api.sanitize_filename,
        allow_http_upload: api.allow_http_upload,
        resolve: Vec::new(),
        paths: api.paths.resolve(ctx)?,
    };

    let state = StateConfig {
        database: base.join(raw.state.database),
    };

    let w = raw.watch;
    let watch = WatchConfig {
        settle: duration(ctx, "watch.settle", &w.settle, true)?,
        rescan: duration(ctx, "watch.rescan", &w.rescan, false)?,
        mode: w.mode,
        poll_interval: duration(ctx, "watch.poll_interval", &w.poll_interval, false)?,
        extensions: extensions(ctx, w.extensions)?,
        exclude: globs(ctx, "watch.exclude", w.exclude)?,
    };

    let upload = check_upload(ctx, raw.upload)?;

    let r = raw.reconcile;
    let fraction = *r.max_delete_fraction.get_ref();
    // Written so that NaN fails too.
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(ctx.err(
            r.max_delete_fraction.span(),
            format!(
                "reconcile.max_delete_fraction is {fraction}, expected a fraction above 0 and at most 1"
            ),
        ));
    }
    let reconcile = ReconcileConfig {
        interval: duration(ctx, "reconcile.interval", &r.interval, false)?,
        audit_interval: duration(ctx, "reconcile.audit_interval", &r.audit_interval, false)?,
        max_delete_fraction: fraction,
    };

    let level = raw.log.level.get_ref().trim().to_string();
    if let Err(e) = check_log_level(&level) {
        return Err(ctx.err(
            raw.log.level.span(),
            format!(
                "invalid log.level: {e}; expected a level (off, error, warn, info, debug, trace) or a filter like \"vidsync=debug,info\""
            ),
        ));
    }
    let log = LogConfig {
        level,
        format: raw.log.format,
    };

    let syncs = check_syncs(ctx, base, raw.sync)?;

    Ok(Config {
        api,
        key_source,
        state,
        watch,
        upload,
        reconcile,
        log,
        syncs,
        source: Some(source),
    })
}

/// Stricter than `EnvFilter`, which reads a bare word as a target name: there
/// "ifno" would silently turn logging off, so every directive must end in a
/// level (`info`, `vidsync=debug`).
fn check_log_level(level: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if level.is_empty() {
        return Err("it is empty".to_string());
    }
    for directive in level.split(',').map(str::trim) {
        let lvl = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LEVELS.contains(&lvl.to_ascii_lowercase().as_str()) {
            return Err(format!("\"{directive}\" does not end in a level"));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Key precedence, first found wins: `api.key`, `api.key_file`,
/// `$CREDENTIALS_DIRECTORY/api_key`, `$VIDSYNC_API_KEY`. Setting both `key` and `key_file` is an error, since
/// one of them would be silently ignored.
fn resolve_key(
    ctx: &Ctx<'_>,
    api: &RawApi,
    api_span: Range<usize>,
    base: &Path,
    env: Env<'_>,
) -> Result<(ApiKey, KeySource), ConfigError> {
    if let (Some(_), Some(file)) = (&api.key, &api.key_file) {
        return Err(ctx.err(
            file.span(),
            "both api.key and api.key_file are set, expected only one of them",
        ));
    }
    let (value, source, span) = if let Some(key) = &api.key {
        (key.get_ref().clone(), KeySource::Inline, key.span())
    } else if let Some(file) = &api.key_file {
        let path = base.join(file.get_ref());
        let value = std::fs::read_to_string(&path).map_err(|e| {
            ctx.err(
                file.span(),
                format!("cannot read api.key_file {}: {e}", path.display()),
            )
        })?;
        warn_if_shared(&path);
        (value, KeySource::KeyFile(path), file.span())
    } else if let Some((value, path)) = credential(ctx, &api_span, env)? {
        (value, KeySource::Credentials(path), api_span)
    } else if let Some(value) = env("VIDSYNC_API_KEY") {
        (value, KeySource::Env, api_span)
    } else {
        return Err(ctx.err(
            api_span,
            "no API key, expected one of api.key, api.key_file, $CREDENTIALS_DIRECTORY/api_key or $VIDSYNC_API_KEY",
        ));
    };
    // Trimmed: a key file usually ends with a newline.
    let value = value.trim();
    if value.is_empty() {
        return Err(ctx.err(
            span,
            format!("the API key from {source} is empty, expected the account's API key"),
        ));
    }
    // The key travels in URLs and form fields; whitespace inside it is a
    // pasting accident that would only show up later as "invalid key".
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ctx.err(
            span,
            format!("the API key from {source} contains whitespace, expected a single word"),
        ));
    }
    Ok((ApiKey::new(value), source))
}

/// `$CREDENTIALS_DIRECTORY/api_key`, set by systemd's `LoadCredential=`.
/// Absent file = not this source; present but unreadable = error.
fn credential(
    ctx: &Ctx<'_>,
    api_span: &Range<usize>,
    env: Env<'_>,
) -> Result<Option<(String, PathBuf)>, ConfigError> {
    let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let path = Path::new(&dir).join("api_key");
    match std::fs::read_to_string(&path) {
        Ok(value) => Ok(Some((value, path))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ctx.err(
            api_span.clone(),
            format!("cannot read the credential {}: {e}", path.display()),
        )),
    }
}

/// A key file others can read is a leaked key on a shared machine: warn, but
/// run (refusing would break setups where the directory is what protects it).
fn warn_if_shared(path: &Path) {
    if let Some(mode) = shared_mode(path) {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{mode:o}"),
            "api.key_file can be read by group or others; chmod 600 it"
        );
    }
}

/// The file's permission bits when group or others may read it.
fn shared_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o044 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
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

/// A humantime duration ("500ms", "10s", "5m", "1h 30m"). Zero is refused
/// where the value is a period or a timeout: a zero tokio interval panics, a
/// zero timeout fails every call.
fn duration(
    ctx: &Ctx<'_>,
    name: &str,
    value: &Spanned<String>,
    allow_zero: bool,
) -> Result<Duration, ConfigError> {
    let expected = "expected a number with a unit, like \"500ms\", \"10s\", \"5m\" or \"1h\"";
    let d = humantime::parse_duration(value.get_ref().trim()).map_err(|e| {
        ctx.err(
            value.span(),
            format!(
                "invalid duration \"{}\" for {name}: {e}; {expected}",
                value.get_ref()
            ),
        )
    })?;
    if d.is_zero() && !allow_zero {
        return Err(ctx.err(
            value.span(),
            format!("{name} is zero, expected a positive duration like \"10s\""),
        ));
    }
    Ok(d)
}

/// Lowercase, without the dot, no duplicates: scan compares
/// `Path::extension()` lowercased against this list.
fn extensions(ctx: &Ctx<'_>, values: Vec<Spanned<String>>) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for value in values {
        let ext = value.get_ref().trim();
        let ext = ext.strip_prefix('.').unwrap_or(ext).to_lowercase();
        if ext.is_empty() || ext.contains(['.', '/', '\\', '*']) {
            return Err(ctx.err(
                value.span(),
                format!(
                    "invalid extension \"{}\" in watch.extensions, expected a name like \"mp4\"",
                    value.get_ref()
                ),
            ));
        }
        if !out.contains(&ext) {
            out.push(ext);
        }
    }
    Ok(out)
}

/// Checks that every pattern compiles; the scanner builds the `GlobSet`.
fn globs(
    ctx: &Ctx<'_>,
    name: &str,
    values: Vec<Spanned<String>>,
) -> Result<Vec<String>, ConfigError> {
    values
        .into_iter()
        .map(|value| {
            globset::Glob::new(value.get_ref())
                .map(|_| value.get_ref().clone())
                .map_err(|e| {
                    ctx.err(
                        value.span(),
                        format!("invalid glob in {name}: {e}; expected a pattern like \"*.nfo\" or \"Samples/**\""),
                    )
                })
        })
        .collect()
}

fn check_upload(ctx: &Ctx<'_>, u: RawUpload) -> Result<UploadConfig, ConfigError> {
    let concurrency = *u.concurrency.get_ref();
    if concurrency == 0 {
        return Err(ctx.err(
            u.concurrency.span(),
            "upload.concurrency is 0, expected at least 1",
        ));
    }
    let max_attempts = *u.max_attempts.get_ref();
    if max_attempts == 0 {
        return Err(ctx.err(
            u.max_attempts.span(),
            "upload.max_attempts is 0, expected at least 1",
        ));
    }
    let retry_min = duration(ctx, "upload.retry_min", &u.retry_min, false)?;
    let retry_max = duration(ctx, "upload.retry_max", &u.retry_max, false)?;
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
    let template = u.title_template.get_ref();
    if let Err(e) = parse_title_template(template) {
        return Err(ctx.err(
            u.title_template.span(),
            format!("invalid upload.title_template: {e}"),
        ));
    }
    Ok(UploadConfig {
        concurrency,
        retry_min,
        retry_max,
        max_attempts,
        title_template: template.clone(),
    })
}

fn check_syncs(
    ctx: &Ctx<'_>,
    base: &Path,
    entries: Vec<Spanned<RawSync>>,
) -> Result<Vec<SyncEntry>, ConfigError> {
    if entries.is_empty() {
        return Err(ctx.err(
            ctx.text.len()..ctx.text.len(),
            "no [[sync]] entry, expected at least one [[sync]] table with local = \"/path/to/folder\"",
        ));
    }
    // (canonical local, span of its value) of the entries seen so far.
    let mut seen: Vec<(PathBuf, Range<usize>)> = Vec::new();
    let mut out = Vec::new();
    for entry in entries {
        let entry_span = entry.span();
        let e = entry.into_inner();
        let Some(local) = e.local else {
            return Err(ctx.err(
                entry_span,
                "missing local in [[sync]], expected the path of the local folder to mirror",
            ));
        };
        let path = base.join(local.get_ref());
        let canonical = match std::fs::canonicalize(&path) {
            Ok(p) if p.is_dir() => p,
            Ok(_) => {
                return Err(ctx.err(
                    local.span(),
                    format!(
                        "sync folder {} is not a directory, expected a directory",
                        path.display()
                    ),
                ));
            }
            Err(err) => {
                return Err(ctx.err(
                    local.span(),
                    format!(
                        "sync folder {} cannot be used: {err}; expected an existing directory",
                        path.display()
                    ),
                ));
            }
        };
        // Nested roots would see each file twice and upload it twice.
        if let Some((other, other_span)) = seen
            .iter()
            .find(|(other, _)| canonical.starts_with(other) || other.starts_with(&canonical))
        {
            let (line, _) = line_col(ctx.text, other_span.start);
            return Err(ctx.err(
                local.span(),
                format!(
                    "sync folder {} overlaps {} (the [[sync]] at line {line}), expected folders that are not inside one another",
                    canonical.display(),
                    other.display()
                ),
            ));
        }
        seen.push((canonical.clone(), local.span()));

        let remote = remote_path(ctx, "remote", &e.remote)?;

        let mut tags = Vec::new();
        for tag in e.tags {
            let t = tag.get_ref().trim();
            // The API takes tags as one comma-separated field.
            if t.is_empty() || t.contains(',') {
                return Err(ctx.err(
                    tag.span(),
                    "invalid tag in [[sync]] tags, expected a non-empty word without commas",
                ));
            }
            tags.push(t.to_string());
        }

        let on_local_delete = *e.on_local_delete.get_ref();
        let trash = match (on_local_delete, e.trash) {
            (LocalDeletePolicy::Trash, Some(t)) if !t.get_ref().trim().is_empty() => {
                let trash = remote_path(ctx, "trash", &t)?;
                if trash == remote {
                    return Err(ctx.err(
                        t.span(),
                        "trash is the mirrored folder itself, expected another remote folder",
                    ));
                }
                Some(trash)
            }
            (LocalDeletePolicy::Trash, other) => {
                let span = other.map_or(e.on_local_delete.span(), |t| t.span());
                return Err(ctx.err(
                    span,
                    "on_local_delete = \"trash\" needs a trash folder, expected trash = \"path/of/remote/folder\"",
                ));
            }
            (LocalDeletePolicy::Keep, Some(t)) if !t.get_ref().trim().is_empty() => {
                let (line, column) = line_col(ctx.text, t.span().start);
                tracing::warn!(
                    "{}:{line}:{column}: trash is set but on_local_delete is not \"trash\"; it is ignored",
                    ctx.path.display()
                );
                None
            }
            (LocalDeletePolicy::Keep, _) => None,
        };

        out.push(SyncEntry {
            local: canonical,
            remote,
            public: e.public,
            adult: e.adult,
            cat_id: e.cat_id,
            tags,
            on_remote_delete: e.on_remote_delete,
            on_expired: e.on_expired,
            on_local_delete,
            trash,
            exclude: globs(ctx, "[[sync]] exclude", e.exclude)?,
            adopt_existing: e.adopt_existing,
        });
    }
    Ok(out)
}

/// "Movies/2024" -> ["Movies", "2024"]; "" or "/" -> [] (the account root).
/// Leading and trailing slashes are forgiven; empty, "." and ".." components
/// are not, since the host has no such folders.
fn remote_path(
    ctx: &Ctx<'_>,
    name: &str,
    value: &Spanned<String>,
) -> Result<Vec<String>, ConfigError> {
    let path = value.get_ref().trim().trim_matches('/');
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<String> = path.split('/').map(str::to_string).collect();
    if parts
        .iter()
        .any(|p| p.trim().is_empty() || p == "." || p == "..")
    {
        return Err(ctx.err(
            value.span(),
            format!("invalid {name} folder path \"{}\", expected folder names separated by /, like \"Movies/2024\"", value.get_ref()),
        ));
    }
    Ok(parts)
}

// ---------------------------------------------------------------------------
// Title templates: checked here, rendered by the uploader, one grammar.
// ---------------------------------------------------------------------------

/// The placeholders a title template may use.
pub const TITLE_PLACEHOLDERS: &[&str] = &["stem", "name", "ext", "dir"];

/// Values for a title template's placeholders.
#[derive(Debug, Clone, Copy)]
pub struct TitleVars<'a> {
    /// File name without extension.
    pub stem: &'a str,
    /// File name.
    pub name: &'a str,
    /// Extension without the dot.
    pub ext: &'a str,
    /// Directory relative to the sync root, "/"-separated, "" at the root.
    pub dir: &'a str,
}

enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// `{stem}` etc. are placeholders; `{{` and `}}` are literal braces.
fn template_pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let expected =
        "expected one of {stem}, {name}, {ext}, {dir} (write {{ or }} for a literal brace)";
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        if i > 0 {
            pieces.push(Piece::Text(&rest[..i]));
        }
        let at = &rest[i..];
        if let Some(after) = at.strip_prefix("{{") {
            pieces.push(Piece::Text("{"));
            rest = after;
        } else if let Some(after) = at.strip_prefix("}}") {
            pieces.push(Piece::Text("}"));
            rest = after;
        } else if at.starts_with('}') {
            return Err(format!("unmatched }}, {expected}"));
        } else {
            let Some(end) = at.find('}') else {
                return Err(format!("unclosed {{, {expected}"));
            };
            let name = &at[1..end];
            if !TITLE_PLACEHOLDERS.contains(&name) {
                return Err(format!("unknown placeholder {{{name}}}, {expected}"));
            }
            pieces.push(Piece::Var(name));
            rest = &at[end + 1..];
        }
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// Checks a title template: known placeholders, balanced braces, not empty.
pub fn parse_title_template(template: &str) -> Result<(), String> {
    if template.trim().is_empty() {
        return Err("the template is empty, expected e.g. \"{stem}\"".to_string());
    }
    template_pieces(template).map(|_| ())
}

/// Fills a title template. A template that does not parse (validation
/// prevents it) renders as the stem, the default title.
pub fn render_title(template: &str, vars: &TitleVars<'_>) -> String {
    let Ok(pieces) = template_pieces(template) else {
        return vars.stem.to_string();
    };
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => *t,
            Piece::Var("stem") => vars.stem,
            Piece::Var("name") => vars.name,
            Piece::Var("ext") => vars.ext,
            Piece::Var("dir") => vars.dir,
            Piece::Var(_) => "",
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tempfile::TempDir;

    /// Looks nothing like any other text in a config or a message.
    const KEY: &str = "Zq9sekr1tKEYx7";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// A temporary directory holding the config file's directory and a media
    /// folder, `media`, that sync entries can point at.
    struct Fx {
        dir: TempDir,
    }

    impl Fx {
        fn new() -> Fx {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("media")).unwrap();
            Fx { dir }
        }
        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }
        fn media(&self) -> String {
            self.path("media").display().to_string()
        }
        fn config_path(&self) -> PathBuf {
            self.path("config.toml")
        }
        /// `[api]` with url and key, the given middle, then one sync entry.
        fn text(&self, middle: &str) -> String {
            format!(
                "[api]\nurl = \"https://watching.vn\"\nkey = \"{KEY}\"\n{middle}\n[[sync]]\nlocal = \"{}\"\n",
                self.media()
            )
        }
        fn parse(&self, text: &str) -> Result<Config, ConfigError> {
            Config::parse_str(text, &self.config_path(), &no_env)
        }
        fn parse_env(&self, text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
            let env: HashMap<String, String> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Config::parse_str(text, &self.config_path(), &move |k| env.get(k).cloned())
        }
        /// The error's message, checked to start with path:line:col and to
        /// contain each of `words`, and never the key.
        fn err(&self, text: &str, line_col: &str, words: &[&str]) -> String {
            let e = self.parse(text).expect_err("config should be rejected");
            check_err(&e, &self.config_path(), line_col, words);
            e.to_string()
        }
    }

    fn check_err(e: &ConfigError, path: &Path, line_col: &str, words: &[&str]) {
        let msg = e.to_string();
        let prefix = format!("{}:{line_col}: ", path.display());
        assert!(
            msg.starts_with(&prefix),
            "{msg:?} should start with {prefix:?}"
        );
        for w in words {
            assert!(msg.contains(w), "{msg:?} should contain {w:?}");
        }
        assert!(!msg.contains(KEY), "key leaked in {msg:?}");
        assert!(!format!("{e:?}").contains(KEY), "key leaked in {e:?}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn minimal_config_gets_every_default() {
        let fx = Fx::new();
        let c = fx.parse(&fx.text("")).unwrap();
        assert_eq!(c.api.url.as_str(), "https://watching.vn/");
        assert_eq!(c.api.key.expose(), KEY);
        assert_eq!(c.key_source, KeySource::Inline);
        assert_eq!(c.api.requests_per_minute, 60);
        assert_eq!(c.api.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.api.read_timeout, Duration::from_secs(60));
        assert_eq!(c.api.bandwidth_limit, None);
        assert_eq!(c.api.paths, ApiPaths::default());
        assert_eq!(c.state.database, PathBuf::from("/var/lib/vidsync/state.db"));
        assert_eq!(c.watch.settle, Duration::from_secs(10));
        assert_eq!(c.watch.rescan, Duration::from_secs(3600));
        assert_eq!(c.watch.mode, WatchMode::Auto);
        assert_eq!(c.watch.poll_interval, Duration::from_secs(30));
        assert_eq!(c.watch.extensions, DEFAULT_EXTENSIONS.to_vec());
        assert!(c.watch.exclude.is_empty());
        assert_eq!(c.upload.concurrency, 2);
        assert_eq!(c.upload.retry_min, Duration::from_secs(30));
        assert_eq!(c.upload.retry_max, Duration::from_secs(3600));
        assert_eq!(c.upload.max_attempts, 8);
        assert_eq!(c.upload.title_template, "{stem}");
        assert_eq!(c.reconcile.interval, Duration::from_secs(600));
        assert_eq!(c.reconcile.audit_interval, Duration::from_secs(86400));
        assert_eq!(c.reconcile.max_delete_fraction, 0.5);
        assert_eq!(c.log.level, "info");
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.source.as_deref(), Some(fx.config_path().as_path()));
        assert_eq!(c.syncs.len(), 1);
        let s = &c.syncs[0];
        assert_eq!(s.local, std::fs::canonicalize(fx.path("media")).unwrap());
        assert!(s.remote.is_empty());
        assert!(s.public);
        assert!(!s.adult);
        assert_eq!(s.cat_id, None);
        assert!(s.tags.is_empty());
        assert_eq!(s.on_remote_delete, DeletePolicy::Keep);
        assert_eq!(s.on_expired, DeletePolicy::Reupload);
        assert_eq!(s.on_local_delete, LocalDeletePolicy::Keep);
        assert_eq!(s.trash, None);
        assert!(s.exclude.is_empty());
    }

    #[test]
    fn every_key_set_is_read() {
        let fx = Fx::new();
        std::fs::create_dir(fx.path("shows")).unwrap();
        let text = format!(
            r#"
[api]
url = "https://host.example/sub/"
key = "{KEY}"
requests_per_minute = 30
connect_timeout = "5s"
read_timeout = "2m"
bandwidth_limit = "10MB"
[api.paths]
file_list = "/api/v2/file/list"
[state]
database = "db/state.db"
[watch]
settle = "500ms"
rescan = "2h"
mode = "poll"
poll_interval = "1m"
extensions = [".MP4", "mkv", "mp4"]
exclude = ["*sample*"]
[upload]
concurrency = 4
retry_min = "1m"
retry_max = "2h"
max_attempts = 3
title_template = "{{dir}} - {{stem}}"
[reconcile]
interval = "5m"
audit_interval = "12h"
max_delete_fraction = 1
[log]
level = "vidsync=debug,info"
format = "json"
[[sync]]
local = "media"
remote = "/Movies/2024/"
public = false
adult = true
cat_id = 3
tags = ["a", " b "]
on_remote_delete = "reupload"
on_expired = "keep"
on_local_delete = "trash"
trash = "Trash"
exclude = ["Extras/**"]
[[sync]]
local = "{}"
"#,
            fx.path("shows").display()
        );
        let c = fx.parse(&text).unwrap();
        assert_eq!(c.api.url.as_str(), "https://host.example/sub");
        assert_eq!(c.api.requests_per_minute, 30);
        assert_eq!(c.api.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.api.read_timeout, Duration::from_secs(120));
        assert_eq!(c.api.bandwidth_limit, Some(10_000_000));
        assert_eq!(c.api.paths.file_list, "/api/v2/file/list");
        assert_eq!(c.api.paths.file_info, "/api/file/info");
        // Relative paths are relative to the config file's directory.
        assert_eq!(c.state.database, fx.path("db/state.db"));
        assert_eq!(c.watch.settle, Duration::from_millis(500));
        assert_eq!(c.watch.mode, WatchMode::Poll);
        assert_eq!(c.watch.extensions, ["mp4", "mkv"]);
        assert_eq!(c.watch.exclude, ["*sample*"]);
        assert_eq!(c.upload.concurrency, 4);
        assert_eq!(c.upload.max_attempts, 3);
        assert_eq!(c.upload.title_template, "{dir} - {stem}");
        assert_eq!(c.reconcile.max_delete_fraction, 1.0);
        assert_eq!(c.log.level, "vidsync=debug,info");
        assert_eq!(c.log.format, LogFormat::Json);
        let s = &c.syncs[0];
        assert_eq!(s.local, std::fs::canonicalize(fx.path("media")).unwrap());
        assert_eq!(s.remote, ["Movies", "2024"]);
        assert!(!s.public);
        assert!(s.adult);
        assert_eq!(s.cat_id, Some(3));
        assert_eq!(s.tags, ["a", "b"]);
        assert_eq!(s.on_remote_delete, DeletePolicy::Reupload);
        assert_eq!(s.on_expired, DeletePolicy::Keep);
        assert_eq!(s.on_local_delete, LocalDeletePolicy::Trash);
        assert_eq!(s.trash, Some(vec!["Trash".to_string()]));
        assert_eq!(s.exclude, ["Extras/**"]);
        assert_eq!(c.syncs.len(), 2);
    }

    #[test]
    fn unknown_key_names_table_and_expected_keys() {
        let fx = Fx::new();
        let msg = fx.err(
            &fx.text("[watch]\nsetle = \"10s\"\n"),
            "5:1",
            &[
                "unknown key `setle` in [watch]",
                "expected one of",
                "`settle`",
            ],
        );
        assert!(msg.contains("`rescan`"), "{msg}");
        fx.err(
            &format!("verbose = true\n{}", fx.text("")),
            "1:1",
            &["unknown key `verbose` in the top level", "expected"],
        );
        fx.err(
            &format!("{}remot = \"x\"\n", fx.text("")),
            "7:1",
            &["unknown key `remot` in [[sync]]", "`remote`"],
        );
        fx.err(
            &fx.text("[api.paths]\nfile_lst = \"/x\"\n"),
            "5:1",
            &["unknown key `file_lst` in [api.paths]", "`file_list`"],
        );
    }

    #[test]
    fn toml_syntax_error_has_line_and_column() {
        let fx = Fx::new();
        fx.err(&fx.text("[watch]\nsettle = \"10s\n"), "5:14", &["expected"]);
        fx.err(
            &fx.text("[upload]\nconcurrency = \"two\"\n"),
            "5:15",
            &["expected"],
        );
    }

    #[test]
    fn bad_duration_is_located() {
        let fx = Fx::new();
        fx.err(
            &fx.text("[watch]\nsettle = \"ten seconds\"\n"),
            "5:10",
            &[
                "watch.settle",
                "\"ten seconds\"",
                "expected a number with a unit",
            ],
        );
        // A bare number has no unit: seconds or milliseconds is a guess.
        fx.err(
            &fx.text("[reconcile]\ninterval = \"10\"\n"),
            "5:12",
            &["reconcile.interval", "expected"],
        );
        fx.err(
            &fx.text("[watch]\nrescan = \"0s\"\n"),
            "5:10",
            &["watch.rescan is zero", "expected a positive duration"],
        );
        // settle = 0 is allowed: upload as soon as a file is seen unchanged.
        fx.parse(&fx.text("[watch]\nsettle = \"0s\"\n")).unwrap();
    }

    #[test]
    fn missing_sync_is_an_error() {
        let fx = Fx::new();
        let text = format!("[api]\nurl = \"https://watching.vn\"\nkey = \"{KEY}\"\n");
        fx.err(
            &text,
            "4:1",
            &["no [[sync]] entry", "expected at least one"],
        );
    }

    #[test]
    fn missing_api_and_url_are_errors() {
        let fx = Fx::new();
        let sync = format!("[[sync]]\nlocal = \"{}\"\n", fx.media());
        fx.err(&sync, "1:1", &["missing [api]", "expected"]);
        // Points at the [api] header: toml spans a table from it.
        let text = format!("[state]\n[api]\nkey = \"{KEY}\"\n{sync}");
        fx.err(
            &text,
            "2:1",
            &["missing api.url", "expected the host's base URL"],
        );
    }

    #[test]
    fn sync_folder_must_exist_and_be_a_directory() {
        let fx = Fx::new();
        let text = format!(
            "[api]\nurl = \"https://watching.vn\"\nkey = \"{KEY}\"\n[[sync]]\nlocal = \"{}\"\n",
            fx.path("nope").display()
        );
        fx.err(&text, "5:9", &["nope", "expected an existing directory"]);
        std::fs::write(fx.path("file.mp4"), b"x").unwrap();
        let text = format!(
            "[api]\nurl = \"https://watching.vn\"\nkey = \"{KEY}\"\n[[sync]]\nlocal = \"{}\"\n",
            fx.path("file.mp4").display()
        );
        fx.err(
            &text,
            "5:9",
            &["file.mp4", "not a directory", "expected a directory"],
        );
        let text = format!(
            "[api]\nurl = \"https://watching.vn\"\nkey = \"{KEY}\"\n[[sync]]\nremote = \"x\"\n"
        );
        fx.err(&text, "4:1", &["missing local", "expected"]);
    }

    #[test]
    fn overlapping_syncs_are_rejected() {
        let fx = Fx::new();
        std::fs::create_dir(fx.path("media/sub")).unwrap();
        let text = format!(
            "{}[[sync]]\nlocal = \"{}\"\n",
            fx.text(""),
            fx.path("media/sub").display()
        );
        fx.err(
            &text,
            "8:9",
            &["overlaps", "line 6", "expected folders that are not inside"],
        );

        // The outer one second: still found.
        let text = format!(
            "[api]\nurl = \"https://watching.vn\"\nkey = \"{KEY}\"\n[[sync]]\nlocal = \"{}\"\n[[sync]]\nlocal = \"{}\"\n",
            fx.path("media/sub").display(),
            fx.media()
        );
        fx.err(&text, "7:9", &["overlaps"]);

        // The same folder through a symlink and a relative path: canonicalized.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(fx.path("media"), fx.path("link")).unwrap();
            let text = format!("{}[[sync]]\nlocal = \"link\"\n", fx.text(""));
            fx.err(&text, "8:9", &["overlaps"]);
        }

        // Siblings whose names share a prefix do not overlap.
        std::fs::create_dir(fx.path("media2")).unwrap();
        let text = format!(
            "{}[[sync]]\nlocal = \"{}\"\n",
            fx.text(""),
            fx.path("media2").display()
        );
        assert_eq!(fx.parse(&text).unwrap().syncs.len(), 2);
    }

    fn with_url(fx: &Fx, url: &str) -> String {
        format!(
            "[api]\nurl = \"{url}\"\nkey = \"{KEY}\"\n[[sync]]\nlocal = \"{}\"\n",
            fx.media()
        )
    }

    #[test]
    fn plain_http_only_for_loopback() {
        let fx = Fx::new();
        fx.err(
            &with_url(&fx, "http://watching.vn"),
            "2:7",
            &["http://", "watching.vn", "clear text", "expected https://"],
        );
        fx.err(
            &with_url(&fx, "http://10.0.0.1:8080"),
            "2:7",
            &["expected https://"],
        );
        fx.err(
            &with_url(&fx, "ftp://watching.vn"),
            "2:7",
            &["expected https://"],
        );
        fx.err(
            &with_url(&fx, "watching.vn"),
            "2:7",
            &["invalid api.url", "expected"],
        );
        fx.err(
            &with_url(&fx, "https://watching.vn/?token=1"),
            "2:7",
            &["query", "expected"],
        );
        for ok in [
            "http://127.0.0.1",
            "http://127.1.2.3:8080",
            "http://localhost:3000",
            "http://[::1]:3000",
            "https://watching.vn",
        ] {
            let c = fx.parse(&with_url(&fx, ok)).unwrap();
            assert_eq!(c.api.url.scheme(), &ok[..ok.find(':').unwrap()]);
        }
    }

    #[test]
    fn numeric_limits_are_checked() {
        let fx = Fx::new();
        fx.err(
            &fx.text("[upload]\nconcurrency = 0\n"),
            "5:15",
            &["upload.concurrency is 0", "expected at least 1"],
        );
        fx.err(
            &fx.text("[upload]\nmax_attempts = 0\n"),
            "5:16",
            &["expected at least 1"],
        );
        fx.err(
            &fx.text("[api]\n"),
            "4:2",
            &["duplicate key `api`", "expected each key and table once"],
        );
        fx.err(
            &fx.text("requests_per_minute = 0\n"),
            "4:23",
            &["expected at least 1"],
        );
        fx.err(
            &fx.text("[upload]\nretry_min = \"2h\"\nretry_max = \"1h\"\n"),
            "6:13",
            &[
                "retry_min (2h) is longer than upload.retry_max (1h)",
                "expected",
            ],
        );
        // Only retry_min written: the message points at it.
        fx.err(
            &fx.text("[upload]\nretry_min = \"2h\"\n"),
            "5:13",
            &["expected retry_min <= retry_max"],
        );
        for bad in ["0", "0.0", "1.5", "-0.1", "nan"] {
            fx.err(
                &fx.text(&format!("[reconcile]\nmax_delete_fraction = {bad}\n")),
                "5:23",
                &[
                    "max_delete_fraction",
                    "expected a fraction above 0 and at most 1",
                ],
            );
        }
        fx.parse(&fx.text("[reconcile]\nmax_delete_fraction = 0.01\n"))
            .unwrap();
    }

    #[test]
    fn trash_policy_needs_a_trash_folder() {
        let fx = Fx::new();
        let text = format!("{}on_local_delete = \"trash\"\n", fx.text(""));
        fx.err(&text, "7:19", &["needs a trash folder", "expected trash ="]);
        let text = format!("{}on_local_delete = \"trash\"\ntrash = \"\"\n", fx.text(""));
        fx.err(&text, "8:9", &["needs a trash folder"]);
        let text = format!(
            "{}remote = \"Movies\"\non_local_delete = \"trash\"\ntrash = \"/Movies/\"\n",
            fx.text("")
        );
        fx.err(
            &text,
            "9:9",
            &["trash is the mirrored folder itself", "expected"],
        );
        let text = format!(
            "{}on_local_delete = \"trash\"\ntrash = \"Old/Trash\"\n",
            fx.text("")
        );
        let c = fx.parse(&text).unwrap();
        assert_eq!(c.syncs[0].trash, Some(vec!["Old".into(), "Trash".into()]));
        // trash without the trash policy is ignored (with a warning).
        let c = fx
            .parse(&format!("{}trash = \"T\"\n", fx.text("")))
            .unwrap();
        assert_eq!(c.syncs[0].trash, None);
    }

    #[test]
    fn remote_paths_are_checked() {
        let fx = Fx::new();
        let text = format!("{}remote = \"a//b\"\n", fx.text(""));
        fx.err(
            &text,
            "7:10",
            &["\"a//b\"", "expected folder names separated by /"],
        );
        let text = format!("{}remote = \"a/../b\"\n", fx.text(""));
        fx.err(&text, "7:10", &["expected folder names"]);
        let text = format!("{}remote = \"/\"\n", fx.text(""));
        assert!(fx.parse(&text).unwrap().syncs[0].remote.is_empty());
        let text = format!("{}tags = [\"a,b\"]\n", fx.text(""));
        fx.err(&text, "7:9", &["without commas"]);
    }

    #[test]
    fn unknown_title_placeholder_is_rejected() {
        let fx = Fx::new();
        fx.err(
            &fx.text("[upload]\ntitle_template = \"{stem} {year}\"\n"),
            "5:18",
            &[
                "unknown placeholder {year}",
                "expected one of {stem}, {name}, {ext}, {dir}",
            ],
        );
        fx.err(
            &fx.text("[upload]\ntitle_template = \"{stem\"\n"),
            "5:18",
            &["unclosed {", "expected"],
        );
        fx.err(
            &fx.text("[upload]\ntitle_template = \"\"\n"),
            "5:18",
            &["empty", "expected"],
        );
    }

    #[test]
    fn title_template_renders() {
        let vars = TitleVars {
            stem: "Film",
            name: "Film.mkv",
            ext: "mkv",
            dir: "2024/May",
        };
        assert_eq!(render_title("{stem}", &vars), "Film");
        assert_eq!(
            render_title("{dir}: {name} ({ext}) {{x}}", &vars),
            "2024/May: Film.mkv (mkv) {x}"
        );
        assert_eq!(render_title("{bogus}", &vars), "Film");
    }

    #[test]
    fn bad_glob_is_located() {
        let fx = Fx::new();
        fx.err(
            &fx.text("[watch]\nexclude = [\"ok\", \"a[b\"]\n"),
            "5:18",
            &["invalid glob in watch.exclude", "expected a pattern"],
        );
        let text = format!("{}exclude = [\"{{a,b\"]\n", fx.text(""));
        fx.err(&text, "7:12", &["invalid glob in [[sync]] exclude"]);
    }

    #[test]
    fn enums_and_extensions_are_checked() {
        let fx = Fx::new();
        fx.err(
            &fx.text("[watch]\nmode = \"inotify\"\n"),
            "5:8",
            &["inotify", "expected one of", "`auto`", "`poll`"],
        );
        fx.err(
            &fx.text("[watch]\nextensions = [\"mp4\", \"\"]\n"),
            "5:22",
            &["invalid extension", "expected a name like"],
        );
        fx.err(
            &fx.text("[log]\nlevel = \"ifno\"\n"),
            "5:9",
            &["invalid log.level", "expected a level"],
        );
        fx.err(
            &fx.text("[log]\nformat = \"xml\"\n"),
            "5:10",
            &["expected `text` or `json`"],
        );
        fx.err(
            &fx.text("bandwidth_limit = \"10 parsecs\"\n"),
            "4:19",
            &["invalid byte size", "expected"],
        );
        fx.err(&fx.text("bandwidth_limit = -1\n"), "4:19", &["expected"]);
        let c = fx
            .parse(&fx.text("bandwidth_limit = \"500KiB\"\n"))
            .unwrap();
        assert_eq!(c.api.bandwidth_limit, Some(512_000));
        let c = fx.parse(&fx.text("bandwidth_limit = 4096\n")).unwrap();
        assert_eq!(c.api.bandwidth_limit, Some(4096));
    }

    #[test]
    fn byte_sizes() {
        for (s, n) in [
            ("0", 0),
            ("10", 10),
            ("10B", 10),
            ("10kb", 10_000),
            ("10 MB", 10_000_000),
            ("2GB", 2_000_000_000),
            ("500KiB", 512_000),
            ("1MiB", 1 << 20),
            ("1GiB", 1 << 30),
        ] {
            assert_eq!(parse_byte_size(s), Ok(n), "{s}");
        }
        for bad in ["", "MB", "1.5MB", "10 parsecs", "99999999999999GB"] {
            assert!(parse_byte_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn line_col_counts_characters() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 2), (1, 3));
        assert_eq!(line_col(text, 3), (2, 1));
        // After "cdé": é is two bytes but one column.
        assert_eq!(line_col(text, 7), (2, 4));
        assert_eq!(line_col(text, 8), (3, 1));
        assert_eq!(line_col(text, 99), (3, 2));
        // Inside a multi-byte char: backs off rather than panicking.
        assert_eq!(line_col(text, 6), (2, 3));
    }

    // -- The key: sources, precedence, secrecy -------------------------------

    fn no_key_text(fx: &Fx, api_extra: &str) -> String {
        format!(
            "[api]\nurl = \"https://watching.vn\"\n{api_extra}\n[[sync]]\nlocal = \"{}\"\n",
            fx.media()
        )
    }

    #[test]
    fn key_from_each_source() {
        let fx = Fx::new();
        // key_file: trimmed, relative to the config file's directory.
        std::fs::write(fx.path("key"), format!("  {KEY}\n")).unwrap();
        let c = fx.parse(&no_key_text(&fx, "key_file = \"key\"")).unwrap();
        assert_eq!(c.api.key.expose(), KEY);
        assert_eq!(c.key_source, KeySource::KeyFile(fx.path("key")));

        // $CREDENTIALS_DIRECTORY/api_key.
        std::fs::create_dir(fx.path("creds")).unwrap();
        std::fs::write(fx.path("creds/api_key"), format!("{KEY}-cred\n")).unwrap();
        let creds = fx.path("creds").display().to_string();
        let c = fx
            .parse_env(&no_key_text(&fx, ""), &[("CREDENTIALS_DIRECTORY", &creds)])
            .unwrap();
        assert_eq!(c.api.key.expose(), format!("{KEY}-cred"));
        assert_eq!(
            c.key_source,
            KeySource::Credentials(fx.path("creds/api_key"))
        );

        // $VIDSYNC_API_KEY.
        let c = fx
            .parse_env(&no_key_text(&fx, ""), &[("VIDSYNC_API_KEY", "envkey123")])
            .unwrap();
        assert_eq!(c.api.key.expose(), "envkey123");
        assert_eq!(c.key_source, KeySource::Env);

        // A credentials directory without api_key falls through to the env.
        let c = fx
            .parse_env(
                &no_key_text(&fx, ""),
                &[
                    ("CREDENTIALS_DIRECTORY", &fx.media()),
                    ("VIDSYNC_API_KEY", "envkey123"),
                ],
            )
            .unwrap();
        assert_eq!(c.key_source, KeySource::Env);
    }

    #[cfg(unix)]
    #[test]
    fn key_file_readable_by_others_is_noticed() {
        use std::os::unix::fs::PermissionsExt;
        let fx = Fx::new();
        let key = fx.path("key");
        std::fs::write(&key, KEY).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(shared_mode(&key), Some(0o644));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(shared_mode(&key), Some(0o640));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(shared_mode(&key), None);
        // Still loads: a warning, not an error.
        let c = fx.parse(&no_key_text(&fx, "key_file = \"key\"")).unwrap();
        assert_eq!(c.api.key.expose(), KEY);
    }

    #[test]
    fn key_precedence() {
        let fx = Fx::new();
        std::fs::write(fx.path("key"), "filekey1").unwrap();
        std::fs::create_dir(fx.path("creds")).unwrap();
        std::fs::write(fx.path("creds/api_key"), "credkey1").unwrap();
        let creds = fx.path("creds").display().to_string();
        let env = [
            ("CREDENTIALS_DIRECTORY", creds.as_str()),
            ("VIDSYNC_API_KEY", "envkey1"),
        ];
        let key = |extra: &str| {
            fx.parse_env(&no_key_text(&fx, extra), &env)
                .unwrap()
                .api
                .key
                .expose()
                .to_string()
        };
        assert_eq!(key("key = \"inline1\""), "inline1");
        assert_eq!(key("key_file = \"key\""), "filekey1");
        assert_eq!(key(""), "credkey1");
        let c = fx
            .parse_env(&no_key_text(&fx, ""), &[("VIDSYNC_API_KEY", "envkey1")])
            .unwrap();
        assert_eq!(c.api.key.expose(), "envkey1");
    }

    #[test]
    fn key_errors() {
        let fx = Fx::new();
        std::fs::write(fx.path("key"), "filekey1").unwrap();
        fx.err(
            &no_key_text(&fx, &format!("key = \"{KEY}\"\nkey_file = \"key\"")),
            "4:12",
            &["both api.key and api.key_file", "expected only one"],
        );
        fx.err(
            &no_key_text(&fx, "key = \"  \""),
            "3:7",
            &["empty", "expected"],
        );
        std::fs::write(fx.path("empty"), "\n").unwrap();
        fx.err(
            &no_key_text(&fx, "key_file = \"empty\""),
            "3:12",
            &["api.key_file", "is empty", "expected"],
        );
        fx.err(
            &no_key_text(&fx, "key_file = \"missing\""),
            "3:12",
            &["cannot read api.key_file", "missing"],
        );
        fx.err(
            &no_key_text(&fx, ""),
            "1:1",
            &["no API key", "expected one of api.key, api.key_file"],
        );
        let e = fx
            .parse_env(&no_key_text(&fx, ""), &[("VIDSYNC_API_KEY", "")])
            .unwrap_err();
        check_err(&e, &fx.config_path(), "1:1", &["$VIDSYNC_API_KEY", "empty"]);
        fx.err(
            &no_key_text(&fx, "key = \"two words\""),
            "3:7",
            &["whitespace", "expected"],
        );
    }

    #[test]
    fn key_never_in_debug_or_errors() {
        let fx = Fx::new();
        let c = fx.parse(&fx.text("")).unwrap();
        assert!(!format!("{c:?}").contains(KEY));
        assert!(!format!("{:?}", c.api).contains(KEY));

        // The key pasted into the wrong places: every message names it, never shows it.
        let cases = [
            format!("[watch]\nsettle = \"{KEY}\"\n"),
            format!("[watch]\nmode = \"{KEY}\"\n"),
            format!("[watch]\nexclude = [\"[{KEY}\"]\n"),
            format!("[upload]\nconcurrency = \"{KEY}\"\n"),
            format!("[upload]\ntitle_template = \"{{{KEY}}}\"\n"),
            format!("[log]\nlevel = \"{KEY}=\"\n"),
            format!("bandwidth_limit = \"{KEY}\"\n"),
            format!("[{KEY}]\n"),
            format!("{KEY} = 1\n"),
        ];
        for middle in &cases {
            let e = fx.parse(&fx.text(middle)).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&fx.config_path().display().to_string()),
                "{msg}"
            );
            assert!(!msg.contains(KEY), "key leaked: {msg}");
            assert!(!format!("{e:?}").contains(KEY), "key leaked: {e:?}");
        }
        let e = fx
            .parse(&format!("{}remote = \"a//{KEY}\"\n", fx.text("")))
            .unwrap_err();
        assert!(!e.to_string().contains(KEY), "{e}");
        assert!(e.to_string().contains("<api.key>"), "{e}");

        // A key from the environment or a key file is scrubbed as well.
        std::fs::write(fx.path("key"), KEY).unwrap();
        let text = no_key_text(
            &fx,
            &format!("key_file = \"key\"\nread_timeout = \"{KEY}\""),
        );
        let e = fx.parse(&text).unwrap_err();
        assert!(!e.to_string().contains(KEY), "{e}");
        let text = format!(
            "[api]\nurl = \"https://watching.vn\"\n[watch]\nmode = \"{KEY}\"\n[[sync]]\nlocal = \"{}\"\n",
            fx.media()
        );
        let e = fx
            .parse_env(&text, &[("VIDSYNC_API_KEY", KEY)])
            .unwrap_err();
        assert!(!e.to_string().contains(KEY), "{e}");
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let fx = Fx::new();
        let e = Config::load_with(&fx.path("absent.toml"), &no_env).unwrap_err();
        assert!(e.to_string().contains("absent.toml"), "{e}");
        assert_eq!(e.exit_code(), 2);
        std::fs::write(fx.config_path(), fx.text("")).unwrap();
        let c = Config::load_with(&fx.config_path(), &no_env).unwrap();
        assert_eq!(c.source.as_deref(), Some(fx.config_path().as_path()));
    }

    // -- The example file ----------------------------------------------------

    /// The example with its sync folder pointing at a real directory and its
    /// commented `[api.paths]` block uncommented.
    fn example_text(fx: &Fx) -> String {
        let text = include_str!("../config.example.toml");
        assert!(text.contains("\"/srv/media/Movies\""));
        text.replace("\"/srv/media/Movies\"", &format!("\"{}\"", fx.media()))
            .lines()
            .map(|l| {
                let uncommented = l.strip_prefix("# ").unwrap_or(l);
                if uncommented == "[api.paths]" || uncommented.contains("= \"/api/") {
                    uncommented
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn example_file_parses_and_tells_the_truth() {
        let fx = Fx::new();
        let example = fx.parse(&example_text(&fx)).unwrap();
        // The same file reduced to the required keys: everything else must
        // come out the same, or the example documents a wrong default.
        let minimal = fx
            .parse(&format!(
                "[api]\nurl = \"https://watching.vn\"\nkey = \"REPLACE-WITH-YOUR-KEY\"\n[[sync]]\nlocal = \"{}\"\nremote = \"Movies\"\n",
                fx.media()
            ))
            .unwrap();
        assert_eq!(example.api, minimal.api);
        assert_eq!(example.state, minimal.state);
        assert_eq!(example.watch, minimal.watch);
        assert_eq!(example.upload, minimal.upload);
        assert_eq!(example.reconcile, minimal.reconcile);
        assert_eq!(example.log, minimal.log);
        assert_eq!(example.syncs, minimal.syncs);
        assert_eq!(example.api.paths, ApiPaths::default());
    }

    #[test]
    fn example_documents_every_key() {
        let text = include_str!("../config.example.toml");
        let paths = ApiPaths::default();
        let ApiPaths {
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
            folder_list,
            folder_create,
            folder_edit,
        } = &paths;
        let path_values = [
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
            folder_list,
            folder_create,
            folder_edit,
        ];
        for v in path_values {
            assert!(text.contains(&format!("\"{v}\"")), "{v} missing");
        }
        for key in [
            "url",
            "key",
            "key_file",
            "requests_per_minute",
            "connect_timeout",
            "read_timeout",
            "bandwidth_limit",
            "sanitize_filename",
            "allow_http_upload",
            "adopt_existing",
            "database",
            "settle",
            "rescan",
            "mode",
            "poll_interval",
            "extensions",
            "exclude",
            "concurrency",
            "retry_min",
            "retry_max",
            "max_attempts",
            "title_template",
            "interval",
            "audit_interval",
            "max_delete_fraction",
            "level",
            "format",
            "local",
            "remote",
            "public",
            "adult",
            "cat_id",
            "tags",
            "on_remote_delete",
            "on_expired",
            "on_local_delete",
            "trash",
        ] {
            let found = text.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with(&format!("{key} ="))
            });
            assert!(found, "config.example.toml does not document {key}");
        }
    }
}
