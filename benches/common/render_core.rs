//! The render benchmark's core: for each scorecard, draw its charts (`chart`) and lay it
//! out into a PDF (`render`), on N worker threads sharing one `Renderer`; and write one
//! document's inputs to a folder (template, `data.json`, chart SVGs, fonts) so that the
//! Typst CLI and the Python pipeline can be timed on exactly the same document.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use salespulse::chart::{self, Chart};
use salespulse::config::ReportKind;
use salespulse::kpi::ReportData;
use salespulse::render::{Renderer, Template};

/// One document's costs.
#[derive(Clone, Copy, Debug, Default)]
pub struct DocTimes {
    pub chart: Duration,
    pub render: Duration,
    pub pdf_bytes: usize,
}

/// A batch of documents rendered.
pub struct RenderRun {
    pub docs: usize,
    pub threads: usize,
    pub wall: Duration,
    /// CPU time of the whole process (user + system, every thread) while the batch ran: what
    /// the documents cost, whatever else the machine was doing.
    pub cpu: Duration,
    pub times: Vec<DocTimes>,
}

impl RenderRun {
    pub fn per_second(&self) -> f64 {
        self.docs as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Median of one of the per-document costs.
    pub fn median(&self, f: impl Fn(&DocTimes) -> Duration) -> Duration {
        let mut v: Vec<Duration> = self.times.iter().map(f).collect();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }

    /// Process CPU time per document.
    pub fn cpu_per_doc(&self) -> Duration {
        self.cpu / self.docs.max(1) as u32
    }

    pub fn mean_bytes(&self) -> usize {
        self.times.iter().map(|t| t.pdf_bytes).sum::<usize>() / self.times.len().max(1)
    }
}

/// The charts of a scorecard, and the data with their paths filled in as the pipeline does.
pub fn with_charts(data: &ReportData) -> (ReportData, Vec<Chart>) {
    let charts = chart::manager_charts(data).expect("the built-in charts draw");
    let mut data = data.clone();
    chart::attach(&mut data, &charts);
    (data, charts)
}

/// Charts and PDF of one scorecard.
pub fn one(renderer: &Renderer, template: &Template, data: &ReportData) -> (Vec<u8>, DocTimes) {
    let t = Instant::now();
    let (data, charts) = with_charts(data);
    let chart = t.elapsed();
    let t = Instant::now();
    let pdf = renderer.render(template, &data, &charts).expect("the built-in template renders");
    let render = t.elapsed();
    let pdf_bytes = pdf.len();
    (pdf, DocTimes { chart, render, pdf_bytes })
}

/// Renders every scorecard of `datas` on `threads` threads; PDFs are dropped (a sink would
/// only measure the disk). `keep_first` keeps the first PDF for inspection.
pub fn run(
    renderer: &Renderer,
    datas: &[ReportData],
    threads: usize,
    keep_first: bool,
) -> (RenderRun, Option<Vec<u8>>) {
    let template = Template::builtin(ReportKind::Manager);
    let next = AtomicUsize::new(0);
    let times = Mutex::new(vec![DocTimes::default(); datas.len()]);
    let first = Mutex::new(None);
    let threads = threads.max(1);
    let t = Instant::now();
    let cpu = process_cpu();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(data) = datas.get(i) else { break };
                    let (pdf, doc) = one(renderer, &template, data);
                    times.lock().expect("times lock")[i] = doc;
                    if i == 0 && keep_first {
                        *first.lock().expect("first lock") = Some(pdf);
                    }
                }
            });
        }
    });
    let wall = t.elapsed();
    let cpu = process_cpu().saturating_sub(cpu);
    let run = RenderRun { docs: datas.len(), threads, wall, cpu, times: times.into_inner().expect("times lock") };
    (run, first.into_inner().expect("first lock"))
}

/// Writes one document's inputs: `main.typ`, `data.json`, `charts/<name>.svg`, `fonts/*.ttf`
/// (PT Sans, the only font the template names), and `expected.pdf` from our renderer.
pub fn export(dir: &Path, data: &ReportData, renderer: &Renderer) -> std::io::Result<()> {
    let (data, charts) = with_charts(data);
    std::fs::create_dir_all(dir.join("charts"))?;
    std::fs::create_dir_all(dir.join("fonts"))?;
    let template = Template::builtin(ReportKind::Manager);
    std::fs::write(dir.join("main.typ"), &template.source)?;
    std::fs::write(dir.join("data.json"), serde_json::to_vec_pretty(&data).map_err(std::io::Error::other)?)?;
    for c in &charts {
        std::fs::write(dir.join(c.path.trim_start_matches('/')), &c.svg)?;
    }
    for (name, bytes) in [
        ("PTSans-Regular.ttf", salespulse::fonts::REGULAR),
        ("PTSans-Bold.ttf", salespulse::fonts::BOLD),
        ("PTSans-Italic.ttf", salespulse::fonts::ITALIC),
    ] {
        std::fs::write(dir.join("fonts").join(name), bytes)?;
    }
    let pdf = renderer.render(&template, &data, &charts).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("expected.pdf"), pdf)
}

/// User + system CPU time of this process so far (`getrusage`).
pub fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
