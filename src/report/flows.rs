//! The `flows` report: one object per flow, as a table, a JSON document or JSON lines.
//!
//! The JSON shape is the stable contract (`schema: "dpaudit.flows/1"`): a `flows` array
//! and a `files` array (what could be read, what could not, what was skipped). Each flow
//! object is the one `audit` will carry, so tools written against one read the other.
//!
//! JSON and JSON lines are written while the capture is read, one flow as it ends (the
//! order the flow table closed them: deterministic, independent of threads), so memory
//! does not grow with the capture. The table is for people: it is sorted by stream and
//! therefore held until the end.

use super::coverage::{unknown_encryption, Coverage};
use crate::flow::{endpoint, Endpoint, FileResult, FilterText, Flow, FlowSink, Transport};
use crate::model::{Anomaly, AuthEvent, TlsInfo};
use serde::Serialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::io::{self, Write};

/// Identifies the JSON layout; bumped only when a field changes meaning or disappears.
pub const SCHEMA: &str = "dpaudit.flows/1";

/// How to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Jsonl,
    /// No flow records: the files and the coverage section only (JSON).
    Summary,
}

/// Options shared by the writers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Print secrets in full instead of `j***`.
    pub show_secrets: bool,
}

/// A Wireshark display filter that selects exactly this flow.
pub fn display_filter(f: &Flow) -> String {
    f.display_filter()
}

/// `TLS 1.2` style names for wire version numbers.
pub fn tls_version_name(v: u16) -> String {
    match v {
        0x0002 => "SSL 2.0".into(),
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        v => format!("0x{v:04x}"),
    }
}

fn hex(v: Option<u16>) -> Option<Hex> {
    v.map(Hex)
}

/// `0x0303`.
struct Hex(u16);

impl std::fmt::Display for Hex {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        out.write_str(self.text().as_str())
    }
}

impl Hex {
    /// `0x` and four lower-case hex digits, as `0x{:04x}` writes them.
    fn text(&self) -> crate::flow::ShortText {
        let mut t = crate::flow::ShortText::default();
        t.push_str("0x");
        t.push_hex(self.0, 4);
        t
    }
}

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text().as_str())
    }
}

#[derive(Serialize)]
struct TlsView<'a> {
    started_by: &'a str,
    offered_version: Option<Hex>,
    version: Option<Hex>,
    version_name: Option<String>,
    cipher: Option<Hex>,
    sni: &'a Option<String>,
    alpn: &'a [String],
    cert_requested: bool,
    client_cert: bool,
    client_hello_frame: Option<u64>,
    server_hello_frame: Option<u64>,
}

impl<'a> TlsView<'a> {
    fn new(t: &'a TlsInfo) -> Self {
        TlsView {
            started_by: &t.started_by,
            offered_version: hex(t.offered_version),
            version: hex(t.version),
            version_name: t.version.map(tls_version_name),
            cipher: hex(t.cipher),
            sni: &t.sni,
            alpn: &t.alpn,
            cert_requested: t.cert_requested,
            client_cert: t.client_cert,
            client_hello_frame: t.client_hello_frame,
            server_hello_frame: t.server_hello_frame,
        }
    }
}

#[derive(Serialize)]
struct AuthView<'a> {
    mechanism: Cow<'static, str>,
    user: &'a Option<String>,
    cleartext: bool,
    secret: Option<String>,
    frame: u64,
    context: &'a str,
    after_tls: bool,
}

impl<'a> AuthView<'a> {
    fn new(a: &'a AuthEvent, o: &Options) -> Self {
        AuthView {
            mechanism: a.mechanism.name(),
            user: &a.user,
            cleartext: a.cleartext,
            secret: a.secret.as_ref().map(|s| s.render(o.show_secrets)),
            frame: a.frame,
            context: &a.context,
            after_tls: a.after_tls,
        }
    }
}

#[derive(Serialize)]
struct AnomalyView<'a> {
    frame: u64,
    kind: &'a str,
    detail: &'a str,
}

impl<'a> AnomalyView<'a> {
    fn new(a: &'a Anomaly) -> Self {
        AnomalyView {
            frame: a.frame,
            kind: a.kind,
            detail: &a.detail,
        }
    }
}

/// What the capture showed of the connection itself.
#[derive(Serialize)]
struct SeenView {
    syn: bool,
    syn_ack: bool,
    fin_client: bool,
    fin_server: bool,
    rst: bool,
    gaps: u64,
    gap_bytes: u64,
    retransmitted_bytes: u64,
    out_of_order: u64,
    truncated_frames: u64,
    icmp_errors: u64,
    ah: bool,
    tunneled: bool,
}

/// One flow as the JSON reports print it.
#[derive(Serialize)]
pub struct FlowView<'a> {
    file: &'a str,
    stream: Option<u64>,
    transport: std::borrow::Cow<'static, str>,
    client: Endpoint,
    server: Endpoint,
    client_from: &'static str,
    filter: FilterText,
    first_frame: u64,
    last_frame: u64,
    start_ns: i64,
    duration_ns: i64,
    frames: u64,
    bytes: u64,
    frames_to_server: u64,
    frames_to_client: u64,
    bytes_to_server: u64,
    bytes_to_client: u64,
    payload_to_server: u64,
    payload_to_client: u64,
    protocol: Option<&'static str>,
    detected_by: Option<&'static str>,
    encryption: &'static str,
    encryption_frame: Option<u64>,
    tls: Option<TlsView<'a>>,
    auth: Vec<AuthView<'a>>,
    facts: &'a crate::model::Facts,
    anomalies: Vec<AnomalyView<'a>>,
    anomalies_dropped: u64,
    seen: SeenView,
    end: &'static str,
    resumed: bool,
}

impl<'a> FlowView<'a> {
    pub fn new(file: &'a str, f: &'a Flow, o: &Options) -> Self {
        let ports = f.transport.has_ports();
        let p = &f.posture;
        let sum = |g: fn(&crate::flow::ReassemblyStats) -> u64| f.reassembly.iter().map(g).sum();
        FlowView {
            file,
            stream: f.stream,
            transport: f.transport.name(),
            client: Endpoint(f.client, ports),
            server: Endpoint(f.server, ports),
            client_from: f.client_from.as_str(),
            filter: f.filter_text(),
            first_frame: f.first_frame,
            last_frame: f.last_frame,
            start_ns: f.first_ts_ns,
            duration_ns: f.last_ts_ns.saturating_sub(f.first_ts_ns),
            frames: f.total_frames(),
            bytes: f.total_bytes(),
            frames_to_server: f.frames[0],
            frames_to_client: f.frames[1],
            bytes_to_server: f.bytes[0],
            bytes_to_client: f.bytes[1],
            payload_to_server: f.payload[0],
            payload_to_client: f.payload[1],
            protocol: p.protocol,
            detected_by: p.detected_by,
            encryption: p.encryption.as_str(),
            encryption_frame: p.encryption_frame,
            tls: p.tls.as_deref().map(TlsView::new),
            auth: p.auth.iter().map(|a| AuthView::new(a, o)).collect(),
            facts: &p.facts,
            anomalies: p.anomalies.iter().map(AnomalyView::new).collect(),
            anomalies_dropped: p.anomalies_dropped,
            seen: SeenView {
                syn: f.syn_seen,
                syn_ack: f.syn_ack_seen,
                fin_client: f.fin_seen[0],
                fin_server: f.fin_seen[1],
                rst: f.rst_seen,
                gaps: sum(|r| r.gaps),
                gap_bytes: sum(|r| r.gap_bytes),
                retransmitted_bytes: sum(|r| r.retransmitted_bytes),
                out_of_order: sum(|r| r.out_of_order),
                truncated_frames: f.truncated_frames,
                icmp_errors: f.icmp_errors,
                ah: f.ah_seen,
                tunneled: f.tunneled,
            },
            end: f.end.as_str(),
            resumed: f.resumed,
        }
    }
}

/// What the run could and could not read, per file.
pub fn file_json(r: &FileResult) -> Value {
    let mut warnings = Vec::new();
    if let Some(e) = &r.error {
        warnings.push(e.to_string());
    }
    for (lt, n) in &r.decode.unknown_linktypes {
        warnings.push(format!(
            "{n} frames of unsupported link type {lt} were skipped"
        ));
    }
    if r.table.evicted > 0 {
        warnings.push(format!(
            "{} flows were evicted by the live-flow cap; their records are partial",
            r.table.evicted
        ));
    }
    if r.table.forgotten > 0 {
        warnings.push(format!(
            "{} ended conversations were forgotten (memory cap): later stream indices may differ from Wireshark's",
            r.table.forgotten
        ));
    }
    json!({
        "path": r.path,
        "format": r.summary.format,
        "compression": r.summary.compression,
        "frames": r.summary.frames,
        "bytes": r.summary.bytes,
        "flows": r.flows,
        "readable": r.error.as_ref().is_none_or(|e| e.is_partial()),
        "error": r.error.as_ref().map(|e| e.to_string()),
        "warnings": warnings,
        "capture": r.summary,
        "decode": r.decode,
        "table": r.table,
    })
}

/// A table row, kept until the end for sorting.
struct Row {
    file: usize,
    key: (u8, Option<u64>, u64),
    cells: [String; 10],
}

/// Per-file totals the table prints under its rows.
#[derive(Default, Clone)]
struct FileTotals {
    path: String,
    flows: u64,
    frames_in_flows: u64,
}

/// The flow sink that prints. Write errors (a closed pipe) are kept and returned by
/// [`FlowWriter::finish`]; later flows are then dropped quietly.
pub struct FlowWriter<W: Write + Send> {
    out: W,
    fmt: Format,
    opts: Options,
    files: Vec<FileTotals>,
    written: u64,
    rows: Vec<Row>,
    error: Option<io::Error>,
    /// Reused for every flow's JSON (growing a fresh vector per flow cost 11% of a run).
    line: Vec<u8>,
    coverage: Coverage,
}

impl<W: Write + Send> FlowWriter<W> {
    /// A writer; for JSON the document's opening is written at once.
    pub fn new(out: W, fmt: Format, opts: Options) -> Self {
        let mut w = FlowWriter {
            out,
            fmt,
            opts,
            files: Vec::new(),
            written: 0,
            rows: Vec::new(),
            error: None,
            line: Vec::with_capacity(4096),
            coverage: Coverage::default(),
        };
        if fmt == Format::Json {
            let head = format!("{{\n  \"schema\": \"{SCHEMA}\",\n  \"flows\": [");
            w.put(head.as_bytes());
        }
        w
    }

    /// Flows from now on come from this capture.
    pub fn begin_file(&mut self, path: &str) {
        self.files.push(FileTotals {
            path: path.to_string(),
            ..FileTotals::default()
        });
    }

    fn put(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(bytes) {
                self.error = Some(e);
            }
        }
    }

    /// One compact JSON object, placed as a JSON-lines line or a document array entry.
    fn entry(&mut self, line: &[u8]) {
        match self.fmt {
            Format::Json => {
                let sep: &[u8] = if self.written == 0 {
                    b"\n    "
                } else {
                    b",\n    "
                };
                self.put(sep);
                self.put(line);
            }
            _ => {
                self.put(line);
                self.put(b"\n");
            }
        }
        self.written += 1;
    }

    /// Take over what a per-capture writer (same format, JSON lines for JSON) collected.
    pub fn absorb(&mut self, other: FlowWriter<Vec<u8>>) {
        let base = self.files.len();
        self.coverage.merge(other.coverage);
        self.files.extend(other.files);
        for mut r in other.rows {
            r.file += base;
            self.rows.push(r);
        }
        if !matches!(self.fmt, Format::Table | Format::Summary) {
            for line in other.out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                self.entry(line);
            }
        }
    }

    /// Close the report: the JSON document's `files`, or the sorted table.
    pub fn finish(mut self, results: &[FileResult]) -> io::Result<W> {
        for r in results {
            self.coverage.add_file(r);
        }
        match self.fmt {
            Format::Json => {
                let files: Vec<Value> = results.iter().map(file_json).collect();
                let close = if self.written == 0 {
                    "],\n"
                } else {
                    "\n  ],\n"
                };
                self.put(close.as_bytes());
                let mut text = serde_json::to_string_pretty(
                    &json!({ "files": files, "coverage": self.coverage }),
                )
                .map_err(super::json_io)?;
                // splice `"files": [...]` into the open document
                text.remove(0);
                self.put(b" ");
                self.put(text.trim_start().as_bytes());
                self.put(b"\n");
            }
            Format::Jsonl => {}
            Format::Summary => {
                let files: Vec<Value> = results.iter().map(file_json).collect();
                let doc = json!({ "schema": SCHEMA, "files": files, "coverage": self.coverage });
                let text = serde_json::to_string_pretty(&doc).map_err(super::json_io)?;
                self.put(text.as_bytes());
                self.put(b"\n");
            }
            Format::Table => {
                self.table(results);
                let mut text = Vec::new();
                self.coverage.write_text(&mut text)?;
                self.put(&text);
            }
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok(self.out)
    }

    fn table(&mut self, results: &[FileResult]) {
        let mut rows = std::mem::take(&mut self.rows);
        rows.sort_by_key(|r| (r.file, r.key));
        let head = [
            "STREAM",
            "PROTO",
            "CLIENT",
            "SERVER",
            "FIRST",
            "FRAMES c>s/s>c",
            "BYTES c>s/s>c",
            "APP",
            "ENCRYPTION",
            "AUTH",
        ];
        let many = self.files.len() > 1;
        let files = self.files.clone();
        for (i, totals) in files.iter().enumerate() {
            let mine: Vec<&Row> = rows.iter().filter(|r| r.file == i).collect();
            let mut width: Vec<usize> = head.iter().map(|h| h.len()).collect();
            for row in &mine {
                for (w, c) in width.iter_mut().zip(row.cells.iter()) {
                    *w = (*w).max(c.len());
                }
            }
            let line = |cells: Vec<&str>| -> String {
                let mut s = String::new();
                for (j, (c, w)) in cells.iter().zip(width.iter()).enumerate() {
                    if j + 1 == cells.len() {
                        s.push_str(c);
                    } else {
                        s.push_str(&format!("{c:<w$}  "));
                    }
                }
                s.push('\n');
                s
            };
            if many {
                self.put(format!("== {} ==\n", totals.path).as_bytes());
            }
            self.put(line(head.to_vec()).as_bytes());
            for row in &mine {
                self.put(line(row.cells.iter().map(String::as_str).collect()).as_bytes());
            }
            let r = results.iter().find(|r| r.path == totals.path);
            let frames = r.map_or(0, |r| r.summary.frames);
            let warn = r
                .and_then(|r| r.error.as_ref())
                .map(|e| format!("; warning: {e}"))
                .unwrap_or_default();
            let foot = format!(
                "{} flows, {} frames ({} not in any flow){}\n",
                totals.flows,
                frames,
                frames.saturating_sub(totals.frames_in_flows),
                warn
            );
            self.put(foot.as_bytes());
            if many {
                self.put(b"\n");
            }
        }
    }
}

fn auth_summary(f: &Flow) -> String {
    let mut v: Vec<String> = Vec::new();
    for a in &f.posture.auth {
        let mut s = a.mechanism.name().into_owned();
        if a.cleartext {
            s.push('!');
        }
        if !v.contains(&s) {
            v.push(s);
        }
    }
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

impl<W: Write + Send> FlowSink for FlowWriter<W> {
    fn flow(&mut self, f: &mut Flow) {
        let f = &*f;
        if self.files.is_empty() {
            self.begin_file("-");
        }
        let file = self.files.len() - 1;
        if let Some(t) = self.files.last_mut() {
            t.flows += 1;
            t.frames_in_flows += f.total_frames();
            self.coverage.add_flow(&t.path, f, unknown_encryption(f));
        }
        if self.fmt == Format::Table {
            let ports = f.transport.has_ports();
            let rank = match f.transport {
                Transport::Tcp => 0,
                Transport::Udp => 1,
                _ => 2,
            };
            self.rows.push(Row {
                file,
                key: (rank, f.stream, f.first_frame),
                cells: [
                    f.stream.map_or("-".into(), |s| s.to_string()),
                    f.transport.name().into_owned(),
                    endpoint(&f.client, ports),
                    endpoint(&f.server, ports),
                    f.first_frame.to_string(),
                    format!("{}/{}", f.frames[0], f.frames[1]),
                    format!("{}/{}", f.bytes[0], f.bytes[1]),
                    f.posture.protocol.unwrap_or("-").to_string(),
                    f.posture.encryption.as_str().to_string(),
                    auth_summary(f),
                ],
            });
            return;
        }
        if self.error.is_some() || self.fmt == Format::Summary {
            return;
        }
        let path = self
            .files
            .last()
            .map(|t| t.path.clone())
            .unwrap_or_default();
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        match super::json::write_io(&mut line, &FlowView::new(&path, f, &self.opts)) {
            Ok(()) => self.entry(&line),
            Err(e) => self.error = Some(e),
        }
        self.line = line;
    }
}

#[cfg(test)]
mod tests {
    use super::Hex;

    /// TLS versions and cipher suites are written as `0x{:04x}` writes them.
    #[test]
    fn hex_is_four_lower_case_digits() {
        for v in 0..=u16::MAX {
            let want = format!("0x{v:04x}");
            assert_eq!(Hex(v).to_string(), want);
            assert_eq!(
                serde_json::to_string(&Hex(v)).unwrap(),
                format!("\"{want}\"")
            );
        }
    }
}
