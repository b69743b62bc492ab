//! The flow stage: decoded packets become bidirectional flows.
//!
//! ```text
//! reader thread:  Frame -> decode::Decoder -> table::Table (keys, stream identity,
//!                 timeouts, caps) -> per-shard batches (payload bytes left out for
//!                 flows whose shard said it only counts them)
//! shard workers:  shard::Shard (TCP reassembly, protocol probe, analyzers) -> Flow
//! writer thread:  finished flows back in close order -> the sink
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
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

pub use pipeline::{analyze, collect_file, sort_flows, EngineConfig, FileResult, FlowSink};
pub use reassembly::{ReassemblyLimits, ReassemblyStats, ReassemblyTotals};
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
    /// As [`Transport`]'s `Display` writes it, borrowed for the named transports.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            Transport::Tcp => "tcp".into(),
            Transport::Udp => "udp".into(),
            Transport::Esp => "esp".into(),
            Transport::Ip(_) => self.to_string().into(),
        }
    }
    pub fn has_ports(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Udp)
    }
}

/// `tcp`, `udp`, `esp`, or `ip-N` for IP protocol N.
impl std::fmt::Display for Transport {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Tcp => out.write_str("tcp"),
            Transport::Udp => out.write_str("udp"),
            Transport::Esp => out.write_str("esp"),
            Transport::Ip(p) => write!(out, "ip-{p}"),
        }
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
    pub reassembly: ReassemblyTotals,
    pub posture: Posture,
}

/// The display filter of a TCP or UDP flow with a stream index, `tcp.stream eq N` or
/// `udp.stream eq N`, kept as the index until it is written (evidence that holds many
/// flows' filters stores this instead of their text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamFilter {
    udp: bool,
    stream: u64,
}

impl StreamFilter {
    pub fn of(transport: Transport, stream: Option<u64>) -> Option<StreamFilter> {
        let udp = match transport {
            Transport::Tcp => false,
            Transport::Udp => true,
            _ => return None,
        };
        stream.map(|stream| StreamFilter { udp, stream })
    }
}

impl std::fmt::Display for StreamFilter {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = if self.udp { "udp" } else { "tcp" };
        write!(out, "{proto}.stream eq {}", self.stream)
    }
}

impl Flow {
    /// A Wireshark display filter that selects exactly this flow.
    pub fn display_filter(&self) -> String {
        self.filter_text().to_string()
    }

    /// [`Flow::display_filter`] for a report that writes it: the stream form (nearly
    /// every flow) is not made into a `String` first.
    pub fn filter_text(&self) -> FilterText {
        filter_for(
            self.transport,
            self.stream,
            self.client.ip(),
            self.server.ip(),
        )
    }

    /// A complete, closed flow between two `addr:port` endpoints with an empty
    /// posture, for tests that build flows by hand (they change what they need).
    #[cfg(test)]
    pub fn sample(transport: Transport, client: &str, server: &str) -> Flow {
        Flow {
            id: 0,
            transport,
            client: client.parse().unwrap_or_else(|e| panic!("{client}: {e}")),
            server: server.parse().unwrap_or_else(|e| panic!("{server}: {e}")),
            client_from: ClientFrom::Syn,
            conversation_frame: 1,
            stream: Some(0),
            resumed: false,
            first_frame: 1,
            last_frame: 4,
            first_ts_ns: 0,
            last_ts_ns: 0,
            frames: [2, 2],
            bytes: [200, 200],
            payload: [100, 100],
            syn_seen: true,
            syn_ack_seen: true,
            fin_seen: [true, true],
            rst_seen: false,
            end: EndReason::Closed,
            truncated_frames: 0,
            icmp_errors: 0,
            ah_seen: false,
            tunneled: false,
            reassembly: Default::default(),
            posture: Posture::default(),
        }
    }

    pub fn total_frames(&self) -> u64 {
        self.frames[0] + self.frames[1]
    }
    pub fn total_bytes(&self) -> u64 {
        self.bytes[0] + self.bytes[1]
    }
}

/// The Wireshark display filter of a flow of `transport` between `client` and
/// `server`: its stream index when it has one, else its transport and addresses.
pub fn filter_for(
    transport: Transport,
    stream: Option<u64>,
    client: IpAddr,
    server: IpAddr,
) -> FilterText {
    if let Some(f) = StreamFilter::of(transport, stream) {
        return FilterText::Stream(f);
    }
    let fam = if client.is_ipv4() { "ip" } else { "ipv6" };
    let proto = match transport {
        Transport::Esp => "esp".to_string(),
        // Wireshark names the next-protocol field ip.proto and ipv6.nxt.
        Transport::Ip(p) if fam == "ip" => format!("ip.proto == {p}"),
        Transport::Ip(p) => format!("ipv6.nxt == {p}"),
        Transport::Tcp => "tcp".to_string(),
        Transport::Udp => "udp".to_string(),
    };
    FilterText::Text(format!(
        "{proto} && {fam}.addr == {client} && {fam}.addr == {server}"
    ))
}

/// Address and port as Wireshark users write them: `10.0.0.1:25`, `[2001:db8::1]:443`.
pub fn endpoint(sa: &SocketAddr, with_port: bool) -> String {
    // Room for any IPv4 endpoint and most IPv6 ones: written without regrowing.
    let mut s = String::with_capacity(48);
    let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{}", Endpoint(*sa, with_port)));
    s
}

/// An address alone, shown as [`IpAddr`] shows it (faster for IPv4).
pub fn host(ip: IpAddr) -> Endpoint {
    Endpoint(SocketAddr::new(ip, 0), false)
}

/// [`endpoint`]'s text, written when shown.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint(pub SocketAddr, pub bool);

impl std::fmt::Display for Endpoint {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Endpoint(sa, with_port) = self;
        match (sa.ip(), with_port) {
            // IPv4 is most of every report: its text is put together here, in one piece,
            // not by the formatter octet by octet (a fifth of the cost of writing a flow).
            (IpAddr::V4(ip), with_port) => {
                let mut text = ShortText::default();
                for (i, octet) in ip.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.write_str(".")?;
                    }
                    text.decimal(u32::from(octet))?;
                }
                if *with_port {
                    text.write_str(":")?;
                    text.decimal(u32::from(sa.port()))?;
                }
                out.write_str(text.as_str())
            }
            (ip, false) => write!(out, "{ip}"),
            (IpAddr::V6(ip), true) => write!(out, "[{ip}]:{}", sa.port()),
        }
    }
}

/// Up to 64 bytes of text on the stack; writing more fails (the caller then takes the
/// formatter's slower way). Holds an IPv4 endpoint (`255.255.255.255:65535`) and the
/// short values reports write (filters, hex numbers).
pub struct ShortText {
    bytes: [u8; 64],
    len: usize,
}

impl Default for ShortText {
    fn default() -> Self {
        ShortText {
            bytes: [0; 64],
            len: 0,
        }
    }
}

impl ShortText {
    pub fn as_str(&self) -> &str {
        // Only whole `str`s are copied in, so the bytes are UTF-8.
        std::str::from_utf8(self.bytes.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }

    /// `v` in decimal, without leading zeros.
    pub fn decimal(&mut self, v: u32) -> std::fmt::Result {
        let mut digits = [0u8; 10];
        let mut start = digits.len();
        let mut rest = v;
        while let Some(slot) = start.checked_sub(1).and_then(|i| digits.get_mut(i)) {
            *slot = b'0' + (rest % 10) as u8;
            start -= 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.push(digits.get(start..).unwrap_or_default())
    }

    /// Append bytes that are UTF-8 on their own (ASCII digits, whole `str`s).
    fn push(&mut self, piece: &[u8]) -> std::fmt::Result {
        let end = self.len + piece.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(piece);
        self.len = end;
        Ok(())
    }
}

impl AsRef<str> for ShortText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Write for ShortText {
    fn write_str(&mut self, piece: &str) -> std::fmt::Result {
        self.push(piece.as_bytes())
    }
}

/// A flow's display filter as [`Flow::filter_text`] gives it.
#[derive(Clone, Debug)]
pub enum FilterText {
    Stream(StreamFilter),
    Text(String),
}

impl std::fmt::Display for FilterText {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterText::Stream(s) => s.fmt(out),
            FilterText::Text(t) => out.write_str(t),
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod filter_tests {
    use super::*;

    #[test]
    fn display_filters_paste_into_wireshark() {
        let mut f = Flow::sample(Transport::Tcp, "10.2.0.1:50000", "10.1.0.20:443");
        f.stream = Some(12);
        assert_eq!(f.display_filter(), "tcp.stream eq 12");
        f.transport = Transport::Udp;
        assert_eq!(f.display_filter(), "udp.stream eq 12");
        let mut esp = Flow::sample(Transport::Esp, "10.1.0.30:0", "10.1.0.31:0");
        esp.stream = None;
        assert_eq!(
            esp.display_filter(),
            "esp && ip.addr == 10.1.0.30 && ip.addr == 10.1.0.31"
        );
        let mut gre = Flow::sample(Transport::Ip(47), "[2001:db8::1]:0", "[2001:db8::2]:0");
        gre.stream = None;
        assert_eq!(
            gre.display_filter(),
            "ipv6.nxt == 47 && ipv6.addr == 2001:db8::1 && ipv6.addr == 2001:db8::2"
        );
    }
}
