//! The flow table: which flow a packet belongs to, which side is the client, where a
//! Wireshark conversation begins, and when a flow ends (close, timeout, cap).
//!
//! It runs on the reader thread, in capture order, so every decision that spans flows
//! is the same whatever the shard count. It holds only small fixed-size entries; the
//! heavy per-flow state (reassembly buffers, analyzers) lives in the shards.

use super::hash::FlowHash;
use super::{ClientFrom, EndReason, Transport};
use crate::decode::{ACK, FIN, RST, SYN};
use crate::model::Direction;
use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Caps and timeouts of the flow table; all times are capture time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowLimits {
    /// Flows open at once; past it the longest-idle flow is evicted (and counted).
    pub max_live: usize,
    /// Ended conversations remembered so a late packet keeps its Wireshark stream index.
    pub max_remembered: usize,
    pub tcp_idle_ns: i64,
    /// Idle time after both FINs or a RST before the record is closed (Zeek waits 5 s too).
    pub tcp_closed_ns: i64,
    pub udp_idle_ns: i64,
    pub other_idle_ns: i64,
    /// How long a connection that ended with FIN or RST is remembered for stragglers.
    /// Timed-out and evicted conversations are remembered until `max_remembered` pushes
    /// them out: an idle connection may wake up much later (Outlook's MAPI does).
    pub remember_closed_ns: i64,
}

const SEC: i64 = 1_000_000_000;

/// Stale entries a bookkeeping queue may hold beyond twice its live count before it is
/// compacted (amortised: each compaction is paid for by this many pushes at least).
const COMPACT_SLACK: usize = 4096;

/// Default live-flow cap (see [`crate::limits::CAPS`]).
pub const DEFAULT_MAX_LIVE: usize = 1 << 18;
/// Default number of ended conversations remembered.
pub const DEFAULT_MAX_REMEMBERED: usize = 1 << 18;

impl Default for FlowLimits {
    fn default() -> Self {
        FlowLimits {
            max_live: DEFAULT_MAX_LIVE,
            max_remembered: DEFAULT_MAX_REMEMBERED,
            tcp_idle_ns: 600 * SEC,
            tcp_closed_ns: 5 * SEC,
            udp_idle_ns: 60 * SEC,
            other_idle_ns: 600 * SEC,
            remember_closed_ns: 60 * SEC,
        }
    }
}

/// Counters the coverage report shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableStats {
    pub flows: u64,
    pub timed_out: u64,
    /// Flows pushed out by `max_live`.
    pub evicted: u64,
    /// New conversations on reused ports (SYN with a new sequence number).
    pub port_reuse: u64,
    /// Flow records that continued a conversation after a timeout or eviction.
    pub resumed: u64,
    /// Remembered conversations forgotten because of `max_remembered`: stream indices
    /// after this may differ from Wireshark's.
    pub forgotten: u64,
    pub peak_live: u64,
}

/// The symmetric flow key: the two endpoints in a fixed order, packed into 40 bytes
/// (addresses as two 64-bit words, see `Packed`) because the table keeps one per live
/// and per remembered conversation, hundreds of thousands at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    lo: Packed,
    hi: Packed,
    lo_port: u16,
    hi_port: u16,
    transport: Transport,
    v6: bool,
}

/// An address as a 128-bit big-endian number in two words, high word first (IPv4 in the
/// top 32 bits): words compare in the order the bytes would, without byte loads, and
/// hash without repacking.
type Packed = [u64; 2];

fn packed(a: &SocketAddr) -> Packed {
    match a.ip() {
        IpAddr::V4(v4) => [u64::from(v4.to_bits()) << 32, 0],
        IpAddr::V6(v6) => {
            let b = v6.to_bits();
            [(b >> 64) as u64, b as u64]
        }
    }
}

/// Five words per key instead of a field-by-field walk (the flow tables hash on every
/// packet).
impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let proto = match self.transport {
            Transport::Tcp => 6u64,
            Transport::Udp => 17,
            Transport::Esp => 50,
            Transport::Ip(p) => 0x100 | u64::from(p),
        };
        h.write_u64(
            proto
                | (u64::from(self.lo_port) << 16)
                | (u64::from(self.hi_port) << 32)
                | (u64::from(self.v6) << 48),
        );
        h.write_u64(self.lo[0]);
        h.write_u64(self.lo[1]);
        h.write_u64(self.hi[0]);
        h.write_u64(self.hi[1]);
    }
}

impl Key {
    pub fn new(transport: Transport, a: SocketAddr, b: SocketAddr) -> Key {
        Key::sided(transport, a, b).0
    }

    /// The key, and whether `a` is its lower endpoint (what a packet from `a` needs to
    /// know its direction, without packing `a` again).
    fn sided(transport: Transport, a: SocketAddr, b: SocketAddr) -> (Key, bool) {
        let (pa, pb) = (packed(&a), packed(&b));
        // The same order as (IpAddr, port) within one address family.
        let a_lo = (pa, a.port()) <= (pb, b.port());
        let ((lo, lo_port), (hi, hi_port)) = if a_lo {
            ((pa, a.port()), (pb, b.port()))
        } else {
            ((pb, b.port()), (pa, a.port()))
        };
        let key = Key {
            lo,
            hi,
            lo_port,
            hi_port,
            transport,
            v6: a.is_ipv6(),
        };
        (key, a_lo)
    }

    fn addr(&self, words: &Packed, port: u16) -> SocketAddr {
        let ip = if self.v6 {
            IpAddr::V6(Ipv6Addr::from_bits(
                (u128::from(words[0]) << 64) | u128::from(words[1]),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from_bits((words[0] >> 32) as u32))
        };
        SocketAddr::new(ip, port)
    }

    fn lo(&self) -> SocketAddr {
        self.addr(&self.lo, self.lo_port)
    }

    fn hi(&self) -> SocketAddr {
        self.addr(&self.hi, self.hi_port)
    }

    /// `a` is the lower endpoint of this key.
    fn is_lo(&self, a: &SocketAddr) -> bool {
        a.port() == self.lo_port && packed(a) == self.lo
    }

    /// A hash that is the same on every run and for both directions (FNV-1a).
    pub fn stable_hash(&self) -> u64 {
        struct Fnv(u64);
        impl Hasher for Fnv {
            fn finish(&self) -> u64 {
                self.0
            }
            fn write(&mut self, bytes: &[u8]) {
                for b in bytes {
                    self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
                }
            }
        }
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        self.hash(&mut h);
        h.finish()
    }
}

/// What the table needs to know of a packet.
#[derive(Clone, Copy, Debug)]
pub struct PacketView {
    pub transport: Transport,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// TCP sequence number and flags (0 for other transports).
    pub seq: u32,
    pub flags: u8,
    /// TCP payload length (a FIN's sequence number comes after the payload).
    pub len: u32,
    /// TCP acknowledgement number.
    pub ack: u32,
    /// A header quoted in an ICMP error: belongs to the flow but says nothing of its state.
    pub icmp_error: bool,
}

/// A new flow record for the shards.
#[derive(Clone, Debug)]
pub struct Open {
    pub flow_id: u64,
    /// The flow's slot in the table (see [`Placement::slot`]).
    pub slot: u32,
    pub transport: Transport,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub client_from: ClientFrom,
    pub conversation_frame: u64,
    /// Wireshark's tcp.stream / udp.stream index (conversations numbered in the order
    /// of the frames that created them); `None` for other transports.
    pub stream: Option<u64>,
    pub resumed: bool,
}

/// What the table decided; the pipeline forwards these to the shards in order.
#[derive(Clone, Debug)]
pub enum Event {
    Open(usize, Box<Open>),
    Close {
        shard: usize,
        flow_id: u64,
        slot: u32,
        reason: EndReason,
        /// Position in the order of closes (0, 1, 2...): the order records are written.
        seq: u64,
    },
}

/// Where a packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub shard: usize,
    pub flow_id: u64,
    /// The flow's slot in the table, unique among live flows: shards index by it.
    pub slot: u32,
    pub dir: Direction,
    /// The flow's shard still reads payload bytes (false once it said it only counts
    /// them: see [`Table::payload_unneeded`]).
    pub payload: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    TcpOpen,
    TcpClosed,
    Udp,
    Other,
}

impl Class {
    /// Every class, in the order of [`Class::index`].
    const ALL: [Class; 4] = [Class::TcpOpen, Class::TcpClosed, Class::Udp, Class::Other];

    fn index(self) -> usize {
        match self {
            Class::TcpOpen => 0,
            Class::TcpClosed => 1,
            Class::Udp => 2,
            Class::Other => 3,
        }
    }
}

/// Identity of a conversation, kept after its flow record ends.
#[derive(Clone, Copy, Debug)]
///
/// Packed without `Option`s (their tags cost 16 bytes here): every live flow and up to
/// `max_remembered` ended ones hold one.
struct Identity {
    conversation_frame: u64,
    /// [`NO_STREAM`] for transports without a stream index.
    stream: u64,
    /// First sequence number seen per direction (client, server), Wireshark's base_seq,
    /// valid where `base_set` says so.
    base_seq: [u32; 2],
    base_set: [bool; 2],
    /// The client is the key's lower endpoint.
    client_lo: bool,
    client_from: ClientFrom,
    /// The connection already ended with FIN or RST: a straggler's record is closed soon.
    ended: bool,
}

/// [`Identity::stream`] of a flow that has no stream index (not TCP or UDP).
const NO_STREAM: u64 = u64::MAX;

impl Identity {
    fn stream(&self) -> Option<u64> {
        (self.stream != NO_STREAM).then_some(self.stream)
    }

    fn base_seq(&self, dir: Direction) -> Option<u32> {
        let d = dir.index();
        self.base_set[d].then_some(self.base_seq[d])
    }

    fn client(&self, key: &Key) -> SocketAddr {
        if self.client_lo {
            key.lo()
        } else {
            key.hi()
        }
    }

    fn server(&self, key: &Key) -> SocketAddr {
        if self.client_lo {
            key.hi()
        } else {
            key.lo()
        }
    }

    /// The direction of a packet whose source is (or is not) the key's lower endpoint.
    fn direction(&self, src_lo: bool) -> Direction {
        if src_lo == self.client_lo {
            Direction::ToServer
        } else {
            Direction::ToClient
        }
    }
}

/// Marks a free slot of the live table (flow ids count up from 0).
const FREE_FLOW: u64 = u64::MAX;

struct Live {
    key: Key,
    id: Identity,
    /// [`FREE_FLOW`] while the slot is free.
    flow_id: u64,
    last_ts: i64,
    shard: u32,
    class: Class,
    /// Each direction sent a FIN (its sequence number in `fin_seq`).
    fin: [bool; 2],
    /// Sequence number of each direction's FIN, where `fin` is set.
    fin_seq: [u32; 2],
    /// The direction whose FIN came second; the other side's ACK of it ends the connection.
    last_fin: Option<Direction>,
    /// The shard still reads this flow's payload bytes.
    payload: bool,
}

/// An ended conversation's identity; `serial` 0 marks a free slot.
struct Remembered {
    key: Key,
    id: Identity,
    serial: u64,
}

/// An idle-queue entry: the flow in `slot` is checked at `at` plus its class timeout,
/// if the slot still holds flow `flow_id` in that class.
/// `tag` is the flow id's low 32 bits: an entry whose slot was since reused by a flow
/// with the same tag (2^32 flows later) only causes an early idle check, which
/// re-reads that flow's own last activity.
#[derive(Clone, Copy)]
struct Idle {
    at: i64,
    slot: u32,
    tag: u32,
}

/// Slots and a hash index of slot numbers: the key is stored once, in its slot, and the
/// queues refer to slots by a 4-byte number instead of copying the key.
struct Slab<T> {
    slots: Vec<T>,
    free: Vec<u32>,
    index: HashTable<u32>,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn find(&self, hash: u64, is: impl Fn(&T) -> bool) -> Option<u32> {
        let slots = &self.slots;
        self.index.find(hash, |&i| is(&slots[i as usize])).copied()
    }

    /// Store `v` (whose key hashes to `hash`, and is not present); returns its slot.
    fn insert(&mut self, hash: u64, v: T, rehash: impl Fn(&T) -> u64) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = v;
                s
            }
            None => {
                // Grown by a quarter, not doubled: the slots are most of the table's
                // memory, and a doubling at 150,000 flows would leave 150,000 empty.
                if self.slots.len() == self.slots.capacity() {
                    self.slots.reserve_exact((self.slots.len() / 4).max(1024));
                }
                self.slots.push(v);
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.index
            .insert_unique(hash, slot, |&i| rehash(&slots[i as usize]));
        slot
    }

    /// Take `slot` (whose key hashes to `hash`) out of the index; the caller marks it free.
    fn remove(&mut self, hash: u64, slot: u32) {
        if let Ok(e) = self.index.find_entry(hash, |&i| i == slot) {
            e.remove();
            self.free.push(slot);
        }
    }
}

pub struct Table {
    limits: FlowLimits,
    shards: usize,
    hasher: FlowHash,
    live: Slab<Live>,
    remembered: Slab<Remembered>,
    /// (slot, serial tag) in the order identities were remembered: the oldest go first
    /// when `max_remembered` is reached. A tag is the serial's low 32 bits (see
    /// [`Table::remembered_is`]): these queues hold hundreds of thousands of entries.
    remembered_order: VecDeque<(u32, u32)>,
    /// Closed connections' identities by expiry time (capture time): (until, slot, tag).
    remembered_closed: VecDeque<(i64, u32, u32)>,
    remembered_serial: u64,
    /// Per class, oldest first.
    idle: [VecDeque<Idle>; 4],
    next_flow: u64,
    /// Next tcp.stream and udp.stream index.
    next_stream: [u64; 2],
    closes: u64,
    now: i64,
    /// A connection that ended with the packet just placed (slot, flow id): closed by
    /// [`Table::after_packet`].
    finished: Option<(u32, u64)>,
    pub events: Vec<Event>,
    pub stats: TableStats,
}

impl Table {
    pub fn new(limits: FlowLimits, shards: usize) -> Table {
        Table {
            limits,
            shards: shards.max(1),
            hasher: FlowHash::default(),
            live: Slab::new(),
            remembered: Slab::new(),
            remembered_order: VecDeque::new(),
            remembered_closed: VecDeque::new(),
            remembered_serial: 0,
            idle: Default::default(),
            next_flow: 0,
            next_stream: [0; 2],
            closes: 0,
            now: i64::MIN,
            finished: None,
            events: Vec::new(),
            stats: TableStats::default(),
        }
    }

    pub fn live(&self) -> usize {
        self.live.len()
    }

    fn timeout(&self, class: Class) -> i64 {
        match class {
            Class::TcpOpen => self.limits.tcp_idle_ns,
            Class::TcpClosed => self.limits.tcp_closed_ns,
            Class::Udp => self.limits.udp_idle_ns,
            Class::Other => self.limits.other_idle_ns,
        }
    }

    fn live_at(&self, slot: u32) -> &Live {
        &self.live.slots[slot as usize]
    }

    fn live_at_mut(&mut self, slot: u32) -> &mut Live {
        &mut self.live.slots[slot as usize]
    }

    /// Assign a packet to its flow, opening, closing and expiring flows as needed.
    pub fn place(&mut self, p: &PacketView, frame: u64, ts_ns: i64) -> Placement {
        // Capture time only moves forward here, so a clock step back never expires flows early.
        self.now = self.now.max(ts_ns);
        self.expire();
        let (key, src_lo) = Key::sided(p.transport, p.src, p.dst);
        let hash = self.hasher.hash_one(key);
        let pure_syn =
            p.transport == Transport::Tcp && p.flags & (SYN | ACK) == SYN && !p.icmp_error;

        if let Some(slot) = self.live.find(hash, |l| l.key == key) {
            let live = self.live_at(slot);
            let dir = live.id.direction(src_lo);
            let reused = pure_syn && live.id.base_seq(dir).is_some_and(|b| b != p.seq);
            if !reused {
                return self.touch(slot, p, dir);
            }
            self.stats.port_reuse += 1;
            self.close(slot, EndReason::PortReuse, false);
            let id = self.new_identity(&key, p, frame);
            return self.open(key, hash, id, false, p, src_lo);
        }

        let (id, resumed) = match self.take_remembered(hash, &key) {
            Some(r) => {
                let dir = r.direction(src_lo);
                if pure_syn && r.base_seq(dir).is_some_and(|b| b != p.seq) {
                    self.stats.port_reuse += 1;
                    (self.new_identity(&key, p, frame), false)
                } else {
                    self.stats.resumed += 1;
                    (r, true)
                }
            }
            None => (self.new_identity(&key, p, frame), false),
        };
        self.open(key, hash, id, resumed, p, src_lo)
    }

    /// The shard of flow `flow_id` (in `slot`) said it only counts that flow's payload
    /// from now on (encrypted or unrecognised, TCP): later packets go without their bytes.
    pub fn payload_unneeded(&mut self, slot: u32, flow_id: u64) {
        if let Some(live) = self.live.slots.get_mut(slot as usize) {
            if live.flow_id == flow_id {
                live.payload = false;
            }
        }
    }

    /// Call once the packet just placed was handed on: a connection it ended (final ACK
    /// of the FIN exchange) is closed now, so its record is written and its memory freed
    /// without waiting for a timeout. Its identity is remembered: a straggler still lands
    /// in the same Wireshark stream.
    pub fn after_packet(&mut self) {
        if let Some((slot, flow_id)) = self.finished.take() {
            if self.live_at(slot).flow_id == flow_id {
                self.close(slot, EndReason::Closed, true);
            }
        }
    }

    /// End of the capture: close everything still open, oldest flow first.
    pub fn finish(&mut self) {
        self.finish_with(|_| {});
    }

    /// [`Table::finish`], handing the events to `drain` every few thousand closes so
    /// they never pile up for every live flow at once.
    pub fn finish_with(&mut self, mut drain: impl FnMut(&mut Vec<Event>)) {
        let mut open: Vec<(u64, u32)> = (0..self.live.slots.len() as u32)
            .map(|s| (self.live_at(s).flow_id, s))
            .filter(|(id, _)| *id != FREE_FLOW)
            .collect();
        open.sort_unstable();
        for (n, (_, s)) in open.into_iter().enumerate() {
            self.close(s, EndReason::CaptureEnd, false);
            if n % 4096 == 4095 {
                drain(&mut self.events);
            }
        }
        drain(&mut self.events);
    }

    fn new_identity(&mut self, key: &Key, p: &PacketView, frame: u64) -> Identity {
        let (client, client_from) = if p.transport == Transport::Tcp && !p.icmp_error {
            match p.flags & (SYN | ACK) {
                SYN => (p.src, ClientFrom::Syn),
                f if f == SYN | ACK => (p.dst, ClientFrom::SynAck),
                _ => by_ports(p),
            }
        } else {
            by_ports(p)
        };
        let stream = match p.transport {
            Transport::Tcp => Some(&mut self.next_stream[0]),
            Transport::Udp => Some(&mut self.next_stream[1]),
            _ => None,
        }
        .map_or(NO_STREAM, |n| {
            *n += 1;
            *n - 1
        });
        Identity {
            conversation_frame: frame,
            stream,
            base_seq: [0; 2],
            base_set: [false; 2],
            client_lo: key.is_lo(&client),
            client_from,
            ended: false,
        }
    }

    fn open(
        &mut self,
        key: Key,
        hash: u64,
        id: Identity,
        resumed: bool,
        p: &PacketView,
        src_lo: bool,
    ) -> Placement {
        if self.live.len() >= self.limits.max_live.max(1) {
            self.evict_one();
        }
        let flow_id = self.next_flow;
        self.next_flow += 1;
        self.stats.flows += 1;
        let shard = (key.stable_hash() % self.shards as u64) as u32;
        let class = match p.transport {
            Transport::Tcp if id.ended => Class::TcpClosed,
            Transport::Tcp => Class::TcpOpen,
            Transport::Udp => Class::Udp,
            _ => Class::Other,
        };
        let live = Live {
            key,
            id,
            flow_id,
            last_ts: self.now,
            shard,
            class,
            fin: [false; 2],
            fin_seq: [0; 2],
            last_fin: None,
            payload: true,
        };
        let hasher = self.hasher;
        let slot = self
            .live
            .insert(hash, live, |l: &Live| hasher.hash_one(l.key));
        self.events.push(Event::Open(
            shard as usize,
            Box::new(Open {
                flow_id,
                slot,
                transport: p.transport,
                client: id.client(&key),
                server: id.server(&key),
                client_from: id.client_from,
                conversation_frame: id.conversation_frame,
                stream: id.stream(),
                resumed,
            }),
        ));
        self.push_idle(class, self.now, slot, flow_id);
        self.stats.peak_live = self.stats.peak_live.max(self.live.len() as u64);
        let dir = id.direction(src_lo);
        self.touch(slot, p, dir)
    }

    fn touch(&mut self, slot: u32, p: &PacketView, dir: Direction) -> Placement {
        let now = self.now;
        let live = self.live_at_mut(slot);
        live.last_ts = now;
        let mut new_class = None;
        let mut finished = false;
        if p.transport == Transport::Tcp && !p.icmp_error {
            let d = dir.index();
            if !live.id.base_set[d] {
                // Wireshark's base_seq: the SYN's ISN, else the byte before the first seen.
                live.id.base_set[d] = true;
                live.id.base_seq[d] = if p.flags & SYN != 0 {
                    p.seq
                } else {
                    p.seq.wrapping_sub(1)
                };
            }
            if p.flags & FIN != 0 && !live.fin[d] {
                live.fin[d] = true;
                let syn = u32::from(p.flags & SYN != 0);
                live.fin_seq[d] = p.seq.wrapping_add(syn).wrapping_add(p.len);
                if live.fin[dir.flip().index()] {
                    live.last_fin = Some(dir);
                }
            }
            // The ACK of the second FIN from the other side: the connection is over.
            if let Some(last) = live.last_fin {
                let f = live.fin_seq[last.index()];
                let acked =
                    live.fin[last.index()] && (p.ack.wrapping_sub(f.wrapping_add(1)) as i32) >= 0;
                if dir != last && p.flags & ACK != 0 && acked {
                    finished = true;
                }
            }
            if (p.flags & RST != 0 || live.fin == [true, true]) && live.class == Class::TcpOpen {
                live.class = Class::TcpClosed;
                new_class = Some(Class::TcpClosed);
            }
        }
        let placement = Placement {
            shard: live.shard as usize,
            flow_id: live.flow_id,
            slot,
            dir,
            payload: live.payload,
        };
        if finished {
            self.finished = Some((slot, placement.flow_id));
        }
        if let Some(c) = new_class {
            self.push_idle(c, now, slot, placement.flow_id);
        }
        placement
    }

    /// The idle entry still stands for the flow in its slot, in class `class`.
    fn idle_valid(&self, e: &Idle, class: Class) -> bool {
        let l = self.live_at(e.slot);
        l.flow_id != FREE_FLOW && l.flow_id as u32 == e.tag && l.class == class
    }

    /// Queues a flow for its idle check. Entries of flows that ended or changed class
    /// stay in the queue until their time comes; when a queue holds twice as many
    /// entries as there are live flows, the stale ones are dropped, so the queues follow
    /// the live flows and not the capture's length.
    fn push_idle(&mut self, class: Class, at: i64, slot: u32, flow_id: u64) {
        let tag = flow_id as u32;
        self.idle[class.index()].push_back(Idle { at, slot, tag });
        if self.idle[class.index()].len() > 2 * self.live.len() + COMPACT_SLACK {
            let mut q = std::mem::take(&mut self.idle[class.index()]);
            q.retain(|e| self.idle_valid(e, class));
            self.idle[class.index()] = q;
        }
    }

    /// Close flows idle past their timeout; stale queue entries are dropped or requeued.
    fn expire(&mut self) {
        self.expire_remembered();
        for c in Class::ALL {
            let timeout = self.timeout(c);
            while let Some(&e) = self.idle[c.index()].front() {
                if e.at.saturating_add(timeout) > self.now {
                    break;
                }
                self.idle[c.index()].pop_front();
                if !self.idle_valid(&e, c) {
                    continue; // a stale entry: the flow ended or changed class
                }
                let last = self.live_at(e.slot).last_ts;
                if last.saturating_add(timeout) <= self.now {
                    self.stats.timed_out += 1;
                    let reason = if c == Class::TcpClosed {
                        EndReason::Closed
                    } else {
                        EndReason::Timeout
                    };
                    self.close(e.slot, reason, true);
                } else {
                    self.idle[c.index()].push_back(Idle { at: last, ..e });
                }
            }
        }
    }

    /// The live-flow cap is reached: evict the flow idle the longest.
    fn evict_one(&mut self) {
        loop {
            // The queue whose front is oldest.
            let mut best: Option<(i64, usize)> = None;
            for (i, q) in self.idle.iter().enumerate() {
                if let Some(e) = q.front() {
                    if best.is_none_or(|(bt, _)| e.at < bt) {
                        best = Some((e.at, i));
                    }
                }
            }
            let Some((_, qi)) = best else { return };
            let Some(e) = self.idle[qi].pop_front() else {
                return;
            };
            if !self.idle_valid(&e, Class::ALL[qi]) {
                continue;
            }
            let live = self.live_at(e.slot);
            if live.last_ts > e.at {
                let last = live.last_ts;
                self.idle[qi].push_back(Idle { at: last, ..e });
                continue;
            }
            self.stats.evicted += 1;
            self.close(e.slot, EndReason::Evicted, true);
            return;
        }
    }

    fn close(&mut self, slot: u32, reason: EndReason, remember: bool) {
        let live = self.live_at(slot);
        if live.flow_id == FREE_FLOW {
            return;
        }
        let (key, mut id, flow_id, shard) = (live.key, live.id, live.flow_id, live.shard);
        let hash = self.hasher.hash_one(key);
        self.live.remove(hash, slot);
        self.live_at_mut(slot).flow_id = FREE_FLOW;
        self.events.push(Event::Close {
            shard: shard as usize,
            flow_id,
            slot,
            reason,
            seq: self.closes,
        });
        self.closes += 1;
        if remember && key.transport.has_ports() {
            id.ended = reason == EndReason::Closed;
            if let Some((slot, serial)) = self.remember(key, hash, id) {
                if reason == EndReason::Closed {
                    let until = self.now.saturating_add(self.limits.remember_closed_ns);
                    self.remembered_closed
                        .push_back((until, slot, serial as u32));
                }
            }
        }
    }

    /// The remembered identity in `slot` is still the one whose serial has these low 32
    /// bits (serial 0 marks a free slot). A stale entry can only match when its slot is
    /// reused by a serial exactly a multiple of 2^32 later: more than four billion ended
    /// flows in one run. The cost then is one identity forgotten early (a straggler
    /// would get a new stream index), against 8 bytes saved on each of up to a million
    /// queue entries.
    fn remembered_is(&self, slot: u32, tag: u32) -> bool {
        let serial = self.remembered.slots[slot as usize].serial;
        serial != 0 && serial as u32 == tag
    }

    fn forget(&mut self, slot: u32) {
        let r = &self.remembered.slots[slot as usize];
        let hash = self.hasher.hash_one(r.key);
        self.remembered.remove(hash, slot);
        self.remembered.slots[slot as usize].serial = 0;
    }

    /// Take the identity remembered for `key`, if any.
    fn take_remembered(&mut self, hash: u64, key: &Key) -> Option<Identity> {
        let slot = self.remembered.find(hash, |r| r.key == *key)?;
        let id = self.remembered.slots[slot as usize].id;
        self.forget(slot);
        Some(id)
    }

    /// Forget closed connections whose straggler window has passed.
    fn expire_remembered(&mut self) {
        while let Some(&(until, slot, serial)) = self.remembered_closed.front() {
            if until > self.now {
                break;
            }
            self.remembered_closed.pop_front();
            if self.remembered_is(slot, serial) {
                self.forget(slot);
            }
        }
    }

    fn remember(&mut self, key: Key, hash: u64, id: Identity) -> Option<(u32, u64)> {
        if self.limits.max_remembered == 0 {
            self.stats.forgotten += 1;
            return None;
        }
        while self.remembered.len() >= self.limits.max_remembered {
            let Some((slot, serial)) = self.remembered_order.pop_front() else {
                break;
            };
            if self.remembered_is(slot, serial) {
                self.forget(slot);
                self.stats.forgotten += 1;
            }
        }
        self.remembered_serial += 1;
        let serial = self.remembered_serial;
        let hasher = self.hasher;
        let slot =
            self.remembered
                .insert(hash, Remembered { key, id, serial }, |r: &Remembered| {
                    hasher.hash_one(r.key)
                });
        self.remembered_order.push_back((slot, serial as u32));
        // Keep the queues from growing with stale entries (identities that expired or
        // were resumed): compacted when one holds twice what is remembered.
        let bound = 2 * self.remembered.len() + COMPACT_SLACK;
        if self.remembered_order.len() > bound {
            let mut q = std::mem::take(&mut self.remembered_order);
            q.retain(|&(s, n)| self.remembered_is(s, n));
            self.remembered_order = q;
        }
        if self.remembered_closed.len() > bound {
            let mut q = std::mem::take(&mut self.remembered_closed);
            q.retain(|&(_, s, n)| self.remembered_is(s, n));
            self.remembered_closed = q;
        }
        Some((slot, serial))
    }
}

/// How likely a port is to be a server's: a port an analyzer or the Exchange catalog
/// names, then the system range, then the registered range, then ephemeral ports.
pub fn server_port_rank(port: u16) -> u8 {
    const KNOWN: &[u16] = &[
        25, 53, 67, 80, 88, 110, 123, 135, 137, 138, 139, 143, 161, 389, 443, 444, 445, 464, 465,
        500, 587, 593, 636, 691, 993, 995, 1433, 3268, 3269, 3389, 4500, 5060, 5061, 5062, 5065,
        5066, 5985, 5986, 8080, 8443, 50389, 50636,
    ];
    if KNOWN.contains(&port)
        || crate::proto::REGISTRY
            .iter()
            .any(|r| r.ports.contains(&port))
    {
        3
    } else if port < 1024 {
        2
    } else if port < 49152 {
        1
    } else {
        0
    }
}

fn by_ports(p: &PacketView) -> (SocketAddr, ClientFrom) {
    if !p.transport.has_ports() {
        return (p.src, ClientFrom::FirstPacket);
    }
    let (s, d) = (
        server_port_rank(p.src.port()),
        server_port_rank(p.dst.port()),
    );
    if d > s {
        (p.src, ClientFrom::Ports)
    } else if s > d {
        (p.dst, ClientFrom::Ports)
    } else {
        (p.src, ClientFrom::FirstPacket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn tcp(src: &str, dst: &str, seq: u32, flags: u8) -> PacketView {
        PacketView {
            transport: Transport::Tcp,
            src: sa(src),
            dst: sa(dst),
            seq,
            flags,
            len: 0,
            ack: 0,
            icmp_error: false,
        }
    }

    fn opens(t: &mut Table) -> Vec<Open> {
        t.events
            .drain(..)
            .filter_map(|e| match e {
                Event::Open(_, o) => Some(*o),
                _ => None,
            })
            .collect()
    }

    const C: &str = "10.0.0.1:50000";
    const S: &str = "10.0.0.2:25";

    #[test]
    fn syn_decides_client_and_directions() {
        let mut t = Table::new(FlowLimits::default(), 4);
        let a = t.place(&tcp(C, S, 100, SYN), 1, 0);
        let b = t.place(&tcp(S, C, 900, SYN | ACK), 2, 0);
        assert_eq!(a.flow_id, b.flow_id);
        assert_eq!(a.shard, b.shard);
        assert_eq!(a.dir, Direction::ToServer);
        assert_eq!(b.dir, Direction::ToClient);
        let o = opens(&mut t);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].client, sa(C));
        assert_eq!(o[0].client_from, ClientFrom::Syn);
        assert_eq!(o[0].conversation_frame, 1);
    }

    #[test]
    fn syn_ack_first_makes_its_receiver_the_client() {
        let mut t = Table::new(FlowLimits::default(), 1);
        t.place(&tcp(S, C, 900, SYN | ACK), 1, 0);
        let o = opens(&mut t);
        assert_eq!(o[0].client, sa(C));
        assert_eq!(o[0].client_from, ClientFrom::SynAck);
    }

    #[test]
    fn mid_stream_uses_ports() {
        let mut t = Table::new(FlowLimits::default(), 1);
        // first packet seen goes from the server port 25 to the ephemeral port
        t.place(&tcp(S, C, 5, ACK), 1, 0);
        let o = opens(&mut t);
        assert_eq!(o[0].client, sa(C));
        assert_eq!(o[0].client_from, ClientFrom::Ports);
        // equal ranks: the first sender is the client
        t.place(&tcp("10.0.0.3:50001", "10.0.0.4:50002", 5, ACK), 2, 0);
        let o = opens(&mut t);
        assert_eq!(o[0].client, sa("10.0.0.3:50001"));
        assert_eq!(o[0].client_from, ClientFrom::FirstPacket);
    }

    #[test]
    fn new_syn_with_other_isn_starts_a_new_conversation() {
        let mut t = Table::new(FlowLimits::default(), 1);
        let a = t.place(&tcp(C, S, 100, SYN), 1, 0);
        t.place(&tcp(C, S, 101, FIN | ACK), 2, 0);
        // retransmitted SYN, same ISN: same conversation
        let b = t.place(&tcp(C, S, 100, SYN), 3, 0);
        assert_eq!(a.flow_id, b.flow_id);
        let c = t.place(&tcp(C, S, 7000, SYN), 4, 0);
        assert_ne!(a.flow_id, c.flow_id);
        assert_eq!(t.stats.port_reuse, 1);
        let o = opens(&mut t);
        assert_eq!(o.len(), 2);
        assert_eq!(o[1].conversation_frame, 4);
    }

    #[test]
    fn timeout_closes_and_a_late_packet_resumes_the_same_conversation() {
        let lim = FlowLimits {
            tcp_idle_ns: 10 * SEC,
            ..FlowLimits::default()
        };
        let mut t = Table::new(lim, 1);
        t.place(&tcp(C, S, 100, SYN), 1, 0);
        let late = t.place(&tcp(C, S, 101, ACK), 2, 11 * SEC);
        let events: Vec<Event> = t.events.drain(..).collect();
        assert!(matches!(
            events[1],
            Event::Close {
                reason: EndReason::Timeout,
                ..
            }
        ));
        match &events[2] {
            Event::Open(_, o) => {
                assert!(o.resumed);
                assert_eq!(o.conversation_frame, 1);
                assert_eq!(o.flow_id, late.flow_id);
            }
            e => panic!("unexpected {e:?}"),
        }
        assert_eq!(t.stats.timed_out, 1);
    }

    #[test]
    fn activity_keeps_a_flow_alive() {
        let lim = FlowLimits {
            tcp_idle_ns: 10 * SEC,
            ..FlowLimits::default()
        };
        let mut t = Table::new(lim, 1);
        for i in 0..10 {
            t.place(
                &tcp(C, S, 100 + i, ACK),
                u64::from(i) + 1,
                i64::from(i) * 5 * SEC,
            );
        }
        assert_eq!(t.stats.flows, 1);
        assert_eq!(t.stats.timed_out, 0);
    }

    #[test]
    fn live_cap_evicts_the_longest_idle() {
        let lim = FlowLimits {
            max_live: 2,
            ..FlowLimits::default()
        };
        let mut t = Table::new(lim, 1);
        let a = t.place(&tcp("10.0.0.1:1", S, 1, SYN), 1, 0);
        t.place(&tcp("10.0.0.1:2", S, 1, SYN), 2, SEC);
        t.place(&tcp("10.0.0.1:1", S, 2, ACK), 3, 2 * SEC); // a is fresh again
        t.place(&tcp("10.0.0.1:3", S, 1, SYN), 4, 3 * SEC);
        assert_eq!(t.stats.evicted, 1);
        assert_eq!(t.live(), 2);
        let closed: Vec<u64> = t
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Close { flow_id, .. } => Some(*flow_id),
                _ => None,
            })
            .collect();
        assert_eq!(closed, vec![a.flow_id + 1]);
    }

    #[test]
    fn remembered_conversations_are_capped() {
        let lim = FlowLimits {
            tcp_idle_ns: SEC,
            max_remembered: 2,
            ..FlowLimits::default()
        };
        let mut t = Table::new(lim, 1);
        for i in 0..5u16 {
            let src = format!("10.0.0.1:{}", 1000 + i);
            t.place(
                &tcp(&src, S, 1, SYN),
                u64::from(i) + 1,
                i64::from(i) * 10 * SEC,
            );
        }
        t.place(&tcp(C, S, 1, SYN), 9, 100 * SEC);
        assert_eq!(t.stats.forgotten, 3);
        assert!(t.remembered.len() <= 2);
    }

    #[test]
    fn final_ack_closes_at_once_and_stragglers_keep_the_stream() {
        let mut t = Table::new(FlowLimits::default(), 1);
        let a = t.place(&tcp(C, S, 100, SYN), 1, 0);
        t.place(&tcp(S, C, 500, SYN | ACK), 2, 0);
        let mut fin = tcp(C, S, 101, FIN | ACK);
        fin.len = 10; // data and FIN in one segment: FIN is sequence 111
        t.place(&fin, 3, 0);
        t.after_packet();
        let mut fin2 = tcp(S, C, 501, FIN | ACK);
        fin2.ack = 112;
        t.place(&fin2, 4, 0);
        t.after_packet();
        assert_eq!(t.live(), 1, "the second FIN alone does not end it");
        let mut last = tcp(C, S, 112, ACK);
        last.ack = 502;
        t.place(&last, 5, 0);
        t.after_packet();
        assert_eq!(t.live(), 0);
        let closes: Vec<(u64, EndReason)> = t
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Close {
                    flow_id, reason, ..
                } => Some((*flow_id, *reason)),
                _ => None,
            })
            .collect();
        assert_eq!(closes, vec![(a.flow_id, EndReason::Closed)]);
        t.events.clear();
        // a retransmitted final ACK: a resumed record of the same conversation
        t.place(&last, 6, 0);
        let o = opens(&mut t);
        assert!(o[0].resumed);
        assert_eq!(o[0].stream, Some(0));
    }

    #[test]
    fn key_is_symmetric() {
        let a = Key::new(Transport::Udp, sa(C), sa(S));
        let b = Key::new(Transport::Udp, sa(S), sa(C));
        assert_eq!(a, b);
        assert_eq!(a.stable_hash(), b.stable_hash());
    }
}
