//! Text that crosses a trust boundary: CRM strings made harmless where they enter and
//! where they leave, and secrets removed from what is shown.
//!
//! - [`crm_text`]: every string read from the portal (`crm::bitrix24::wire`) loses its
//!   control characters and the characters XML cannot hold, so a manager called
//!   `"Bell\u{7}"` cannot break a chart's SVG, the Typst data or a log line.
//! - [`one_line`]: every CRM string printed in text output (`status`, `send`, the admin's
//!   digest, mail headers) is flattened to one line without bidirectional overrides, so a
//!   value with CR/LF cannot forge a line and a U+202E cannot reverse one.
//! - [`file_name`]: the one sanitizer for every file and attachment name salespulse makes.
//! - [`scrub`]: a secret removed from a text in every form it travels in (`Secret::scrub`).

/// A CRM string as salespulse keeps it: line breaks and tabs become spaces; other control
/// characters (C0, DEL, C1) and the non-characters U+FFFE and U+FFFF, which XML 1.0 does not
/// allow, are dropped. Everything else, including format characters such as the zero-width
/// joiner of an emoji sequence, stays.
pub fn crm_text(s: &str) -> String {
    if !s.chars().any(|c| c.is_control() || is_non_xml(c)) {
        return s.to_owned();
    }
    s.chars()
        .filter_map(|c| match c {
            '\t' | '\n' | '\r' | '\u{85}' => Some(' '),
            c if c.is_control() || is_non_xml(c) => None,
            c => Some(c),
        })
        .collect()
}

fn is_non_xml(c: char) -> bool {
    matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// Bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069): they
/// reorder the text around them, so a name could display as something it is not.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A value on one line, for text output and header values: control characters and every
/// kind of line or paragraph break become spaces, runs of white space one space, and
/// bidirectional overrides are dropped.
pub fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().filter(|c| !is_bidi_control(*c)).collect::<String>())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The longest file name [`file_name`] makes, in bytes: under every common file system's
/// limit (255 on ext4, XFS, btrfs; 143 under eCryptfs), with room for the store's suffixes.
pub const MAX_FILE_NAME_BYTES: usize = 120;

/// A name usable as one file name everywhere, and as an attachment's name: no path
/// separators or characters Windows reserves, no control or Unicode format characters
/// (a U+202E would show `fdp.exe` as `exe.pdf`), no leading or trailing dots and spaces,
/// at most [`MAX_FILE_NAME_BYTES`] bytes, cut on a character boundary before its extension
/// (`.pdf`), which is kept. `fallback` when nothing is left.
pub fn file_name(name: &str, fallback: &str) -> String {
    let cleaned: String = one_line(name)
        .chars()
        .filter(|c| !is_format(*c))
        .map(|c| if "/\\:*?\"<>|".contains(c) { '_' } else { c })
        .collect();
    let cleaned = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let cut = if cleaned.len() <= MAX_FILE_NAME_BYTES {
        cleaned.to_owned()
    } else {
        // Keep a short extension: `.pdf` must survive the cut.
        let (stem, ext) = match cleaned.rfind('.') {
            Some(i) if cleaned.len() - i <= 8 && i > 0 => cleaned.split_at(i),
            _ => (cleaned, ""),
        };
        format!("{}{ext}", cut_bytes(stem, MAX_FILE_NAME_BYTES - ext.len()).trim_end())
    };
    if cut.is_empty() { fallback.to_owned() } else { cut }
}

/// Unicode's format characters (general category Cf) that can reach a name: soft hyphen,
/// Arabic letter mark, the zero-width and directional marks, the bidirectional controls,
/// word joiner and invisible operators, the BOM and the interlinear annotations, and the
/// tag characters.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{AD}' | '\u{600}'..='\u{605}' | '\u{61C}' | '\u{6DD}' | '\u{70F}' | '\u{890}'..='\u{891}' | '\u{8E2}'
        | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}')
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn cut_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let end = (0..=max).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
    &s[..end]
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648).
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What a removed secret is replaced with.
const MASK: &str = "***";

/// The message a panic carried, for an error that replaces it.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// `text` without `secret` in any of the forms it travels in: as it is; percent-encoded,
/// byte by byte or not, with upper- or lower-case hex, once or twice (a URL in a
/// `backurl=` parameter); and in base64 at any of the three byte alignments, which covers
/// the secret alone (SMTP AUTH LOGIN) and inside a longer encoded string (AUTH PLAIN's
/// `\0user\0password`): a run of base64 characters holding it is replaced whole. An empty
/// secret removes nothing; one shorter than three bytes is removed only as it is and
/// percent-encoded.
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_owned();
    }
    scrub_encoded(&scrub_base64(text, secret.as_bytes()), secret.as_bytes())
}

/// Replaces every occurrence of `secret`, each byte as it is or percent-encoded.
fn scrub_encoded(text: &str, secret: &[u8]) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some(len) = match_encoded(&bytes[i..], secret) {
            out.push_str(MASK);
            i += len;
        } else {
            // Not a match here: copy one character.
            let next = (i + 1..=bytes.len()).find(|j| text.is_char_boundary(*j)).unwrap_or(bytes.len());
            out.push_str(&text[i..next]);
            i = next;
        }
    }
    out
}

/// How many bytes of `text` spell `secret`, each byte literally, as `%XX` or as `%25XX`.
fn match_encoded(text: &[u8], secret: &[u8]) -> Option<usize> {
    let hex = |s: &[u8]| -> Option<u8> {
        let s = std::str::from_utf8(s).ok()?;
        u8::from_str_radix(s, 16).ok()
    };
    let mut at = 0;
    for &want in secret {
        let rest = &text[at..];
        if rest.first() == Some(&want) {
            at += 1;
        } else if rest.len() >= 3 && rest[0] == b'%' && hex(&rest[1..3]) == Some(want) {
            at += 3;
        } else if rest.len() >= 5 && rest[0] == b'%' && hex(&rest[1..3]) == Some(0x25) && hex(&rest[3..5]) == Some(want)
        {
            at += 5;
        } else {
            return None;
        }
    }
    Some(at)
}

/// Replaces every run of base64 characters that holds `secret` encoded at any alignment.
fn scrub_base64(text: &str, secret: &[u8]) -> String {
    // The characters of base64(k zero bytes + secret) that depend on the secret alone.
    let cores: Vec<String> = (0..3usize)
        .filter_map(|k| {
            let mut padded = vec![0u8; k];
            padded.extend_from_slice(secret);
            let encoded = base64(&padded);
            let from = (8 * k).div_ceil(6);
            let to = 8 * (k + secret.len()) / 6;
            (to >= from + 3).then(|| encoded[from..to].to_owned())
        })
        .collect();
    if cores.is_empty() || !cores.iter().any(|c| text.contains(c.as_str())) {
        return text.to_owned();
    }
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_');
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if cores.iter().any(|c| run.contains(c.as_str())) {
            out.push_str(MASK);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_b64(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crm_text_drops_what_xml_cannot_hold() {
        assert_eq!(crm_text("Bell\u{7}"), "Bell");
        assert_eq!(crm_text("a\r\nb\tc\u{85}d"), "a  b c d");
        assert_eq!(crm_text("x\u{0}\u{1b}[31m\u{7f}\u{9b}y\u{FFFE}\u{FFFF}"), "x[31my");
        assert_eq!(crm_text("Иван 👨‍👩‍👧 Петров\u{202E}"), "Иван 👨‍👩‍👧 Петров\u{202E}");
    }

    #[test]
    fn one_line_flattens_breaks_and_drops_overrides() {
        assert_eq!(one_line("m20@x.ru\r\n\r\nresend: salespulse send"), "m20@x.ru resend: salespulse send");
        assert_eq!(one_line("a\u{2028}b\u{2029}c\u{85}d\u{b}e"), "a b c d e");
        assert_eq!(one_line("evil\u{202E}fdp.exe"), "evilfdp.exe");
        assert_eq!(one_line("  Иван   Петров "), "Иван Петров");
    }

    #[test]
    fn file_names_are_one_safe_component_cut_by_bytes() {
        assert_eq!(file_name("2026-W47 Иван Петров (17).pdf", "report.pdf"), "2026-W47 Иван Петров (17).pdf");
        assert_eq!(file_name("2026-W47 a/b\\c:d*e?f\"g<h>i|j", "x"), "2026-W47 a_b_c_d_e_f_g_h_i_j");
        assert_eq!(file_name("../../etc/passwd", "x"), "_.._etc_passwd");
        assert_eq!(file_name("..\n..", "report"), "report");
        assert_eq!(file_name(" . ", "report"), "report");
        assert_eq!(file_name("evil\u{202E}fdp.exe", "x"), "evilfdp.exe");
        assert_eq!(file_name("a\u{200B}b\u{FEFF}c\u{E0041}", "x"), "abc");
        let emoji = format!("{}.pdf", "😀".repeat(100));
        let cut = file_name(&emoji, "x");
        assert!(cut.len() <= MAX_FILE_NAME_BYTES && cut.ends_with("😀.pdf"), "{cut}");
        assert_eq!(cut.len(), 116 + 4);
        let long = file_name(&"я".repeat(300), "x");
        assert_eq!(long.len(), MAX_FILE_NAME_BYTES);
    }

    #[test]
    fn base64_is_rfc_4648() {
        for (plain, enc) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn a_secret_is_scrubbed_in_every_form() {
        let token = "s3cr3t.code~1";
        for shown in [
            "https://portal/rest/1/s3cr3t.code~1/batch",
            "backurl=%2Frest%2F1%2Fs3cr3t.code~1%2Fbatch",
            "backurl=%2frest%2f1%2fs3cr3t%2Ecode%7E1%2fbatch",
            "backurl=%2frest%2f1%2fs3cr3t%2ecode%7e1%2fbatch",
            "%73%33%63%72%33%74%2E%63%6F%64%65%7E%31",
            "%2573%2533cr3t.code%257E1",
        ] {
            let s = scrub(shown, token);
            assert!(s.contains(MASK), "{shown} -> {s}");
            assert!(!s.contains("s3cr3t") && !s.contains("%73%33") && !s.contains("%2573"), "{shown} -> {s}");
        }
        assert_eq!(scrub("nothing here", token), "nothing here");
        assert_eq!(scrub("anything", ""), "anything");

        let password = "s3cret-Пароль-42";
        let plain = base64(format!("\0reports@example.ru\0{password}").as_bytes());
        let login = base64(password.as_bytes());
        let authzid = base64(format!("ab\0reports@example.ru\0{password}").as_bytes());
        for shown in [
            format!("535 5.7.8 Authentication failed for AUTH PLAIN {plain}"),
            format!("535 5.7.8 bad password {login}, try again"),
            format!("535 {authzid}"),
            format!("535 {password}"),
        ] {
            let s = scrub(&shown, password);
            assert!(s.contains(MASK), "{shown} -> {s}");
            for form in [&plain, &login, &authzid] {
                assert!(!s.contains(form.trim_end_matches('=')), "{shown} -> {s}");
            }
            assert!(!s.contains("Пароль"), "{s}");
        }
        assert_eq!(scrub("535 5.7.8 Authentication failed", password), "535 5.7.8 Authentication failed");
    }
}
