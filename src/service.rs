//! Process-level glue for the commands: logging, signals, exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::api::{Client, ErrorClass, StorageLeft};
use crate::config::{Config, LogConfig, LogFormat};
use crate::daemon::{self, RunError};

/// Swaps the log filter of the running subscriber (a SIGHUP with a new
/// `[log] level`).
type FilterReload = Box<dyn Fn(tracing_subscriber::EnvFilter) -> Result<(), String> + Send + Sync>;
static FILTER_RELOAD: std::sync::OnceLock<FilterReload> = std::sync::OnceLock::new();

/// Set up `tracing`: level from `RUST_LOG` or the config, colours only on a
/// terminal (journald shows escape codes as garbage), JSON when asked.
/// stderr for the log, one record per line whatever the record holds: a
/// line break inside a record (a file named `evil.mp4` + newline + a fake
/// log line, a host message) is written as `\n`, so nothing a file name or
/// a host says can stand as a line of its own in the text log or the
/// journal. (The fmt layer writes each record with one `write_all`, its
/// own line break last.) JSON escapes by itself.
struct OneLine;

impl std::io::Write for OneLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        let mut out = Vec::with_capacity(buf.len() + 8);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                _ => out.push(b),
            }
        }
        out.extend_from_slice(end);
        std::io::stderr().lock().write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

pub fn init_logging(log: &LogConfig, quiet: bool) {
    let default = if quiet { "warn" } else { log.level.as_str() };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_writer(|| OneLine)
        .with_ansi(ansi);
    match log.format {
        LogFormat::Json => {
            let builder = builder
                .json()
                .with_env_filter(filter)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            if builder.try_init().is_ok() {
                let _ = FILTER_RELOAD.set(Box::new(move |f| {
                    handle.reload(f).map_err(|e| e.to_string())
                }));
            }
        }
        LogFormat::Text => {
            let builder = builder.with_env_filter(filter).with_filter_reloading();
            let handle = builder.reload_handle();
            if builder.try_init().is_ok() {
                let _ = FILTER_RELOAD.set(Box::new(move |f| {
                    handle.reload(f).map_err(|e| e.to_string())
                }));
            }
        }
    }
}

/// Apply a reloaded `[log]` section: the level takes effect at once (unless
/// `RUST_LOG` overrides it); the format is chosen at start only.
fn reload_logging(old: &LogConfig, new: &LogConfig) {
    if old.format != new.format {
        tracing::warn!("SIGHUP: log.format changes apply at the next start");
    }
    if old.level == new.level || std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    let Some(reload) = FILTER_RELOAD.get() else {
        return;
    };
    match tracing_subscriber::EnvFilter::try_new(&new.level) {
        Ok(f) => match reload(f) {
            Ok(()) => tracing::info!(level = %new.level, "SIGHUP: log level changed"),
            Err(e) => tracing::warn!(error = %e, "SIGHUP: cannot change the log level"),
        },
        Err(e) => tracing::warn!(error = %e, "SIGHUP: bad log level"),
    }
}

/// SIGTERM/SIGINT cancel `stop` (a graceful stop); a second SIGINT exits at
/// once; SIGHUP is forwarded on `hup`. Signals are read on a plain thread by
/// signal-hook's iterator (async-signal-safe) and forwarded to the runtime.
fn install_signals(stop: CancellationToken, hup: Option<tokio::sync::mpsc::UnboundedSender<()>>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                match sig {
                    SIGHUP => match &hup {
                        Some(tx) => {
                            let _ = tx.send(());
                        }
                        None => tracing::info!("SIGHUP ignored: this command does not reload"),
                    },
                    SIGINT if stop.is_cancelled() => {
                        eprintln!("vidsync: second interrupt, exiting now");
                        // 1 = "otherwise" in the documented exit codes; what
                        // was in flight resumes (after a search) next time.
                        std::process::exit(1);
                    }
                    _ => {
                        tracing::info!(signal = sig, "stop requested");
                        // Here, not in `daemon::run`: a SIGHUP reload also
                        // stops `run` (to start it again), and STOPPING=1
                        // would make systemd wait for the process to exit.
                        crate::sdnotify::stopping();
                        stop.cancel();
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the signal thread");
    }
}

/// A reload must not trade a working key for one the host refuses (with
/// one host the daemon would stop with exit 3 and systemd would not restart
/// it; with several, that host's copies would stop). Every host whose key
/// or URL the new config changes (or adds) is asked; the first that
/// refuses is named. Only a definite refusal counts: a host that cannot be
/// reached is no reason to keep an old configuration.
async fn new_key_refused(old: &Config, new: &Config) -> Option<String> {
    for h in &new.hosts {
        let same = old
            .hosts
            .iter()
            .any(|o| o.name == h.name && o.api.key == h.api.key && o.api.url == h.api.url);
        if same {
            continue;
        }
        if let Ok(c) = Client::new(&h.api)
            && matches!(c.account_info().await, Err(e) if e.class() == ErrorClass::KeyRejected)
        {
            return Some(h.name.clone());
        }
    }
    None
}

/// Read the config file again for a reload; the caller keeps the old one
/// when this fails.
fn reload(current: &Config) -> Result<Config, String> {
    let Some(path) = &current.source else {
        return Err("the configuration was not read from a file".into());
    };
    Config::load(path).map_err(|e| e.to_string())
}

fn exit_for(e: &RunError) -> ExitCode {
    tracing::error!(error = %e, "vidsync stopped");
    eprintln!("vidsync: {e}");
    ExitCode::from(e.exit_code() as u8)
}

/// A reload that moves the metrics listener to an address that cannot be
/// bound (taken by another program, not this machine's) would end the new
/// run at its start, and the service with it: try the address first. (The
/// same address is released by the old run and bound again by the new.)
fn metrics_unbindable(old: &Config, new: &Config) -> Option<String> {
    let addr = new.metrics.listen?;
    if old.metrics.listen == Some(addr) || addr.port() == 0 {
        return None;
    }
    std::net::TcpListener::bind(addr)
        .err()
        .map(|e| format!("{addr}: {e}"))
}

/// `vidsync run`: the daemon, restarted in-process with the new config on
/// SIGHUP. A restart stops every task and starts them again: added sync
/// entries start, removed ones stop (their records stay), changed settings
/// apply. An upload in flight is cancelled and resumes (after a search of
/// the host) under the new config. A config that does not validate is
/// refused with a log line and the old one keeps running.
pub async fn run_service(config: Config) -> ExitCode {
    let stop = CancellationToken::new();
    let (hup_tx, mut hup_rx) = tokio::sync::mpsc::unbounded_channel();
    install_signals(stop.clone(), Some(hup_tx));
    let mut config = config;
    loop {
        let inner = stop.child_token();
        let mut task = tokio::spawn(daemon::run(config.clone(), inner.clone()));
        loop {
            tokio::select! {
                res = &mut task => {
                    return match res {
                        Ok(Ok(())) => ExitCode::SUCCESS,
                        Ok(Err(e)) => exit_for(&e),
                        Err(e) => {
                            tracing::error!(error = %e, "the daemon task failed");
                            ExitCode::from(1)
                        }
                    };
                }
                Some(()) = hup_rx.recv() => match reload(&config) {
                    Ok(new) if new == config => tracing::info!("SIGHUP: configuration unchanged"),
                    Ok(new) if let Some(host) = new_key_refused(&config, &new).await => {
                        tracing::error!(host = %host, "SIGHUP: the host rejects the new configuration's API key; keeping the old one");
                    }
                    Ok(new) if let Some(e) = metrics_unbindable(&config, &new) => {
                        // The new run would stop at start: keep the old one.
                        tracing::error!(error = %e, "SIGHUP: cannot listen for metrics at the new address; keeping the old configuration");
                    }
                    Ok(new) => {
                        reload_logging(&config.log, &new.log);
                        tracing::info!(syncs = new.syncs.len(), "SIGHUP: configuration reloaded; restarting the workers");
                        crate::sdnotify::reloading();
                        inner.cancel();
                        match task.await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return exit_for(&e),
                            Err(e) => {
                                tracing::error!(error = %e, "the daemon task failed");
                                return ExitCode::from(1);
                            }
                        }
                        if stop.is_cancelled() {
                            // A stop arrived during the reload: stop.
                            return ExitCode::SUCCESS;
                        }
                        config = new;
                        break;
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: the new configuration is invalid; keeping the old one"),
                },
            }
        }
    }
}

/// Progress bars for `scan` on a terminal: one for the pass (files done of
/// files to do), one per upload in flight. Read from the store (the same
/// rows `status` reads), so they show exactly what is recorded.
async fn scan_bars(db: std::path::PathBuf, done: CancellationToken) {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let Ok(store) = crate::store::Store::open(&db) else {
        return;
    };
    let multi = MultiProgress::new();
    let overall = multi.add(ProgressBar::new(0));
    overall.set_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} files {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    overall.set_prefix("scan");
    let file_style = ProgressStyle::with_template(
        "{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut bars: std::collections::HashMap<i64, ProgressBar> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Ok(counts) = store.counts() {
            let n = |s: crate::store::State| {
                counts.iter().find(|(x, _)| *x == s).map_or(0, |(_, n)| *n)
            };
            use crate::store::State::*;
            let finished = n(Uploaded) + n(Failed);
            overall.set_length(finished + n(Waiting) + n(Queued) + n(Uploading));
            overall.set_position(finished);
            overall.set_message(format!("({} settling, {} failed)", n(Waiting), n(Failed)));
        }
        let Ok(progress) = store.progress() else {
            continue;
        };
        bars.retain(|id, bar| {
            let keep = progress.iter().any(|p| p.file_id == *id);
            if !keep {
                bar.finish_and_clear();
            }
            keep
        });
        for p in progress {
            let bar = bars.entry(p.file_id).or_insert_with(|| {
                let b = multi.add(ProgressBar::new(p.total));
                b.set_style(file_style.clone());
                b.set_prefix("upload");
                b.set_message(
                    p.path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
                b
            });
            bar.set_position(p.sent);
        }
    }
    for b in bars.values() {
        b.finish_and_clear();
    }
    overall.finish();
}

/// `vidsync scan`: progress bars on a terminal, log lines otherwise.
pub async fn run_scan(config: Config) -> ExitCode {
    let stop = CancellationToken::new();
    install_signals(stop.clone(), None);
    let bars_done = CancellationToken::new();
    let bars = std::io::stdout()
        .is_terminal()
        .then(|| tokio::spawn(scan_bars(config.state.database.clone(), bars_done.clone())));
    let result = daemon::scan_once(config, stop).await;
    bars_done.cancel();
    if let Some(b) = bars {
        let _ = b.await;
    }
    match result {
        Ok(summary) => {
            let counts: Vec<String> = summary
                .counts
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(s, n)| format!("{s}: {n}"))
                .collect();
            println!(
                "scan done; {}",
                if counts.is_empty() {
                    "no files".into()
                } else {
                    counts.join(", ")
                }
            );
            for (path, err) in &summary.failed {
                println!("failed: {}: {err}", path.display());
            }
            for (path, why) in &summary.incomplete {
                println!(
                    "not uploaded, not complete yet: {}: {why} (`vidsync retry PATH` uploads it anyway)",
                    path.display()
                );
            }
            if summary.interrupted {
                println!("scan interrupted; the rest resumes with the next run or scan");
                return ExitCode::from(1);
            }
            if summary.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => exit_for(&e),
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `vidsync check`: the config is valid (we got here), then each host's key.
/// The exit code is the worst of the hosts': 3 if a key is rejected, 1 if a
/// host cannot be reached.
pub async fn check(config: &Config) -> ExitCode {
    let several = config.hosts.len() > 1;
    if several {
        println!(
            "config: ok ({} sync entr{}, {} hosts)",
            config.syncs.len(),
            if config.syncs.len() == 1 { "y" } else { "ies" },
            config.hosts.len()
        );
    } else {
        println!(
            "config: ok ({} sync entr{}, key from {})",
            config.syncs.len(),
            if config.syncs.len() == 1 { "y" } else { "ies" },
            config.key_source
        );
    }
    let mut worst = 0u8;
    for h in &config.hosts {
        if several {
            println!("host {} (key from {}):", h.name, h.key_source);
        }
        let code = check_host(
            h,
            if several {
                format!("{}: ", h.name)
            } else {
                String::new()
            },
        )
        .await;
        // 3 (the key) outranks 1 (unreachable).
        if code == 3 || (code == 1 && worst == 0) {
            worst = code;
        }
    }
    ExitCode::from(worst)
}

/// One host of `check`: its account, or why not; the exit code.
async fn check_host(h: &crate::config::HostEntry, label: String) -> u8 {
    let client = match Client::new(&h.api) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vidsync: {label}{e}");
            return 1;
        }
    };
    match client.account_info().await {
        Ok(info) => {
            let left = match info.storage_left {
                StorageLeft::Bytes(b) if b < 0 => format!(
                    "-{} (OVER QUOTA: uploads wait until space is freed)",
                    human_bytes(b.unsigned_abs())
                ),
                StorageLeft::Bytes(b) => human_bytes(b.unsigned_abs()),
                StorageLeft::Unlimited => "unlimited".into(),
            };
            println!("host: {}", h.api.url);
            println!(
                "account: {} ({})",
                info.login,
                if info.premium { "premium" } else { "free" }
            );
            println!("files: {}", info.files_total);
            // Reported as the host gives it: in KB on the documented
            // deployment, but hosts differ, so no unit is guessed.
            println!(
                "storage used: {} (as the host reports it; KB on most hosts)",
                info.storage_used
            );
            println!("storage left: {left}");
            0
        }
        Err(e) if e.class() == ErrorClass::KeyRejected => {
            eprintln!("vidsync: {label}{e}; the key came from {}", h.key_source);
            3
        }
        Err(e) => {
            eprintln!("vidsync: {label}cannot reach the host: {e}");
            1
        }
    }
}

/// `vidsync reconcile [--force]`.
pub async fn reconcile(config: Config, force: bool) -> ExitCode {
    match daemon::reconcile_once(config, force).await {
        Ok(reports) => {
            let several = reports.len() > 1;
            let mut blocked = false;
            for (host, r) in &reports {
                if several {
                    println!("host {host}:");
                }
                print_reconcile(r);
                blocked |= r.blocked;
            }
            if blocked {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => exit_for(&e),
    }
}

fn print_reconcile(r: &crate::reconcile::Report) {
    {
        {
            println!("reconcile (window {} h): {}", r.window_hours, r.summary());
            for c in &r.deleted {
                println!(
                    "deleted on the host: {c}{}",
                    if r.reupload.contains(c) {
                        " (queued to upload again)"
                    } else {
                        ""
                    }
                );
            }
            for c in &r.dmca {
                println!("DMCA deletion scheduled: {c}");
            }
        }
    }
}
