//! Pure decisions over plain data, no I/O: which names count as videos, when
//! a file is complete, how long until a retry, what to do after an error,
//! which remote file to adopt after a lost reply. Each is tested as a table.
//! `complete` judges a file's bytes by its container's structure; it reads
//! them only through the `Probe` its caller hands it.

pub mod complete;
pub mod evidence;
mod filter;
pub mod reconcile;
pub mod template;
mod title;

pub use filter::{Filter, FilterError};
pub use reconcile::DeletePolicy;
pub use title::{edit_safe, host_tag, host_title, same_title, stored_title};

use std::time::Duration;

use crate::api::{ErrorClass, ListedFile};
pub use crate::relpath::{is_under, rel_dir_of};

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
    let vars = template::TitleVars {
        stem,
        name,
        ext,
        dir,
    };
    let title = template::render_title(template, &vars);
    let title = title.trim();
    if title.is_empty() {
        stem.to_string()
    } else {
        title.to_string()
    }
}

/// Why a copy on the host is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdoptMode {
    /// After an upload whose outcome is unknown: the candidates were listed
    /// in the folder since the attempt began, so several matches are our
    /// own attempts and the oldest (the first attempt's) is ours.
    LostReply,
    /// A file with no upload on record (a lost database, another tool):
    /// only a single candidate is taken.
    Existing,
}

/// A file on the host that may be a local file's copy. `size` is the size
/// of its original (`o`) version from file/direct_link, when the host told.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub file: ListedFile,
    pub size: Option<u64>,
}

/// Another local file of the same folder, with no code, that could own a
/// copy on the host: its rendered title and size.
#[derive(Debug, Clone)]
pub struct Rival {
    pub title: String,
    pub size: u64,
    /// Being uploaded, or its last upload's outcome is unknown: it may
    /// settle its own copy soon, which may settle this file's case too.
    pub in_flight: bool,
}

/// What to do with the candidates for one local file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    /// This code is the file's copy.
    Adopt(String),
    /// No copy on the host: upload (or, after a lost reply, wait and resend).
    Nothing,
    /// Copies exist but none is surely this file's: do not upload, do not
    /// adopt. With `pending` (a rival is in flight and may claim its copy)
    /// ask again later; otherwise let the user settle it (`vidsync adopt`).
    Ambiguous {
        codes: Vec<String>,
        why: String,
        pending: bool,
    },
}

/// Pick the copy of a local file among files listed in its remote folder
/// (codes other rows hold already removed). Never adopts a copy another
/// local file could own: where sizes are known they decide, otherwise a
/// rival with the same title (under the host's rules) makes it ambiguous.
pub fn choose_adoption(
    mode: AdoptMode,
    candidates: &[Candidate],
    title: &str,
    size: u64,
    fld_id: u64,
    rivals: &[Rival],
    sanitize: bool,
) -> Adoption {
    // For a file never on record, only the whole title counts (the prefix
    // rule for hosts that cut long titles could match another episode's
    // copy); after a lost reply the window is ours and short.
    let title_matches = |remote: &str| match mode {
        AdoptMode::LostReply => same_title(remote, title, sanitize),
        AdoptMode::Existing => {
            title::stored_title(remote.trim(), sanitize) == title::stored_title(title, sanitize)
        }
    };
    let mut matching: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.file.fld_id == fld_id && title_matches(&c.file.title))
        // A copy whose original has another size is not this file.
        .filter(|c| c.size.is_none_or(|s| s == size))
        .collect();
    if matching.is_empty() {
        return Adoption::Nothing;
    }
    matching.sort_by(|a, b| {
        a.file
            .uploaded
            .cmp(&b.file.uploaded)
            .then(a.file.file_code.cmp(&b.file.file_code))
    });
    let codes = || matching.iter().map(|c| c.file.file_code.clone()).collect();
    // A rival is another local file that one of the candidates could
    // belong to (either way round of the long-title prefix rule).
    let rivals: Vec<&Rival> = rivals
        .iter()
        .filter(|r| {
            same_title(title, &r.title, sanitize)
                || same_title(&r.title, title, sanitize)
                || matching
                    .iter()
                    .any(|c| same_title(&c.file.title, &r.title, sanitize))
        })
        .collect();
    let pending = rivals.iter().any(|r| r.in_flight);
    // A size that only this file has settles it, whatever the titles.
    let sized: Vec<&&Candidate> = matching.iter().filter(|c| c.size.is_some()).collect();
    let size_is_ours = !rivals.iter().any(|r| r.size == size);
    let single_or_ours = mode == AdoptMode::LostReply || matching.len() == 1;
    if !sized.is_empty() && size_is_ours && (mode == AdoptMode::LostReply || sized.len() == 1) {
        return Adoption::Adopt(sized[0].file.file_code.clone());
    }
    if !rivals.is_empty() {
        return Adoption::Ambiguous {
            codes: codes(),
            why: format!(
                "{} other local file(s) in this folder have the same title as the host stores it, and the sizes do not tell them apart",
                rivals.len()
            ),
            pending,
        };
    }
    if single_or_ours {
        return Adoption::Adopt(matching[0].file.file_code.clone());
    }
    Adoption::Ambiguous {
        codes: codes(),
        why: format!(
            "{} files on the host have this title and the host does not tell their sizes",
            matching.len()
        ),
        pending: false,
    }
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

    fn cand(code: &str, title: &str, fld: u64, uploaded: &str, size: Option<u64>) -> Candidate {
        Candidate {
            file: listed(code, title, fld, uploaded),
            size,
        }
    }

    #[test]
    fn adoption_after_a_lost_reply_picks_our_file() {
        let l = vec![
            cand("newer0000001", "Movie", 5, "2026-01-01 10:00:05", None),
            cand("older0000001", "Movie", 5, "2026-01-01 10:00:01", None),
            cand("otherfolder1", "Movie", 6, "2026-01-01 10:00:00", None),
            cand("othertitle01", "Movie 2", 5, "2026-01-01 10:00:00", None),
        ];
        let pick = |title: &str, fld| {
            choose_adoption(AdoptMode::LostReply, &l, title, 10, fld, &[], false)
        };
        assert_eq!(pick("Movie", 5), Adoption::Adopt("older0000001".into()));
        // The host's rewriting: "Movie.mkv" is stored as "Movie".
        assert_eq!(pick("Movie.mkv", 5), Adoption::Adopt("older0000001".into()));
        assert_eq!(pick("Movie", 7), Adoption::Nothing);
        assert_eq!(pick("Movi", 5), Adoption::Nothing);
        let long: String = "x".repeat(80);
        let cut = vec![cand("cut000000001", &long[..60], 1, "t", None)];
        assert_eq!(
            choose_adoption(AdoptMode::LostReply, &cut, &long, 1, 1, &[], false),
            Adoption::Adopt("cut000000001".into())
        );
    }

    #[test]
    fn adoption_table() {
        use Adoption::*;
        let one = vec![cand("aaaaaaaaaaa1", "A B", 1, "t1", None)];
        let one_sized = vec![cand("aaaaaaaaaaa1", "A B", 1, "t1", Some(100))];
        let two = vec![
            cand("aaaaaaaaaaa1", "A B", 1, "t1", None),
            cand("bbbbbbbbbbb2", "A B", 1, "t2", None),
        ];
        let two_sized = vec![
            cand("aaaaaaaaaaa1", "A B", 1, "t1", Some(100)),
            cand("bbbbbbbbbbb2", "A B", 1, "t2", Some(200)),
        ];
        let rival = |size| {
            vec![Rival {
                title: "A.B".into(),
                size,
                in_flight: false,
            }]
        };
        let ambiguous = |r: &Adoption| matches!(r, Ambiguous { .. });
        use AdoptMode::*;
        // (mode, candidates, our size, rivals, expected)
        type Check<'a> = &'a dyn Fn(&Adoption) -> bool;
        #[allow(clippy::type_complexity)]
        let cases: Vec<(AdoptMode, &Vec<Candidate>, u64, Vec<Rival>, Check)> = vec![
            (Existing, &one, 100, vec![], &|r| {
                *r == Adopt("aaaaaaaaaaa1".into())
            }),
            (Existing, &one_sized, 100, vec![], &|r| {
                *r == Adopt("aaaaaaaaaaa1".into())
            }),
            // The size of the original says it is another file.
            (Existing, &one_sized, 999, vec![], &|r| *r == Nothing),
            (LostReply, &one_sized, 999, vec![], &|r| *r == Nothing),
            // Two copies, no sizes: which is which is unknown.
            (Existing, &two, 100, vec![], &ambiguous),
            // After a lost reply both are our attempts: the oldest.
            (LostReply, &two, 100, vec![], &|r| {
                *r == Adopt("aaaaaaaaaaa1".into())
            }),
            // A_B.mp4 and A.B.mp4 in one folder: without sizes never adopt.
            (LostReply, &one, 100, rival(200), &ambiguous),
            (Existing, &one, 100, rival(200), &ambiguous),
            // Sizes tell them apart.
            (LostReply, &two_sized, 200, rival(100), &|r| {
                *r == Adopt("bbbbbbbbbbb2".into())
            }),
            (Existing, &two_sized, 100, rival(200), &|r| {
                *r == Adopt("aaaaaaaaaaa1".into())
            }),
            // Same size as the rival: the size does not tell.
            (Existing, &one_sized, 100, rival(100), &ambiguous),
        ];
        for (i, (mode, c, size, rivals, want)) in cases.into_iter().enumerate() {
            let got = choose_adoption(mode, c, "A_B", size, 1, &rivals, false);
            assert!(want(&got), "case {i}: {got:?}");
        }
    }

    #[test]
    fn a_long_title_is_not_another_episodes_copy() {
        use Adoption::*;
        let lecture = |n: &str| {
            format!(
                "{} Lecture {n}",
                "Quantum Mechanics for Beginners, Complete Course,"
            )
        };
        let t1 = lecture("1");
        let t10 = lecture("10");
        assert!(t1.chars().count() >= 50);
        let on_host = vec![cand("lecture00001", &t1, 1, "t1", None)];
        // A file never on record: only the whole title counts.
        let got = choose_adoption(AdoptMode::Existing, &on_host, &t10, 5, 1, &[], false);
        assert_eq!(got, Nothing);
        // After a lost reply, a cut title on the host that another local
        // file's title also begins with makes that file a rival.
        let cut: String = t1.chars().take(55).collect();
        let on_host = vec![cand("lecture00001", &cut, 1, "t1", None)];
        let rivals = vec![Rival {
            title: t1.clone(),
            size: 7,
            in_flight: true,
        }];
        let got = choose_adoption(AdoptMode::LostReply, &on_host, &t10, 5, 1, &rivals, false);
        assert!(matches!(got, Ambiguous { pending: true, .. }), "{got:?}");
    }

    #[test]
    fn an_ambiguity_waits_while_a_rival_is_in_flight() {
        let one = vec![cand("aaaaaaaaaaa1", "A B", 1, "t1", None)];
        let rival = |in_flight| {
            vec![Rival {
                title: "A.B".into(),
                size: 2,
                in_flight,
            }]
        };
        for in_flight in [false, true] {
            let got = choose_adoption(
                AdoptMode::Existing,
                &one,
                "A_B",
                1,
                1,
                &rival(in_flight),
                false,
            );
            assert!(
                matches!(&got, Adoption::Ambiguous { pending, .. } if *pending == in_flight),
                "{got:?}"
            );
        }
    }
}
