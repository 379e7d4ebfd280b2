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

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

pub use crate::api::{ApiConfig, ApiKey, ApiPaths};
pub use crate::engine::DeletePolicy;
use crate::engine::template::parse_title_template;

// ---------------------------------------------------------------------------
// The validated configuration. The sections without cross-checks (`watch`,
// `reconcile`, `log`, `state`) are read straight into these structs.
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
    /// Checked by [`parse_title_template`]; render with `engine::render_title`.
    pub title_template: String,
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

/// Stands for the key's name in the messages of the value checks below: a
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
            message = format!("unknown key {name} in {table}{expected}");
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
// Values with a rule of their own. Each check runs inside serde, so toml
// locates its error; the message names the key through `KEY`.
// ---------------------------------------------------------------------------

/// A humantime duration ("500ms", "10s", "5m", "1h 30m") that must not be
/// zero, as for every period and timeout: a zero tokio interval panics, a
/// zero timeout fails every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Period(Duration);

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value: Duration = humantime_serde::deserialize(d)?;
        if value.is_zero() {
            return Err(D::Error::custom(format!(
                "{KEY} is zero, expected a positive duration like \"10s\""
            )));
        }
        Ok(Period(value))
    }
}

fn period<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Period::deserialize(d).map(|p| p.0)
}

/// Reads a string and checks it while toml is still reading it: only then
/// does toml give the error the string's own place (a check after the read
/// gets the place of what holds it, for an array element the whole array).
fn checked_str<'de, D, T>(
    d: D,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Check<F>(F);
    impl<T, F: FnOnce(&str) -> Result<T, String>> serde::de::Visitor<'_> for Check<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(Check(check))
}

/// One video extension: lowercase, without the dot; scan compares
/// `Path::extension()` lowercased against the list.
struct Extension(String);

impl<'de> Deserialize<'de> for Extension {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |value| {
            let ext = value.trim();
            let ext = ext.strip_prefix('.').unwrap_or(ext).to_lowercase();
            if ext.is_empty() || ext.contains(['.', '/', '\\', '*']) {
                return Err(format!(
                    "invalid extension \"{value}\" in {KEY}, expected a name like \"mp4\""
                ));
            }
            Ok(Extension(ext))
        })
    }
}

/// The extensions without duplicates, in the order written.
fn extensions<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let mut out: Vec<String> = Vec::new();
    for Extension(ext) in Vec::<Extension>::deserialize(d)? {
        if !out.contains(&ext) {
            out.push(ext);
        }
    }
    Ok(out)
}

/// A glob pattern checked to compile; the scanner builds the `GlobSet`.
struct Glob(String);

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |value| match globset::Glob::new(value) {
            Ok(_) => Ok(Glob(value.to_string())),
            Err(e) => Err(format!(
                "invalid glob in {KEY}: {e}; expected a pattern like \"*.nfo\" or \"Samples/**\""
            )),
        })
    }
}

fn globs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let globs = Vec::<Glob>::deserialize(d)?;
    Ok(globs.into_iter().map(|Glob(g)| g).collect())
}

/// A fraction above 0 and at most 1.
fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(d)?;
    // Written so that NaN fails too.
    if !(value > 0.0 && value <= 1.0) {
        return Err(D::Error::custom(format!(
            "{KEY} is {value}, expected a fraction above 0 and at most 1"
        )));
    }
    Ok(value)
}

/// A log filter, trimmed, checked by [`check_log_level`].
fn log_level<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_str(d, |value| {
        let level = value.trim();
        check_log_level(level).map(|()| level.to_string()).map_err(|e| {
            format!(
                "invalid {KEY}: {e}; expected a level (off, error, warn, info, debug, trace) or a filter like \"vidsync=debug,info\""
            )
        })
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

/// A title template checked by the engine's grammar.
fn title_template<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_str(d, |template| {
        parse_title_template(template)
            .map(|()| template.to_string())
            .map_err(|e| format!("invalid {KEY}: {e}"))
    })
}

/// Bytes per second: an integer, or a string with a unit ("10MB", "500KiB").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteRate(u64);

impl<'de> Deserialize<'de> for ByteRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let expected = "bytes per second: an integer, or a string like \"10MB\" or \"500KiB\"";
        match Raw::deserialize(d).map_err(|_| D::Error::custom(format!("expected {expected}")))? {
            Raw::Number(n) => u64::try_from(n).map(ByteRate).map_err(|_| {
                D::Error::custom("expected a non-negative number of bytes per second")
            }),
            Raw::Text(s) => parse_byte_size(&s).map(ByteRate).map_err(D::Error::custom),
        }
    }
}

/// "10MB" -> 10_000_000, "500KiB" -> 512_000, "10k" -> 10_000, "0" -> 0.
///
/// `bytesize` reads the units with the meaning the config file documents:
/// decimal units (k, KB, M, MB, G, GB, any case) are powers of 1000, binary
/// units (KiB, MiB, GiB) powers of 1024. Around it we keep what it allows
/// but the file does not: a fraction ("1.5MB", which bytesize rounds) is an
/// error, and so is a size too large for 64 bits (which bytesize saturates).
fn parse_byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let invalid = || {
        format!(
            "invalid byte size \"{s}\", expected a number of bytes with an optional unit: B, KB, MB, GB, KiB, MiB, GiB"
        )
    };
    if !t.starts_with(|c: char| c.is_ascii_digit()) || t.contains('.') {
        return Err(invalid());
    }
    let size: bytesize::ByteSize = t.parse().map_err(|_| invalid())?;
    // Only a saturated product reaches u64::MAX with a unit: it is odd, and
    // no unit but B divides it.
    if size.as_u64() == u64::MAX && t.parse::<u64>().is_err() {
        return Err(format!("byte size \"{s}\" is too large"));
    }
    Ok(size.as_u64())
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
    sync: Vec<Spanned<RawSync>>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawApi {
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

    let state = StateConfig {
        database: base.join(raw.state.database),
    };

    Ok(Config {
        api,
        key_source,
        state,
        watch: raw.watch,
        upload: check_upload(ctx, raw.upload)?,
        reconcile: raw.reconcile,
        log: raw.log,
        syncs: check_syncs(ctx, base, raw.sync)?,
        source: Some(source),
    })
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
            exclude: e.exclude,
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
        assert_eq!(c.upload.concurrency.get(), 2);
        assert_eq!(c.upload.retry_min, Duration::from_secs(30));
        assert_eq!(c.upload.retry_max, Duration::from_secs(3600));
        assert_eq!(c.upload.max_attempts.get(), 8);
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
        assert_eq!(c.upload.concurrency.get(), 4);
        assert_eq!(c.upload.max_attempts.get(), 3);
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

    /// The units as config.example.toml documents them: k/M/G (any case,
    /// with or without B) are decimal, KiB/MiB/GiB binary.
    #[test]
    fn byte_size_units_keep_their_documented_meaning() {
        for (s, n) in [
            ("10k", 10_000),
            ("10K", 10_000),
            ("10 kB", 10_000),
            ("3M", 3_000_000),
            ("3m", 3_000_000),
            ("2G", 2_000_000_000),
            ("2 KiB", 2048),
            ("2mib", 2 << 20),
            (" 7 ", 7),
        ] {
            assert_eq!(parse_byte_size(s), Ok(n), "{s}");
        }
        for bad in ["k", "-1k", "1,5MB", "0.5k", "18446744073709551615KB"] {
            assert!(parse_byte_size(bad).is_err(), "{bad}");
        }
        let fx = Fx::new();
        let c = fx.parse(&fx.text("bandwidth_limit = \"2M\"\n")).unwrap();
        assert_eq!(c.api.bandwidth_limit, Some(2_000_000));
        fx.err(
            &fx.text("bandwidth_limit = 1.5\n"),
            "4:19",
            &["expected bytes per second"],
        );
    }

    #[test]
    fn durations_read_as_humantime() {
        let fx = Fx::new();
        let c = fx
            .parse(&fx.text(
                "[watch]\nsettle = \"90s\"\nrescan = \"1h 30m\"\npoll_interval = \"1m30s\"\n[upload]\nretry_max = \"2days\"\n",
            ))
            .unwrap();
        assert_eq!(c.watch.settle, Duration::from_secs(90));
        assert_eq!(c.watch.rescan, Duration::from_secs(5400));
        assert_eq!(c.watch.poll_interval, Duration::from_secs(90));
        assert_eq!(c.upload.retry_max, Duration::from_secs(2 * 86400));
        // A TOML number is not a duration either: its unit would be a guess.
        fx.err(
            &fx.text("[watch]\nsettle = 10\n"),
            "5:10",
            &[
                "invalid duration 10 for watch.settle",
                "expected a number with a unit",
            ],
        );
    }

    #[test]
    fn zero_is_rejected_with_the_key_and_its_line() {
        let fx = Fx::new();
        for (middle, line_col, name) in [
            (
                "[reconcile]\naudit_interval = \"0s\"\n",
                "5:18",
                "reconcile.audit_interval is zero",
            ),
            (
                "[upload]\nretry_min = \"0ms\"\n",
                "5:13",
                "upload.retry_min is zero",
            ),
            (
                "connect_timeout = \"0s\"\n",
                "4:19",
                "api.connect_timeout is zero",
            ),
            (
                "[watch]\npoll_interval = \"0h\"\n",
                "5:17",
                "watch.poll_interval is zero",
            ),
        ] {
            fx.err(
                &fx.text(middle),
                line_col,
                &[name, "expected a positive duration"],
            );
        }
        // Dotted keys and a table written as [ watch ] name the same key.
        fx.err(
            &fx.text("[ watch ]\nrescan = \"0s\"\n"),
            "5:10",
            &["watch.rescan is zero"],
        );
        fx.err(
            &format!("upload.concurrency = 0\n{}", fx.text("")),
            "1:22",
            &["upload.concurrency is 0", "expected at least 1"],
        );
        // A negative count is not "0": serde's own words stay.
        fx.err(
            &fx.text("[upload]\nconcurrency = -1\n"),
            "5:15",
            &["-1", "expected a nonzero"],
        );
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
        let text = include_str!("../../config.example.toml");
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
        let text = include_str!("../../config.example.toml");
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
