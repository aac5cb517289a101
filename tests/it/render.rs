//! The PDFs people receive: built-in templates rendered from the fixtures, read back as
//! text. Set `SALESPULSE_RENDER_OUT=/some/dir` to keep the PDFs for a look.

use std::sync::LazyLock;
use std::time::Instant;

use salespulse::chart::{self, Chart};
use salespulse::config::ReportKind;
use salespulse::kpi::ReportData;
use salespulse::locale::Language;
use salespulse::render::{RenderError, Renderer, Template};

use crate::support::fixtures;
use crate::support::pdf;

static RENDERER: LazyLock<Renderer> = LazyLock::new(Renderer::new);

fn charts_for(data: &ReportData) -> Vec<Chart> {
    match data.report.as_str() {
        "department" => chart::department_charts(data).expect("department charts"),
        _ => chart::manager_charts(data).expect("manager charts"),
    }
}

fn render(kind: ReportKind, data: &ReportData, keep_as: &str) -> Vec<u8> {
    let bytes = RENDERER.render(&Template::builtin(kind), data, &charts_for(data)).unwrap_or_else(|e| panic!("{e}"));
    if let Ok(dir) = std::env::var("SALESPULSE_RENDER_OUT") {
        std::fs::write(std::path::Path::new(&dir).join(format!("{keep_as}.pdf")), &bytes).expect("write PDF");
    }
    bytes
}

fn kpi_value_text(data: &ReportData, key: &str) -> String {
    pdf::normalize(&data.kpis.get(key).and_then(|k| k.text.clone()).expect("formatted KPI").value)
}

/// Names can wrap in narrow table cells; compare them without the spaces.
fn squeezed(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace() && *c != '\u{a0}').collect()
}

#[test]
fn the_scorecard_shows_the_manager_their_numbers_in_russian_on_a4() {
    let data = fixtures::manager_report();
    let bytes = render(ReportKind::Manager, &data, "manager-ru");
    let text = pdf::text(&bytes);

    assert!(text.contains(fixtures::MANAGER_NAME), "no manager name in: {text}");
    assert!(text.contains(&data.labels["manager_report"]), "no report title in: {text}");
    assert!(text.contains(&pdf::normalize(&data.period.title)), "no period in: {text}");
    for key in ["revenue", "deals_won", "avg_deal_value", "lead_conversion", "cycle_days_median", "csat", "emails_sent"]
    {
        let value = kpi_value_text(&data, key);
        assert!(text.contains(&value), "no {key} value {value:?} in: {text}");
        let label = &data.kpis.get(key).unwrap().text.as_ref().unwrap().label;
        assert!(squeezed(&text).contains(&squeezed(label)), "no {key} label {label:?} in: {text}");
    }
    for deal in &data.stuck_deals {
        assert!(squeezed(&text).contains(&squeezed(&deal.title)), "no stuck deal {:?} in: {text}", deal.title);
    }
    assert!(text.contains(&pdf::normalize(&data.hints[0].text)), "no hint in: {text}");
    assert!(text.contains("Зависшие сделки"), "no Russian section title in: {text}");

    let sizes = pdf::page_sizes(&bytes);
    assert!((1..=2).contains(&sizes.len()), "a scorecard has one or two pages, got {}", sizes.len());
    assert!(sizes.iter().all(|&s| pdf::is_a4(s)), "not A4: {sizes:?}");
}

#[test]
fn the_department_report_puts_every_manager_side_by_side() {
    let data = fixtures::department_report();
    let bytes = render(ReportKind::Department, &data, "department-ru");
    let text = pdf::text(&bytes);
    let flat = squeezed(&text);

    assert!(text.contains(&data.labels["department_report"]), "no report title in: {text}");
    assert!(text.contains(&pdf::normalize(&data.period.title)), "no period in: {text}");
    assert!(text.contains(&kpi_value_text(&data, "revenue")), "no department revenue in: {text}");
    for manager in data.managers.as_ref().unwrap() {
        assert!(flat.contains(&squeezed(&manager.name)), "no manager {:?} in: {text}", manager.name);
        let revenue = manager.kpis.revenue.text.as_ref().unwrap().value.clone();
        assert!(flat.contains(&squeezed(&revenue)), "no revenue {revenue:?} of {:?}", manager.name);
    }
    for source in &data.breakdowns.sources {
        assert!(flat.contains(&squeezed(&source.name)), "no source {:?} in: {text}", source.name);
    }
    for product in &data.breakdowns.products {
        assert!(flat.contains(&squeezed(&product.name)), "no product {:?} in: {text}", product.name);
    }
    for note in &data.notes {
        assert!(text.contains(&pdf::normalize(note)), "no note {note:?} in: {text}");
    }
    assert!(pdf::page_sizes(&bytes).iter().all(|&s| pdf::is_a4(s)));
}

#[test]
fn crm_strings_print_literally_and_cannot_change_the_page() {
    let hostile_page = "#set page(width: 1cm)";
    let hostile_markup = "*bold* <script>alert(1)</script>";

    let mut scorecard = fixtures::manager_report();
    scorecard.manager.as_mut().unwrap().name = hostile_page.into();
    scorecard.stuck_deals[0].title = hostile_markup.into();
    scorecard.stuck_deals[0].stage = "#eval(\"1+1\") $x^2$ `raw` [link](x) // comment".into();
    let bytes = render(ReportKind::Manager, &scorecard, "manager-injection");
    let text = pdf::text(&bytes);
    assert!(text.contains(hostile_page), "manager name not printed literally: {text}");
    assert!(squeezed(&text).contains(&squeezed(hostile_markup)), "deal title not printed literally: {text}");
    assert!(squeezed(&text).contains(&squeezed(&scorecard.stuck_deals[0].stage)), "stage not literal: {text}");
    assert!(pdf::page_sizes(&bytes).iter().all(|&s| pdf::is_a4(s)), "a name changed the page size");

    let mut department = fixtures::department_report();
    let managers = department.managers.as_mut().unwrap();
    managers[0].name = hostile_page.into();
    managers[1].name = hostile_markup.into();
    let bytes = render(ReportKind::Department, &department, "department-injection");
    let flat = squeezed(&pdf::text(&bytes));
    assert!(flat.contains(&squeezed(hostile_page)) && flat.contains(&squeezed(hostile_markup)));
    assert!(pdf::page_sizes(&bytes).iter().all(|&s| pdf::is_a4(s)), "a name changed the page size");
}

#[test]
fn english_data_gives_an_english_scorecard() {
    let data = fixtures::manager_report_in("en");
    let text = pdf::text(&render(ReportKind::Manager, &data, "manager-en"));
    assert!(text.contains(&data.labels["manager_report"]), "no English title in: {text}");
    assert!(text.contains(&data.kpis.revenue.text.as_ref().unwrap().label), "no English KPI label in: {text}");
    assert!(text.contains(&kpi_value_text(&data, "revenue")), "no English-formatted revenue in: {text}");
    assert!(text.contains(&pdf::normalize(&data.period.title)), "no English period in: {text}");
    assert!(!text.contains("Зависшие сделки"), "Russian section title in an English report: {text}");
}

#[test]
fn the_scorecard_prints_what_kpi_present_formatted() {
    let mut data = fixtures::manager_report();
    salespulse::kpi::present::present(&mut data, Language::Ru);
    let text = pdf::text(&render(ReportKind::Manager, &data, "manager-presented"));
    for key in ["revenue", "deals_won", "lead_conversion"] {
        let value = kpi_value_text(&data, key);
        assert!(text.contains(&value), "no presented {key} {value:?} in: {text}");
    }
    assert!(text.contains(&pdf::normalize(&data.period.title)), "no presented period title in: {text}");
}

#[test]
fn an_empty_period_still_renders_and_says_there_is_no_data() {
    let data = fixtures::empty_manager_report();
    let text = pdf::text(&render(ReportKind::Manager, &data, "manager-empty"));
    assert!(text.contains(fixtures::MANAGER_NAME));
    assert!(text.contains("Нет данных"), "no «Нет данных» in: {text}");
}

#[test]
fn a_broken_template_is_reported_with_its_line_and_column() {
    let source = "#let data = json(\"/data.json\")\n= Отчёт\n\nВыручка: #data.kpis.revenue.valeu.text\n";
    let template = Template { name: "custom.typ".into(), source: source.into() };
    let data = fixtures::manager_report();
    let err = RENDERER.render(&template, &data, &[]).expect_err("a typo in a key must fail");
    let RenderError::Template { template, line, column, message } = &err else { panic!("not a template error: {err}") };
    assert_eq!(template, "custom.typ");
    let (want_line, text) = source.lines().enumerate().find(|(_, l)| l.contains("valeu")).unwrap();
    assert_eq!(*line, want_line + 1, "{err}");
    // Typst points at the field access that failed: somewhere in `data.kpis.revenue.valeu`.
    let start = text.find("data.kpis").unwrap() + 1;
    assert!(
        (start..=text.find(".text").unwrap() + 1).contains(column),
        "column {column} outside the expression: {err}"
    );
    assert!(message.contains("valeu"), "{err}");
    assert!(err.to_string().starts_with("failed to compile template custom.typ at line 4"), "{err}");

    let syntax = Template { name: "syntax.typ".into(), source: "ok\n\n#let x = (1, 2\n".into() };
    let err = RENDERER.render(&syntax, &data, &[]).expect_err("an unclosed bracket must fail");
    assert!(matches!(err, RenderError::Template { line: 3, .. }), "{err}");
}

#[test]
fn a_template_file_that_cannot_be_read_says_which() {
    let err = Template::from_file(std::path::Path::new("/nonexistent/scorecard.typ")).unwrap_err();
    assert!(matches!(err, RenderError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/scorecard.typ"), "{err}");
}

#[test]
fn charts_are_svg_text_in_the_embedded_family() {
    for data in [fixtures::manager_report(), fixtures::department_report(), fixtures::empty_manager_report()] {
        let charts = charts_for(&data);
        for name in data.charts.keys() {
            let chart = charts.iter().find(|c| &c.name == name).unwrap_or_else(|| panic!("no chart {name}"));
            assert_eq!(chart.path, data.charts[name], "chart {name} is not where the data says");
        }
        for chart in &charts {
            let svg = chart.svg.trim();
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "chart {} is not an SVG document", chart.name);
            assert!(svg.contains("font-family=\"PT Sans\""), "chart {} does not name PT Sans", chart.name);
            assert!(!svg.contains("sans-serif"), "chart {} names a generic family", chart.name);
        }
    }
    let department = fixtures::department_report();
    let revenue = chart::department_charts(&department).unwrap().into_iter().find(|c| c.name == "revenue_by_manager");
    assert!(revenue.unwrap().svg.contains("Мария Соколова"), "the revenue chart does not name the managers");
}

/// Cold and warm rendering time of one scorecard (charts + PDF); run with
/// `cargo test --test it render::timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing() {
    let data = fixtures::manager_report();
    let cold = Instant::now();
    let renderer = Renderer::new();
    let charts = chart::manager_charts(&data).unwrap();
    renderer.render(&Template::builtin(ReportKind::Manager), &data, &charts).unwrap();
    let cold = cold.elapsed();
    let mut warm = Vec::new();
    for i in 0..5 {
        let mut d = data.clone();
        d.manager.as_mut().unwrap().name = format!("Менеджер {i}");
        let t = Instant::now();
        let charts = chart::manager_charts(&d).unwrap();
        renderer.render(&Template::builtin(ReportKind::Manager), &d, &charts).unwrap();
        warm.push(t.elapsed());
    }
    eprintln!("scorecard render: cold {cold:?}, warm {warm:?}");
}

#[test]
fn a_large_team_flows_onto_more_landscape_pages_with_every_name() {
    let mut data = fixtures::department_report();
    let template_row = data.managers.as_ref().unwrap()[0].clone();
    let team: Vec<_> = (0..40)
        .map(|i| {
            let mut row = template_row.clone();
            row.id = format!("{}", 100 + i);
            row.name = format!("Сотрудник отдела продаж №{i}");
            row
        })
        .collect();
    data.managers = Some(team);
    let bytes = render(ReportKind::Department, &data, "department-large");
    let flat = squeezed(&pdf::text(&bytes));
    for i in 0..40 {
        assert!(flat.contains(&squeezed(&format!("Сотрудник отдела продаж №{i}"))), "manager {i} is missing");
    }
    let sizes = pdf::page_sizes(&bytes);
    assert!(sizes.len() > 4, "40 managers fit on {} pages?", sizes.len());
    assert!(sizes.iter().all(|&s| pdf::is_a4(s)), "not A4: {sizes:?}");
}

#[test]
fn the_renderer_can_be_shared_between_threads() {
    fn shared<T: Send + Sync + Clone>() {}
    shared::<Renderer>();
    let data = fixtures::manager_report();
    let charts = chart::manager_charts(&data).unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let pdf = RENDERER.render(&Template::builtin(ReportKind::Manager), &data, &charts).unwrap();
                assert!(pdf::text(&pdf).contains(fixtures::MANAGER_NAME));
            });
        }
    });
}

#[test]
fn today_in_a_template_is_the_day_of_the_reports_slot_not_the_clock() {
    let template = Template { name: "today.typ".into(), source: "#datetime.today().display()".into() };
    let data = fixtures::manager_report();
    let pdf = RENDERER.render(&template, &data, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pdf::text(&pdf), data.generated_at[..10]);
}
