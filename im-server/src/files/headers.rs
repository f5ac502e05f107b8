//! The HTTP header grammar of the file routes: byte ranges, entity tags,
//! `Content-Disposition` (RFC 6266 / RFC 8187) and percent-encoded names.

use std::ops::Range;

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RangeAsk {
    /// No usable range (absent, not `bytes=`, several ranges, malformed):
    /// the whole file, 200.
    Whole,
    /// One satisfiable range, 206.
    Part(Range<u64>),
    /// A range wholly past the end, 416.
    Unsatisfiable,
}

/// Parses a single-range `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`).
/// Several ranges are answered with the whole file, which RFC 9110 allows.
pub(crate) fn parse_range(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-n: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part(size.saturating_sub(n)..size)
            }
        }
        (false, Some(start), end) if last.trim().is_empty() || end.is_some() => {
            if let Some(end) = end
                && end < start
            {
                return RangeAsk::Whole;
            }
            if start >= size {
                return RangeAsk::Unsatisfiable;
            }
            let end = end.map_or(size, |e| e.saturating_add(1).min(size));
            RangeAsk::Part(start..end)
        }
        _ => RangeAsk::Whole,
    }
}

/// True if an `If-None-Match` header matches the entity tag `etag` (quoted).
pub(crate) fn none_match(header: Option<&str>, etag: &str) -> bool {
    header.is_some_and(|h| {
        h.split(',').any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
        })
    })
}

/// `Content-Disposition` for a stored (sanitized) name: an ASCII fallback
/// in `filename` and the exact UTF-8 name in `filename*` (RFC 8187).
pub(crate) fn content_disposition(inline: bool, name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{}; filename=\"{fallback}\"; filename*=UTF-8''{}",
        if inline { "inline" } else { "attachment" },
        percent_encode(name)
    )
}

/// Percent-encodes everything but RFC 8187's `attr-char`.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (invalid ones are kept as they are); the bytes are
/// read as UTF-8, invalid sequences replaced.
pub(crate) fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && i + 2 < s.len()
            && let Ok(b) = u8::from_str_radix(std::str::from_utf8(&s[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file name of a `Content-Disposition` request header: `filename*`
/// (`UTF-8''…`) if present, else `filename` (quoted or not).
pub(crate) fn disposition_name(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut plain = None;
    for param in text.split(';').map(str::trim) {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "filename*" => {
                let value = value.trim();
                let encoded = value.split_once("''").map_or(value, |(_, v)| v);
                return Some(percent_decode(encoded.as_bytes()));
            }
            "filename" => plain = Some(value.trim().trim_matches('"').to_owned()),
            _ => {}
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeAsk::*;
        assert_eq!(parse_range(None, 100), Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Part(0..10));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Part(90..100));
        assert_eq!(parse_range(Some("bytes=90-500"), 100), Part(90..100));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Part(90..100));
        assert_eq!(parse_range(Some("bytes=-500"), 100), Part(0..100));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 100), Whole);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), Whole);
        assert_eq!(parse_range(Some("bytes=x-1"), 100), Whole);
        assert_eq!(parse_range(Some("bytes=1-x"), 100), Whole);
    }

    #[test]
    fn etags_and_names() {
        assert!(none_match(Some("\"abc\""), "\"abc\""));
        assert!(none_match(Some("W/\"x\", \"abc\""), "\"abc\""));
        assert!(none_match(Some("*"), "\"abc\""));
        assert!(!none_match(Some("\"abd\""), "\"abc\""));
        assert_eq!(
            content_disposition(false, "résumé \"v2\".pdf"),
            "attachment; filename=\"r_sum_ _v2_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22.pdf"
        );
        assert_eq!(percent_decode(b"a%20b%zz%C3%A9%"), "a b%zzé%");
        assert_eq!(
            disposition_name(b"attachment; filename=\"x.txt\"; filename*=UTF-8''%C3%A9.txt").as_deref(),
            Some("é.txt")
        );
        assert_eq!(
            disposition_name(b"form-data; filename=\"a b.png\"").as_deref(),
            Some("a b.png")
        );
    }
}
