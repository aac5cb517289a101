//! The documentation a user reads is the product's own, and cannot drift from the code:
//! docs/configuration.md lists exactly the keys the config parser accepts and its examples
//! parse; README reaches every document; nothing points outside the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use salespulse::config::{Config, ConfigError};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const MINIMAL: &str = "[crm]\nsource = \"demo\"\n[mail]\ntransport = \"outbox\"\nfrom = \"a@example.ru\"\n";

/// The keys the parser accepts in one table, asked of the parser itself: an unknown key
/// is refused with the list of the ones it expected.
fn accepted(config: &str) -> BTreeSet<String> {
    let message = match Config::parse(config, "probe.toml") {
        Err(ConfigError::Invalid { message, key, .. }) => {
            assert_eq!(key, "zzz_probe", "the probe is what is refused: {message}");
            message
        }
        other => panic!("the probe key was accepted: {other:?}\n{config}"),
    };
    let (_, expected) = message.split_once("expected").unwrap_or_else(|| panic!("no expected keys in {message:?}"));
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// Every key the parser accepts, as the reference names it: `timezone`, `crm.source`,
/// `job.name`, `targets.default.week`, `targets.managers.week`.
fn parser_keys() -> BTreeSet<String> {
    let probe = "zzz_probe = 1\n";
    let job = "[[job]]\nname = \"j\"\nreport = \"manager\"\nschedule = \"0 8 * * MON\"\nperiod = \"previous-week\"\n";
    let mut keys = BTreeSet::new();
    // The top level: plain keys, and the tables, each documented under its own heading.
    let doc = read("docs/configuration.md");
    for key in accepted(&format!("{probe}{MINIMAL}")) {
        let heading = if key == "job" || key == "alert" { format!("## `[[{key}]]`") } else { format!("## `[{key}]`") };
        if ["crm", "mail", "report", "daemon", "job", "targets", "telegram", "calendar", "alert"]
            .contains(&key.as_str())
        {
            assert!(doc.contains(&heading), "docs/configuration.md has a section {heading}");
        } else {
            keys.insert(key);
        }
    }
    for table in ["crm", "mail"] {
        let text = MINIMAL.replace(&format!("[{table}]\n"), &format!("[{table}]\n{probe}"));
        keys.extend(accepted(&text).into_iter().map(|k| format!("{table}.{k}")));
    }
    for table in ["report", "daemon", "targets", "telegram", "calendar"] {
        let found = accepted(&format!("{MINIMAL}[{table}]\n{probe}"));
        keys.extend(found.into_iter().map(|k| format!("{table}.{k}")));
    }
    keys.extend(accepted(&format!("{MINIMAL}{job}{probe}")).into_iter().map(|k| format!("job.{k}")));
    let alert = "[[alert]]\nname = \"a\"\nschedule = \"0 12 * * WED\"\nrule = \"newly-stuck\"\n";
    keys.extend(accepted(&format!("{MINIMAL}{alert}{probe}")).into_iter().map(|k| format!("alert.{k}")));
    // A period's targets: `week` and `month` under `default`, `department` and each manager.
    let periods = accepted(&format!("{MINIMAL}[targets.default]\n{probe}"));
    assert_eq!(periods, accepted(&format!("{MINIMAL}[targets.managers.\"17\"]\n{probe}")));
    for owner in ["default", "managers", "department"] {
        assert!(keys.remove(&format!("targets.{owner}")), "targets.{owner} is a table of the parser");
        keys.extend(periods.iter().map(|p| format!("targets.{owner}.{p}")));
    }
    keys
}

/// The keys docs/configuration.md lists: the first cell of each table row, under its
/// section's heading.
fn documented_keys(doc: &str) -> BTreeMap<String, String> {
    let mut section = String::new();
    let mut keys = BTreeMap::new();
    for line in doc.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = match heading.split('`').nth(1) {
                Some(t) => t.trim_matches(['[', ']']).to_owned(),
                None => String::new(),
            };
            continue;
        }
        let Some(cell) = line.strip_prefix("| `") else { continue };
        let cell = format!("`{}", cell.split('|').next().unwrap_or(""));
        for name in cell.split('`').skip(1).step_by(2) {
            let name = name.replace(".\"<user id>\"", "");
            let full = if section.is_empty() { name } else { format!("{section}.{name}") };
            keys.insert(full, line.to_owned());
        }
    }
    keys
}

#[test]
fn the_configuration_reference_lists_exactly_the_keys_the_parser_accepts() {
    let doc = read("docs/configuration.md");
    let documented = documented_keys(&doc);
    let parser = parser_keys();
    assert!(parser.contains("crm.source") && parser.contains("mail.reply_to") && parser.contains("job.subject"));
    let undocumented: Vec<&String> = parser.iter().filter(|k| !documented.contains_key(*k)).collect();
    assert!(undocumented.is_empty(), "keys the parser accepts that docs/configuration.md lacks: {undocumented:?}");
    let unknown: Vec<&String> = documented.keys().filter(|k| !parser.contains(*k)).collect();
    assert!(unknown.is_empty(), "keys docs/configuration.md lists that the parser refuses: {unknown:?}");
    for (key, row) in &documented {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert!(cells.len() >= 5 && cells[2..5].iter().all(|c| !c.is_empty()), "{key}: type, default, meaning: {row}");
    }
}

#[test]
fn the_configuration_references_examples_form_a_valid_config() {
    let doc = read("docs/configuration.md");
    let mut text = String::new();
    for block in doc.split("```toml\n").skip(1) {
        text.push_str(block.split("```").next().unwrap());
        text.push('\n');
    }
    // The secrets are named by environment variable; give them inline for the parse.
    let text = text
        .replace(
            "webhook_url_env = \"SALESPULSE_WEBHOOK_URL\"",
            "webhook_url = \"https://example.bitrix24.ru/rest/1/x/\"",
        )
        .replace("password_env = \"SALESPULSE_SMTP_PASSWORD\"", "password = \"x\"");
    let config = Config::parse(&text, "docs/configuration.md").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.jobs.len(), 2);
    assert_eq!(config.mail.reply_to.as_deref(), Some("Отдел продаж <sales@example.ru>"));
    assert_eq!(
        config.targets.manager(17, salespulse::domain::PeriodKind::Month, salespulse::kpi::Kpi::Revenue),
        Some(2_000_000.0)
    );
    // config/example.toml is another such example; its keys are all in the reference.
    let example = read("config/example.toml");
    let documented = documented_keys(&doc);
    let mut section = String::new();
    for line in example.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).split('.').next().unwrap_or("").to_owned();
            continue;
        }
        let Some((key, _)) = line.split_once('=') else { continue };
        let key = key.trim().trim_start_matches("# ");
        if section == "targets" || key.contains(' ') {
            continue;
        }
        let full = if section.is_empty() { key.to_owned() } else { format!("{section}.{key}") };
        assert!(documented.contains_key(&full), "config/example.toml uses {full}, which the reference lacks");
    }
}

#[test]
fn readme_reaches_every_document_and_nothing_points_outside_the_repository() {
    let readme = read("README.md");
    for doc in ["docs/kpi.md", "docs/configuration.md", "docs/operations.md", "report-templates/README.md"] {
        assert!(readme.contains(&format!("]({doc})")), "README links {doc}");
        assert!(Path::new(ROOT).join(doc).is_file(), "{doc} exists");
    }
    let mut stack = vec![Path::new(ROOT).to_path_buf()];
    let mut outside = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "data" && name != "golden" {
                    stack.push(path);
                }
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            for needle in ["shared/spec", "KPI.md", "PRODUCT.md", "bitrix24-api.md", "STYLE.md"] {
                // This file names them to look for them.
                if text.contains(needle) && !path.ends_with("tests/it/docs.rs") {
                    outside.push(format!("{} cites {needle}", path.display()));
                }
            }
        }
    }
    assert!(outside.is_empty(), "files that cite documents outside the repository: {outside:#?}");
}
