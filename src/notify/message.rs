//! What a message says: a burst of notices of one kind grouped into one
//! title and text ("12 files taken down for DMCA: ..."), the same for
//! every kind of target. Pure, so the wording is tested as a table.

use crate::store::{EventKind, QueuedNotice};

/// At most this many files are named in one message; the rest are counted.
const MAX_LINES: usize = 20;

/// One message to one target: notices of one kind, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: EventKind,
    pub title: String,
    /// One line per notice (the first `MAX_LINES`), then "... and N more".
    pub lines: Vec<String>,
    pub items: Vec<QueuedNotice>,
    /// When the newest notice happened (unix ms).
    pub at: i64,
}

impl Message {
    /// The notices at the head of `due` that share the first one's kind
    /// (a burst), or None if `due` is empty.
    pub fn group(due: &[QueuedNotice]) -> Option<Message> {
        let kind = due.first()?.kind;
        let items: Vec<QueuedNotice> = due.iter().filter(|n| n.kind == kind).cloned().collect();
        Some(Message::of(kind, items))
    }

    pub fn of(kind: EventKind, items: Vec<QueuedNotice>) -> Message {
        let n = items.len();
        let title = title(kind, n);
        let mut lines: Vec<String> = items.iter().take(MAX_LINES).map(line).collect();
        if n > MAX_LINES {
            lines.push(format!("... and {} more", n - MAX_LINES));
        }
        let at = items.iter().map(|i| i.at).max().unwrap_or(0);
        Message {
            kind,
            title,
            lines,
            items,
            at,
        }
    }

    /// `vidsync notify-test`'s message.
    pub fn test(at: i64) -> Message {
        Message {
            kind: EventKind::Test,
            title: title(EventKind::Test, 1),
            lines: vec!["If you can read this, vidsync can reach this target.".to_string()],
            items: Vec::new(),
            at,
        }
    }

    /// Title and lines as plain text (ntfy's body, Telegram's message).
    pub fn text(&self) -> String {
        if self.lines.is_empty() {
            return self.title.clone();
        }
        format!("{}:\n{}", self.title, self.lines.join("\n"))
    }

    /// Just the lines (where the title travels apart: Discord, ntfy).
    pub fn body(&self) -> String {
        if self.lines.is_empty() {
            self.title.clone()
        } else {
            self.lines.join("\n")
        }
    }
}

fn title(kind: EventKind, n: usize) -> String {
    let (one, many) = match kind {
        EventKind::Dmca => (
            "A file was taken down for DMCA",
            "files taken down for DMCA",
        ),
        EventKind::RemoteDeleted => (
            "A file was deleted on the host",
            "files deleted on the host",
        ),
        EventKind::Failed => ("An upload failed for good", "uploads failed for good"),
        EventKind::UploadDone => ("A file was uploaded", "files uploaded"),
        EventKind::Incomplete => (
            "A file is held back as incomplete",
            "files held back as incomplete",
        ),
        EventKind::KeyRejected => return "The host rejected the API key".into(),
        EventKind::KeyOkAgain => return "The host accepts the API key again".into(),
        EventKind::OverQuota => return "The account is over its storage quota".into(),
        EventKind::DailyLimit => return "The host's daily API limit is reached".into(),
        EventKind::MassDeleteHeld => return "Reconcile held back a mass deletion".into(),
        EventKind::DailySummary => return "vidsync daily summary".into(),
        EventKind::Test => return "vidsync test message".into(),
    };
    if n == 1 {
        one.to_string()
    } else {
        format!("{n} {many}")
    }
}

fn line(n: &QueuedNotice) -> String {
    let mut s = n.path.clone().unwrap_or_default();
    // With several hosts, which one (a one-host library's is `default`,
    // which says nothing).
    let host = n
        .host
        .as_deref()
        .filter(|h| *h != crate::store::DEFAULT_HOST);
    if let Some(code) = &n.code {
        if s.is_empty() {
            s = code.clone();
        } else {
            s.push_str(&format!(" ({code})"));
        }
    }
    let line = match (&n.detail, s.is_empty()) {
        (Some(d), true) => d.clone(),
        (Some(d), false) => format!("{s}: {d}"),
        (None, _) => s,
    };
    match host {
        Some(h) => format!("on {h}: {line}"),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(
        kind: EventKind,
        path: Option<&str>,
        code: Option<&str>,
        detail: Option<&str>,
    ) -> QueuedNotice {
        QueuedNotice {
            id: 1,
            kind,
            host: None,
            path: path.map(str::to_string),
            code: code.map(str::to_string),
            detail: detail.map(str::to_string),
            at: 5,
            tries: 0,
        }
    }

    #[test]
    fn messages_read_well_for_one_and_for_many() {
        use EventKind::*;
        let cases: &[(QueuedNotice, usize, &str)] = &[
            (
                q(Dmca, Some("/m/a.mp4"), Some("abc"), None),
                1,
                "A file was taken down for DMCA:\n/m/a.mp4 (abc)",
            ),
            (
                q(Dmca, Some("/m/a.mp4"), Some("abc"), None),
                3,
                "3 files taken down for DMCA:\n/m/a.mp4 (abc)\n/m/a.mp4 (abc)\n/m/a.mp4 (abc)",
            ),
            (
                q(Failed, Some("/m/b.mkv"), None, Some("HTTP 500")),
                1,
                "An upload failed for good:\n/m/b.mkv: HTTP 500",
            ),
            (
                q(KeyRejected, None, None, Some("Invalid key")),
                1,
                "The host rejected the API key:\nInvalid key",
            ),
            (
                q(Incomplete, Some("/m/c.mp4"), None, Some("a hole at 4096")),
                2,
                "2 files held back as incomplete:\n/m/c.mp4: a hole at 4096\n/m/c.mp4: a hole at 4096",
            ),
        ];
        for (notice, n, want) in cases {
            let m = Message::of(notice.kind, vec![notice.clone(); *n]);
            assert_eq!(m.text(), *want);
        }
    }

    #[test]
    fn with_several_hosts_each_line_names_its_host() {
        let mut n = q(EventKind::Dmca, Some("/m/a.mp4"), Some("abc"), None);
        n.host = Some("b".into());
        let mut key = q(EventKind::KeyRejected, None, None, Some("Invalid key"));
        key.host = Some("c".into());
        assert_eq!(
            Message::of(EventKind::Dmca, vec![n]).text(),
            "A file was taken down for DMCA:\non b: /m/a.mp4 (abc)"
        );
        assert_eq!(
            Message::of(EventKind::KeyRejected, vec![key]).text(),
            "The host rejected the API key:\non c: Invalid key"
        );
        // A one-host library's host is `default`: not worth a word.
        let mut one = q(EventKind::Dmca, Some("/m/a.mp4"), Some("abc"), None);
        one.host = Some(crate::store::DEFAULT_HOST.into());
        assert_eq!(
            Message::of(EventKind::Dmca, vec![one]).text(),
            "A file was taken down for DMCA:\n/m/a.mp4 (abc)"
        );
    }

    #[test]
    fn a_burst_names_twenty_files_and_counts_the_rest() {
        let items: Vec<_> = (0..25)
            .map(|i| {
                q(
                    EventKind::Dmca,
                    Some(&format!("/m/{i}.mp4")),
                    Some(&format!("c{i}")),
                    None,
                )
            })
            .collect();
        let m = Message::of(EventKind::Dmca, items);
        assert_eq!(m.title, "25 files taken down for DMCA");
        assert_eq!(m.lines.len(), 21);
        assert_eq!(m.lines[20], "... and 5 more");
        assert_eq!(m.items.len(), 25);
    }

    #[test]
    fn a_group_is_the_first_kind_only() {
        let due = vec![
            q(EventKind::Dmca, Some("a"), None, None),
            q(EventKind::Failed, Some("b"), None, None),
            q(EventKind::Dmca, Some("c"), None, None),
        ];
        let m = Message::group(&due).unwrap();
        assert_eq!((m.kind, m.items.len()), (EventKind::Dmca, 2));
        assert!(Message::group(&[]).is_none());
    }
}
