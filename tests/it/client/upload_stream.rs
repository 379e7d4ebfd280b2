//! The upload body on the wire: read timeouts, stalled replies (also while the pacer
//! waits), the bandwidth limit, and memory that stays flat for a large file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vidsync::api::{Client, ErrorClass, UploadParams};
use vidsync_testhost::{Fault, Scope};

use super::{client, params};
use crate::common;

#[tokio::test]
async fn slow_reading_host_still_succeeds() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = common::content("slow", 256 * 1024);
    let path = common::write(dir.path(), "slow.mp4", &bytes);
    host.faults().times(
        Fault::SlowRead {
            bytes_per_sec: 1024 * 1024,
        },
        Scope::Upload,
        1,
    );
    let code = c
        .upload_file(&path, &params("slow"), None)
        .await
        .expect("slow upload");
    assert_eq!(host.file_bytes(&code).expect("bytes"), bytes);
}

#[tokio::test]
async fn upload_to_a_host_that_stops_reading_times_out() {
    let host = common::host().await;
    let mut cfg = common::api_config(&host);
    cfg.read_timeout = Duration::from_millis(300);
    let c = Client::new(&cfg).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write(
        dir.path(),
        "stall.mp4",
        &common::content("stall", 8 * 1024 * 1024),
    );
    host.faults()
        .times(Fault::SlowRead { bytes_per_sec: 1 }, Scope::Upload, 1);
    let started = std::time::Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(5),
        c.upload_file(&path, &params("stall"), None),
    )
    .await;
    eprintln!(
        "stalled upload: {:?} after {:?}",
        res.as_ref().map(|r| r.as_ref().map_err(|e| e.to_string())),
        started.elapsed()
    );
    let res = res.expect("the client gives up on a stalled upload by itself");
    let err = res.expect_err("stalled");
    assert_eq!(err.class(), ErrorClass::Transient, "{err:?}");
    assert!(err.outcome_unknown());
}

#[tokio::test]
async fn upload_longer_than_the_read_timeout_with_steady_progress_succeeds() {
    let host = common::host().await;
    let mut cfg = common::api_config(&host);
    cfg.read_timeout = Duration::from_millis(300);
    let c = Client::new(&cfg).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = common::content("steady", 2 * 1024 * 1024);
    let path = common::write(dir.path(), "steady.mp4", &bytes);
    // ~1.3 s in total, never silent for long.
    host.faults().times(
        Fault::SlowRead {
            bytes_per_sec: 1600 * 1024,
        },
        Scope::Upload,
        1,
    );
    let started = std::time::Instant::now();
    let res = c.upload_file(&path, &params("steady"), None).await;
    eprintln!(
        "steady upload: {:?} after {:?}",
        res.as_ref().map_err(|e| e.to_string()),
        started.elapsed()
    );
    let code = res.expect("a steady upload longer than read_timeout");
    assert_eq!(host.file_bytes(&code).expect("bytes"), bytes);
}

#[tokio::test]
async fn throttled_upload_longer_than_the_read_timeout_succeeds() {
    let host = common::host().await;
    let mut cfg = common::api_config(&host);
    cfg.read_timeout = Duration::from_millis(300);
    cfg.bandwidth_limit = Some(2 * 1024 * 1024);
    let c = Client::new(&cfg).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = common::content("throttled", 1024 * 1024 + 1);
    let path = common::write(dir.path(), "throttled.mp4", &bytes);
    let started = std::time::Instant::now();
    let res = c.upload_file(&path, &params("throttled"), None).await;
    eprintln!(
        "throttled upload: {:?} after {:?}",
        res.as_ref().map_err(|e| e.to_string()),
        started.elapsed()
    );
    let code = res.expect("a throttled upload longer than read_timeout");
    assert_eq!(host.file_bytes(&code).expect("bytes"), bytes);
}

#[tokio::test]
async fn bandwidth_limit_slows_the_upload_down() {
    let host = common::host().await;
    let mut cfg = common::api_config(&host);
    cfg.bandwidth_limit = Some(2 * 1024 * 1024);
    let c = Client::new(&cfg).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = common::content("limited", 1024 * 1024);
    let path = common::write(dir.path(), "limited.mp4", &bytes);
    let started = std::time::Instant::now();
    let code = c
        .upload_file(&path, &params("limited"), None)
        .await
        .expect("limited upload");
    let took = started.elapsed();
    // 1 MiB at 2 MiB/s: about half a second (the last chunk's wait included).
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(host.file_bytes(&code).expect("bytes"), bytes);
}

const OK_UPLOAD: &str = r#"{"msg":"OK","status":200,"files":[{"filecode":"abcdefabcdef","filename":"a.mp4","status":"OK"}]}"#;

fn server_reply(port: u16) -> String {
    format!(r#"{{"msg":"OK","status":200,"result":"http://127.0.0.1:{port}/upload/01"}}"#)
}

/// The raw loopback server of `crate::raw`, answering each request line
/// with a JSON body, optionally trickled one byte per pause.
async fn raw_json_server(
    handler: impl Fn(u16, &str) -> (String, Option<Duration>) + Send + Sync + 'static,
) -> u16 {
    let (port, _) = crate::raw::raw_server(Arc::new(move |port, line| {
        let (body, trickle) = handler(port, line);
        crate::raw::RawReply {
            trickle,
            ..crate::raw::raw("200 OK", body)
        }
    }))
    .await;
    port
}

// Regression: the upload reply body was read with no timeout (a stalled reply hung the upload).
#[tokio::test]
async fn upload_reply_body_that_stalls_is_bounded() {
    let port = raw_json_server(|port, line| {
        if line.starts_with("POST") {
            // Headers at once, then one byte every 30 s.
            (OK_UPLOAD.to_string(), Some(Duration::from_secs(30)))
        } else {
            (server_reply(port), None)
        }
    })
    .await;
    let c = common::raw_client(port, 60_000, Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let p = common::write(dir.path(), "a.mp4", &common::content("a", 10_000));
    let params = UploadParams {
        title: "a".into(),
        ..Default::default()
    };
    // The watchdog promises at most read_timeout * 5 (1.5 s) of silence.
    let r = tokio::time::timeout(Duration::from_secs(10), c.upload_file(&p, &params, None)).await;
    assert!(
        r.is_ok(),
        "upload_file still hanging after 10 s: the reply body has no timeout"
    );
}

/// Peak resident memory (VmHWM, KiB) of a `vidsync scan` child process.
///
/// Method: the test process runs other tests in parallel, so its own RSS says
/// nothing; instead the real binary runs as a child and `/proc/<pid>/status` is
/// polled every 20 ms for `VmHWM` (the kernel's high-water mark of RSS). The last
/// value read before the child exits is kept; since VmHWM only grows it is the
/// peak to within the last 20 ms. Returns (peak KiB, exit status, stdout, stderr).
async fn scan_peak_kib(
    config: &Path,
    scratch: &Path,
) -> (u64, std::process::ExitStatus, String, String) {
    let out_path = scratch.join("scan.stdout");
    let err_path = scratch.join("scan.stderr");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vidsync"))
        .arg("--config")
        .arg(config)
        .arg("scan")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn vidsync scan");
    let status_file = format!("/proc/{}/status", child.id());
    let started = std::time::Instant::now();
    let mut peak = 0u64;
    let mut samples = 0u32;
    let status = loop {
        // Only samples taken after the exec count: before it the child is
        // still a copy of the test process (its `Name:` is not "vidsync").
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && text
                .lines()
                .any(|l| l.strip_prefix("Name:").map(str::trim) == Some("vidsync"))
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
            samples += 1;
        }
        if let Some(st) = child.try_wait().expect("wait child") {
            break st;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vidsync scan did not finish in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        samples >= 3,
        "only {samples} VmHWM samples of the running binary: the child ended too fast to measure ({status}; stderr {stderr})"
    );
    (peak, status, stdout, stderr)
}

/// Uploading 256 MiB must not need memory in proportion to the file: the peak
/// RSS of a `scan` that uploads it stays within 64 MiB of a `scan` of an empty
/// folder (see `scan_peak_kib` for how the peak is measured).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploading_256_mib_keeps_memory_flat() {
    const SIZE: u64 = 256 * 1024 * 1024;
    let host = common::host().await;

    // Baseline: the same binary scanning an empty folder.
    let base_state = tempfile::tempdir().expect("tempdir");
    let empty = tempfile::tempdir().expect("tempdir");
    let (_, base_cfg) = common::config(&host, base_state.path(), &[(empty.path(), "Empty")], "");
    // An empty scan ends in a few ms, too fast to sample: the host delays each
    // API call by 150 ms so the child is alive (and fully set up: runtime,
    // database, HTTP client) across several 20 ms samples.
    host.faults()
        .always(Fault::Delay(Duration::from_millis(150)), Scope::Api);
    let (base_kib, st, out, err) = scan_peak_kib(&base_cfg, base_state.path()).await;
    host.faults().clear();
    assert!(
        st.success(),
        "baseline scan failed ({st}): stdout {out}\nstderr {err}"
    );

    // A sparse 256 MiB file with non-zero data at several offsets.
    let media = tempfile::tempdir().expect("tempdir");
    let big = media.path().join("big.mp4");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&big).expect("create big");
        f.set_len(SIZE).expect("set_len");
        let chunk = common::content("big", 1024 * 1024);
        for offset in [0, 50, 100, 150, 200, 255] {
            f.seek(SeekFrom::Start(offset * 1024 * 1024)).expect("seek");
            f.write_all(&chunk).expect("write chunk");
        }
        f.sync_all().expect("sync");
    }
    // Let the file look settled to the scanner.
    tokio::time::sleep(Duration::from_millis(400)).await;

    let state = tempfile::tempdir().expect("tempdir");
    // The file is sparse (written in a few places, to be quick), which the
    // completeness check rightly takes for a download in progress: this
    // test is about memory, so it is off here.
    let text = common::config_toml(&host, state.path(), &[(media.path(), "Big")], "")
        .replace("settle = \"300ms\"", "settle = \"300ms\"\nverify = \"off\"");
    let (_, cfg) = common::config_from_text(&text, state.path());
    let (peak_kib, st, out, err) = scan_peak_kib(&cfg, state.path()).await;
    eprintln!(
        "upload 256 MiB: peak RSS {:.1} MiB, baseline {:.1} MiB",
        peak_kib as f64 / 1024.0,
        base_kib as f64 / 1024.0
    );
    assert!(
        st.success(),
        "scan failed ({st}): stdout {out}\nstderr {err}"
    );
    assert!(
        base_kib > 1024 && peak_kib > 1024,
        "VmHWM of the binary was read"
    );
    let held: Vec<_> = host
        .files()
        .into_iter()
        .filter(|f| f.size == SIZE)
        .collect();
    assert_eq!(
        held.len(),
        1,
        "host holds one 256 MiB file: {:?}",
        host.files()
    );
    // Spot-check content at one of the written offsets.
    let stored = host.file_path(&held[0].code).expect("stored path");
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(stored).expect("open stored");
        f.seek(SeekFrom::Start(100 * 1024 * 1024)).expect("seek");
        let mut buf = vec![0u8; 1024 * 1024];
        f.read_exact(&mut buf).expect("read stored");
        assert_eq!(buf, common::content("big", 1024 * 1024));
    }
    let growth_kib = peak_kib.saturating_sub(base_kib);
    assert!(
        growth_kib < 64 * 1024,
        "peak {peak_kib} KiB - baseline {base_kib} KiB = {growth_kib} KiB >= 64 MiB"
    );
}

// Regression: waiting for the pacer counted as upload silence (a healthy upload timed out).
#[tokio::test]
async fn pacer_wait_is_not_a_stalled_upload() {
    let port = raw_json_server(|port, line| {
        if line.starts_with("POST") {
            (OK_UPLOAD.to_string(), None)
        } else {
            (server_reply(port), None)
        }
    })
    .await;
    // 10/min: burst 1, then one token per ~6.7 s. read_timeout 1 s.
    let c = common::raw_client(port, 10, Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    let p = common::write(dir.path(), "a.mp4", &common::content("a", 10_000));
    let params = UploadParams {
        title: "a".into(),
        ..Default::default()
    };
    let r = c.upload_file(&p, &params, None).await;
    assert!(r.is_ok(), "a healthy instant host, yet: {r:?}");
}
