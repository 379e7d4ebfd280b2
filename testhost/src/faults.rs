//! Fault injection: rules that make the host misbehave the way real XVS hosts and their CDNs do.
//!
//! A rule is a fault, a trigger (always, the next n matching requests, or a seeded
//! probability) and a scope (every request, API calls, one endpoint, or uploads).
//! Tests change the rules at any time through `TestHost::faults()`.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::lock;

/// One way to misbehave.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// HTTP 502 with an HTML body, as a CDN in front of the host sends.
    Http502,
    /// HTTP 503 with an HTML body.
    Http503,
    /// HTTP 504 with an HTML body (a gateway timeout).
    Http504,
    /// HTTP 429 with an HTML body and `Retry-After: 1`.
    Http429,
    /// HTTP 200 with an HTML page instead of JSON.
    NotJson,
    /// Uploads: read part of the body, then close the connection without replying; nothing stored.
    DropMidUpload,
    /// Uploads: read and store the whole upload, then close the connection without replying.
    LoseReply,
    /// Uploads: the origin stores the file, then the proxy in front answers
    /// HTTP 502 (its own timeout ran out first).
    StoredThen502,
    /// `upload/server`: status 200, msg "No servers available for uploads", result {}.
    NoServers,
    /// API: status 403 "Requests limit reached: N per min".
    RateLimited,
    /// Uploads: each matching file part is refused with this message (filecode "").
    RejectFile(String),
    /// Uploads: read the body at most this many bytes per second.
    SlowRead { bytes_per_sec: u64 },
    /// Replies carry `"status":"200"` (a string) instead of a number.
    StatusAsString,
    /// The request waits this long before being handled (for client timeouts).
    Delay(Duration),
    /// API: an application error, e.g. `{status: 403, msg: "API not enabled for your account"}`.
    JsonError { status: u16, msg: String },
    /// Uploads: each matching file part is refused with `0:0:0:<message>`, the way the
    /// real host passes on a refusal of its storage back end (`fs.pm` `saveFileError`).
    RejectFilePrefixed(String),
    /// Uploads: the files are stored, then the reply is a JSON array of the per-file
    /// outcomes instead of the `{msg, status, files}` object. API: the call runs, then
    /// the reply is a JSON array (`[reply]`) instead of the envelope object.
    StoredThenArray,
    /// Uploads: stored, then an HTML page with HTTP 200. API: the call runs, then the
    /// same (unlike `NotJson`, which answers before the call runs).
    StoredThenHtml,
    /// Uploads: stored, then a body that is not valid JSON (a truncated object with a
    /// stray token). API: the call runs, then the same.
    StoredThenBadJson,
    /// Uploads: stored, then the reply is cut short mid-JSON: the headers promise a
    /// `Content-Length` larger than the bytes written, then the connection closes.
    /// API: the call runs, then the same.
    StoredThenCut,
}

impl Fault {
    /// Per-file rejection "0:0:0:unallowed video extension" (prefixed, as the real host sends it).
    pub fn unallowed_extension() -> Fault {
        Fault::RejectFilePrefixed("unallowed video extension".to_owned())
    }

    /// Per-file rejection "0:0:0:too many files uploaded last 24h" (account-wide,
    /// passes with time; prefixed, as the real host sends it).
    pub fn too_many_last_24h() -> Fault {
        Fault::RejectFilePrefixed("too many files uploaded last 24h".to_owned())
    }

    /// A malformed reply after the request took effect (`StoredThen*`).
    pub(crate) fn is_malformed_reply(&self) -> bool {
        matches!(
            self,
            Fault::StoredThenArray
                | Fault::StoredThenHtml
                | Fault::StoredThenBadJson
                | Fault::StoredThenCut
        )
    }

    /// A fault answered by the "proxy" before the application sees the request.
    pub(crate) fn is_http(&self) -> bool {
        matches!(
            self,
            Fault::Http502 | Fault::Http503 | Fault::Http504 | Fault::Http429 | Fault::NotJson
        )
    }

    /// Whether this fault means anything at that point; a rule is only consumed
    /// (a `Times` count decremented) where it can take effect.
    fn applies_at(&self, point: Point<'_>) -> bool {
        match self {
            Fault::Http502
            | Fault::Http503
            | Fault::Http429
            | Fault::Http504
            | Fault::NotJson
            | Fault::StatusAsString
            | Fault::StoredThenArray
            | Fault::StoredThenHtml
            | Fault::StoredThenBadJson
            | Fault::StoredThenCut
            | Fault::Delay(_) => true,
            Fault::RateLimited | Fault::JsonError { .. } => matches!(point, Point::Api(_)),
            Fault::NoServers => matches!(point, Point::Api("upload/server")),
            Fault::DropMidUpload
            | Fault::LoseReply
            | Fault::StoredThen502
            | Fault::RejectFile(_)
            | Fault::RejectFilePrefixed(_)
            | Fault::SlowRead { .. } => matches!(point, Point::Upload),
        }
    }
}

/// When a rule fires.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// Every matching request.
    Always,
    /// The next n matching requests (for `RejectFile*`: the next n file parts); then the rule is removed.
    Times(u32),
    /// Each matching request with this probability, drawn from the host's seeded RNG.
    Probability(f64),
}

/// Which requests a rule looks at.
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    /// API calls and uploads.
    All,
    /// Every API call under `/api/`.
    Api,
    /// One API endpoint, named as in the path after `/api/`, e.g. `"file/list"`;
    /// `"upload"` names the upload listener.
    Endpoint(String),
    /// Upload POSTs on the upload listener.
    Upload,
}

impl Scope {
    /// Shorthand for `Scope::Endpoint(path.to_owned())`.
    pub fn endpoint(path: &str) -> Scope {
        Scope::Endpoint(path.to_owned())
    }

    fn matches(&self, point: Point<'_>) -> bool {
        match (self, point) {
            (Scope::All, _) => true,
            (Scope::Api, Point::Api(_)) => true,
            (Scope::Endpoint(e), Point::Api(p)) => e == p,
            (Scope::Endpoint(e), Point::Upload) => e == "upload",
            (Scope::Upload, Point::Upload) => true,
            _ => false,
        }
    }
}

/// A fault, when it fires, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    pub fault: Fault,
    pub trigger: Trigger,
    pub scope: Scope,
}

/// Where a request is being handled, to match rules against.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Point<'a> {
    /// An API call; the endpoint as in the path after `/api/`.
    Api(&'a str),
    /// An upload POST.
    Upload,
}

/// The live rule list of a host.
#[derive(Debug)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
    rng: Mutex<StdRng>,
}

impl Faults {
    pub(crate) fn new(seed: u64) -> Faults {
        Faults {
            rules: Mutex::new(Vec::new()),
            // A different stream from the one that makes codes, so adding a
            // probabilistic fault does not change the codes a test sees.
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15)),
        }
    }

    /// Adds a rule after the existing ones (earlier rules are tried first).
    pub fn add(&self, rule: FaultRule) {
        lock(&self.rules).push(rule);
    }

    /// Adds a rule that fires on every matching request.
    pub fn always(&self, fault: Fault, scope: Scope) {
        self.add(FaultRule {
            fault,
            trigger: Trigger::Always,
            scope,
        });
    }

    /// Adds a rule that fires on the next `n` matching requests.
    pub fn times(&self, fault: Fault, scope: Scope, n: u32) {
        self.add(FaultRule {
            fault,
            trigger: Trigger::Times(n),
            scope,
        });
    }

    /// Adds a rule that fires with probability `p` (seeded, so runs repeat).
    pub fn probability(&self, fault: Fault, scope: Scope, p: f64) {
        self.add(FaultRule {
            fault,
            trigger: Trigger::Probability(p),
            scope,
        });
    }

    /// Removes every rule.
    pub fn clear(&self) {
        lock(&self.rules).clear();
    }

    /// The rules still in force (exhausted `Times` rules are gone).
    pub fn rules(&self) -> Vec<FaultRule> {
        lock(&self.rules).clone()
    }

    /// The first rule at `point` whose fault passes `wanted` and whose trigger fires.
    pub(crate) fn fire(&self, point: Point<'_>, wanted: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let mut rules = lock(&self.rules);
        let mut i = 0;
        while i < rules.len() {
            let rule = &mut rules[i];
            if rule.scope.matches(point) && rule.fault.applies_at(point) && wanted(&rule.fault) {
                match &mut rule.trigger {
                    Trigger::Always => return Some(rule.fault.clone()),
                    Trigger::Times(n) => {
                        if *n > 0 {
                            *n -= 1;
                            let fault = rule.fault.clone();
                            if *n == 0 {
                                rules.remove(i);
                            }
                            return Some(fault);
                        }
                        rules.remove(i);
                        continue;
                    }
                    Trigger::Probability(p) => {
                        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
                        if lock(&self.rng).random_bool(p) {
                            return Some(rule.fault.clone());
                        }
                    }
                }
            }
            i += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_rule_is_consumed_only_where_it_applies() {
        let f = Faults::new(1);
        f.times(Fault::NoServers, Scope::Api, 1);
        assert_eq!(f.fire(Point::Api("file/list"), |_| true), None);
        assert_eq!(f.rules().len(), 1);
        assert_eq!(
            f.fire(Point::Api("upload/server"), |_| true),
            Some(Fault::NoServers)
        );
        assert!(f.rules().is_empty());
    }

    #[test]
    fn endpoint_scope_and_probability() {
        let f = Faults::new(7);
        f.always(Fault::Http502, Scope::endpoint("file/list"));
        assert_eq!(f.fire(Point::Api("file/info"), Fault::is_http), None);
        assert_eq!(
            f.fire(Point::Api("file/list"), Fault::is_http),
            Some(Fault::Http502)
        );
        f.clear();
        f.probability(Fault::Http503, Scope::All, 0.5);
        let hits = (0..200)
            .filter(|_| f.fire(Point::Upload, Fault::is_http).is_some())
            .count();
        assert!((50..150).contains(&hits), "{hits}");
    }
}
