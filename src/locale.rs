//! Report language: labels, number and date formats for Russian and English.
//!
//! Formatting lives here so that the PDF (through pre-formatted strings in the report data)
//! and the e-mail bodies (through minijinja filters) print a number the same way. Which
//! number a KPI shows, and with which unit, is `kpi::present`'s business.
//!
//! Conventions, chosen once and used everywhere:
//! - Russian: the thousands separator and the space before `₽` or `%` are the no-break
//!   space U+00A0 (the narrow U+202F is missing from some PDF fonts); decimal comma;
//!   the currency symbol follows the number: `1 234 567 ₽`, `12,3 %`, dates `23.11.2026`.
//! - English: comma thousands separator, decimal point, the symbol precedes the number
//!   (`₽1,234,567`, `$1,200`, `€15`), a currency without a symbol is written as its code
//!   (`CNY 1,234,567`); `12.3%`; dates `Nov 23, 2026`.
//! - A negative number carries the real minus sign U+2212, not a hyphen.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// The language of labels, numbers and dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Ru,
    En,
}

impl Language {
    pub fn from_code(code: &str) -> Option<Language> {
        match code {
            "ru" => Some(Language::Ru),
            "en" => Some(Language::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Language::Ru => "ru",
            Language::En => "en",
        }
    }
}

/// No-break space: Russian thousands separator and the space before a unit.
pub const NBSP: char = '\u{00A0}';
/// The minus sign of negative numbers and negative deltas.
pub const MINUS: char = '\u{2212}';
/// What a missing (null) number is shown as.
pub const DASH: &str = "—";

/// `v` with `decimals` decimals, grouped by thousands, in the language's convention; the
/// sign is dropped when the rounded number is zero (no `−0`).
pub fn fmt_number(v: f64, decimals: usize, lang: Language) -> String {
    if !v.is_finite() {
        return DASH.to_owned();
    }
    // Half away from zero, as people round (`format!` alone would round 4.25 to 4.2).
    let scale = 10f64.powi(decimals as i32);
    let raw = format!("{:.*}", decimals, (v.abs() * scale).round() / scale);
    let (int, frac) = raw.split_once('.').unwrap_or((raw.as_str(), ""));
    let (sep, point) = match lang {
        Language::Ru => (NBSP, ','),
        Language::En => (',', '.'),
    };
    let mut out = String::with_capacity(raw.len() + 8);
    let is_zero = raw.bytes().all(|b| b == b'0' || b == b'.');
    if v < 0.0 && !is_zero {
        out.push(MINUS);
    }
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push(point);
        out.push_str(frac);
    }
    out
}

/// `body` (a formatted `v`, which already carries `−` when negative) with `+` in front when
/// `v` is positive and the shown number is not zero: `+3`, `−1,5`, `0,0`.
pub fn signed(v: f64, body: &str) -> String {
    let shows_nonzero = body.chars().any(|c| c.is_ascii_digit() && c != '0');
    if v > 0.0 && shows_nonzero { format!("+{body}") } else { body.to_owned() }
}

/// The currency symbol, or `None` for a currency written as its code.
pub fn currency_symbol(code: &str) -> Option<&'static str> {
    match code {
        "RUB" | "RUR" => Some("₽"),
        "USD" => Some("$"),
        "EUR" => Some("€"),
        _ => None,
    }
}

/// Money as shown: whole units when the amount is whole (after rounding to kopecks),
/// else 2 decimals; `1 234 567 ₽` / `₽1,234,567`.
pub fn fmt_money(v: f64, currency: &str, lang: Language) -> String {
    let decimals = if ((v * 100.0).round() % 100.0) == 0.0 { 0 } else { 2 };
    let number = fmt_number(v, decimals, lang);
    match (lang, currency_symbol(currency)) {
        (Language::Ru, Some(sym)) => format!("{number}{NBSP}{sym}"),
        (Language::Ru, None) => format!("{number}{NBSP}{currency}"),
        (Language::En, sym) => {
            // The sign goes before the symbol: −₽1,200, not ₽−1,200.
            let (sign, digits) = match number.strip_prefix(MINUS) {
                Some(rest) => (MINUS.to_string(), rest.to_owned()),
                None => (String::new(), number),
            };
            match sym {
                Some(sym) => format!("{sign}{sym}{digits}"),
                None => format!("{sign}{currency}{NBSP}{digits}"),
            }
        }
    }
}

/// A count: whole, grouped (`1 234` / `1,234`).
pub fn fmt_count(v: f64, lang: Language) -> String {
    fmt_number(v, 0, lang)
}

/// A percentage with 1 decimal: `12,3 %` / `12.3%`.
pub fn fmt_pct(v: f64, lang: Language) -> String {
    let number = fmt_number(v, 1, lang);
    match lang {
        Language::Ru => format!("{number}{NBSP}%"),
        Language::En => format!("{number}%"),
    }
}

/// A number of days with 1 decimal, without a unit (the KPI's label carries it: «Цикл
/// сделки (медиана), дн.»).
pub fn fmt_days(v: f64, lang: Language) -> String {
    fmt_number(v, 1, lang)
}

/// A date: `23.11.2026` / `Nov 23, 2026`.
pub fn fmt_date(d: NaiveDate, lang: Language) -> String {
    match lang {
        Language::Ru => d.format("%d.%m.%Y").to_string(),
        Language::En => format!("{} {}, {}", month_short(d.month(), lang), d.day(), d.year()),
    }
}

/// A date given as text, RFC 3339 (`2026-11-23T00:00:00+03:00`, the date as written, in
/// the zone it carries) or `2026-11-23`, formatted as [`fmt_date`]; other text comes back
/// unchanged. For templates, which hold the report data's dates as strings.
pub fn fmt_date_str(s: &str, lang: Language) -> String {
    let day = chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.date_naive())
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y-%m-%d"));
    day.map_or_else(|_| s.to_owned(), |d| fmt_date(d, lang))
}

/// The month's name as a title (`Ноябрь`, `November`), in the nominative.
pub fn month_name(month: u32, lang: Language) -> &'static str {
    const RU: [&str; 12] = [
        "Январь",
        "Февраль",
        "Март",
        "Апрель",
        "Май",
        "Июнь",
        "Июль",
        "Август",
        "Сентябрь",
        "Октябрь",
        "Ноябрь",
        "Декабрь",
    ];
    const EN: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let i = (month.clamp(1, 12) - 1) as usize;
    match lang {
        Language::Ru => RU[i],
        Language::En => EN[i],
    }
}

/// The month's short name for axes: `ноя`, `Nov`.
pub fn month_short(month: u32, lang: Language) -> &'static str {
    const RU: [&str; 12] = ["янв", "фев", "мар", "апр", "май", "июн", "июл", "авг", "сен", "окт", "ноя", "дек"];
    const EN: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let i = (month.clamp(1, 12) - 1) as usize;
    match lang {
        Language::Ru => RU[i],
        Language::En => EN[i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn russian_money_groups_with_no_break_spaces_and_puts_the_rouble_last() {
        assert_eq!(fmt_money(1_234_567.0, "RUB", Language::Ru), "1\u{a0}234\u{a0}567\u{a0}₽");
        assert_eq!(fmt_money(1234.5, "RUB", Language::Ru), "1\u{a0}234,50\u{a0}₽");
        assert_eq!(fmt_money(999.999, "RUB", Language::Ru), "1\u{a0}000\u{a0}₽");
        assert_eq!(fmt_money(-15_000.0, "USD", Language::Ru), "−15\u{a0}000\u{a0}$");
        assert_eq!(fmt_money(12.0, "KZT", Language::Ru), "12\u{a0}KZT");
    }

    #[test]
    fn english_money_puts_the_symbol_first() {
        assert_eq!(fmt_money(1_234_567.0, "RUB", Language::En), "₽1,234,567");
        assert_eq!(fmt_money(-1200.25, "USD", Language::En), "−$1,200.25");
        assert_eq!(fmt_money(100.0, "KZT", Language::En), "KZT\u{a0}100");
    }

    #[test]
    fn percentages_and_days_have_one_decimal() {
        assert_eq!(fmt_pct(66.666, Language::Ru), "66,7\u{a0}%");
        assert_eq!(fmt_pct(66.666, Language::En), "66.7%");
        assert_eq!(fmt_days(4.25, Language::Ru), "4,3");
        assert_eq!(fmt_days(-0.01, Language::En), "0.0");
        assert_eq!(fmt_count(1234.0, Language::En), "1,234");
        assert_eq!(fmt_count(123.0, Language::Ru), "123");
    }

    #[test]
    fn dates_follow_the_language() {
        assert_eq!(fmt_date(day(2026, 11, 23), Language::Ru), "23.11.2026");
        assert_eq!(fmt_date(day(2026, 11, 23), Language::En), "Nov 23, 2026");
        assert_eq!(fmt_date(day(2026, 1, 5), Language::Ru), "05.01.2026");
        assert_eq!(fmt_date_str("2026-11-23T00:00:00+03:00", Language::Ru), "23.11.2026");
        assert_eq!(fmt_date_str("2026-11-23", Language::En), "Nov 23, 2026");
        assert_eq!(fmt_date_str("вчера", Language::En), "вчера");
    }

    #[test]
    fn signs_are_plus_or_real_minus() {
        assert_eq!(signed(3.0, &fmt_count(3.0, Language::Ru)), "+3");
        assert_eq!(signed(-3.0, &fmt_count(-3.0, Language::Ru)), "−3");
        assert_eq!(signed(0.01, &fmt_pct(0.01, Language::Ru)), "0,0\u{a0}%");
        assert_eq!(signed(1500.0, &fmt_money(1500.0, "RUB", Language::En)), "+₽1,500");
    }
}
