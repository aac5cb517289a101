//! Charts of the reports as SVG, drawn with plotters from the report data alone.
//!
//! Every chart names the concrete family "PT Sans" in its text, the family `render`
//! embeds, because Typst's SVG loader ignores generic families (`sans-serif`) and there
//! are no system fonts. The same PT Sans bytes are registered with plotters once so that
//! text is measured without system fonts. Charts are deterministic: no randomness, no
//! clock, bars drawn in data order (plotters' `Histogram` draws in hash order, so the
//! cycle-time histogram is binned here). Which charts a template shows, and where, is the
//! template's business; the pipeline passes them to `render` under their `path`.

use std::sync::Once;

use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::{SegmentValue, SegmentedCoord};
use plotters::coord::types::RangedCoordi32;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::kpi::{ReportData, present};
use crate::locale::Language;

/// The family charts name in their SVG text.
pub const FONT_FAMILY: &str = crate::fonts::FAMILY;

const INK: RGBColor = RGBColor(0x1f, 0x2a, 0x37);
const MUTED: RGBColor = RGBColor(0x6b, 0x72, 0x80);
const GRID: RGBColor = RGBColor(0xe5, 0xe7, 0xeb);
const PRIMARY: RGBColor = RGBColor(0x1f, 0x4e, 0x79);
const SECONDARY: RGBColor = RGBColor(0x9c, 0xb8, 0xd4);
const ACCENT: RGBColor = RGBColor(0x2a, 0x9d, 0x8f);
const TARGET: RGBColor = RGBColor(0xd9, 0x7a, 0x2b);

/// Full-width charts (trend, cycle) and half-width ones (bars beside a table): the same
/// font size in pixels then prints at a similar size on paper.
const WIDTH: u32 = 900;
const HALF_WIDTH: u32 = 560;
const DEPARTMENT_WIDTH: u32 = 640;

/// At most this many bars in a bar chart: an image cannot break across pages, and the
/// tables beside the charts list everyone anyway.
pub const MAX_BARS: usize = 15;

/// Pixels between a horizontal bar's end and its value label.
const LABEL_GAP_PX: f64 = 8.0;

/// One chart: its name, the virtual path templates read it from, and the SVG.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub name: String,
    /// `/charts/<name>.svg`.
    pub path: String,
    pub svg: String,
}

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("failed to draw chart {chart} ({message})")]
    Draw { chart: String, message: String },
}

/// The manager scorecard's charts: `trend` (revenue bars, target line, deals won) and
/// `funnel` (the busiest pipeline's stages).
pub fn manager_charts(data: &ReportData) -> Result<Vec<Chart>, ChartError> {
    Ok(vec![trend(data, WIDTH)?, funnel(data)?])
}

/// The department report's charts: `revenue_by_manager`, `sources` (lead conversion by
/// source), `trend`, `cycle` (cycle-time distribution) and `funnel`.
pub fn department_charts(data: &ReportData) -> Result<Vec<Chart>, ChartError> {
    // The department report shows these two at half width, hence narrower drawings.
    Ok(vec![
        revenue_by_manager(data)?,
        sources(data)?,
        trend(data, DEPARTMENT_WIDTH)?,
        cycle(data, DEPARTMENT_WIDTH)?,
        funnel(data)?,
    ])
}

/// Lists `charts` in the report data (`data.charts`: name → path), which is how
/// templates find them. Call it before writing the data beside the PDF and rendering, so
/// the saved JSON is exactly what the template saw.
pub fn attach(data: &mut ReportData, charts: &[Chart]) {
    data.charts = charts.iter().map(|c| (c.name.clone(), c.path.clone())).collect();
}

/// The virtual path of a chart, as `ReportData::charts` lists it.
pub fn chart_path(name: &str) -> String {
    format!("/charts/{name}.svg")
}

fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are PT Sans compiled into the binary: a parse failure would be a build
        // defect, and then plotters falls back to no metrics rather than failing here.
        for (style, bytes) in [
            (FontStyle::Normal, crate::fonts::REGULAR),
            (FontStyle::Bold, crate::fonts::BOLD),
            (FontStyle::Italic, crate::fonts::ITALIC),
        ] {
            let _ = plotters::style::register_font(FONT_FAMILY, style, bytes);
        }
    });
}

/// A label in the report's language: `data.labels` first, then the built-in default
/// (`kpi::present::label`), then the key itself.
pub fn label(data: &ReportData, key: &str) -> String {
    if let Some(text) = data.labels.get(key) {
        return text.clone();
    }
    let lang = if data.language == "en" { Language::En } else { Language::Ru };
    present::label(key, lang).unwrap_or_else(|| key.to_owned())
}

/// Compact money for axes: `1,2 млн` / `1.2M`.
fn compact(value: f64, en: bool) -> String {
    let (scaled, suffix) = match value.abs() {
        v if v >= 1e9 => (value / 1e9, if en { "B" } else { " млрд" }),
        v if v >= 1e6 => (value / 1e6, if en { "M" } else { " млн" }),
        v if v >= 1e3 => (value / 1e3, if en { "k" } else { " тыс" }),
        _ => (value, ""),
    };
    let mut text =
        if (scaled - scaled.round()).abs() < 0.05 { format!("{:.0}", scaled) } else { format!("{:.1}", scaled) };
    if !en {
        text = text.replace('.', ",");
    }
    format!("{text}{suffix}")
}

/// Cuts a long name for an axis label, keeping whole characters.
fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
        format!("{}…", cut.trim_end())
    }
}

fn font(size: f64) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().color(&INK)
}

fn muted_font(size: f64) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().color(&MUTED)
}

/// Draws into an SVG string of `height` pixels; `draw` returns plotters' error as text.
fn draw_svg(
    name: &str,
    (width, height): (u32, u32),
    draw: impl FnOnce(DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<Chart, ChartError> {
    register_fonts();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| ChartError::Draw { chart: name.into(), message: e.to_string() })?;
        draw(root.clone()).map_err(|message| ChartError::Draw { chart: name.into(), message })?;
        root.present().map_err(|e| ChartError::Draw { chart: name.into(), message: e.to_string() })?;
    }
    Ok(Chart { name: name.to_string(), path: chart_path(name), svg })
}

fn empty(root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>, data: &ReportData) -> Result<(), String> {
    let (w, h) = root.dim_in_pixel();
    let style = muted_font(22.0).pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Center,
        plotters::style::text_anchor::VPos::Center,
    ));
    root.draw_text(&label(data, "no_data"), &style, ((w / 2) as i32, (h / 2) as i32)).map_err(|e| e.to_string())
}

/// The label of each bar of a segmented x axis: `labels[i]` under the middle of bar `i`.
fn segment_labels(labels: &[String]) -> impl Fn(&SegmentValue<i32>) -> String + '_ {
    |v| match v {
        SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

/// The mesh of a chart of `bars` bars: no vertical grid lines, light horizontal ones, one x
/// label per bar from `x_label`.
fn segmented_mesh<'m, 'a, 'b, Y: Ranged, DB: DrawingBackend>(
    mesh: &'m mut MeshStyle<'a, 'b, SegmentedCoord<RangedCoordi32>, Y, DB>,
    bars: usize,
    x_label: &'b dyn Fn(&SegmentValue<i32>) -> String,
) -> &'m mut MeshStyle<'a, 'b, SegmentedCoord<RangedCoordi32>, Y, DB> {
    mesh.disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .axis_style(GRID)
        .x_labels(bars)
        .x_label_formatter(x_label)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A segment index as an axis position.
fn seg(i: usize) -> SegmentValue<i32> {
    SegmentValue::Exact(i as i32)
}

/// Revenue per period as bars, the revenue target as a line, deals won on the right axis.
fn trend(data: &ReportData, width: u32) -> Result<Chart, ChartError> {
    let en = data.language == "en";
    let points: Vec<_> = data.trend.iter().rev().take(12).rev().collect();
    draw_svg("trend", (width, width * 34 / 90), |root| {
        if points.is_empty() {
            return empty(&root, data);
        }
        // The legend gets its own strip above the plot, so it never hides a bar.
        let (legend_area, plot_area) = root.split_vertically(36);
        let n = points.len() as i32;
        let max_revenue =
            points.iter().flat_map(|p| [p.revenue, p.target_revenue.unwrap_or(0.0)]).fold(0.0_f64, f64::max).max(1.0)
                * 1.1;
        let max_deals = points
            .iter()
            .flat_map(|p| [p.deals_won as f64, p.target_deals_won.unwrap_or(0.0)])
            .fold(0.0_f64, f64::max)
            .max(1.0)
            * 1.1;
        let mut chart = ChartBuilder::on(&plot_area)
            .margin_left(12)
            .margin_right(12)
            .margin_bottom(6)
            .margin_top(6)
            .x_label_area_size(34)
            .y_label_area_size(70)
            .right_y_label_area_size(50)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..max_revenue)
            .map_err(err)?
            .set_secondary_coord((0..n).into_segmented(), 0.0..max_deals);
        let shorts: Vec<String> = points.iter().map(|p| p.short.clone()).collect();
        let x_label = segment_labels(&shorts);
        segmented_mesh(&mut chart.configure_mesh(), points.len(), &x_label)
            .y_labels(5)
            .y_label_formatter(&|v| compact(*v, en))
            .label_style(muted_font(17.0))
            .draw()
            .map_err(err)?;
        chart
            .configure_secondary_axes()
            .y_labels(5)
            .y_label_formatter(&|v| format!("{:.0}", v))
            .label_style(font(17.0).color(&ACCENT))
            .axis_style(GRID)
            .draw()
            .map_err(err)?;

        let last = points.len() - 1;
        chart
            .draw_series(points.iter().enumerate().map(|(i, p)| {
                let color = if i == last { PRIMARY } else { SECONDARY };
                let mut bar = Rectangle::new([(seg(i), 0.0), (seg(i + 1), p.revenue)], color.filled());
                bar.set_margin(0, 0, 9, 9);
                bar
            }))
            .map_err(err)?;

        let center = |i: usize| SegmentValue::CenterOf(i as i32);
        let revenue_targets: Vec<_> =
            points.iter().enumerate().filter_map(|(i, p)| p.target_revenue.map(|t| (center(i), t))).collect();
        if !revenue_targets.is_empty() {
            chart.draw_series(LineSeries::new(revenue_targets, TARGET.stroke_width(3))).map_err(err)?;
        }
        let deal_targets: Vec<_> =
            points.iter().enumerate().filter_map(|(i, p)| p.target_deals_won.map(|t| (center(i), t))).collect();
        if !deal_targets.is_empty() {
            chart
                .draw_secondary_series(DashedLineSeries::new(deal_targets, 8, 6, ACCENT.stroke_width(2)))
                .map_err(err)?;
        }
        let deals: Vec<_> = points.iter().enumerate().map(|(i, p)| (center(i), p.deals_won as f64)).collect();
        chart.draw_secondary_series(LineSeries::new(deals.clone(), ACCENT.stroke_width(3))).map_err(err)?;
        chart
            .draw_secondary_series(deals.iter().map(|(x, y)| Circle::new((x.clone(), *y), 5, ACCENT.filled())))
            .map_err(err)?;

        let mut legend = vec![(Legend::Bar(PRIMARY), label(data, "chart_revenue"))];
        if points.iter().any(|p| p.target_revenue.is_some()) {
            legend.push((Legend::Line(TARGET), label(data, "chart_target_revenue")));
        }
        legend.push((Legend::Line(ACCENT), label(data, "chart_deals_won")));
        if points.iter().any(|p| p.target_deals_won.is_some()) {
            legend.push((Legend::Dashed(ACCENT), label(data, "chart_target_deals")));
        }
        draw_legend(&legend_area, &legend)
    })
}

/// A legend key: a filled square or a (dashed) line in the series' colour.
enum Legend {
    Bar(RGBColor),
    Line(RGBColor),
    Dashed(RGBColor),
}

/// Draws legend entries side by side, left to right, vertically centred in `area`.
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    entries: &[(Legend, String)],
) -> Result<(), String> {
    let (_, h) = area.dim_in_pixel();
    let y = (h / 2) as i32;
    let style = font(17.0).pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Left,
        plotters::style::text_anchor::VPos::Center,
    ));
    let mut x = 82;
    for (key, text) in entries {
        match key {
            Legend::Bar(c) => area.draw(&Rectangle::new([(x, y - 7), (x + 14, y + 7)], c.filled())),
            Legend::Line(c) => area.draw(&PathElement::new(vec![(x - 2, y), (x + 18, y)], c.stroke_width(3))),
            Legend::Dashed(c) => {
                area.draw(&PathElement::new(vec![(x - 2, y), (x + 5, y)], c.stroke_width(2))).map_err(err)?;
                area.draw(&PathElement::new(vec![(x + 10, y), (x + 18, y)], c.stroke_width(2)))
            }
        }
        .map_err(err)?;
        area.draw_text(text, &style, (x + 24, y)).map_err(err)?;
        let (w, _) = area.estimate_text_size(text, &style).map_err(err)?;
        x += 24 + w as i32 + 22;
    }
    Ok(())
}

/// Horizontal bars with a name per row and a value label at each bar's end.
fn horizontal_bars(
    name: &str,
    data: &ReportData,
    rows: &[(String, f64, String)],
    color: RGBColor,
    highlight_first: bool,
) -> Result<Chart, ChartError> {
    let rows = &rows[..rows.len().min(MAX_BARS)];
    let height = (40 + 38 * rows.len().max(3)) as u32;
    draw_svg(name, (HALF_WIDTH, height), |root| {
        if rows.is_empty() {
            return empty(&root, data);
        }
        let n = rows.len() as i32;
        // Room right of the longest bar for its value label.
        let max = rows.iter().map(|r| r.1).fold(0.0_f64, f64::max).max(1.0) * 1.5;
        let names: Vec<String> = rows.iter().map(|r| truncate(&r.0, 22)).collect();
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(0)
            .y_label_area_size(205)
            .build_cartesian_2d(0.0..max, (0..n).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .axis_style(GRID)
            .y_labels(rows.len())
            .y_label_formatter(&|v| match v {
                // Rows are listed top to bottom; plotters counts segments from the bottom.
                SegmentValue::CenterOf(i) => names.get((n - 1 - *i) as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .label_style(font(20.0))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let row = (n - 1) as usize - i;
                let fill = if highlight_first && i == 0 { PRIMARY } else { color };
                let mut bar = Rectangle::new([(0.0, seg(row)), (r.1, seg(row + 1))], fill.filled());
                bar.set_margin(6, 6, 0, 0);
                bar
            }))
            .map_err(err)?;
        // A fixed gap in pixels between a bar's end and its label: a leading space would
        // be collapsed by the SVG reader and the label would touch the bar.
        let (plot_width, _) = chart.plotting_area().dim_in_pixel();
        let gap = max * LABEL_GAP_PX / f64::from(plot_width.max(1));
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let row = (n - 1) as usize - i;
                Text::new(
                    r.2.clone(),
                    (r.1 + gap, SegmentValue::CenterOf(row as i32)),
                    font(18.0).pos(plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Left,
                        plotters::style::text_anchor::VPos::Center,
                    )),
                )
            }))
            .map_err(err)?;
        Ok(())
    })
}

fn revenue_by_manager(data: &ReportData) -> Result<Chart, ChartError> {
    let en = data.language == "en";
    let mut rows: Vec<(String, f64, String)> = data
        .managers
        .iter()
        .flatten()
        .map(|m| {
            let value = m.kpis.revenue.value.unwrap_or(0.0);
            let text = m.kpis.revenue.text.as_ref().map_or_else(|| compact(value, en), |t| t.value.clone());
            (m.name.clone(), value, text)
        })
        .collect();
    // Highest first; ties by name so the order does not depend on the input's.
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    horizontal_bars("revenue_by_manager", data, &rows, SECONDARY, true)
}

fn sources(data: &ReportData) -> Result<Chart, ChartError> {
    let en = data.language == "en";
    let rows: Vec<(String, f64, String)> = data
        .breakdowns
        .sources
        .iter()
        .filter(|s| s.leads_total > 0)
        .map(|s| {
            let pct = s.lead_conversion.unwrap_or(0.0);
            let pct_text = if en { format!("{pct:.1}%") } else { format!("{pct:.1}\u{a0}%").replace('.', ",") };
            let name = if s.name.is_empty() { s.id.clone() } else { s.name.clone() };
            (name, pct, format!("{pct_text} ({}/{})", s.leads_converted, s.leads_total))
        })
        .collect();
    horizontal_bars("sources", data, &rows, ACCENT, false)
}

/// The pipeline the funnel chart shows: the one with the most deals entering stages.
fn busiest_pipeline(data: &ReportData) -> Option<&crate::kpi::FunnelPipeline> {
    let mut best: Option<(&crate::kpi::FunnelPipeline, u64)> = None;
    for pipeline in &data.breakdowns.funnel {
        let total: u64 = pipeline.stages.iter().map(|s| s.reached).sum();
        if best.is_none_or(|(_, t)| total > t) {
            best = Some((pipeline, total));
        }
    }
    best.map(|(p, _)| p)
}

fn funnel(data: &ReportData) -> Result<Chart, ChartError> {
    let rows: Vec<(String, f64, String)> = busiest_pipeline(data)
        .map(|p| {
            p.stages
                .iter()
                .filter(|s| s.semantics != "F")
                .map(|s| {
                    let conv = s.conversion_pct.map_or(String::new(), |c| {
                        if data.language == "en" { format!("  ({c:.0}%)") } else { format!("  ({c:.0}\u{a0}%)") }
                    });
                    (s.name.clone(), s.reached as f64, format!("{}{conv}", s.reached))
                })
                .collect()
        })
        .unwrap_or_default();
    let rows = if rows.iter().all(|r| r.1 == 0.0) { Vec::new() } else { rows };
    horizontal_bars("funnel", data, &rows, PRIMARY, false)
}

/// Cycle-time distribution: won deals per week-wide bin of days to close.
fn cycle(data: &ReportData, chart_width: u32) -> Result<Chart, ChartError> {
    let days: Vec<f64> = data.cycle_days.iter().copied().filter(|d| d.is_finite() && *d >= 0.0).collect();
    let max = days.iter().copied().fold(0.0_f64, f64::max);
    // Weekly bins up to 12 bars; wider bins when deals take longer.
    let width = ((max / 12.0).ceil().max(1.0) / 7.0).ceil().max(1.0) * 7.0;
    let bins = ((max / width).floor() as usize + 1).min(12);
    let mut counts = vec![0u32; bins];
    for d in &days {
        let bin = ((d / width).floor() as usize).min(bins - 1);
        counts[bin] += 1;
    }
    let labels: Vec<String> = (0..bins)
        .map(|i| {
            let lo = i as f64 * width;
            if i == bins - 1 && max >= (i + 1) as f64 * width {
                format!("{lo:.0}+")
            } else {
                format!("{lo:.0}–{:.0}", lo + width)
            }
        })
        .collect();
    draw_svg("cycle", (chart_width, chart_width / 3), |root| {
        if days.is_empty() {
            return empty(&root, data);
        }
        let top = f64::from(counts.iter().copied().max().unwrap_or(1)) * 1.2;
        let n = bins as i32;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(50)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..top.max(1.0))
            .map_err(err)?;
        let x_label = segment_labels(&labels);
        segmented_mesh(&mut chart.configure_mesh(), bins, &x_label)
            .y_labels(5)
            .y_label_formatter(&|v| format!("{:.0}", v))
            .x_desc(label(data, "chart_days"))
            .y_desc(label(data, "chart_deals"))
            .label_style(muted_font(16.0))
            .axis_desc_style(muted_font(16.0))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let mut bar = Rectangle::new([(seg(i), 0.0), (seg(i + 1), f64::from(c))], PRIMARY.filled());
                bar.set_margin(0, 0, 4, 4);
                bar
            }))
            .map_err(err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_money_is_compact_in_both_languages() {
        assert_eq!(compact(1_260_000.0, false), "1,3 млн");
        assert_eq!(compact(1_260_000.0, true), "1.3M");
        assert_eq!(compact(400_000.0, false), "400 тыс");
        assert_eq!(compact(0.0, true), "0");
    }

    #[test]
    fn long_names_are_cut_on_characters_not_bytes() {
        assert_eq!(truncate("Константин Константинопольский", 12), "Константин…");
        assert_eq!(truncate("Иван", 12), "Иван");
    }
}
