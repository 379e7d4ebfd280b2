//! What a reconcile pass means for the store: a pure function from the
//! known files and the host's lists (deleted, DMCA, audit) to a plan of
//! changes, with the mass-deletion guard.

use std::collections::{HashMap, HashSet};

use crate::api::{DeletedBy, DeletedFile, DmcaEntry, FileInfo};
use crate::store::State;

/// What to do with a file that disappeared from the host (deleted or expired);
/// `[[sync]]` `on_remote_delete` and `on_expired` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletePolicy {
    /// Keep the record, do not upload again.
    Keep,
    /// Upload the local file again.
    Reupload,
}

/// A tracked file that has (or had) a code on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    pub id: i64,
    pub code: String,
    pub state: State,
    pub on_remote_delete: DeletePolicy,
    pub on_expired: DeletePolicy,
}

/// One change to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Gone from the host. `reupload` = queue the local file again as a new version.
    Deleted {
        id: i64,
        code: String,
        by: String,
        at: String,
        reupload: bool,
    },
    /// A DMCA deletion is scheduled: never uploaded again automatically.
    Dmca {
        id: i64,
        code: String,
        del_time: String,
    },
    /// The audit saw the file alive: refresh what the host says of it.
    Seen {
        id: i64,
        code: String,
        canplay: bool,
        title: String,
        fld_id: Option<u64>,
    },
}

/// The plan of a pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// How many `uploaded` files the plan moves out of `uploaded`.
    pub removals: usize,
    /// How many files were `uploaded` before the pass.
    pub uploaded: usize,
    /// The guard refused the plan (too many removals at once).
    pub blocked: bool,
}

/// Below this many removals the guard never fires: one expired file among
/// two is not a host glitch, and blocking it would need a manual `--force`.
pub const GUARD_MIN_REMOVALS: usize = 3;

fn policy_for(k: &Known, by: &str) -> DeletePolicy {
    if by == DeletedBy::Expired.as_str() {
        k.on_expired
    } else {
        k.on_remote_delete
    }
}

/// Decide what the host's lists mean. `audit` is file/info for every known
/// code (when an audit ran): 404 = deleted (the lists missed it), 451 = DMCA.
pub fn plan(
    known: &[Known],
    deleted: &[DeletedFile],
    dmca: &[DmcaEntry],
    audit: Option<&[FileInfo]>,
    max_delete_fraction: f64,
    force: bool,
) -> Plan {
    let by_code: HashMap<&str, &Known> = known.iter().map(|k| (k.code.as_str(), k)).collect();
    let mut out = Plan {
        uploaded: known.iter().filter(|k| k.state == State::Uploaded).count(),
        ..Plan::default()
    };
    let mut decided: HashSet<i64> = HashSet::new();

    // DMCA first: a file both scheduled and deleted stays `dmca`.
    for d in dmca {
        let Some(k) = by_code.get(d.file_code.as_str()) else {
            continue;
        };
        if k.state == State::Dmca || decided.contains(&k.id) {
            continue;
        }
        decided.insert(k.id);
        out.changes.push(Change::Dmca {
            id: k.id,
            code: k.code.clone(),
            del_time: d.del_time.clone(),
        });
    }
    for d in deleted {
        if let Some(k) = by_code.get(d.file_code.as_str()) {
            gone(k, d.deleted_by.as_str(), &d.deleted, &mut out, &mut decided);
        }
    }
    if let Some(audit) = audit {
        for info in audit {
            let Some(k) = by_code.get(info.file_code.as_str()) else {
                continue;
            };
            match info.status {
                404 => gone(k, "unknown", "", &mut out, &mut decided),
                451 => {
                    if k.state != State::Dmca && !decided.contains(&k.id) {
                        decided.insert(k.id);
                        out.changes.push(Change::Dmca {
                            id: k.id,
                            code: k.code.clone(),
                            del_time: String::new(),
                        });
                    }
                }
                _ => out.changes.push(Change::Seen {
                    id: k.id,
                    code: k.code.clone(),
                    canplay: info.canplay,
                    title: info.file_title.clone(),
                    fld_id: info.file_fld_id,
                }),
            }
        }
    }
    let state_of: HashMap<i64, State> = known.iter().map(|k| (k.id, k.state)).collect();
    out.removals = out
        .changes
        .iter()
        .filter(|c| match c {
            Change::Deleted { id, .. } | Change::Dmca { id, .. } => {
                state_of.get(id) == Some(&State::Uploaded)
            }
            Change::Seen { .. } => false,
        })
        .count();
    out.blocked = !force
        && out.removals >= GUARD_MIN_REMOVALS
        && out.removals as f64 > max_delete_fraction * out.uploaded as f64;
    out
}

fn gone(k: &Known, by: &str, at: &str, out: &mut Plan, decided: &mut HashSet<i64>) {
    if matches!(k.state, State::Dmca | State::RemoteDeleted) || !decided.insert(k.id) {
        return;
    }
    // Only a file still here locally can be uploaded again.
    let reupload = k.state == State::Uploaded && policy_for(k, by) == DeletePolicy::Reupload;
    out.changes.push(Change::Deleted {
        id: k.id,
        code: k.code.clone(),
        by: by.to_string(),
        at: at.to_string(),
        reupload,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeletePolicy::*;

    fn k(id: i64, state: State, on_del: DeletePolicy, on_exp: DeletePolicy) -> Known {
        Known {
            id,
            code: format!("code{id:08}"),
            state,
            on_remote_delete: on_del,
            on_expired: on_exp,
        }
    }

    fn del(id: i64, by: &str) -> DeletedFile {
        serde_json::from_value(serde_json::json!({
            "file_code": format!("code{id:08}"), "deleted_by": by, "deleted": "2026-01-01 00:00:00"
        }))
        .unwrap()
    }

    fn dmca(id: i64) -> DmcaEntry {
        serde_json::from_value(serde_json::json!({"file_code": format!("code{id:08}"), "del_time": "2026-01-02 00:00:00"})).unwrap()
    }

    fn info(id: i64, status: u64) -> FileInfo {
        serde_json::from_value(serde_json::json!({"file_code": format!("code{id:08}"), "status": status, "canplay": 1, "file_title": "t"})).unwrap()
    }

    fn known10() -> Vec<Known> {
        (1..=10)
            .map(|i| k(i, State::Uploaded, Keep, Reupload))
            .collect()
    }

    #[test]
    fn deletions_follow_the_policies() {
        let mut known = known10();
        known[1].on_remote_delete = Reupload;
        let p = plan(
            &known,
            &[
                del(1, "me"),
                del(2, "admin"),
                del(3, "expired"),
                del(99, "me"),
            ],
            &[],
            None,
            0.5,
            false,
        );
        assert!(!p.blocked);
        assert_eq!(p.removals, 3);
        let reup: Vec<(i64, bool)> = p
            .changes
            .iter()
            .map(|c| match c {
                Change::Deleted { id, reupload, .. } => (*id, *reupload),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(reup, [(1, false), (2, true), (3, true)]);
    }

    #[test]
    fn dmca_wins_and_sticks() {
        let mut known = known10();
        known[4].state = State::Dmca;
        let p = plan(
            &known,
            &[del(1, "me"), del(5, "admin")],
            &[dmca(1)],
            None,
            0.5,
            false,
        );
        assert_eq!(
            p.changes,
            [Change::Dmca {
                id: 1,
                code: "code00000001".into(),
                del_time: "2026-01-02 00:00:00".into()
            }],
            "dmca beats deletion; an already-dmca file deleted later stays dmca"
        );
    }

    #[test]
    fn audit_finds_missed_deletions_and_dmca() {
        let known = known10();
        let audit = [info(1, 404), info(2, 451), info(3, 200)];
        let p = plan(&known, &[], &[], Some(&audit), 0.5, false);
        assert!(matches!(p.changes[0], Change::Deleted { id: 1, ref by, .. } if by == "unknown"));
        assert!(matches!(p.changes[1], Change::Dmca { id: 2, .. }));
        assert!(matches!(
            p.changes[2],
            Change::Seen {
                id: 3,
                canplay: true,
                ..
            }
        ));
        assert_eq!(p.removals, 2);
    }

    #[test]
    fn guard_blocks_mass_deletion_unless_forced() {
        let known = known10();
        let six: Vec<DeletedFile> = (1..=6).map(|i| del(i, "admin")).collect();
        let cases = [
            // removals, fraction, force, blocked
            (&six[..5], 0.5, false, false), // exactly half is allowed
            (&six[..], 0.5, false, true),
            (&six[..], 0.5, true, false),
            (&six[..], 0.7, false, false),
            (&six[..2], 0.1, false, false), // below the absolute floor
        ];
        for (d, frac, force, blocked) in cases {
            let p = plan(&known, d, &[], None, frac, force);
            assert_eq!(
                p.blocked,
                blocked,
                "{} removals, {frac}, force {force}",
                d.len()
            );
        }
    }

    #[test]
    fn a_locally_deleted_file_is_not_reuploaded() {
        let known = [k(1, State::LocalDeleted, Reupload, Reupload)];
        let p = plan(&known, &[del(1, "me")], &[], None, 0.5, false);
        assert!(matches!(
            p.changes[0],
            Change::Deleted {
                reupload: false,
                ..
            }
        ));
        assert_eq!(p.removals, 0);
    }
}
