//! Titles as the host stores them: the rewriting the server software applies
//! to every uploaded title, and the one comparison vidsync makes between a
//! title on the host and a local file.
//!
//! The rules are read from the server source (fs.pm; docs/host-api.md,
//! "Titles"): the host cuts a trailing media extension, turns runs of `_`
//! and `.` into spaces, drops the first ` x264 `-style codec word, turns
//! runs of `<>#"` and NUL into spaces, optionally sanitizes, and trims. vidsync sends titles already in that form ([`stored_title`]), so the
//! title the host keeps is known before the upload, and it compares host
//! titles with local ones only through [`same_title`].

/// Extension lists of the server's default configuration, in the order it
/// cuts them (each list once): `Movie.mp3.mp4` becomes `Movie`.
const VIDEO_EXT: &[&str] = &[
    "avi", "mkv", "mpg", "mpeg", "vob", "wmv", "flv", "mp4", "mov", "m4v", "m2v", "3gp", "webm",
    "ogv", "ogg",
];
const AUDIO_EXT: &[&str] = &[
    "mp3", "wav", "acc", "ogg", "flac", "alac", "wma", "aiff", "ac3", "am3", "m2v", "ape", "dts",
    "eac3", "gsm", "m4a", "mp2", "opus", "ra", "ram", "thd", "tta", "voc", "oga", "wv", "webm",
];
const IMAGE_EXT: &[&str] = &[
    "jpg", "jpeg", "png", "gif", "tiff", "bmp", "webp", "raw", "svg", "heif", "heic",
];
const ARCHIVE_EXT: &[&str] = &["zip", "rar", "7z", "tar", "gz", "bz2", "xz", "gzip"];

/// The codec words the host drops (the first one standing between spaces).
const CODECS: &[&str] = &["x264", "h264", "divx", "xvid"];

/// Perl's `\s` on a byte string (the server does not decode UTF-8).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C')
}

/// Perl's `\w` on a byte string: ASCII letters, digits and `_`.
fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Cut `.ext` at the end for the first `ext` of `list` that matches (case
/// does not matter), as `s/\.(a|b|c)$//i` does.
fn cut_extension(s: &mut String, list: &[&str]) {
    for ext in list {
        let n = ext.len() + 1;
        if s.len() >= n && s.is_char_boundary(s.len() - n) {
            let tail = &s[s.len() - n..];
            if tail.starts_with('.') && tail[1..].eq_ignore_ascii_case(ext) {
                s.truncate(s.len() - n);
                return;
            }
        }
    }
}

/// Replace every run of characters matching `hit` by `with`.
fn replace_runs(s: &str, hit: impl Fn(char) -> bool, with: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if hit(c) {
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

/// `s/\s+(x264|h264|divx|xvid)\s+/ /i`: the first codec word with white
/// space on both sides becomes one space.
fn drop_first_codec(s: &str) -> String {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    for (i, &(start, c)) in chars.iter().enumerate() {
        // A match starts at the first space of a run.
        if !is_space(c) || (i > 0 && is_space(chars[i - 1].1)) {
            continue;
        }
        let mut j = i;
        while j < chars.len() && is_space(chars[j].1) {
            j += 1;
        }
        let Some(&(word_at, _)) = chars.get(j) else {
            return s.to_string();
        };
        for codec in CODECS {
            let end = word_at + codec.len();
            if s.len() > end
                && s.is_char_boundary(end)
                && s[word_at..end].eq_ignore_ascii_case(codec)
            {
                let rest = &s[end..];
                let spaces = rest.chars().take_while(|c| is_space(*c)).count();
                if spaces > 0 {
                    return format!("{} {}", &s[..start], &rest[spaces..]);
                }
            }
        }
    }
    s.to_string()
}

/// One pass of the host's rewriting, exactly as the server applies it to a
/// `file_title` it receives.
pub fn host_title(title: &str, sanitize: bool) -> String {
    let mut s = title.to_string();
    for list in [VIDEO_EXT, AUDIO_EXT, IMAGE_EXT, ARCHIVE_EXT] {
        cut_extension(&mut s, list);
    }
    let s = replace_runs(&s, |c| c == '_', " ");
    let s = replace_runs(&s, |c| c == '.', " ");
    let s = drop_first_codec(&s);
    let s = replace_runs(&s, |c| matches!(c, '<' | '>' | '#' | '"' | '\0'), " ");
    let s = if sanitize {
        replace_runs(&s, |c| !(is_word(c) || c == '.' || c == '-'), "_")
    } else {
        s
    };
    s.trim_matches(is_space).to_string()
}

/// The title to send so that the host stores exactly what was sent: the
/// host's rewriting applied until nothing changes (one pass is not always
/// enough: `A x264 x264 B` loses one codec word per pass). An empty result
/// (a name made only of `_`, `#`, ...) becomes "video", which the host keeps.
pub fn stored_title(title: &str, sanitize: bool) -> String {
    let mut cur = host_title(title, sanitize);
    // Each pass that changes something makes the title shorter, so this
    // ends; the bound is a guard, not a limit ever reached in practice.
    for _ in 0..16 {
        let next = host_title(&cur, sanitize);
        if next == cur {
            break;
        }
        cur = next;
    }
    if cur.is_empty() {
        "video".to_string()
    } else {
        cur
    }
}

/// Is the title the host shows (`remote`, already unescaped) the title of
/// the local file whose rendered title is `ours`? Both are compared in the
/// host's stored form. Hosts with a narrow title column cut long titles: a
/// remote title of 50 or more characters that begins ours counts too.
pub fn same_title(remote: &str, ours: &str, sanitize: bool) -> bool {
    let remote = stored_title(remote.trim(), sanitize);
    let ours = stored_title(ours, sanitize);
    remote == ours || (remote.chars().count() >= 50 && ours.starts_with(&remote))
}

/// A tag as the host stores it: lower case, only letters, digits, `_`,
/// white space, `.` and `&` kept, and dropped (`None`) when 2 bytes or
/// shorter. Tags sent are compared with tags read back in this form.
pub fn host_tag(tag: &str) -> Option<String> {
    let t: String = tag
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_' || c.is_whitespace() || *c == '.' || *c == '&')
        .collect();
    (t.len() > 2).then_some(t)
}

/// Values the host's file/edit would silently skip (`<`, `>`, `"`, NUL) are
/// never sent: a folder name or tag holding them gets spaces instead.
pub fn edit_safe(value: &str) -> String {
    let s = replace_runs(value, |c| matches!(c, '<' | '>' | '"' | '\0'), " ");
    s.trim_matches(is_space).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_rewrites_titles() {
        let cases = [
            (
                "Show.Name.S01E02_1080p.x264.WEB.mkv",
                false,
                "Show Name S01E02 1080p WEB",
            ),
            (
                "Show.Name.S01E02.1080p.WEB-DL.x264.mkv",
                false,
                "Show Name S01E02 1080p WEB-DL x264",
            ),
            ("My_Holiday_2019.mp4", false, "My Holiday 2019"),
            ("Film (2008) [1080p].mkv", false, "Film (2008) [1080p]"),
            ("Movie.mp3.mp4", false, "Movie"),
            ("Movie.MKV", false, "Movie"),
            ("A__B...C", false, "A B C"),
            ("A x264 x264 B", false, "A x264 B"),
            // Runs become one space each; spaces beside them stay.
            ("Tom <b> & \"Jerry\" #1", false, "Tom  b  &  Jerry   1"),
            ("  padded\t", false, "padded"),
            ("Movie.ts", false, "Movie ts"),
            ("Show Name S01E02", true, "Show_Name_S01E02"),
            ("Film (2008) [1080p].mkv", true, "Film_2008_1080p_"),
            ("Crème brûlée.mp4", true, "Cr_me_br_l_e"),
        ];
        for (input, sanitize, want) in cases {
            assert_eq!(host_title(input, sanitize), want, "{input:?} {sanitize}");
        }
    }

    #[test]
    fn stored_titles_are_kept_as_sent() {
        let names = [
            "Show.Name.S01E02_1080p.x264.WEB.mkv",
            "A x264 x264 xvid B.mp4",
            "Movie.mp4.mkv",
            "___.mp4",
            "Film (2008) [1080p].mkv",
            "a.x264.b.h264.c",
        ];
        for sanitize in [false, true] {
            for n in names {
                let s = stored_title(n, sanitize);
                assert_eq!(host_title(&s, sanitize), s, "{n:?} {sanitize}");
                assert!(!s.is_empty());
            }
        }
        assert_eq!(stored_title("A x264 x264 B", false), "A B");
        assert_eq!(stored_title("___.mp4", false), "video");
    }

    #[test]
    fn titles_equal_under_the_rules_are_the_same_title() {
        assert!(same_title("A B", "A_B", false));
        assert!(same_title("A B", "A.B", false));
        assert!(same_title(
            "Show Name S01E02 1080p WEB",
            "Show.Name.S01E02_1080p.x264.WEB",
            false
        ));
        assert!(!same_title("A B C", "A B", false));
        let long = "x".repeat(80);
        assert!(same_title(&long[..60], &long, false));
        assert!(!same_title(&long[..20], &long, false));
    }

    #[test]
    fn tags_in_the_hosts_form() {
        assert_eq!(host_tag("Sci-Fi").as_deref(), Some("scifi"));
        assert_eq!(host_tag(" Tom & Jerry ").as_deref(), Some("tom & jerry"));
        assert_eq!(host_tag("hd"), None);
        assert_eq!(host_tag("<b>"), None);
        assert_eq!(host_tag("Ünï").as_deref(), Some("ünï"));
    }

    #[test]
    fn edit_values_lose_what_the_host_would_skip() {
        assert_eq!(edit_safe("My \"Best\" <Show>"), "My  Best   Show");
        assert_eq!(edit_safe("plain"), "plain");
    }
}
