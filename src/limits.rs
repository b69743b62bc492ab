//! Every cap dpaudit puts on what hostile or damaged input can make it hold, in one place:
//! its name, the command-line flag that overrides it, its default, why that default, and
//! the counter that tells how often a run reached it (the coverage report shows each).
//!
//! Reaching a cap never stops a run and never passes silently: the flow or file that hit
//! it gets an anomaly or a counter, and a flow whose analysis a cap cut short is reported
//! with an unknown verdict rather than clean.

use crate::capture::MAX_CAPLEN;

/// Caps that protocol analyzers read through [`crate::proto::api::Ctx`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtoLimits {
    /// Largest HTTP (and RPC over HTTP) header block, per message.
    pub http_header: usize,
    /// Requests or commands waiting for their answer, per flow (SMTP, IMAP, POP3, HTTP,
    /// SMB).
    pub transactions: usize,
    /// TLS records read per direction before the session is encrypted.
    pub tls_handshake_records: u64,
}

impl ProtoLimits {
    pub const DEFAULT: ProtoLimits = ProtoLimits {
        http_header: DEFAULT_HTTP_HEADER,
        transactions: DEFAULT_TRANSACTIONS,
        tls_handshake_records: DEFAULT_TLS_HANDSHAKE_RECORDS,
    };
}

impl Default for ProtoLimits {
    fn default() -> Self {
        ProtoLimits::DEFAULT
    }
}

/// IIS accepts 16 KiB per header line and a Negotiate header carries a Kerberos ticket of
/// up to 48 KiB (Windows MaxTokenSize) in base64: 64 KiB holds every real header block.
pub const DEFAULT_HTTP_HEADER: usize = 64 * 1024;
/// Clients pipeline a handful of commands (SMTP PIPELINING, IMAP tags, HTTP/1.1); 256
/// unanswered ones is a flood, not a mail client.
pub const DEFAULT_TRANSACTIONS: usize = 256;
/// A full TLS 1.2 handshake takes 4-8 records per direction, a long certificate chain
/// split into small records a few dozen; 256 before encryption is no real client.
pub const DEFAULT_TLS_HANDSHAKE_RECORDS: u64 = 256;

/// One cap, for `dpaudit caps`, the README and the coverage report.
#[derive(Clone, Copy, Debug)]
pub struct CapInfo {
    /// Name used in the coverage report's `caps_hit`.
    pub name: &'static str,
    /// Command-line flag that overrides it (on `audit` and `flows`).
    pub flag: &'static str,
    pub unit: &'static str,
    pub default: u64,
    pub why: &'static str,
    /// What a run reports when the cap is reached.
    pub when_hit: &'static str,
}

/// Every cap, in the order the coverage report lists them.
pub const CAPS: &[CapInfo] = &[
    CapInfo {
        name: "live-flows",
        flag: "--max-flows",
        unit: "flows",
        default: crate::flow::table::DEFAULT_MAX_LIVE as u64,
        why: "flows open at once; a SYN flood opens one per packet. Past it the longest-idle flow is closed early (end reason `evicted`).",
        when_hit: "each eviction",
    },
    CapInfo {
        name: "remembered-flows",
        flag: "--max-remembered",
        unit: "flows",
        default: crate::flow::table::DEFAULT_MAX_REMEMBERED as u64,
        why: "ended conversations kept so that a late packet keeps its Wireshark stream index; past it the oldest is forgotten and later indices may differ from Wireshark's.",
        when_hit: "each conversation forgotten",
    },
    CapInfo {
        name: "ooo-segments",
        flag: "--max-ooo-segments",
        unit: "segments per direction",
        default: crate::flow::reassembly::DEFAULT_MAX_OOO_SEGMENTS as u64,
        why: "out-of-order TCP segments held while a missing one is awaited (a 64 KiB window of 1 KiB segments); past it the hole becomes a reassembly gap.",
        when_hit: "each gap declared early (ooo-segments and ooo-bytes together)",
    },
    CapInfo {
        name: "ooo-bytes",
        flag: "--max-ooo-bytes",
        unit: "bytes per direction",
        default: crate::flow::reassembly::DEFAULT_MAX_OOO_BYTES as u64,
        why: "out-of-order TCP bytes held per direction (four times the largest unscaled window).",
        when_hit: "counted with ooo-segments",
    },
    CapInfo {
        name: "fragments",
        flag: "--max-fragment-datagrams",
        unit: "datagrams",
        default: crate::decode::DEFAULT_MAX_DATAGRAMS as u64,
        why: "IP datagrams being reassembled at once (a fragment storm opens one per fragment); the oldest is dropped past it. Bytes held over all of them are capped by --max-fragment-bytes.",
        when_hit: "each datagram dropped for a cap (datagrams, bytes, or fragments per datagram)",
    },
    CapInfo {
        name: "fragment-bytes",
        flag: "--max-fragment-bytes",
        unit: "bytes",
        default: crate::decode::DEFAULT_MAX_BYTES as u64,
        why: "bytes held over all IP datagrams in reassembly.",
        when_hit: "counted with fragments",
    },
    CapInfo {
        name: "tls-handshake-records",
        flag: "--max-tls-records",
        unit: "records per direction",
        default: DEFAULT_TLS_HANDSHAKE_RECORDS,
        why: "TLS records read before encryption starts; a peer sending endless tiny handshake records is not a client.",
        when_hit: "each flow whose TLS parser stopped (anomaly tls.too-many-records)",
    },
    CapInfo {
        name: "http-header",
        flag: "--max-http-header",
        unit: "bytes",
        default: DEFAULT_HTTP_HEADER as u64,
        why: "HTTP header block per message (IIS takes 16 KiB a header; Negotiate tickets reach 48 KiB of base64).",
        when_hit: "each flow whose HTTP parser stopped (anomalies http.header-too-large, http.buffer-full)",
    },
    CapInfo {
        name: "transactions",
        flag: "--max-transactions",
        unit: "requests per flow",
        default: DEFAULT_TRANSACTIONS as u64,
        why: "requests or commands awaiting their answer (SMTP, IMAP, POP3, HTTP, SMB); pipelining clients send a few.",
        when_hit: "each flow that passed it (anomalies *.too-many-pending, smb/dcerpc.state-over-cap)",
    },
    CapInfo {
        name: "audit-flows",
        flag: "--max-audit-flows",
        unit: "flows (audit only)",
        default: crate::report::audit::DEFAULT_MAX_AUDIT_FLOWS as u64,
        why: "flow records an audit keeps to infer roles over the whole capture before judging any flow: past `--spill-budget` they go to a temporary file (about 0.5 KB each, and as much again for findings), so this bounds disk, not memory; `flows` streams and keeps none.",
        when_hit: "each flow past it: counted, verdict unknown, not judged",
    },
    CapInfo {
        name: "capture-record",
        flag: "--max-record",
        unit: "bytes",
        default: MAX_CAPLEN as u64,
        why: "captured length accepted for one packet record (the largest link MTU with headroom; a 4 GiB claim is a damaged or hostile file, never allocated).",
        when_hit: "the file's read stops with an error naming the offset (pcap cannot resynchronise); pcapng blocks past it are skipped and counted",
    },
];

/// Flow anomalies that say an analyzer cap was reached, by cap name.
pub const CAP_ANOMALIES: &[(&str, &str)] = &[
    ("tls.too-many-records", "tls-handshake-records"),
    ("http.header-too-large", "http-header"),
    ("http.buffer-full", "http-header"),
    ("http.too-many-pending", "transactions"),
    ("smtp.too-many-pending", "transactions"),
    ("imap.too-many-pending", "transactions"),
    ("pop3.too-many-pending", "transactions"),
    ("smb.state-over-cap", "transactions"),
    ("dcerpc.state-over-cap", "transactions"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::EngineConfig;

    /// The table's defaults are the ones the engine starts with, so `dpaudit caps` never
    /// shows a number the code does not use.
    #[test]
    fn table_defaults_match_the_engine() {
        let l = EngineConfig::default();
        let get = |name: &str| CAPS.iter().find(|c| c.name == name).unwrap().default;
        assert_eq!(get("live-flows"), l.flow.max_live as u64);
        assert_eq!(get("remembered-flows"), l.flow.max_remembered as u64);
        assert_eq!(get("ooo-segments"), l.reassembly.max_segments as u64);
        assert_eq!(get("ooo-bytes"), l.reassembly.max_bytes as u64);
        assert_eq!(get("fragments"), l.defrag.max_datagrams as u64);
        assert_eq!(get("fragment-bytes"), l.defrag.max_bytes as u64);
        assert_eq!(get("tls-handshake-records"), l.proto.tls_handshake_records);
        assert_eq!(get("http-header"), l.proto.http_header as u64);
        assert_eq!(get("transactions"), l.proto.transactions as u64);
        assert_eq!(get("capture-record"), u64::from(l.max_record));
    }

    #[test]
    fn every_cap_anomaly_names_a_cap() {
        for (kind, cap) in CAP_ANOMALIES {
            assert!(CAPS.iter().any(|c| c.name == *cap), "{kind} -> {cap}");
        }
        let mut names: Vec<_> = CAPS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CAPS.len());
    }
}
