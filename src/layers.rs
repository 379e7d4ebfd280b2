//! The layer rule, enforced: every top-level module sits in a layer and
//! refers (`use crate::...` or an inline `crate::...` path) only to
//! modules in layers below its own. Siblings in one layer do not refer to
//! each other, so there is no import circle anywhere. ARCHITECTURE.md
//! explains the layers; this table is their definition.

/// Bottom to top.
pub const LAYERS: &[&[&str]] = &[
    // Leaves: import nothing from the crate.
    &["clock", "lock", "relpath"],
    // The host's protocol and the database; neither knows the other.
    &["api", "store"],
    // Pure decisions over api and store types.
    &["engine"],
    // TOML -> the settings of the layers below.
    &["config"],
    // One host as a value (client, account, folders); systemd messages.
    &["host", "sdnotify"],
    // The shared state the tasks work on.
    &["context"],
    // The tasks; each takes a `&Context`.
    &[
        "watch",
        "scan",
        "fixup",
        "upload",
        "reconcile",
        "progress",
        "notify",
        "exporter",
    ],
    // Commands built from tasks.
    &["adopt", "report"],
    // Wiring: prepares the context and starts the tasks.
    &["daemon"],
    // The process: logging, signals, reload, the demo.
    &["service", "demo"],
];

#[cfg(test)]
mod tests {
    use super::LAYERS;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&module))
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// The crate modules a source text refers to: `crate::name` paths and
    /// `crate::{a, b::c}` groups, comments left out.
    pub(super) fn referenced(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(i) = rest.find("crate::") {
                let after = &rest[i + "crate::".len()..];
                if let Some(group) = after.strip_prefix('{') {
                    let inner = group.split('}').next().unwrap_or("");
                    for item in inner.split(',') {
                        let name: String = item
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if !name.is_empty() {
                            out.insert(name);
                        }
                    }
                } else {
                    let name: String = after
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
                rest = after;
            }
        }
        out
    }

    /// Which layer-rule breaks a tree of sources holds, as "from -> to".
    fn breaks(src: &Path) -> (Vec<String>, Vec<String>) {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        let mut broken = Vec::new();
        let mut unplaced = BTreeSet::new();
        for f in files {
            let rel = f.strip_prefix(src).unwrap_or(&f);
            let first = rel
                .components()
                .next()
                .map(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .trim_end_matches(".rs")
                        .to_string()
                })
                .unwrap_or_default();
            if first == "lib" || first == "main" || first == "layers" {
                continue;
            }
            let Some(own) = layer_of(&first) else {
                unplaced.insert(first);
                continue;
            };
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for target in referenced(&text) {
                if target == first {
                    continue;
                }
                match layer_of(&target) {
                    Some(l) if l < own => {}
                    _ => broken.push(format!("{} -> {target}", rel.display())),
                }
            }
        }
        broken.sort();
        (broken, unplaced.into_iter().collect())
    }

    #[test]
    fn every_module_refers_only_to_layers_below_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let (broken, unplaced) = breaks(&src);
        assert!(
            unplaced.is_empty(),
            "modules not in src/layers.rs LAYERS (place each new module in a layer): {unplaced:?}"
        );
        assert!(
            broken.is_empty(),
            "references that break the layer rule (a module may use only layers below it, see src/layers.rs):\n{}",
            broken.join("\n")
        );
    }

    #[test]
    fn the_scan_sees_a_reference_upward_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path();
        std::fs::create_dir(src.join("store")).unwrap();
        std::fs::write(src.join("store/mod.rs"), "use crate::clock::now_ms;\n").unwrap();
        std::fs::write(
            src.join("store/x.rs"),
            "// crate::daemon in a comment is fine\nfn f() { crate::engine::g(); }\n",
        )
        .unwrap();
        std::fs::write(src.join("api.rs"), "use crate::{clock, store::Stat};\n").unwrap();
        std::fs::write(src.join("newthing.rs"), "").unwrap();
        let (broken, unplaced) = breaks(src);
        assert_eq!(broken, ["api.rs -> store", "store/x.rs -> engine"]);
        assert_eq!(unplaced, vec!["newthing".to_string()]);
    }
}
