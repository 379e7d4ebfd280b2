//! Notifications against local receivers on loopback: the exact request of
//! each kind of target for a real burst of DMCA takedowns from the test
//! host, retries after a receiver was down, giving up, `notify-test`'s exit
//! codes, and no secret in any payload, output or log line.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use vidsync::clock::now_ms;
use vidsync::context::Context;
use vidsync::store::{EventKind, Notice, State, Store};

use crate::common;

/// One request as the receiver read it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    /// Everything but the request line's path (where a webhook or bot
    /// token belongs).
    fn payload_text(&self) -> String {
        format!("{:?}\n{}", self.headers, self.body)
    }
}

type Log = Arc<Mutex<Vec<Req>>>;
type Reply = Arc<dyn Fn(&Req) -> (u16, String) + Send + Sync>;

fn ok() -> Reply {
    Arc::new(|_| (200, "{\"ok\":true}".into()))
}

/// A receiver: one request per connection, each recorded whole.
fn serve(listener: tokio::net::TcpListener, reply: Reply) -> Log {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let log: Log = Arc::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (log, reply) = (log2.clone(), reply.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 8192];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut lines = head.lines();
                let first: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let req = Req {
                    method: first.first().unwrap_or(&"").to_string(),
                    path: first.get(1).unwrap_or(&"").to_string(),
                    headers,
                    body: String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned(),
                };
                let (status, body) = reply(&req);
                log.lock().unwrap().push(req);
                let out = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(out.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    log
}

async fn receiver(reply: Reply) -> (u16, Log) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (port, serve(l, reply))
}

fn reqs(log: &Log) -> Vec<Req> {
    log.lock().unwrap().clone()
}

const TG_TOKEN: &str = "123456:TELEGRAMs3cret";

/// The four kinds of target, all on the receiver at `port`.
fn four_targets(port: u16, extra: &str) -> String {
    format!(
        r#"
[[notify]]
kind = "webhook"
url = "http://127.0.0.1:{port}/hook/whs3cret"
{extra}
[[notify]]
kind = "ntfy"
url = "http://127.0.0.1:{port}/vidsync-topic"
{extra}
[[notify]]
kind = "discord"
url = "http://127.0.0.1:{port}/api/webhooks/1/dcs3cret"
{extra}
[[notify]]
kind = "telegram"
url = "http://127.0.0.1:{port}"
token = "{TG_TOKEN}"
chat_id = -100123
{extra}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_20_dmca_takedowns_is_one_message_of_each_kinds_shape() {
    let host = common::host().await;
    let media = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    for i in 0..20 {
        common::write(
            media.path(),
            &format!("v{i:02}.mp4"),
            &common::content(&format!("v{i}"), 800),
        );
    }
    let (port, log) = receiver(ok()).await;
    let extra = format!(
        // The guard would hold back a pass where every file goes: not this one.
        "[reconcile]\ninterval = \"300ms\"\nmax_delete_fraction = 1.0\n{}",
        four_targets(port, "group_wait = \"1s\"\nmin_interval = \"100ms\"\n")
    );
    let (cfg, _) = common::config(&host, state.path(), &[(media.path(), "M")], &extra);
    let s = common::scan(&cfg).await;
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    let rows = Store::open(&cfg.state.database)
        .unwrap()
        .list(None)
        .unwrap();
    let mut codes: Vec<String> = rows.iter().filter_map(|r| r.file_code.clone()).collect();
    codes.sort();
    assert_eq!(codes.len(), 20);
    for c in &codes {
        assert!(host.schedule_dmca(c, Duration::from_secs(3600)));
    }

    let stop = CancellationToken::new();
    let daemon = tokio::spawn(vidsync::daemon::run(cfg.clone(), stop.clone()));
    let told = common::wait_for(Duration::from_secs(9), || reqs(&log).len() >= 4).await;
    // Anything more (a second message for the same burst) would come
    // within a group_wait.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = reqs(&log);
    let status = vidsync::report::status_json(&Store::open(&cfg.state.database).unwrap()).unwrap();
    stop.cancel();
    let _ = daemon.await;
    assert!(told, "four messages: {all:#?}");
    assert_eq!(
        all.len(),
        4,
        "one message per target for the burst: {all:#?}"
    );
    let dmca_rows = common::row_states(&cfg)
        .iter()
        .filter(|r| r.1 == State::Dmca)
        .count();
    assert_eq!(dmca_rows, 20);
    let by_path = |p: &str| {
        all.iter()
            .find(|r| r.path == p)
            .unwrap_or_else(|| panic!("no request to {p}: {all:#?}"))
            .clone()
    };
    let title = "20 files taken down for DMCA";

    let hook = by_path("/hook/whs3cret");
    assert_eq!(hook.method, "POST");
    assert_eq!(hook.header("content-type"), Some("application/json"));
    let v = hook.json();
    assert_eq!(v["version"], 1);
    assert_eq!(v["source"], "vidsync");
    assert_eq!(v["event"], "dmca");
    assert_eq!(v["title"], title);
    assert_eq!(v["count"], 20);
    let mut got: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, codes);
    assert!(v["items"][0]["path"].as_str().unwrap().ends_with(".mp4"));
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{title}:\n"))
    );

    let ntfy = by_path("/vidsync-topic");
    assert_eq!(ntfy.header("title"), Some(title));
    assert_eq!(ntfy.header("priority"), Some("4"));
    assert_eq!(ntfy.header("tags"), Some("rotating_light,dmca"));
    assert_eq!(ntfy.body.lines().count(), 20, "{}", ntfy.body);
    assert!(codes.iter().all(|c| ntfy.body.contains(c.as_str())));

    let discord = by_path("/api/webhooks/1/dcs3cret");
    let v = discord.json();
    assert_eq!(v["username"], "vidsync");
    assert_eq!(v["allowed_mentions"]["parse"], serde_json::json!([]));
    let embed = &v["embeds"][0];
    assert_eq!(embed["title"], title);
    assert_eq!(embed["color"], 0xD03030);
    assert_eq!(embed["footer"]["text"], "vidsync · dmca");
    assert_eq!(embed["description"].as_str().unwrap().lines().count(), 20);
    assert!(humantime::parse_rfc3339(embed["timestamp"].as_str().unwrap()).is_ok());

    let tg = by_path(&format!("/bot{TG_TOKEN}/sendMessage"));
    let v = tg.json();
    assert_eq!(v["chat_id"], -100123);
    assert_eq!(v["disable_web_page_preview"], true);
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{title}:\n"))
    );

    // No secret in any payload: the API key, the bot token, the webhook
    // tokens of the URLs; nor in `status`.
    for r in &all {
        for secret in [host.key().as_str(), TG_TOKEN, "whs3cret", "dcs3cret"] {
            assert!(!r.payload_text().contains(secret), "{secret} in {r:#?}");
        }
    }
    let status = status.to_string();
    for secret in [host.key().as_str(), TG_TOKEN, "whs3cret", "dcs3cret"] {
        assert!(!status.contains(secret), "{secret} in status {status}");
    }
    let targets = serde_json::from_str::<Value>(&status).unwrap()["notify"].clone();
    assert_eq!(targets.as_array().unwrap().len(), 4, "{targets}");
    assert!(targets.as_array().unwrap().iter().all(|t| t["ok"] == true));
}

/// Log lines, captured for the test's thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// Current-thread: every task of the notifier runs on this thread, where the
// log capture is installed.
#[tokio::test]
async fn a_receiver_that_was_down_gets_the_message_and_a_refusal_is_given_up_once() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let host = common::host().await;
    let media = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (down, down_port) = common::refused_port();
    let refusing: Reply = Arc::new(|_| (400, "{\"error\":\"no such hook\"}".into()));
    let (bad_port, bad_log) = receiver(refusing).await;
    let extra = format!(
        r#"
[[notify]]
kind = "webhook"
url = "http://127.0.0.1:{down_port}/hook/PATHs3cret?token=QUERYs3cret"
group_wait = "0s"
min_interval = "100ms"

[[notify]]
kind = "webhook"
url = "http://127.0.0.1:{bad_port}/gone/BADs3cret"
group_wait = "0s"
min_interval = "100ms"
"#
    );
    let (cfg, _) = common::config(&host, state.path(), &[(media.path(), "M")], &extra);
    let (ctx, _hints) = Context::new(cfg.clone()).unwrap();
    let ctx = Arc::new(ctx);
    let dmca = Notice::file(EventKind::Dmca, "/m/a.mp4", Some("abc123def456"), None);
    assert!(ctx.store.notice(&dmca, now_ms()));
    assert!(!ctx.store.notice(&dmca, now_ms()), "once per kind and file");
    let stop = CancellationToken::new();
    let task = tokio::spawn(vidsync::notify::task(ctx.clone(), stop.clone()));

    let health = |label: &str| {
        ctx.store
            .notify_health()
            .unwrap()
            .into_iter()
            .find(|h| h.label.starts_with(label))
            .unwrap_or_default()
    };
    let failing = common::wait_for(Duration::from_secs(5), || {
        let h = health("#1");
        h.failing_since.is_some() && h.pending == 1
    })
    .await;
    assert!(failing, "{:?}", health("#1"));
    let gave_up = common::wait_for(Duration::from_secs(5), || health("#2").gave_up == 1).await;
    assert!(gave_up, "{:?}", health("#2"));

    // The receiver comes up on the port that refused.
    let up = serve(down.listen(16).unwrap(), ok());
    let told = common::wait_for(Duration::from_secs(8), || {
        reqs(&up).len() == 1 && health("#1").failing_since.is_none()
    })
    .await;
    assert!(told, "{:?} {:?}", reqs(&up), health("#1"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let _ = task.await;

    assert_eq!(reqs(&up).len(), 1, "told once");
    assert_eq!(reqs(&up)[0].json()["items"][0]["code"], "abc123def456");
    assert_eq!(
        reqs(&bad_log).len(),
        1,
        "a refused message is not sent again"
    );
    let h2 = health("#2");
    assert!(h2.failing_since.is_some());
    assert_eq!(
        h2.last_error.as_deref(),
        Some("HTTP 400: {\"error\":\"no such hook\"}")
    );

    let text = logs.text();
    assert_eq!(text.matches("giving up").count(), 1, "{text}");
    assert!(text.contains("retrying with backoff"), "{text}");
    for secret in [
        "PATHs3cret",
        "QUERYs3cret",
        "BADs3cret",
        host.key().as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} in the logs:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_exits_0_when_every_target_took_it_and_1_otherwise() {
    let host = common::host().await;
    let media = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (port, log) = receiver(ok()).await;
    let telegram_refuses: Reply = Arc::new(|r| {
        if r.path.contains("sendMessage") {
            (
                401,
                "{\"ok\":false,\"error_code\":401,\"description\":\"Unauthorized\"}".into(),
            )
        } else {
            (200, String::new())
        }
    });
    let (tg_port, _tg_log) = receiver(telegram_refuses).await;
    let run = |extra: String| {
        let (_, path) = common::config(&host, state.path(), &[(media.path(), "M")], &extra);
        tokio::task::spawn_blocking(move || {
            common::bin()
                .arg("--config")
                .arg(path)
                .arg("notify-test")
                .output()
                .unwrap()
        })
    };

    let out = run(four_targets(port, "")).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    assert!(stdout.contains("#1 webhook 127.0.0.1: ok"), "{stdout}");
    assert!(stdout.contains("#4 telegram 127.0.0.1: ok"), "{stdout}");
    let all = reqs(&log);
    assert_eq!(all.len(), 4);
    let hook = all
        .iter()
        .find(|r| r.path == "/hook/whs3cret")
        .unwrap()
        .json();
    assert_eq!(
        (hook["version"].clone(), hook["event"].clone()),
        (1.into(), "test".into())
    );

    let (_closed, closed_port) = common::refused_port();
    let extra = format!(
        r#"
[[notify]]
kind = "webhook"
url = "http://127.0.0.1:{port}/hook/whs3cret"

[[notify]]
kind = "ntfy"
url = "http://127.0.0.1:{closed_port}/topic"

[[notify]]
kind = "telegram"
url = "http://127.0.0.1:{tg_port}"
token = "{TG_TOKEN}"
chat_id = "@channel"
"#
    );
    let out = run(extra).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("#1 webhook 127.0.0.1: ok"), "{stdout}");
    assert!(stdout.contains("#2 ntfy 127.0.0.1: FAILED: "), "{stdout}");
    assert!(
        stdout.contains("#3 telegram 127.0.0.1: FAILED: HTTP 401: Unauthorized"),
        "{stdout}"
    );
    for secret in [TG_TOKEN, "whs3cret", host.key().as_str()] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret}: {stdout}{stderr}"
        );
    }

    // No target at all: nothing was tested.
    let out = run(String::new()).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
}
