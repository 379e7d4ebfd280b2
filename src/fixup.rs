//! Remote fix-ups, in their own task: tell the host about what the scanner
//! found locally. Renamed directories -> folder/edit; moved or renamed
//! uploaded files -> file/edit (folder and title); with the trash policy,
//! files deleted locally -> moved to the trash folder. Apart from the
//! scanner because these calls are paced: hundreds of renames must not hold
//! up the noticing of new files. Failures wait behind per-item retry gates.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::context::{Context, DirRename, Gate, Root};
use crate::engine::{self, rel_dir_of};
use crate::store::{FileRow, StoreError};

/// The fix-up task: runs when the scanner found something to tell the host,
/// and every 30 s for retries whose gates have opened. A timer round with
/// no retry waiting and no change in the store since the last pass is
/// skipped: the pass reads every uploaded file's place, which an idle
/// daemon with a large library must not do twice a minute.
pub async fn task(ctx: Arc<Context>, stop: CancellationToken) {
    let mut seen: Option<u64> = None;
    loop {
        let woken = tokio::select! {
            _ = stop.cancelled() => return,
            _ = ctx.fixups.notified() => true,
            _ = tokio::time::sleep(Duration::from_secs(30)) => false,
        };
        let changes = ctx.store.changes();
        if !woken && !ctx.gates.any_closed() && seen == Some(changes) {
            continue;
        }
        if ctx.host.account.key_ok() {
            seen = Some(changes);
            fix_up_all(&ctx).await;
        }
    }
}

/// Run the remote fix-ups of every root once.
pub async fn fix_up_all(ctx: &Context) {
    for root in &ctx.roots {
        if let Err(e) = fix_up_root(ctx, root).await {
            tracing::error!(root = %root.entry.local.display(), error = %e, "remote fix-ups failed");
        }
    }
}

async fn fix_up_root(ctx: &Context, root: &Root) -> Result<(), StoreError> {
    rename_dirs(ctx, root).await?;
    fix_remote_places(ctx, root).await?;
    trash_local_deletions(ctx, root).await?;
    trash_superseded(ctx, root).await
}

/// Rename the remote folders of the directories the scanner saw renamed,
/// then have the root walked again (the files below follow by path). A
/// rename that fails waits for its gate; both sides stay held back.
async fn rename_dirs(ctx: &Context, root: &Root) -> Result<(), StoreError> {
    for r in ctx.renames.of(root.id) {
        let gate = Gate::DirRename {
            root: root.id,
            dir: r.old.clone(),
        };
        if !ctx.gates.allowed(&gate) {
            continue;
        }
        let Some(fld_id) = ctx.store.folder(root.id, &r.old)? else {
            // Already done (or forgotten) by an earlier pass.
            ctx.renames.done(root.id, &r);
            ctx.request_rescan(root.id);
            continue;
        };
        match rename_dir(ctx, root, fld_id, &r).await {
            Ok(()) => {
                tracing::info!(from = %r.old, to = %r.new, fld_id, "directory renamed; remote folder renamed");
                ctx.gates.succeeded(&gate);
                ctx.store.rename_dir(root.id, &r.old, &r.new, now_ms())?;
                ctx.renames.done(root.id, &r);
                ctx.request_rescan(root.id);
            }
            Err(e) if e.class() == Some(crate::api::ErrorClass::Permanent) => {
                // The remote folder is gone or not ours any more: forget it;
                // the files get a new folder and are moved there one by one.
                tracing::warn!(from = %r.old, to = %r.new, error = %e, "cannot rename the remote folder; mirroring into a new one");
                ctx.gates.succeeded(&gate);
                ctx.store.forget_folder_tree(root.id, &r.old)?;
                ctx.renames.done(root.id, &r);
                ctx.request_rescan(root.id);
            }
            // (A new parent that could not be found or created is always
            // worth a retry, even in `scan`: the folder itself is fine.)
            Err(e) if !ctx.renames.holds() && !matches!(e, RenameError::Parent(_)) => {
                // `scan` must finish: mirror into a new folder instead.
                tracing::warn!(from = %r.old, to = %r.new, error = %e, "cannot rename the remote folder; moving its files one by one");
                ctx.store.forget_folder_tree(root.id, &r.old)?;
                ctx.renames.done(root.id, &r);
                ctx.request_rescan(root.id);
            }
            Err(e) => {
                tracing::warn!(from = %r.old, to = %r.new, error = %e, "cannot rename the remote folder; will retry");
                ctx.gates.failed(&gate);
                ctx.rescan_when_allowed(root.id, &gate);
            }
        }
    }
    Ok(())
}

/// Why a folder rename failed: resolving the new parent, or the edit.
#[derive(Debug, thiserror::Error)]
enum RenameError {
    #[error("cannot resolve the new parent folder: {0}")]
    Parent(#[from] crate::host::FolderError),
    #[error(transparent)]
    Edit(#[from] crate::api::ApiError),
}

impl RenameError {
    /// The class of the edit's error (a parent that cannot be resolved is
    /// always worth a retry).
    fn class(&self) -> Option<crate::api::ErrorClass> {
        match self {
            RenameError::Edit(e) => Some(e.class()),
            RenameError::Parent(_) => None,
        }
    }
}

/// folder/edit: the new name, and the new parent when the directory moved.
async fn rename_dir(
    ctx: &Context,
    root: &Root,
    fld_id: u64,
    r: &DirRename,
) -> Result<(), RenameError> {
    let new_name = r.new.rsplit('/').next().unwrap_or(&r.new);
    let old_parent = rel_dir_of(&r.old);
    let new_parent = rel_dir_of(&r.new);
    let mut edit = crate::api::FolderEdit {
        name: Some(crate::host::folders::remote_name(new_name)),
        ..Default::default()
    };
    if old_parent != new_parent {
        edit.parent_id = Some(ctx.folder_for(root, new_parent).await?);
    }
    let edited = ctx.host.client.folder_edit(fld_id, &edit).await;
    // Names under the old and new parents are not what was listed.
    ctx.host.folders.forget_listings();
    edited?;
    Ok(())
}

/// Uploaded files whose local path changed since they were placed on the
/// host (moved or renamed) are moved/retitled with file/edit. Self-healing:
/// `placed_path` changes only after a successful edit, so a failed edit is
/// tried again on the next pass. Files whose path did not change are left
/// alone, so a title edited by hand on the host is not fought over.
async fn fix_remote_places(ctx: &Context, root: &Root) -> Result<(), StoreError> {
    for row in ctx.store.misplaced(root.id)? {
        let (Some(code), Some(fld)) = (&row.file_code, row.fld_id) else {
            continue;
        };
        let gate = Gate::FilePlace(row.id);
        if !ctx.gates.allowed(&gate) {
            continue;
        }
        let title = ctx.title_for(&row.rel_path);
        let dir = rel_dir_of(&row.rel_path);
        let want_fld = match ctx.folder_for(root, dir).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(dir, error = %e, "cannot resolve remote folder");
                ctx.gates.failed(&gate);
                continue;
            }
        };
        // What is on the host is what we last set there.
        let old_title = row.title.clone().unwrap_or_default();
        if want_fld == fld && old_title == title {
            ctx.store
                .set_remote_place(row.id, fld, &title, &row.rel_path, now_ms())?;
            continue;
        }
        let edit = crate::api::FileEdit {
            title: (old_title != title).then(|| title.clone()),
            fld_id: (want_fld != fld).then_some(want_fld),
            ..Default::default()
        };
        match edit_keeping_tags(ctx, &root.entry.tags, std::slice::from_ref(code), &edit).await {
            Ok(()) => {
                tracing::info!(path = %row.rel_path, code = %code, fld_id = want_fld, title = %title, "moved/retitled on the host");
                ctx.gates.succeeded(&gate);
                ctx.store
                    .set_remote_place(row.id, want_fld, &title, &row.rel_path, now_ms())?;
            }
            Err(e) => {
                tracing::warn!(path = %row.rel_path, error = %e, "cannot move/retitle on the host; will retry");
                ctx.gates.failed(&gate);
            }
        }
    }
    Ok(())
}

/// Split a host's tag list ("a, b") into tags.
fn split_tags(s: &str) -> Vec<String> {
    s.split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The tags a file keeps through an edit: those the host reports (the
/// user's, the host's own show tag) and the sync entry's, once each, in the
/// form the host stores (so the check after the edit compares like with
/// like, and nothing file/edit would skip is sent).
fn merged_tags(host: &[String], entry: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in host.iter().chain(entry) {
        if let Some(t) = engine::host_tag(t)
            && !out.contains(&t)
        {
            out.push(t);
        }
    }
    out
}

/// file/edit that keeps each file's tags, then checks that it took.
///
/// On the real software every file/edit deletes all tags of the named
/// files and adds only the `tags` sent, so the tags are read first
/// (file/info, 50 codes a call) and sent again; files with different tags
/// go in separate edits. The host answers "true" whatever happened (a code
/// that is not ours, a value it skipped), so the result is verified with
/// file/info. Codes the host no longer has are left out.
pub async fn edit_keeping_tags(
    ctx: &Context,
    entry_tags: &[String],
    codes: &[String],
    edit: &crate::api::FileEdit,
) -> Result<(), crate::api::ApiError> {
    use std::collections::BTreeMap;
    let infos = ctx.host.client.file_info(codes).await?;
    let mut groups: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for info in infos.iter().filter(|i| i.status == 200) {
        if !codes.contains(&info.file_code) {
            continue;
        }
        let tags = merged_tags(&split_tags(&info.tags), entry_tags);
        groups.entry(tags).or_default().push(info.file_code.clone());
    }
    for (tags, group) in &groups {
        let mut e = edit.clone();
        e.tags = Some(tags.join(","));
        if let Some(t) = &e.title {
            e.title = Some(engine::edit_safe(t));
        }
        ctx.host.client.file_edit(group, &e).await?;
    }
    // Verify: the folder, the title and the tags are what was sent.
    let wanted: HashMap<&str, &Vec<String>> = groups
        .iter()
        .flat_map(|(tags, g)| g.iter().map(move |c| (c.as_str(), tags)))
        .collect();
    let after = ctx
        .host
        .client
        .file_info(&wanted.keys().map(|c| c.to_string()).collect::<Vec<_>>())
        .await?;
    for info in after.iter().filter(|i| i.status == 200) {
        let Some(tags) = wanted.get(info.file_code.as_str()) else {
            continue;
        };
        let mut have: Vec<String> = split_tags(&info.tags)
            .iter()
            .filter_map(|t| engine::host_tag(t))
            .collect();
        let mut want = (*tags).clone();
        have.sort_by_key(|t| t.to_lowercase());
        want.sort_by_key(|t| t.to_lowercase());
        let fld_ok = edit.fld_id.is_none_or(|f| info.file_fld_id == Some(f));
        let title_ok = edit
            .title
            .as_ref()
            // The host doubles a `\` in titles set by file/edit, and some
            // hosts cut long titles.
            .is_none_or(|t| {
                engine::same_title(
                    &info.file_title.trim().replace("\\\\", "\\"),
                    &engine::edit_safe(t),
                    ctx.config.api.sanitize_filename,
                )
            });
        let tags_ok = have.len() == want.len()
            && have
                .iter()
                .zip(&want)
                .all(|(a, b)| a.eq_ignore_ascii_case(b));
        if !(fld_ok && title_ok && tags_ok) {
            return Err(crate::api::ApiError::Protocol {
                endpoint: "file/edit".into(),
                detail: format!(
                    "the host did not apply the edit to {} (folder ok: {fld_ok}, title ok: {title_ok}, tags ok: {tags_ok})",
                    info.file_code
                ),
            });
        }
    }
    Ok(())
}

/// The root's trash folder on the host, found or created once (None while
/// that fails: its gate holds the next try back).
async fn trash_folder(ctx: &Context, root: &Root) -> Result<Option<u64>, StoreError> {
    let Some(trash) = &root.entry.trash else {
        return Ok(None);
    };
    let trash_path = trash.join("/");
    if let Some(id) = ctx.store.trash_folder(&trash_path)? {
        return Ok(Some(id));
    }
    let gate = Gate::TrashFolder(root.id);
    if !ctx.gates.allowed(&gate) {
        return Ok(None);
    }
    let mut id = 0;
    for name in trash {
        match crate::host::folders::find_or_create(
            &ctx.host.client,
            id,
            &crate::host::folders::remote_name(name),
            &trash_path,
        )
        .await
        {
            Ok((next, _)) => id = next,
            Err(e) => {
                tracing::warn!(error = %e, "cannot resolve the trash folder; will retry");
                ctx.gates.failed(&gate);
                return Ok(None);
            }
        }
    }
    ctx.store.set_trash_folder(&trash_path, id)?;
    Ok(Some(id))
}

/// With `on_local_delete = "trash"`, a file deleted locally is moved to the
/// entry's trash folder on the host (never deleted there).
async fn trash_local_deletions(ctx: &Context, root: &Root) -> Result<(), StoreError> {
    if root.entry.on_local_delete != crate::config::LocalDeletePolicy::Trash {
        return Ok(());
    }
    let rows = ctx.store.deleted_on_host_too(root.id)?;
    if rows.is_empty() {
        return Ok(());
    }
    let Some(trash_id) = trash_folder(ctx, root).await? else {
        return Ok(());
    };
    let to_move: Vec<(String, &FileRow)> = rows
        .iter()
        .filter(|r| r.fld_id != Some(trash_id))
        .filter_map(|r| Some((r.file_code.clone()?, r)))
        .collect();
    move_to_trash(ctx, root, Gate::Trash(root.id), trash_id, &to_move, |row| {
        tracing::info!(path = %row.rel_path, code = ?row.file_code, "deleted locally; moved to the trash folder on the host");
        ctx.store.record_trashed(row.id, trash_id, now_ms())
    })
    .await
}

/// With `on_new_version = "trash"`, the copy a new version replaced is
/// moved to the trash folder once the new version is on the host, so a
/// broken or outdated copy does not stay live beside it. The history
/// keeps both codes.
async fn trash_superseded(ctx: &Context, root: &Root) -> Result<(), StoreError> {
    if root.entry.on_new_version != crate::config::NewVersionPolicy::Trash {
        return Ok(());
    }
    let old = ctx.store.superseded_to_trash(root.id)?;
    if old.is_empty() {
        return Ok(());
    }
    let Some(trash_id) = trash_folder(ctx, root).await? else {
        return Ok(());
    };
    let to_move: Vec<(String, &crate::store::Superseded)> =
        old.iter().map(|s| (s.file_code.clone(), s)).collect();
    move_to_trash(ctx, root, Gate::TrashOld(root.id), trash_id, &to_move, |s| {
        tracing::info!(code = %s.file_code, "replaced by a new version; the old copy moved to the trash folder on the host");
        ctx.store.record_superseded_trashed(s, trash_id, now_ms())
    })
    .await
}

/// Move these codes to the trash folder, 50 a call (a deleted season costs
/// a call or two, not one per episode), recording each batch once done.
async fn move_to_trash<T>(
    ctx: &Context,
    root: &Root,
    gate: Gate,
    trash_id: u64,
    items: &[(String, &T)],
    done: impl Fn(&T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if !ctx.gates.allowed(&gate) {
        return Ok(());
    }
    for batch in items.chunks(crate::api::FILE_INFO_BATCH) {
        let codes: Vec<String> = batch.iter().map(|(c, _)| c.clone()).collect();
        let edit = crate::api::FileEdit {
            fld_id: Some(trash_id),
            ..Default::default()
        };
        match edit_keeping_tags(ctx, &root.entry.tags, &codes, &edit).await {
            Ok(()) => {
                ctx.gates.succeeded(&gate);
                for (_, item) in batch {
                    done(item)?;
                }
            }
            Err(e) => {
                ctx.gates.failed(&gate);
                tracing::warn!(files = batch.len(), error = %e, "cannot move to the trash folder; will retry");
                break;
            }
        }
    }
    Ok(())
}
