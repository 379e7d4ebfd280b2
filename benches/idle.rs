//! CPU of an idle daemon (issue 12: under 0.1 s per 10 minutes with 100,000
//! files tracked). A library of `VIDSYNC_BENCH_IDLE_FILES` files (default
//! 100,000) is made and recorded as uploaded (a scan against the loopback
//! test host would take hours; the store is filled directly, as the last
//! scan would have left it), then `vidsync run` (the release binary) starts
//! on it; after it settles, its CPU time (utime + stime from /proc) is read
//! over `VIDSYNC_BENCH_IDLE_SECS` seconds (default 600). The reference is
//! the target: the figure scaled to 10 minutes, against 0.1 s, as a ratio.
//!
//! Run: `cargo bench --bench idle` (or `bench/idle`; builds the release
//! binary first).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vidsync::store::{Stat, Store};
use vidsync_testhost::{HostOptions, TestHost};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // The fields after the command name (which may hold spaces) in ")".
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

fn binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/release/vidsync");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release` first (bench/idle does)",
        bin.display()
    );
    bin
}

#[tokio::main]
async fn main() {
    let files = env_or("VIDSYNC_BENCH_IDLE_FILES", 100_000) as usize;
    let secs = env_or("VIDSYNC_BENCH_IDLE_SECS", 600);
    let host = TestHost::start_with(HostOptions::default())
        .await
        .expect("test host");
    let media = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let db = state.path().join("state.db");
    let text = format!(
        "[api]\nurl = \"{}\"\nkey = \"{}\"\n\
         [state]\ndatabase = \"{}\"\n\
         [[sync]]\nlocal = \"{}\"\nremote = \"Bench\"\n",
        host.url(),
        host.key(),
        db.display(),
        media.path().display()
    );
    let config = state.path().join("config.toml");
    std::fs::write(&config, &text).expect("write config");

    // The library, recorded as uploaded.
    let made = Instant::now();
    let store = Store::open(&db).expect("store");
    let root = store.ensure_root(media.path(), "Bench").expect("root");
    for i in 0..files {
        let rel = format!("Show {:03}/ep{i:06}.mp4", i / 1000);
        let path = media.path().join(&rel);
        if i % 1000 == 0 {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        }
        std::fs::write(&path, b"x").expect("write");
        let st = Stat::of(&std::fs::metadata(&path).expect("stat"));
        let id = store.insert_file(root, &rel, st, 1).expect("insert");
        store
            .finish_uploaded(id, &format!("c{i:011}"), 1, 2, "bench")
            .expect("uploaded");
        store
            .set_encoding(id, true, None, None, 3)
            .expect("playable");
    }
    // Reconciled and audited just now: the daemon has nothing due for a
    // day but the deleted/DMCA polls.
    let now = vidsync::clock::now_ms();
    store.set_reconcile_last_poll(now).expect("poll time");
    store.set_reconcile_last_audit(now).expect("audit time");
    drop(store);
    println!(
        "{files} files made and recorded in {:.0} s",
        made.elapsed().as_secs_f64()
    );

    let mut child = std::process::Command::new(binary())
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(std::process::Stdio::null())
        // VIDSYNC_BENCH_IDLE_LOG=FILE keeps the daemon's log (with RUST_LOG).
        .stderr(match std::env::var_os("VIDSYNC_BENCH_IDLE_LOG") {
            Some(f) => std::process::Stdio::from(std::fs::File::create(f).expect("log file")),
            None => std::process::Stdio::null(),
        })
        .spawn()
        .expect("start vidsync run");
    let pid = child.id();
    // Start-up: the first walk of the library, the key check, reconcile.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let start_cpu = cpu_secs(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let used = cpu_secs(pid) - start_cpu;
    let wall = t0.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    let per_10_min = used * 600.0 / wall;
    println!(
        "idle daemon, {files} files tracked: {used:.2} s CPU in {wall:.0} s = {per_10_min:.3} s per 10 minutes (start-up {start_cpu:.2} s); target 0.1 s; ratio {:.2}",
        per_10_min / 0.1
    );
}
