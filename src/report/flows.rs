//! The `flows` report: one object per flow, as a table, a JSON document or JSON lines.
//!
//! The JSON shape is the stable contract (`schema: "dpaudit.flows/1"`): a `files` array
//! (what could be read, what could not, what was skipped) and a `flows` array. Each flow
//! object is the one `audit` will carry, so tools written against one read the other.

use crate::flow::{endpoint, FileResult, Flow, Transport};
use crate::model::{AuthEvent, TlsInfo};
use serde_json::{json, Map, Value};
use std::io::{self, Write};

/// Identifies the JSON layout; bumped only when a field changes meaning or disappears.
pub const SCHEMA: &str = "dpaudit.flows/1";

/// How to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Jsonl,
}

/// Options shared by the writers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Print secrets in full instead of `j***`.
    pub show_secrets: bool,
}

/// A Wireshark display filter that selects exactly this flow.
pub fn display_filter(f: &Flow) -> String {
    match (f.transport, f.stream) {
        (Transport::Tcp, Some(s)) => format!("tcp.stream eq {s}"),
        (Transport::Udp, Some(s)) => format!("udp.stream eq {s}"),
        (t, _) => {
            let fam = if f.client.is_ipv4() { "ip" } else { "ipv6" };
            let proto = match t {
                Transport::Esp => "esp".to_string(),
                Transport::Ip(p) => format!("{fam}.proto == {p}"),
                Transport::Tcp => "tcp".to_string(),
                Transport::Udp => "udp".to_string(),
            };
            format!(
                "{proto} && {fam}.addr == {} && {fam}.addr == {}",
                f.client.ip(),
                f.server.ip()
            )
        }
    }
}

fn tls_json(t: &TlsInfo) -> Value {
    let hex = |v: Option<u16>| v.map(|v| format!("0x{v:04x}"));
    json!({
        "started_by": t.started_by,
        "offered_version": hex(t.offered_version),
        "version": hex(t.version),
        "version_name": t.version.map(tls_version_name),
        "cipher": hex(t.cipher),
        "sni": t.sni,
        "alpn": t.alpn,
        "cert_requested": t.cert_requested,
        "client_cert": t.client_cert,
        "client_hello_frame": t.client_hello_frame,
        "server_hello_frame": t.server_hello_frame,
    })
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

fn auth_json(a: &AuthEvent, o: &Options) -> Value {
    json!({
        "mechanism": a.mechanism.name(),
        "user": a.user,
        "cleartext": a.cleartext,
        "secret": a.secret.as_ref().map(|s| s.render(o.show_secrets)),
        "frame": a.frame,
        "context": a.context,
        "after_tls": a.after_tls,
    })
}

/// One flow as a JSON object (the shape `audit` reuses).
pub fn flow_json(file: &str, f: &Flow, o: &Options) -> Value {
    let ports = f.transport.has_ports();
    let p = &f.posture;
    let facts: Map<String, Value> = p
        .facts
        .iter()
        .map(|(k, v)| ((*k).to_string(), json!(v)))
        .collect();
    let anomalies: Vec<Value> = p
        .anomalies
        .iter()
        .map(|a| json!({"frame": a.frame, "kind": a.kind, "detail": a.detail}))
        .collect();
    let gaps: u64 = f.reassembly.iter().map(|r| r.gaps).sum();
    let gap_bytes: u64 = f.reassembly.iter().map(|r| r.gap_bytes).sum();
    let seen = json!({
        "syn": f.syn_seen,
        "syn_ack": f.syn_ack_seen,
        "fin_client": f.fin_seen[0],
        "fin_server": f.fin_seen[1],
        "rst": f.rst_seen,
        "gaps": gaps,
        "gap_bytes": gap_bytes,
        "retransmitted_bytes": f.reassembly.iter().map(|r| r.retransmitted_bytes).sum::<u64>(),
        "out_of_order": f.reassembly.iter().map(|r| r.out_of_order).sum::<u64>(),
        "truncated_frames": f.truncated_frames,
        "icmp_errors": f.icmp_errors,
        "ah": f.ah_seen,
        "tunneled": f.tunneled,
    });
    json!({
        "file": file,
        "stream": f.stream,
        "transport": f.transport.name(),
        "client": endpoint(&f.client, ports),
        "server": endpoint(&f.server, ports),
        "client_from": f.client_from.as_str(),
        "filter": display_filter(f),
        "first_frame": f.first_frame,
        "last_frame": f.last_frame,
        "start_ns": f.first_ts_ns,
        "duration_ns": f.last_ts_ns.saturating_sub(f.first_ts_ns),
        "frames": f.total_frames(),
        "bytes": f.total_bytes(),
        "frames_to_server": f.frames[0],
        "frames_to_client": f.frames[1],
        "bytes_to_server": f.bytes[0],
        "bytes_to_client": f.bytes[1],
        "payload_to_server": f.payload[0],
        "payload_to_client": f.payload[1],
        "protocol": p.protocol,
        "detected_by": p.detected_by,
        "encryption": p.encryption.as_str(),
        "encryption_frame": p.encryption_frame,
        "tls": p.tls.as_ref().map(tls_json),
        "auth": p.auth.iter().map(|a| auth_json(a, o)).collect::<Vec<_>>(),
        "facts": facts,
        "anomalies": anomalies,
        "anomalies_dropped": p.anomalies_dropped,
        "seen": seen,
        "end": f.end.as_str(),
        "resumed": f.resumed,
    })
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
        "readable": r.error.as_ref().is_none_or(|e| e.is_partial()),
        "error": r.error.as_ref().map(|e| e.to_string()),
        "warnings": warnings,
        "capture": r.summary,
        "decode": r.decode,
        "flows": r.table,
    })
}

/// The whole document for `--format json`.
pub fn document(files: &[FileResult], o: &Options) -> Value {
    let flows: Vec<Value> = files
        .iter()
        .flat_map(|r| r.flows.iter().map(move |f| flow_json(&r.path, f, o)))
        .collect();
    json!({
        "schema": SCHEMA,
        "files": files.iter().map(file_json).collect::<Vec<_>>(),
        "flows": flows,
    })
}

/// Write the report. A closed pipe surfaces as `BrokenPipe` for the caller to ignore.
pub fn write(
    out: &mut dyn Write,
    files: &[FileResult],
    fmt: Format,
    o: &Options,
) -> io::Result<()> {
    match fmt {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &document(files, o))?;
            writeln!(out)
        }
        Format::Jsonl => {
            for r in files {
                for f in &r.flows {
                    serde_json::to_writer(&mut *out, &flow_json(&r.path, f, o))?;
                    writeln!(out)?;
                }
            }
            Ok(())
        }
        Format::Table => write_table(out, files),
    }
}

fn auth_summary(f: &Flow) -> String {
    let mut v: Vec<String> = Vec::new();
    for a in &f.posture.auth {
        let mut s = a.mechanism.name();
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

fn write_table(out: &mut dyn Write, files: &[FileResult]) -> io::Result<()> {
    let many = files.len() > 1;
    for r in files {
        if many {
            writeln!(out, "== {} ==", r.path)?;
        }
        let rows: Vec<[String; 10]> = r
            .flows
            .iter()
            .map(|f| {
                let ports = f.transport.has_ports();
                [
                    f.stream.map_or("-".into(), |s| s.to_string()),
                    f.transport.name(),
                    endpoint(&f.client, ports),
                    endpoint(&f.server, ports),
                    f.first_frame.to_string(),
                    format!("{}/{}", f.frames[0], f.frames[1]),
                    format!("{}/{}", f.bytes[0], f.bytes[1]),
                    f.posture.protocol.unwrap_or("-").to_string(),
                    f.posture.encryption.as_str().to_string(),
                    auth_summary(f),
                ]
            })
            .collect();
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
        let mut width: Vec<usize> = head.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (w, c) in width.iter_mut().zip(row.iter()) {
                *w = (*w).max(c.len());
            }
        }
        let line = |cells: Vec<&str>| -> String {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(width.iter()).enumerate() {
                if i + 1 == cells.len() {
                    s.push_str(c);
                } else {
                    s.push_str(&format!("{c:<w$}  "));
                }
            }
            s
        };
        writeln!(out, "{}", line(head.to_vec()))?;
        for row in &rows {
            writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
        }
        writeln!(
            out,
            "{} flows, {} frames ({} not in any flow){}",
            r.flows.len(),
            r.summary.frames,
            r.summary
                .frames
                .saturating_sub(r.flows.iter().map(Flow::total_frames).sum::<u64>()),
            r.error
                .as_ref()
                .map(|e| format!("; warning: {e}"))
                .unwrap_or_default()
        )?;
        if many {
            writeln!(out)?;
        }
    }
    Ok(())
}
