//! `vidsync demo`: the built-in test host on loopback and a sample folder,
//! synced by the real daemon, so a new user sees it work without an account.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vidsync_testhost::{HostOptions, TestHost};

use crate::config::Config;
use crate::store::{State, Store};

/// Largest file the demo host accepts.
const DEMO_MAX_FILE: u64 = 256 * 1024 * 1024;

/// Small files with video extensions: the test host does not decode video,
/// so a few KiB of bytes are enough to show the whole flow.
const SAMPLES: &[&str] = &[
    "Movies/Big Buck Bunny (2008).mp4",
    "Movies/Sintel (2010).mkv",
    "Shows/Season 1/Episode 1.mp4",
    "Shows/Season 1/Episode 2.mp4",
    "Shows/Season 2/Episode 1.webm",
];

fn make_samples(dir: &Path) -> std::io::Result<()> {
    for (i, rel) in SAMPLES.iter().enumerate() {
        let p = dir.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        let bytes: Vec<u8> = (0..64 * 1024)
            .map(|n| ((n * 31 + i * 7) % 251) as u8)
            .collect();
        std::fs::write(p, bytes)?;
    }
    Ok(())
}

/// The demo's status line ("no files yet" before the first walk).
fn status_line(store: &Store) -> Option<String> {
    let counts = store.counts().ok()?;
    let shown: Vec<String> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    Some(format!(
        "  status: {}",
        if shown.is_empty() {
            "no files yet".into()
        } else {
            shown.join(", ")
        }
    ))
}

pub async fn run(folder: Option<PathBuf>) -> ExitCode {
    match demo(folder).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vidsync demo: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn demo(folder: Option<PathBuf>) -> anyhow::Result<()> {
    use anyhow::Context;
    let host = TestHost::start_with(HostOptions {
        encode_time: Duration::from_secs(3),
        // The demo host keeps what it receives in a temporary directory:
        // pointed at a real library, it must not fill the disk. Larger
        // files are refused ("file is too big"), which shows that path too.
        max_file_size: Some(DEMO_MAX_FILE),
        ..HostOptions::default()
    })
    .await
    .context("starting the built-in test host")?;
    let work = tempfile::Builder::new()
        .prefix("vidsync-demo-")
        .tempdir()
        .context("creating a work directory")?;
    let media = match folder {
        Some(f) => f,
        None => {
            let m = work.path().join("media");
            make_samples(&m).context("writing sample files")?;
            m
        }
    };
    // Quoted by toml itself: a folder name with `"` or `\` stays intact.
    let q = |s: String| toml::Value::String(s).to_string();
    let config_text = format!(
        "[api]\nurl = {}\nkey = {}\nrequests_per_minute = 600\n\n[state]\ndatabase = {}\n\n[watch]\nsettle = \"2s\"\n\n[upload]\nretry_min = \"2s\"\n\n[reconcile]\ninterval = \"5s\"\n\n[[sync]]\nlocal = {}\nremote = \"Demo\"\n",
        q(host.url()),
        q(host.key()),
        q(work.path().join("state.db").display().to_string()),
        q(media.display().to_string())
    );
    let config_path = work.path().join("config.toml");
    std::fs::write(&config_path, &config_text).context("writing the demo config")?;
    let env = |_: &str| None;
    let config =
        Config::parse_str(&config_text, &config_path, &env).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("vidsync demo");
    println!(
        "  test host:   {} (loopback, no account, nothing leaves this machine)",
        host.url()
    );
    println!("  watching:    {}", media.display());
    println!("  config used: {}", config_path.display());
    println!("Drop more video files (.mp4, .mkv, ...) into that folder and watch them upload.");
    println!(
        "The demo host refuses files over {} MiB. Ctrl-C ends the demo.\n",
        DEMO_MAX_FILE / (1024 * 1024)
    );

    let store = Store::open(&config.state.database).context("opening the demo database")?;
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(crate::daemon::run(config.clone(), stop.clone()));
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // On a terminal the line is shown every tick (a live view); into a file
    // or a pipe only when it changed, so a log of the demo is not a wall of
    // identical lines.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                if let Some(line) = status_line(&store)
                    && (terminal || line != last)
                {
                    println!("{line}");
                    last = line;
                }
            }
        }
        if daemon.is_finished() {
            break;
        }
    }
    stop.cancel();
    match daemon.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => anyhow::bail!("the daemon stopped: {e}"),
        Err(e) => anyhow::bail!("the daemon task failed: {e}"),
    }
    println!("\nWhat happened:");
    for f in store.list(None).context("reading the demo database")? {
        println!(
            "  {:<9} {:<13} {}",
            f.state.as_str(),
            f.file_code.as_deref().unwrap_or("-"),
            f.rel_path
        );
    }
    let up = store
        .list(Some(State::Uploaded))
        .map(|v| v.len())
        .unwrap_or(0);
    println!(
        "{up} file(s) uploaded; the test host holds {} file(s) in {} folder(s).",
        host.files().len(),
        host.folders().len()
    );
    Ok(())
}
