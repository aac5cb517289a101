//! PDF rendering: an in-memory Typst `World` over one template, the report data as
//! `/data.json`, the charts as `/charts/<name>.svg` and the embedded fonts; PDF bytes out.
//!
//! The world never touches the file system, the network or the clock: the template's
//! source is read by `Template::from_file` before rendering, `today()` is the date of the
//! report's scheduled slot (`generated_at`), and the only fonts are the ones compiled into
//! the binary (typst-kit's embedded set plus PT Sans, the document's sans family with
//! Cyrillic). Deciding which template, which data and which charts is the pipeline's job;
//! drawing the charts is `chart`'s.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use typst::diag::{FileError, FileResult, Severity, SourceDiagnostic};
use typst::foundations::{Bytes, Datetime};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World, WorldExt};
use typst_layout::PagedDocument;

use crate::chart::Chart;
use crate::config::ReportKind;
use crate::kpi::ReportData;

const MANAGER_TEMPLATE: &str = include_str!("../report-templates/manager.typ");
const DEPARTMENT_TEMPLATE: &str = include_str!("../report-templates/department.typ");

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The template failed to compile: Typst's first error, with its 1-based position in
    /// the template (0/0 when Typst could not point at the template).
    #[error("failed to compile template {template} at line {line}, column {column} ({message})")]
    Template { template: String, line: usize, column: usize, message: String },
    #[error("failed to read template {path} ({source})")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to serialize report data for template {template} ({source})")]
    Data {
        template: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to export PDF from template {template} ({message})")]
    Pdf { template: String, message: String },
    /// The render worker process (`render_worker`) failed: it could not be started, it
    /// died, or it answered out of step. `killed`: it was killed (SIGKILL: the kernel's
    /// out-of-memory killer, an admin), which another attempt may not meet.
    #[error("the render worker failed on template {template} ({message})")]
    Worker { template: String, message: String, killed: bool },
}

/// A report template: its Typst source and a name for error messages.
#[derive(Clone, Debug)]
pub struct Template {
    /// The file path, or `builtin:manager.typ` for the templates compiled in.
    pub name: String,
    pub source: String,
}

impl Template {
    /// The built-in template of a report kind (`report-templates/*.typ`).
    pub fn builtin(kind: ReportKind) -> Template {
        let (name, source) = match kind {
            ReportKind::Manager => ("builtin:manager.typ", MANAGER_TEMPLATE),
            ReportKind::Department => ("builtin:department.typ", DEPARTMENT_TEMPLATE),
        };
        Template { name: name.to_string(), source: source.to_string() }
    }

    /// Reads a template an admin wrote.
    pub fn from_file(path: &Path) -> Result<Template, RenderError> {
        let source = std::fs::read_to_string(path)
            .map_err(|source| RenderError::Io { path: path.display().to_string(), source })?;
        Ok(Template { name: path.display().to_string(), source })
    }
}

/// The fonts and the standard library, loaded once and shared by every rendering.
struct Shared {
    library: LazyHash<Library>,
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

/// Renders templates to PDF. Cheap to clone and share between threads.
#[derive(Clone)]
pub struct Renderer {
    shared: Arc<Shared>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::new()
    }
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer").field("fonts", &self.shared.fonts.len()).finish()
    }
}

impl Renderer {
    /// Loads the embedded fonts and builds the standard library.
    pub fn new() -> Renderer {
        let mut fonts: Vec<Font> = typst_kit::fonts::embedded().map(|(font, _)| font).collect();
        for data in crate::fonts::ALL {
            fonts.extend(Font::iter(Bytes::new(data)));
        }
        let book = FontBook::from_fonts(&fonts);
        Renderer {
            shared: Arc::new(Shared { library: LazyHash::new(Library::default()), book: LazyHash::new(book), fonts }),
        }
    }

    /// Compiles `template` against `data` and `charts` into PDF bytes. Synchronous and
    /// CPU-bound: call it from a blocking thread.
    pub fn render(&self, template: &Template, data: &ReportData, charts: &[Chart]) -> Result<Vec<u8>, RenderError> {
        let json = data_json(template, data)?;
        self.render_json(template, json, charts, &data.generated_at)
    }

    /// [`Renderer::render`] of report data already serialized (`/data.json`), with its
    /// `generated_at`: what a render worker process receives (`render_worker`).
    pub fn render_json(
        &self,
        template: &Template,
        json: Vec<u8>,
        charts: &[Chart],
        generated_at: &str,
    ) -> Result<Vec<u8>, RenderError> {
        let _in_flight = InFlight::enter();
        self.compile(template, json, charts, generated_at).and_then(|document| {
            typst_pdf::pdf(&document, &typst_pdf::PdfOptions::default())
                .map_err(|errors| RenderError::Pdf { template: template.name.clone(), message: first_message(&errors) })
        })
    }

    fn compile(
        &self,
        template: &Template,
        json: Vec<u8>,
        charts: &[Chart],
        generated_at: &str,
    ) -> Result<PagedDocument, RenderError> {
        let world = ReportWorld::new(self.shared.clone(), template, json, charts, generated_at);
        let warned = typst::compile::<PagedDocument>(&world);
        // Warnings (an unknown font, say) do not stop a report, but an admin editing a
        // template wants to hear about them.
        for warning in &warned.warnings {
            let (line, column) = world.position(warning).unwrap_or((0, 0));
            tracing::warn!(template = %template.name, line, column, "Template warning: {}.", diagnostic_text(warning));
        }
        warned.output.map_err(|errors| world.template_error(&template.name, &errors))
    }
}

/// Compiles a template against `data` once without exporting it: `check` uses it to tell
/// an admin about a broken template before the first scheduled run.
pub fn check_template(
    renderer: &Renderer,
    template: &Template,
    data: &ReportData,
    charts: &[Chart],
) -> Result<(), RenderError> {
    let json = data_json(template, data)?;
    let _in_flight = InFlight::enter();
    renderer.compile(template, json, charts, &data.generated_at).map(drop)
}

/// The report data as the template reads it (`/data.json`).
pub fn data_json(template: &Template, data: &ReportData) -> Result<Vec<u8>, RenderError> {
    serde_json::to_vec(data).map_err(|source| RenderError::Data { template: template.name.clone(), source })
}

/// Documents being compiled right now, by all threads of the process.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One document being compiled; dropping it (also when Typst panicked) trims Typst's memo
/// cache, comemo's, which is global to the process and shared by every thread.
///
/// Memoized layouts of one report are of little use to the next, and comemo keeps what its
/// cache holds until told: the last document out empties the cache (`evict(0)`), so the
/// daemon rests with nothing in it. A document still in flight on another thread needs its
/// own entries, though: Typst lays a document out twice (the footer's page count is known
/// after the first pass), and the second pass replays the first one's memoized layouts, so
/// emptying the cache under it makes that thread redo work. While others are in flight,
/// only entries unused for two evictions per other document go: an entry's age is reset
/// each time it is used, and each other document ends about once while this one compiles.
/// The cache then holds a few documents' entries at most. (Measured: ~1 % fewer
/// instructions per document on 2 threads under callgrind; BENCHMARKS.md §1.)
struct InFlight(());

impl InFlight {
    fn enter() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Of two documents ending at once, the second to get here sees none left: the last
        // one out always empties the cache.
        let others = IN_FLIGHT.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        comemo::evict(if others == 0 { 0 } else { 2 * others });
    }
}

static MAIN_ID: LazyLock<FileId> = LazyLock::new(|| project_file("/main.typ"));

fn project_file(path: &str) -> FileId {
    // The paths are ours (constants and `/charts/<name>.svg`), so they are valid.
    let vpath = VirtualPath::new(path).unwrap_or_else(|_| VirtualPath::new("/invalid").expect("a constant path"));
    RootedPath::new(VirtualRoot::Project, vpath).intern()
}

/// One document's world: the shared fonts and library, plus this document's files.
struct ReportWorld {
    shared: Arc<Shared>,
    main: Source,
    files: HashMap<FileId, Bytes>,
    today: Option<Datetime>,
}

impl ReportWorld {
    fn new(shared: Arc<Shared>, template: &Template, json: Vec<u8>, charts: &[Chart], generated_at: &str) -> Self {
        let mut files = HashMap::new();
        files.insert(project_file("/data.json"), Bytes::new(json));
        for chart in charts {
            files.insert(project_file(&chart.path), Bytes::from_string(chart.svg.clone()));
        }
        ReportWorld {
            shared,
            main: Source::new(*MAIN_ID, template.source.clone()),
            files,
            today: slot_date(generated_at),
        }
    }

    /// The first error, positioned in the template.
    fn template_error(&self, template: &str, errors: &[SourceDiagnostic]) -> RenderError {
        let error = errors.iter().find(|e| e.severity == Severity::Error).or(errors.first());
        let Some(error) = error else {
            return RenderError::Template {
                template: template.to_string(),
                line: 0,
                column: 0,
                message: "unknown error".into(),
            };
        };
        let (line, column) = self.position(error).unwrap_or((0, 0));
        RenderError::Template { template: template.to_string(), line, column, message: diagnostic_text(error) }
    }

    /// The 1-based line and column of a diagnostic in the template: its own span when it
    /// points into the template, else the innermost call in the template that led to it.
    fn position(&self, diagnostic: &SourceDiagnostic) -> Option<(usize, usize)> {
        let spans = std::iter::once(diagnostic.span).chain(diagnostic.trace.iter().map(|t| t.span.into()));
        spans
            .filter(|span| span.id() == Some(*MAIN_ID))
            .find_map(|span| self.range(span))
            .and_then(|range| self.main.lines().byte_to_line_column(range.start))
            .map(|(line, column)| (line + 1, column + 1))
    }
}

impl World for ReportWorld {
    fn library(&self) -> &LazyHash<Library> {
        &self.shared.library
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &self.shared.book
    }

    fn main(&self) -> FileId {
        *MAIN_ID
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == *MAIN_ID { Ok(self.main.clone()) } else { Err(FileError::NotSource) }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == *MAIN_ID {
            return Ok(Bytes::from_string(self.main.text().to_string()));
        }
        self.files.get(&id).cloned().ok_or_else(|| FileError::NotFound(id.get().vpath().get_with_slash().into()))
    }

    fn font(&self, index: usize) -> Option<Font> {
        self.shared.fonts.get(index).cloned()
    }

    fn today(&self, _offset: Option<typst::foundations::Duration>) -> Option<Datetime> {
        self.today
    }
}

/// The date of the report's slot (`2026-11-23T08:00:03+03:00` → 2026-11-23): a template's
/// `datetime.today()` must not make two renderings of one slot differ.
fn slot_date(generated_at: &str) -> Option<Datetime> {
    let date = generated_at.get(..10)?;
    let mut parts = date.split('-');
    let year = parts.next()?.parse().ok()?;
    let month = parts.next()?.parse().ok()?;
    let day = parts.next()?.parse().ok()?;
    Datetime::from_ymd(year, month, day)
}

fn diagnostic_text(error: &SourceDiagnostic) -> String {
    let mut text = error.message.to_string();
    for hint in &error.hints {
        text.push_str("; hint: ");
        text.push_str(&hint.v);
    }
    text
}

fn first_message(errors: &[SourceDiagnostic]) -> String {
    errors.first().map_or_else(|| "unknown error".to_string(), diagnostic_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_date_comes_from_generated_at() {
        assert_eq!(slot_date("2026-11-23T08:00:03+03:00"), Datetime::from_ymd(2026, 11, 23));
        assert_eq!(slot_date("garbage"), None);
    }

    #[test]
    fn the_font_book_has_pt_sans_regular_and_bold() {
        let renderer = Renderer::new();
        let book = &renderer.shared.book;
        assert!(book.contains_family("pt sans"), "PT Sans is not in the font book");
        assert!(renderer.shared.fonts.len() > 3);
    }
}
