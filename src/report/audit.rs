//! The `audit` report: every flow with its data paths, the findings, and the roles.
//!
//! Audit needs every flow before it can judge any (roles are inferred from the whole
//! capture), so it holds the flows of a run in memory; `flows` is the streaming command.

use super::coverage::{unknown_encryption, Coverage};
use super::flows::{FlowView, Options};
use crate::capture::Source;
use crate::catalog::roles::Roles;
use crate::catalog::{Catalog, Vocabulary};
use crate::classify::infer::{RoleInference, RoleMap};
use crate::classify::paths::{classify, Classification};
use crate::findings::{evaluate, sort_findings, Finding, Severity};
use crate::flow::pipeline::analyze_file;
use crate::flow::{sort_flows, EngineConfig, FileResult, Flow, FlowSink};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

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

/// Everything an audit found.
pub struct Audit {
    pub files: Vec<FileResult>,
    pub flows: Vec<Audited>,
    pub findings: Vec<Located>,
    pub roles: RoleMap,
    /// Findings dropped because a baseline already knew their fingerprint.
    pub suppressed: usize,
    /// What the run could and could not see (computed before any baseline).
    pub coverage: Coverage,
    /// Threads for judging and for serialising the report (`--threads`).
    pub threads: usize,
}

/// Flow records an audit holds by default (each costs two to six kilobytes with its
/// classification; a million stay under about 5 GiB): past it,
/// flows are counted, reported with an unknown verdict, and not judged.
pub const DEFAULT_MAX_AUDIT_FLOWS: usize = 1_000_000;

/// The flows of one capture, up to what the run may still hold.
struct Held {
    flows: Vec<Flow>,
    room: usize,
    over: u64,
}

impl FlowSink for Held {
    fn flow(&mut self, f: Flow) {
        if self.flows.len() < self.room {
            self.flows.push(f);
        } else {
            self.over += 1;
        }
    }
}

/// Read every capture, infer roles over all of them, classify and judge each flow.
/// At most `max_flows` flow records are held (see [`DEFAULT_MAX_AUDIT_FLOWS`]).
pub fn run(
    sources: &[Source],
    cfg: &EngineConfig,
    catalog: &Catalog,
    stated: Option<Roles>,
    max_flows: usize,
) -> Audit {
    let mut files = Vec::new();
    let mut all: Vec<(usize, Flow)> = Vec::new();
    let mut over = 0u64;
    for (i, s) in sources.iter().enumerate() {
        let mut held = Held {
            flows: Vec::new(),
            room: max_flows.saturating_sub(all.len()),
            over: 0,
        };
        let r = analyze_file(s, cfg, cfg.threads, &mut held);
        sort_flows(&mut held.flows);
        files.push(r);
        over += held.over;
        all.extend(held.flows.into_iter().map(|f| (i, f)));
    }
    let mut inference = RoleInference::default();
    for (_, f) in &all {
        inference.observe(f);
    }
    let inferred = inference.finish();
    let roles = match stated {
        Some(s) => RoleMap::new(s, inferred),
        None => RoleMap::inferred_only(inferred),
    };
    let mut coverage = Coverage::default();
    for r in &files {
        coverage.add_file(r);
    }
    coverage.add_unheld(over);
    // Judging is independent per flow: spread over the threads, results in flow order.
    let judge = |(_, flow): &(usize, Flow)| {
        let class = classify(flow, catalog, &roles);
        let mut found = evaluate(flow, &class, catalog);
        sort_findings(&mut found);
        (class, found)
    };
    let judged: Vec<(Classification, Vec<Finding>)> = match pool(cfg.threads) {
        Some(p) => p.install(|| all.par_iter().with_min_len(256).map(judge).collect()),
        None => all.iter().map(judge).collect(),
    };
    let mut flows = Vec::new();
    let mut findings = Vec::new();
    for ((file, flow), (class, found)) in all.into_iter().zip(judged) {
        let unknown = found
            .iter()
            .find(|f| f.rule == crate::findings::rule::UNKNOWN_VISIBILITY)
            .map(|f| f.observed.clone())
            .or_else(|| unknown_encryption(&flow));
        let path = files.get(file).map_or("", |r| r.path.as_str());
        coverage.add_flow(path, &flow, unknown);
        findings.extend(found.into_iter().map(|finding| Located { file, finding }));
        flows.push(Audited { file, flow, class });
    }
    findings.sort_by(|a, b| {
        b.finding
            .severity
            .cmp(&a.finding.severity)
            .then(a.file.cmp(&b.file))
            .then(a.finding.stream.cmp(&b.finding.stream))
            .then(a.finding.rule.cmp(b.finding.rule))
            .then(a.finding.fingerprint.cmp(&b.finding.fingerprint))
    });
    Audit {
        files,
        flows,
        findings,
        roles,
        suppressed: 0,
        coverage,
        threads: cfg.threads.max(1),
    }
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
/// of chunks in parallel and writing them in order.
fn write_items<T: Sync>(
    out: &mut dyn Write,
    items: &[T],
    threads: usize,
    (first, rest): Separators,
    one: impl Fn(&T, &mut Vec<u8>) -> io::Result<()> + Sync,
) -> io::Result<()> {
    let chunk_text = |(c, chunk): (usize, &[T])| -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        for (k, item) in chunk.iter().enumerate() {
            buf.extend_from_slice(if c == 0 && k == 0 { first } else { rest });
            one(item, &mut buf)?;
        }
        Ok(buf)
    };
    let chunks: Vec<(usize, &[T])> = items.chunks(SER_CHUNK).enumerate().collect();
    let Some(pool) = pool(threads) else {
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

impl Audit {
    /// Drop the findings a baseline already knows (matched on fingerprints, which do
    /// not depend on frame numbers, times or client ports).
    pub fn apply_baseline(&mut self, known: &BTreeSet<String>) {
        let before = self.findings.len();
        self.findings
            .retain(|l| !known.contains(&l.finding.fingerprint));
        self.suppressed += before - self.findings.len();
    }
}

impl Audit {
    /// The most severe finding, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|l| l.finding.severity).max()
    }
}

#[derive(Serialize)]
struct AuditedView<'a> {
    #[serde(flatten)]
    flow: FlowView<'a>,
    data_paths: Vec<&'a str>,
    classification: &'a Classification,
}

#[derive(Serialize)]
struct FindingView<'a> {
    file: &'a str,
    #[serde(flatten)]
    finding: &'a Finding,
}

/// Every host of the run's flows, in address order.
fn hosts(a: &Audit) -> BTreeSet<std::net::IpAddr> {
    let mut hosts = BTreeSet::new();
    for f in &a.flows {
        hosts.insert(f.flow.client.ip());
        hosts.insert(f.flow.server.ip());
    }
    hosts
}

/// One host's roles with their source and evidence; `None` for a host without roles.
/// Built one host at a time: a capture with thousands of clients would otherwise hold
/// every host's evidence as JSON values at once.
fn host_roles_json(a: &Audit, ip: std::net::IpAddr) -> Option<Value> {
    let r = a.roles.roles_of(ip);
    (!r.is_empty()).then(|| {
        json!({
            "host": ip.to_string(),
            "roles": r.iter().map(|(role, source, evidence)| json!({
                "role": role.as_str(),
                "source": source.as_str(),
                "evidence": evidence,
            })).collect::<Vec<_>>(),
        })
    })
}

/// Pretty JSON of `v`, every line after the first indented by `indent` spaces.
fn pretty_indented<T: Serialize + ?Sized>(
    out: &mut dyn Write,
    v: &T,
    indent: usize,
) -> io::Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(super::json_io)?;
    let pad = format!("\n{:indent$}", "");
    out.write_all(text.replace('\n', &pad).as_bytes())
}

/// The `roles` object of the JSON report (`contradictions`, then `hosts`), written
/// host by host, laid out as the pretty printer would lay out the whole object.
fn write_roles_json(out: &mut dyn Write, a: &Audit) -> io::Result<()> {
    write!(out, "{{\n    \"contradictions\": ")?;
    pretty_indented(out, &a.roles.contradictions(), 4)?;
    write!(out, ",\n    \"hosts\": [")?;
    let mut any = false;
    for ip in hosts(a) {
        if let Some(h) = host_roles_json(a, ip) {
            out.write_all(if any { b",\n      " } else { b"\n      " })?;
            pretty_indented(out, &h, 6)?;
            any = true;
        }
    }
    write!(out, "{}]\n  }}", if any { "\n    " } else { "" })
}

/// The audit as one JSON document (`version`, `files`, `flows`, `findings`,
/// `suppressed_by_baseline`, `roles`, `coverage`). Flows and findings are written one
/// compact object a line as they are serialised, never built as one tree in memory.
pub fn write_json(out: &mut dyn Write, a: &Audit, o: &Options) -> io::Result<()> {
    let path = |i: usize| a.files.get(i).map_or("", |r| r.path.as_str());
    let pretty = |out: &mut dyn Write, v: &dyn erased::Ser| -> io::Result<()> {
        let mut text = Vec::new();
        v.pretty(&mut text).map_err(super::json_io)?;
        // Indent the nested document by two spaces to sit under its key.
        let text = String::from_utf8_lossy(&text).replace('\n', "\n  ");
        out.write_all(text.as_bytes())
    };
    writeln!(out, "{{\n  \"version\": {VERSION},")?;
    write!(out, "  \"files\": ")?;
    let files: Vec<Value> = a.files.iter().map(super::flows::file_json).collect();
    pretty(out, &files)?;
    write!(out, ",\n  \"flows\": [")?;
    let sep: Separators = (b"\n    ", b",\n    ");
    write_items(out, &a.flows, a.threads, sep, |x, buf| {
        let view = AuditedView {
            flow: FlowView::new(path(x.file), &x.flow, o),
            data_paths: x.class.ids(),
            classification: &x.class,
        };
        serde_json::to_writer(buf, &view).map_err(super::json_io)
    })?;
    write!(
        out,
        "{}],\n  \"findings\": [",
        if a.flows.is_empty() { "" } else { "\n  " }
    )?;
    write_items(out, &a.findings, a.threads, sep, |l, buf| {
        let view = FindingView {
            file: path(l.file),
            finding: &l.finding,
        };
        serde_json::to_writer(buf, &view).map_err(super::json_io)
    })?;
    write!(
        out,
        "{}],\n  \"suppressed_by_baseline\": {},\n  \"roles\": ",
        if a.findings.is_empty() { "" } else { "\n  " },
        a.suppressed
    )?;
    write_roles_json(out, a)?;
    write!(out, ",\n  \"coverage\": ")?;
    pretty(out, &a.coverage)?;
    writeln!(out, "\n}}")
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
pub fn write_jsonl(out: &mut dyn Write, a: &Audit) -> io::Result<()> {
    for l in &a.findings {
        let path = a.files.get(l.file).map_or("", |r| r.path.as_str());
        serde_json::to_writer(
            &mut *out,
            &FindingView {
                file: path,
                finding: &l.finding,
            },
        )
        .map_err(super::json_io)?;
        writeln!(out)?;
    }
    Ok(())
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
    a: &Audit,
    catalog: &Catalog,
    colour: bool,
) -> io::Result<()> {
    #[derive(Default)]
    struct Row {
        flows: u64,
        encrypted: u64,
        clear: u64,
        unknown: u64,
        mechanisms: BTreeSet<String>,
        worst: Option<Severity>,
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for x in &a.flows {
        let key = x
            .class
            .best()
            .map_or_else(|| "(no path)".to_string(), |p| p.id.clone());
        let r = rows.entry(key).or_default();
        r.flows += 1;
        match x.flow.posture.encryption.as_str() {
            "none" => r.clear += 1,
            "unknown" => r.unknown += 1,
            _ => r.encrypted += 1,
        }
        for ev in &x.flow.posture.auth {
            r.mechanisms.insert(ev.mechanism.name());
        }
    }
    for l in &a.findings {
        let key = l
            .finding
            .data_path
            .clone()
            .unwrap_or_else(|| "(no path)".to_string());
        let r = rows.entry(key).or_default();
        r.worst = r.worst.max(Some(l.finding.severity));
    }
    writeln!(out, "DATA PATHS")?;
    writeln!(
        out,
        "{:<10} {:<44} {:>5} {:>5} {:>5} {:>5}  {:<24} VERDICT",
        "PATH", "NAME", "FLOWS", "ENC", "CLEAR", "UNK", "AUTH SEEN"
    )?;
    for (id, r) in &rows {
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
            a.findings.len(),
            a.suppressed
        )?;
    } else {
        writeln!(out, "FINDINGS ({})", a.findings.len())?;
    }
    for l in &a.findings {
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
    writeln!(out)?;
    writeln!(out, "ROLES")?;
    for h in hosts(a).into_iter().filter_map(|ip| host_roles_json(a, ip)) {
        let list: Vec<String> = h["roles"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(|r| {
                let ev = r["evidence"]
                    .as_array()
                    .and_then(|e| e.first())
                    .and_then(Value::as_str)
                    .unwrap_or("");
                format!(
                    "{} ({}{}{})",
                    r["role"].as_str().unwrap_or(""),
                    r["source"].as_str().unwrap_or(""),
                    if ev.is_empty() { "" } else { ": " },
                    ev
                )
            })
            .collect();
        writeln!(
            out,
            "{:<24} {}",
            h["host"].as_str().unwrap_or(""),
            list.join("; ")
        )?;
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
pub fn write_sarif(out: &mut dyn Write, a: &Audit) -> io::Result<()> {
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
    write_items(out, &a.findings, a.threads, (b"\n", b",\n"), |l, buf| {
        serde_json::to_writer(buf, &sarif_result(a, l)).map_err(super::json_io)
    })?;
    writeln!(out, "\n]}}]}}")
}

/// One value as compact JSON.
fn compact<T: Serialize + ?Sized>(out: &mut dyn Write, v: &T) -> io::Result<()> {
    serde_json::to_writer(out, v).map_err(super::json_io)
}

/// One SARIF result for a finding.
fn sarif_result(a: &Audit, l: &Located) -> Value {
    use crate::findings::RULES;
    let f = &l.finding;
    let uri = a.files.get(l.file).map_or("", |r| r.path.as_str());
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
pub fn evidence_comments(a: &Audit, file: usize) -> BTreeMap<u64, String> {
    let mut out: BTreeMap<u64, String> = BTreeMap::new();
    for l in a.findings.iter().filter(|l| l.file == file) {
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
    out
}

#[cfg(test)]
mod tests {
    use super::severity_cell;

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
