//! Rendering in a child process: the daemon's PDFs are laid out by `salespulse
//! render-worker`, a process of its own binary that lives for one job.
//!
//! Typst memoizes through comemo, whose caches are process-wide tables that can be emptied
//! but never shrunk: after a job they held ~8 MiB of empty slots, and their growth left the
//! daemon's heap fragmented around them (BENCHMARKS.md §4). A worker takes all of that with
//! it when it exits, so the daemon rests with what scheduling, the ledger and the CRM
//! client need. `send`, `report` and `check` render in their own process, which ends anyway.
//!
//! The pipeline starts one worker per render thread when a job's rendering begins and
//! closes it when the job's reports are done. A worker reads requests on stdin and answers
//! each on stdout, in order; its log lines go to the daemon's stderr. Each message is a
//! frame: an 8-byte little-endian length, then that many bytes. A request is two frames, a
//! JSON [`Request`] (template, charts, `generated_at`) and the report data as the template
//! reads it (`/data.json`); an answer is two frames, a JSON [`Answer`] and the PDF (empty
//! when the answer is an error). End of input: the worker exits 0.
//!
//! A worker ignores SIGTERM, SIGINT and SIGHUP: the daemon finishes the job in flight when
//! it is stopped, and the worker goes when the daemon closes its input (or dies).
//!
//! A worker that cannot be started (a sandbox without `execve`) does not stop the reports:
//! the pipeline renders in its own process instead and says so in the log. A worker that
//! dies on a report, or answers out of step (each answer echoes its request's id), fails
//! that report, and so the job's attempt (nothing of it is sent); the daemon retries the
//! job when the worker was killed (the out-of-memory killer), not when it crashed on its
//! own. The next report gets a new worker. The daemon starts its workers from
//! `/proc/self/exe`: the file it runs, even once an upgrade has replaced the binary.

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::chart::Chart;
use crate::kpi::ReportData;
use crate::render::{RenderError, Renderer, Template};

/// The largest frame either side accepts: far above a report (a PDF of a few hundred KiB,
/// data of a few MiB), far below what would exhaust memory on a garbled length.
const MAX_FRAME: u64 = 1 << 30;

/// What to render, besides the data.
#[derive(Serialize, Deserialize)]
struct Request {
    /// Echoed in the answer: a worker out of step is found, never trusted.
    id: u64,
    template_name: String,
    template_source: String,
    generated_at: String,
    charts: Vec<WireChart>,
}

#[derive(Serialize, Deserialize)]
struct WireChart {
    name: String,
    path: String,
    svg: String,
}

/// The answer to request `id`.
#[derive(Serialize, Deserialize)]
struct AnswerHead {
    id: u64,
    answer: Answer,
}

/// How a request went.
#[derive(Serialize, Deserialize)]
enum Answer {
    /// The PDF follows.
    Done,
    TemplateError {
        template: String,
        line: usize,
        column: usize,
        message: String,
    },
    ExportError {
        template: String,
        message: String,
    },
    Panicked {
        message: String,
    },
}

fn write_frame(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(&(bytes.len() as u64).to_le_bytes())?;
    out.write_all(bytes)
}

/// The next frame; `None` at a clean end of input (before a frame's first byte).
fn read_frame(input: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 8];
    let mut got = 0;
    while got < len.len() {
        match input.read(&mut len[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    let len = u64::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a frame of {len} bytes")));
    }
    let mut bytes = vec![0u8; len as usize];
    input.read_exact(&mut bytes)?;
    Ok(Some(bytes))
}

/// `salespulse render-worker`: answers requests from stdin until it closes. The command
/// line has ignored the stop signals before this ([`ignore_stop_signals`]).
pub fn serve() -> std::io::Result<()> {
    let renderer = Renderer::new();
    let mut input = BufReader::new(std::io::stdin().lock());
    let mut output = BufWriter::new(std::io::stdout().lock());
    while let Some(head) = read_frame(&mut input)? {
        let request: Request = serde_json::from_slice(&head)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a garbled request ({e})")))?;
        let json = read_frame(&mut input)?.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        let template = Template { name: request.template_name, source: request.template_source };
        let charts: Vec<Chart> =
            request.charts.into_iter().map(|c| Chart { name: c.name, path: c.path, svg: c.svg }).collect();
        // A panic in Typst is this report's failure, not the other reports'.
        let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            renderer.render_json(&template, json, &charts, &request.generated_at)
        }));
        let (answer, pdf) = match rendered {
            Ok(Ok(pdf)) => (Answer::Done, pdf),
            Ok(Err(RenderError::Template { template, line, column, message })) => {
                (Answer::TemplateError { template, line, column, message }, Vec::new())
            }
            Ok(Err(RenderError::Pdf { template, message })) => (Answer::ExportError { template, message }, Vec::new()),
            // Not made from serialized data: kept as text.
            Ok(Err(e)) => (Answer::ExportError { template: template.name.clone(), message: e.to_string() }, Vec::new()),
            Err(payload) => (Answer::Panicked { message: crate::text::panic_message(&*payload) }, Vec::new()),
        };
        let head = serde_json::to_vec(&AnswerHead { id: request.id, answer }).expect("an answer serializes");
        write_frame(&mut output, &head)?;
        write_frame(&mut output, &pdf)?;
        output.flush()?;
    }
    Ok(())
}

/// A worker stops when the daemon closes its input, not on a signal: `systemctl stop`
/// sends SIGTERM to every process of the service and Ctrl-C on a terminal SIGINT to the
/// whole process group, and the daemon then finishes the job in flight, which needs its
/// workers. A daemon that dies closes the pipe, and the worker exits on the end of input.
pub fn ignore_stop_signals() {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: SIG_IGN installs no handler; it only changes what the kernel does with
        // the signal for this process.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
}

/// A report's PDF, or why there is none.
pub enum Rendered {
    Pdf(Vec<u8>),
    Failed(RenderError),
    /// Typst panicked in the worker (the message); the worker lives on.
    Panicked(String),
}

/// One worker process, started by the pipeline. Dropping it closes its input and waits for
/// it to exit.
pub struct Worker {
    exe: PathBuf,
    process: Option<Running>,
    next_id: u64,
}

struct Running {
    child: Child,
    input: BufWriter<ChildStdin>,
    output: BufReader<ChildStdout>,
    /// A request was written and its answer not read (the caller unwound between): the
    /// worker is out of step and is not used again.
    pending: bool,
}

impl Worker {
    /// Starts `exe render-worker`.
    pub fn start(exe: &Path) -> std::io::Result<Worker> {
        let mut worker = Worker { exe: exe.to_path_buf(), process: None, next_id: 0 };
        worker.process = Some(worker.spawn()?);
        Ok(worker)
    }

    /// The worker's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|running| running.child.id())
    }

    fn spawn(&self) -> std::io::Result<Running> {
        let mut child = Command::new(&self.exe)
            // `ps` shows `salespulse render-worker`, also when started as `/proc/self/exe`.
            .arg0("salespulse")
            .arg("render-worker")
            // A worker needs no secret: of the daemon's environment it gets only what
            // shapes logging, the allocator and the process ([`passed_on`]).
            .env_clear()
            .envs(std::env::vars_os().filter(|(name, _)| passed_on(name)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        tracing::debug!(pid = child.id(), "Render worker started.");
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("no pipes to the render worker"));
        };
        Ok(Running { child, input: BufWriter::new(input), output: BufReader::new(output), pending: false })
    }

    /// Renders one report in the worker. A worker that died before (on the report before)
    /// is started again first.
    pub fn render(&mut self, template: &Template, data: &ReportData, charts: &[Chart]) -> Rendered {
        let json = match crate::render::data_json(template, data) {
            Ok(json) => json,
            Err(e) => return Rendered::Failed(e),
        };
        if json.len() as u64 > MAX_FRAME {
            let message = format!("the report data is {} bytes, more than a worker takes ({MAX_FRAME})", json.len());
            return Rendered::Failed(worker_error(template, message, false));
        }
        if self.process.as_ref().is_some_and(|running| running.pending) {
            self.stop();
        }
        if self.process.is_none() {
            match self.spawn() {
                Ok(running) => self.process = Some(running),
                Err(e) => {
                    return Rendered::Failed(worker_error(template, format!("failed to start it again ({e})"), false));
                }
            }
        }
        let running = self.process.as_mut().expect("started above");
        self.next_id += 1;
        match exchange(running, self.next_id, template, &json, charts, &data.generated_at) {
            Ok(rendered) => rendered,
            Err(e) => {
                // The worker is gone or out of step: this report fails, the next one gets
                // a new worker.
                let status = self.stop();
                let killed = status.is_some_and(|s| s.signal() == Some(libc::SIGKILL));
                let status = status.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
                Rendered::Failed(worker_error(template, format!("{e}; the worker process ended: {status}"), killed))
            }
        }
    }

    /// Kills the worker process, if there is one, and reaps it: how it ended.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut running = self.process.take()?;
        let _ = running.child.kill();
        running.child.wait().ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(Running { mut child, input, output, .. }) = self.process.take() {
            // End of input: the worker exits.
            drop(input);
            drop(output);
            let _ = child.wait();
        }
    }
}

/// The environment variables a worker inherits: logging (`SALESPULSE_LOG`, the journal's
/// `JOURNAL_STREAM`, Rust's backtraces), the allocator (`MALLOC_*`), the dynamic loader
/// (`LD_*`: a preloaded library such as libfaketime) and the locale and time zone. Not
/// the rest: a webhook URL or a password given through `*_env` stays in the daemon.
fn passed_on(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else { return false };
    matches!(name, "SALESPULSE_LOG" | "JOURNAL_STREAM" | "RUST_BACKTRACE" | "RUST_LIB_BACKTRACE" | "TZ" | "LANG")
        || ["MALLOC_", "LD_", "LC_", "FAKETIME"].iter().any(|prefix| name.starts_with(prefix))
}

fn worker_error(template: &Template, message: String, killed: bool) -> RenderError {
    RenderError::Worker { template: template.name.clone(), message, killed }
}

fn exchange(
    running: &mut Running,
    id: u64,
    template: &Template,
    json: &[u8],
    charts: &[Chart],
    generated_at: &str,
) -> std::io::Result<Rendered> {
    let request = Request {
        id,
        template_name: template.name.clone(),
        template_source: template.source.clone(),
        generated_at: generated_at.to_owned(),
        charts: charts
            .iter()
            .map(|c| WireChart { name: c.name.clone(), path: c.path.clone(), svg: c.svg.clone() })
            .collect(),
    };
    running.pending = true;
    write_frame(&mut running.input, &serde_json::to_vec(&request).expect("a request serializes"))?;
    write_frame(&mut running.input, json)?;
    running.input.flush()?;
    let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no answer from the render worker");
    let head = read_frame(&mut running.output)?.ok_or_else(eof)?;
    let pdf = read_frame(&mut running.output)?.ok_or_else(eof)?;
    let head: AnswerHead = serde_json::from_slice(&head)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a garbled answer ({e})")))?;
    if head.id != id {
        let message = format!("request {id} got the answer to request {}", head.id);
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, message));
    }
    running.pending = false;
    Ok(match head.answer {
        Answer::Done => Rendered::Pdf(pdf),
        Answer::TemplateError { template, line, column, message } => {
            Rendered::Failed(RenderError::Template { template, line, column, message })
        }
        Answer::ExportError { template, message } => Rendered::Failed(RenderError::Pdf { template, message }),
        Answer::Panicked { message } => Rendered::Panicked(message),
    })
}
