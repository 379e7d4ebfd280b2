//! `vidsync adopt`: local files with no upload on record whose copy is
//! already on the host (a lost database, another tool): list them
//! (`--dry-run`), adopt the certain ones, and settle ambiguous ones by hand
//! (`vidsync adopt PATH CODE`).
//!
//! The decision is the upload workers' own (`upload::find_copy`,
//! `engine::choose_adoption`); the command also looks in folders vidsync
//! created itself, which the workers skip as empty of anyone else's files. Adoption goes through `Store::adopt_if_idle`, which leaves a
//! row alone once a daemon has claimed it: the command is safe while `run`
//! runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::clock::now_ms;
use crate::config::Config;
use crate::context::{Context, Root};
use crate::engine::{self, Adoption};
use crate::store::{FileRow, Holder, State};

/// What `adopt` found for one file.
#[derive(Debug)]
enum Finding {
    Adopt { code: String, fld_id: u64 },
    Ambiguous { codes: Vec<String>, why: String },
    Upload(&'static str),
}

/// `vidsync adopt [--dry-run] [--host NAME] [PATH CODE]`: on every host,
/// or the one named (a CODE belongs to one host: with several, name it).
pub async fn run(
    config: Config,
    dry_run: bool,
    choice: Option<(PathBuf, String)>,
    host: Option<&str>,
) -> ExitCode {
    if choice.is_some() && host.is_none() && config.hosts.len() > 1 {
        eprintln!("vidsync: a file code belongs to one host: say which with --host NAME");
        return ExitCode::from(2);
    }
    if let Some(name) = host
        && config.host(name).is_none()
    {
        eprintln!("vidsync: no host named {name:?} in the config");
        return ExitCode::from(2);
    }
    let library = match Context::library(config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vidsync: {e}");
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let several = library.len() > 1;
    let mut worst = ExitCode::SUCCESS;
    for (ctx, _hints) in library {
        if host.is_some_and(|h| h != ctx.name()) {
            continue;
        }
        if several {
            println!("host {}:", ctx.name());
        }
        let code = run_host(ctx, dry_run, choice.clone()).await;
        if code != ExitCode::SUCCESS {
            worst = code;
        }
    }
    worst
}

async fn run_host(ctx: Context, dry_run: bool, choice: Option<(PathBuf, String)>) -> ExitCode {
    if let Err(e) = ctx.host.check_key().await {
        eprintln!("vidsync: cannot use the host: {e}");
        return ExitCode::from(if e.class() == crate::api::ErrorClass::KeyRejected {
            3
        } else {
            1
        });
    }
    if let Some((path, code)) = choice {
        return settle(&ctx, &path, &code, dry_run).await;
    }
    // A new database knows no files yet: record what is on disk (store
    // work only; a running daemon does this itself, and then the lock is
    // taken and the walk skipped).
    let lock = crate::context::try_lock_database(&ctx.config.state.database);
    if lock.is_some() {
        for root in &ctx.roots {
            let path = root.entry.local.clone();
            let filter = root.filter.clone();
            let walked = tokio::task::spawn_blocking(move || crate::scan::walk(&path, &filter))
                .await
                .unwrap_or_default();
            if let Err(e) = crate::scan::apply(
                &ctx,
                &crate::scan::Writers::default(),
                root,
                &walked.files,
                &walked.unreadable,
            ) {
                eprintln!("vidsync: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let mut ambiguous = 0;
    let mut adopted = 0;
    for root in &ctx.roots {
        let rows = match ctx.store.files_in_root(root.id) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("vidsync: {e}");
                return ExitCode::from(1);
            }
        };
        for row in rows {
            if !matches!(row.state, State::Waiting | State::Queued | State::Failed)
                || row.file_code.is_some()
                || (row.unknown_since.is_none() && ctx.store.ever_attempted(row.id).unwrap_or(true))
            {
                continue;
            }
            let finding = match look(&ctx, root, &row).await {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("vidsync: {}: {e}", row.path().display());
                    return ExitCode::from(1);
                }
            };
            let path = row.path();
            match finding {
                Finding::Adopt { code, fld_id } => {
                    if dry_run {
                        println!("adopt      {} -> {code}", path.display());
                        continue;
                    }
                    let title = ctx.title_for(&row.rel_path);
                    match ctx.store.adopt_if_idle(
                        row.id,
                        &code,
                        fld_id,
                        &title,
                        now_ms(),
                        "adopted (vidsync adopt)",
                        Holder::Nobody,
                    ) {
                        Ok(true) => {
                            adopted += 1;
                            println!("adopted    {} -> {code}", path.display());
                        }
                        Ok(false) => {
                            println!("busy       {} (the daemon is on it)", path.display())
                        }
                        Err(e) => {
                            eprintln!("vidsync: {e}");
                            return ExitCode::from(1);
                        }
                    }
                }
                Finding::Ambiguous { codes, why } => {
                    ambiguous += 1;
                    println!(
                        "ambiguous  {}: {} on the host ({why}); settle with: vidsync adopt {} CODE",
                        path.display(),
                        codes.join(", "),
                        shell_quote(&path)
                    );
                }
                Finding::Upload(why) => println!("upload     {} ({why})", path.display()),
            }
        }
    }
    drop(lock);
    if !dry_run {
        println!("{adopted} adopted, {ambiguous} ambiguous");
    }
    if ambiguous > 0 && !dry_run {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Find the remote folder (without creating it) and decide for one file.
async fn look(ctx: &Context, root: &Root, row: &FileRow) -> Result<Finding, crate::api::ApiError> {
    if !root.entry.adopt_existing && row.unknown_since.is_none() {
        return Ok(Finding::Upload("adopt_existing = false"));
    }
    let rel_dir = engine::rel_dir_of(&row.rel_path);
    let fld_id = match ctx.store.folder(root.id, rel_dir).ok().flatten() {
        Some(id) => Some(id),
        None => {
            let mut names = root.entry.remote.clone();
            names.extend(
                rel_dir
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
            crate::host::folders::find_path(&ctx.host.client, &names).await?
        }
    };
    let Some(fld_id) = fld_id else {
        return Ok(Finding::Upload("its folder is not on the host"));
    };
    let mut title = ctx.title_for(&row.rel_path);
    let mut fld_id = fld_id;
    if row.unknown_since.is_some() {
        // After a lost reply: where and under which title it was sent.
        fld_id = row.fld_id.unwrap_or(fld_id);
        title = row.title.clone().unwrap_or(title);
    }
    Ok(
        match crate::upload::find_copy(ctx, row, fld_id, &title, row.unknown_since).await? {
            Adoption::Adopt(code) => Finding::Adopt { code, fld_id },
            Adoption::Ambiguous { codes, why, .. } => Finding::Ambiguous { codes, why },
            Adoption::Nothing => Finding::Upload("no copy on the host"),
        },
    )
}

/// `vidsync adopt PATH CODE`: the user says which copy is this file's.
async fn settle(ctx: &Context, path: &Path, code: &str, dry_run: bool) -> ExitCode {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let row = ctx.roots.iter().find_map(|root| {
        let rel = abs.strip_prefix(&root.entry.local).ok()?;
        let rel = rel.to_str()?;
        ctx.store.file_by_path(root.id, rel).ok().flatten()
    });
    let Some(row) = row else {
        eprintln!(
            "vidsync: {} is not a tracked file (run `vidsync adopt --dry-run` first)",
            abs.display()
        );
        return ExitCode::from(1);
    };
    if row.file_code.is_some() {
        eprintln!("vidsync: {} already has a code", abs.display());
        return ExitCode::from(1);
    }
    if ctx.store.code_known(code).unwrap_or(true) {
        eprintln!("vidsync: {code} is already recorded for another file");
        return ExitCode::from(1);
    }
    // file/info answers for any existing code, ours or not: it says the
    // code exists and where it is.
    let info = match ctx.host.client.file_info(&[code.to_string()]).await {
        Ok(v) => v.into_iter().find(|i| i.file_code == code),
        Err(e) => {
            eprintln!("vidsync: cannot check {code} on the host: {e}");
            return ExitCode::from(1);
        }
    };
    let Some(info) = info.filter(|i| i.status == 200) else {
        eprintln!("vidsync: the host has no file {code}");
        return ExitCode::from(1);
    };
    let fld_id = info.file_fld_id.unwrap_or(0);
    // file/info answers for any account's file; file/list only lists ours.
    let q = crate::api::FileListQuery {
        fld_id: Some(fld_id),
        ..Default::default()
    };
    match ctx.host.client.file_list_all(&q).await {
        Ok(list) if list.iter().any(|f| f.file_code == code) => {}
        Ok(_) => {
            eprintln!("vidsync: {code} is not a file of this account");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("vidsync: cannot check {code} on the host: {e}");
            return ExitCode::from(1);
        }
    }
    if dry_run {
        println!("adopt      {} -> {code}", abs.display());
        return ExitCode::SUCCESS;
    }
    let title = info.file_title.clone();
    match ctx.store.adopt_if_idle(
        row.id,
        code,
        fld_id,
        &title,
        now_ms(),
        "adopted (chosen with vidsync adopt)",
        Holder::Nobody,
    ) {
        Ok(true) => {
            // Placed where the host has it; if that is not the file's
            // folder, the fix-ups move it.
            if ctx
                .store
                .folder(row.root_id, engine::rel_dir_of(&row.rel_path))
                .ok()
                .flatten()
                != Some(fld_id)
            {
                let _ = ctx.store.mark_misplaced(row.id);
            }
            println!("adopted    {} -> {code}", abs.display());
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!(
                "vidsync: {} is being uploaded right now; try again",
                abs.display()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("vidsync: {e}");
            ExitCode::from(1)
        }
    }
}

/// A path as a shell word, for the line the user copies.
fn shell_quote(p: &Path) -> String {
    let s = p.to_string_lossy();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
