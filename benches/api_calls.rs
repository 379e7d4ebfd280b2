//! API calls per uploaded file and per new folder (issue 12): hosts ration
//! calls (one documented deployment: 5 a minute, 1,000 a day), so calls,
//! not bytes, decide how many files a day go up. Each scenario runs
//! `vidsync scan` in-process against the loopback test host, which counts
//! every call; the figure is compared in the same run with the budget the
//! targets allow (1.1 calls per uploaded file, 1 per new folder), as a ratio.
//!
//! Run: `cargo bench --bench api_calls` (or `bench/api-calls`). With
//! `VIDSYNC_BENCH_RATIONED=1` it also uploads 200 files in 20 folders to a
//! host limited to 5 calls a minute and 1,000 a day and reports refused
//! calls and the time taken against the time the limits allow (about ten
//! minutes of wall time).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use vidsync::config::Config;
use vidsync_testhost::{HostOptions, TestHost};

fn config(host: &TestHost, media: &Path, state: &Path, per_minute: u32) -> Config {
    let text = format!(
        "[api]\nurl = \"{}\"\nkey = \"{}\"\nrequests_per_minute = {per_minute}\n\
         [state]\ndatabase = \"{}\"\n\
         [watch]\nsettle = \"0s\"\n\
         [upload]\nretry_min = \"1s\"\nretry_max = \"70s\"\n\
         [[sync]]\nlocal = \"{}\"\nremote = \"Bench\"\n",
        host.url(),
        host.key(),
        state.join("state.db").display(),
        media.display()
    );
    let path = state.join("config.toml");
    std::fs::write(&path, &text).expect("write config");
    Config::parse_str(&text, &path, &|_: &str| None).expect("config")
}

/// `files` small videos spread over `folders` new directories.
fn library(dir: &Path, folders: usize, files: usize, from: usize) {
    for i in from..from + files {
        let sub = dir.join(format!("Show {:02}", i % folders));
        std::fs::create_dir_all(&sub).expect("mkdir");
        let body: Vec<u8> = (0..4096u32).map(|b| (b as usize ^ i) as u8).collect();
        std::fs::write(sub.join(format!("ep{i:04}.mp4")), body).expect("write");
    }
}

/// API calls by endpoint (the upload POST, which goes to the upload
/// server and is the file itself, is not an API call here).
fn calls(host: &TestHost) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for r in host.request_log() {
        if r.endpoint != "upload" {
            *by.entry(r.endpoint).or_default() += 1;
        }
    }
    by
}

fn total(by: &BTreeMap<String, usize>) -> usize {
    by.values().sum()
}

fn since(
    after: &BTreeMap<String, usize>,
    before: &BTreeMap<String, usize>,
) -> BTreeMap<String, usize> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

async fn scan(cfg: &Config) {
    vidsync::daemon::scan_once(cfg.clone(), CancellationToken::new())
        .await
        .expect("scan");
}

fn report(what: &str, by: &BTreeMap<String, usize>, files: usize, folders: usize) {
    let budget = files as f64 * 1.1 + folders as f64;
    let n = total(by);
    println!("{what}: {n} API calls for {files} files and {folders} new folders");
    println!("  by call: {by:?}");
    println!(
        "  budget (1.1 per file + 1 per folder): {budget:.0}; calls / budget = {:.2}",
        n as f64 / budget
    );
}

#[tokio::main]
async fn main() {
    // First scan: 100 videos in 20 new folders (the measurement).
    let host = TestHost::start_with(HostOptions::default())
        .await
        .expect("test host");
    let media = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    library(media.path(), 20, 100, 0);
    let cfg = config(&host, media.path(), state.path(), 60_000);
    scan(&cfg).await;
    let first = calls(&host);
    report("first scan", &first, 100, 21);

    // Steady state: 100 more files into the folders that exist.
    library(media.path(), 20, 100, 100);
    scan(&cfg).await;
    let second = since(&calls(&host), &first);
    report(
        "steady state (100 new files, folders exist)",
        &second,
        100,
        0,
    );

    if std::env::var_os("VIDSYNC_BENCH_RATIONED").is_none() {
        println!("rationed scenario skipped (set VIDSYNC_BENCH_RATIONED=1; about ten minutes)");
        return;
    }
    let host = TestHost::start_with(HostOptions {
        rate_limit_per_min: Some(5),
        rate_limit_per_day: Some(1000),
        ..HostOptions::default()
    })
    .await
    .expect("test host");
    let media = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    library(media.path(), 20, 200, 0);
    // As the owner of such an account writes it: 5 calls a minute.
    let cfg = config(&host, media.path(), state.path(), 5);
    let started = Instant::now();
    scan(&cfg).await;
    let took = started.elapsed();
    let by = calls(&host);
    let refused: Vec<String> = host
        .request_log()
        .iter()
        .filter(|r| r.endpoint != "upload" && r.status == 403)
        .map(|r| r.endpoint.clone())
        .collect();
    let uploaded = host.files().len();
    report("rationed (5/min, 1000/day)", &by, 200, 21);
    // The limits allow 5 calls per calendar minute: n calls need at least
    // ceil(n / 5) - 1 minute boundaries.
    let allowed = Duration::from_secs(60 * (total(&by).div_ceil(5).saturating_sub(1)) as u64);
    println!(
        "  uploaded {uploaded} of 200; refused calls: {} {refused:?}; took {:.0} s, the limits allow {:.0} s; ratio {:.2}",
        refused.len(),
        took.as_secs_f64(),
        allowed.as_secs_f64(),
        took.as_secs_f64() / allowed.as_secs_f64().max(1.0)
    );
}
