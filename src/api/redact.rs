//! Keeping the API key out of everything a human or a log can see.
//!
//! The key travels in query strings and form fields, so any URL, reqwest
//! error or host message that is shown goes through here first.

use super::ApiKey;

/// Replace every occurrence of the key, and the value of any `key=` query
/// parameter, with `<redacted>`.
pub fn redact(text: &str, key: &ApiKey) -> String {
    let mut out = if key.expose().is_empty() {
        text.to_string()
    } else {
        text.replace(key.expose(), "<redacted>")
    };
    // A URL that carries some other key (an old one after a reload).
    for marker in ["?key=", "&key="] {
        let mut from = 0;
        while let Some(pos) = out[from..].find(marker) {
            let start = from + pos + marker.len();
            let end = out[start..]
                .find(|c: char| c == '&' || c == '#' || c.is_whitespace() || c == '"' || c == ')')
                .map_or(out.len(), |e| start + e);
            if &out[start..end] != "<redacted>" {
                out.replace_range(start..end, "<redacted>");
            }
            from = start;
        }
    }
    out
}

/// A URL fit to show: the query string's key replaced.
pub fn redact_url(url: &url::Url, key: &ApiKey) -> String {
    redact(url.as_str(), key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_removed_from_urls_and_text() {
        let key = ApiKey::new("1nai5nbo4tbp9313s");
        let s = redact(
            "error sending request for url (https://h/api/file/info?key=1nai5nbo4tbp9313s&file_code=x)",
            &key,
        );
        assert!(!s.contains("1nai5nbo4tbp9313s"), "{s}");
        assert!(s.contains("file_code=x"), "{s}");
        let s = redact("https://h/api/x?a=1&key=otherkey99", &key);
        assert_eq!(s, "https://h/api/x?a=1&key=<redacted>");
    }
}
