//! Helpers shared by the integration tests: a host, a config for it, files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use vidsync::api::Client;
use vidsync::config::{ApiConfig, ApiKey, ApiPaths, Config};
use vidsync::store::{FileRow, State, Store};
use vidsync_testhost::{HostOptions, TestHost};

/// A host whose encodings finish quickly.
pub async fn host() -> TestHost {
    TestHost::start_with(HostOptions {
        encode_time: Duration::from_millis(200),
        ..HostOptions::default()
    })
    .await
    .expect("start test host")
}

/// An `ApiConfig` for a client of `host` (fast timeouts, generous pacing).
pub fn api_config(host: &TestHost) -> ApiConfig {
    api_config_at(&host.url(), &host.key())
}

/// An `ApiConfig` for the API at `url` with `key` (fast timeouts, generous pacing).
pub fn api_config_at(url: &str, key: &str) -> ApiConfig {
    ApiConfig {
        url: url::Url::parse(url).expect("api url"),
        key: ApiKey::new(key),
        requests_per_minute: 60_000,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        bandwidth_limit: None,
        sanitize_filename: false,
        allow_http_upload: false,
        resolve: Vec::new(),
        paths: ApiPaths::default(),
    }
}

/// TOML text for a daemon syncing `syncs` (local dir, remote path) to
/// `host`, its database in `state_dir`; `extra` is appended verbatim
/// (more tables or keys at the end of the file).
pub fn config_toml(
    host: &TestHost,
    state_dir: &Path,
    syncs: &[(&Path, &str)],
    extra: &str,
) -> String {
    let mut s = format!(
        r#"[api]
url = "{url}"
key = "{key}"
requests_per_minute = 60000
read_timeout = "5s"

[state]
database = "{db}"

[watch]
settle = "300ms"
rescan = "1h"
poll_interval = "500ms"

[upload]
concurrency = 2
retry_min = "50ms"
retry_max = "400ms"
max_attempts = 8

"#,
        url = host.url(),
        key = host.key(),
        db = state_dir.join("state.db").display(),
    );
    for (local, remote) in syncs {
        s.push_str(&format!(
            "[[sync]]\nlocal = \"{}\"\nremote = \"{}\"\n\n",
            local.display(),
            remote
        ));
    }
    s.push_str(extra);
    s
}

/// Parse a config written by `config_toml` (it is also written to
/// `state_dir/config.toml`, for the binary).
pub fn config(
    host: &TestHost,
    state_dir: &Path,
    syncs: &[(&Path, &str)],
    extra: &str,
) -> (Config, PathBuf) {
    config_from_text(&config_toml(host, state_dir, syncs, extra), state_dir)
}

/// Parse config text (also written to `state_dir/config.toml`).
pub fn config_from_text(text: &str, state_dir: &Path) -> (Config, PathBuf) {
    let text = text.to_string();
    let path = state_dir.join("config.toml");
    std::fs::write(&path, &text).expect("write config");
    let env = |_: &str| None;
    let cfg = Config::parse_str(&text, &path, &env).expect("valid test config");
    (cfg, path)
}

/// Write `bytes` to `root/rel`, creating directories.
pub fn write(root: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(&p, bytes).expect("write file");
    p
}

/// Distinct content for a test video.
pub fn content(seed: &str, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x: u64 = seed.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Poll `cond` every 20 ms until it holds or `timeout` passes.
pub async fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// One `scan` pass in-process, bounded in time.
pub async fn scan(cfg: &Config) -> vidsync::daemon::ScanSummary {
    tokio::time::timeout(
        Duration::from_secs(60),
        vidsync::daemon::scan_once(cfg.clone(), tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("scan finishes")
    .expect("scan succeeds")
}

/// The real `vidsync` binary, for tests that run it as a child.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_vidsync"))
}

/// The key of `raw_client`: a secret the redaction tests look for in errors.
pub const SECRET: &str = "s3cretkey1234567";

/// A client of the raw loopback server on `port` (`crate::raw`), with the
/// key `SECRET`, pacing `requests_per_minute` and `read_timeout`.
pub fn raw_client(port: u16, requests_per_minute: u32, read_timeout: Duration) -> Client {
    let mut cfg = api_config_at(&format!("http://127.0.0.1:{port}"), SECRET);
    cfg.requests_per_minute = requests_per_minute;
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.read_timeout = read_timeout;
    Client::new(&cfg).expect("client")
}

/// (path, state, code) of every row, for failure messages.
pub fn row_states(cfg: &Config) -> Vec<(String, State, Option<String>)> {
    let s = Store::open(&cfg.state.database).expect("open store");
    s.list(None)
        .expect("list rows")
        .into_iter()
        .map(|r| (r.rel_path, r.state, r.file_code))
        .collect()
}

/// The row of `rel`, if any.
pub fn row_of(cfg: &Config, rel: &str) -> Option<FileRow> {
    let s = Store::open(&cfg.state.database).expect("open store");
    s.list(None)
        .expect("list rows")
        .into_iter()
        .find(|r| r.rel_path == rel)
}

/// A loopback port where connections are refused, reserved while the
/// returned socket lives: bound but not listening. (A port closed and given
/// back could be taken by another test's server in the meantime.)
pub fn refused_port() -> (tokio::net::TcpSocket, u16) {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let port = s.local_addr().expect("addr").port();
    (s, port)
}

/// `[[host]]` tables for these hosts, named a, b, c, ... in order, with
/// more lines in some of them (`extra[i]` goes to the i-th host); then the
/// usual sections, and the syncs, each `(local, remote, more lines)`.
pub fn hosts_config_with(
    hosts: &[&TestHost],
    extra: &[&str],
    state: &Path,
    syncs: &[(&Path, &str, &str)],
) -> String {
    let mut s = String::new();
    for (i, h) in hosts.iter().enumerate() {
        s.push_str(&format!(
            "[[host]]\nname = \"{}\"\nurl = \"{}\"\nkey = \"{}\"\nrequests_per_minute = 60000\nread_timeout = \"5s\"\n{}\n",
            (b'a' + i as u8) as char,
            h.url(),
            h.key(),
            extra.get(i).copied().unwrap_or("")
        ));
    }
    s.push_str(&format!(
        "[state]\ndatabase = \"{}\"\n\n[watch]\nsettle = \"300ms\"\nrescan = \"1h\"\n\n\
         [upload]\nconcurrency = 2\nretry_min = \"50ms\"\nretry_max = \"400ms\"\nmax_attempts = 50\n\n",
        state.join("state.db").display()
    ));
    for (local, remote, on) in syncs {
        s.push_str(&format!(
            "[[sync]]\nlocal = \"{}\"\nremote = \"{remote}\"\n{on}\n\n",
            local.display()
        ));
    }
    s
}

/// The live files of a host by title, with their bytes.
pub fn live(host: &TestHost) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = host
        .files()
        .into_iter()
        .filter(|f| f.deleted.is_none())
        .map(|f| {
            (
                f.title.clone(),
                host.file_bytes(&f.code).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `vidsync run` as a child; its log (stderr) is appended to `run.log`
/// next to the config, for failure messages (`child_log`).
pub fn run_child(config: &Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("run.log"))
        .expect("open run.log");
    bin()
        .arg("--config")
        .arg(config)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start vidsync run")
}

/// The end of what the children `run_child` started with `config` logged.
pub fn child_log(config: &Path) -> String {
    let text = std::fs::read_to_string(config.with_file_name("run.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Run a vidsync command with `config`: (success, stdout).
pub fn command(config: &Path, args: &[&str]) -> (bool, String) {
    let out = bin()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run vidsync");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
