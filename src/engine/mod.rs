//! Pure decisions over plain data, no I/O: which names count as videos, when
//! a file is complete, how long until a retry, what to do after an error,
//! which remote file to adopt after a lost reply. Each is tested as a table.

mod filter;
pub mod reconcile;

pub use filter::{Filter, FilterError};

use std::time::Duration;

use crate::api::{ErrorClass, ListedFile};

/// Is a waiting file complete? Its size and mtime must have been unchanged
/// for `settle` (observed by us, not inferred from the mtime, which copy
/// tools set to the past), and no writer may still hold it open.
pub fn is_complete(
    stable_since_ms: i64,
    now_ms: i64,
    settle: Duration,
    open_for_write: bool,
) -> bool {
    !open_for_write && now_ms.saturating_sub(stable_since_ms) >= settle.as_millis() as i64
}

/// Delay before retry number `attempt` (1 = the first retry): exponential
/// from `min`, capped at `max`, with "equal jitter" (half fixed, half random)
/// so that many files failing together do not retry together. `rand01` is a
/// random number in [0, 1).
pub fn backoff(attempt: u32, min: Duration, max: Duration, rand01: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let base = min
        .saturating_mul(1u32 << exp.min(31))
        .min(max)
        .max(min.min(max));
    let half = base / 2;
    half + half.mul_f64(rand01.clamp(0.0, 1.0))
}

/// What to do with a file after its upload failed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterError {
    /// Queue again after `delay`; `counted` adds to the file's attempts.
    Retry { delay: Duration, counted: bool },
    /// Mark `failed` with the host's message.
    Fail,
    /// The key is refused: requeue without counting and pause all API work.
    PauseForKey,
}

/// Policy inputs of `after_error`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub min: Duration,
    pub max: Duration,
    pub max_attempts: u32,
}

/// `attempts` is how many counted failures the file had before this one;
/// `account_streak` how many account-wide refusals in a row the daemon saw.
pub fn after_error(
    class: ErrorClass,
    attempts: u32,
    account_streak: u32,
    policy: RetryPolicy,
    rand01: f64,
) -> AfterError {
    match class {
        ErrorClass::KeyRejected => AfterError::PauseForKey,
        ErrorClass::Permanent => AfterError::Fail,
        // Quota, rate limits and busy servers pass with time: never give up,
        // but back off for the whole account, not per file.
        ErrorClass::AccountWide => AfterError::Retry {
            delay: backoff(account_streak.max(1), policy.min, policy.max, rand01),
            counted: false,
        },
        ErrorClass::Transient | ErrorClass::Protocol => {
            let n = attempts + 1;
            if n >= policy.max_attempts {
                AfterError::Fail
            } else {
                AfterError::Retry {
                    delay: backoff(n, policy.min, policy.max, rand01),
                    counted: true,
                }
            }
        }
    }
}

/// The directory part of a relative path ("" at the root).
pub fn rel_dir_of(rel_path: &str) -> &str {
    rel_path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Is `rel` below the directory `dir` ("" is the root: everything is)?
pub fn is_under(rel: &str, dir: &str) -> bool {
    dir.is_empty()
        || rel
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The title of an uploaded file: the template (checked by config) filled
/// from the relative path; a template that renders empty (`{dir}` at the
/// root) falls back to the file name without extension.
pub fn render_title(template: &str, rel_path: &str) -> String {
    let dir = rel_dir_of(rel_path);
    let name = rel_path.rsplit('/').next().unwrap_or(rel_path);
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, e),
        _ => (name, ""),
    };
    let vars = crate::config::TitleVars {
        stem,
        name,
        ext,
        dir,
    };
    let title = crate::config::render_title(template, &vars);
    let title = title.trim();
    if title.is_empty() {
        stem.to_string()
    } else {
        title.to_string()
    }
}

/// After an upload whose outcome is unknown, pick the remote file that is
/// ours among those listed in the folder since the attempt began: same
/// folder and same title (hosts may cut long titles, so a long prefix of
/// ours counts too). The oldest match wins: it is the first attempt's.
pub fn find_adoptable<'a>(
    listed: &'a [ListedFile],
    title: &str,
    fld_id: u64,
) -> Option<&'a ListedFile> {
    listed
        .iter()
        .filter(|f| f.fld_id == fld_id && title_matches(&f.title, title))
        .min_by(|a, b| {
            a.uploaded
                .cmp(&b.uploaded)
                .then(a.file_code.cmp(&b.file_code))
        })
}

fn title_matches(remote: &str, ours: &str) -> bool {
    let remote = remote.trim();
    let ours = ours.trim();
    remote == ours || (remote.chars().count() >= 50 && ours.starts_with(remote))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn completeness() {
        let settle = Duration::from_secs(10);
        let cases = [
            // stable_since, now, open, complete
            (0, 9_999, false, false),
            (0, 10_000, false, true),
            (0, 50_000, true, false),
            (5_000, 10_000, false, false),
        ];
        for (since, now, open, want) in cases {
            assert_eq!(
                is_complete(since, now, settle, open),
                want,
                "{since} {now} {open}"
            );
        }
    }

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let (min, max) = (30 * S, 3600 * S);
        let cases = [
            (1, 0.0, 15 * S),
            (1, 0.999_999, 30 * S),
            (2, 0.0, 30 * S),
            (3, 0.0, 60 * S),
            (8, 0.0, 1800 * S),
            (20, 0.0, 1800 * S),
            (20, 0.999_999, 3600 * S),
            (1000, 0.5, 2700 * S),
        ];
        for (attempt, r, want) in cases {
            let got = backoff(attempt, min, max, r);
            let diff = got.as_secs_f64() - want.as_secs_f64();
            assert!(
                diff.abs() < 0.01,
                "attempt {attempt} r {r}: {got:?} != {want:?}"
            );
        }
    }

    #[test]
    fn decisions_after_errors() {
        let p = RetryPolicy {
            min: 30 * S,
            max: 3600 * S,
            max_attempts: 3,
        };
        use ErrorClass::*;
        assert_eq!(
            after_error(KeyRejected, 0, 0, p, 0.0),
            AfterError::PauseForKey
        );
        assert_eq!(after_error(Permanent, 0, 0, p, 0.0), AfterError::Fail);
        assert_eq!(
            after_error(Transient, 0, 0, p, 0.0),
            AfterError::Retry {
                delay: 15 * S,
                counted: true
            }
        );
        assert_eq!(
            after_error(Protocol, 1, 0, p, 0.0),
            AfterError::Retry {
                delay: 30 * S,
                counted: true
            }
        );
        assert_eq!(after_error(Transient, 2, 0, p, 0.0), AfterError::Fail);
        // Account-wide conditions never fail a file, however many attempts.
        assert_eq!(
            after_error(AccountWide, 100, 3, p, 0.0),
            AfterError::Retry {
                delay: 60 * S,
                counted: false
            }
        );
    }

    #[test]
    fn paths_under_directories() {
        let cases = [
            ("a/b.mp4", "a", true),
            ("a/b/c.mp4", "a", true),
            ("ab/c.mp4", "a", false),
            ("a", "a", false),
            ("x.mp4", "", true),
        ];
        for (rel, dir, want) in cases {
            assert_eq!(is_under(rel, dir), want, "{rel} under {dir}");
        }
        assert_eq!(rel_dir_of("a/b/c.mp4"), "a/b");
        assert_eq!(rel_dir_of("c.mp4"), "");
    }

    #[test]
    fn titles() {
        let cases = [
            ("{stem}", "a/b/My Movie (2020).mkv", "My Movie (2020)"),
            ("{name}", "x.mp4", "x.mp4"),
            ("{dir} - {stem}", "Shows/S01/e1.mp4", "Shows/S01 - e1"),
            ("{stem}", ".hidden", ".hidden"),
            ("{stem}", "no_ext", "no_ext"),
            ("{stem}.{ext}", "a.b.c.mp4", "a.b.c.mp4"),
            ("{dir}", "root.mp4", "root"),
            ("{{{stem}}}", "x.mp4", "{x}"),
        ];
        for (t, p, want) in cases {
            assert_eq!(render_title(t, p), want, "{t} {p}");
        }
    }

    fn listed(code: &str, title: &str, fld: u64, uploaded: &str) -> ListedFile {
        serde_json::from_value(serde_json::json!({
            "file_code": code, "title": title, "fld_id": fld.to_string(), "uploaded": uploaded
        }))
        .unwrap()
    }

    #[test]
    fn adoption_picks_our_file() {
        let l = vec![
            listed("newer0000001", "Movie", 5, "2026-01-01 10:00:05"),
            listed("older0000001", "Movie", 5, "2026-01-01 10:00:01"),
            listed("otherfolder1", "Movie", 6, "2026-01-01 10:00:00"),
            listed("othertitle01", "Movie 2", 5, "2026-01-01 10:00:00"),
        ];
        assert_eq!(
            find_adoptable(&l, "Movie", 5).unwrap().file_code,
            "older0000001"
        );
        assert!(find_adoptable(&l, "Movie", 7).is_none());
        assert!(find_adoptable(&l, "Movi", 5).is_none());
        let long: String = "x".repeat(80);
        let cut = vec![listed("cut000000001", &long[..60], 1, "t")];
        assert!(find_adoptable(&cut, &long, 1).is_some());
    }
}
