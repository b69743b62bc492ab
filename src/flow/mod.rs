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

    /// `tcp.stream eq N` on the stack (at most 34 bytes).
    pub fn text(&self) -> ShortText {
        let mut t = ShortText::default();
        t.push_str(if self.udp {
            "udp.stream eq "
        } else {
            "tcp.stream eq "
        });
        t.push_str(itoa::Buffer::new().format(self.stream));
        t
    }
}

impl std::fmt::Display for StreamFilter {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        out.write_str(self.text().as_str())
    }
}

impl Flow {
    /// A Wireshark display filter that selects exactly this flow.
    pub fn display_filter(&self) -> String {
        match self.filter_text() {
            FilterText::Stream(t) => t.as_str().to_string(),
            FilterText::Text(t) => t,
        }
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
        return FilterText::Stream(f.text());
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
    Endpoint(*sa, with_port).text().as_str().to_string()
}

/// An address alone, shown as [`IpAddr`] shows it.
pub fn host(ip: IpAddr) -> Endpoint {
    Endpoint(SocketAddr::new(ip, 0), false)
}

/// [`endpoint`]'s text, written when shown.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint(pub SocketAddr, pub bool);

impl Endpoint {
    /// The text the standard library's `Display` gives the address (and, with the
    /// port, the socket address without scope), put together on the stack. Reports
    /// write several endpoints for each of a million flows; the formatter went through
    /// a call per octet or group and per digit (600 instructions an IPv4 endpoint,
    /// 3,000 an IPv6 one).
    pub fn text(&self) -> ShortText {
        let Endpoint(sa, with_port) = *self;
        let mut t = ShortText::default();
        // The longest text, `[ffff:...:ffff]:65535`, is 47 bytes: every push fits.
        match sa.ip() {
            IpAddr::V4(ip) => {
                ipv4_text(&mut t, ip);
                if with_port {
                    t.push_str(":");
                    t.push_str(itoa::Buffer::new().format(sa.port()));
                }
            }
            IpAddr::V6(ip) => {
                if with_port {
                    t.push_str("[");
                }
                ipv6_text(&mut t, ip);
                if with_port {
                    t.push_str("]:");
                    t.push_str(itoa::Buffer::new().format(sa.port()));
                }
            }
        }
        t
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        out.write_str(self.text().as_str())
    }
}

impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text().as_str())
    }
}

/// Every number from 0 to 255 in decimal, one after the other: an octet's text is a
/// slice of it (see [`octet`]).
const OCTETS: &str = concat!(
    "0123456789",
    "10111213141516171819202122232425262728293031323334353637383940414243444546474849",
    "50515253545556575859606162636465666768697071727374757677787980818283848586878889",
    "90919293949596979899",
    "100101102103104105106107108109110111112113114115116117118119120121122123124125",
    "126127128129130131132133134135136137138139140141142143144145146147148149150151",
    "152153154155156157158159160161162163164165166167168169170171172173174175176177",
    "178179180181182183184185186187188189190191192193194195196197198199200201202203",
    "204205206207208209210211212213214215216217218219220221222223224225226227228229",
    "230231232233234235236237238239240241242243244245246247248249250251252253254255",
);

/// The decimal text of an octet, without leading zeros.
fn octet(o: u8) -> &'static str {
    let o = usize::from(o);
    let (start, len) = match o {
        0..=9 => (o, 1),
        10..=99 => (10 + (o - 10) * 2, 2),
        _ => (190 + (o - 100) * 3, 3),
    };
    OCTETS.get(start..start + len).unwrap_or_default()
}

fn ipv4_text(t: &mut ShortText, ip: std::net::Ipv4Addr) {
    let [a, b, c, d] = ip.octets();
    for (i, o) in [a, b, c, d].into_iter().enumerate() {
        if i > 0 {
            t.push_str(".");
        }
        t.push_str(octet(o));
    }
}

/// IPv6 text as RFC 5952 recommends and the standard library writes it: groups in
/// lower-case hex without leading zeros, the first longest run of two or more zero
/// groups as `::`, and an IPv4-mapped address as `::ffff:a.b.c.d`.
fn ipv6_text(t: &mut ShortText, ip: std::net::Ipv6Addr) {
    if let Some(v4) = ip.to_ipv4_mapped() {
        t.push_str("::ffff:");
        ipv4_text(t, v4);
        return;
    }
    let groups = ip.segments();
    // The first longest run of zero groups: (start, length).
    let (mut best, mut run) = ((0, 0), (0, 0));
    for (i, g) in groups.iter().enumerate() {
        if *g == 0 {
            if run.1 == 0 {
                run.0 = i;
            }
            run.1 += 1;
            if run.1 > best.1 {
                best = run;
            }
        } else {
            run = (0, 0);
        }
    }
    let hex_groups = |t: &mut ShortText, part: &[u16]| {
        for (i, g) in part.iter().enumerate() {
            if i > 0 {
                t.push_str(":");
            }
            t.push_hex(*g, 1);
        }
    };
    if best.1 > 1 {
        hex_groups(t, groups.get(..best.0).unwrap_or_default());
        t.push_str("::");
        hex_groups(t, groups.get(best.0 + best.1..).unwrap_or_default());
    } else {
        hex_groups(t, &groups);
    }
}

/// Up to 64 bytes of text on the stack, for the short values reports write: any
/// endpoint (`[ffff:...:ffff]:65535`, 47 bytes), stream filters, numbers, hex. Its
/// writers are for texts known to fit; past 64 bytes `push_str` leaves a piece out and
/// `fmt::Write` reports an error. The text is held as a `str` (`arrayvec`'s), so
/// reading it back needs no UTF-8 check.
#[derive(Clone, Debug, Default)]
pub struct ShortText(arrayvec::ArrayString<64>);

impl ShortText {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Appends `piece` if it fits; a piece that does not fit is left out whole.
    pub fn push_str(&mut self, piece: &str) {
        let _ = self.0.try_push_str(piece);
    }

    /// `v` in lower-case hex, at least `digits` digits (1 to 4): `{:x}` with 1,
    /// `{:04x}` with 4.
    pub fn push_hex(&mut self, v: u16, digits: u32) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut shift = 4 * (digits.clamp(1, 4) - 1);
        while shift < 12 && v >> (shift + 4) != 0 {
            shift += 4;
        }
        loop {
            let d = DIGITS
                .get(usize::from((v >> shift) & 0xf))
                .copied()
                .unwrap_or(b'0');
            let _ = self.0.try_push(char::from(d));
            if shift == 0 {
                break;
            }
            shift -= 4;
        }
    }
}

impl AsRef<str> for ShortText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Write for ShortText {
    fn write_str(&mut self, piece: &str) -> std::fmt::Result {
        self.0.try_push_str(piece).map_err(|_| std::fmt::Error)
    }
}

/// A flow's display filter as [`Flow::filter_text`] gives it: the stream form (nearly
/// every flow) on the stack.
#[derive(Clone, Debug)]
pub enum FilterText {
    Stream(ShortText),
    Text(String),
}

impl AsRef<str> for FilterText {
    fn as_ref(&self) -> &str {
        match self {
            FilterText::Stream(t) => t.as_str(),
            FilterText::Text(t) => t,
        }
    }
}

impl std::fmt::Display for FilterText {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        out.write_str(self.as_ref())
    }
}

impl serde::Serialize for FilterText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_ref())
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
