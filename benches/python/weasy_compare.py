"""A straightforward Python pipeline for the same scorecard: matplotlib charts into an
HTML page that WeasyPrint prints to PDF.

Each argument is a folder written by `cargo bench --bench render`; its data.json is the
exact data salespulse rendered. The page has the same content as the built-in manager
template: header, nine KPI cards, the team block, hints, the trend chart, the funnel chart
with its per-pipeline tables, stuck deals and data-quality notes, in PT Sans (fonts/).
Charts are SVG, as salespulse's are.

Times: the first document of this process with the imports of matplotlib and WeasyPrint
included, then the median of the others (charts, then HTML to PDF). The last line printed is
a JSON object of milliseconds; the Rust bench reads it.
"""

import time

STARTED = time.perf_counter()

import html  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

import weasyprint  # noqa: E402

IMPORTED = time.perf_counter()

PRIMARY, SECONDARY, TARGET, INK, MUTED = "#1f4e79", "#9cb8d4", "#d97a2b", "#1f2a37", "#6b7280"
CARDS = ["revenue", "deals_won", "avg_deal_value", "lead_conversion", "cycle_days_median", "win_rate", "csat",
         "emails_sent", "calls_made"]


def setup_fonts(fonts: Path) -> None:
    for f in sorted(fonts.glob("*.ttf")):
        font_manager.fontManager.addfont(str(f))
    plt.rcParams["font.family"] = "PT Sans"
    plt.rcParams["svg.fonttype"] = "path"


def svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def trend_chart(data: dict) -> str:
    trend = data.get("trend", [])
    labels = [p.get("short") or p["label"] for p in trend]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.bar(labels, [p["revenue"] for p in trend], color=PRIMARY, label="Выручка")
    targets = [p.get("target_revenue") for p in trend]
    if any(t is not None for t in targets):
        ax.plot(labels, [t if t is not None else float("nan") for t in targets], color=TARGET, ls="--",
                label="План по выручке")
    ax2 = ax.twinx()
    ax2.plot(labels, [p["deals_won"] for p in trend], color=INK, marker="o", label="Сделок выиграно")
    ax.grid(axis="y", color="#e5e7eb")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return svg(fig)


def busiest(data: dict):
    pipelines = data.get("breakdowns", {}).get("funnel", [])
    return max(pipelines, key=lambda p: sum(s["deals"] for s in p["stages"]), default=None)


def funnel_chart(data: dict) -> str:
    p = busiest(data)
    stages = p["stages"] if p else []
    fig, ax = plt.subplots(figsize=(5.6, 3.2))
    ax.barh([s["name"] for s in stages][::-1], [s["deals"] for s in stages][::-1], color=SECONDARY)
    for i, s in enumerate(stages[::-1]):
        ax.text(s["deals"], i, f" {s['deals']}", va="center", fontsize=8, color=INK)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(p["pipeline"] if p else "", fontsize=10, color=INK)
    return svg(fig)


def esc(x) -> str:
    return "—" if x is None or x == "" else html.escape(str(x))


def fmt_num(x, decimals=0) -> str:
    if x is None:
        return "—"
    s = f"{abs(x):,.{decimals}f}".replace(",", "\u00a0").replace(".", ",")
    return ("−" if x < 0 else "") + s


def kpi_card(data: dict, key: str) -> str:
    k = data["kpis"].get(key, {})
    t = k.get("text") or {}
    tone = {"good": "#1e8e3e", "bad": "#c5221f"}.get(t.get("tone"), MUTED)
    arrow = {"up": "▲", "down": "▼", "flat": "●"}.get(t.get("direction"), "")
    target = ""
    if k.get("target") is not None:
        pct = max(0, min(k.get("attainment_pct") or 0, 100))
        target = (f'<div class="small">План: {esc(t.get("target"))} <span style="float:right">{esc(t.get("attainment"))}'
                  f'</span></div><div class="bar"><div style="width:{pct}%"></div></div>')
    return (f'<div class="card"><div class="small">{esc(t.get("label", key))}</div>'
            f'<div class="value">{esc(t.get("value"))}</div>'
            f'<div class="small" style="color:{tone}">{arrow} {esc(t.get("delta"))} ({esc(t.get("delta_pct"))})'
            f'<span style="float:right;color:{MUTED}">Пред.: {esc(t.get("previous"))}</span></div>{target}</div>')


def page(data: dict, fonts: Path, trend_svg: str, funnel_svg: str) -> str:
    faces = "".join(
        f'@font-face {{ font-family: "PT Sans"; src: url("{f.as_uri()}"); font-weight: {w}; font-style: {s}; }}'
        for f, w, s in [(fonts / "PTSans-Regular.ttf", "normal", "normal"), (fonts / "PTSans-Bold.ttf", "bold", "normal"),
                        (fonts / "PTSans-Italic.ttf", "normal", "italic")]
    )
    name = esc((data.get("manager") or {}).get("name"))
    out = [f"""<!doctype html><html lang="ru"><head><meta charset="utf-8"><style>{faces}
@page {{ size: A4; margin: 1.3cm 1.5cm 1.5cm 1.5cm;
  @bottom-left {{ content: "{name} · {esc(data['period']['label'])}"; font: 7.5pt "PT Sans"; color: {MUTED}; }}
  @bottom-right {{ content: "Стр. " counter(page) "/" counter(pages); font: 7.5pt "PT Sans"; color: {MUTED}; }} }}
body {{ font: 9.5pt "PT Sans"; color: {INK}; }}
h1 {{ font-size: 21pt; margin: 0; }} h2 {{ font-size: 11.5pt; color: {PRIMARY}; border-bottom: 0.6pt solid #e5e7eb; }}
.small {{ font-size: 8.5pt; color: {MUTED}; }} .value {{ font-size: 16pt; font-weight: bold; }}
.cards {{ display: grid; grid-template-columns: 1fr 1fr 1fr; gap: 7pt; }}
.card {{ background: #f6f7f9; padding: 8pt 9pt; break-inside: avoid; }}
.bar {{ height: 4pt; background: #e5e7eb; border-radius: 2pt; }} .bar div {{ height: 4pt; background: {TARGET}; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ padding: 3pt 5pt; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} th {{ font-size: 8pt; color: {MUTED}; font-weight: normal; }}
.hint {{ border-left: 2.5pt solid {TARGET}; padding: 5pt 9pt; margin-bottom: 5pt; }}
.row {{ display: flex; gap: 12pt; }} .row > div {{ flex: 1; }} img {{ width: 100%; }}
</style></head><body>
<div class="small" style="color:{PRIMARY};font-weight:bold">Эффективность менеджера</div>
<h1>{name}</h1><div><b>{esc(data['period'].get('title'))}</b> <span class="small">{esc(data['period']['label'])} ·
Предыдущий период: {esc(data['previous_period'].get('title'))}</span></div>
<div class="cards">{''.join(kpi_card(data, k) for k in CARDS)}</div>"""]
    team = data.get("team")
    if team:
        med = team.get("medians", {})
        rows = "".join(
            f"<tr><td>{esc((data['kpis'][k].get('text') or {}).get('label', k))}</td>"
            f"<td>{esc((data['kpis'][k].get('text') or {}).get('value'))}</td><td>{fmt_num(med.get(k), 1)}</td></tr>"
            for k in ["revenue", "deals_won", "lead_conversion"])
        out.append(f"""<h2>Ваше место в команде</h2><div class="row"><div>Место по выручке:
<b>{esc(team.get('rank_revenue'))} из {team.get('size')}</b><br>Место по конверсии лидов:
<b>{esc(team.get('rank_conversion'))} из {team.get('size')}</b></div><div><table><tr><th></th><th>Вы</th>
<th>Медиана команды</th></tr>{rows}</table></div></div>""")
    if data.get("hints"):
        out.append("<h2>Что сделать на этой неделе</h2>" + "".join(f'<div class="hint">{esc(h["text"])}</div>'
                                                                  for h in data["hints"]))
    out.append(f'<h2>Динамика по периодам</h2><img src="data:image/svg+xml;charset=utf-8,{quote(trend_svg)}">')
    tables = ""
    for p in data.get("breakdowns", {}).get("funnel", []):
        if not any(s["deals"] for s in p["stages"]):
            continue
        rows = "".join(f"<tr><td>{esc(s['name'])}</td><td>{s['deals']}</td><td>{fmt_num(s.get('conversion_pct'), 1)}"
                       f"</td><td>{fmt_num(s.get('median_days'), 1)}</td></tr>" for s in p["stages"])
        tables += (f"<b>{esc(p['pipeline'])}</b><table><tr><th>Этап</th><th>Сделок</th><th>Конверсия</th>"
                   f"<th>Медиана, дн.</th></tr>{rows}</table>")
    out.append(f'<h2>Воронка продаж</h2><div class="row"><div><img src="data:image/svg+xml;charset=utf-8,'
               f'{quote(funnel_svg)}"></div><div>{tables}</div></div>')
    stuck = data.get("stuck_deals", [])
    if stuck:
        rows = "".join(f"<tr><td>{esc(d['title'])}</td><td>{esc(d['stage'])}</td><td><b>{fmt_num(d['days'])}</b></td>"
                       f"<td>{esc(d.get('value_text') or fmt_num(d.get('value')))}</td></tr>" for d in stuck)
        out.append("<h2>Зависшие сделки</h2><table><tr><th>Сделка</th><th>Этап</th><th>Дней без движения</th>"
                   f"<th>Сумма</th></tr>{rows}</table>")
    else:
        out.append('<h2>Зависшие сделки</h2><div class="small">Зависших сделок нет</div>')
    if data.get("notes"):
        out.append('<div class="small" style="border:0.5pt solid #e5e7eb;padding:7pt;margin-top:10pt">'
                   "<b>Качество данных</b><ul>" + "".join(f"<li>{esc(n)}</li>" for n in data["notes"]) + "</ul></div>")
    out.append("</body></html>")
    return "".join(out)


def quote(s: str) -> str:
    from urllib.parse import quote as q
    return q(s)


def one(d: Path):
    data = json.loads((d / "data.json").read_text(encoding="utf-8"))
    t = time.perf_counter()
    trend_svg, funnel_svg = trend_chart(data), funnel_chart(data)
    charts = time.perf_counter() - t
    t = time.perf_counter()
    weasyprint.HTML(string=page(data, d / "fonts", trend_svg, funnel_svg), base_url=str(d)).write_pdf(d / "weasy.pdf")
    return charts, time.perf_counter() - t


def main() -> None:
    dirs = [Path(a).resolve() for a in sys.argv[1:]]
    if not dirs:
        sys.exit("usage: weasy_compare.py DOC_DIR...")
    setup_fonts(dirs[0] / "fonts")
    c0, p0 = one(dirs[0])
    first = (IMPORTED - STARTED) + c0 + p0
    rest = [one(d) for d in dirs[1:]] or [(c0, p0)]
    ms = lambda xs: statistics.median(xs) * 1000.0  # noqa: E731
    print(f"matplotlib {matplotlib.__version__}, WeasyPrint {weasyprint.__version__}: {len(dirs)} documents, "
          f"imports {(IMPORTED - STARTED) * 1000:.0f} ms, first PDF {(dirs[0] / 'weasy.pdf').stat().st_size} bytes")
    print(json.dumps({
        "matplotlib": matplotlib.__version__,
        "weasyprint": weasyprint.__version__,
        "docs": len(dirs),
        "imports_ms": (IMPORTED - STARTED) * 1000.0,
        "first_doc_ms": first * 1000.0,
        "charts_ms": ms([r[0] for r in rest]),
        "pdf_ms": ms([r[1] for r in rest]),
    }))


if __name__ == "__main__":
    main()
