//! The `audit` report: every flow with its data paths, the findings, and the roles.
//!
//! Audit needs every flow before it can judge any (roles are inferred from the whole
//! run), and prints flows and findings sorted, so it works in two passes over spilled
//! records (see [`super::spill`]); memory stays flat whatever the capture's size:
//!
//! ```text
//! gather:  captures -> flow records, encoded and sorted into a spill (memory up to a
//!          budget, then sorted runs in a temporary file)
//!          spill, merged in order -> role inference -> role map
//! judge:   spill, merged again -> classify and evaluate (windows in parallel) ->
//!          flow objects written out as they come (JSON), findings into a second spill
//!          sorted by severity; coverage, table rows and hosts counted on the way
//! write:   the findings merged in order, the roles and the coverage
//! ```

use super::coverage::{unknown_encryption, Coverage, FlowNote};
use super::flows::{FlowView, Options};
use super::records::{
    get_finding_ref, get_flow, put_finding, put_flow, FindingKey, FindingRef, FlowKey,
};
use super::spill::{Dec, Spill};
use crate::capture::Source;
use crate::catalog::roles::Roles;
use crate::catalog::{Catalog, Role, Vocabulary};
use crate::classify::infer::{RoleInference, RoleMap};
use crate::classify::paths::{classify, Classification};
use crate::findings::{evaluate, sort_findings, Finding, Severity};
use crate::flow::pipeline::analyze_file;
use crate::flow::{EngineConfig, FileResult, Flow, FlowSink};
use crate::model::Encryption;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::net::IpAddr;

/// Identifies the JSON layout of the audit report.
pub const VERSION: u32 = 1;

/// One flow with what classification made of it.
pub struct Audited {
    pub file: usize,
    pub flow: Flow,
    pub class: Classification,
}

/// A finding and the capture it came from.
pub struct Located {
    pub file: usize,
    pub finding: Finding,
}

/// One row of the data-path matrix of the table report.
#[derive(Default)]
struct Row {
    flows: u64,
    encrypted: u64,
    clear: u64,
    unknown: u64,
    mechanisms: BTreeSet<String>,
    worst: Option<Severity>,
}

/// Everything an audit found. Findings sit in a spill, read back in order by
/// [`Audit::each_finding`].
pub struct Audit {
    pub files: Vec<FileResult>,
    /// Flows judged.
    pub flows: u64,
    /// Findings reported (after the baseline).
    pub finding_count: u64,
    findings: Spill<FindingKey>,
    pub roles: RoleMap,
    /// Findings dropped because a baseline already knew their fingerprint.
    pub suppressed: usize,
    /// What the run could and could not see (computed before any baseline).
    pub coverage: Coverage,
    /// Threads for judging and for serialising the report (`--threads`).
    pub threads: usize,
    worst: Option<Severity>,
    hosts: BTreeSet<IpAddr>,
    rows: BTreeMap<String, Row>,
    /// (bytes, sorted runs) the flow records took in the temporary file.
    flows_spilled: (u64, usize),
    /// Each stage (capture pass, role inference, judging), for `--stats`.
    pub timings: Vec<Stage>,
}

/// One stage of an audit run: its wall time and the process's peak memory when it ended.
#[derive(Clone, Copy, Debug)]
pub struct Stage {
    pub name: &'static str,
    pub wall: std::time::Duration,
    /// Peak resident memory of the process so far, in bytes (Linux `VmHWM`), if known.
    pub peak_rss: Option<u64>,
}

impl Stage {
    fn ended(name: &'static str, started: std::time::Instant) -> Stage {
        Stage {
            name,
            wall: started.elapsed(),
            peak_rss: peak_rss(),
        }
    }
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Flow records an audit judges by default. They cost no memory past the spill budget
/// but temporary disk: about 0.5 KB each and as much again for its findings (some 9 GB
/// at the cap, a handshake-heavy capture of about 15 GiB). Past it, flows are counted,
/// reported with an unknown verdict, and not judged.
pub const DEFAULT_MAX_AUDIT_FLOWS: usize = 10_000_000;

/// Bytes of flow records, and of findings, held in memory before a sorted run goes to
/// the temporary file (the memory a run holds beside the capture pass).
pub const DEFAULT_SPILL_BUDGET: usize = 8 * 1024 * 1024;
/// The smallest budget the command line takes: with the merge reading each run through
/// at least 4 KiB, a run per MiB keeps the read buffers under 0.4% of the spill.
pub const MIN_SPILL_BUDGET: usize = 1024 * 1024;

/// Flows decoded and judged together (in parallel), then written in order.
const WINDOW: usize = 2048;

/// Pass one's result: every flow record spilled, and the roles they add up to.
pub struct Gathered {
    pub files: Vec<FileResult>,
    /// Wall time of each stage so far, for `--stats`.
    timings: Vec<Stage>,
    flows: Spill<FlowKey>,
    roles: RoleMap,
    over: u64,
    threads: usize,
    budget: usize,
    release_memory: Option<fn()>,
}

/// Receives one capture's flows into the spill, up to what the run may still judge,
/// and into role inference (which takes flows in any order), as they end.
struct ToSpill<'a> {
    spill: &'a mut Spill<FlowKey>,
    inference: &'a mut RoleInference,
    file: u32,
    room: u64,
    over: u64,
    error: Option<io::Error>,
}

impl FlowSink for ToSpill<'_> {
    fn flow(&mut self, f: &mut Flow) {
        if self.error.is_some() {
            return;
        }
        if self.room == 0 {
            self.over += 1;
            return;
        }
        self.room -= 1;
        self.inference.observe_in(self.file, f);
        if let Err(e) = self
            .spill
            .push(FlowKey::of(self.file, f), |b| put_flow(b, f))
        {
            self.error = Some(e);
        }
    }
}

fn damaged_record() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a spilled flow record does not read back (temporary file damaged)",
    )
}

/// Read every capture into a spill of flow records and infer roles over all of them.
/// At most `max_flows` flow records are kept (see [`DEFAULT_MAX_AUDIT_FLOWS`]); each
/// spill holds up to `budget` bytes in memory. Fails only when the temporary file does.
pub fn gather(
    sources: &[Source],
    cfg: &EngineConfig,
    stated: Option<Roles>,
    max_flows: usize,
    budget: usize,
) -> io::Result<Gathered> {
    let started = std::time::Instant::now();
    let mut files = Vec::new();
    let mut spill = Spill::new(budget);
    let mut inference = RoleInference::default();
    let mut over = 0u64;
    for (i, s) in sources.iter().enumerate() {
        let mut sink = ToSpill {
            room: (max_flows as u64).saturating_sub(spill.len()),
            spill: &mut spill,
            inference: &mut inference,
            file: u32::try_from(i).unwrap_or(u32::MAX),
            over: 0,
            error: None,
        };
        let r = analyze_file(s, cfg, cfg.threads, &mut sink);
        if let Some(e) = sink.error {
            return Err(e);
        }
        over += sink.over;
        files.push(r);
    }
    let mut timings = vec![Stage::ended("capture pass", started)];
    // The flow table and the shards' state are gone: a hundred MiB or more that the
    // allocator would otherwise keep until its own delay passes, while the next pass
    // allocates beside it.
    if let Some(release) = cfg.release_memory {
        release();
    }
    let started = std::time::Instant::now();
    let threads = cfg.threads.max(1);
    let inferred = inference.finish();
    let roles = match stated {
        Some(s) => RoleMap::new(s, inferred),
        None => RoleMap::inferred_only(inferred),
    };
    timings.push(Stage::ended("role inference", started));
    Ok(Gathered {
        files,
        timings,
        flows: spill,
        roles,
        over,
        threads,
        budget,
        release_memory: cfg.release_memory,
    })
}

/// The spilled flow records in order, a window at a time, as (key, encoded record);
/// stops early when `each` returns false.
fn each_window(
    spill: &mut Spill<FlowKey>,
    threads: usize,
    each: impl FnMut(Vec<(FlowKey, Vec<u8>)>) -> bool,
) -> io::Result<()> {
    let mut merge = spill.merge()?;
    windows_ahead(threads, move || merge.take(WINDOW), each)
}

/// Hands the windows `take` returns to `each`, in order, until `take` returns an empty
/// one or `each` returns false. With more than one thread, `take` (merging sorted runs,
/// one thread's work) runs one window ahead on a thread of its own, so that merging the
/// next window overlaps the parallel work on this one instead of leaving the pool idle
/// while it merges. An error from `take` comes after every window before it.
fn windows_ahead<X: Send>(
    threads: usize,
    mut take: impl FnMut() -> io::Result<Vec<X>> + Send,
    mut each: impl FnMut(Vec<X>) -> bool,
) -> io::Result<()> {
    if threads <= 1 {
        loop {
            let raw = take()?;
            if raw.is_empty() || !each(raw) {
                return Ok(());
            }
        }
    }
    std::thread::scope(|s| {
        let (tx, rx) = crossbeam_channel::bounded::<io::Result<Vec<X>>>(1);
        let merger = s.spawn(move || loop {
            let r = take();
            let last = !matches!(&r, Ok(raw) if !raw.is_empty());
            if tx.send(r).is_err() || last {
                return;
            }
        });
        let mut res = Ok(());
        for r in &rx {
            match r {
                Ok(raw) => {
                    if raw.is_empty() || !each(raw) {
                        break;
                    }
                }
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        // A merger waiting to send finds the channel closed and stops.
        drop(rx);
        merger
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        res
    })
}

/// Flows decoded, judged and written to one text buffer per parallel task.
const JUDGE_CHUNK: usize = 64;

/// Run `produce` on a thread of its own and hand what it sends to `consume` on this
/// one, in order, with at most one item waiting: the sequential consumer (role
/// inference, counting, writing the report) overlaps the producer's parallel work
/// (merging, decoding, judging) instead of leaving the other cores idle while it runs.
/// With one thread (`-j 1`) both run on this thread, one item at a time. `send`
/// returns false once the consumer has failed; the producer then stops.
fn overlapped<T: Send>(
    threads: usize,
    produce: impl FnOnce(&mut dyn FnMut(T) -> bool) -> io::Result<()> + Send,
    mut consume: impl FnMut(T) -> io::Result<()>,
) -> io::Result<()> {
    if threads <= 1 {
        let mut consumed = Ok(());
        let produced = produce(&mut |t| {
            consumed = consume(t);
            consumed.is_ok()
        });
        return consumed.and(produced);
    }
    std::thread::scope(|s| {
        let (tx, rx) = crossbeam_channel::bounded::<T>(1);
        let producer = s.spawn(move || produce(&mut |t| tx.send(t).is_ok()));
        let mut consumed = Ok(());
        while let Ok(t) = rx.recv() {
            consumed = consume(t);
            if consumed.is_err() {
                break;
            }
        }
        drop(rx);
        let produced = producer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        consumed.and(produced)
    })
}

/// Read every capture, infer roles over all of them, classify and judge each flow
/// (no flow objects written; see [`write_json`] for the report that has them).
pub fn run(
    sources: &[Source],
    cfg: &EngineConfig,
    catalog: &Catalog,
    stated: Option<Roles>,
    max_flows: usize,
) -> io::Result<Audit> {
    gather(sources, cfg, stated, max_flows, DEFAULT_SPILL_BUDGET)?.judge(catalog, None, None)
}

/// What judging adds up as the flows go by.
struct Tally {
    flows: u64,
    finding_count: u64,
    findings: Spill<FindingKey>,
    suppressed: usize,
    coverage: Coverage,
    worst: Option<Severity>,
    hosts: BTreeSet<IpAddr>,
    rows: BTreeMap<String, Row>,
}

/// Update the table row of a data path, made on first use (its key copied only then).
fn with_row(rows: &mut BTreeMap<String, Row>, id: &str, update: impl FnOnce(&mut Row)) {
    match rows.get_mut(id) {
        Some(r) => update(r),
        None => update(rows.entry(id.to_string()).or_default()),
    }
}

/// The id a catalog row has, borrowed from the catalog (no copy per flow); `(no path)`
/// for none, or an id the catalog does not have (not expected).
fn row_id<'c>(catalog: &'c Catalog, id: Option<&str>) -> &'c str {
    id.and_then(|id| catalog.paths.iter().find(|r| r.id == id))
        .map_or("(no path)", |r| r.id.as_str())
}

/// Where a flow falls in its row's encryption counts.
#[derive(Clone, Copy)]
enum Protection {
    Clear,
    Unknown,
    Encrypted,
}

/// Judged flows as counting and writing need them, made on the thread that judged them
/// (a parallel task) while the flows, classifications and findings are freed there,
/// where they were made. Freed on the one thread that counts, they cost mimalloc's
/// cross-thread frees a tenth of a two-thread run; now only these few buffers per task
/// cross over.
#[derive(Default)]
struct Judged<'c> {
    /// The flows' JSON objects one after the other (when the report has them).
    text: Vec<u8>,
    /// Per flow: where its object ends in `text`, and what counting needs of it.
    flows: Vec<(usize, Counted<'c>)>,
    /// The flows' findings, in order.
    found: Vec<Found<'c>>,
    /// The findings' encoded records, one after the other.
    records: Vec<u8>,
    /// The flows' authentication mechanisms, each flow's once.
    mechanisms: Vec<Cow<'static, str>>,
}

/// What counting needs of one flow; its findings and mechanisms end at `found_end`
/// and `mechanisms_end` of its [`Judged`].
struct Counted<'c> {
    /// The capture's index.
    file: usize,
    note: FlowNote,
    /// The client, then the server, when the host has a role (only those are printed).
    hosts: [Option<IpAddr>; 2],
    /// The best data path's row, or `(no path)`.
    row: &'c str,
    protection: Protection,
    found_end: usize,
    mechanisms_end: usize,
}

/// One finding as counting needs it: its spill key, and where its record ends.
struct Found<'c> {
    severity: Severity,
    /// Its row, or `(no path)`.
    row: &'c str,
    /// The baseline lists it.
    known: bool,
    key: FindingKey,
    /// Its record in its task's `records`.
    record: std::ops::Range<usize>,
}

impl<'c> Judged<'c> {
    /// Add a judged flow (its JSON object is already in `text`).
    fn add(
        &mut self,
        file: usize,
        flow: &Flow,
        class: &Classification,
        found: &[Finding],
        catalog: &'c Catalog,
        known: Option<&BTreeSet<String>>,
    ) {
        let unknown = found
            .iter()
            .find(|f| f.rule == crate::findings::rule::UNKNOWN_VISIBILITY)
            .map(|f| f.observed.clone())
            .or_else(|| unknown_encryption(flow));
        let key_file = u32::try_from(file).unwrap_or(u32::MAX);
        for f in found {
            let start = self.records.len();
            put_finding(&mut self.records, f);
            self.found.push(Found {
                severity: f.severity,
                row: row_id(catalog, f.data_path.as_deref()),
                known: known.is_some_and(|k| k.contains(&f.fingerprint)),
                key: FindingKey::of(key_file, f),
                record: start..self.records.len(),
            });
        }
        let first = self.mechanisms.len();
        for ev in &flow.posture.auth {
            let name = ev.mechanism.name();
            if !self
                .mechanisms
                .get(first..)
                .is_some_and(|m| m.contains(&name))
            {
                self.mechanisms.push(name);
            }
        }
        let counted = Counted {
            file,
            note: FlowNote::of(flow, unknown),
            hosts: [
                (!class.client_roles.is_empty()).then(|| flow.client.ip()),
                (!class.server_roles.is_empty()).then(|| flow.server.ip()),
            ],
            row: row_id(catalog, class.best().map(|p| p.id.as_str())),
            protection: match flow.posture.encryption {
                Encryption::None => Protection::Clear,
                Encryption::Unknown => Protection::Unknown,
                _ => Protection::Encrypted,
            },
            found_end: self.found.len(),
            mechanisms_end: self.mechanisms.len(),
        };
        self.flows.push((self.text.len(), counted));
    }
}

impl Tally {
    /// Count one judged flow of capture `path` and spill its findings (those a baseline
    /// knows counted only): `found` and `mechanisms` are its own, `records` its task's.
    fn add(
        &mut self,
        path: &str,
        c: Counted<'_>,
        found: &[Found<'_>],
        records: &[u8],
        mechanisms: &[Cow<'static, str>],
    ) -> io::Result<()> {
        self.flows += 1;
        self.coverage.add_note(path, c.note);
        // Only hosts with roles are ever printed: a flood of spoofed sources would
        // otherwise make this set grow with the flows.
        for ip in c.hosts.into_iter().flatten() {
            self.hosts.insert(ip);
        }
        with_row(&mut self.rows, c.row, |r| {
            r.flows += 1;
            match c.protection {
                Protection::Clear => r.clear += 1,
                Protection::Unknown => r.unknown += 1,
                Protection::Encrypted => r.encrypted += 1,
            }
            for m in mechanisms {
                if !r.mechanisms.contains(m.as_ref()) {
                    r.mechanisms.insert(m.to_string());
                }
            }
        });
        for f in found {
            if f.known {
                self.suppressed += 1;
                continue;
            }
            self.finding_count += 1;
            self.worst = self.worst.max(Some(f.severity));
            with_row(&mut self.rows, f.row, |r| {
                r.worst = r.worst.max(Some(f.severity))
            });
            let record = records.get(f.record.clone()).unwrap_or_default();
            self.findings
                .push(f.key.clone(), |b| b.extend_from_slice(record))?;
        }
        Ok(())
    }
}

impl Gathered {
    /// Classify and judge every flow, in order. Findings whose fingerprint `known`
    /// holds are only counted (`suppressed`). With `flows_json`, each flow's JSON object
    /// is written there as it is judged, after `,\n    ` (the first after `\n    `).
    pub fn judge(
        mut self,
        catalog: &Catalog,
        known: Option<&BTreeSet<String>>,
        mut flows_json: Option<(&mut dyn Write, &Options)>,
    ) -> io::Result<Audit> {
        let started = std::time::Instant::now();
        // What role inference's decision dropped (every client's peers) goes back
        // before judging allocates.
        if let Some(release) = self.release_memory {
            release();
        }
        let mut coverage = Coverage::default();
        for r in &self.files {
            coverage.add_file(r);
        }
        coverage.add_unheld(self.over);
        let mut t = Tally {
            flows: 0,
            finding_count: 0,
            findings: Spill::new(self.budget),
            suppressed: 0,
            coverage,
            worst: None,
            hosts: BTreeSet::new(),
            rows: BTreeMap::new(),
        };
        let pool = pool(self.threads);
        let options = flows_json.as_ref().map(|(_, o)| **o);
        let roles = &self.roles;
        let paths: Vec<String> = self.files.iter().map(|r| r.path.clone()).collect();
        let path = |i: usize| paths.get(i).map_or("", String::as_str);
        let with_text = flows_json.is_some();
        let flows = &mut self.flows;
        let threads = self.threads;
        let mut first = true;
        overlapped(
            self.threads,
            |send| {
                each_window(flows, threads, |raw| {
                    // Decoding and judging are independent per flow: spread over the
                    // threads, in order, each flow decoded, judged and freed on one
                    // thread. A task's flow objects go into one text buffer.
                    let judge = |chunk: &[(FlowKey, Vec<u8>)]| -> io::Result<Judged<'_>> {
                        let mut judged = Judged::default();
                        if with_text {
                            // Flow objects average 1.5-2.5 KB on the generator's mixes:
                            // room for the task's objects at once, not doubled up to it
                            // (pages reserved and never written cost no memory).
                            judged.text.reserve(chunk.len() * 3072);
                        }
                        // Encoded findings: a few hundred bytes, about one a flow.
                        judged.records.reserve(chunk.len() * 512);
                        for (k, body) in chunk {
                            let mut d = Dec::new(body);
                            let flow = get_flow(&mut d)
                                .filter(|_| d.is_empty())
                                .ok_or_else(damaged_record)?;
                            let file = k.file as usize;
                            let class = classify(&flow, catalog, roles);
                            let mut found = evaluate(&flow, &class, catalog);
                            sort_findings(&mut found);
                            if let Some(o) = options.as_ref().filter(|_| with_text) {
                                // A flow object is 1-2 KB: grown once, not doubled from 8.
                                judged.text.reserve(2048);
                                super::json::write_merged_io(
                                    &mut judged.text,
                                    &FlowView::new(path(file), &flow, o),
                                    &Judgement {
                                        data_paths: class.ids(),
                                        classification: &class,
                                    },
                                )?;
                            }
                            judged.add(file, &flow, &class, &found, catalog, known);
                        }
                        Ok(judged)
                    };
                    let done: Vec<io::Result<Judged<'_>>> = match &pool {
                        Some(p) => p.install(|| raw.par_chunks(JUDGE_CHUNK).map(judge).collect()),
                        None => raw.chunks(JUDGE_CHUNK).map(judge).collect(),
                    };
                    send(done)
                })
            },
            |done| {
                for judged in done {
                    let j = judged?;
                    let (mut text_at, mut found_at, mut mechanisms_at) = (0, 0, 0);
                    for (text_end, c) in j.flows {
                        if let Some((out, _)) = &mut flows_json {
                            out.write_all(if first { b"\n    " } else { b",\n    " })?;
                            out.write_all(j.text.get(text_at..text_end).unwrap_or_default())?;
                            first = false;
                        }
                        text_at = text_end;
                        let found = j.found.get(found_at..c.found_end).unwrap_or_default();
                        let mechanisms = j
                            .mechanisms
                            .get(mechanisms_at..c.mechanisms_end)
                            .unwrap_or_default();
                        found_at = c.found_end;
                        mechanisms_at = c.mechanisms_end;
                        t.add(path(c.file), c, found, &j.records, mechanisms)?;
                    }
                }
                Ok(())
            },
        )?;
        Ok(Audit {
            files: self.files,
            flows: t.flows,
            finding_count: t.finding_count,
            findings: t.findings,
            roles: self.roles,
            suppressed: t.suppressed,
            coverage: t.coverage,
            threads: self.threads,
            worst: t.worst,
            hosts: t.hosts,
            rows: t.rows,
            flows_spilled: (self.flows.spilled_bytes(), self.flows.runs()),
            timings: {
                let mut t = self.timings;
                t.push(Stage::ended("judging", started));
                t
            },
        })
    }
}

impl Audit {
    /// Every finding in report order (most severe first, then capture, stream, rule),
    /// a window at a time.
    pub fn each_finding(
        &mut self,
        each: impl FnMut(&[Located]) -> io::Result<()>,
    ) -> io::Result<()> {
        let pool = pool(self.threads);
        self.each_finding_on(pool.as_ref(), each)
    }

    /// [`Audit::each_finding`], decoding on `pool` (which `each` may use too).
    fn each_finding_on(
        &mut self,
        pool: Option<&rayon::ThreadPool>,
        mut each: impl FnMut(&[Located]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.each_finding_window(
            |raw| {
                let decode = |(k, body): &(FindingKey, Vec<u8>)| located(k, body);
                let window: Option<Vec<Located>> = match pool {
                    Some(p) => p.install(|| raw.par_iter().with_min_len(256).map(decode).collect()),
                    None => raw.iter().map(decode).collect(),
                };
                window.ok_or_else(damaged_record)
            },
            |window| each(&window),
        )
    }

    /// Every finding record in report order, a window at a time: `work` makes of each
    /// window what `consume` takes on this thread, the next window's merging and work
    /// overlapping this one's consuming.
    fn each_finding_window<T: Send>(
        &mut self,
        work: impl Fn(&[(FindingKey, Vec<u8>)]) -> io::Result<T> + Send,
        consume: impl FnMut(T) -> io::Result<()>,
    ) -> io::Result<()> {
        let threads = self.threads;
        let mut merge = self.findings.merge()?;
        overlapped(
            threads,
            move |send| {
                let mut worked = Ok(());
                windows_ahead(
                    threads,
                    move || merge.take(WINDOW),
                    |raw| match work(&raw) {
                        Ok(t) => send(t),
                        Err(e) => {
                            worked = Err(e);
                            false
                        }
                    },
                )?;
                worked
            },
            consume,
        )
    }

    /// Every finding in report order as text: each decoded, written by `render` and
    /// freed on one thread of `pool` (where it was made: cheaper for the allocator than
    /// freeing it on the thread that writes), the texts written to `out` in order, each
    /// after its separator.
    fn write_findings(
        &mut self,
        out: &mut dyn Write,
        pool: Option<&rayon::ThreadPool>,
        (first, rest): Separators,
        render: impl Fn(usize, &FindingRef<'_>, &mut Vec<u8>) -> io::Result<()> + Sync,
    ) -> io::Result<()> {
        let chunk_text = |chunk: &[(FindingKey, Vec<u8>)]| -> io::Result<(Vec<u8>, Vec<usize>)> {
            // A finding's text is about one and a half times its record: room for the
            // chunk at once rather than doubled up to it (copying the text each time).
            let mut text = Vec::with_capacity(chunk.iter().map(|(_, b)| b.len() * 2).sum());
            let mut ends = Vec::with_capacity(chunk.len());
            for (k, body) in chunk {
                // Read in place: the texts are borrowed from the record, not copied.
                let f = finding_in(body).ok_or_else(damaged_record)?;
                render(k.file as usize, &f, &mut text)?;
                ends.push(text.len());
            }
            Ok((text, ends))
        };
        let mut sep = first;
        self.each_finding_window(
            |raw| {
                Ok(match pool {
                    Some(p) => p.install(|| {
                        raw.par_chunks(SER_CHUNK)
                            .map(chunk_text)
                            .collect::<Vec<_>>()
                    }),
                    None => raw.chunks(SER_CHUNK).map(chunk_text).collect(),
                })
            },
            |texts: Vec<io::Result<(Vec<u8>, Vec<usize>)>>| {
                for t in texts {
                    let (text, ends) = t?;
                    let mut start = 0;
                    for end in ends {
                        out.write_all(sep)?;
                        out.write_all(text.get(start..end).unwrap_or_default())?;
                        sep = rest;
                        start = end;
                    }
                }
                Ok(())
            },
        )
    }

    /// The most severe finding reported, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.worst
    }

    /// What went to the temporary file: bytes and sorted runs of flow records, then of
    /// findings (zero when everything fitted the spill budget).
    pub fn spilled(&self) -> [(u64, usize); 2] {
        [
            self.flows_spilled,
            (self.findings.spilled_bytes(), self.findings.runs()),
        ]
    }
}

/// A spilled finding record back with its capture; `None` when the bytes are not one.
fn located(k: &FindingKey, body: &[u8]) -> Option<Located> {
    finding_in(body).map(|f| Located {
        file: k.file as usize,
        finding: f.to_finding(),
    })
}

/// The finding a whole record holds, its texts borrowed from the record.
fn finding_in(body: &[u8]) -> Option<FindingRef<'_>> {
    let mut d = Dec::new(body);
    get_finding_ref(&mut d).filter(|_| d.is_empty())
}

/// A pool of `threads` threads for judging and serialising; `None` for one thread, or
/// when no pool could be made (the caller then works on its own thread).
fn pool(threads: usize) -> Option<rayon::ThreadPool> {
    if threads <= 1 {
        return None;
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .ok()
}

/// Items serialised per parallel task, and tasks per window: a window's text is held
/// in memory until written, so the output never waits in memory whole.
const SER_CHUNK: usize = 512;
const SER_WINDOW: usize = 32;

/// What goes before the first item of a list, and before each of the others.
type Separators = (&'static [u8], &'static [u8]);

/// Write `items`, each after its separator, as text from `one`, serialising a window
/// of chunks in parallel on `pool` (on this thread without one) and writing them in
/// order.
fn write_items<T: Sync>(
    out: &mut dyn Write,
    items: &[T],
    pool: Option<&rayon::ThreadPool>,
    (first, rest): Separators,
    one: impl Fn(&T, &mut Vec<u8>) -> io::Result<()> + Sync,
) -> io::Result<()> {
    let chunk_text = |(c, chunk): (usize, &[T])| -> io::Result<Vec<u8>> {
        // Items (hosts' roles) are a few hundred bytes.
        let mut buf = Vec::with_capacity(chunk.len() * 384);
        for (k, item) in chunk.iter().enumerate() {
            buf.extend_from_slice(if c == 0 && k == 0 { first } else { rest });
            one(item, &mut buf)?;
        }
        Ok(buf)
    };
    let chunks: Vec<(usize, &[T])> = items.chunks(SER_CHUNK).enumerate().collect();
    let Some(pool) = pool else {
        for c in chunks {
            out.write_all(&chunk_text(c)?)?;
        }
        return Ok(());
    };
    for window in chunks.chunks(SER_WINDOW) {
        let texts: Vec<io::Result<Vec<u8>>> =
            pool.install(|| window.par_iter().map(|c| chunk_text(*c)).collect());
        for t in texts {
            out.write_all(&t?)?;
        }
    }
    Ok(())
}

/// The fingerprints of a previous JSON audit report (`findings[].fingerprint`).
pub fn baseline_fingerprints(report: &str) -> Result<BTreeSet<String>, String> {
    let doc: Value = serde_json::from_str(report).map_err(|e| format!("not a JSON report: {e}"))?;
    let findings = doc
        .get("findings")
        .and_then(Value::as_array)
        .ok_or("no `findings` array: not a dpaudit audit JSON report")?;
    Ok(findings
        .iter()
        .filter_map(|f| f.get("fingerprint").and_then(Value::as_str))
        .map(str::to_string)
        .collect())
}

/// What the audit adds to a flow's object (after the flows report's fields).
#[derive(Serialize)]
struct Judgement<'a> {
    data_paths: Vec<&'a str>,
    classification: &'a Classification,
}

/// The capture a finding came from, the first field of its object.
#[derive(Serialize)]
struct InFile<'a> {
    file: &'a str,
}

/// A finding's object: its capture, then the finding's own fields.
fn put_finding_object<F: Serialize>(out: &mut Vec<u8>, file: &str, finding: &F) -> io::Result<()> {
    super::json::write_merged_io(out, &InFile { file }, finding)
}

/// One host's roles in the JSON report (keys in alphabetical order, as they have always
/// been written).
#[derive(Serialize)]
struct HostRolesView {
    host: crate::flow::Endpoint,
    roles: Vec<RoleView>,
}

#[derive(Serialize)]
struct RoleView {
    evidence: Vec<String>,
    role: &'static str,
    source: &'static str,
}

fn host_roles_view(roles: &RoleMap, ip: IpAddr) -> HostRolesView {
    HostRolesView {
        host: crate::flow::host(ip),
        roles: roles
            .roles_of(ip)
            .into_iter()
            .map(|(role, source, evidence)| RoleView {
                evidence,
                role: role.as_str(),
                source: source.as_str(),
            })
            .collect(),
    }
}

/// One host's roles as the pretty printer lays out [`HostRolesView`], every line after
/// the first indented by `indent` spaces. Written directly: the roles object has an
/// entry for each of up to a hundred thousand hosts, and laying each out through
/// serde_json's pretty printer, then indenting it, cost four times as much.
fn put_host_roles(
    buf: &mut Vec<u8>,
    ip: IpAddr,
    roles: &[(Role, crate::classify::infer::Source, Vec<String>)],
    indent: usize,
) {
    let line = |buf: &mut Vec<u8>, depth: usize| {
        buf.push(b'\n');
        buf.resize(buf.len() + indent + depth, b' ');
    };
    buf.extend_from_slice(b"{");
    line(buf, 2);
    buf.extend_from_slice(b"\"host\": ");
    super::json::put_str(buf, crate::flow::host(ip).text().as_str());
    buf.push(b',');
    line(buf, 2);
    buf.extend_from_slice(b"\"roles\": [");
    for (i, (role, source, evidence)) in roles.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        line(buf, 4);
        buf.push(b'{');
        line(buf, 6);
        buf.extend_from_slice(b"\"evidence\": [");
        for (j, e) in evidence.iter().enumerate() {
            if j > 0 {
                buf.push(b',');
            }
            line(buf, 8);
            super::json::put_str(buf, e);
        }
        if !evidence.is_empty() {
            line(buf, 6);
        }
        buf.extend_from_slice(b"],");
        line(buf, 6);
        buf.extend_from_slice(b"\"role\": ");
        super::json::put_str(buf, role.as_str());
        buf.push(b',');
        line(buf, 6);
        buf.extend_from_slice(b"\"source\": ");
        super::json::put_str(buf, source.as_str());
        line(buf, 4);
        buf.push(b'}');
    }
    if !roles.is_empty() {
        line(buf, 2);
    }
    buf.push(b']');
    line(buf, 0);
    buf.push(b'}');
}

/// Pretty JSON of `v`, every line after the first indented by `indent` spaces. The
/// document is laid out first and indented line by line: the pretty printer writes a
/// token at a time, and indenting each write cost more than laying the text out.
fn pretty_indented<T: Serialize + ?Sized>(
    out: &mut dyn Write,
    v: &T,
    indent: usize,
) -> io::Result<()> {
    const SPACES: [u8; 16] = [b' '; 16];
    let mut text = Vec::with_capacity(512);
    serde_json::to_writer_pretty(&mut text, v).map_err(super::json_io)?;
    let mut lines = text.split(|&b| b == b'\n');
    if let Some(first) = lines.next() {
        out.write_all(first)?;
    }
    for line in lines {
        out.write_all(b"\n")?;
        let mut left = indent;
        while left > 0 {
            let n = left.min(SPACES.len());
            out.write_all(SPACES.get(..n).unwrap_or_default())?;
            left -= n;
        }
        out.write_all(line)?;
    }
    Ok(())
}

/// The `roles` object of the JSON report (`contradictions`, then `hosts`), written
/// host by host (in parallel on `pool`), laid out as the pretty printer would lay out
/// the whole object.
fn write_roles_json(
    out: &mut dyn Write,
    a: &Audit,
    pool: Option<&rayon::ThreadPool>,
) -> io::Result<()> {
    write!(out, "{{\n    \"contradictions\": ")?;
    pretty_indented(out, &a.roles.contradictions(), 4)?;
    write!(out, ",\n    \"hosts\": [")?;
    let roles = &a.roles;
    let hosts: Vec<IpAddr> = a
        .hosts
        .iter()
        .copied()
        .filter(|ip| !roles.role_set(*ip).is_empty())
        .collect();
    write_items(out, &hosts, pool, (b"\n      ", b",\n      "), |ip, buf| {
        put_host_roles(buf, *ip, &roles.roles_of(*ip), 6);
        Ok(())
    })?;
    write!(
        out,
        "{}]\n  }}",
        if hosts.is_empty() { "" } else { "\n    " }
    )
}

/// The audit as one JSON document (`version`, `files`, `flows`, `findings`,
/// `suppressed_by_baseline`, `roles`, `coverage`), judging the gathered flows on the
/// way: each flow object is written as it is judged, each finding as it is read back in
/// order, one compact object a line, never built as one tree in memory.
pub fn write_json(
    out: &mut dyn Write,
    g: Gathered,
    catalog: &Catalog,
    known: Option<&BTreeSet<String>>,
    o: &Options,
) -> io::Result<Audit> {
    let pretty = |out: &mut dyn Write, v: &dyn erased::Ser| -> io::Result<()> {
        let mut text = Vec::new();
        v.pretty(&mut text).map_err(super::json_io)?;
        // Indent the nested document by two spaces to sit under its key.
        let text = String::from_utf8_lossy(&text).replace('\n', "\n  ");
        out.write_all(text.as_bytes())
    };
    writeln!(out, "{{\n  \"version\": {VERSION},")?;
    write!(out, "  \"files\": ")?;
    let files: Vec<Value> = g.files.iter().map(super::flows::file_json).collect();
    pretty(out, &files)?;
    write!(out, ",\n  \"flows\": [")?;
    let mut a = g.judge(catalog, known, Some((&mut *out, o)))?;
    write!(
        out,
        "{}],\n  \"findings\": [",
        if a.flows == 0 { "" } else { "\n  " }
    )?;
    let paths: Vec<String> = a.files.iter().map(|r| r.path.clone()).collect();
    let path = |i: usize| paths.get(i).map_or("", String::as_str);
    // One pool for every window: a pool is threads started and stopped.
    let pool = pool(a.threads);
    a.write_findings(
        out,
        pool.as_ref(),
        (b"\n    ", b",\n    "),
        |file, f, buf| put_finding_object(buf, path(file), f),
    )?;
    write!(
        out,
        "{}],\n  \"suppressed_by_baseline\": {},\n  \"roles\": ",
        if a.finding_count == 0 { "" } else { "\n  " },
        a.suppressed
    )?;
    write_roles_json(out, &a, pool.as_ref())?;
    write!(out, ",\n  \"coverage\": ")?;
    pretty(out, &a.coverage)?;
    writeln!(out, "\n}}")?;
    Ok(a)
}

/// Pretty-printing of values of different types behind one reference.
mod erased {
    pub trait Ser {
        fn pretty(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn pretty(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
            serde_json::to_writer_pretty(out, self)
        }
    }
}

/// One finding a line.
pub fn write_jsonl(out: &mut dyn Write, a: &mut Audit) -> io::Result<()> {
    let paths: Vec<String> = a.files.iter().map(|r| r.path.clone()).collect();
    let mut line = Vec::new();
    a.each_finding(|window| {
        for l in window {
            let path = paths.get(l.file).map_or("", String::as_str);
            line.clear();
            put_finding_object(&mut line, path, &l.finding)?;
            line.push(b'\n');
            out.write_all(&line)?;
        }
        Ok(())
    })
}

/// A severity word padded to `width`, in colour when asked (ANSI; `NO_COLOR` is
/// honoured by the caller).
fn severity_cell(s: &str, width: usize, colour: bool) -> String {
    let padded = format!("{s:<width$}");
    if !colour {
        return padded;
    }
    let code = match s {
        "critical" => "1;31",
        "high" => "31",
        "medium" => "33",
        "low" => "36",
        "info" => "2",
        "ok" => "32",
        _ => return padded,
    };
    format!("\x1b[{code}m{padded}\x1b[0m")
}

/// What a person reads first: the data-path matrix, the findings, the roles.
pub fn write_table(
    out: &mut dyn Write,
    a: &mut Audit,
    catalog: &Catalog,
    colour: bool,
) -> io::Result<()> {
    writeln!(out, "DATA PATHS")?;
    writeln!(
        out,
        "{:<10} {:<44} {:>5} {:>5} {:>5} {:>5}  {:<24} VERDICT",
        "PATH", "NAME", "FLOWS", "ENC", "CLEAR", "UNK", "AUTH SEEN"
    )?;
    for (id, r) in &a.rows {
        let name = catalog.get(id).map_or("", |p| p.name.as_str());
        let name: String = name.chars().take(44).collect();
        let mech = if r.mechanisms.is_empty() {
            "-".to_string()
        } else {
            r.mechanisms.iter().cloned().collect::<Vec<_>>().join(",")
        };
        let verdict = severity_cell(r.worst.map_or("ok", |s| s.as_str()), 0, colour);
        writeln!(
            out,
            "{id:<10} {name:<44} {:>5} {:>5} {:>5} {:>5}  {mech:<24} {verdict}",
            r.flows, r.encrypted, r.clear, r.unknown
        )?;
    }
    writeln!(out)?;
    if a.suppressed > 0 {
        writeln!(
            out,
            "FINDINGS ({}, {} more known to the baseline)",
            a.finding_count, a.suppressed
        )?;
    } else {
        writeln!(out, "FINDINGS ({})", a.finding_count)?;
    }
    a.each_finding(|window| {
        for l in window {
            let f = &l.finding;
            let frames: Vec<String> = f.frames.iter().take(4).map(u64::to_string).collect();
            writeln!(
                out,
                "{} {:<28} {:<6} {:<22} frames {:<16} {}",
                severity_cell(f.severity.as_str(), 8, colour),
                f.rule,
                f.data_path.as_deref().unwrap_or("-"),
                f.filter,
                frames.join(","),
                f.message
            )?;
        }
        Ok(())
    })?;
    writeln!(out)?;
    writeln!(out, "ROLES")?;
    for &ip in &a.hosts {
        let h = host_roles_view(&a.roles, ip);
        if h.roles.is_empty() {
            continue;
        }
        let list: Vec<String> = h
            .roles
            .iter()
            .map(|r| {
                let ev = r.evidence.first().map_or("", String::as_str);
                format!(
                    "{} ({}{}{})",
                    r.role,
                    r.source,
                    if ev.is_empty() { "" } else { ": " },
                    ev
                )
            })
            .collect();
        writeln!(out, "{:<24} {}", ip.to_string(), list.join("; "))?;
    }
    for c in a.roles.contradictions() {
        writeln!(out, "contradiction: {c}")?;
    }
    a.coverage.write_text(out)?;
    Ok(())
}

/// SARIF level for a severity: error (critical, high), warning (medium), note (low, info).
fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// The audit as SARIF 2.1.0: one run, one rule per finding id, one result per finding.
/// A capture has no lines: each result's region is the first evidence frame, given as
/// `startLine` (frame numbers are 1-based like lines), with every frame, the stream and
/// the Wireshark filter in the result's properties.
pub fn write_sarif(out: &mut dyn Write, a: &mut Audit) -> io::Result<()> {
    use crate::findings::RULES;
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            let top = r.severities.first().copied().unwrap_or(Severity::Info);
            json!({
                "id": r.id,
                "name": r.id.split('-').map(|w| {
                    let mut c = w.chars();
                    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
                }).collect::<String>(),
                "shortDescription": { "text": r.title },
                "fullDescription": { "text": r.help },
                "help": { "text": r.help },
                "defaultConfiguration": { "level": sarif_level(top) },
                "properties": {
                    "security-severity": top.security_severity(),
                    "tags": ["security", "exchange-2007"],
                },
            })
        })
        .collect();
    // What could not be seen: unreadable files, caps reached, flows left unknown.
    let mut notes: Vec<(&str, String)> = Vec::new();
    for r in &a.files {
        if let Some(e) = &r.error {
            notes.push(("error", e.to_string()));
        }
    }
    for (cap, n) in &a.coverage.caps_hit {
        notes.push(("warning", format!("cap {cap} reached {n} time(s)")));
    }
    if a.coverage.unknown_verdict_count > 0 {
        notes.push((
            "warning",
            format!(
                "{} flow(s) could not be judged (verdict unknown)",
                a.coverage.unknown_verdict_count
            ),
        ));
    }
    let notifications: Vec<Value> = notes
        .into_iter()
        .map(|(level, text)| json!({ "level": level, "message": { "text": text } }))
        .collect();
    // Written piece by piece, one result per line, so that a capture with a million
    // findings never holds them all as JSON values at once.
    let tool = json!({ "driver": {
        "name": "dpaudit",
        "version": env!("CARGO_PKG_VERSION"),
        "informationUri": "https://github.com/dpaudit/dpaudit",
        "rules": rules,
    }});
    let artifacts: Vec<Value> = a
        .files
        .iter()
        .map(|r| {
            json!({
                "location": { "uri": r.path },
                "mimeType": "application/vnd.tcpdump.pcap",
            })
        })
        .collect();
    let invocations = json!([{
        "executionSuccessful": !a.coverage.nothing_analysed()
            && a.coverage.files_unreadable == 0,
        "toolExecutionNotifications": notifications,
    }]);
    let run_members = [
        ("tool", tool),
        ("artifacts", Value::from(artifacts)),
        ("columnKind", json!("unicodeCodePoints")),
        ("invocations", invocations),
        ("properties", json!({ "coverage": a.coverage })),
    ];
    write!(
        out,
        "{{\"$schema\": \"https://json.schemastore.org/sarif-2.1.0.json\",\n\"version\": \"2.1.0\",\n\"runs\": [{{"
    )?;
    for (key, value) in &run_members {
        write!(out, "\n\"{key}\": ")?;
        compact(out, value)?;
        out.write_all(b",")?;
    }
    write!(out, "\n\"results\": [")?;
    let uris: Vec<String> = a.files.iter().map(|r| r.path.clone()).collect();
    let pool = pool(a.threads);
    a.write_findings(out, pool.as_ref(), (b"\n", b",\n"), |file, f, buf| {
        let uri = uris.get(file).map_or("", String::as_str);
        super::json::write_io(buf, &sarif_result(uri, f))
    })?;
    writeln!(out, "\n]}}]}}")
}

/// One value as compact JSON.
fn compact<T: Serialize + ?Sized>(out: &mut dyn Write, v: &T) -> io::Result<()> {
    serde_json::to_writer(out, v).map_err(super::json_io)
}

/// One SARIF result for a finding.
fn sarif_result(uri: &str, f: &FindingRef<'_>) -> Value {
    use crate::findings::RULES;
    let rule_index = RULES.iter().position(|r| r.id == f.rule);
    let line = f.frames.first().copied().unwrap_or(1).max(1);
    json!({
        "ruleId": f.rule,
        "ruleIndex": rule_index,
        "level": sarif_level(f.severity),
        "message": { "text": f.message },
        "locations": [{
            "physicalLocation": {
                "artifactLocation": { "uri": uri },
                "region": { "startLine": line },
            },
            "message": { "text": format!("{} (frame {line})", f.filter) },
        }],
        "partialFingerprints": { "dpaudit/v1": f.fingerprint },
        "properties": {
            "security-severity": f.severity.security_severity(),
            "severity": f.severity.as_str(),
            "data_path": f.data_path,
            "stream": f.stream,
            "frames": f.frames,
            "filter": f.filter,
            "client": f.client,
            "server": f.server,
            "user": f.user,
            "expected": f.expected,
            "observed": f.observed,
        },
    })
}

/// The comment of every evidence frame, per capture: `dpaudit: <severity> <rule> on
/// <path>: <message>`, several findings on one frame joined by ` | `.
pub fn evidence_comments(a: &mut Audit, file: usize) -> io::Result<BTreeMap<u64, String>> {
    let mut out: BTreeMap<u64, String> = BTreeMap::new();
    a.each_finding(|window| {
        for l in window.iter().filter(|l| l.file == file) {
            let f = &l.finding;
            let text = format!(
                "dpaudit: {} {} on {}: {}",
                f.severity.as_str(),
                f.rule,
                f.data_path.as_deref().unwrap_or("no documented path"),
                f.message
            );
            for frame in &f.frames {
                let e = out.entry(*frame).or_default();
                if !e.is_empty() {
                    e.push_str(" | ");
                }
                e.push_str(&text);
            }
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The roles object's host entries, written directly, are the pretty printer's
    /// layout of [`HostRolesView`] at any indent: no roles, roles without evidence,
    /// evidence that needs escaping, IPv6 hosts.
    #[test]
    fn host_roles_are_laid_out_as_the_pretty_printer_lays_them_out() {
        use crate::classify::infer::Source;
        let tricky = "quote \" backslash \\ newline \n tab \t é \u{1F600}".to_string();
        let cases: Vec<Vec<(Role, Source, Vec<String>)>> = vec![
            vec![],
            vec![(Role::Mailbox, Source::Inferred, vec![])],
            vec![(Role::Cas, Source::Stated, vec!["one line".into()])],
            vec![
                (
                    Role::Hub,
                    Source::Stated,
                    vec!["a".into(), tricky.clone(), "".into()],
                ),
                (Role::Client, Source::Inferred, vec![]),
                (Role::Dc, Source::Inferred, vec![tricky]),
            ],
        ];
        let hosts: [IpAddr; 3] = [
            "10.1.0.30".parse().unwrap(),
            "2001:db8:1::30".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
        ];
        for roles in &cases {
            for ip in hosts {
                for indent in [0, 2, 6] {
                    let view = HostRolesView {
                        host: crate::flow::host(ip),
                        roles: roles
                            .iter()
                            .map(|(role, source, evidence)| RoleView {
                                evidence: evidence.clone(),
                                role: role.as_str(),
                                source: source.as_str(),
                            })
                            .collect(),
                    };
                    let mut want = Vec::new();
                    pretty_indented(&mut want, &view, indent).unwrap();
                    let mut got = Vec::new();
                    put_host_roles(&mut got, ip, roles, indent);
                    assert_eq!(
                        String::from_utf8(got).unwrap(),
                        String::from_utf8(want).unwrap(),
                        "{ip} at {indent}"
                    );
                }
            }
        }
    }

    /// Windows come in order; an error from merging comes after every window before
    /// it; a consumer that stops early stops the merger (no thread left blocked).
    #[test]
    fn windows_ahead_keeps_order_errors_and_early_stops() {
        for threads in [1, 2, 4] {
            let mut next = 0u32;
            let take = move || -> io::Result<Vec<u32>> {
                next += 1;
                match next {
                    1..=5 => Ok(vec![next; next as usize]),
                    6 => Err(io::Error::other("damaged run")),
                    _ => panic!("taken after an error"),
                }
            };
            let mut seen = Vec::new();
            let r = windows_ahead(threads, take, |w| {
                seen.push(w);
                true
            });
            assert_eq!(
                r.unwrap_err().to_string(),
                "damaged run",
                "threads {threads}"
            );
            let want: Vec<Vec<u32>> = (1..=5).map(|n| vec![n; n as usize]).collect();
            assert_eq!(seen, want, "threads {threads}");

            let mut taken = 0u32;
            let endless = || -> io::Result<Vec<u32>> {
                taken += 1;
                Ok(vec![taken])
            };
            let mut got = 0;
            windows_ahead(threads, endless, |_| {
                got += 1;
                got < 3
            })
            .unwrap();
            assert_eq!(got, 3, "threads {threads}");
            assert!(
                taken <= 5,
                "merged {taken} windows for 3, threads {threads}"
            );

            let mut left = 3;
            let ends = || -> io::Result<Vec<u32>> {
                left -= 1;
                Ok(if left > 0 { vec![left] } else { Vec::new() })
            };
            let mut all = Vec::new();
            windows_ahead(threads, ends, |w| {
                all.extend(w);
                true
            })
            .unwrap();
            assert_eq!(all, [2, 1], "threads {threads}");
        }
    }

    /// Every report of the fixture through a spill of `budget` bytes and `threads`.
    fn reports(budget: usize, threads: usize) -> (Vec<u8>, [(u64, usize); 2]) {
        let sources = [Source::Path(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/exchange-scenarios.pcapng"),
        )];
        let cfg = EngineConfig {
            threads,
            ..Default::default()
        };
        let catalog = Catalog::builtin().unwrap();
        let g = gather(&sources, &cfg, None, DEFAULT_MAX_AUDIT_FLOWS, budget).unwrap();
        let mut out = Vec::new();
        let o = Options::default();
        let mut a = write_json(&mut out, g, &catalog, None, &o).unwrap();
        write_jsonl(&mut out, &mut a).unwrap();
        write_sarif(&mut out, &mut a).unwrap();
        write_table(&mut out, &mut a, &catalog, false).unwrap();
        out.extend(format!("{:?}", evidence_comments(&mut a, 0).unwrap()).bytes());
        (out, a.spilled())
    }

    /// A spilled record that does not read back (a damaged temporary file) stops the
    /// report with an error saying so, for any thread count, flows and findings alike.
    #[test]
    fn a_damaged_spilled_record_is_an_error() {
        let sources = [Source::Path(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/exchange-scenarios.pcapng"),
        )];
        let catalog = Catalog::builtin().unwrap();
        let damaged = |e: io::Error| e.to_string().contains("does not read back");
        for threads in [1, 2] {
            let cfg = EngineConfig {
                threads,
                ..Default::default()
            };
            let mut g = gather(&sources, &cfg, None, DEFAULT_MAX_AUDIT_FLOWS, 2000).unwrap();
            let mut last =
                crate::flow::Flow::sample(crate::flow::Transport::Tcp, "10.9.9.9:1", "10.9.9.8:2");
            last.stream = Some(u64::MAX);
            g.flows
                .push(FlowKey::of(0, &last), |b| {
                    b.extend_from_slice(b"\x01 not a flow")
                })
                .unwrap();
            let mut out = Vec::new();
            let err = write_json(&mut out, g, &catalog, None, &Options::default()).err();
            assert!(err.is_some_and(damaged), "threads {threads}");

            let g = gather(&sources, &cfg, None, DEFAULT_MAX_AUDIT_FLOWS, 2000).unwrap();
            let mut a = g.judge(&catalog, None, None).unwrap();
            let mut some = None;
            a.each_finding(|w| {
                some = some.take().or_else(|| w.first().map(|l| l.finding.clone()));
                Ok(())
            })
            .unwrap();
            let finding = some.expect("the fixture has findings");
            a.findings
                .push(FindingKey::of(0, &finding), |b| {
                    b.extend_from_slice(b"\xff")
                })
                .unwrap();
            assert!(write_sarif(&mut out, &mut a).err().is_some_and(damaged));
            assert!(write_jsonl(&mut out, &mut a).err().is_some_and(damaged));
        }
    }

    #[test]
    fn a_budget_of_a_few_records_gives_the_same_reports() {
        let (memory, none) = reports(DEFAULT_SPILL_BUDGET, 2);
        assert_eq!(
            none,
            [(0, 0), (0, 0)],
            "the fixture fits the default budget"
        );
        let (disk, spilled) = reports(2000, 1);
        assert!(spilled[0].1 > 5 && spilled[1].1 > 5, "{spilled:?}");
        assert!(memory == disk, "the reports changed when spilled");
    }

    /// The program's memory hook runs once after the capture pass and once after role
    /// inference, each time before the next pass allocates.
    #[test]
    fn memory_is_released_between_the_passes() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        fn count() {
            CALLS.fetch_add(1, Ordering::SeqCst);
        }
        let sources = [Source::Path(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/exchange-scenarios.pcapng"),
        )];
        let cfg = EngineConfig {
            release_memory: Some(count),
            ..Default::default()
        };
        let g = gather(&sources, &cfg, None, DEFAULT_MAX_AUDIT_FLOWS, 1 << 20).unwrap();
        assert_eq!(CALLS.load(Ordering::SeqCst), 1, "after the capture pass");
        let catalog = Catalog::builtin().unwrap();
        let a = g.judge(&catalog, None, None).unwrap();
        assert_eq!(CALLS.load(Ordering::SeqCst), 2, "after role inference");
        assert!(a.flows > 0);
    }

    #[test]
    fn colour_only_when_asked_and_alignment_kept() {
        assert_eq!(severity_cell("high", 8, false), "high    ");
        let c = severity_cell("critical", 8, true);
        assert!(
            c.starts_with("\x1b[1;31m") && c.ends_with("\x1b[0m"),
            "{c:?}"
        );
        assert!(c.contains("critical"));
        assert_eq!(severity_cell("weird", 6, true), "weird ");
    }
}
