//! The two reports as people receive them, from the demo portal through the real binary:
//! the report data matches the committed golden files, every key of it is documented in
//! `report-templates/README.md` (and every documented key exists), manager 17's numbers
//! agree with docs/kpi.md worked out by hand over the demo portal's wire records
//! (`support/reference.rs`, shared with `e2e.rs`), every section is printed with its
//! numbers, and the English reports carry no Russian UI text (nor the Russian ones
//! English), only CRM data.
//!
//! Golden files: `tests/golden/manager-17-2026-W47.json` and
//! `tests/golden/department-2026-10.json` are the `.json` the binary writes beside the
//! PDFs of `report manager-weekly --period 2026-W47 --only 17` and
//! `report department-monthly --period 2026-10` with `config/salespulse.toml`. After a
//! deliberate change to the numbers or the data's shape, check the new numbers, then
//! rewrite the files with
//!
//! ```text
//! SALESPULSE_BLESS=1 cargo test --test it reports::
//! ```
//!
//! and review the diff before committing it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

use serde_json::Value;

use salespulse::config::KPI_KEYS;
use salespulse::crm::emulator::Record;
use salespulse::kpi::present::fmt_money_whole;
use salespulse::locale::{Language, fmt_number};

use crate::support::pdf;
use crate::support::reference::{Reference, days, median, moscow, s, ts};

const BIN: &str = env!("CARGO_BIN_EXE_salespulse");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One rendered report: the PDF's text and the data beside it.
struct Rendered {
    /// The PDF's text, whitespace collapsed.
    text: String,
    /// The `.json` exactly as written.
    json_text: String,
    data: Value,
}

#[derive(Clone, Copy)]
enum Report {
    Manager17W47,
    DepartmentOctober,
}

impl Report {
    fn args(self) -> [&'static str; 5] {
        match self {
            Report::Manager17W47 => ["manager-weekly", "--period", "2026-W47", "--only", "17"],
            Report::DepartmentOctober => ["department-monthly", "--period", "2026-10", "", ""],
        }
    }

    fn golden(self) -> PathBuf {
        Path::new(ROOT).join("tests/golden").join(match self {
            Report::Manager17W47 => "manager-17-2026-W47.json",
            Report::DepartmentOctober => "department-2026-10.json",
        })
    }
}

/// Runs `salespulse report` on the demo config with `language` and reads back the one PDF
/// and its `.json`.
fn render(report: Report, language: &str) -> Rendered {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = std::fs::read_to_string(Path::new(ROOT).join("config/salespulse.toml")).expect("the demo config");
    let replaced = config.replace("language = \"ru\"", &format!("language = \"{language}\""));
    assert!(replaced.contains(&format!("language = \"{language}\"")), "the demo config names its language");
    let config_path = dir.path().join("salespulse.toml");
    std::fs::write(&config_path, replaced).expect("write the config");

    let args: Vec<&str> = report.args().into_iter().filter(|a| !a.is_empty()).collect();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .arg("--config")
        .arg(&config_path)
        .arg("report")
        .args(&args)
        .args(["--out", "out"])
        .env("SALESPULSE_LOG", "warn")
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "report {args:?} in {language} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let job_dir = dir.path().join("out").join(args[0]).join(args[2]);
    let find = |ext: &str| {
        let files: Vec<PathBuf> = std::fs::read_dir(&job_dir)
            .expect("the job's output directory")
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect();
        assert_eq!(files.len(), 1, "one .{ext} in {}: {files:?}", job_dir.display());
        files[0].clone()
    };
    let bytes = std::fs::read(find("pdf")).expect("read the PDF");
    let json_text = std::fs::read_to_string(find("json")).expect("read the report data");
    let data = serde_json::from_str(&json_text).expect("the report data is JSON");
    Rendered { text: pdf::text(&bytes), json_text, data }
}

// Each report is rendered once per language and shared by the tests below (a debug run
// takes a few seconds).
static MANAGER_RU: LazyLock<Rendered> = LazyLock::new(|| render(Report::Manager17W47, "ru"));
static DEPARTMENT_RU: LazyLock<Rendered> = LazyLock::new(|| render(Report::DepartmentOctober, "ru"));
static MANAGER_EN: LazyLock<Rendered> = LazyLock::new(|| render(Report::Manager17W47, "en"));
static DEPARTMENT_EN: LazyLock<Rendered> = LazyLock::new(|| render(Report::DepartmentOctober, "en"));

// ------------------------------------------------------------------------- golden files

fn check_golden(report: Report, fresh: &Rendered) {
    let path = report.golden();
    if std::env::var_os("SALESPULSE_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).expect("create tests/golden");
        std::fs::write(&path, &fresh.json_text).expect("write the golden file");
        return;
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read {} ({e}); run with SALESPULSE_BLESS=1", path.display()));
    if golden != fresh.json_text {
        let first = golden
            .lines()
            .zip(fresh.json_text.lines())
            .enumerate()
            .find(|(_, (g, f))| g != f)
            .map(|(i, (g, f))| format!("line {}:\n  golden: {g}\n  fresh:  {f}", i + 1))
            .unwrap_or_else(|| "the files differ in length".to_owned());
        panic!(
            "the report data differs from {} at {first}\nIf the change is deliberate, check the numbers and rerun \
             with SALESPULSE_BLESS=1.",
            path.display()
        );
    }
}

#[test]
fn the_scorecard_data_of_manager_17_matches_its_golden_file() {
    check_golden(Report::Manager17W47, &MANAGER_RU);
}

#[test]
fn the_department_data_of_october_matches_its_golden_file() {
    check_golden(Report::DepartmentOctober, &DEPARTMENT_RU);
}

// ------------------------------------------------------------------------- docs/kpi.md by hand

fn kpi(data: &Value, key: &str) -> Option<f64> {
    data["kpis"][key]["value"].as_f64()
}

fn assert_close(got: Option<f64>, want: Option<f64>, what: &str) {
    match (got, want) {
        (Some(g), Some(w)) => assert!((g - w).abs() < 1e-6, "{what}: the report says {g}, docs/kpi.md gives {w}"),
        (g, w) => assert_eq!(g, w, "{what}"),
    }
}

#[test]
fn manager_17s_rates_cycle_satisfaction_pipeline_and_stuck_deals_agree_with_kpi_md_by_hand() {
    // The manager-weekly job's slot for 2026-W47 is Monday 23 November 08:00 Moscow time.
    let portal = salespulse::crm::demo::portal(moscow(2026, 11, 23, 8));
    let w = Reference::new(&portal, &["17"], moscow(2026, 11, 16, 0), moscow(2026, 11, 23, 0));
    let data = &MANAGER_RU.data;
    assert_eq!(data["manager"]["id"], "17");

    let won = w.won();
    let lost = w.lost();
    assert!(!won.is_empty() && lost > 0, "the demo week has both won and lost deals for manager 17");
    assert_close(kpi(data, "deals_lost"), Some(lost as f64), "deals_lost");
    assert_close(
        kpi(data, "win_rate"),
        Some(won.len() as f64 / (won.len() + lost) as f64 * 100.0),
        "win_rate = won / (won + lost) * 100",
    );

    let leads: Vec<&Record> = w.leads();
    let converted = leads.iter().filter(|l| s(l, "STATUS_SEMANTIC_ID") == "S").count();
    assert!(!leads.is_empty());
    assert_close(kpi(data, "leads_converted"), Some(converted as f64), "leads_converted");
    assert_close(
        kpi(data, "lead_conversion"),
        Some(converted as f64 / leads.len() as f64 * 100.0),
        "lead_conversion = converted / leads * 100",
    );

    let cycles: Vec<f64> = won
        .iter()
        .map(|d| {
            let lead = portal.leads.iter().find(|l| !s(d, "LEAD_ID").is_empty() && s(l, "ID") == s(d, "LEAD_ID"));
            let first_contact = lead.map_or_else(|| ts(d.get("DATE_CREATE")), |l| ts(l.get("DATE_CREATE")));
            days(first_contact.expect("a creation time"), w.closed_at(d, "S").unwrap())
        })
        .collect();
    assert_close(kpi(data, "cycle_days_median"), median(cycles.clone()), "cycle_days_median");
    assert_close(
        kpi(data, "cycle_days_mean"),
        Some(cycles.iter().sum::<f64>() / cycles.len() as f64),
        "cycle_days_mean",
    );

    let scores: Vec<f64> = won
        .iter()
        .filter_map(|d| s(d, "UF_CRM_CSAT").parse::<f64>().ok())
        .filter(|v| (1.0..=5.0).contains(v))
        .collect();
    assert_close(kpi(data, "csat_responses"), Some(scores.len() as f64), "csat_responses");
    assert_close(
        kpi(data, "csat"),
        (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64),
        "csat = mean of the satisfaction field over won deals with a value",
    );

    // Open at the period's end, and stuck when idle for more than 14 days (the demo config).
    let mut open_value = 0.0;
    let mut stuck: Vec<(f64, u64, &str)> = Vec::new();
    for deal in w.deals() {
        let Some((stage, since)) = w.stage_at_end(deal) else { continue };
        if w.semantics(&stage) != "P" {
            continue;
        }
        open_value += w.money(deal);
        let since = since
            .or_else(|| ts(deal.get("MOVED_TIME")).filter(|t| *t < w.end))
            .or_else(|| ts(deal.get("DATE_CREATE")))
            .unwrap();
        let idle = days(since, w.end);
        if idle > 14.0 {
            stuck.push((idle, s(deal, "ID").parse().unwrap(), s(deal, "TITLE")));
        }
    }
    assert_close(kpi(data, "open_pipeline_value"), Some(open_value), "open_pipeline_value");
    stuck.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    // The data lists every stuck deal (docs/kpi.md "Stuck deals"); the PDF shows the first
    // `report.max_stuck_deals`.
    let listed: Vec<(f64, u64, &str)> = data["stuck_deals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (d["days"].as_f64().unwrap(), d["id"].as_str().unwrap().parse().unwrap(), d["title"].as_str().unwrap())
        })
        .collect();
    assert!(!stuck.is_empty(), "manager 17 has stuck deals in the demo");
    assert_eq!(listed.len(), stuck.len(), "stuck deals: {listed:?}\nby hand: {stuck:?}");
    for (l, h) in listed.iter().zip(&stuck) {
        assert_eq!((l.1, l.2), (h.1, h.2), "stuck deals longest first");
        assert!((l.0 - h.0).abs() < 1e-9, "days idle of deal {}: {} vs {}", l.1, l.0, h.0);
    }
}

// ------------------------------------------------------------------------- README

/// The report data's key paths: objects recursively, array elements as `[]`, and the keys
/// of the maps keyed by KPI, label or chart as `<kpi>`, `<label>`, `<chart>`.
fn key_paths(value: &Value, path: &str, out: &mut BTreeSet<String>, dynamic: &mut BTreeMap<String, BTreeSet<String>>) {
    match value {
        Value::Object(map) => {
            let placeholder = match path {
                "kpis" | "kpis_year_ago" | "managers[].kpis" | "team.medians" => Some("<kpi>"),
                "labels" => Some("<label>"),
                "charts" => Some("<chart>"),
                _ => None,
            };
            for (key, v) in map {
                let segment = match placeholder {
                    Some(p) => {
                        dynamic.entry(p.to_owned()).or_default().insert(key.clone());
                        p
                    }
                    None => key.as_str(),
                };
                let child = if path.is_empty() { segment.to_owned() } else { format!("{path}.{segment}") };
                out.insert(child.clone());
                key_paths(v, &child, out, dynamic);
            }
        }
        Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{path}[]"), out, dynamic);
            }
        }
        _ => {}
    }
}

/// The backquoted words of the first cell of each table row in the README section that
/// starts with `heading` (up to the next heading of the same or a higher level).
fn documented(readme: &str, heading: &str) -> BTreeSet<String> {
    let start = readme.find(heading).unwrap_or_else(|| panic!("README has a section {heading:?}"));
    let level = heading.chars().take_while(|c| *c == '#').count();
    let body = &readme[start + heading.len()..];
    let end = body
        .lines()
        .filter(|l| l.starts_with('#') && l.chars().take_while(|c| *c == '#').count() <= level)
        .map(|l| body.find(l).unwrap())
        .next()
        .unwrap_or(body.len());
    body[..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let cell = l.split('|').nth(1).unwrap_or("");
            cell.split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_key_of_the_report_data_is_documented_for_template_authors_and_every_documented_key_exists() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("report-templates/README.md")).expect("the README");
    let mut paths = BTreeSet::new();
    let mut dynamic = BTreeMap::new();
    for rendered in [&*MANAGER_RU, &*DEPARTMENT_RU] {
        key_paths(&rendered.data, "", &mut paths, &mut dynamic);
    }
    assert!(paths.contains("managers[].kpis.<kpi>.text.tone") && paths.contains("team.medians.<kpi>"));

    let keys = documented(&readme, "## Every key");
    let undocumented: Vec<&String> = paths.iter().filter(|p| !keys.contains(*p)).collect();
    assert!(undocumented.is_empty(), "keys of the report data missing from README's \"Every key\": {undocumented:#?}");
    let stale: Vec<&String> = keys.iter().filter(|k| !paths.contains(*k)).collect();
    assert!(stale.is_empty(), "README documents keys the report data does not have: {stale:#?}");

    // The maps' own keys: KPIs, labels and charts, each in its table.
    let kpis = documented(&readme, "### KPI keys");
    assert_eq!(kpis, KPI_KEYS.iter().map(|k| k.to_string()).collect(), "README's KPI keys are docs/kpi.md's");
    assert_eq!(dynamic["<kpi>"], kpis, "the data's KPI keys are the documented ones");
    let labels = documented(&readme, "### Label keys");
    assert_eq!(dynamic["<label>"], labels, "README's label keys are exactly the ones in `labels`");
    let charts = documented(&readme, "## Charts");
    assert_eq!(dynamic["<chart>"], charts, "README's charts are exactly the ones in `charts`");
}

// ------------------------------------------------------------------------- languages

/// Every string the CRM supplied: names, titles, stages, pipelines, sources, products.
/// They stay as the portal has them, whatever the report's language.
fn crm_strings(data: &Value) -> Vec<String> {
    let mut strings: Vec<String> = Vec::new();
    let mut take = |v: &Value| strings.extend(v.as_str().map(str::to_owned));
    take(&data["manager"]["name"]);
    for m in data["managers"].as_array().into_iter().flatten() {
        take(&m["name"]);
    }
    for d in data["stuck_deals"].as_array().into_iter().flatten() {
        for key in ["title", "stage", "pipeline", "manager"] {
            take(&d[key]);
        }
    }
    let b = &data["breakdowns"];
    for x in b["sources"].as_array().into_iter().flatten().chain(b["products"].as_array().into_iter().flatten()) {
        take(&x["name"]);
    }
    for p in b["funnel"].as_array().into_iter().flatten() {
        take(&p["pipeline"]);
        for st in p["stages"].as_array().into_iter().flatten() {
            take(&st["name"]);
        }
    }
    strings
}

/// The PDF's text without spaces and without the CRM's strings: what the report itself
/// says. Spaces go because chart labels come out of the PDF letter by letter; long names
/// are also removed cut short, as bar charts print them (`chart::truncate`).
fn ui_text(text: &str, data: &Value) -> String {
    let mut crm: Vec<String> = crm_strings(data)
        .iter()
        .flat_map(|s| {
            let cut: String = s.chars().take(21).collect();
            [squeezed(s), squeezed(cut.trim_end())]
        })
        .filter(|s| !s.is_empty())
        .collect();
    crm.sort_by_key(|s| std::cmp::Reverse(s.chars().count()));
    let mut out = squeezed(text);
    for s in &crm {
        out = out.replace(s.as_str(), "·");
    }
    out
}

/// Each run of letters matching `bad`, with a little context, for the failure message.
fn runs_of(text: &str, bad: impl Fn(char) -> bool) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if bad(chars[i]) {
            let start = i;
            while i < chars.len() && (bad(chars[i]) || chars[i].is_alphanumeric()) {
                i += 1;
            }
            let from = start.saturating_sub(12);
            found.push(chars[from..(i + 12).min(chars.len())].iter().collect());
        }
        i += 1;
    }
    found
}

fn is_cyrillic(c: char) -> bool {
    matches!(c, 'а'..='я' | 'А'..='Я' | 'ё' | 'Ё')
}

#[test]
fn english_reports_have_no_russian_but_the_crms_own_names() {
    for (what, rendered) in [("scorecard", &*MANAGER_EN), ("department report", &*DEPARTMENT_EN)] {
        assert_eq!(rendered.data["language"], "en");
        assert!(
            crm_strings(&rendered.data).iter().any(|s| s.chars().any(is_cyrillic)),
            "the demo's CRM data is Russian, so this test can see a leak"
        );
        let russian = runs_of(&ui_text(&rendered.text, &rendered.data), is_cyrillic);
        assert!(russian.is_empty(), "Russian in the English {what} (spaces removed): {russian:#?}");
    }
    let en = &MANAGER_EN.text;
    for label in ["Deals won", "Revenue", "Where you stand", "Stuck deals"] {
        assert!(en.contains(label), "the English scorecard says {label:?}: {en}");
    }
}

#[test]
fn russian_reports_have_no_english_ui_text() {
    for (what, rendered) in [("scorecard", &*MANAGER_RU), ("department report", &*DEPARTMENT_RU)] {
        assert_eq!(rendered.data["language"], "ru");
        // ISO week labels (`2026-W47`, the trend's `W36`…`W47`) are the period's name.
        let text = ui_text(&rendered.text, &rendered.data);
        let chars: Vec<char> = text.chars().collect();
        let without_weeks: String = chars
            .iter()
            .enumerate()
            .filter(|(i, c)| !(**c == 'W' && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            .map(|(_, c)| *c)
            .collect();
        let english = runs_of(&without_weeks, |c| c.is_ascii_alphabetic());
        assert!(english.is_empty(), "English in the Russian {what} (spaces removed): {english:#?}");
    }
}

// ------------------------------------------------------------------------- sections

fn squeezed(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace() && *c != '\u{a0}').collect()
}

fn label<'a>(data: &'a Value, key: &str) -> &'a str {
    data["labels"][key].as_str().unwrap_or_else(|| panic!("label {key}"))
}

fn text_of<'a>(data: &'a Value, key: &str) -> &'a str {
    data["kpis"][key]["text"]["value"].as_str().unwrap()
}

fn lang(data: &Value) -> Language {
    if data["language"] == "en" { Language::En } else { Language::Ru }
}

fn money(data: &Value, v: &Value) -> String {
    fmt_money_whole(v.as_f64().unwrap(), data["currency"].as_str().unwrap(), lang(data))
}

/// Asserts that `needle` is printed, ignoring line breaks and spaces.
fn printed(r: &Rendered, needle: &str, what: &str) {
    assert!(squeezed(&r.text).contains(&squeezed(needle)), "{what}: {needle:?} is not printed in:\n{}", r.text);
}

fn scorecard_sections_are_printed(r: &Rendered) {
    let d = &r.data;
    printed(r, d["manager"]["name"].as_str().unwrap(), "manager");
    printed(r, label(d, "manager_report"), "title");
    for key in ["revenue", "deals_won", "avg_deal_value", "lead_conversion", "cycle_days_median", "csat", "emails_sent"]
        .into_iter()
        .chain(["win_rate", "calls_made"])
    {
        let t = &d["kpis"][key]["text"];
        printed(r, t["label"].as_str().unwrap(), key);
        printed(r, t["value"].as_str().unwrap(), key);
        printed(r, t["previous"].as_str().unwrap(), key);
        if t["direction"] != "none" {
            printed(r, t["delta"].as_str().unwrap(), key);
        }
        if d["kpis"][key]["target"].is_number() {
            printed(r, t["attainment"].as_str().unwrap(), key);
        }
    }

    printed(r, label(d, "where_you_stand"), "where you stand");
    let of = format!("{} {} {}", d["team"]["rank_revenue"], label(d, "of"), d["team"]["size"]);
    printed(r, &of, "rank by revenue");
    printed(r, label(d, "team_median"), "team median");
    printed(r, &money(d, &d["team"]["medians"]["revenue"]), "team median revenue");

    printed(r, label(d, "trend"), "trend");
    let last = d["trend"].as_array().unwrap().last().unwrap();
    printed(r, last["short"].as_str().unwrap(), "trend's last period on the axis");

    printed(r, label(d, "funnel"), "funnel");
    let pipeline = d["breakdowns"]["funnel"].as_array().unwrap().iter().find(|p| p["stages"][0]["deals"] != 0).unwrap();
    printed(r, pipeline["pipeline"].as_str().unwrap(), "funnel pipeline");
    let stage = &pipeline["stages"][1];
    printed(r, &format!("{} {}", stage["name"].as_str().unwrap(), stage["deals"]), "a funnel stage and its deals");

    printed(r, label(d, "stuck_deals"), "stuck deals");
    let deal = &d["stuck_deals"][0];
    printed(r, deal["title"].as_str().unwrap(), "the longest stuck deal");
    printed(r, deal["value_text"].as_str().unwrap(), "its amount");

    printed(r, label(d, "hints"), "hints");
    let hints = d["hints"].as_array().unwrap();
    assert!((1..=4).contains(&hints.len()), "one to four hints: {hints:?}");
    for h in hints {
        printed(r, h["text"].as_str().unwrap(), "hint");
    }
}

fn department_sections_are_printed(r: &Rendered) {
    let d = &r.data;
    let en = d["language"] == "en";
    printed(r, label(d, "department_report"), "title");
    printed(r, d["period"]["title"].as_str().unwrap(), "period");

    printed(r, label(d, "totals"), "totals");
    for key in ["revenue", "deals_won", "avg_deal_value", "lead_conversion", "win_rate", "cycle_days_median"]
        .into_iter()
        .chain(["open_pipeline_value", "repeat_share", "csat", "emails_sent"])
    {
        printed(r, text_of(d, key), key);
        printed(r, d["kpis"][key]["text"]["previous"].as_str().unwrap(), key);
        printed(r, d["kpis_year_ago"][key]["text"]["value"].as_str().unwrap(), "a year ago");
    }
    printed(r, label(d, "year_ago"), "a year ago");

    let managers = d["managers"].as_array().unwrap();
    printed(r, label(d, "revenue_by_manager"), "revenue by manager chart");
    printed(r, &format!("{} — {}", label(d, "managers"), label(d, "results")), "managers' results");
    printed(r, &format!("{} — {}", label(d, "managers"), label(d, "activity")), "managers' activity");
    for m in managers {
        printed(r, m["name"].as_str().unwrap(), "a manager");
        printed(r, m["kpis"]["revenue"]["text"]["value"].as_str().unwrap(), "a manager's revenue");
        printed(r, m["kpis"]["calls_made"]["text"]["value"].as_str().unwrap(), "a manager's calls");
    }
    assert_eq!(managers.first().unwrap()["mark"], "best");
    assert_eq!(managers.last().unwrap()["mark"], "worst");
    printed(r, label(d, "best"), "best marked");
    printed(r, label(d, "worst"), "worst marked");

    printed(r, label(d, "trend"), "trend");
    printed(r, label(d, "sources_chart"), "sources chart");
    printed(r, label(d, "cycle_distribution"), "cycle distribution");

    printed(r, label(d, "sources"), "sources table");
    let source = &d["breakdowns"]["sources"][0];
    printed(r, source["name"].as_str().unwrap(), "top source");
    printed(r, &money(d, &source["revenue"]), "top source's revenue");
    printed(r, &money(d, &source["avg_deal_value"]), "top source's average deal");

    printed(r, label(d, "products"), "products");
    let product = &d["breakdowns"]["products"][0];
    printed(r, product["name"].as_str().unwrap(), "top product");
    printed(r, &money(d, &product["revenue"]), "top product's revenue");

    printed(r, label(d, "funnel"), "funnels");
    for p in d["breakdowns"]["funnel"].as_array().unwrap() {
        printed(r, p["pipeline"].as_str().unwrap(), "a pipeline");
    }
    let stage = &d["breakdowns"]["funnel"][0]["stages"][1];
    let conversion = fmt_number(stage["conversion_pct"].as_f64().unwrap(), 1, lang(d));
    printed(r, &conversion, "stage conversion");
    printed(r, label(d, "median_days"), "median days per stage");

    printed(r, label(d, "stuck_deals"), "stuck deals");
    printed(r, d["stuck_deals"][0]["title"].as_str().unwrap(), "the longest stuck deal");

    printed(r, label(d, "notes"), "data-quality notes");
    let notes = d["notes"].as_array().unwrap();
    assert!(!notes.is_empty(), "the demo portal has records to note");
    for n in notes {
        printed(r, n.as_str().unwrap(), "a data-quality note");
    }
    let out_of_scope = if en { "outside the sales" } else { "вне отдел" };
    assert!(
        notes.iter().any(|n| n.as_str().unwrap().contains(out_of_scope)),
        "records of users outside the sales departments are noted: {notes:?}"
    );
}

#[test]
fn every_section_of_the_scorecard_is_printed_with_its_numbers_in_both_languages() {
    scorecard_sections_are_printed(&MANAGER_RU);
    scorecard_sections_are_printed(&MANAGER_EN);
}

#[test]
fn every_section_of_the_department_report_is_printed_with_its_numbers_in_both_languages() {
    department_sections_are_printed(&DEPARTMENT_RU);
    department_sections_are_printed(&DEPARTMENT_EN);
}

// ------------------------------------------------------------------------- charts

/// The value of attribute `name` in one SVG element's text.
fn attr(element: &str, name: &str) -> Option<f64> {
    let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
    element[start..].split('"').next()?.parse().ok()
}

#[test]
fn bar_values_are_printed_clear_of_their_bars() {
    let data: salespulse::kpi::ReportData = serde_json::from_value(DEPARTMENT_RU.data.clone()).expect("report data");
    let charts = salespulse::chart::department_charts(&data).expect("department charts");
    let svg = &charts.iter().find(|c| c.name == "revenue_by_manager").expect("the revenue chart").svg;
    let rects: Vec<(f64, f64, f64)> = svg
        .split("<rect")
        .skip(1)
        .filter_map(|e| {
            let e = e.split('>').next()?;
            Some((attr(e, "x")? + attr(e, "width")?, attr(e, "y")?, attr(e, "y")? + attr(e, "height")?))
        })
        .collect();
    let managers = data.managers.as_ref().unwrap();
    for m in managers {
        let label = m.kpis.revenue.text.as_ref().unwrap().value.clone();
        let element = svg
            .split("<text")
            .skip(1)
            .find(|e| {
                e.split_once('>').is_some_and(|(_, rest)| pdf::normalize(rest).starts_with(&pdf::normalize(&label)))
            })
            .unwrap_or_else(|| panic!("no label {label:?} in the chart:\n{svg}"));
        let (x, y) = (attr(element, "x").unwrap(), attr(element, "y").unwrap());
        // The bar on the label's row: the one whose height spans the label's baseline row.
        let bar_end = rects
            .iter()
            .filter(|(_, top, bottom)| *top <= y && y <= *bottom && bottom - top < 100.0)
            .map(|(right, ..)| *right)
            .fold(f64::MIN, f64::max);
        assert!(x >= bar_end + 4.0, "{}'s label {label:?} starts at x={x}, its bar ends at {bar_end}", m.name);
    }
}
