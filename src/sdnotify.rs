//! systemd notifications (sd_notify): READY, STATUS, WATCHDOG, STOPPING.
//!
//! With `Type=notify` systemd waits for READY=1 before it calls the unit
//! started, shows the last STATUS= line in `systemctl status`, restarts the
//! daemon when WATCHDOG=1 pings stop for `WatchdogSec=` (a hung main loop),
//! and reports "deactivating" once STOPPING=1 arrives.
//!
//! Every function is a no-op when `NOTIFY_SOCKET` is unset (run by hand, in
//! tests, under another supervisor). A failed send is logged at debug and
//! otherwise ignored: a notification is a courtesy to the service manager,
//! never a reason for the daemon to stop working.

use sd_notify::NotifyState;

/// Send `state`, if there is a service manager listening.
fn send(state: &[NotifyState]) {
    // Checked here (the crate checks too) so that the common case, no
    // systemd, costs one environment lookup and nothing else.
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    // `false`: keep NOTIFY_SOCKET set, the watchdog pings need it for the
    // whole life of the process.
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!(error = %e, "cannot notify the service manager");
    }
}

/// READY=1: start-up is done (store open, first scan started).
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// STATUS=...: one line saying what the daemon is doing.
pub fn status(line: &str) {
    // A newline would end the STATUS= field and start a bogus assignment.
    let line = line.replace('\n', " ");
    send(&[NotifyState::Status(&line)]);
}

/// WATCHDOG=1: the main loop is alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// RELOADING=1: a configuration reload has begun (READY=1 follows).
pub fn reloading() {
    send(&[NotifyState::Reloading]);
}

/// STOPPING=1: a graceful stop has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// The STATUS= line for the file counts of the store: what is being done
/// right now, or how much is done when there is nothing to do.
pub fn status_line(counts: &[(crate::store::State, u64)], key_ok: bool) -> String {
    use crate::store::State;
    let n = |s: State| counts.iter().find(|(c, _)| *c == s).map_or(0, |(_, n)| *n);
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let (uploading, queued, waiting) = (n(State::Uploading), n(State::Queued), n(State::Waiting));
    let mut line = if uploading + queued + waiting > 0 {
        let mut l = format!(
            "uploading {uploading} file{}, {queued} queued",
            plural(uploading)
        );
        if waiting > 0 {
            l.push_str(&format!(", {waiting} settling"));
        }
        l
    } else {
        let done = n(State::Uploaded);
        format!("idle, {done} file{} uploaded", plural(done))
    };
    let failed = n(State::Failed);
    if failed > 0 {
        line.push_str(&format!(", {failed} failed"));
    }
    if !key_ok {
        // The one state an operator must act on: say it first.
        line = format!("paused: the host rejects the API key; {line}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::status_line;
    use crate::store::State;

    #[test]
    fn status_line_says_what_is_going_on() {
        let c = |u, q, w, d, f| {
            vec![
                (State::Waiting, w),
                (State::Queued, q),
                (State::Uploading, u),
                (State::Uploaded, d),
                (State::Failed, f),
            ]
        };
        assert_eq!(
            status_line(&c(2, 14, 0, 5, 0), true),
            "uploading 2 files, 14 queued"
        );
        assert_eq!(
            status_line(&c(1, 0, 3, 5, 0), true),
            "uploading 1 file, 0 queued, 3 settling"
        );
        assert_eq!(
            status_line(&c(0, 0, 0, 120, 0), true),
            "idle, 120 files uploaded"
        );
        assert_eq!(
            status_line(&c(0, 0, 0, 1, 2), true),
            "idle, 1 file uploaded, 2 failed"
        );
        assert_eq!(status_line(&[], true), "idle, 0 files uploaded");
        assert_eq!(
            status_line(&c(0, 3, 0, 0, 0), false),
            "paused: the host rejects the API key; uploading 0 files, 3 queued"
        );
    }

    #[test]
    fn without_a_socket_every_call_is_a_quiet_no_op() {
        // Only meaningful (and only harmless) when no service manager is
        // listening, which is the case under a plain `cargo test`.
        if std::env::var_os("NOTIFY_SOCKET").is_some() {
            return;
        }
        super::ready();
        super::status("x\ny");
        super::watchdog();
        super::stopping();
    }
}
