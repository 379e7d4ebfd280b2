//! Where the API key comes from: `api.key`, `api.key_file`, the systemd
//! credential or `$VIDSYNC_API_KEY`, in that order; and the secrets known
//! before parsing, so that every error message can be scrubbed of them.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{ApiKey, ConfigError, Ctx, Env, KeySource, RawApi};

/// Secrets known before the file is parsed, so that even a serde error about
/// a value in the wrong place is scrubbed: `api.key` and `api.key_file` read
/// leniently (an untyped table parses even when our structs would not),
/// `$CREDENTIALS_DIRECTORY/api_key` and `$VIDSYNC_API_KEY`. Read errors are
/// ignored here: validation reports them.
pub(super) fn early_secrets(text: &str, base: &Path, env: Env<'_>) -> Vec<String> {
    let mut secrets = Vec::new();
    let table = toml::from_str::<toml::Table>(text).ok();
    let api_str = |name: &str| {
        table
            .as_ref()
            .and_then(|t| t.get("api"))
            .and_then(|api| api.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    secrets.extend(api_str("key"));
    if let Some(file) = api_str("key_file") {
        secrets.extend(std::fs::read_to_string(base.join(file)).ok());
    }
    let credentials = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty());
    if let Some(dir) = &credentials {
        secrets.extend(std::fs::read_to_string(Path::new(dir).join("api_key")).ok());
    }
    secrets.extend(env("VIDSYNC_API_KEY"));
    // Every [[host]]'s key, from each of its sources.
    let hosts = table
        .as_ref()
        .and_then(|t| t.get("host"))
        .and_then(|h| h.as_array())
        .cloned()
        .unwrap_or_default();
    for h in &hosts {
        let s = |name: &str| h.get(name).and_then(|v| v.as_str()).map(str::to_string);
        secrets.extend(s("key"));
        if let Some(file) = s("key_file") {
            secrets.extend(std::fs::read_to_string(base.join(file)).ok());
        }
        if let Some(name) = s("name") {
            let names = KeyNames::host(&name);
            if let Some(dir) = &credentials {
                secrets
                    .extend(std::fs::read_to_string(Path::new(dir).join(&names.credential)).ok());
            }
            secrets.extend(env(&names.env));
        }
    }
    secrets.extend(super::notify::early_tokens(table.as_ref(), base, env));
    let mut secrets: Vec<String> = secrets
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    secrets.dedup();
    secrets
}

/// Where one host's key may come from, and how errors name its keys.
pub(super) struct KeyNames {
    /// The prefix of the table's keys in messages: `api.` or `host NAME: `.
    table: String,
    /// The file name under `$CREDENTIALS_DIRECTORY`.
    pub(super) credential: String,
    /// The environment variable.
    pub(super) env: String,
    /// A `[[host]]` (its variable is named in `KeySource::HostEnv`).
    host: bool,
}

impl KeyNames {
    /// `[api]`: `api_key` and `$VIDSYNC_API_KEY`, as before several hosts.
    pub(super) fn api() -> KeyNames {
        KeyNames {
            table: "api.".into(),
            credential: "api_key".into(),
            env: "VIDSYNC_API_KEY".into(),
            host: false,
        }
    }

    /// `[[host]]` `name`: `<name>_api_key` and `$VIDSYNC_<NAME>_API_KEY`.
    pub(super) fn host(name: &str) -> KeyNames {
        let upper: String = name
            .chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_uppercase()
                }
            })
            .collect();
        KeyNames {
            table: format!("host {name}: "),
            credential: format!("{name}_api_key"),
            env: format!("VIDSYNC_{upper}_API_KEY"),
            host: true,
        }
    }
}

/// Key precedence, first found wins: `key`, `key_file`,
/// `$CREDENTIALS_DIRECTORY/api_key` (`<name>_api_key` for a `[[host]]`),
/// `$VIDSYNC_API_KEY` (`$VIDSYNC_<NAME>_API_KEY`). Setting both `key` and
/// `key_file` is an error, since one of them would be silently ignored.
pub(super) fn resolve_key(
    ctx: &Ctx<'_>,
    api: &RawApi,
    api_span: Range<usize>,
    base: &Path,
    env: Env<'_>,
    names: &KeyNames,
) -> Result<(ApiKey, KeySource), ConfigError> {
    let t = &names.table;
    if let (Some(_), Some(file)) = (&api.key, &api.key_file) {
        let msg = if names.host {
            format!("{t}both key and key_file are set, expected only one of them")
        } else {
            "both api.key and api.key_file are set, expected only one of them".to_string()
        };
        return Err(ctx.err(file.span(), msg));
    }
    let (value, source, span) = if let Some(key) = &api.key {
        (key.get_ref().clone(), KeySource::Inline, key.span())
    } else if let Some(file) = &api.key_file {
        let path = base.join(file.get_ref());
        let value = std::fs::read_to_string(&path).map_err(|e| {
            ctx.err(
                file.span(),
                format!(
                    "cannot read {}key_file {}: {e}",
                    if names.host { t.as_str() } else { "api." },
                    path.display()
                ),
            )
        })?;
        warn_if_shared(&path);
        (value, KeySource::KeyFile(path), file.span())
    } else if let Some((value, path)) = credential(ctx, &api_span, env, &names.credential)? {
        (value, KeySource::Credentials(path), api_span)
    } else if let Some(value) = env(&names.env) {
        let source = if names.host {
            KeySource::HostEnv(names.env.clone())
        } else {
            KeySource::Env
        };
        (value, source, api_span)
    } else {
        let msg = if names.host {
            format!(
                "{t}no API key, expected one of key, key_file, $CREDENTIALS_DIRECTORY/{} or ${}",
                names.credential, names.env
            )
        } else {
            "no API key, expected one of api.key, api.key_file, $CREDENTIALS_DIRECTORY/api_key or $VIDSYNC_API_KEY".to_string()
        };
        return Err(ctx.err(api_span, msg));
    };
    // Trimmed: a key file usually ends with a newline.
    let value = value.trim();
    if value.is_empty() {
        return Err(ctx.err(
            span,
            format!("the API key from {source} is empty, expected the account's API key"),
        ));
    }
    // The key travels in URLs and form fields; whitespace inside it is a
    // pasting accident that would only show up later as "invalid key".
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ctx.err(
            span,
            format!("the API key from {source} contains whitespace, expected a single word"),
        ));
    }
    Ok((ApiKey::new(value), source))
}

/// `$CREDENTIALS_DIRECTORY/<file>`, set by systemd's `LoadCredential=`.
/// Absent file = not this source; present but unreadable = error.
fn credential(
    ctx: &Ctx<'_>,
    api_span: &Range<usize>,
    env: Env<'_>,
    file: &str,
) -> Result<Option<(String, PathBuf)>, ConfigError> {
    let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let path = Path::new(&dir).join(file);
    match std::fs::read_to_string(&path) {
        Ok(value) => Ok(Some((value, path))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ctx.err(
            api_span.clone(),
            format!("cannot read the credential {}: {e}", path.display()),
        )),
    }
}

/// A key file others can read is a leaked key on a shared machine: warn, but
/// run (refusing would break setups where the directory is what protects it).
fn warn_if_shared(path: &Path) {
    if let Some(mode) = shared_mode(path) {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{mode:o}"),
            "api.key_file can be read by group or others; chmod 600 it"
        );
    }
}

/// The file's permission bits when group or others may read it.
pub(super) fn shared_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o044 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}
