//! Paging and batching: every list is walked to its end in `ID` order with the `>ID` +
//! `start: -1` keyset (no COUNT query after the first page), and up to 50 pages of several
//! lists are packed into one `batch` call whose commands chain `$result[prev][49][ID]`. This
//! is where a page of an answer becomes rows of its list ([`ListJob::absorb`]); the rows
//! become records in [`super::assembly`].
//!
//! How many commands of a method a batch holds is bounded by the method's operating time
//! ([`super::operating`]); the pages of a method the portal refused for it are asked for
//! again in the next round, and rounds of which the limit lets nothing through are given up
//! on like any other retry ([`super::transport::Attempts`]).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::transport::{Answer, BatchAnswers, Command, Transport, php_query};
use super::wire::{self, WireRow};
use crate::crm::CrmError;

/// Bitrix24's fixed page size.
pub const PAGE: usize = 50;
/// At most this many commands go into one `batch`.
pub const BATCH_MAX: usize = 50;

/// How a list is paged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Paging {
    /// `start` = 0, 50, …: small lists of reference data, and methods without `>ID`.
    Offset,
    /// First page with `start=0` (for `total`), then `>ID` + `start=-1` chains.
    Keyset,
    /// One call, no paging (`crm.currency.list`, `crm.deal.productrows.get`, `@ID` chunks).
    Single,
}

/// One list to walk to its end: its method and parameters, and the rows read so far.
pub(super) struct ListJob {
    method: &'static str,
    params: Value,
    paging: Paging,
    /// `items` for `crm.stagehistory.list`: where the rows sit inside a result.
    wrap: Option<&'static str>,
    rows: Vec<WireRow>,
    total: Option<u64>,
    next_offset: Option<u64>,
    last_id: Option<u64>,
    probed: bool,
    done: bool,
}

impl ListJob {
    pub(super) fn new(method: &'static str, params: Value, paging: Paging) -> ListJob {
        ListJob {
            method,
            params,
            paging,
            wrap: None,
            rows: Vec::new(),
            total: None,
            next_offset: None,
            last_id: None,
            probed: false,
            done: false,
        }
    }

    /// The list's rows sit under `key` inside a result (`items` for `crm.stagehistory.list`).
    pub(super) fn wrapped_in(mut self, key: &'static str) -> ListJob {
        self.wrap = Some(key);
        self
    }

    /// The same list asked in one command with `start` set: `0` to have the portal count
    /// it (`total`), `-1` for a page without the count (a list of at most [`PAGE`] by `@ID`).
    pub(super) fn single(mut self, start: i64) -> ListJob {
        self.paging = Paging::Single;
        self.params["start"] = json!(start);
        self
    }

    /// The list's filter, to narrow it.
    pub(super) fn filter_mut(&mut self) -> &mut Map<String, Value> {
        self.params["filter"].as_object_mut().expect("the list has a filter")
    }

    #[cfg(test)]
    pub(super) fn params(&self) -> &Value {
        &self.params
    }

    /// The rows read.
    pub(super) fn rows(&self) -> &[WireRow] {
        &self.rows
    }

    pub(super) fn into_rows(self) -> Vec<WireRow> {
        self.rows
    }

    /// What the portal counted (`total` of the first page or of a `start=0` command).
    pub(super) fn total(&self) -> Option<u64> {
        self.total
    }

    fn query(&self, extra: &[(&str, Value)]) -> String {
        let mut p = self.params.clone();
        let obj = p.as_object_mut().expect("list params are an object");
        for (k, v) in extra {
            if let Some(key) = k.strip_prefix("filter.") {
                let f = obj.entry("filter").or_insert_with(|| json!({}));
                f.as_object_mut().expect("filter is an object").insert(key.to_owned(), v.clone());
            } else {
                obj.insert((*k).to_owned(), v.clone());
            }
        }
        php_query(&p)
    }

    fn commands(&self, job: usize, round: usize, room: usize) -> Vec<Command> {
        // Zero-padded so that the keys sort in execution order: a JSON object may reach the
        // portal with its keys sorted, and a `$result[..]` reference must point backwards.
        let key = |n: usize| format!("j{job:03}r{round:04}p{n:02}");
        let cmd = |n: usize, query: String| Command { key: key(n), method: self.method, query };
        if !self.probed {
            return vec![cmd(
                0,
                match self.paging {
                    Paging::Single => self.query(&[]),
                    _ => self.query(&[("start", json!(0))]),
                },
            )];
        }
        match self.paging {
            Paging::Single => Vec::new(),
            Paging::Offset => {
                let from = self.next_offset.unwrap_or(0);
                let until = self.total.unwrap_or(from + 1).max(from + 1);
                let pages = (until - from).div_ceil(PAGE as u64).max(1) as usize;
                (0..pages.min(room))
                    .map(|n| cmd(n, self.query(&[("start", json!(from + (n * PAGE) as u64))])))
                    .collect()
            }
            Paging::Keyset => {
                let remaining = self.total.unwrap_or(0).saturating_sub(self.rows.len() as u64);
                let pages = (remaining.div_ceil(PAGE as u64) as usize).max(1).min(room);
                let wrap = self.wrap.map(|w| format!("[{w}]")).unwrap_or_default();
                (0..pages)
                    .map(|n| {
                        let after = if n == 0 {
                            json!(self.last_id.unwrap_or(0))
                        } else {
                            // Resolved by the portal from the previous command's last row.
                            json!(format!("$result[{}]{wrap}[{}][ID]", key(n - 1), PAGE - 1))
                        };
                        cmd(n, self.query(&[("filter.>ID", after), ("start", json!(-1))]))
                    })
                    .collect()
            }
        }
    }

    /// The pages answered, in order: their rows join the list's, and the paging state
    /// says whether the list is done.
    fn absorb(&mut self, answers: Vec<Answer>) -> Result<(), CrmError> {
        let broken = |detail: String| CrmError::Permanent { method: self.method.to_owned(), detail };
        let probing = !self.probed;
        self.probed = true;
        for answer in answers {
            let page = wire::rows(&answer.result).map_err(|d| broken(format!("unexpected answer: {d}")))?;
            let n = page.len();
            let before = self.last_id;
            if let Some(last) = page.last() {
                self.last_id = wire::Row::new(last).id(&["ID", "id"]).ok().flatten().or(self.last_id);
            }
            self.rows.extend(page);
            match self.paging {
                Paging::Single => {
                    // A count (`start=0`) answers its `total` here too.
                    self.total = answer.total;
                    self.done = true;
                }
                Paging::Offset => {
                    if probing {
                        self.total = answer.total;
                    }
                    self.next_offset = answer.next;
                    if answer.next.is_none() {
                        self.done = true;
                    }
                }
                Paging::Keyset => {
                    if probing {
                        self.total = answer.total;
                    }
                    if n < PAGE || self.total.is_some_and(|t| self.rows.len() as u64 >= t) {
                        self.done = true;
                    } else if self.last_id <= before && !probing {
                        return Err(broken(format!("paging by >ID did not advance past ID {:?}", before)));
                    }
                }
            }
            if self.done {
                break;
            }
        }
        Ok(())
    }
}

/// The rows of exactly `N` jobs, in order.
pub(super) fn take_rows<const N: usize>(jobs: Vec<ListJob>) -> [Vec<WireRow>; N] {
    let v: Vec<_> = jobs.into_iter().map(|j| j.rows).collect();
    v.try_into().unwrap_or_else(|_| panic!("exactly {N} list jobs"))
}

/// The rows the jobs hold, for the progress shown.
fn rows_held(jobs: &[ListJob]) -> u64 {
    jobs.iter().map(|j| j.rows.len() as u64).sum()
}

/// The batches still to send for the jobs to be done, as their totals tell (an unprobed list
/// counts one page): what the progress shown expects.
fn requests_left(jobs: &[ListJob]) -> u64 {
    let page = PAGE as u64;
    let pages: u64 = jobs
        .iter()
        .filter(|j| !j.done)
        .map(|j| match (j.probed, j.paging) {
            (false, _) => 1,
            (true, Paging::Single) => 0,
            (true, Paging::Offset) => {
                j.total.unwrap_or(0).saturating_sub(j.next_offset.unwrap_or(0)).div_ceil(page).max(1)
            }
            (true, Paging::Keyset) => j.total.unwrap_or(0).saturating_sub(j.rows.len() as u64).div_ceil(page).max(1),
        })
        .sum();
    pages.div_ceil(BATCH_MAX as u64)
}

/// Walks every list to its end, packing up to [`BATCH_MAX`] pages per `batch`. Errors are
/// not scrubbed here: that is `Bitrix24Client::scrubbed`'s job.
pub(super) async fn walk(transport: &Transport, jobs: &mut [ListJob]) -> Result<(), CrmError> {
    let mut rounds = 0usize;
    // Rounds in a row in which the operating-time limit let nothing through.
    let mut stalled = transport.attempts();
    let mut rows = rows_held(jobs);
    while jobs.iter().any(|j| !j.done) {
        rounds += 1;
        let mut commands = Vec::new();
        let mut plan: Vec<(usize, usize)> = Vec::new(); // (job, commands)
        // Commands each method may still take this round under its operating time.
        let mut budget: HashMap<&'static str, usize> = HashMap::new();
        for (i, job) in jobs.iter_mut().enumerate() {
            let left = budget.entry(job.method).or_insert_with(|| transport.operating().room(job.method, BATCH_MAX));
            let room = (BATCH_MAX - commands.len()).min(*left);
            if job.done || room == 0 {
                continue;
            }
            let cmds = job.commands(i, rounds, room);
            *left = left.saturating_sub(cmds.len());
            plan.push((i, cmds.len()));
            commands.extend(cmds);
        }
        let BatchAnswers { mut answers, blocked } = transport.batch(&commands).await?;
        let mut at = 0;
        let mut progressed = false;
        for (i, n) in plan {
            // A job takes its pages up to the first refused one: later ones chained on it
            // (`$result[..]`) and are asked for again next round.
            let mine: Vec<Answer> = commands[at..at + n].iter().map_while(|c| answers.remove(&c.key)).collect();
            at += n;
            if !mine.is_empty() {
                progressed = true;
                jobs[i].absorb(mine)?;
            }
        }
        let held = rows_held(jobs);
        transport.progress().fetched(held.saturating_sub(rows), requests_left(jobs));
        rows = held;
        if let Some((method, detail)) = blocked.into_iter().next() {
            if progressed {
                stalled.reset();
            } else {
                let attempt = stalled.retry(method.clone(), &detail)?;
                // The next batch waits for a reset the portal announced; without one, back off.
                if !transport.operating().reset_pending(&method) {
                    tokio::time::sleep(transport.backoff(attempt)).await;
                }
            }
        }
    }
    Ok(())
}
