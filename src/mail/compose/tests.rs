//! Tests of message composition: subjects, bodies, headers, the hashes behind Message-IDs.

use super::*;

#[test]
fn built_in_templates_parse() {
    for (name, _) in TEMPLATES {
        env().get_template(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn header_values_stay_on_one_line() {
    assert_eq!(one_line("Иван\r\nBcc: evil@example.com\t x"), "Иван Bcc: evil@example.com x");
}

#[test]
fn base64_sizes_count_line_ends() {
    assert_eq!(base64_size(57), 78, "one full line of 76 characters and its CRLF");
}

#[test]
fn locale_filters_print_numbers_as_the_pdf_does() {
    let ctx = |lang: &str| context! { language => lang, currency => "RUB", v => 1234567.5, none => () };
    let t = "{{ v | fmt_money }}|{{ v | fmt_number(1) }}|{{ none | fmt_pct }}|{{ '2026-11-23' | fmt_date }}";
    for lang in [Language::Ru, Language::En] {
        let expected = format!(
            "{}|{}|{}|{}",
            crate::locale::fmt_money(1234567.5, "RUB", lang),
            crate::locale::fmt_number(1234567.5, 1, lang),
            crate::locale::DASH,
            crate::locale::fmt_date_str("2026-11-23", lang)
        );
        assert_eq!(env().render_str(t, ctx(lang.code())).unwrap(), expected);
    }
}

#[test]
fn resend_command_names_user_ids_only() {
    let embedded = crate::config::EMBEDDED_NAME;
    assert_eq!(
        resend_command(embedded, "manager-weekly", "2026-W47", &["17"]),
        "salespulse send manager-weekly --period 2026-W47 --only 17 --resend"
    );
    assert_eq!(
        resend_command(embedded, "dept", "2026-11", &["department"]),
        "salespulse send dept --period 2026-11 --resend"
    );
    assert_eq!(
        resend_command(embedded, "w", "x y", &["1", "2"]),
        "salespulse send w --period 'x y' --only 1,2 --resend"
    );
    assert_eq!(
        resend_command("/etc/sales pulse/s.toml", "w", "2026-W47", &["1"]),
        "salespulse --config '/etc/sales pulse/s.toml' send w --period 2026-W47 --only 1 --resend"
    );
    assert_eq!(
        rerun_command("/etc/salespulse/salespulse.toml", "w", "2026-W47"),
        "salespulse --config /etc/salespulse/salespulse.toml send w --period 2026-W47"
    );
}

#[test]
fn a_parts_hash_is_fnv1a_of_the_parts_each_closed_by_0xff() {
    // The Message-IDs and boundaries of earlier builds: the same bytes, the same hash.
    assert_eq!(parts_hash(&[b"ab", b"c"]), crate::fnv::fnv1a64(b"ab\xffc\xff"));
    assert_ne!(parts_hash(&[b"ab", b"c"]), parts_hash(&[b"a", b"bc"]));
    assert_eq!(parts_hash(&[]), 0xcbf2_9ce4_8422_2325);
    assert_eq!(parts_hash(&[b"a"]), 0x089b_c907_b544_c769);
}
