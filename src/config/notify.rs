//! The `[[notify]]` entries: where events are told (a webhook, an ntfy
//! topic, a Discord webhook, a Telegram chat), which events, and the
//! Telegram bot token, read like the API key and never shown.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::{ConfigError, Ctx, Env, values::period};
use crate::store::EventKind;

/// How a target is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// A JSON POST of the versioned payload in docs/notify.md.
    Webhook,
    /// An ntfy topic URL: the text as body, Title/Priority/Tags headers.
    Ntfy,
    /// A Discord webhook: one embed per message.
    Discord,
    /// A Telegram bot's sendMessage to `chat_id`.
    Telegram,
}

impl NotifyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Webhook => "webhook",
            NotifyKind::Ntfy => "ntfy",
            NotifyKind::Discord => "discord",
            NotifyKind::Telegram => "telegram",
        }
    }
}

/// A bot token. Its `Debug` and `Display` never show it; `expose()` is for
/// the request that carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct NotifyToken(String);

impl NotifyToken {
    pub fn new(token: impl Into<String>) -> NotifyToken {
        NotifyToken(token.into())
    }
    /// The token itself, for the request URL. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NotifyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NotifyToken(<redacted>)")
    }
}

impl fmt::Display for NotifyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for NotifyToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(NotifyToken)
    }
}

/// A local time of day, for `summary_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// One validated `[[notify]]` entry.
#[derive(Clone, PartialEq)]
pub struct NotifyTarget {
    pub kind: NotifyKind,
    /// May hold a secret (a Discord webhook token, a private ntfy topic):
    /// never logged; `label()` names the target instead.
    pub url: url::Url,
    pub events: Vec<EventKind>,
    /// When the daily summary is sent (local time), if `events` has it.
    pub summary_at: TimeOfDay,
    /// Telegram only.
    pub chat_id: Option<String>,
    /// Telegram only.
    pub token: Option<NotifyToken>,
    /// At most one message per this long to this target.
    pub min_interval: Duration,
    /// How long an event waits for others of its kind, so that a burst is
    /// told in one message.
    pub group_wait: Duration,
    /// 1-based place in the file, for the label.
    pub index: usize,
}

impl fmt::Debug for NotifyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyTarget")
            .field("label", &self.label())
            .field("events", &self.events)
            .field("summary_at", &self.summary_at)
            .field("min_interval", &self.min_interval)
            .field("group_wait", &self.group_wait)
            .finish_non_exhaustive()
    }
}

impl NotifyTarget {
    /// How logs and `status` name the target: its place, kind and host,
    /// never the URL's path or query (where webhook tokens live).
    pub fn label(&self) -> String {
        format!(
            "#{} {} {}",
            self.index,
            self.kind.as_str(),
            self.url.host_str().unwrap_or("?")
        )
    }

    /// A stable key for the target's queue in the store: a hash of what
    /// makes it the same target (kind, URL, chat), so that reordering the
    /// file or a reload keeps its pending messages. FNV-1a, written out
    /// because std's hasher may change between Rust versions.
    pub fn key(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let text = format!(
            "{}\n{}\n{}",
            self.kind.as_str(),
            self.url,
            self.chat_id.as_deref().unwrap_or("")
        );
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{}-{h:016x}", self.kind.as_str())
    }

    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }
}

/// `[[notify]]` as serde reads it.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawNotify {
    kind: Option<Spanned<NotifyKind>>,
    url: Option<Spanned<String>>,
    events: Option<Vec<EventKind>>,
    summary_at: Spanned<String>,
    chat_id: Option<Spanned<ChatId>>,
    token: Option<Spanned<NotifyToken>>,
    token_file: Option<Spanned<String>>,
    #[serde(deserialize_with = "period")]
    min_interval: Duration,
    #[serde(with = "humantime_serde")]
    group_wait: Duration,
}

impl fmt::Debug for RawNotify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawNotify { .. }")
    }
}

impl Default for RawNotify {
    fn default() -> Self {
        RawNotify {
            kind: None,
            url: None,
            events: None,
            summary_at: Spanned::new(0..0, "09:00".to_string()),
            chat_id: None,
            token: None,
            token_file: None,
            min_interval: Duration::from_secs(5),
            group_wait: Duration::from_secs(10),
        }
    }
}

/// Telegram chat ids are numbers (`-1001234`) or `@channelname`.
#[derive(Deserialize)]
#[serde(untagged)]
enum ChatId {
    Number(i64),
    Text(String),
}

/// The default Telegram Bot API.
const TELEGRAM_API: &str = "https://api.telegram.org";

/// The file name of the bot token under `$CREDENTIALS_DIRECTORY`
/// (systemd `LoadCredential=telegram_token:...`).
const TOKEN_CREDENTIAL: &str = "telegram_token";
const TOKEN_ENV: &str = "VIDSYNC_TELEGRAM_TOKEN";

/// Tokens known before parsing, so that every config error is scrubbed of
/// them (`key::early_secrets`).
pub(super) fn early_tokens(table: Option<&toml::Table>, base: &Path, env: Env<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let entries = table
        .and_then(|t| t.get("notify"))
        .and_then(|n| n.as_array())
        .cloned()
        .unwrap_or_default();
    for e in &entries {
        out.extend(e.get("token").and_then(|v| v.as_str()).map(str::to_string));
        if let Some(file) = e.get("token_file").and_then(|v| v.as_str()) {
            out.extend(std::fs::read_to_string(base.join(file)).ok());
        }
    }
    if let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
        out.extend(std::fs::read_to_string(Path::new(&dir).join(TOKEN_CREDENTIAL)).ok());
    }
    out.extend(env(TOKEN_ENV));
    out
}

pub(super) fn check_notify(
    ctx: &mut Ctx<'_>,
    base: &Path,
    env: Env<'_>,
    entries: Vec<Spanned<RawNotify>>,
) -> Result<Vec<NotifyTarget>, ConfigError> {
    let mut out = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let span = entry.span();
        let e = entry.into_inner();
        let Some(kind) = e.kind else {
            return Err(ctx.err(
                span,
                "missing kind in [[notify]], expected one of \"webhook\", \"ntfy\", \"discord\", \"telegram\"",
            ));
        };
        let kind = *kind.get_ref();
        let url = match (&e.url, kind) {
            (Some(u), _) => check_notify_url(ctx, kind, u)?,
            (None, NotifyKind::Telegram) => {
                url::Url::parse(TELEGRAM_API).map_err(|e| ctx.err(span.clone(), format!("{e}")))?
            }
            (None, _) => {
                return Err(ctx.err(
                    span,
                    format!(
                        "missing url in [[notify]] kind = \"{}\", expected the {} URL",
                        kind.as_str(),
                        match kind {
                            NotifyKind::Ntfy => "topic's",
                            NotifyKind::Discord => "webhook's",
                            _ => "receiver's",
                        }
                    ),
                ));
            }
        };
        let summary_at = parse_time(e.summary_at.get_ref()).ok_or_else(|| {
            ctx.err(
                e.summary_at.span(),
                format!(
                    "invalid [[notify]] summary_at {:?}, expected a local time like \"09:00\"",
                    e.summary_at.get_ref()
                ),
            )
        })?;
        let mut events = e.events.unwrap_or_else(|| EventKind::DEFAULT.to_vec());
        events.sort();
        events.dedup();
        let (chat_id, token) = if kind == NotifyKind::Telegram {
            let Some(chat) = e.chat_id else {
                return Err(ctx.err(
                    span,
                    "missing chat_id in [[notify]] kind = \"telegram\", expected the chat's id (a number, or \"@channel\")",
                ));
            };
            let chat = match chat.into_inner() {
                ChatId::Number(n) => n.to_string(),
                ChatId::Text(t) => t.trim().to_string(),
            };
            let token = resolve_token(ctx, &e.token, &e.token_file, span.clone(), base, env)?;
            ctx.secrets.push(token.expose().to_string());
            (Some(chat), Some(token))
        } else {
            for (name, s) in [
                ("chat_id", e.chat_id.as_ref().map(|c| c.span())),
                ("token", e.token.as_ref().map(|t| t.span())),
                ("token_file", e.token_file.as_ref().map(|t| t.span())),
            ] {
                if let Some(s) = s {
                    return Err(ctx.err(
                        s,
                        format!("{name} is only for kind = \"telegram\", expected it removed"),
                    ));
                }
            }
            (None, None)
        };
        out.push(NotifyTarget {
            kind,
            url,
            events,
            summary_at,
            chat_id,
            token,
            min_interval: e.min_interval,
            group_wait: e.group_wait,
            index: i + 1,
        });
    }
    Ok(out)
}

fn parse_time(s: &str) -> Option<TimeOfDay> {
    let (h, m) = s.trim().split_once(':')?;
    let (hour, minute) = (h.parse::<u8>().ok()?, m.parse::<u8>().ok()?);
    (hour < 24 && minute < 60 && m.len() == 2).then_some(TimeOfDay { hour, minute })
}

/// http or https; a URL that carries a token (Discord, Telegram) must be
/// https unless it stays on this machine.
fn check_notify_url(
    ctx: &Ctx<'_>,
    kind: NotifyKind,
    value: &Spanned<String>,
) -> Result<url::Url, ConfigError> {
    let span = value.span();
    // The URL itself is never quoted: it may hold a webhook token.
    let url = url::Url::parse(value.get_ref().trim()).map_err(|e| {
        ctx.err(
            span.clone(),
            format!("invalid [[notify]] url: {e}, expected an http(s) URL"),
        )
    })?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ctx.err(span, "[[notify]] url has no host, expected an http(s) URL"));
    }
    let secret_in_url = matches!(kind, NotifyKind::Discord | NotifyKind::Telegram);
    match url.scheme() {
        "https" => {}
        "http" if !secret_in_url || super::is_loopback(&url) => {}
        "http" => {
            return Err(ctx.err(
                span,
                format!(
                    "[[notify]] kind = \"{}\" url uses http://, which would send its token in clear text; expected https://",
                    kind.as_str()
                ),
            ));
        }
        other => {
            return Err(ctx.err(
                span,
                format!("[[notify]] url has scheme {other}:, expected https:// or http://"),
            ));
        }
    }
    Ok(url)
}

/// The bot token, first found wins: `token`, `token_file`,
/// `$CREDENTIALS_DIRECTORY/telegram_token`, `$VIDSYNC_TELEGRAM_TOKEN`.
fn resolve_token(
    ctx: &Ctx<'_>,
    inline: &Option<Spanned<NotifyToken>>,
    file: &Option<Spanned<String>>,
    span: std::ops::Range<usize>,
    base: &Path,
    env: Env<'_>,
) -> Result<NotifyToken, ConfigError> {
    if let (Some(_), Some(f)) = (inline, file) {
        return Err(ctx.err(
            f.span(),
            "both token and token_file are set in [[notify]], expected only one of them",
        ));
    }
    let credential = env("CREDENTIALS_DIRECTORY")
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(&d).join(TOKEN_CREDENTIAL))
        .filter(|p| p.exists());
    let (value, source, at) = if let Some(t) = inline {
        (t.get_ref().0.clone(), "token".to_string(), t.span())
    } else if let Some(f) = file {
        let path = base.join(f.get_ref());
        let value = std::fs::read_to_string(&path).map_err(|e| {
            ctx.err(
                f.span(),
                format!("cannot read [[notify]] token_file {}: {e}", path.display()),
            )
        })?;
        if let Some(mode) = super::key::shared_mode(&path) {
            tracing::warn!(path = %path.display(), mode = format_args!("{mode:o}"),
                "[[notify]] token_file can be read by group or others; chmod 600 it");
        }
        (value, format!("token_file {}", path.display()), f.span())
    } else if let Some(path) = credential {
        let value = std::fs::read_to_string(&path).map_err(|e| {
            ctx.err(
                span.clone(),
                format!("cannot read the credential {}: {e}", path.display()),
            )
        })?;
        (value, format!("credential {}", path.display()), span)
    } else if let Some(value) = env(TOKEN_ENV) {
        (value, format!("${TOKEN_ENV}"), span)
    } else {
        return Err(ctx.err(
            span,
            format!(
                "no Telegram bot token for [[notify]] kind = \"telegram\", expected one of token, token_file, $CREDENTIALS_DIRECTORY/{TOKEN_CREDENTIAL} or ${TOKEN_ENV}"
            ),
        ));
    };
    let value = value.trim();
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ctx.err(
            at,
            format!("the Telegram bot token from {source} is empty or has whitespace, expected a single word like 123456:ABC..."),
        ));
    }
    Ok(NotifyToken::new(value))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;

    /// config.example.toml with its `[[notify]]` examples uncommented and
    /// its sync folder pointed at `media`.
    fn example_with_notify(media: &Path) -> String {
        let text = include_str!("../../config.example.toml");
        let mut out = Vec::new();
        let mut in_example = false;
        for l in text.lines() {
            if l == "# [[notify]]" {
                in_example = true;
            } else if !l.starts_with("# ") || l.starts_with("# A ") {
                in_example = false;
            }
            match l.strip_prefix("# ") {
                Some(u) if in_example && !u.starts_with('#') => out.push(u.to_string()),
                _ => out.push(l.to_string()),
            }
        }
        let out = out.join("\n");
        // The notify tables must come after every plain table: move them
        // to the end (TOML puts keys after a [[notify]] into it).
        let (mut head, mut tables) = (String::new(), String::new());
        let mut in_notify = false;
        for l in out.lines() {
            if l.starts_with('[') {
                in_notify = l == "[[notify]]";
            }
            let to = if in_notify { &mut tables } else { &mut head };
            to.push_str(l);
            to.push('\n');
        }
        format!("{head}\n{tables}").replace(
            "\"/srv/media/Movies\"",
            &format!("{:?}", media.display().to_string()),
        )
    }

    #[test]
    fn the_examples_of_each_kind_parse_with_the_documented_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("media");
        std::fs::create_dir(&media).unwrap();
        std::fs::write(dir.path().join("telegram_token"), "123456:SECRETtoken\n").unwrap();
        let text = example_with_notify(&media);
        let env = |_: &str| None;
        let c = Config::parse_str(&text, &dir.path().join("config.toml"), &env)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let kinds: Vec<_> = c.notify.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            [
                NotifyKind::Webhook,
                NotifyKind::Ntfy,
                NotifyKind::Discord,
                NotifyKind::Telegram
            ]
        );
        let d = RawNotify::default();
        for t in &c.notify {
            assert_eq!(t.min_interval, d.min_interval);
            assert_eq!(t.group_wait, d.group_wait);
            assert_eq!(t.summary_at, TimeOfDay { hour: 9, minute: 0 });
        }
        assert_eq!(c.notify[0].events, EventKind::DEFAULT);
        let tg = &c.notify[3];
        assert_eq!(
            tg.token.as_ref().map(|t| t.expose()),
            Some("123456:SECRETtoken")
        );
        assert_eq!(tg.chat_id.as_deref(), Some("-1001234567890"));
        assert!(
            !format!("{c:?}").contains("SECRETtoken"),
            "Debug redacts the token"
        );
        assert!(
            !format!("{c:?}").contains("TOKEN"),
            "Debug shows no webhook URL"
        );
        for key in [
            "kind",
            "url",
            "events",
            "summary_at",
            "min_interval",
            "group_wait",
            "chat_id",
            "token",
            "token_file",
        ] {
            assert!(
                include_str!("../../config.example.toml").lines().any(|l| l
                    .trim_start_matches(['#', ' '])
                    .starts_with(&format!("{key} "))),
                "config.example.toml does not document {key}"
            );
        }
    }

    #[test]
    fn errors_name_the_place_and_never_show_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("m");
        std::fs::create_dir(&media).unwrap();
        let base = format!(
            "[api]\nurl = \"https://h.example\"\nkey = \"APIKEY123456\"\n[[sync]]\nlocal = {:?}\n",
            media.display().to_string()
        );
        let path = dir.path().join("c.toml");
        let parse = |extra: &str, env: &dyn Fn(&str) -> Option<String>| {
            Config::parse_str(&format!("{base}{extra}"), &path, env).map_err(|e| e.to_string())
        };
        let none = |_: &str| None;
        let cases: &[(&str, &str)] = &[
            (
                "[[notify]]\nurl = \"https://x.example\"\n",
                "c.toml:6:1: missing kind in [[notify]]",
            ),
            (
                "[[notify]]\nkind = \"ntfy\"\n",
                "missing url in [[notify]] kind = \"ntfy\"",
            ),
            (
                "[[notify]]\nkind = \"telegram\"\nchat_id = 1\n",
                "no Telegram bot token",
            ),
            (
                "[[notify]]\nkind = \"telegram\"\ntoken = \"a:b\"\n",
                "missing chat_id",
            ),
            (
                "[[notify]]\nkind = \"discord\"\nurl = \"http://discord.example/api/webhooks/1/SECRETx\"\n",
                "c.toml:8:7: [[notify]] kind = \"discord\" url uses http://",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"https://x.example\"\nevents = [\"nope\"]\n",
                "unknown variant `nope`",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"https://x.example\"\nsummary_at = \"25:00\"\n",
                "invalid [[notify]] summary_at",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"https://x.example\"\ntoken = \"a:b\"\n",
                "token is only for kind = \"telegram\"",
            ),
        ];
        for (extra, want) in cases {
            let err = parse(extra, &none).unwrap_err();
            assert!(err.contains(want), "{extra}: {err}");
            assert!(!err.contains("SECRETx"), "{err}");
        }
        // A token pasted into the wrong place is scrubbed from the error.
        let env = |k: &str| (k == "VIDSYNC_TELEGRAM_TOKEN").then(|| "999:SECRETenv".to_string());
        let err = parse(
            "[[notify]]\nkind = \"telegram\"\nchat_id = \"999:SECRETenv\"\ntoken_file = 3\n",
            &env,
        )
        .unwrap_err();
        assert!(!err.contains("SECRETenv"), "{err}");
        let ok = parse("[[notify]]\nkind = \"telegram\"\nchat_id = \"@ch\"\n", &env).unwrap();
        assert_eq!(
            ok.notify[0].token.as_ref().map(|t| t.expose()),
            Some("999:SECRETenv")
        );
        assert_eq!(ok.notify[0].label(), "#1 telegram api.telegram.org");
    }
}
