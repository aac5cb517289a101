use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressDrawTarget, TermLike};

use super::*;

/// A terminal that keeps the text drawn on it.
#[derive(Clone, Debug, Default)]
struct Recorder(Arc<Mutex<String>>);

impl Recorder {
    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    fn target(&self) -> impl Fn() -> ProgressDrawTarget + Send + Sync + 'static {
        let me = self.clone();
        move || ProgressDrawTarget::term_like(Box::new(me.clone()))
    }
}

impl TermLike for Recorder {
    fn width(&self) -> u16 {
        200
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.lock().unwrap().push_str(s);
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        // Each redraw on a line of its own.
        self.write_str("\n")
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The last line drawn that contains `needle`.
fn last_with(text: &str, needle: &str) -> String {
    let line = text.lines().rev().find(|l| l.contains(needle));
    line.unwrap_or_else(|| panic!("no {needle:?} in:\n{text}")).trim_end().to_owned()
}

#[test]
fn the_bar_shows_the_stage_requests_of_expected_rows_elapsed_and_time_left() {
    let term = Recorder::default();
    let progress = Progress::bar_on(term.target());
    {
        let _shown = progress.begin("manager-weekly 2026-W47");
        progress.stage(Stage::Fetch, None);
        for _ in 0..3 {
            progress.request_done();
        }
        // The first batch's totals: 7 more requests to come.
        progress.fetched(150, 7);
        assert_eq!(progress.counts(), Counts { requests: 3, expected: 10, rows: 150, items: 0, items_total: 0 });
        progress.draw();
        let line = last_with(&term.text(), "fetch");
        assert!(line.starts_with("manager-weekly 2026-W47 fetch ["), "{line}");
        assert!(line.contains("] 3/~10 requests, 150 rows, "), "{line}");
        assert!(line.contains(" elapsed, ~") && line.ends_with(" left"), "{line}");

        // A retry makes more requests than expected: the expectation follows.
        for _ in 0..11 {
            progress.request_done();
        }
        progress.fetched(20, 0);
        assert_eq!((progress.counts().requests, progress.counts().expected), (14, 14));

        progress.stage(Stage::Kpi, None);
        progress.draw();
        let line = last_with(&term.text(), "KPI");
        assert!(line.starts_with("manager-weekly 2026-W47 KPI ") && line.contains(" computing, "), "{line}");

        progress.stage(Stage::Render, Some(4));
        progress.item_done();
        progress.item_done();
        progress.draw();
        let line = last_with(&term.text(), "charts+render");
        assert!(line.contains("] 2/4 reports, ") && line.ends_with(" left"), "{line}");
    }
    assert_eq!(progress.current_stage(), None, "the guard took the bar away");
    {
        let _shown = progress.resume();
        progress.stage(Stage::Delivery, Some(2));
        // Two reports and the admin's digest.
        for _ in 0..3 {
            progress.item_done();
        }
        progress.draw();
        let line = last_with(&term.text(), "delivery");
        assert!(line.contains("] 3/3 messages, "), "{line}");
        assert_eq!(progress.counts().requests, 14, "delivery goes on with the run's counters");
    }
    assert!(term.text().is_ascii(), "an ASCII bar: {}", term.text());
}

#[test]
fn the_label_is_one_line_without_control_characters() {
    let term = Recorder::default();
    let progress = Progress::bar_on(term.target());
    let _shown = progress.begin("job\u{1b}[2J\r\nname\u{202E} 2026-W47");
    progress.stage(Stage::Fetch, None);
    progress.draw();
    let text = term.text();
    assert!(text.contains("job [2J name 2026-W47 fetch"), "{text:?}");
    assert!(!text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{202E}'), "{text:?}");
}

#[test]
fn off_counts_nothing_and_draws_nothing() {
    let progress = Progress::off();
    let _shown = progress.begin("x");
    progress.stage(Stage::Fetch, None);
    progress.request_done();
    progress.fetched(10, 3);
    assert_eq!(progress.counts(), Counts::default());
    assert_eq!(progress.current_stage(), None);
    assert_eq!(format!("{progress:?}"), "Progress(off)");
    assert_eq!(progress.suspend(|| 7), 7);
}

/// This thread's log lines at `info` and above, until the guard drops.
fn capture() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(lines.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    (lines, tracing::subscriber::set_default(subscriber))
}

fn text(lines: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&lines.lock().unwrap()).into_owned()
}

/// Lets the tasks woken by the paused clock run.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// Without a terminal: a line per stage, and one every 30 s while the fetch runs (on
/// tokio's paused clock: no test waits 30 s).
#[tokio::test(start_paused = true)]
async fn without_a_terminal_a_line_per_stage_and_one_every_30_s_of_fetch() {
    let (lines, _guard) = capture();
    let progress = Progress::log_lines(LOG_EVERY);
    let fetching = |t: &str| t.lines().filter(|l| l.contains(": fetch, ")).count();
    {
        let _shown = progress.begin("department-monthly 2026-10");
        progress.stage(Stage::Fetch, None);
        progress.request_done();
        progress.fetched(50, 9);
        tokio::time::advance(Duration::from_secs(29)).await;
        settle().await;
        assert_eq!(fetching(&text(&lines)), 0, "{}", text(&lines));
        tokio::time::advance(Duration::from_secs(2)).await;
        settle().await;
        let t = text(&lines);
        assert_eq!(fetching(&t), 1, "{t}");
        let line = last_with(&t, ": fetch, ");
        assert!(line.contains("department-monthly 2026-10: fetch, 1 of ~10 requests, 50 rows; "), "{line}");
        assert!(line.contains(" elapsed, ~") && line.contains(" left. stage=\"fetch\""), "{line}");
        progress.request_done();
        tokio::time::advance(Duration::from_secs(30)).await;
        settle().await;
        assert_eq!(fetching(&text(&lines)), 2, "{}", text(&lines));
        assert!(text(&lines).contains("fetch, 2 of ~10 requests"), "{}", text(&lines));

        progress.stage(Stage::Kpi, None);
        progress.stage(Stage::Render, Some(3));
        tokio::time::advance(Duration::from_secs(90)).await;
        settle().await;
        assert_eq!(fetching(&text(&lines)), 2, "the periodic line is the fetch's alone");
    }
    let t = text(&lines);
    let stages: Vec<&str> =
        t.lines().filter(|l| l.contains("department-monthly 2026-10: ") && !l.contains(": fetch, ")).collect();
    assert_eq!(stages.len(), 3, "{t}");
    assert!(stages[0].contains(": fetch (after 0 requests, 0 rows; "), "{}", stages[0]);
    assert!(stages[1].contains(": KPI (after 2 requests, 50 rows; "), "{}", stages[1]);
    assert!(stages[2].contains(": charts+render of 3 reports (after 2 requests, 50 rows; "), "{}", stages[2]);
    assert!(!t.contains('\u{1b}'), "no escape codes: {t:?}");

    // After the run, no more lines.
    tokio::time::advance(Duration::from_secs(120)).await;
    settle().await;
    assert_eq!(text(&lines), t);
}

#[test]
fn the_daemon_logs_lines_whatever_its_stderr_is() {
    assert_eq!(format!("{:?}", Progress::for_command(true)), "Progress(log)");
}

#[test]
fn durations_read_as_a_person_says_them() {
    assert_eq!(human(Duration::from_secs(42)), "42s");
    assert_eq!(human(Duration::from_secs(182)), "3m02s");
    assert_eq!(human(Duration::from_secs(3900)), "1h05m");
}
