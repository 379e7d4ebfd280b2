//! The title template grammar: `{stem}`, `{name}`, `{ext}`, `{dir}` as
//! placeholders, `{{` and `}}` as literal braces. One grammar for both sides:
//! `config` checks a template with `parse_title_template`, the uploader fills
//! it with `render_title` (through `engine::render_title`).

/// The placeholders a title template may use.
pub const TITLE_PLACEHOLDERS: &[&str] = &["stem", "name", "ext", "dir"];

/// Values for a title template's placeholders.
#[derive(Debug, Clone, Copy)]
pub struct TitleVars<'a> {
    /// File name without extension.
    pub stem: &'a str,
    /// File name.
    pub name: &'a str,
    /// Extension without the dot.
    pub ext: &'a str,
    /// Directory relative to the sync root, "/"-separated, "" at the root.
    pub dir: &'a str,
}

enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// `{stem}` etc. are placeholders; `{{` and `}}` are literal braces.
fn template_pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let expected =
        "expected one of {stem}, {name}, {ext}, {dir} (write {{ or }} for a literal brace)";
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        if i > 0 {
            pieces.push(Piece::Text(&rest[..i]));
        }
        let at = &rest[i..];
        if let Some(after) = at.strip_prefix("{{") {
            pieces.push(Piece::Text("{"));
            rest = after;
        } else if let Some(after) = at.strip_prefix("}}") {
            pieces.push(Piece::Text("}"));
            rest = after;
        } else if at.starts_with('}') {
            return Err(format!("unmatched }}, {expected}"));
        } else {
            let Some(end) = at.find('}') else {
                return Err(format!("unclosed {{, {expected}"));
            };
            let name = &at[1..end];
            if !TITLE_PLACEHOLDERS.contains(&name) {
                return Err(format!("unknown placeholder {{{name}}}, {expected}"));
            }
            pieces.push(Piece::Var(name));
            rest = &at[end + 1..];
        }
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// Checks a title template: known placeholders, balanced braces, not empty.
pub fn parse_title_template(template: &str) -> Result<(), String> {
    if template.trim().is_empty() {
        return Err("the template is empty, expected e.g. \"{stem}\"".to_string());
    }
    template_pieces(template).map(|_| ())
}

/// Fills a title template. A template that does not parse (validation
/// prevents it) renders as the stem, the default title.
pub fn render_title(template: &str, vars: &TitleVars<'_>) -> String {
    let Ok(pieces) = template_pieces(template) else {
        return vars.stem.to_string();
    };
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => *t,
            Piece::Var("stem") => vars.stem,
            Piece::Var("name") => vars.name,
            Piece::Var("ext") => vars.ext,
            Piece::Var("dir") => vars.dir,
            Piece::Var(_) => "",
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_template_renders() {
        let vars = TitleVars {
            stem: "Film",
            name: "Film.mkv",
            ext: "mkv",
            dir: "2024/May",
        };
        assert_eq!(render_title("{stem}", &vars), "Film");
        assert_eq!(
            render_title("{dir}: {name} ({ext}) {{x}}", &vars),
            "2024/May: Film.mkv (mkv) {x}"
        );
        assert_eq!(render_title("{bogus}", &vars), "Film");
    }
}
