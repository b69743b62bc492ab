//! Deterministic generator of Exchange 2007 traffic, for test fixtures, demos and
//! multi-gigabyte benchmarks.
//!
//! Same inputs, same bytes: everything random comes from a seeded splitmix64 stream and
//! the clock starts at a fixed epoch (2026-01-01T00:00:00Z) and advances by computed
//! steps. To write at hundreds of MB/s the generator *templates* flows: each scenario's
//! packets are built once (`scenarios`), then stamped onto many flows by
//! `packet::emit`, which rewrites addresses, ports, sequence numbers, IP id, checksums
//! (header words plus a payload sum stored in the template) and timestamps. Memory is
//! bounded by the templates and `concurrency`, never by `target_bytes`.
//!
//! # Addressing plan
//! | role | IPv4 | IPv6 (when a flow is IPv6) |
//! |---|---|---|
//! | hub (Hub Transport) | 10.1.0.10, 10.1.0.11 | 2001:db8:1::10, 2001:db8:1::11 |
//! | edge (Edge Transport) | 192.0.2.25 | 2001:db8::2:25 |
//! | cas (Client Access) | 10.1.0.20 | 2001:db8:1::20 |
//! | mailbox | 10.1.0.30 (second cluster node 10.1.0.31) | 2001:db8:1::30 |
//! | um (Unified Messaging) | 10.1.0.40 | 2001:db8:1::40 |
//! | dc (domain controller, DNS, KDC) | 10.1.0.5 | 2001:db8:1::5 |
//! | ip_gateway (UM IP gateway) | 10.9.0.2 | 2001:db8:9::2 |
//! | clients | 10.2.x.y | 2001:db8:2::x:y (inside 2001:db8:2::/48) |
//!
//! IPv6 addresses map `a.b.c.d` to `2001:db8:b::c:d` with `c` and `d` written in decimal
//! digits. In [`generate`] each flow whose client is not a server of the plan gets the
//! next client address (65,024 of them, 10.2.0.1 to 10.2.255.254) and a random
//! ephemeral port, so tens of thousands of live flows are distinct; server-to-server
//! flows keep both addresses and vary the client port. Servers stay on the plan.
//! MAC addresses are `02:15:5d` followed by the low three bytes of the address.

pub mod hostile;
mod packet;
pub(crate) mod payloads;
mod scenarios;
mod writer;

pub use writer::{PcapWriter, PcapngWriter, LINKTYPE_ETHERNET};

use packet::{Template, Transport, Wire};
use std::io::{self, BufWriter, Write};
use writer::AnyWriter;

/// 2026-01-01T00:00:00Z in nanoseconds since the Unix epoch.
pub const EPOCH_NS: i64 = 1_767_225_600 * 1_000_000_000;

/// Capture file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// libpcap, microsecond timestamps.
    Pcap,
    /// pcapng, nanosecond timestamps.
    Pcapng,
}

/// Which traffic [`generate`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// Every family, compliant and violating variants.
    Full,
    /// Many short flows; frames about 110 bytes on average.
    Handshake,
    /// Long encrypted transfers (TLS, SMB3, ESP); frames about 800 bytes on average.
    Bulk,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    /// Stop once the output reaches this many bytes (file headers included).
    pub target_bytes: u64,
    pub format: Format,
    pub mix: Mix,
    /// Live flows interleaved at once (e.g. 20_000).
    pub concurrency: usize,
    /// Share of flows inside an 802.1Q tag, 0 to 100.
    pub vlan_percent: u8,
    /// Share of flows over IPv6, 0 to 100.
    pub ipv6_percent: u8,
}

/// What was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets: u64,
    /// Bytes written to the output, file headers and record headers included.
    pub bytes: u64,
    pub flows: u64,
}

/// splitmix64 (Steele, Lea, Flood 2014): small, fast and good enough for test traffic.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub(crate) fn fill(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

/// FNV-1a, to derive a per-scenario seed from its name.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Names of every scenario, in registry order.
pub fn scenario_names() -> Vec<&'static str> {
    scenarios::registry().iter().map(|s| s.name).collect()
}

/// Names of the data-path families (`transport-compliant`, ...), in order.
pub fn family_names() -> Vec<&'static str> {
    scenarios::FAMILIES.iter().map(|(n, _)| *n).collect()
}

/// The scenarios of a family capture, or `None` for an unknown family.
pub fn family_scenarios(name: &str) -> Option<&'static [&'static str]> {
    scenarios::FAMILIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
}

/// IPv6 address of a plan address `a.b.c.d`: 2001:db8:b::c:d (c and d in decimal digits).
fn v6_of(a: [u8; 4]) -> [u8; 16] {
    let bcd = |n: u8| -> [u8; 2] {
        let n = u16::from(n);
        let v = ((n / 100) << 8) | (((n / 10) % 10) << 4) | (n % 10);
        v.to_be_bytes()
    };
    let mut o = [0u8; 16];
    o[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    o[5] = a[1];
    o[12..14].copy_from_slice(&bcd(a[2]));
    o[14..16].copy_from_slice(&bcd(a[3]));
    o
}

/// Client address number `n` of the pool: 10.2.x.y, y in 1..=254.
fn pool_client(n: u64) -> [u8; 4] {
    let n = n % (256 * 254);
    [10, 2, (n / 254) as u8, (n % 254 + 1) as u8]
}

/// Where a flow sits: addresses and the per-flow random parts.
struct FlowPlace {
    v6: bool,
    vlan: Option<u16>,
    /// Pool client number (ignored for server-to-server templates).
    client_no: u64,
}

fn make_wire(tpl: &Template, place: &FlowPlace, rng: &mut Rng, port_counter: &mut u64) -> Wire {
    let client = tpl.client.unwrap_or_else(|| pool_client(place.client_no));
    let (c_ip, s_ip) = if place.v6 {
        (v6_of(client), v6_of(tpl.server))
    } else {
        (Wire::v4(client), Wire::v4(tpl.server))
    };
    let r = rng.next_u64();
    let c_port = match tpl.client_port {
        Some(p) => p,
        None if tpl.client.is_some() => {
            *port_counter += 1;
            49152 + (*port_counter % 16384) as u16
        }
        None => 49152 + ((r >> 48) % 16384) as u16,
    };
    Wire {
        v6: place.v6,
        c_ip,
        s_ip,
        c_port,
        s_port: tpl.server_port,
        c_isn: rng.next_u64() as u32,
        s_isn: rng.next_u64() as u32,
        c_ipid: r as u16,
        s_ipid: (r >> 16) as u16,
        vlan: place.vlan,
        spi_xor: if tpl.client_port.is_none() && tpl.server_port == 0 {
            (r >> 32) as u32 & 0x00ff_ff00
        } else {
            0
        },
    }
}

fn open_writer<W: Write>(w: W, format: Format) -> io::Result<AnyWriter<W>> {
    Ok(match format {
        Format::Pcap => AnyWriter::Pcap(PcapWriter::new(w, LINKTYPE_ETHERNET, false)?),
        Format::Pcapng => AnyWriter::Pcapng(PcapngWriter::new(w, LINKTYPE_ETHERNET)?),
    })
}

const fn file_header_len(format: Format) -> u64 {
    match format {
        Format::Pcap => 24,
        Format::Pcapng => 60,
    }
}

/// Application bytes of the main transfer of each scenario, per mix.
fn bulk_bytes(mix: Mix) -> usize {
    match mix {
        Mix::Full => 12 * 1024,
        Mix::Handshake => 0,
        Mix::Bulk => 1024 * 1024,
    }
}

/// Largest number of live flows: each costs about 150 bytes of state, so this bounds
/// the generator's memory at a few hundred MB whatever `concurrency` asks for.
const MAX_CONCURRENCY: usize = 1 << 21;

/// Segment size of templates: 1448 bytes over IPv4, 1428 over IPv6.
const MSS_V4: usize = 1448;
const MSS_V6: usize = 1428;
/// Application bytes of the bulk part in `write_scenarios` fixtures (kept small).
const FIXTURE_BULK: usize = 4096;

/// Writes a small capture holding the named scenarios one after another (one flow set
/// each, clients 10.2.0.1, 10.2.0.2, ... in order). In pcapng the first packet of each
/// scenario carries the comment `scenario <name>`. An unknown name is an
/// `InvalidInput` error and nothing is written.
pub fn write_scenarios(
    names: &[&str],
    seed: u64,
    format: Format,
    out: &mut dyn Write,
) -> io::Result<Stats> {
    write_scenarios_with_bulk(names, seed, format, FIXTURE_BULK, out)
}

/// The capture of a data-path family (see [`family_names`]): its scenarios as
/// [`write_scenarios`] writes them, but handshakes only (no bulk transfer), so each
/// file stays a few KB. An unknown family is an `InvalidInput` error.
pub fn write_family(
    family: &str,
    seed: u64,
    format: Format,
    out: &mut dyn Write,
) -> io::Result<Stats> {
    let names = family_scenarios(family).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "unknown family {family:?}; known: {}",
                family_names().join(", ")
            ),
        )
    })?;
    write_scenarios_with_bulk(names, seed, format, 0, out)
}

fn write_scenarios_with_bulk(
    names: &[&str],
    seed: u64,
    format: Format,
    bulk: usize,
    out: &mut dyn Write,
) -> io::Result<Stats> {
    let reg = scenarios::registry();
    let mut chosen = Vec::with_capacity(names.len());
    for n in names {
        match reg.iter().find(|s| s.name == *n) {
            Some(s) => chosen.push(s),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "unknown scenario {n:?}; known: {}",
                        scenario_names().join(", ")
                    ),
                ))
            }
        }
    }
    let mut w = open_writer(BufWriter::new(out), format)?;
    let mut stats = Stats {
        bytes: file_header_len(format),
        ..Stats::default()
    };
    let mut rng = Rng::new(seed);
    let mut ts = EPOCH_NS;
    let mut buf = Vec::with_capacity(2048);
    let mut port_counter = seed % 16384;
    for (i, sc) in chosen.iter().enumerate() {
        let mss = if sc.ipv6 { MSS_V6 } else { MSS_V4 };
        let mut cx = scenarios::Ctx {
            rng: Rng::new(seed ^ name_hash(sc.name)),
            mss,
            bulk,
        };
        let tpls = (sc.build)(&mut cx);
        let place = FlowPlace {
            v6: sc.ipv6,
            vlan: sc.vlan,
            client_no: i as u64,
        };
        let mut comment = Some(format!("scenario {}", sc.name));
        for tpl in &tpls {
            let mut wire = make_wire(tpl, &place, &mut rng, &mut port_counter);
            stats.flows += 1;
            for p in &tpl.pkts {
                ts += i64::from(p.gap_us) * 1000;
                buf.clear();
                let n = packet::emit(&mut buf, tpl, p, &mut wire);
                w.write(ts, &buf, comment.as_deref())?;
                stats.bytes += w.record_overhead(n, comment.as_deref()) + n as u64;
                stats.packets += 1;
                comment = None;
            }
            ts += 1_000_000; // 1 ms between flows
        }
        ts += 10_000_000; // 10 ms between scenarios
    }
    w.finish()?;
    Ok(stats)
}

/// One scenario of the generator's table: its flows built for IPv4 and IPv6 segment sizes.
struct Entry {
    tpls: Vec<Template>,
    tpls_v6: Vec<Template>,
    ipv6: bool,
    vlan: Option<u16>,
}

/// A live flow: which scenario, which of its flows, which packet next.
struct Live {
    entry: usize,
    flow: usize,
    pkt: usize,
    place: FlowPlace,
    wire: Wire,
    /// Next relative sequence number of client and server (for the forced close).
    next: [u32; 2],
    /// Bytes the forced close of this flow would write.
    close_cost: u64,
}

/// Bytes a forced TCP close writes (FIN, FIN, ACK, or the same budget for a RST).
fn close_cost(place: &FlowPlace, tpl: &Template, format: Format) -> u64 {
    if tpl.transport != Transport::Tcp {
        return 0;
    }
    let frame = 14 + if place.vlan.is_some() { 4 } else { 0 } + if place.v6 { 40 } else { 20 } + 20;
    let rec = match format {
        Format::Pcap => 16 + frame,
        Format::Pcapng => 32 + frame + (4 - frame % 4) % 4,
    };
    3 * rec as u64
}

/// Writes a capture of about `cfg.target_bytes` bytes of interleaved Exchange traffic.
///
/// Up to `cfg.concurrency` flows are live at once and advance round-robin, one packet per
/// turn; a finished flow's slot starts the next flow of the scenario (same client) or a
/// new scenario picked by weight from the mix. When the output plus the cost of closing
/// every live flow reaches the target, the live TCP flows are closed (FIN exchange, or
/// RST before the handshake completed) and the file ends. Output is a pure function of
/// `cfg`.
pub fn generate(cfg: &Config, out: &mut dyn Write) -> io::Result<Stats> {
    let reg = scenarios::registry();
    let mix_idx = match cfg.mix {
        Mix::Full => 0,
        Mix::Handshake => 1,
        Mix::Bulk => 2,
    };
    let mut entries = Vec::new();
    let mut cumulative = Vec::new();
    let mut total_w = 0u64;
    for sc in &reg {
        let wgt = sc.weights[mix_idx];
        if wgt == 0 {
            continue;
        }
        let build = |mss| {
            let mut cx = scenarios::Ctx {
                rng: Rng::new(cfg.seed ^ name_hash(sc.name)),
                mss,
                bulk: bulk_bytes(cfg.mix),
            };
            (sc.build)(&mut cx)
        };
        let want_v6 = sc.ipv6 || cfg.ipv6_percent > 0;
        let usable = |t: &Vec<Template>| t.iter().all(|f| !f.pkts.is_empty());
        let want_v4 = !sc.ipv6;
        let tpls = if want_v4 { build(MSS_V4) } else { Vec::new() };
        let tpls_v6 = if want_v6 { build(MSS_V6) } else { Vec::new() };
        // A scenario plays only if each of its flows has packets for the families it uses.
        let ok = (!want_v4 || (!tpls.is_empty() && usable(&tpls)))
            && (!want_v6 || (!tpls_v6.is_empty() && usable(&tpls_v6)));
        if !ok {
            continue;
        }
        entries.push(Entry {
            tpls,
            tpls_v6,
            ipv6: sc.ipv6,
            vlan: sc.vlan,
        });
        total_w += u64::from(wgt);
        cumulative.push(total_w);
    }
    if entries.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the mix has no scenario to play",
        ));
    }
    let mut rng = Rng::new(cfg.seed);
    let mut w = open_writer(BufWriter::with_capacity(1 << 20, out), cfg.format)?;
    let mut stats = Stats {
        bytes: file_header_len(cfg.format),
        ..Stats::default()
    };
    let conc = cfg.concurrency.clamp(1, MAX_CONCURRENCY);
    let mut slots: Vec<Option<Live>> = Vec::with_capacity(conc.min(1 << 20));
    let mut reserve = 0u64;
    let mut ts = EPOCH_NS;
    let mut clock = cfg.seed | 1;
    let mut client_no = 0u64;
    let mut port_counter = 0u64;
    let mut buf = Vec::with_capacity(1 << 16);
    let mut i = 0usize;
    while stats.bytes + reserve < cfg.target_bytes {
        if i == slots.len() {
            if slots.len() < conc {
                slots.push(None);
            } else {
                i = 0;
            }
        }
        let slot = &mut slots[i];
        if slot.is_none() {
            let pick = rng.below(total_w);
            let entry = cumulative.partition_point(|c| *c <= pick);
            let e = &entries[entry];
            let v6 = e.ipv6 || rng.below(100) < u64::from(cfg.ipv6_percent);
            let vlan = e.vlan.or_else(|| {
                (rng.below(100) < u64::from(cfg.vlan_percent))
                    .then(|| 100 + (rng.below(4) as u16) * 100)
            });
            client_no += 1;
            let place = FlowPlace {
                v6,
                vlan,
                client_no,
            };
            let tpl = if v6 { &e.tpls_v6[0] } else { &e.tpls[0] };
            let wire = make_wire(tpl, &place, &mut rng, &mut port_counter);
            let cc = close_cost(&place, tpl, cfg.format);
            reserve += cc;
            stats.flows += 1;
            *slot = Some(Live {
                entry,
                flow: 0,
                pkt: 0,
                place,
                wire,
                next: [0, 0],
                close_cost: cc,
            });
        }
        let Some(live) = slot.as_mut() else {
            i += 1;
            continue;
        };
        let e = &entries[live.entry];
        let set = if live.place.v6 { &e.tpls_v6 } else { &e.tpls };
        let tpl = &set[live.flow];
        let p = &tpl.pkts[live.pkt];
        // Clock: 1 to 16 µs per packet from a cheap LCG.
        clock = clock
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ts += 1000 * (1 + ((clock >> 60) as i64));
        buf.clear();
        let n = packet::emit(&mut buf, tpl, p, &mut live.wire);
        w.write(ts, &buf, None)?;
        stats.bytes += w.record_overhead(n, None) + n as u64;
        stats.packets += 1;
        if let Some((from_client, nx)) = packet::next_seq(p) {
            live.next[usize::from(!from_client)] = nx;
        }
        live.pkt += 1;
        if live.pkt == tpl.pkts.len() {
            reserve -= live.close_cost;
            live.flow += 1;
            if live.flow == set.len() {
                *slot = None;
            } else {
                let next_tpl = &set[live.flow];
                live.wire = make_wire(next_tpl, &live.place, &mut rng, &mut port_counter);
                live.pkt = 0;
                live.next = [0, 0];
                live.close_cost = close_cost(&live.place, next_tpl, cfg.format);
                reserve += live.close_cost;
                stats.flows += 1;
            }
        }
        i += 1;
    }
    // Close what is still open, in slot order.
    for live in slots.iter_mut().flatten() {
        let e = &entries[live.entry];
        let set = if live.place.v6 { &e.tpls_v6 } else { &e.tpls };
        let tpl = &set[live.flow];
        if tpl.transport != Transport::Tcp || live.pkt == 0 {
            continue;
        }
        let [c, s] = live.next;
        let pkts = if live.pkt >= 3 {
            vec![
                packet::control(true, packet::FIN | packet::ACK, c, s),
                packet::control(false, packet::FIN | packet::ACK, s, c.wrapping_add(1)),
                packet::control(true, packet::ACK, c.wrapping_add(1), s.wrapping_add(1)),
            ]
        } else {
            vec![packet::control(true, packet::RST, c, 0)]
        };
        for p in &pkts {
            ts += 1000;
            buf.clear();
            let n = packet::emit(&mut buf, tpl, p, &mut live.wire);
            w.write(ts, &buf, None)?;
            stats.bytes += w.record_overhead(n, None) + n as u64;
            stats.packets += 1;
        }
    }
    w.finish()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn cfg(seed: u64, target: u64, mix: Mix, concurrency: usize) -> Config {
        Config {
            seed,
            target_bytes: target,
            format: Format::Pcap,
            mix,
            concurrency,
            vlan_percent: 20,
            ipv6_percent: 20,
        }
    }

    fn gen(c: &Config) -> (Vec<u8>, Stats) {
        let mut out = Vec::new();
        let st = generate(c, &mut out).unwrap();
        (out, st)
    }

    /// A frame decoded just enough to check it: transport, 5-tuple, TCP flags.
    struct Seen {
        proto: u8,
        tuple: (Vec<u8>, Vec<u8>, u16, u16),
        flags: u8,
    }

    /// Walks a pcap (µs, Ethernet) file by hand and verifies every frame: lengths agree,
    /// the IPv4 header checksum and the TCP/UDP checksum verify.
    fn walk_pcap(b: &[u8]) -> Vec<Seen> {
        assert_eq!(&b[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes([b[20], b[21], b[22], b[23]]), 1);
        let mut at = 24;
        let mut seen = Vec::new();
        let mut last_ts = 0u64;
        while at < b.len() {
            let r = |o: usize| {
                u32::from_le_bytes([b[at + o], b[at + o + 1], b[at + o + 2], b[at + o + 3]])
            };
            let ts = u64::from(r(0)) * 1_000_000 + u64::from(r(4));
            assert!(ts >= last_ts, "timestamps go forward");
            last_ts = ts;
            let incl = r(8) as usize;
            assert_eq!(incl, r(12) as usize);
            let f = &b[at + 16..at + 16 + incl];
            seen.push(check_frame(f));
            at += 16 + incl;
        }
        assert_eq!(at, b.len());
        seen
    }

    fn check_frame(f: &[u8]) -> Seen {
        let mut o = 12;
        if f[o..o + 2] == [0x81, 0x00] {
            o += 4;
        }
        let et = u16::from_be_bytes([f[o], f[o + 1]]);
        o += 2;
        let (proto, src, dst, l4, mut sum) = if et == 0x0800 {
            let ip = &f[o..o + 20];
            assert_eq!(
                packet::fold_checksum(packet::ones_sum(ip)),
                0,
                "IPv4 checksum"
            );
            let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            assert_eq!(tot, f.len() - o);
            let l4 = &f[o + 20..];
            let s = packet::ones_sum(&ip[12..20]) + u64::from(ip[9]) + l4.len() as u64;
            (ip[9], ip[12..16].to_vec(), ip[16..20].to_vec(), l4, s)
        } else {
            assert_eq!(et, 0x86dd);
            let ip = &f[o..o + 40];
            let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
            assert_eq!(plen, f.len() - o - 40);
            let l4 = &f[o + 40..];
            let s = packet::ones_sum(&ip[8..40]) + u64::from(ip[6]) + l4.len() as u64;
            (ip[6], ip[8..24].to_vec(), ip[24..40].to_vec(), l4, s)
        };
        let (sp, dp, flags) = match proto {
            6 | 17 => {
                sum += packet::ones_sum(l4);
                assert_eq!(
                    packet::fold_checksum(sum),
                    0,
                    "L4 checksum of proto {proto}"
                );
                let fl = if proto == 6 { l4[13] } else { 0 };
                (
                    u16::from_be_bytes([l4[0], l4[1]]),
                    u16::from_be_bytes([l4[2], l4[3]]),
                    fl,
                )
            }
            _ => (0, 0, 0),
        };
        Seen {
            proto,
            tuple: (src, dst, sp, dp),
            flags,
        }
    }

    #[test]
    fn same_seed_same_bytes_and_other_seed_differs() {
        let (a, sa) = gen(&cfg(7, 300_000, Mix::Full, 100));
        let (b, sb) = gen(&cfg(7, 300_000, Mix::Full, 100));
        let (c, _) = gen(&cfg(8, 300_000, Mix::Full, 100));
        assert_eq!(sa, sb);
        assert!(a == b, "same seed must give identical bytes");
        assert!(a != c, "another seed must give other bytes");
        let x = write_scenarios(&["dns", "esp"], 3, Format::Pcapng, &mut Vec::new()).unwrap();
        let y = write_scenarios(&["dns", "esp"], 3, Format::Pcapng, &mut Vec::new()).unwrap();
        assert_eq!(x, y);
    }

    #[test]
    fn every_frame_verifies_and_live_flows_are_distinct() {
        let (out, st) = gen(&cfg(11, 2_000_000, Mix::Handshake, 20_000));
        let seen = walk_pcap(&out);
        assert_eq!(seen.len() as u64, st.packets);
        assert_eq!(out.len() as u64, st.bytes);
        // Every SYN opens a distinct 5-tuple (distinct clients / ports per flow).
        let syns: Vec<_> = seen
            .iter()
            .filter(|s| s.proto == 6 && s.flags == packet::SYN)
            .collect();
        let uniq: HashSet<_> = syns.iter().map(|s| &s.tuple).collect();
        assert!(syns.len() > 1000);
        assert_eq!(uniq.len(), syns.len());
        // Both address families and VLAN tags are present.
        assert!(seen.iter().any(|s| s.tuple.0.len() == 16));
        assert!(seen.iter().any(|s| s.proto == 17));
    }

    #[test]
    fn every_scenario_writes_a_valid_capture() {
        for name in scenario_names() {
            let mut out = Vec::new();
            let st = write_scenarios(&[name], 1, Format::Pcap, &mut out).unwrap();
            assert!(st.packets > 0 && st.flows > 0, "{name}");
            assert_eq!(st.bytes, out.len() as u64, "{name}");
            let seen = walk_pcap(&out);
            assert_eq!(seen.len() as u64, st.packets, "{name}");
        }
    }

    #[test]
    fn pcapng_fixture_names_each_scenario_in_a_comment() {
        let mut out = Vec::new();
        let st = write_scenarios(&["cldap", "https-owa"], 1, Format::Pcapng, &mut out).unwrap();
        assert_eq!(st.bytes, out.len() as u64);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("scenario cldap"));
        assert!(text.contains("scenario https-owa"));
    }

    #[test]
    fn unknown_scenario_is_invalid_input() {
        let mut out = Vec::new();
        let e = write_scenarios(&["dns", "no-such"], 1, Format::Pcap, &mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(out.is_empty());
    }

    #[test]
    fn scenarios_show_their_markers() {
        let bytes = |n: &str| {
            let mut out = Vec::new();
            write_scenarios(&[n], 1, Format::Pcap, &mut out).unwrap();
            out
        };
        let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        assert!(has(&bytes("smtp-starttls-refused"), b"454 4.7.0"));
        assert!(has(
            &bytes("smtp-hub-hub-anonymoustls"),
            b"X-ANONYMOUSTLS\r\n"
        ));
        assert!(has(&bytes("http-owa-forms-clear"), b"password=Summer2026"));
        assert!(has(&bytes("smb3-encrypted"), &[0xfd, b'S', b'M', b'B']));
        assert!(has(
            &bytes("http-outlook-anywhere"),
            b"RPC_IN_DATA /rpc/rpcproxy.dll?mbx.contoso.com:6001"
        ));
        // ESP frames: IPv4 protocol 50.
        let esp = bytes("esp");
        assert!(walk_pcap(&esp).iter().all(|s| s.proto == 50));
        // VLAN scenario frames carry an 802.1Q tag.
        let v = bytes("vlan-smtp");
        assert_eq!(&v[24 + 16 + 12..24 + 16 + 14], &[0x81, 0x00]);
    }

    fn avg_frame(st: &Stats) -> f64 {
        (st.bytes - 24 - 16 * st.packets) as f64 / st.packets as f64
    }

    #[test]
    fn target_is_met_within_a_few_percent_with_plausible_frames() {
        let target = 5_000_000u64;
        for (mix, conc, lo, hi) in [
            (Mix::Handshake, 2_000, 80.0, 150.0),
            (Mix::Bulk, 4, 600.0, 900.0),
            (Mix::Full, 500, 150.0, 900.0),
        ] {
            let t = std::time::Instant::now();
            let (out, st) = gen(&cfg(5, target, mix, conc));
            let secs = t.elapsed().as_secs_f64();
            let avg = avg_frame(&st);
            println!(
                "{mix:?}: {} packets, {} flows, avg frame {avg:.0} B, {:.0} MB/s (debug build: not a benchmark)",
                st.packets,
                st.flows,
                st.bytes as f64 / secs / 1e6
            );
            assert_eq!(out.len() as u64, st.bytes);
            let dev = (st.bytes as f64 - target as f64).abs() / target as f64;
            assert!(
                dev < 0.03,
                "{mix:?}: {} bytes for a {target} target",
                st.bytes
            );
            assert!(avg > lo && avg < hi, "{mix:?}: average frame {avg}");
        }
    }

    #[test]
    fn pool_and_v6_mapping_follow_the_plan() {
        assert_eq!(pool_client(0), [10, 2, 0, 1]);
        assert_eq!(pool_client(254), [10, 2, 1, 1]);
        let cas = v6_of(scenarios::CAS);
        assert_eq!(&cas[..6], &[0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01]);
        assert_eq!(&cas[12..], &[0x00, 0x00, 0x00, 0x20]);
    }
}
