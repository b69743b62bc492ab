//! One capture from frames to flows: read and decode on this thread, place each packet
//! with the flow table, and hand the rest to shards, inline or on worker threads. Several
//! captures run in parallel on a rayon pool.

use super::shard::{Kind, Msg, PacketMsg, Shard, ShardConfig};
use super::table::{Event, FlowLimits, PacketView, Table, TableStats};
use super::{Flow, ReassemblyLimits, Transport};
use crate::capture::{read_capture, FileSummary, Frame, Source};
use crate::decode::{DecodeStats, Decoder, DefragLimits, Outcome, L4};
use crate::error::CaptureError;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use rayon::prelude::*;
use std::net::SocketAddr;

/// Everything that tunes the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads; 1 runs everything on the calling thread.
    pub threads: usize,
    pub flow: FlowLimits,
    pub reassembly: ReassemblyLimits,
    pub defrag: DefragLimits,
    /// Advanced by the bytes read (a terminal progress bar); `None` for quiet runs.
    pub progress: Option<indicatif::ProgressBar>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            threads: 1,
            flow: FlowLimits::default(),
            reassembly: ReassemblyLimits::default(),
            defrag: DefragLimits::default(),
            progress: None,
        }
    }
}

/// The result for one capture.
#[derive(Debug)]
pub struct FileResult {
    pub path: String,
    pub summary: FileSummary,
    pub decode: DecodeStats,
    pub table: TableStats,
    /// Sorted by first frame, stream indices assigned.
    pub flows: Vec<Flow>,
    /// Fatal for the file when nothing could be read; a warning when `summary.frames > 0`
    /// and the capture was damaged part way (the flows cover everything before it).
    pub error: Option<CaptureError>,
}

/// The results for every capture, in the order given.
#[derive(Debug)]
pub struct Analysis {
    pub files: Vec<FileResult>,
}

/// Analyse captures: one at a time with shards when there is one, else several at once.
pub fn analyze(sources: &[Source], cfg: &EngineConfig) -> Analysis {
    let threads = cfg.threads.max(1);
    if sources.len() <= 1 || threads == 1 {
        return Analysis {
            files: sources
                .iter()
                .map(|s| analyze_file(s, cfg, threads))
                .collect(),
        };
    }
    let files = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(|| {
            sources
                .par_iter()
                .map(|s| analyze_file(s, cfg, 1))
                .collect()
        }),
        Err(_) => sources.iter().map(|s| analyze_file(s, cfg, 1)).collect(),
    };
    Analysis { files }
}

/// Payload bytes per batch before it is sent to its shard.
const BATCH_BYTES: usize = 256 * 1024;
/// Messages per batch before it is sent.
const BATCH_MSGS: usize = 1024;
/// Batches in flight per shard: bounds memory whatever the file size.
const BATCHES_IN_FLIGHT: usize = 4;

#[derive(Default)]
struct Batch {
    msgs: Vec<Msg>,
    data: Vec<u8>,
}

enum Dispatch {
    Inline(Shard),
    Workers {
        batches: Vec<Batch>,
        senders: Vec<Sender<Batch>>,
        recycled: Receiver<Batch>,
    },
}

impl Dispatch {
    fn shards(&self) -> usize {
        match self {
            Dispatch::Inline(_) => 1,
            Dispatch::Workers { senders, .. } => senders.len(),
        }
    }

    fn send(&mut self, shard: usize, msg: Msg, payload: &[u8]) {
        match self {
            Dispatch::Inline(s) => s.handle(&msg, payload),
            Dispatch::Workers {
                batches,
                senders,
                recycled,
            } => {
                let Some(b) = batches.get_mut(shard) else {
                    return;
                };
                let msg = match msg {
                    Msg::Packet(mut p) => {
                        p.start = b.data.len() as u32;
                        p.len = payload.len() as u32;
                        b.data.extend_from_slice(payload);
                        Msg::Packet(p)
                    }
                    m => m,
                };
                b.msgs.push(msg);
                if b.msgs.len() >= BATCH_MSGS || b.data.len() >= BATCH_BYTES {
                    let fresh = recycled.try_recv().unwrap_or_default();
                    let full = std::mem::replace(b, fresh);
                    if let Some(tx) = senders.get(shard) {
                        // A worker only stops when the channel closes, so this cannot fail
                        // while we hold the sender; ignore the impossible error.
                        let _ = tx.send(full);
                    }
                }
            }
        }
    }

    fn flush(&mut self) {
        if let Dispatch::Workers {
            batches, senders, ..
        } = self
        {
            for (b, tx) in batches.iter_mut().zip(senders.iter()) {
                if !b.msgs.is_empty() {
                    let _ = tx.send(std::mem::take(b));
                }
            }
        }
    }
}

/// Analyse one capture with `threads` threads (the reader plus `threads - 1` shards).
pub fn analyze_file(source: &Source, cfg: &EngineConfig, threads: usize) -> FileResult {
    let shard_cfg = ShardConfig {
        reassembly: cfg.reassembly,
    };
    let workers = threads.saturating_sub(1);
    let mut summary = FileSummary::default();
    let mut decoder = Decoder::new(cfg.defrag);
    let (error, table, flows) = if workers == 0 {
        let mut dispatch = Dispatch::Inline(Shard::new(shard_cfg));
        let (error, table) = read_all(source, cfg, &mut summary, &mut decoder, &mut dispatch);
        let flows = match dispatch {
            Dispatch::Inline(s) => s.into_flows(),
            Dispatch::Workers { .. } => Vec::new(),
        };
        (error, table, flows)
    } else {
        std::thread::scope(|scope| {
            let (recycle_tx, recycle_rx) = unbounded::<Batch>();
            let mut senders = Vec::new();
            let mut handles = Vec::new();
            for _ in 0..workers {
                let (tx, rx) = bounded::<Batch>(BATCHES_IN_FLIGHT);
                senders.push(tx);
                let back = recycle_tx.clone();
                handles.push(scope.spawn(move || {
                    let mut shard = Shard::new(shard_cfg);
                    for mut batch in rx {
                        for m in &batch.msgs {
                            shard.handle(m, &batch.data);
                        }
                        batch.msgs.clear();
                        batch.data.clear();
                        let _ = back.send(batch);
                    }
                    shard.into_flows()
                }));
            }
            let mut dispatch = Dispatch::Workers {
                batches: (0..workers).map(|_| Batch::default()).collect(),
                senders,
                recycled: recycle_rx,
            };
            let (error, table) = read_all(source, cfg, &mut summary, &mut decoder, &mut dispatch);
            drop(dispatch); // closes the channels: workers drain and return
            let mut flows = Vec::new();
            for h in handles {
                match h.join() {
                    Ok(f) => flows.extend(f),
                    Err(p) => std::panic::resume_unwind(p),
                }
            }
            (error, table, flows)
        })
    };
    let mut flows = flows;
    number_streams(&mut flows);
    FileResult {
        path: source.display().display().to_string(),
        summary,
        decode: decoder.stats().clone(),
        table,
        flows,
        error,
    }
}

fn read_all(
    source: &Source,
    cfg: &EngineConfig,
    summary: &mut FileSummary,
    decoder: &mut Decoder,
    dispatch: &mut Dispatch,
) -> (Option<CaptureError>, TableStats) {
    let mut table = Table::new(cfg.flow, dispatch.shards());
    let mut unreported = 0u64;
    let res = read_capture(source, summary, |frame: &Frame| {
        if let Some(pb) = &cfg.progress {
            // Record header plus captured bytes: close to the file's size when uncompressed.
            unreported += frame.data.len() as u64 + 16;
            if unreported >= 1 << 20 {
                pb.inc(unreported);
                unreported = 0;
            }
        }
        on_frame(frame, decoder, &mut table, dispatch);
    });
    if let Some(pb) = &cfg.progress {
        pb.inc(unreported);
    }
    table.finish();
    forward_events(&mut table, dispatch);
    dispatch.flush();
    (res.err(), table.stats)
}

fn forward_events(table: &mut Table, dispatch: &mut Dispatch) {
    for e in table.events.drain(..) {
        match e {
            Event::Open(shard, o) => dispatch.send(shard, Msg::Open(o), &[]),
            Event::Close {
                shard,
                flow_id,
                reason,
            } => dispatch.send(shard, Msg::Close { flow_id, reason }, &[]),
        }
    }
}

fn on_frame(frame: &Frame, decoder: &mut Decoder, table: &mut Table, dispatch: &mut Dispatch) {
    let Outcome::Packet(p) = decoder.decode(frame.linktype, frame.data, frame.ts_ns, frame.number)
    else {
        return;
    };
    let (transport, sport, dport, seq, ack, flags, payload, kind, spi) = match &p.l4 {
        L4::Tcp(t) => (
            Transport::Tcp,
            t.src_port,
            t.dst_port,
            t.seq,
            t.ack,
            t.flags,
            t.payload,
            Kind::Tcp,
            None,
        ),
        L4::Udp {
            src_port,
            dst_port,
            payload,
        } => (
            Transport::Udp,
            *src_port,
            *dst_port,
            0,
            0,
            0,
            *payload,
            Kind::Udp,
            None,
        ),
        L4::Esp { spi } => (Transport::Esp, 0, 0, 0, 0, 0, &[][..], Kind::Esp, *spi),
        L4::Other { proto } => (
            Transport::Ip(*proto),
            0,
            0,
            0,
            0,
            0,
            &[][..],
            Kind::Other,
            None,
        ),
    };
    let kind = if p.icmp_error { Kind::IcmpError } else { kind };
    let view = PacketView {
        transport,
        src: SocketAddr::new(p.src, sport),
        dst: SocketAddr::new(p.dst, dport),
        seq,
        flags,
        icmp_error: p.icmp_error,
    };
    let place = table.place(&view, frame.number, frame.ts_ns);
    forward_events(table, dispatch);
    let payload = if p.icmp_error { &[][..] } else { payload };
    let msg = PacketMsg {
        flow_id: place.flow_id,
        dir: place.dir,
        frame: frame.number,
        ts_ns: frame.ts_ns,
        wire_len: frame.orig_len,
        kind,
        seq,
        ack,
        flags,
        spi,
        start: 0,
        len: payload.len() as u32,
        truncated: p.truncated,
        ah: p.ah,
        tunneled: p.tunnel_depth > 0,
        frag_conflict: p.frag_conflict,
    };
    dispatch.send(place.shard, Msg::Packet(msg), payload);
}

/// Sort flows by first frame and give each TCP and UDP flow Wireshark's stream index:
/// conversations numbered in the order of the frames that created them.
fn number_streams(flows: &mut [Flow]) {
    flows.sort_by_key(|f| (f.first_frame, f.id));
    for t in [Transport::Tcp, Transport::Udp] {
        let mut convs: Vec<u64> = flows
            .iter()
            .filter(|f| f.transport == t)
            .map(|f| f.conversation_frame)
            .collect();
        convs.sort_unstable();
        convs.dedup();
        for f in flows.iter_mut().filter(|f| f.transport == t) {
            f.stream = convs
                .binary_search(&f.conversation_frame)
                .ok()
                .map(|i| i as u64);
        }
    }
}
