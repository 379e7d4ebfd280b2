//! Which names count as videos to upload, and which are skipped: hidden
//! files, partial downloads, rsync temporaries, other extensions, user globs.

use globset::{Glob, GlobSet, GlobSetBuilder};

/// Suffixes of files still being written by download tools.
const PARTIAL_SUFFIXES: &[&str] = &[
    ".part",
    ".!qb",
    ".crdownload",
    ".tmp",
    ".partial",
    ".download",
];

#[derive(Debug, thiserror::Error)]
#[error("bad exclude pattern {pattern:?}: {source}")]
pub struct FilterError {
    pub pattern: String,
    #[source]
    pub source: globset::Error,
}

#[derive(Debug, Clone)]
pub struct Filter {
    extensions: Vec<String>,
    exclude: GlobSet,
}

impl Filter {
    /// `extensions` lower case without dots; `exclude` globs are matched
    /// against the path relative to the sync root and against the bare name.
    pub fn new(extensions: &[String], exclude: &[String]) -> Result<Filter, FilterError> {
        let mut b = GlobSetBuilder::new();
        for p in exclude {
            let g = Glob::new(p).map_err(|source| FilterError {
                pattern: p.clone(),
                source,
            })?;
            b.add(g);
        }
        let exclude = b.build().map_err(|source| FilterError {
            pattern: exclude.join(", "),
            source,
        })?;
        Ok(Filter {
            extensions: extensions
                .iter()
                .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
                .collect(),
            exclude,
        })
    }

    /// Should a directory (relative path, '/'-separated) be walked?
    /// Hidden directories are skipped (`.Trash-1000`, `.sync`, ...).
    pub fn wants_dir(&self, rel_dir: &str) -> bool {
        let name = rel_dir.rsplit('/').next().unwrap_or(rel_dir);
        !name.starts_with('.') && !self.exclude.is_match(rel_dir) && !self.exclude.is_match(name)
    }

    /// Is this file (relative path) a video to upload?
    pub fn wants_file(&self, rel_path: &str) -> bool {
        if rel_path.split('/').any(|c| c.starts_with('.')) {
            // Hidden files, and rsync's `.name.XXXXXX` temporaries.
            return false;
        }
        let name = rel_path.rsplit('/').next().unwrap_or(rel_path);
        let lower = name.to_lowercase();
        if PARTIAL_SUFFIXES.iter().any(|s| lower.ends_with(s)) {
            return false;
        }
        let Some((stem, ext)) = lower.rsplit_once('.') else {
            return false;
        };
        if stem.is_empty() || !self.extensions.iter().any(|e| e == ext) {
            return false;
        }
        !self.exclude.is_match(rel_path) && !self.exclude.is_match(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let f = Filter::new(
            &["mp4".into(), "mkv".into()],
            &["*sample*".into(), "Extras/**".into()],
        )
        .unwrap();
        let cases = [
            ("a.mp4", true),
            ("A.MP4", true),
            ("dir/b.mkv", true),
            ("c.avi", false),
            (".hidden.mp4", false),
            (".a.mp4.Xy12Ab", false),
            ("dir/.sub/x.mp4", false),
            ("x.mp4.part", false),
            ("x.mp4.!qB", false),
            ("x.mp4.crdownload", false),
            ("x.tmp", false),
            ("movie-sample.mp4", false),
            ("Extras/x.mp4", false),
            ("noext", false),
            (".mp4", false),
            ("Ünïcødé 🎬.mp4", true),
        ];
        for (name, want) in cases {
            assert_eq!(f.wants_file(name), want, "{name}");
        }
        assert!(f.wants_dir("Shows"));
        assert!(!f.wants_dir("Shows/.Trash-1000"));
        assert!(Filter::new(&[], &["[".into()]).is_err());
    }
}
