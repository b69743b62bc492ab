//! The flow stage: decoded packets become bidirectional flows.
//!
//! ```text
//! reader thread:  Frame -> decode::Decoder -> table::Table (keys, stream identity,
//!                 timeouts, caps) -> per-shard batches
//! shard workers:  shard::Shard (TCP reassembly, protocol probe, analyzers) -> Flow
//! end:            flows sorted by first frame; tcp.stream / udp.stream indices assigned
//! ```
//!
//! Every decision that depends on more than one flow (stream identity, timeouts, the
//! live-flow cap) is taken by the single [`table::Table`] in capture order, and each
//! flow's own analysis never looks at another flow, so the output does not depend on how
//! many shards ran. Stream indices follow Wireshark: a conversation is numbered by the
//! frame that created it, and a SYN (without ACK) whose sequence number differs from the
//! one already seen in its direction starts a new conversation on the same ports.

pub mod hash;
pub mod pipeline;
pub mod reassembly;
pub mod shard;
pub mod table;

use crate::model::Posture;
use std::net::{IpAddr, SocketAddr};

pub use pipeline::{analyze, collect_file, sort_flows, EngineConfig, FileResult, FlowSink};
pub use reassembly::{ReassemblyLimits, ReassemblyStats};
pub use table::{FlowLimits, TableStats};

/// The transport of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Tcp,
    Udp,
    /// IPsec ESP between two hosts (keyed by the address pair).
    Esp,
    /// Any other IP protocol, keyed by the address pair.
    Ip(u8),
}

impl Transport {
    pub fn name(self) -> String {
        match self {
            Transport::Tcp => "tcp".into(),
            Transport::Udp => "udp".into(),
            Transport::Esp => "esp".into(),
            Transport::Ip(p) => format!("ip-{p}"),
        }
    }
    pub fn has_ports(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Udp)
    }
}

/// How the client side of a flow was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientFrom {
    /// The sender of the SYN.
    Syn,
    /// The receiver of the SYN-ACK (the SYN itself was not captured).
    SynAck,
    /// Start not captured: the side on a well-known server port is the server.
    Ports,
    /// Start not captured and ports do not tell: the first packet's sender.
    FirstPacket,
}

impl ClientFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientFrom::Syn => "syn",
            ClientFrom::SynAck => "syn-ack",
            ClientFrom::Ports => "port-heuristic",
            ClientFrom::FirstPacket => "first-packet",
        }
    }
}

/// Why a flow record ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndReason {
    /// FIN from both sides or a RST, then idle.
    Closed,
    /// Idle longer than its timeout (capture time).
    Timeout,
    /// Pushed out by the live-flow cap.
    Evicted,
    /// A new SYN reused the ports: the next conversation began.
    PortReuse,
    /// Still open when the capture ended.
    CaptureEnd,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Closed => "closed",
            EndReason::Timeout => "timeout",
            EndReason::Evicted => "evicted",
            EndReason::PortReuse => "port-reuse",
            EndReason::CaptureEnd => "capture-end",
        }
    }
}

/// One flow as the later stages and the reports see it.
#[derive(Clone, Debug)]
pub struct Flow {
    /// Order of creation in the table (unique within a file).
    pub id: u64,
    pub transport: Transport,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub client_from: ClientFrom,
    /// Frame that created the Wireshark conversation this flow belongs to.
    pub conversation_frame: u64,
    /// Wireshark's `tcp.stream` / `udp.stream` index (set at the end of the file).
    pub stream: Option<u64>,
    /// This record continues a conversation whose earlier record ended by timeout or
    /// eviction (same stream index, analysis restarted mid-stream).
    pub resumed: bool,
    pub first_frame: u64,
    pub last_frame: u64,
    pub first_ts_ns: i64,
    pub last_ts_ns: i64,
    /// Frames and on-the-wire bytes (frame lengths, as Wireshark counts) per direction:
    /// index 0 client to server, 1 server to client.
    pub frames: [u64; 2],
    pub bytes: [u64; 2],
    /// Transport payload bytes handed to analyzers per direction (after reassembly).
    pub payload: [u64; 2],
    pub syn_seen: bool,
    pub syn_ack_seen: bool,
    pub fin_seen: [bool; 2],
    pub rst_seen: bool,
    pub end: EndReason,
    /// Frames cut short by the snapshot length.
    pub truncated_frames: u64,
    /// ICMP errors that quoted this flow's packets.
    pub icmp_errors: u64,
    /// Some packets were IPsec AH-protected (authenticated, not encrypted).
    pub ah_seen: bool,
    /// Some packets came through a tunnel (IP-in-IP, GRE, ERSPAN).
    pub tunneled: bool,
    pub reassembly: [ReassemblyStats; 2],
    pub posture: Posture,
}

impl Flow {
    pub fn total_frames(&self) -> u64 {
        self.frames[0] + self.frames[1]
    }
    pub fn total_bytes(&self) -> u64 {
        self.bytes[0] + self.bytes[1]
    }
}

/// Address and port as Wireshark users write them: `10.0.0.1:25`, `[2001:db8::1]:443`.
pub fn endpoint(sa: &SocketAddr, with_port: bool) -> String {
    match (sa.ip(), with_port) {
        (ip, false) => ip.to_string(),
        (IpAddr::V4(_), true) => sa.to_string(),
        (IpAddr::V6(ip), true) => format!("[{ip}]:{}", sa.port()),
    }
}

#[cfg(test)]
mod tests;
