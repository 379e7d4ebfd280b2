//! Values with a rule of their own: each is checked inside serde (a
//! `Deserialize` or a `deserialize_with` function), so that toml locates
//! the error at the value itself; the message names the key through `KEY`.

use std::fmt;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::KEY;
use crate::engine::template::parse_title_template;

/// A humantime duration ("500ms", "10s", "5m", "1h 30m") that must not be
/// zero, as for every period and timeout: a zero tokio interval panics, a
/// zero timeout fails every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Period(pub(super) Duration);

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value: Duration = humantime_serde::deserialize(d)?;
        if value.is_zero() {
            return Err(D::Error::custom(format!(
                "{KEY} is zero, expected a positive duration like \"10s\""
            )));
        }
        Ok(Period(value))
    }
}

pub(super) fn period<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Period::deserialize(d).map(|p| p.0)
}

/// Reads a string and checks it while toml is still reading it: only then
/// does toml give the error the string's own place (a check after the read
/// gets the place of what holds it, for an array element the whole array).
fn checked_str<'de, D, T>(
    d: D,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Check<F>(F);
    impl<T, F: FnOnce(&str) -> Result<T, String>> serde::de::Visitor<'_> for Check<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(Check(check))
}

/// One video extension: lowercase, without the dot; scan compares
/// `Path::extension()` lowercased against the list.
struct Extension(String);

impl<'de> Deserialize<'de> for Extension {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |value| {
            let ext = value.trim();
            let ext = ext.strip_prefix('.').unwrap_or(ext).to_lowercase();
            if ext.is_empty() || ext.contains(['.', '/', '\\', '*']) {
                return Err(format!(
                    "invalid extension \"{value}\" in {KEY}, expected a name like \"mp4\""
                ));
            }
            Ok(Extension(ext))
        })
    }
}

/// The extensions without duplicates, in the order written.
pub(super) fn extensions<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let mut out: Vec<String> = Vec::new();
    for Extension(ext) in Vec::<Extension>::deserialize(d)? {
        if !out.contains(&ext) {
            out.push(ext);
        }
    }
    Ok(out)
}

/// A glob pattern checked to compile; the scanner builds the `GlobSet`.
struct Glob(String);

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |value| match globset::Glob::new(value) {
            Ok(_) => Ok(Glob(value.to_string())),
            Err(e) => Err(format!(
                "invalid glob in {KEY}: {e}; expected a pattern like \"*.nfo\" or \"Samples/**\""
            )),
        })
    }
}

pub(super) fn globs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let globs = Vec::<Glob>::deserialize(d)?;
    Ok(globs.into_iter().map(|Glob(g)| g).collect())
}

/// A fraction above 0 and at most 1.
pub(super) fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(d)?;
    // Written so that NaN fails too.
    if !(value > 0.0 && value <= 1.0) {
        return Err(D::Error::custom(format!(
            "{KEY} is {value}, expected a fraction above 0 and at most 1"
        )));
    }
    Ok(value)
}

/// A log filter, trimmed, checked by [`check_log_level`].
pub(super) fn log_level<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_str(d, |value| {
        let level = value.trim();
        check_log_level(level).map(|()| level.to_string()).map_err(|e| {
            format!(
                "invalid {KEY}: {e}; expected a level (off, error, warn, info, debug, trace) or a filter like \"vidsync=debug,info\""
            )
        })
    })
}

/// Stricter than `EnvFilter`, which reads a bare word as a target name: there
/// "ifno" would silently turn logging off, so every directive must end in a
/// level (`info`, `vidsync=debug`).
fn check_log_level(level: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if level.is_empty() {
        return Err("it is empty".to_string());
    }
    for directive in level.split(',').map(str::trim) {
        let lvl = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LEVELS.contains(&lvl.to_ascii_lowercase().as_str()) {
            return Err(format!("\"{directive}\" does not end in a level"));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A title template checked by the engine's grammar.
pub(super) fn title_template<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_str(d, |template| {
        parse_title_template(template)
            .map(|()| template.to_string())
            .map_err(|e| format!("invalid {KEY}: {e}"))
    })
}

/// Bytes per second: an integer, or a string with a unit ("10MB", "500KiB").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ByteRate(pub(super) u64);

impl<'de> Deserialize<'de> for ByteRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let expected = "bytes per second: an integer, or a string like \"10MB\" or \"500KiB\"";
        match Raw::deserialize(d).map_err(|_| D::Error::custom(format!("expected {expected}")))? {
            Raw::Number(n) => u64::try_from(n).map(ByteRate).map_err(|_| {
                D::Error::custom("expected a non-negative number of bytes per second")
            }),
            Raw::Text(s) => parse_byte_size(&s).map(ByteRate).map_err(D::Error::custom),
        }
    }
}

/// "10MB" -> 10_000_000, "500KiB" -> 512_000, "10k" -> 10_000, "0" -> 0.
///
/// `bytesize` reads the units with the meaning the config file documents:
/// decimal units (k, KB, M, MB, G, GB, any case) are powers of 1000, binary
/// units (KiB, MiB, GiB) powers of 1024. Around it we keep what it allows
/// but the file does not: a fraction ("1.5MB", which bytesize rounds) is an
/// error, and so is a size too large for 64 bits (which bytesize saturates).
pub(super) fn parse_byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let invalid = || {
        format!(
            "invalid byte size \"{s}\", expected a number of bytes with an optional unit: B, KB, MB, GB, KiB, MiB, GiB"
        )
    };
    if !t.starts_with(|c: char| c.is_ascii_digit()) || t.contains('.') {
        return Err(invalid());
    }
    let size: bytesize::ByteSize = t.parse().map_err(|_| invalid())?;
    // Only a saturated product reaches u64::MAX with a unit: it is odd, and
    // no unit but B divides it.
    if size.as_u64() == u64::MAX && t.parse::<u64>().is_err() {
        return Err(format!("byte size \"{s}\" is too large"));
    }
    Ok(size.as_u64())
}

/// `metrics.listen`: an IP address and port ("127.0.0.1:9464", "[::1]:9464"),
/// or `localhost:PORT` for 127.0.0.1. No other names: a listener that
/// depends on name resolution could end up on another interface than the
/// user meant, and metrics say more about a library than its owner may
/// want shown.
pub(super) fn listen_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<std::net::SocketAddr>, D::Error> {
    checked_str(d, |value| {
        let v = value.trim();
        let parsed = match v.strip_prefix("localhost:") {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p))),
            None => v.parse().ok(),
        };
        parsed.map(Some).ok_or_else(|| {
            format!(
                "invalid {KEY} \"{value}\", expected an IP address and port like \"127.0.0.1:9464\" or \"[::1]:9464\""
            )
        })
    })
}
