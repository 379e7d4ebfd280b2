//! Relative paths inside a sync folder, as the store keeps them (`/`-separated,
//! no leading slash): at the bottom of the layers, shared by store and engine.

/// The directory part of a relative path ("" at the root of the sync folder).
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
