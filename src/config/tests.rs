//! The configuration's tests: defaults, every key read, and each error's
//! place and wording, through `Config::parse_str` on files in a temporary
//! directory; a few checks of the value parsers and the key-file mode.

#[cfg(unix)]
use super::key::shared_mode;
use super::values::parse_byte_size;
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
    // A table the config has no use for is named as written.
    fx.err(
        &fx.text("[metrix]\nlisten = \"x\"\n"),
        "4:2",
        &["unknown table [metrix]", "expected one of", "`watch`"],
    );
    fx.err(
        &fx.text("[[synk]]\nlocal = \"x\"\n"),
        "4:3",
        &["unknown table [[synk]]", "expected one of"],
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
    assert_eq!(c.syncs[0].on_new_version, NewVersionPolicy::Trash);
    // A trash folder alone: replaced versions go there, deletions do not.
    let c = fx
        .parse(&format!("{}trash = \"T\"\n", fx.text("")))
        .unwrap();
    assert_eq!(c.syncs[0].trash, Some(vec!["T".into()]));
    assert_eq!(c.syncs[0].on_new_version, NewVersionPolicy::Trash);
    assert_eq!(c.syncs[0].on_local_delete, LocalDeletePolicy::Keep);
    // No trash folder: old versions are kept.
    let c = fx.parse(&fx.text("")).unwrap();
    assert_eq!(c.syncs[0].on_new_version, NewVersionPolicy::Keep);
    let c = fx
        .parse(&format!(
            "{}trash = \"T\"\non_new_version = \"keep\"\n",
            fx.text("")
        ))
        .unwrap();
    assert_eq!(c.syncs[0].on_new_version, NewVersionPolicy::Keep);
    let text = format!("{}on_new_version = \"trash\"\n", fx.text(""));
    fx.err(
        &text,
        "7:18",
        &[
            "on_new_version = \"trash\" needs a trash folder",
            "expected trash =",
        ],
    );
    let text = format!("{}on_new_version = \"sometimes\"\n", fx.text(""));
    assert!(fx.parse(&text).is_err());
}

#[test]
fn verify_and_incomplete_timeout() {
    let fx = Fx::new();
    let c = fx.parse(&fx.text("")).unwrap();
    assert_eq!(c.watch.verify, Verify::Structure);
    assert_eq!(c.watch.incomplete_timeout, Duration::from_secs(24 * 3600));
    let c = fx
        .parse(&fx.text("[watch]\nverify = \"off\"\nincomplete_timeout = \"2h\"\n"))
        .unwrap();
    assert_eq!(c.watch.verify, Verify::Off);
    assert_eq!(c.watch.incomplete_timeout, Duration::from_secs(7200));
    let err = fx
        .parse(&fx.text("[watch]\nverify = \"maybe\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(":5:10:") && err.contains("`structure` or `off`"),
        "{err}"
    );
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
    assert_eq!(example.metrics, minimal.metrics);
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
        file_url_uploads,
        file_url_actions,
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
        file_url_uploads,
        file_url_actions,
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
        "listen",
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

// -- [metrics] -------------------------------------------------------------

#[test]
fn metrics_are_off_unless_an_address_is_written() {
    let fx = Fx::new();
    assert_eq!(fx.parse(&fx.text("")).unwrap().metrics.listen, None);
    assert_eq!(
        fx.parse(&fx.text("[metrics]\n")).unwrap().metrics.listen,
        None
    );
    let c = fx
        .parse(&fx.text("[metrics]\nlisten = \"127.0.0.1:9464\"\n"))
        .unwrap();
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
    // Any address the user writes, IPv6 and all interfaces included.
    for (written, want) in [
        ("[::1]:9464", "[::1]:9464"),
        ("0.0.0.0:9464", "0.0.0.0:9464"),
        ("localhost:9100", "127.0.0.1:9100"),
        ("127.0.0.1:0", "127.0.0.1:0"),
    ] {
        let c = fx
            .parse(&fx.text(&format!("[metrics]\nlisten = \"{written}\"\n")))
            .unwrap();
        assert_eq!(c.metrics.listen, Some(want.parse().unwrap()), "{written}");
    }
}

#[test]
fn a_bad_metrics_address_is_named_with_its_place() {
    let fx = Fx::new();
    for bad in [
        "9464",
        "metrics.example:9464",
        "127.0.0.1",
        "127.0.0.1:99999",
        "",
    ] {
        fx.err(
            &fx.text(&format!("[metrics]\nlisten = \"{bad}\"\n")),
            "5:10",
            &[
                &format!("invalid metrics.listen \"{bad}\""),
                "expected an IP address and port like \"127.0.0.1:9464\"",
            ],
        );
    }
    fx.err(
        &fx.text("[metrics]\nlisen = \"127.0.0.1:9464\"\n"),
        "5:1",
        &["unknown key `lisen` in [metrics]", "`listen`"],
    );
}

// -- [[host]] ---------------------------------------------------------------

/// Two or three `[[host]]` tables (from `hosts`), then one sync entry with
/// the given extra lines.
fn hosts_text(fx: &Fx, hosts: &str, sync_extra: &str) -> String {
    format!(
        "{hosts}\n[[sync]]\nlocal = \"{}\"\n{sync_extra}\n",
        fx.media()
    )
}

#[test]
fn several_hosts_with_each_key_source_and_sync_hosts() {
    let fx = Fx::new();
    let key_file = fx.path("b.key");
    std::fs::write(&key_file, "bbbbkey\n").unwrap();
    let creds = fx.path("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("c-2_api_key"), "cccckey").unwrap();
    let text = hosts_text(
        &fx,
        &format!(
            "[[host]]\nname = \"a\"\nurl = \"https://a.example\"\nkey = \"aaaakey\"\n\
             [[host]]\nname = \"b\"\nurl = \"https://b.example\"\nkey_file = \"{}\"\ncopy_from = \"a\"\n\
             [[host]]\nname = \"c-2\"\nurl = \"https://c.example\"\n\
             [[host]]\nname = \"d\"\nurl = \"https://d.example\"\nrequests_per_minute = 5\n",
            key_file.display()
        ),
        "hosts = [\"b\", \"d\"]",
    );
    let c = fx
        .parse_env(
            &text,
            &[
                ("CREDENTIALS_DIRECTORY", &creds.display().to_string()),
                ("VIDSYNC_D_API_KEY", "ddddkey"),
            ],
        )
        .unwrap();
    let names: Vec<&str> = c.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c-2", "d"]);
    let keys: Vec<&str> = c.hosts.iter().map(|h| h.api.key.expose()).collect();
    assert_eq!(keys, ["aaaakey", "bbbbkey", "cccckey", "ddddkey"]);
    assert_eq!(c.hosts[1].copy_from.as_deref(), Some("a"));
    assert_eq!(c.hosts[3].api.requests_per_minute, 5);
    assert_eq!(c.hosts[3].key_source.to_string(), "$VIDSYNC_D_API_KEY");
    assert_eq!(c.api, c.hosts[0].api, "api is the first host's");
    assert_eq!(c.syncs[0].hosts, ["b", "d"]);
    // Each host's view: its own settings, only its syncs.
    let d = c.for_host("d").unwrap();
    assert_eq!(d.api.url.as_str(), "https://d.example/");
    assert_eq!(d.syncs.len(), 1);
    assert!(c.for_host("a").unwrap().syncs.is_empty());
    assert!(c.for_host("nope").is_none());
    // [api] alone: one host, "default".
    let one = fx.parse(&fx.text("")).unwrap();
    assert_eq!(one.hosts.len(), 1);
    assert_eq!(one.hosts[0].name, "default");
    assert_eq!(one.syncs[0].hosts, ["default"]);
}

#[test]
fn host_errors_are_located_and_never_show_a_key() {
    let fx = Fx::new();
    let h = |name: &str, extra: &str| {
        format!(
            "[[host]]\nname = \"{name}\"\nurl = \"https://x.example\"\nkey = \"{KEY}\"\n{extra}"
        )
    };
    let cases: Vec<(String, &str, &[&str])> = vec![
        (
            hosts_text(&fx, &h("Bad Name", ""), ""),
            "2:8",
            &["invalid host name"],
        ),
        (
            hosts_text(&fx, &format!("{}{}", h("a", ""), h("a", "")), ""),
            "6:8",
            &["a second [[host]] named \"a\""],
        ),
        (
            hosts_text(&fx, &format!("{}{}", h("a-b", ""), h("a_b", "")), ""),
            "6:8",
            &["differ only by"],
        ),
        (
            hosts_text(&fx, &h("a", "copy_from = \"a\"\n"), ""),
            "5:13",
            &["itself"],
        ),
        (
            hosts_text(&fx, &h("a", "copy_from = \"z\"\n"), ""),
            "5:13",
            &["names no host"],
        ),
        (
            hosts_text(
                &fx,
                &format!(
                    "{}{}",
                    h("a", "copy_from = \"b\"\n"),
                    h("b", "copy_from = \"a\"\n")
                ),
                "",
            ),
            "5:13",
            &["host a: copy_from goes round in a circle (a -> b -> a)"],
        ),
        (
            hosts_text(&fx, &h("a", ""), "hosts = [\"z\"]"),
            "8:10",
            &["unknown host \"z\""],
        ),
        (
            hosts_text(&fx, &h("a", ""), "hosts = []"),
            "8:9",
            &["empty hosts list"],
        ),
        (
            format!(
                "[api]\nurl = \"https://y.example\"\nkey = \"{KEY}\"\n{}",
                hosts_text(&fx, &h("a", ""), "")
            ),
            "1:1",
            &["both [api] and [[host]]"],
        ),
        (
            hosts_text(
                &fx,
                "[[host]]\nname = \"a\"\nurl = \"https://x.example\"\n",
                "",
            ),
            "1:1",
            &[
                "host a: no API key",
                "$CREDENTIALS_DIRECTORY/a_api_key",
                "$VIDSYNC_A_API_KEY",
            ],
        ),
    ];
    for (text, at, words) in cases {
        fx.err(&text, at, words);
    }
}
