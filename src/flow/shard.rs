//! A shard owns the heavy state of its flows: TCP reassembly per direction, the protocol
//! probe, and the analyzer chosen for each flow. It sees only messages about its own
//! flows, in capture order, and never looks at another flow.

use super::reassembly::{Piece, Reassembler, ReassemblyLimits, ReassemblyStats};
use super::table::Open;
use super::{EndReason, Flow, Transport};
use crate::decode::{ACK, FIN, RST, SYN};
use crate::limits::ProtoLimits;
use crate::model::{Direction, Encryption, Posture};
use crate::proto::api::{Analyzer, Ctx, Next, Probe, Registration};
use crate::proto::REGISTRY;

/// Stream prefix per direction that probes look at.
pub const PROBE_PREFIX: usize = 2048;
/// Bytes (both directions) kept for replay while no analyzer has claimed the flow; past
/// it the flow stays unrecognised (protocol unknown).
pub const PROBE_REPLAY_MAX: usize = 16 * 1024;
/// UDP datagrams probed before a flow is left unrecognised.
pub const PROBE_MAX_DATAGRAMS: u32 = 8;

/// What kind of packet a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Udp,
    Esp,
    Other,
    /// A header quoted by an ICMP error about this flow.
    IcmpError,
}

/// `PacketMsg::start` of a packet sent without its payload bytes: only its length
/// matters to the shard (the flow's payload is only counted).
pub const NO_BYTES: u32 = u32::MAX;

/// Stands for the bytes of a packet sent without them: the shard reads lengths only.
static ZEROS: [u8; MAX_UNSENT] = [0; MAX_UNSENT];

/// The longest payload that may be sent without its bytes.
pub const MAX_UNSENT: usize = 1 << 16;

/// One packet for a shard; its payload is `data[start..start + len]` of the batch, or
/// `len` bytes that were not sent when `start` is [`NO_BYTES`].
#[derive(Clone, Copy, Debug)]
pub struct PacketMsg {
    pub flow_id: u64,
    /// The flow's slot in the table: the shard's index of its flows.
    pub slot: u32,
    pub dir: Direction,
    pub frame: u64,
    pub ts_ns: i64,
    pub wire_len: u32,
    pub kind: Kind,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub spi: Option<u32>,
    pub start: u32,
    pub len: u32,
    pub truncated: bool,
    pub ah: bool,
    pub tunneled: bool,
    /// The packet came from IP fragments whose overlaps disagreed.
    pub frag_conflict: bool,
}

#[derive(Debug)]
pub enum Msg {
    Open(Box<Open>),
    Packet(PacketMsg),
    Close {
        flow_id: u64,
        slot: u32,
        reason: EndReason,
        seq: u64,
    },
}

struct Chunk {
    dir: Direction,
    frame: u64,
    ts_ns: i64,
    data: Vec<u8>,
}

#[derive(Default)]
struct Probing {
    chunks: Vec<Chunk>,
    buffered: usize,
    prefix: [Vec<u8>; 2],
    /// Every probe said "no" to this direction's prefix.
    rejected: [bool; 2],
    datagrams: u32,
}

enum App {
    /// Boxed: most of a flow's life is spent past the probe.
    Probing(Box<Probing>),
    Active(Box<dyn Analyzer>),
    /// Nothing more to parse: encrypted, finished, or never recognised. Bytes are counted.
    Passive,
    /// UDP 4500: IPsec NAT traversal (ESP in UDP, RFC 3948).
    NatT,
}

struct State {
    flow: Flow,
    /// TCP only, and only while analysis goes on (freed when it ends).
    reasm: Option<Box<[Reassembler; 2]>>,
    app: App,
    /// The analyzer was finished (both FINs or a RST): later packets are only counted.
    analysis_done: bool,
    /// The reassemblers no longer keep bytes (nobody reads them).
    light: bool,
}

/// Per-shard configuration.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardConfig {
    pub reassembly: ReassemblyLimits,
    pub proto: ProtoLimits,
}

pub struct Shard {
    cfg: ShardConfig,
    /// Indexed by the table's slot number (unique among live flows, reused after a
    /// close): no hashing per packet. Boxed: most slots of a shard stay empty (the other
    /// shards' flows), and a state is about half a kilobyte.
    flows: Vec<Option<Box<State>>>,
    /// Finished records with their close sequence number, in close order.
    pub done: Vec<(u64, Flow)>,
    /// TCP flows (slot, flow id) whose payload became only counted: the reader may stop
    /// sending their bytes.
    pub quiet: Vec<(u32, u64)>,
}

impl Shard {
    pub fn new(cfg: ShardConfig) -> Shard {
        Shard {
            cfg,
            flows: Vec::new(),
            done: Vec::new(),
            quiet: Vec::new(),
        }
    }

    pub fn handle(&mut self, msg: &Msg, data: &[u8]) {
        match msg {
            Msg::Open(o) => self.open(o),
            Msg::Packet(p) => {
                let payload = if p.start == NO_BYTES {
                    ZEROS.get(..p.len as usize).unwrap_or(&ZEROS)
                } else {
                    usize::try_from(p.start)
                        .ok()
                        .zip(usize::try_from(p.len).ok())
                        .and_then(|(s, l)| data.get(s..s.checked_add(l)?))
                        .unwrap_or(&[])
                };
                if let Some(st) = state_at(&mut self.flows, p.slot, p.flow_id) {
                    let was_light = st.light;
                    st.packet(p, payload, &self.cfg);
                    if st.light && !was_light && p.kind == Kind::Tcp {
                        self.quiet.push((p.slot, p.flow_id));
                    }
                }
            }
            Msg::Close {
                flow_id,
                slot,
                reason,
                seq,
            } => {
                let entry = self.flows.get_mut(*slot as usize);
                if let Some(st) = entry.and_then(|e| e.take_if(|st| st.flow.id == *flow_id)) {
                    self.done.push((*seq, st.finish(*reason, &self.cfg.proto)));
                }
            }
        }
    }

    /// Flows the table never closed: none when the table works, but never lost.
    pub fn leftovers(&mut self) -> Vec<Flow> {
        let mut rest: Vec<Box<State>> = self.flows.drain(..).flatten().collect();
        rest.sort_unstable_by_key(|st| st.flow.id);
        rest.into_iter()
            .map(|st| st.finish(EndReason::CaptureEnd, &self.cfg.proto))
            .collect()
    }

    fn open(&mut self, o: &Open) {
        let mut posture = Posture::default();
        let app = match o.transport {
            Transport::Esp => {
                posture.protocol = Some("esp");
                posture.detected_by = Some("handshake");
                App::Passive
            }
            Transport::Udp if o.server.port() == 4500 || o.client.port() == 4500 => {
                posture.protocol = Some("ipsec-nat-t");
                posture.detected_by = Some("port");
                App::NatT
            }
            Transport::Udp if o.server.port() == 500 && o.client.port() == 500 => {
                posture.protocol = Some("ike");
                posture.detected_by = Some("port");
                App::Passive
            }
            Transport::Tcp | Transport::Udp => App::Probing(Box::default()),
            _ => App::Passive,
        };
        let flow = Flow {
            id: o.flow_id,
            transport: o.transport,
            client: o.client,
            server: o.server,
            client_from: o.client_from,
            conversation_frame: o.conversation_frame,
            stream: o.stream,
            resumed: o.resumed,
            first_frame: 0,
            last_frame: 0,
            first_ts_ns: 0,
            last_ts_ns: 0,
            frames: [0; 2],
            bytes: [0; 2],
            payload: [0; 2],
            syn_seen: false,
            syn_ack_seen: false,
            fin_seen: [false; 2],
            rst_seen: false,
            end: EndReason::CaptureEnd,
            truncated_frames: 0,
            icmp_errors: 0,
            ah_seen: false,
            tunneled: false,
            reassembly: Default::default(),
            posture,
        };
        let st = Box::new(State {
            flow,
            reasm: (o.transport == Transport::Tcp)
                .then(|| Box::new([Reassembler::new(), Reassembler::new()])),
            app,
            analysis_done: false,
            light: false,
        });
        let slot = o.slot as usize;
        if self.flows.len() <= slot {
            self.flows.resize_with(slot + 1, || None);
        }
        if let Some(old) = self.flows[slot].replace(st) {
            // The table closes a slot's flow before reusing the slot, so this cannot
            // happen; if it did, the record is written last rather than lost.
            self.done
                .push((u64::MAX, old.finish(EndReason::CaptureEnd, &self.cfg.proto)));
        }
    }
}

/// The live flow in `slot`, if it is flow `flow_id`.
fn state_at(flows: &mut [Option<Box<State>>], slot: u32, flow_id: u64) -> Option<&mut State> {
    flows
        .get_mut(slot as usize)?
        .as_deref_mut()
        .filter(|st| st.flow.id == flow_id)
}

impl State {
    fn packet(&mut self, p: &PacketMsg, payload: &[u8], cfg: &ShardConfig) {
        let f = &mut self.flow;
        let d = p.dir.index();
        if f.first_frame == 0 {
            f.first_frame = p.frame;
            f.first_ts_ns = p.ts_ns;
        }
        f.last_frame = p.frame;
        f.last_ts_ns = p.ts_ns;
        f.frames[d] += 1;
        f.bytes[d] += u64::from(p.wire_len);
        f.truncated_frames += u64::from(p.truncated);
        f.tunneled |= p.tunneled;
        if p.frag_conflict {
            f.posture.anomaly(
                p.frame,
                "ip.fragment-conflict",
                "overlapping IP fragments carried different bytes; the first copy was kept",
            );
        }
        if p.ah && !f.ah_seen {
            f.ah_seen = true;
            f.posture.fact("ipsec.ah", "seen");
        }
        match p.kind {
            Kind::IcmpError => f.icmp_errors += 1,
            Kind::Esp => {
                f.posture.set_encryption(Encryption::Ipsec, p.frame);
                if let Some(spi) = p.spi {
                    f.posture.fact("esp.spi", format!("0x{spi:08x}"));
                }
            }
            Kind::Other => {}
            Kind::Udp => {
                f.payload[d] += payload.len() as u64;
                self.datagram(p, payload, &cfg.proto);
            }
            Kind::Tcp => self.segment(p, payload, cfg),
        }
    }

    fn segment(&mut self, p: &PacketMsg, payload: &[u8], cfg: &ShardConfig) {
        let dir = p.dir;
        let d = dir.index();
        if p.flags & SYN != 0 {
            if p.flags & ACK == 0 {
                if dir == Direction::ToServer {
                    self.flow.syn_seen = true;
                }
            } else if dir == Direction::ToClient {
                self.flow.syn_ack_seen = true;
            }
            if let Some(r) = self.reasm.as_deref_mut() {
                r[d].syn(p.seq);
            }
        }
        if p.flags & RST != 0 {
            self.flow.rst_seen = true;
        }
        if self.analysis_done {
            // Late packets after the close: counted by `packet`, nothing to analyse.
            if p.flags & FIN != 0 {
                self.flow.fin_seen[d] = true;
            }
            return;
        }
        let ctx = Fed {
            frame: p.frame,
            ts_ns: p.ts_ns,
            limits: &cfg.proto,
        };
        // The acknowledgement speaks of the other direction: bytes it covers that the
        // capture never showed are a gap there.
        let State {
            flow, reasm, app, ..
        } = self;
        let data_seq = p.seq.wrapping_add(u32::from(p.flags & SYN != 0));
        if let Some(reasm) = reasm.as_deref_mut() {
            if p.flags & ACK != 0 && p.flags & RST == 0 {
                let other = dir.flip();
                reasm[other.index()].acked(p.ack, &mut |pc| deliver(flow, app, other, pc, ctx));
            }
            if !payload.is_empty() {
                reasm[d].segment(data_seq, payload, &cfg.reassembly, &mut |pc| {
                    deliver(flow, app, dir, pc, ctx)
                });
            }
            if p.flags & FIN != 0 {
                reasm[d].fin(data_seq.wrapping_add(payload.len() as u32));
            }
        }
        if p.flags & FIN != 0 {
            self.flow.fin_seen[d] = true;
        }
        if !self.analysis_done && (self.flow.rst_seen || self.flow.fin_seen == [true, true]) {
            // The conversation is over: finish the analysis now and free its buffers,
            // keeping only the counters until the table closes the record.
            self.end_analysis(&cfg.proto);
        } else if !self.light && matches!(self.app, App::Passive) {
            self.light = true;
            if let Some(r) = self.reasm.as_deref_mut() {
                r[0].set_light();
                r[1].set_light();
            }
        }
    }

    fn datagram(&mut self, p: &PacketMsg, payload: &[u8], limits: &ProtoLimits) {
        if matches!(self.app, App::NatT) {
            match payload {
                [0xff] => self.flow.posture.fact("ipsec.nat-t", "keepalive"),
                [0, 0, 0, 0, ..] => self.flow.posture.fact("ipsec.nat-t", "ike"),
                [] => {}
                _ => self.flow.posture.set_encryption(Encryption::Ipsec, p.frame),
            }
            return;
        }
        let at = Fed {
            frame: p.frame,
            ts_ns: p.ts_ns,
            limits,
        };
        feed(&mut self.flow, &mut self.app, p.dir, payload, at);
    }

    /// Flush what reassembly holds, give an unsure probe its port-based choice, finish
    /// the analyzer, and drop the heavy state.
    fn end_analysis(&mut self, limits: &ProtoLimits) {
        if self.analysis_done {
            return;
        }
        self.analysis_done = true;
        let at = Fed {
            frame: self.flow.last_frame,
            ts_ns: self.flow.last_ts_ns,
            limits,
        };
        for dir in [Direction::ToServer, Direction::ToClient] {
            let State {
                flow, reasm, app, ..
            } = &mut *self;
            if let Some(r) = reasm.as_deref_mut() {
                r[dir.index()].finish(&mut |pc| deliver(flow, app, dir, pc, at));
            }
        }
        if let App::Probing(pr) = &self.app {
            // Not enough bytes for a "certain": fall back to the port when a probe is unsure.
            let (cport, sport) = (self.flow.client.port(), self.flow.server.port());
            let tcp = self.flow.transport == Transport::Tcp;
            let mut pick = None;
            for dir in [Direction::ToServer, Direction::ToClient] {
                let pre = if tcp {
                    pr.prefix[dir.index()].as_slice()
                } else {
                    pr.chunks
                        .iter()
                        .find(|c| c.dir == dir)
                        .map(|c| c.data.as_slice())
                        .unwrap_or(&[])
                };
                if pre.is_empty() {
                    continue;
                }
                if let (Some(c), _) = choose(tcp, dir, pre, cport, sport) {
                    pick = Some(c);
                    break;
                }
            }
            if let Some((reg, by)) = pick {
                start(&mut self.flow, &mut self.app, reg, by, limits, None);
            }
        }
        if let App::Active(a) = &mut self.app {
            let mut cx = ctx(&mut self.flow, at);
            a.finish(&mut cx);
        }
        self.app = App::Passive;
        self.stats_snapshot();
        // Later packets are only counted: the reassemblers are no longer needed.
        self.reasm = None;
        self.light = true;
    }

    fn stats_snapshot(&mut self) {
        let Some(reasm) = self.reasm.as_deref() else {
            return;
        };
        for (i, r) in reasm.iter().enumerate() {
            if r.stats == ReassemblyStats::default() {
                continue;
            }
            let acc = &mut self.flow.reassembly[i];
            acc.retransmitted_bytes += r.stats.retransmitted_bytes;
            acc.conflicting_overlaps += r.stats.conflicting_overlaps;
            acc.out_of_order += r.stats.out_of_order;
            acc.gaps += r.stats.gaps;
            acc.gap_bytes += r.stats.gap_bytes;
            acc.cap_hits += r.stats.cap_hits;
            acc.implausible += r.stats.implausible;
        }
    }

    fn finish(mut self, reason: EndReason, limits: &ProtoLimits) -> Flow {
        self.end_analysis(limits);
        let f = &mut self.flow;
        let ended = f.rst_seen || f.fin_seen == [true, true];
        f.end = if reason == EndReason::CaptureEnd && ended {
            EndReason::Closed
        } else {
            reason
        };
        if f.transport == Transport::Tcp {
            if !f.syn_seen && !f.syn_ack_seen && f.payload != [0, 0] {
                f.posture.anomaly(
                    f.first_frame,
                    "tcp.handshake-not-seen",
                    "the connection began before the capture: its start is unknown",
                );
            }
            let hits: u64 = f.reassembly.iter().map(|s| s.cap_hits).sum();
            if hits > 0 {
                f.posture.anomaly(
                    f.last_frame,
                    "tcp.reassembly-cap",
                    format!("out-of-order buffer full {hits} times; gaps declared early"),
                );
            }
            let conflicts: u64 = f.reassembly.iter().map(|s| s.conflicting_overlaps).sum();
            if conflicts > 0 {
                f.posture.anomaly(
                    f.last_frame,
                    "tcp.overlap-conflict",
                    format!(
                        "{conflicts} retransmissions carried different bytes; the first copy was kept"
                    ),
                );
            }
        }
        if f.truncated_frames > 0 {
            f.posture.anomaly(
                f.first_frame,
                "frame.truncated",
                format!(
                    "{} frames cut short by the capture's snapshot length",
                    f.truncated_frames
                ),
            );
        }
        self.flow
    }
}

fn feed(flow: &mut Flow, app: &mut App, dir: Direction, bytes: &[u8], at: Fed<'_>) {
    let (cport, sport) = (flow.client.port(), flow.server.port());
    let tcp = flow.transport == Transport::Tcp;
    match app {
        App::Passive | App::NatT => {}
        App::Active(a) => {
            let mut cx = ctx(flow, at);
            if a.data(dir, bytes, &mut cx) == Next::Done {
                // Nothing more to learn: the analyzer wraps up now (pending
                // authentication exchanges are recorded), then only bytes are counted.
                a.finish(&mut cx);
                *app = App::Passive;
            }
        }
        App::Probing(pr) => {
            if pr.buffered + bytes.len() > PROBE_REPLAY_MAX {
                flow.posture
                    .fact("probe", format!("undecided after {} bytes", pr.buffered));
                *app = App::Passive;
                return;
            }
            pr.buffered += bytes.len();
            let choice = if tcp {
                let pre = &mut pr.prefix[dir.index()];
                let room = PROBE_PREFIX.saturating_sub(pre.len());
                pre.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or(&[]));
                let (c, all_no) = choose(true, dir, pre, cport, sport);
                pr.rejected[dir.index()] = all_no;
                c
            } else {
                pr.datagrams += 1;
                let (c, all_no) = choose(false, dir, bytes, cport, sport);
                pr.rejected[dir.index()] = all_no;
                c
            };
            match choice {
                // The bytes in hand are replayed last, without a copy.
                Some((reg, by)) => start(flow, app, reg, by, at.limits, Some((dir, bytes, at))),
                None => {
                    pr.chunks.push(Chunk {
                        dir,
                        frame: at.frame,
                        ts_ns: at.ts_ns,
                        data: bytes.to_vec(),
                    });
                    let tcp_gave_up = tcp && pr.rejected == [true, true];
                    let udp_gave_up = !tcp && pr.datagrams >= PROBE_MAX_DATAGRAMS;
                    if tcp_gave_up || udp_gave_up {
                        *app = App::Passive;
                    }
                }
            }
        }
    }
}

/// An analyzer claimed the flow: replay what the probe held, in arrival order, then
/// the bytes that decided it (`last`, not held).
fn start(
    flow: &mut Flow,
    app: &mut App,
    reg: &'static Registration,
    by: &'static str,
    limits: &ProtoLimits,
    last: Option<(Direction, &[u8], Fed<'_>)>,
) {
    let App::Probing(pr) = std::mem::replace(app, App::Passive) else {
        return;
    };
    flow.posture.protocol = Some(reg.name);
    flow.posture.detected_by = Some(by);
    let mut a = (reg.make)();
    let held = pr.chunks.iter().map(|c| {
        let fed = Fed {
            frame: c.frame,
            ts_ns: c.ts_ns,
            limits,
        };
        (c.dir, c.data.as_slice(), fed)
    });
    for (d, data, fed) in held.chain(last) {
        let mut cx = ctx(flow, fed);
        if a.data(d, data, &mut cx) == Next::Done {
            a.finish(&mut cx);
            return;
        }
    }
    *app = App::Active(a);
}

fn gap(flow: &mut Flow, app: &mut App, dir: Direction, len: u64, at: Fed<'_>) {
    match app {
        App::Active(a) => {
            let mut cx = ctx(flow, at);
            if a.gap(dir, len, &mut cx) == Next::Done {
                a.finish(&mut cx);
                *app = App::Passive;
            }
        }
        App::Probing(pr) => {
            // The start of this direction is lost; probe what follows the hole.
            pr.prefix[dir.index()].clear();
            pr.rejected[dir.index()] = false;
            flow.posture.anomaly(
                at.frame,
                "stream.gap",
                format!("{len} bytes missing before the protocol was recognised"),
            );
        }
        App::Passive | App::NatT => {}
    }
}

/// Hand one reassembled piece to the flow's analyzer.
fn deliver(flow: &mut Flow, app: &mut App, dir: Direction, piece: Piece<'_>, at: Fed<'_>) {
    match piece {
        Piece::Data(bytes) => {
            flow.payload[dir.index()] += bytes.len() as u64;
            feed(flow, app, dir, bytes, at);
        }
        Piece::Gap(len) => gap(flow, app, dir, len, at),
    }
}

/// The analyzer context for bytes delivered at `at`.
fn ctx<'a>(flow: &'a mut Flow, at: Fed<'a>) -> Ctx<'a> {
    Ctx {
        limits: at.limits,
        frame: at.frame,
        ts_ns: at.ts_ns,
        client_port: flow.client.port(),
        server_port: flow.server.port(),
        posture: &mut flow.posture,
    }
}

#[derive(Clone, Copy)]
struct Fed<'l> {
    frame: u64,
    ts_ns: i64,
    limits: &'l ProtoLimits,
}

/// Ask every analyzer of the transport about a prefix. A `Certain` wins at once (in
/// registry order); otherwise an `Unsure` on one of the analyzer's own server ports.
/// Also returns whether every probe said no.
fn choose(
    tcp: bool,
    dir: Direction,
    prefix: &[u8],
    cport: u16,
    sport: u16,
) -> (Option<(&'static Registration, &'static str)>, bool) {
    let mut by_port = None;
    let mut all_no = true;
    for reg in REGISTRY.iter().filter(|r| r.tcp == tcp) {
        match (reg.probe)(dir, prefix, cport, sport) {
            Probe::Certain => return (Some((reg, "handshake")), false),
            Probe::Unsure => {
                all_no = false;
                if by_port.is_none() && reg.ports.contains(&sport) {
                    by_port = Some((reg, "port"));
                }
            }
            Probe::No => {}
        }
    }
    (by_port, all_no)
}
