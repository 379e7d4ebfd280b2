//! The request each kind of target gets for a message (pure: `request`),
//! and sending it (`deliver`). Errors never carry the URL (webhook tokens
//! live in it) or a bot token.

use std::time::Duration;

use serde_json::json;

use crate::config::{NotifyKind, NotifyTarget};
use crate::store::EventKind;

use super::message::Message;

/// The version of the webhook payload (docs/notify.md). A change that
/// removes or renames a key is a new version; keys may be added.
pub const WEBHOOK_VERSION: u32 = 1;

/// Discord's limits on an embed (characters).
const DISCORD_TITLE_MAX: usize = 256;
const DISCORD_DESCRIPTION_MAX: usize = 4096;
/// Telegram's limit on a message (characters).
const TELEGRAM_TEXT_MAX: usize = 4096;

/// One HTTP POST, built without I/O.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub url: url::Url,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Why a send failed: the words (scrubbed), and what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub message: String,
    /// The receiver said when to come back (HTTP 429 Retry-After).
    pub retry_after: Option<Duration>,
    /// Trying this message again cannot help (the receiver refused it).
    pub permanent: bool,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// ntfy priority (1 min .. 5 max) and tags (emoji short codes, then the
/// event's name) by event.
fn ntfy_style(kind: EventKind) -> (&'static str, &'static str) {
    match kind {
        EventKind::Dmca | EventKind::KeyRejected | EventKind::MassDeleteHeld => {
            ("4", "rotating_light")
        }
        EventKind::OverQuota
        | EventKind::Failed
        | EventKind::RemoteDeleted
        | EventKind::DailyLimit
        | EventKind::Incomplete => ("3", "warning"),
        EventKind::KeyOkAgain | EventKind::UploadDone => ("2", "white_check_mark"),
        EventKind::DailySummary => ("2", "bar_chart"),
        EventKind::Test => ("2", "bell"),
    }
}

/// Discord embed colours: red for what needs the owner, amber for
/// warnings, green for good news, blue otherwise.
fn discord_color(kind: EventKind) -> u32 {
    match ntfy_style(kind).0 {
        "4" => 0xD0_30_30,
        "3" => 0xE0_A0_20,
        _ if matches!(kind, EventKind::KeyOkAgain | EventKind::UploadDone) => 0x30_A0_50,
        _ => 0x30_70_D0,
    }
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The webhook payload, version 1 (docs/notify.md).
pub fn webhook_payload(msg: &Message) -> serde_json::Value {
    let items: Vec<_> = msg
        .items
        .iter()
        .map(|n| json!({"path": n.path, "code": n.code, "detail": n.detail, "at": n.at, "host": n.host}))
        .collect();
    json!({
        "version": WEBHOOK_VERSION,
        "source": "vidsync",
        "event": msg.kind.as_str(),
        "title": msg.title,
        "text": msg.text(),
        "count": msg.items.len(),
        "at": msg.at,
        "items": items,
    })
}

pub fn request(target: &NotifyTarget, msg: &Message) -> Request {
    let json_body = |v: serde_json::Value| v.to_string().into_bytes();
    let json_type = ("Content-Type", "application/json".to_string());
    match target.kind {
        NotifyKind::Webhook => Request {
            url: target.url.clone(),
            headers: vec![json_type],
            body: json_body(webhook_payload(msg)),
        },
        NotifyKind::Ntfy => {
            let (priority, tag) = ntfy_style(msg.kind);
            Request {
                url: target.url.clone(),
                headers: vec![
                    ("Content-Type", "text/plain; charset=utf-8".to_string()),
                    // Header values must be ASCII: the titles are ours.
                    ("Title", msg.title.chars().filter(char::is_ascii).collect()),
                    ("Priority", priority.to_string()),
                    ("Tags", format!("{tag},{}", msg.kind.as_str())),
                ],
                body: msg.body().into_bytes(),
            }
        }
        NotifyKind::Discord => Request {
            url: target.url.clone(),
            headers: vec![json_type],
            body: json_body(json!({
                "username": "vidsync",
                // No @everyone or role pings from a file name.
                "allowed_mentions": {"parse": []},
                "embeds": [{
                    "title": cut(&msg.title, DISCORD_TITLE_MAX),
                    "description": cut(&msg.body(), DISCORD_DESCRIPTION_MAX),
                    "color": discord_color(msg.kind),
                    "timestamp": rfc3339(msg.at),
                    "footer": {"text": format!("vidsync · {}", msg.kind.as_str())},
                }],
            })),
        },
        NotifyKind::Telegram => {
            let mut url = target.url.clone();
            let token = target.token.as_ref().map_or("", |t| t.expose());
            let base = url.path().trim_end_matches('/').to_string();
            url.set_path(&format!("{base}/bot{token}/sendMessage"));
            let chat = target.chat_id.clone().unwrap_or_default();
            // A numeric id goes as a number, "@channel" as a string.
            let chat_id = chat
                .parse::<i64>()
                .map_or_else(|_| json!(chat), |n| json!(n));
            Request {
                url,
                headers: vec![json_type],
                body: json_body(json!({
                    "chat_id": chat_id,
                    "text": cut(&msg.text(), TELEGRAM_TEXT_MAX),
                    "disable_web_page_preview": true,
                })),
            }
        }
    }
}

/// The HTTP client for every target: short timeouts (a slow receiver
/// delays only its own messages) and no redirects (a URL with a token in
/// it is not followed elsewhere).
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("vidsync/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))
}

/// Send `msg` to `target`.
pub async fn deliver(
    http: &reqwest::Client,
    target: &NotifyTarget,
    msg: &Message,
) -> Result<(), SendError> {
    let req = request(target, msg);
    let mut builder = http.post(req.url).body(req.body);
    for (k, v) in req.headers {
        builder = builder.header(k, v);
    }
    let scrub = |s: String| match &target.token {
        Some(t) if !t.expose().is_empty() => s.replace(t.expose(), "<token>"),
        _ => s,
    };
    let reply = builder.send().await.map_err(|e| SendError {
        // reqwest's message names the URL: drop it.
        message: scrub(error_chain(&e.without_url())),
        retry_after: None,
        permanent: false,
    })?;
    let status = reply.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = reply
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = reply.text().await.unwrap_or_default();
    // Telegram explains itself in `description`; others in a short body.
    let said = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["description"].as_str().map(str::to_string))
        .unwrap_or_else(|| cut(body.trim(), 200));
    let code = status.as_u16();
    Err(SendError {
        message: scrub(if said.is_empty() {
            format!("HTTP {code}")
        } else {
            format!("HTTP {code}: {said}")
        }),
        retry_after,
        // The receiver refuses this message, or the address is wrong:
        // another try cannot help (408 and 429 are "later").
        permanent: (400..500).contains(&code) && code != 408 && code != 429,
    })
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}
