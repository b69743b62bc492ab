//! What a run could and could not see, for the end of every report: packets read and
//! decoded, what was skipped and why, bad checksums, flows whose start or security
//! handshake was not captured, reassembly gaps, caps reached, and the flows whose verdict
//! is therefore unknown. A report that says "no findings" means something only next to
//! this section.

use crate::flow::{FileResult, Flow, Transport};
use crate::limits::CAP_ANOMALIES;
use crate::model::Encryption;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};

/// Flows listed by name in `unknown_verdict`; past it they are only counted (a capture of
/// a million half-seen flows must not make a million-line report).
pub const MAX_LISTED_UNKNOWN: usize = 1000;

/// Bad checksums (decoded anyway, as Wireshark does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Checksums {
    pub ip4: u64,
    pub tcp: u64,
    pub udp: u64,
}

/// Reassembly gaps over all flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Gaps {
    /// Flows with at least one gap.
    pub flows: u64,
    pub gaps: u64,
    pub bytes: u64,
}

/// A flow whose posture could not be judged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnknownFlow {
    pub file: String,
    pub transport: String,
    pub stream: Option<u64>,
    pub client: String,
    pub server: String,
    pub filter: String,
    pub reason: String,
}

/// What the coverage counts of one flow, taken where the flow is judged so that the
/// flow need not travel to the thread that counts.
#[derive(Debug)]
pub struct FlowNote {
    start_not_seen: bool,
    tls_handshake_not_seen: bool,
    unrecognised: bool,
    gaps: u64,
    gap_bytes: u64,
    ooo: u64,
    /// Bit `i`: the flow has an anomaly of `CAP_ANOMALIES[i]`.
    caps: u64,
    unknown: Option<Unknown>,
}

/// A flow whose verdict is unknown: why, and what names it, made into an
/// [`UnknownFlow`] only while the report still lists them.
#[derive(Debug)]
struct Unknown {
    reason: String,
    transport: Transport,
    stream: Option<u64>,
    client: std::net::SocketAddr,
    server: std::net::SocketAddr,
}

// One bit per kind of capped anomaly in `FlowNote::caps`.
const _: () = assert!(CAP_ANOMALIES.len() <= 64);

impl FlowNote {
    /// `unknown` is why the flow's verdict is unknown, if it is.
    pub fn of(f: &Flow, unknown: Option<String>) -> FlowNote {
        let p = &f.posture;
        let mut caps = 0u64;
        for (i, (kind, _)) in CAP_ANOMALIES.iter().enumerate() {
            if p.anomalies.iter().any(|a| a.kind == *kind) {
                caps |= 1 << i;
            }
        }
        FlowNote {
            start_not_seen: f.transport == Transport::Tcp && !f.syn_seen && !f.syn_ack_seen,
            tls_handshake_not_seen: p.protocol == Some("tls")
                && p.tls.as_ref().is_none_or(|t| t.version.is_none()),
            unrecognised: p.protocol.is_none() && f.payload.iter().sum::<u64>() > 0,
            gaps: f.reassembly[0].gaps + f.reassembly[1].gaps,
            gap_bytes: f.reassembly[0].gap_bytes + f.reassembly[1].gap_bytes,
            ooo: f.reassembly[0].cap_hits + f.reassembly[1].cap_hits,
            caps,
            unknown: unknown.map(|reason| Unknown {
                reason,
                transport: f.transport,
                stream: f.stream,
                client: f.client,
                server: f.server,
            }),
        }
    }
}

/// The coverage section of a report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub files: u64,
    /// Files that could not be read at all, or only part way.
    pub files_unreadable: u64,
    pub files_damaged: u64,
    /// Packet records read from the captures.
    pub frames: u64,
    /// Bytes of the capture files read.
    pub bytes: u64,
    /// Frames decoded to an IP packet (a reassembled datagram counts once).
    pub packets_decoded: u64,
    /// IP fragments held for reassembly (their datagram counts in `packets_decoded`).
    pub fragments: u64,
    /// Frames not decoded, by reason (`not-ip`, `malformed: ...`, `truncated: ...`,
    /// `link type N`, `fragment dropped`).
    pub frames_skipped: BTreeMap<String, u64>,
    /// Packets cut by the snapshot length but decoded as far as they go.
    pub truncated_packets: u64,
    /// Frames whose timestamp is earlier than the frame before (analysed in file order).
    pub timestamps_backwards: u64,
    pub bad_checksums: Checksums,
    pub flows: u64,
    /// TCP flows whose SYN / SYN-ACK were not captured (picked up mid-connection).
    pub flows_start_not_seen: u64,
    /// TLS flows whose handshake was not captured (version and cipher unknown).
    pub flows_tls_handshake_not_seen: u64,
    /// Flows with payload whose protocol was never recognised.
    pub flows_unrecognised: u64,
    pub reassembly_gaps: Gaps,
    /// Caps reached, by cap name (`dpaudit caps`), with how often.
    pub caps_hit: BTreeMap<&'static str, u64>,
    /// Flows whose verdict is unknown: how many, and the first [`MAX_LISTED_UNKNOWN`].
    pub unknown_verdict_count: u64,
    pub unknown_verdict: Vec<UnknownFlow>,
}

impl Coverage {
    /// Counts what one capture's read, decode and flow table reported.
    pub fn add_file(&mut self, r: &FileResult) {
        self.files += 1;
        match &r.error {
            Some(e) if e.is_partial() => self.files_damaged += 1,
            Some(_) => self.files_unreadable += 1,
            None => {}
        }
        let d = &r.decode;
        self.frames += r.summary.frames;
        self.bytes += r.summary.bytes;
        self.packets_decoded += d.packets;
        self.fragments += d.fragments;
        self.truncated_packets += d.partial;
        self.timestamps_backwards += r.summary.ts_backwards;
        self.bad_checksums.ip4 += d.bad_ip4_checksum;
        self.bad_checksums.tcp += d.bad_tcp_checksum;
        self.bad_checksums.udp += d.bad_udp_checksum;
        let mut skip = |k: String, n: u64| {
            if n > 0 {
                *self.frames_skipped.entry(k).or_default() += n;
            }
        };
        skip("not-ip".into(), d.not_ip);
        for (why, n) in &d.skip_reasons {
            skip((*why).to_string(), *n);
        }
        for (lt, n) in &d.unknown_linktypes {
            // u32::MAX stands for "no such interface", counted below.
            if *lt != u32::MAX {
                skip(format!("link type {lt}"), *n);
            }
        }
        skip("fragment dropped".into(), d.defrag_dropped);
        skip("unknown interface".into(), r.summary.bad_interface);
        let mut cap = |name: &'static str, n: u64| {
            if n > 0 {
                *self.caps_hit.entry(name).or_default() += n;
            }
        };
        cap("live-flows", r.table.evicted);
        cap("remembered-flows", r.table.forgotten);
        cap("fragments", d.defrag_dropped_cap);
        cap("capture-record", r.summary.oversize_records);
    }

    /// Counts one flow; `unknown` is why its verdict is unknown, if it is.
    pub fn add_flow(&mut self, file: &str, f: &Flow, unknown: Option<String>) {
        self.add_note(file, FlowNote::of(f, unknown));
    }

    /// Counts one flow of capture `file` from what [`FlowNote::of`] took of it.
    pub fn add_note(&mut self, file: &str, n: FlowNote) {
        self.flows += 1;
        self.flows_start_not_seen += u64::from(n.start_not_seen);
        self.flows_tls_handshake_not_seen += u64::from(n.tls_handshake_not_seen);
        self.flows_unrecognised += u64::from(n.unrecognised);
        if n.gaps > 0 {
            self.reassembly_gaps.flows += 1;
            self.reassembly_gaps.gaps += n.gaps;
            self.reassembly_gaps.bytes += n.gap_bytes;
        }
        if n.ooo > 0 {
            *self.caps_hit.entry("ooo-segments").or_default() += n.ooo;
        }
        for (i, (_, cap)) in CAP_ANOMALIES.iter().enumerate() {
            if n.caps & (1 << i) != 0 {
                *self.caps_hit.entry(cap).or_default() += 1;
            }
        }
        if let Some(u) = n.unknown {
            self.unknown_verdict_count += 1;
            if self.unknown_verdict.len() < MAX_LISTED_UNKNOWN {
                let ports = u.transport.has_ports();
                self.unknown_verdict.push(UnknownFlow {
                    file: file.to_string(),
                    transport: u.transport.name().into_owned(),
                    stream: u.stream,
                    client: crate::flow::endpoint(&u.client, ports),
                    server: crate::flow::endpoint(&u.server, ports),
                    filter: crate::flow::filter_for(
                        u.transport,
                        u.stream,
                        u.client.ip(),
                        u.server.ip(),
                    )
                    .to_string(),
                    reason: u.reason,
                });
            }
        }
    }

    /// Flows past the audit's flow cap: counted, not judged, so their verdict is unknown.
    pub fn add_unheld(&mut self, n: u64) {
        if n > 0 {
            self.flows += n;
            self.unknown_verdict_count += n;
            *self.caps_hit.entry("audit-flows").or_default() += n;
        }
    }

    /// Another run's coverage (several captures analysed at once), appended after this.
    pub fn merge(&mut self, o: Coverage) {
        self.files += o.files;
        self.files_unreadable += o.files_unreadable;
        self.files_damaged += o.files_damaged;
        self.frames += o.frames;
        self.bytes += o.bytes;
        self.packets_decoded += o.packets_decoded;
        self.fragments += o.fragments;
        for (k, n) in o.frames_skipped {
            *self.frames_skipped.entry(k).or_default() += n;
        }
        self.truncated_packets += o.truncated_packets;
        self.timestamps_backwards += o.timestamps_backwards;
        self.bad_checksums.ip4 += o.bad_checksums.ip4;
        self.bad_checksums.tcp += o.bad_checksums.tcp;
        self.bad_checksums.udp += o.bad_checksums.udp;
        self.flows += o.flows;
        self.flows_start_not_seen += o.flows_start_not_seen;
        self.flows_tls_handshake_not_seen += o.flows_tls_handshake_not_seen;
        self.flows_unrecognised += o.flows_unrecognised;
        self.reassembly_gaps.flows += o.reassembly_gaps.flows;
        self.reassembly_gaps.gaps += o.reassembly_gaps.gaps;
        self.reassembly_gaps.bytes += o.reassembly_gaps.bytes;
        for (k, n) in o.caps_hit {
            *self.caps_hit.entry(k).or_default() += n;
        }
        self.unknown_verdict_count += o.unknown_verdict_count;
        let room = MAX_LISTED_UNKNOWN.saturating_sub(self.unknown_verdict.len());
        self.unknown_verdict
            .extend(o.unknown_verdict.into_iter().take(room));
    }

    /// Nothing could be analysed: no flow at all came out of the captures.
    pub fn nothing_analysed(&self) -> bool {
        self.flows == 0
    }

    /// The terminal section.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "\nCOVERAGE")?;
        let files = match (self.files_unreadable, self.files_damaged) {
            (0, 0) => format!("{}", self.files),
            (u, d) => format!("{} ({u} unreadable, {d} damaged part way)", self.files),
        };
        writeln!(
            out,
            "  read       {files} file(s), {} frames, {} bytes; {} packets decoded",
            self.frames, self.bytes, self.packets_decoded
        )?;
        if !self.frames_skipped.is_empty() {
            let list: Vec<String> = self
                .frames_skipped
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            writeln!(out, "  skipped    {}", list.join(", "))?;
        }
        if self.truncated_packets > 0 {
            writeln!(
                out,
                "  truncated  {} packets cut by the snapshot length",
                self.truncated_packets
            )?;
        }
        if self.timestamps_backwards > 0 {
            writeln!(
                out,
                "  time       {} frames earlier than the frame before (analysed in file order)",
                self.timestamps_backwards
            )?;
        }
        let c = &self.bad_checksums;
        if c.ip4 + c.tcp + c.udp > 0 {
            writeln!(
                out,
                "  checksums  {} IPv4, {} TCP, {} UDP wrong (checksum offload on the capturing host, or damage; decoded anyway)",
                c.ip4, c.tcp, c.udp
            )?;
        }
        writeln!(
            out,
            "  flows      {}; start not captured {}; TLS handshake not captured {}; protocol not recognised {}",
            self.flows,
            self.flows_start_not_seen,
            self.flows_tls_handshake_not_seen,
            self.flows_unrecognised
        )?;
        let g = &self.reassembly_gaps;
        if g.gaps > 0 {
            writeln!(
                out,
                "  gaps       {} in {} flow(s), {} bytes missing",
                g.gaps, g.flows, g.bytes
            )?;
        }
        if self.caps_hit.is_empty() {
            writeln!(out, "  caps       none reached")?;
        } else {
            let list: Vec<String> = self
                .caps_hit
                .iter()
                .map(|(k, n)| format!("{k} x{n}"))
                .collect();
            writeln!(out, "  caps       {} (see `dpaudit caps`)", list.join(", "))?;
        }
        writeln!(
            out,
            "  unknown    {} flow(s) whose verdict is unknown",
            self.unknown_verdict_count
        )?;
        for u in &self.unknown_verdict {
            writeln!(out, "    {:<22} {}", u.filter, u.reason)?;
        }
        if self.unknown_verdict_count > self.unknown_verdict.len() as u64 {
            writeln!(
                out,
                "    ... {} more (JSON lists the first {MAX_LISTED_UNKNOWN})",
                self.unknown_verdict_count - self.unknown_verdict.len() as u64
            )?;
        }
        Ok(())
    }
}

/// Why a flow's encryption verdict is unknown, judged on the flow alone (the `flows`
/// command, which does not classify).
pub fn unknown_encryption(f: &Flow) -> Option<String> {
    let p = &f.posture;
    if p.encryption != Encryption::Unknown {
        return None;
    }
    let gaps = f.reassembly[0].gaps + f.reassembly[1].gaps;
    Some(if gaps > 0 {
        format!("encryption unknown: {gaps} reassembly gap(s)")
    } else if f.transport == Transport::Tcp && !f.syn_seen && !f.syn_ack_seen {
        "encryption unknown: the connection's start was not captured".into()
    } else {
        "encryption unknown".into()
    })
}
