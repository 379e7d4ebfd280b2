//! Text rules of the real server: upload title rewriting, tag normalisation, and the
//! escaping applied to text set through the API (file/edit, folders, clone).
//!
//! An independent implementation of what the server software does (its `fs.pm`
//! `SaveFile`, `XUtils::addTagsToFile` and `Session::SecureStr`); the product's own
//! code is deliberately not used, so a client bug cannot hide in a shared helper.

/// Video extensions the real host accepts and cuts from titles (its `video_extensions`).
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "avi", "mkv", "mpg", "mpeg", "vob", "wmv", "flv", "mp4", "mov", "m4v", "m2v", "3gp", "webm",
    "ogv", "ogg",
];

/// Image extensions cut from titles (`image_extensions`).
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "gif", "tiff", "bmp", "webp", "raw", "svg", "heif", "heic",
];

/// Archive extensions cut from titles (`archive_extensions`).
const ARCHIVE_EXTENSIONS: &[&str] = &["zip", "rar", "7z", "tar", "gz", "bz2", "xz", "gzip"];

/// Perl's `\s` on a byte string.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Perl's `\w` on a byte string (the CGI values are not decoded): ASCII only.
fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Replaces every maximal run of chars matching `is_run` with `with`.
fn replace_runs(s: &str, is_run: impl Fn(char) -> bool, with: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if is_run(c) {
            if !in_run {
                out.push_str(with);
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out
}

/// `s/\.(ext1|ext2|...)$//i`: cuts one trailing `.ext` of the list.
fn cut_extension(s: &str, exts: &[&str]) -> String {
    if let Some((stem, ext)) = s.rsplit_once('.')
        && exts.iter().any(|e| e.eq_ignore_ascii_case(ext))
    {
        return stem.to_owned();
    }
    s.to_owned()
}

/// `s/\s+(x264|h264|divx|xvid)\s+/ /i`: the first codec word between white space.
fn cut_codec(s: &str) -> String {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_space(chars[i].1) {
            let start = chars[i].0;
            let mut j = i;
            while j < chars.len() && is_space(chars[j].1) {
                j += 1;
            }
            // Backtracking of `\s+` does not matter: the codec must follow white space.
            let rest = &s[chars.get(j).map_or(s.len(), |c| c.0)..];
            for codec in ["x264", "h264", "divx", "xvid"] {
                if rest.len() >= 4
                    && rest.is_char_boundary(4)
                    && rest[..4].eq_ignore_ascii_case(codec)
                {
                    let after = &rest[4..];
                    let ws = after.chars().take_while(|c| is_space(*c)).count();
                    if ws > 0 {
                        let tail: String = after.chars().skip(ws).collect();
                        return format!("{} {}", &s[..start], tail);
                    }
                }
            }
            i = j;
        } else {
            i += 1;
        }
    }
    s.to_owned()
}

/// The title the real host stores for an upload whose title (the `file_title` field,
/// or the file name when none was sent) is `title`: a trailing video (then image,
/// archive) extension cut, case-insensitively; every run of `_` and then of `.` made
/// one space; the first ` x264 `/` h264 `/` divx `/` xvid ` (any case, white space on
/// both sides) made one space; every run of `<`, `>`, `#`, `"`, NUL made one space;
/// with `sanitize` (the host's `sanitize_filename`) every run of chars other than
/// ASCII letters, digits, `.`, `_`, `-` made `_` (this comes after the steps above, so
/// the spaces they made become `_`); then white space trimmed at both ends.
///
/// `Show.Name.S01E02_1080p.x264.WEB.mkv` becomes `Show Name S01E02 1080p WEB`.
pub fn host_title(title: &str, sanitize: bool) -> String {
    let mut t = cut_extension(title, VIDEO_EXTENSIONS);
    // The deployment's `audio_extensions` is empty: `\.()$` cuts one trailing dot.
    if let Some(stem) = t.strip_suffix('.') {
        t = stem.to_owned();
    }
    t = cut_extension(&t, IMAGE_EXTENSIONS);
    t = cut_extension(&t, ARCHIVE_EXTENSIONS);
    t = replace_runs(&t, |c| c == '_', " ");
    t = replace_runs(&t, |c| c == '.', " ");
    t = cut_codec(&t);
    t = replace_runs(&t, |c| matches!(c, '<' | '>' | '#' | '"' | '\0'), " ");
    if sanitize {
        t = replace_runs(&t, |c| !(is_word(c) || c == '.' || c == '-'), "_");
    }
    t.trim_matches(is_space).to_owned()
}

/// What the real host does to an uploaded file's name before it may serve as the
/// title: `%DD` (two decimal digits, a quirk) decoded, other `%` made `_`, runs of
/// 2+ white space made one space, runs of `#`, `"`, NUL made `_`; with `sanitize`
/// every run of chars outside ASCII letters, digits, `_`, `-` and the range `.`..`<`
/// plus `>` made `_`.
pub fn host_file_name(name: &str, sanitize: bool) -> String {
    // Only a backslash path is stripped (`file_name_orig`); others arrive bare.
    let name = name.rsplit('\\').next().unwrap_or(name);
    let mut out = String::with_capacity(name.len());
    let chars: Vec<char> = name.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '%'
            && i + 2 < chars.len()
            && chars[i + 1].is_ascii_digit()
            && chars[i + 2].is_ascii_digit()
        {
            let v = chars[i + 1].to_digit(16).unwrap_or(0) * 16
                + chars[i + 2].to_digit(16).unwrap_or(0);
            out.push(char::from_u32(v).unwrap_or('_'));
            i += 3;
            continue;
        }
        out.push(if chars[i] == '%' { '_' } else { chars[i] });
        i += 1;
    }
    let mut collapsed = String::with_capacity(out.len());
    let mut run = String::new();
    for c in out.chars().chain(std::iter::once('\u{1}')) {
        if is_space(c) {
            run.push(c);
            continue;
        }
        // Only runs of 2+ white space chars collapse; a single one stays as it was.
        if run.chars().count() > 1 {
            collapsed.push(' ');
        } else {
            collapsed.push_str(&run);
        }
        run.clear();
        if c != '\u{1}' {
            collapsed.push(c);
        }
    }
    let mut t = replace_runs(&collapsed, |c| matches!(c, '#' | '"' | '\0'), "_");
    if sanitize {
        t = replace_runs(
            &t,
            |c| !(is_word(c) || c == '-' || ('.'..='<').contains(&c) || c == '>'),
            "_",
        );
    }
    t
}

/// The show name a title of the form `Name - S01E02...` gives as an extra tag
/// (`^(.+?)[\s\-_]+S\d\d?E\d\d?`, any case), before tag normalisation.
pub(crate) fn show_name(title: &str) -> Option<&str> {
    for (i, _) in title.char_indices().skip(1) {
        let rest = &title[i..];
        let seps = rest
            .chars()
            .take_while(|c| is_space(*c) || *c == '-' || *c == '_')
            .count();
        if seps == 0 {
            continue;
        }
        let tail: Vec<char> = rest.chars().skip(seps).collect();
        if episode_at(&tail) {
            return Some(&title[..i]);
        }
    }
    None
}

/// `S\d\d?E\d\d?` at the start of `t`, any case.
fn episode_at(t: &[char]) -> bool {
    let mut i = 0;
    if !t.first().is_some_and(|c| c.eq_ignore_ascii_case(&'s')) {
        return false;
    }
    i += 1;
    let digits = t[i..]
        .iter()
        .take(2)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 0 {
        return false;
    }
    // `\d\d?` backtracks to one digit when the second is needed by nothing else: the
    // next char must be `E`, so try both widths.
    (1..=digits).any(|d| {
        let j = i + d;
        t.get(j).is_some_and(|c| c.eq_ignore_ascii_case(&'e'))
            && t.get(j + 1).is_some_and(|c| c.is_ascii_digit())
    })
}

/// The tags a new file gets: those sent with it, then the show name its
/// stored title gives (as the upload script adds it), in stored form.
pub(crate) fn upload_tags(sent: &str, title: &str) -> Vec<String> {
    let mut tags = Vec::new();
    parse_tags(sent, &mut tags);
    if let Some(show) = show_name(title) {
        parse_tags(show, &mut tags);
    }
    tags
}

/// Tags as the host stores them from a comma-separated field: split on commas (with
/// any white space around them), lower-cased, chars other than letters, digits, `_`,
/// white space, `.` and `&` removed, tags of 2 bytes or fewer dropped, duplicates kept once.
pub(crate) fn parse_tags(field: &str, into: &mut Vec<String>) {
    for raw in field.split(',') {
        let tag: String = raw
            .trim_matches(is_space)
            .to_lowercase()
            .chars()
            .filter(|c| {
                c.is_alphanumeric() || *c == '_' || c.is_whitespace() || matches!(c, '.' | '&')
            })
            .collect();
        if tag.len() <= 2 || into.contains(&tag) {
            continue;
        }
        into.push(tag);
    }
}

/// The host's `SecureStr`, applied to text set through the API (file/edit titles and
/// descriptions, folder names, clone titles): `<`, `>`, `"`, `(`, `)` as entities
/// (then `&lt;br&gt;` back to `<br>`), NUL removed, `\` doubled, `..` as `&#46;&#46;`.
/// `&` and `'` are left as they are.
pub fn secure_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '(' => out.push_str("&#40;"),
            ')' => out.push_str("&#41;"),
            '\0' => {}
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.replace("&lt;br&gt;", "<br>")
        .replace("..", "&#46;&#46;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_like_the_real_host() {
        assert_eq!(
            host_title("Show.Name.S01E02_1080p.x264.WEB.mkv", false),
            "Show Name S01E02 1080p WEB"
        );
        assert_eq!(host_title("a__b..c.MP4", false), "a b c");
        assert_eq!(host_title("x X264 y xvid z", false), "x y xvid z");
        assert_eq!(host_title("  <a>#\"b  ", false), "a b");
        assert_eq!(host_title("Café (1).avi", true), "Caf_1_");
        assert_eq!(host_title("a.b.zip", false), "a b");
    }

    #[test]
    fn show_names_and_tags() {
        assert_eq!(show_name("Show Name S01E02 1080p"), Some("Show Name"));
        assert_eq!(show_name("Show-s1e2"), Some("Show"));
        assert_eq!(show_name("S01E02"), None);
        let mut tags = Vec::new();
        parse_tags(" One , two!,x, ONE,Fish & Chips", &mut tags);
        assert_eq!(tags, ["one", "two", "fish & chips"]);
    }

    #[test]
    fn secure_str_escapes_like_the_host() {
        assert_eq!(
            secure_str(r#"a<b>"(c)'&\..<br>"#),
            r#"a&lt;b&gt;&quot;&#40;c&#41;'&\\&#46;&#46;<br>"#
        );
    }
}
