//! The `[[sync]]` entries: local folders that exist and do not overlap,
//! remote folder paths, tags, and the trash folder of `on_local_delete`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::{ConfigError, Ctx, LocalDeletePolicy, NewVersionPolicy, RawSync, SyncEntry, line_col};

pub(super) fn check_syncs(
    ctx: &Ctx<'_>,
    base: &Path,
    entries: Vec<Spanned<RawSync>>,
    host_names: &[String],
) -> Result<Vec<SyncEntry>, ConfigError> {
    if entries.is_empty() {
        return Err(ctx.err(
            ctx.text.len()..ctx.text.len(),
            "no [[sync]] entry, expected at least one [[sync]] table with local = \"/path/to/folder\"",
        ));
    }
    // (canonical local, span of its value) of the entries seen so far.
    let mut seen: Vec<(PathBuf, Range<usize>)> = Vec::new();
    let mut out = Vec::new();
    for entry in entries {
        let entry_span = entry.span();
        let e = entry.into_inner();
        let Some(local) = e.local else {
            return Err(ctx.err(
                entry_span,
                "missing local in [[sync]], expected the path of the local folder to mirror",
            ));
        };
        let path = base.join(local.get_ref());
        let canonical = match std::fs::canonicalize(&path) {
            Ok(p) if p.is_dir() => p,
            Ok(_) => {
                return Err(ctx.err(
                    local.span(),
                    format!(
                        "sync folder {} is not a directory, expected a directory",
                        path.display()
                    ),
                ));
            }
            Err(err) => {
                return Err(ctx.err(
                    local.span(),
                    format!(
                        "sync folder {} cannot be used: {err}; expected an existing directory",
                        path.display()
                    ),
                ));
            }
        };
        // Nested roots would see each file twice and upload it twice.
        if let Some((other, other_span)) = seen
            .iter()
            .find(|(other, _)| canonical.starts_with(other) || other.starts_with(&canonical))
        {
            let (line, _) = line_col(ctx.text, other_span.start);
            return Err(ctx.err(
                local.span(),
                format!(
                    "sync folder {} overlaps {} (the [[sync]] at line {line}), expected folders that are not inside one another",
                    canonical.display(),
                    other.display()
                ),
            ));
        }
        seen.push((canonical.clone(), local.span()));

        let remote = remote_path(ctx, "remote", &e.remote)?;

        let mut tags = Vec::new();
        for tag in e.tags {
            let t = tag.get_ref().trim();
            // The API takes tags as one comma-separated field.
            if t.is_empty() || t.contains(',') {
                return Err(ctx.err(
                    tag.span(),
                    "invalid tag in [[sync]] tags, expected a non-empty word without commas",
                ));
            }
            tags.push(t.to_string());
        }

        let on_local_delete = *e.on_local_delete.get_ref();
        let trash_span = e.trash.as_ref().map(|t| t.span());
        let trash = match e.trash {
            Some(t) if !t.get_ref().trim().is_empty() => {
                let trash = remote_path(ctx, "trash", &t)?;
                if trash == remote {
                    return Err(ctx.err(
                        t.span(),
                        "trash is the mirrored folder itself, expected another remote folder",
                    ));
                }
                Some(trash)
            }
            _ => None,
        };
        let needs_trash = |span: Option<std::ops::Range<usize>>, what: &str| {
            ctx.err(
                trash_span.clone().or(span).unwrap_or(0..0),
                format!("{what} needs a trash folder, expected trash = \"path/of/remote/folder\""),
            )
        };
        if on_local_delete == LocalDeletePolicy::Trash && trash.is_none() {
            return Err(needs_trash(
                Some(e.on_local_delete.span()),
                "on_local_delete = \"trash\"",
            ));
        }
        let on_new_version = match e.on_new_version {
            Some(p) if *p.get_ref() == NewVersionPolicy::Trash && trash.is_none() => {
                return Err(needs_trash(Some(p.span()), "on_new_version = \"trash\""));
            }
            Some(p) => *p.get_ref(),
            None if trash.is_some() => NewVersionPolicy::Trash,
            None => NewVersionPolicy::Keep,
        };
        if let Some(span) = trash_span.filter(|_| {
            trash.is_some()
                && on_local_delete == LocalDeletePolicy::Keep
                && on_new_version == NewVersionPolicy::Keep
        }) {
            let (line, column) = line_col(ctx.text, span.start);
            tracing::warn!(
                "{}:{line}:{column}: trash is set but neither on_local_delete nor on_new_version is \"trash\"; it is not used",
                ctx.path.display()
            );
        }

        let hosts = match e.hosts {
            None => host_names.to_vec(),
            Some(list) => check_sync_hosts(ctx, list, host_names)?,
        };
        out.push(SyncEntry {
            hosts,
            local: canonical,
            remote,
            public: e.public,
            adult: e.adult,
            cat_id: e.cat_id,
            tags,
            on_remote_delete: e.on_remote_delete,
            on_expired: e.on_expired,
            on_local_delete,
            on_new_version,
            trash,
            exclude: e.exclude,
            adopt_existing: e.adopt_existing,
        });
    }
    Ok(out)
}

/// `hosts = [...]` of a `[[sync]]`: names of configured hosts, each once.
fn check_sync_hosts(
    ctx: &Ctx<'_>,
    list: Spanned<Vec<Spanned<String>>>,
    host_names: &[String],
) -> Result<Vec<String>, ConfigError> {
    let span = list.span();
    let list = list.into_inner();
    if list.is_empty() {
        return Err(ctx.err(
            span,
            format!(
                "empty hosts list in [[sync]], expected some of {} (or no hosts key: every host)",
                host_names.join(", ")
            ),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for name in list {
        if !host_names.contains(name.get_ref()) {
            return Err(ctx.err(
                name.span(),
                format!(
                    "unknown host {:?} in [[sync]] hosts, expected one of {}",
                    name.get_ref(),
                    host_names.join(", ")
                ),
            ));
        }
        if out.contains(name.get_ref()) {
            return Err(ctx.err(
                name.span(),
                format!(
                    "host {:?} is listed twice in [[sync]] hosts",
                    name.get_ref()
                ),
            ));
        }
        out.push(name.into_inner());
    }
    Ok(out)
}

/// "Movies/2024" -> ["Movies", "2024"]; "" or "/" -> [] (the account root).
/// Leading and trailing slashes are forgiven; empty, "." and ".." components
/// are not, since the host has no such folders.
fn remote_path(
    ctx: &Ctx<'_>,
    name: &str,
    value: &Spanned<String>,
) -> Result<Vec<String>, ConfigError> {
    let path = value.get_ref().trim().trim_matches('/');
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<String> = path.split('/').map(str::to_string).collect();
    if parts
        .iter()
        .any(|p| p.trim().is_empty() || p == "." || p == "..")
    {
        return Err(ctx.err(
            value.span(),
            format!("invalid {name} folder path \"{}\", expected folder names separated by /, like \"Movies/2024\"", value.get_ref()),
        ));
    }
    Ok(parts)
}
