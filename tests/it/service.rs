//! `vidsync run` as a systemd service: sd_notify messages on NOTIFY_SOCKET
//! and a graceful SIGTERM, with the real binary as a child process.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vidsync_testhost::{Fault, Scope};

use crate::common;

/// A running `vidsync run`; killed on drop so that a failed assertion does
/// not leave a daemon behind.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, notify_socket: Option<&Path>, log: PathBuf) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vidsync"));
        cmd.arg("--config")
            .arg(config)
            .arg("run")
            .env("RUST_LOG", "vidsync=debug")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            // To a file, not a pipe: nobody reads a pipe while the test waits.
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(sock) = notify_socket {
            cmd.env("NOTIFY_SOCKET", sock);
        }
        Daemon {
            child: Some(cmd.spawn().expect("spawn vidsync run")),
            log,
        }
    }

    fn sigterm(&self) {
        self.signal("TERM");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -{name} {pid}");
    }

    /// Wait (off the runtime's threads) for the exit: its status and how long
    /// it took; None if it did not exit within `timeout` (then it is killed).
    async fn wait(&mut self, timeout: Duration) -> Option<(ExitStatus, Duration)> {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let waiting = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let st = child.wait().expect("wait");
            (st, t.elapsed())
        });
        match tokio::time::timeout(timeout, waiting).await {
            Ok(r) => Some(r.expect("wait task")),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                None
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A stand-in for systemd's notification socket. A thread reads it all the
/// time: sd_notify sends block once the socket's queue is full, and the
/// daemon pings the watchdog several times a second.
struct NotifySocket {
    path: PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
    done: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (m, d) = (messages.clone(), done.clone());
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            while !d.load(Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    m.lock().unwrap().extend(text.lines().map(str::to_string));
                }
            }
        });
        NotifySocket {
            path,
            messages,
            done,
            reader: Some(reader),
        }
    }

    fn has(&self, prefix: &str) -> bool {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.starts_with(prefix))
    }

    fn count(&self, message: &str) -> usize {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| *m == message)
            .count()
    }

    fn all(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sends_ready_status_watchdog_and_stopping_on_notify_socket() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(root.path(), "a.mp4", &common::content("a", 50_000));
    let (_, path) = common::config(&host, state.path(), &[(root.path(), "Notify")], "");
    let sock = NotifySocket::bind(state.path());

    let mut daemon = Daemon::start(&path, Some(&sock.path), state.path().join("run.log"));
    let seen = common::wait_for(Duration::from_secs(15), || {
        sock.has("READY=1") && sock.has("STATUS=") && sock.has("WATCHDOG=1")
    })
    .await;
    assert!(
        seen,
        "READY, STATUS and WATCHDOG within 15 s: {:?}\n{}",
        sock.all(),
        daemon.log()
    );
    let status = sock
        .all()
        .into_iter()
        .find(|m| m.starts_with("STATUS="))
        .unwrap();
    assert!(
        status.contains("uploading") || status.contains("idle"),
        "says what it is doing: {status}"
    );

    daemon.sigterm();
    let exit = daemon.wait(Duration::from_secs(10)).await;
    let log = daemon.log();
    let (st, _) = exit.unwrap_or_else(|| panic!("exits within 10 s after SIGTERM\n{log}"));
    assert_eq!(st.code(), Some(0), "clean stop: {log}");
    // Sent before the process exits; the reader may need a moment for it.
    let stopping = common::wait_for(Duration::from_secs(2), || sock.has("STOPPING=1")).await;
    assert!(stopping, "STOPPING=1 on SIGTERM: {:?}", sock.all());
    let all = sock.all();
    let ready_at = all.iter().position(|m| m == "READY=1").unwrap();
    let stop_at = all.iter().position(|m| m == "STOPPING=1").unwrap();
    assert!(ready_at < stop_at, "READY before STOPPING: {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_upload_stops_promptly_and_a_restart_completes_it_once() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let content = common::content("term", 4 * 1024 * 1024);
    common::write(root.path(), "big.mp4", &content);
    let (_, path) = common::config(&host, state.path(), &[(root.path(), "Term")], "");
    // About 4 s for the upload: the SIGTERM lands in the middle of it.
    host.faults().always(
        Fault::SlowRead {
            bytes_per_sec: 1024 * 1024,
        },
        Scope::Upload,
    );

    let mut daemon = Daemon::start(&path, None, state.path().join("run1.log"));
    let started = common::wait_for(Duration::from_secs(20), || host.uploads_started() > 0).await;
    assert!(started, "the upload started: {}", daemon.log());
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.sigterm();
    let exit = daemon.wait(Duration::from_secs(10)).await;
    let log = daemon.log();
    let (st, took) = exit.unwrap_or_else(|| panic!("exits within 10 s after SIGTERM\n{log}"));
    assert_eq!(st.code(), Some(0), "clean stop: {log}");
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");
    // Cut in the middle (nothing stored) or, at most, finished whole.
    for f in host.files() {
        assert_eq!(f.size, content.len() as u64, "no partial file: {f:?}");
    }

    host.faults().clear();
    let mut daemon = Daemon::start(&path, None, state.path().join("run2.log"));
    let done = common::wait_for(Duration::from_secs(30), || {
        let files = host.files();
        files.len() == 1 && files[0].size == content.len() as u64
    })
    .await;
    // Give a duplicate, if any, the chance to appear before judging.
    tokio::time::sleep(Duration::from_millis(800)).await;
    daemon.sigterm();
    let exit = daemon.wait(Duration::from_secs(10)).await;
    let log = daemon.log();
    assert!(done, "uploaded after restart: {:?}\n{log}", host.files());
    let (st, _) = exit.unwrap_or_else(|| panic!("exits within 10 s after SIGTERM\n{log}"));
    assert_eq!(st.code(), Some(0), "clean stop: {log}");
    let files = host.files();
    assert_eq!(files.len(), 1, "exactly one copy: {files:?}");
    assert_eq!(host.file_bytes(&files[0].code).unwrap(), content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_reload_is_not_a_stop_for_systemd() {
    let host = common::host().await;
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (_, path) = common::config(&host, state.path(), &[(a.path(), "A")], "");
    let sock = NotifySocket::bind(state.path());
    let mut daemon = Daemon::start(&path, Some(&sock.path), state.path().join("run.log"));
    assert!(
        common::wait_for(Duration::from_secs(15), || sock.has("READY=1")).await,
        "ready: {:?}\n{}",
        sock.all(),
        daemon.log()
    );

    // A changed config: the daemon restarts its tasks in-process. systemd
    // must not hear STOPPING=1 (it would wait for the process to exit, then
    // call the unit stopped); READY=1 comes again when the new run starts.
    common::config(&host, state.path(), &[(a.path(), "A"), (b.path(), "B")], "");
    daemon.signal("HUP");
    let again = common::wait_for(Duration::from_secs(15), || sock.count("READY=1") >= 2).await;
    assert!(
        again,
        "ready again after the reload: {:?}\n{}",
        sock.all(),
        daemon.log()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !sock.has("STOPPING=1"),
        "no STOPPING=1 on reload: {:?}",
        sock.all()
    );

    daemon.sigterm();
    let exit = daemon.wait(Duration::from_secs(10)).await;
    let log = daemon.log();
    let (st, _) = exit.unwrap_or_else(|| panic!("exits within 10 s after SIGTERM\n{log}"));
    assert_eq!(st.code(), Some(0), "clean stop: {log}");
    assert!(
        common::wait_for(Duration::from_secs(2), || sock.count("STOPPING=1") == 1).await,
        "one STOPPING=1 on SIGTERM: {:?}",
        sock.all()
    );
}
