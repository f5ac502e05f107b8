//! File names from clients, made safe to store and show.

/// Longest stored name, in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Turns a client's file name into one safe to store and display: only the
/// last path component is kept (after `/` or `\`), control and bidirectional
/// formatting characters are dropped, surrounding white space is trimmed,
/// `.` and `..` become empty, the result is cut to
/// [`MAX_FILE_NAME_BYTES`] on a character boundary, and an empty name
/// becomes `file`. The result is for display only: the server never uses a
/// name as a path.
///
/// ```
/// use im_core::sanitize_file_name;
/// assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
/// assert_eq!(sanitize_file_name("C:\\Users\\me\\cat.jpg"), "cat.jpg");
/// assert_eq!(sanitize_file_name("a\u{0}b\nc.txt"), "abc.txt");
/// assert_eq!(sanitize_file_name(".."), "file");
/// ```
pub fn sanitize_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|&c| !unsafe_char(c)).collect();
    let trimmed = cleaned.trim();
    let trimmed = if trimmed == "." || trimmed == ".." {
        ""
    } else {
        trimmed
    };
    let mut end = trimmed.len().min(MAX_FILE_NAME_BYTES);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    let capped = trimmed[..end].trim_end();
    if capped.is_empty() {
        "file".to_owned()
    } else {
        capped.to_owned()
    }
}

/// Control characters, and the bidirectional overrides that can make
/// `evil\u{202e}gpj.exe` display as `evilexe.jpg`.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_become_safe() {
        assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_file_name("/etc/"), "file");
        assert_eq!(sanitize_file_name(""), "file");
        assert_eq!(sanitize_file_name("   "), "file");
        assert_eq!(sanitize_file_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(sanitize_file_name("evil\u{202e}gpj.exe"), "evilgpj.exe");
        assert_eq!(sanitize_file_name("tab\there\r\n\u{7f}.txt"), "tabhere.txt");
        assert_eq!(sanitize_file_name("résumé.pdf"), "résumé.pdf");
        let long = "é".repeat(5_000);
        let cut = sanitize_file_name(&long);
        assert!(cut.len() <= MAX_FILE_NAME_BYTES && cut.len() >= MAX_FILE_NAME_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        let huge = "a".repeat(10_000);
        assert_eq!(sanitize_file_name(&huge).len(), MAX_FILE_NAME_BYTES);
    }
}
