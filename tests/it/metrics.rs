//! `[metrics]`: the daemon in-process serves `/metrics` and `/healthz`;
//! the counters move with real uploads to the test host; the exposition is
//! what `promtool check metrics` accepts (when promtool is installed).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vidsync::daemon;
use vidsync::store::{State, Store};

use crate::common;

/// A loopback port free a moment ago (the daemon's bind retries briefly
/// if another test grabbed it meanwhile, which is rare on loopback).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The value of one sample (`name{labels}` exactly as encoded), or None.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("metrics server answers");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// `promtool check metrics` on the text, or None when promtool is absent.
fn promtool_check(text: &str) -> Option<(bool, String)> {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), said))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_uploads_and_healthz_answers() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = common::config_toml(
        &host,
        state.path(),
        &[(root.path(), "Lib")],
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    // Slow enough (~1.5 s for the big file) to be seen uploading.
    .replace(
        "read_timeout = \"5s\"",
        "read_timeout = \"5s\"\nbandwidth_limit = 400000",
    );
    let (cfg, _) = common::config_from_text(&text, state.path());
    let base = format!("http://127.0.0.1:{port}");
    // Opened before the daemon: a first open (which turns on WAL) racing
    // the daemon's own can find the database busy.
    let store = Store::open(&cfg.state.database).unwrap();
    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::run(cfg.clone(), stop.clone()));

    // Up: healthz 200 and a first scrape before any upload.
    let mut up = false;
    for _ in 0..250 {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await {
            assert_eq!(r.status().as_u16(), 200);
            assert_eq!(r.text().await.unwrap(), "ok\n");
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up, "the metrics listener never came up");
    let (status, before) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&before, "vidsync_uploads_total{result=\"ok\"}"),
        Some(0.0),
        "{before}"
    );
    assert_eq!(sample(&before, "vidsync_key_ok"), Some(1.0));
    // The key check at start went through the one counting place.
    assert!(
        sample(&before, "vidsync_api_calls_total{call=\"account/info\"}").unwrap_or(0.0) >= 1.0,
        "{before}"
    );

    let big = common::content("big", 600_000);
    let small = common::content("small", 50_000);
    common::write(root.path(), "big.mp4", &big);
    common::write(root.path(), "small.mp4", &small);

    // During the upload: the state gauge follows the store.
    assert!(
        common::wait_for(Duration::from_secs(10), || {
            store
                .list(Some(State::Uploading))
                .is_ok_and(|v| v.iter().any(|r| r.rel_path == "big.mp4"))
        })
        .await,
        "big.mp4 never started uploading"
    );
    let (_, during) = get(&format!("{base}/metrics")).await;
    assert!(
        sample(&during, "vidsync_files{state=\"uploading\"}").unwrap_or(0.0) >= 1.0,
        "{during}"
    );

    assert!(
        common::wait_for(Duration::from_secs(15), || {
            store
                .list(Some(State::Uploaded))
                .is_ok_and(|v| v.len() == 2)
        })
        .await,
        "both files uploaded"
    );
    let (_, after) = get(&format!("{base}/metrics")).await;
    let total = (big.len() + small.len()) as f64;
    assert_eq!(
        sample(&after, "vidsync_uploads_total{result=\"ok\"}"),
        Some(2.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "vidsync_upload_bytes_total{result=\"ok\"}"),
        Some(total)
    );
    assert_eq!(
        sample(&after, "vidsync_upload_duration_seconds_count"),
        Some(2.0)
    );
    assert_eq!(
        sample(&after, "vidsync_upload_speed_bytes_per_second_count"),
        Some(2.0)
    );
    assert_eq!(
        sample(&after, "vidsync_api_calls_total{call=\"upload\"}"),
        Some(2.0)
    );
    // Counted: at least one upload/server (two uploads started at once
    // may each ask before either remembered a server).
    let servers = sample(&after, "vidsync_api_calls_total{call=\"upload/server\"}");
    assert!(
        servers.is_some_and(|n| (1.0..=2.0).contains(&n)),
        "{servers:?}"
    );
    assert_eq!(
        sample(&after, "vidsync_files{state=\"uploaded\"}"),
        Some(2.0)
    );
    assert_eq!(sample(&after, "vidsync_queue_length"), Some(0.0));
    let last = sample(&after, "vidsync_last_upload_timestamp_seconds").unwrap_or(0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - last).abs() < 60.0,
        "last upload at {last}, now {now}"
    );
    // The test host reports the account's storage.
    assert!(
        sample(&after, "vidsync_storage_left_bytes").is_some_and(|v| !v.is_nan()),
        "{after}"
    );
    // No secret in the exposition.
    assert!(!after.contains(&host.key()));

    // OpenMetrics for a scraper that asks; 404 and 405 for the rest.
    let om = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .header("Accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(
        om.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(om.text().await.unwrap().ends_with("# EOF\n"));
    assert_eq!(get(&format!("{base}/nope")).await.0, 404);
    let post = reqwest::Client::new()
        .post(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 405);

    match promtool_check(&after) {
        Some((ok, said)) => assert!(ok, "promtool check metrics: {said}\n{after}"),
        None => println!("skipped: promtool not found"),
    }

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), h)
        .await
        .expect("daemon stops")
        .expect("daemon task")
        .expect("clean stop");
    // The listener went with the daemon.
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_metrics_port_stops_the_start_with_its_address() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (cfg, _) = common::config(
        &host,
        state.path(),
        &[(root.path(), "Lib")],
        &format!("[metrics]\nlisten = \"{addr}\"\n"),
    );
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        daemon::run(cfg, CancellationToken::new()),
    )
    .await
    .expect("run returns");
    let e = r.expect_err("a start without the metrics the user asked for");
    assert!(
        e.to_string()
            .contains(&format!("cannot listen for metrics on {addr}")),
        "{e}"
    );
    assert_eq!(e.exit_code(), 1);
}

/// With several hosts, `/metrics` has every host's series, each with a
/// `host` label, every family once (promtool accepts it); uploads to each
/// host count on that host's series. (Before, only the first host's
/// metrics were served.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_hosts_are_served_with_a_host_label() {
    let (a, b) = (common::host().await, common::host().await);
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(root.path(), "one.mp4", &common::content("one", 5_000));
    let port = free_port();
    let mut text = String::new();
    for (name, h) in [("a", &a), ("b", &b)] {
        text.push_str(&format!(
            "[[host]]\nname = \"{name}\"\nurl = \"{}\"\nkey = \"{}\"\nrequests_per_minute = 60000\n\n",
            h.url(),
            h.key()
        ));
    }
    text.push_str(&format!(
        "[state]\ndatabase = \"{}\"\n\n[watch]\nsettle = \"100ms\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [[sync]]\nlocal = \"{}\"\nremote = \"Lib\"\n",
        state.path().join("state.db").display(),
        root.path().display()
    ));
    let (cfg, _) = common::config_from_text(&text, state.path());
    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::run(cfg, stop.clone()));
    assert!(
        common::wait_for(Duration::from_secs(20), || a.files().len() == 1
            && b.files().len() == 1)
        .await,
        "uploaded to both"
    );
    // The host has the file a moment before the daemon counts it: scrape
    // until both counts are in (or give up and let the asserts say why).
    let mut scraped = String::new();
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
            scraped = r.text().await.unwrap();
            let counted = |h: &str| {
                sample(
                    &scraped,
                    &format!("vidsync_uploads_total{{host=\"{h}\",result=\"ok\"}}"),
                ) == Some(1.0)
            };
            if counted("a") && counted("b") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let _ = h.await;
    for host in ["a", "b"] {
        assert_eq!(
            sample(
                &scraped,
                &format!("vidsync_uploads_total{{host=\"{host}\",result=\"ok\"}}")
            ),
            Some(1.0),
            "{scraped}"
        );
        assert_eq!(
            sample(
                &scraped,
                &format!("vidsync_files{{host=\"{host}\",state=\"uploaded\"}}")
            ),
            Some(1.0),
            "{scraped}"
        );
    }
    let helps = scraped
        .lines()
        .filter(|l| l.starts_with("# HELP vidsync_files "))
        .count();
    assert_eq!(helps, 1, "{scraped}");
    match promtool_check(&scraped) {
        Some((ok, said)) => assert!(ok, "promtool: {said}\n{scraped}"),
        None => eprintln!("skipped: promtool is not installed (.ci/run installs it)"),
    }
}
