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
    if let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
        secrets.extend(std::fs::read_to_string(Path::new(&dir).join("api_key")).ok());
    }
    secrets.extend(env("VIDSYNC_API_KEY"));
    secrets.extend(super::notify::early_tokens(table.as_ref(), base, env));
    let mut secrets: Vec<String> = secrets
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    secrets.dedup();
    secrets
}

/// Key precedence, first found wins: `api.key`, `api.key_file`,
/// `$CREDENTIALS_DIRECTORY/api_key`, `$VIDSYNC_API_KEY`. Setting both `key` and `key_file` is an error, since
/// one of them would be silently ignored.
pub(super) fn resolve_key(
    ctx: &Ctx<'_>,
    api: &RawApi,
    api_span: Range<usize>,
    base: &Path,
    env: Env<'_>,
) -> Result<(ApiKey, KeySource), ConfigError> {
    if let (Some(_), Some(file)) = (&api.key, &api.key_file) {
        return Err(ctx.err(
            file.span(),
            "both api.key and api.key_file are set, expected only one of them",
        ));
    }
    let (value, source, span) = if let Some(key) = &api.key {
        (key.get_ref().clone(), KeySource::Inline, key.span())
    } else if let Some(file) = &api.key_file {
        let path = base.join(file.get_ref());
        let value = std::fs::read_to_string(&path).map_err(|e| {
            ctx.err(
                file.span(),
                format!("cannot read api.key_file {}: {e}", path.display()),
            )
        })?;
        warn_if_shared(&path);
        (value, KeySource::KeyFile(path), file.span())
    } else if let Some((value, path)) = credential(ctx, &api_span, env)? {
        (value, KeySource::Credentials(path), api_span)
    } else if let Some(value) = env("VIDSYNC_API_KEY") {
        (value, KeySource::Env, api_span)
    } else {
        return Err(ctx.err(
            api_span,
            "no API key, expected one of api.key, api.key_file, $CREDENTIALS_DIRECTORY/api_key or $VIDSYNC_API_KEY",
        ));
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

/// `$CREDENTIALS_DIRECTORY/api_key`, set by systemd's `LoadCredential=`.
/// Absent file = not this source; present but unreadable = error.
fn credential(
    ctx: &Ctx<'_>,
    api_span: &Range<usize>,
    env: Env<'_>,
) -> Result<Option<(String, PathBuf)>, ConfigError> {
    let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let path = Path::new(&dir).join("api_key");
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
