//! What the completeness checks (issue 14) cost a scan: a library of 5,000
//! settled videos is applied to the store with `[watch] verify = "structure"`
//! and with `verify = "off"`, side by side in one run, and the ratio of the
//! two times is printed. Run: `cargo bench --bench settle_checks` (or
//! `bench/run`). No network: the context is built, never asked to call.

use std::path::Path;
use std::time::{Duration, Instant};

use vidsync::config::Config;
use vidsync::context::Context;

mod common;

const FILES: usize = 5_000;
const ROUNDS: usize = 15;

fn library(dir: &Path) {
    for i in 0..FILES {
        let sub = dir.join(format!("Show {}", i / 100));
        std::fs::create_dir_all(&sub).expect("mkdir");
        std::fs::write(
            sub.join(format!("ep{i}.mp4")),
            common::mp4(i as u64, 16 * 1024),
        )
        .expect("write");
    }
}

fn config(media: &Path, state: &Path, verify: &str) -> Config {
    let text = format!(
        "[api]\nurl = \"http://127.0.0.1:9\"\nkey = \"benchkey0000000000\"\n\
         [state]\ndatabase = \"{}\"\n\
         [watch]\nsettle = \"0s\"\nverify = \"{verify}\"\n\
         [[sync]]\nlocal = \"{}\"\nremote = \"Bench\"\n",
        state.join("state.db").display(),
        media.display()
    );
    let path = state.join("config.toml");
    std::fs::write(&path, &text).expect("write config");
    Config::parse_str(&text, &path, &|_: &str| None).expect("config")
}

/// One timed pass that settles every file of a fresh database: the first
/// walk records them (`waiting`), the second (timed) queues them, checking
/// each first when `verify = "structure"`.
async fn settle_pass(media: &Path, verify: &str) -> Duration {
    let state = tempfile::tempdir().expect("tempdir");
    let cfg = config(media, state.path(), verify);
    let (ctx, _hints) = Context::new(cfg).expect("context");
    let writers = vidsync::scan::Writers::default();
    let root = &ctx.roots[0];
    vidsync::scan::scan_root(&ctx, &writers, root)
        .await
        .expect("walk");
    let t = Instant::now();
    let r = vidsync::scan::scan_root(&ctx, &writers, root)
        .await
        .expect("walk");
    let took = t.elapsed();
    assert_eq!(
        r.queued, FILES,
        "every file settles in the timed pass ({verify})"
    );
    took
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let media = tempfile::tempdir().expect("tempdir");
    library(media.path());
    let media = std::fs::canonicalize(media.path()).expect("canonical");
    let mut on = Vec::new();
    let mut off = Vec::new();
    let rounds = if std::env::var_os("SETTLE_CHECKS_PROFILE").is_some() {
        0
    } else {
        ROUNDS
    };
    rt.block_on(async {
        for _ in 0..rounds {
            // Interleaved, so that a slower moment of the machine hits both.
            off.push(settle_pass(&media, "off").await);
            on.push(settle_pass(&media, "structure").await);
        }
    });
    // The checks alone, over the same files: one /proc sweep and the
    // facts of each file.
    let files: Vec<(std::path::PathBuf, u64)> = (0..FILES)
        .map(|i| {
            let p = media
                .join(format!("Show {}", i / 100))
                .join(format!("ep{i}.mp4"));
            let size = std::fs::metadata(&p).expect("stat").len();
            (p, size)
        })
        .collect();
    if std::env::var_os("SETTLE_CHECKS_PROFILE").is_some() {
        // For a profiler: the checks alone, many times.
        for _ in 0..50 {
            for (p, size) in &files {
                let _ = vidsync::scan::evidence::facts(p, *size, Vec::new());
            }
        }
        return;
    }
    let t = Instant::now();
    let set: std::collections::HashSet<_> = files.iter().map(|(p, _)| p.clone()).collect();
    let writers = vidsync::scan::evidence::writers_of(&set);
    let sweep = t.elapsed();
    for (p, size) in &files {
        let f = vidsync::scan::evidence::facts(p, *size, Vec::new()).expect("facts");
        assert!(
            vidsync::engine::evidence::assess(&f).is_none(),
            "{p:?}: {f:?}"
        );
    }
    let checks = t.elapsed();
    assert!(writers.is_empty());
    println!(
        "checks alone over {FILES} files: {:.1} ms (of which the /proc sweep {:.1} ms)",
        checks.as_secs_f64() * 1000.0,
        sweep.as_secs_f64() * 1000.0
    );
    on.sort();
    off.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "settle pass over {FILES} files, {ROUNDS} rounds: verify=structure median {:.1} ms (min {:.1}), verify=off median {:.1} ms (min {:.1}); ratio of medians {:.3}, of minima {:.3}",
        ms(on[ROUNDS / 2]),
        ms(on[0]),
        ms(off[ROUNDS / 2]),
        ms(off[0]),
        ms(on[ROUNDS / 2]) / ms(off[ROUNDS / 2]),
        ms(on[0]) / ms(off[0]),
    );
}
