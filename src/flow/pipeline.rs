//! One capture from frames to flows: read and decode on this thread, place each packet
//! with the flow table, and hand the rest to shards, inline or on worker threads (then a
//! writer thread hands finished flows to the sink).
//! Finished flows reach a [`FlowSink`] as they end, in the order the table closed them
//! (a deterministic order, whatever the thread count), so memory holds live flows only,
//! never the whole file. Several captures run in parallel on a rayon pool.

use super::shard::{Kind, Msg, PacketMsg, Shard, ShardConfig, MAX_UNSENT, NO_BYTES};
use super::table::{Event, FlowLimits, PacketView, Table, TableStats};
use super::{Flow, ReassemblyLimits, Transport};
use crate::capture::{
    read_capture_capped, read_capture_into, FileSummary, Frame, FrameSink, Source, READ_BUFFER,
};
use crate::decode::{DecodeStats, Decoder, DefragLimits, Outcome, L4};
use crate::error::CaptureError;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::ops::ControlFlow;

/// Everything that tunes the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads; 1 runs everything on the calling thread.
    pub threads: usize,
    pub flow: FlowLimits,
    pub reassembly: ReassemblyLimits,
    pub defrag: DefragLimits,
    /// Caps the protocol analyzers read.
    pub proto: crate::limits::ProtoLimits,
    /// Largest captured length accepted for one packet record.
    pub max_record: u32,
    /// Called between the passes of a run that makes several (`audit`), so that the
    /// allocator can hand back what one pass freed before the next one allocates; set by
    /// the program, which knows its allocator. `None`: nothing to do.
    pub release_memory: Option<fn()>,
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
            proto: crate::limits::ProtoLimits::DEFAULT,
            max_record: crate::capture::MAX_CAPLEN,
            release_memory: None,
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
    /// Flow records written to the sink.
    pub flows: u64,
    /// Fatal for the file when nothing could be read; a warning when `summary.frames > 0`
    /// and the capture was damaged part way (the flows cover everything before it).
    pub error: Option<CaptureError>,
    /// Payload bytes not copied to a shard because it only counted them (encrypted or
    /// unrecognised TCP flows). Work saved, not a property of the capture: it depends on
    /// the thread count and timing, so no report shows it.
    pub unsent_payload_bytes: u64,
}

/// Receives each flow record once it has ended. The record stays the pipeline's: it goes
/// back to a shard to be freed, with one shard (2 threads) the one that built it, which
/// costs the allocator less than freeing it on the thread that hands it to the sink.
/// (With more shards the batches go back to whichever shard asks first.)
pub trait FlowSink: Send {
    fn flow(&mut self, flow: &mut Flow);
}

impl FlowSink for Vec<Flow> {
    fn flow(&mut self, flow: &mut Flow) {
        self.push(flow.clone());
    }
}

/// Analyse captures, one sink per capture (`make_sink(index)`): one capture at a time
/// with shards when there is one, else several at once on `threads` workers. Results
/// come back in the order given, each with its sink.
pub fn analyze<S: FlowSink>(
    sources: &[Source],
    cfg: &EngineConfig,
    make_sink: impl Fn(usize) -> S + Sync,
) -> Vec<(FileResult, S)> {
    let threads = cfg.threads.max(1);
    let one = |(i, s): (usize, &Source), threads: usize| {
        let mut sink = make_sink(i);
        let r = analyze_file(s, cfg, threads, &mut sink);
        (r, sink)
    };
    if sources.len() <= 1 || threads == 1 {
        return sources
            .iter()
            .enumerate()
            .map(|x| one(x, threads))
            .collect();
    }
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(|| sources.par_iter().enumerate().map(|x| one(x, 1)).collect()),
        Err(_) => sources.iter().enumerate().map(|x| one(x, 1)).collect(),
    }
}

/// Analyse one capture and keep every flow, sorted by transport and stream index (ESP
/// and other transports last, by first frame). Memory grows with the flow count: meant
/// for tests, benches and small captures.
pub fn collect_file(
    source: &Source,
    cfg: &EngineConfig,
    threads: usize,
) -> (FileResult, Vec<Flow>) {
    let mut flows = Vec::new();
    let r = analyze_file(source, cfg, threads, &mut flows);
    sort_flows(&mut flows);
    (r, flows)
}

/// Order for people: TCP streams, then UDP streams, then the rest, each by index / first frame.
pub fn sort_flows(flows: &mut [Flow]) {
    flows.sort_by_key(order_key);
}

/// The key [`sort_flows`] orders by: (transport rank, stream, first frame, id).
pub fn order_key(f: &Flow) -> (u8, Option<u64>, u64, u64) {
    let rank = match f.transport {
        Transport::Tcp => 0,
        Transport::Udp => 1,
        _ => 2,
    };
    (rank, f.stream, f.first_frame, f.id)
}

/// Payload bytes per batch before it is sent to its shard.
const BATCH_BYTES: usize = 256 * 1024;
/// Messages per batch before it is sent.
const BATCH_MSGS: usize = 1024;
/// Batches in flight per shard: bounds memory whatever the file size.
const BATCHES_IN_FLIGHT: usize = 4;
/// Batches of finished flows waiting for the writer thread.
const DONE_IN_FLIGHT: usize = 8;

#[derive(Default)]
struct Batch {
    msgs: Vec<Msg>,
    data: Vec<u8>,
}

enum Dispatch<'s> {
    /// One shard on the reader thread, writing straight to the sink.
    Inline(Shard, &'s mut dyn FlowSink, u64),
    /// Shards on worker threads; their finished flows go to a writer thread that puts
    /// them back in close order for the sink.
    Workers {
        batches: Vec<Batch>,
        senders: Vec<Sender<Batch>>,
        recycled: Receiver<Batch>,
        /// Flows whose shard now only counts their payload (see [`Shard::quiet`]).
        quiet: Receiver<Vec<(u32, u64)>>,
        /// Payload bytes sent as a length only.
        unsent: u64,
    },
}

impl Dispatch<'_> {
    fn shards(&self) -> usize {
        match self {
            Dispatch::Inline(..) => 1,
            Dispatch::Workers { senders, .. } => senders.len(),
        }
    }

    /// Tell the table which flows no longer need their payload bytes sent.
    fn quiet_flows(&mut self, table: &mut Table) {
        match self {
            // Nothing is copied on the reader thread: the bytes cost nothing to pass.
            Dispatch::Inline(s, ..) => s.quiet.clear(),
            Dispatch::Workers { quiet, .. } => {
                while let Ok(v) = quiet.try_recv() {
                    for (slot, flow_id) in v {
                        table.payload_unneeded(slot, flow_id);
                    }
                }
            }
        }
    }

    fn send(&mut self, shard: usize, msg: Msg, payload: &[u8]) {
        match self {
            Dispatch::Inline(s, sink, written) => {
                s.handle(&msg, payload);
                for (_, mut f) in s.done.drain(..) {
                    sink.flow(&mut f);
                    *written += 1;
                }
            }
            Dispatch::Workers {
                batches,
                senders,
                recycled,
                unsent,
                ..
            } => {
                let Some(b) = batches.get_mut(shard) else {
                    return;
                };
                let msg = match msg {
                    Msg::Packet(p) if p.start == NO_BYTES => {
                        *unsent += u64::from(p.len);
                        Msg::Packet(p)
                    }
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

/// A finished flow waiting for the ones closed before it.
struct Pending(u64, Box<Flow>);

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.cmp(&o.0)
    }
}

/// Puts finished flows from all shards back in close order before the sink sees them.
#[derive(Default)]
struct Orderer {
    heap: BinaryHeap<Reverse<Pending>>,
    next: u64,
    written: u64,
}

impl Orderer {
    /// Hands on, in close order, what can go now. `batch` is left holding the flows
    /// handed on, to go back to the shards and be freed there (see [`FlowSink`]).
    fn push(&mut self, batch: &mut Vec<(u64, Flow)>, sink: &mut dyn FlowSink) {
        // In order (always, with one shard): handed on in place, no detour through the heap.
        let mut handed = 0;
        while self.heap.is_empty() {
            let Some((seq, f)) = batch.get_mut(handed) else {
                break;
            };
            if *seq != self.next {
                break;
            }
            sink.flow(f);
            self.written += 1;
            self.next += 1;
            handed += 1;
        }
        for (seq, f) in batch.drain(handed..) {
            self.heap.push(Reverse(Pending(seq, Box::new(f))));
        }
        while self.heap.peek().is_some_and(|Reverse(p)| p.0 == self.next) {
            if let Some(Reverse(mut p)) = self.heap.pop() {
                sink.flow(&mut p.1);
                self.written += 1;
                self.next += 1;
                batch.push((p.0, *p.1));
            }
        }
    }

    /// Only a gap in the sequence (a bug) leaves anything here: still write it all.
    fn finish(mut self, sink: &mut dyn FlowSink) -> u64 {
        while let Some(Reverse(mut p)) = self.heap.pop() {
            sink.flow(&mut p.1);
            self.written += 1;
        }
        self.written
    }
}

/// Analyse one capture with `threads` threads, handing every flow to `sink` as it ends.
/// One thread does everything; with more, `threads - 1` shards run the analyzers while
/// a framing thread reads the capture, this thread decodes and places packets in the
/// flow table, and a writer thread hands finished flows to the sink in close order.
pub fn analyze_file(
    source: &Source,
    cfg: &EngineConfig,
    threads: usize,
    sink: &mut dyn FlowSink,
) -> FileResult {
    let mut labelled = crate::classify::EpmLabels::new(sink);
    let sink: &mut dyn FlowSink = &mut labelled;
    let shard_cfg = ShardConfig {
        reassembly: cfg.reassembly,
        proto: cfg.proto,
    };
    let workers = threads.saturating_sub(1);
    let mut summary = FileSummary::default();
    let mut decoder = Decoder::new(cfg.defrag);
    let (error, table, flows, unsent_payload_bytes) = if workers == 0 {
        let mut dispatch = Dispatch::Inline(Shard::new(shard_cfg), sink, 0);
        let (error, table) = read_all(source, cfg, &mut summary, &mut decoder, &mut dispatch);
        let written = match dispatch {
            Dispatch::Inline(mut shard, sink, written) => {
                let rest = shard.leftovers();
                let n = rest.len() as u64;
                for mut f in rest {
                    sink.flow(&mut f);
                }
                written + n
            }
            Dispatch::Workers { .. } => 0,
        };
        (error, table, written, 0)
    } else {
        std::thread::scope(|scope| {
            let (recycle_tx, recycle_rx) = unbounded::<Batch>();
            // Finished flows go to a writer thread of their own: the reader (framing,
            // decoding, the flow table) is the busiest thread, and writing records was a
            // sixth of its work. Bounded: a slow sink holds the workers, which hold the
            // reader, so records never pile up. The writer waits on nobody, so no cycle.
            let (done_tx, done_rx) = bounded::<Vec<(u64, Flow)>>(DONE_IN_FLIGHT);
            // Batches of finished flows go back to the shards, holding the flows the
            // sink was handed: a shard frees them (with one shard, it built them; see
            // [`FlowSink`]) and fills the batch again, instead of each batch being
            // allocated by a shard and freed by the writer (the end of a capture closes
            // every live flow at once: a batch per 1024). A new batch is made only when
            // none is waiting, so the batches, and the handed flows they hold until a
            // shard next finishes a flow, stay about `DONE_IN_FLIGHT` plus two per shard.
            let (done_back_tx, done_back_rx) = unbounded::<Vec<(u64, Flow)>>();
            let (quiet_tx, quiet_rx) = unbounded::<Vec<(u32, u64)>>();
            let mut senders = Vec::new();
            let mut handles = Vec::new();
            for _ in 0..workers {
                let (tx, rx) = bounded::<Batch>(BATCHES_IN_FLIGHT);
                senders.push(tx);
                let back = recycle_tx.clone();
                let done = done_tx.clone();
                let done_back = done_back_rx.clone();
                let quiet = quiet_tx.clone();
                handles.push(scope.spawn(move || {
                    let mut shard = Shard::new(shard_cfg);
                    for mut batch in rx {
                        for m in &batch.msgs {
                            shard.handle(m, &batch.data);
                        }
                        if !shard.done.is_empty() {
                            let mut empty = done_back.try_recv().unwrap_or_default();
                            empty.clear();
                            let _ = done.send(std::mem::replace(&mut shard.done, empty));
                        }
                        if !shard.quiet.is_empty() {
                            let _ = quiet.send(std::mem::take(&mut shard.quiet));
                        }
                        batch.msgs.clear();
                        batch.data.clear();
                        let _ = back.send(batch);
                    }
                    // Never closed by the table (cannot happen): written last, not lost.
                    let rest: Vec<(u64, Flow)> = shard
                        .leftovers()
                        .into_iter()
                        .map(|f| (u64::MAX, f))
                        .collect();
                    if !rest.is_empty() {
                        let _ = done.send(rest);
                    }
                }));
            }
            drop(done_tx);
            drop(done_back_rx);
            drop(quiet_tx);
            let writer = scope.spawn(move || {
                let mut order = Orderer::default();
                for mut b in &done_rx {
                    order.push(&mut b, &mut *sink);
                    // Dropped here instead when the shards are gone.
                    let _ = done_back_tx.send(b);
                }
                order.finish(&mut *sink)
            });
            let mut dispatch = Dispatch::Workers {
                batches: (0..workers).map(|_| Batch::default()).collect(),
                senders,
                recycled: recycle_rx,
                quiet: quiet_rx,
                unsent: 0,
            };
            let (error, table) = read_all(source, cfg, &mut summary, &mut decoder, &mut dispatch);
            let mut unsent_bytes = 0;
            if let Dispatch::Workers {
                senders, unsent, ..
            } = dispatch
            {
                unsent_bytes = unsent;
                drop(senders); // workers drain their channels and return
            }
            for h in handles {
                if let Err(p) = h.join() {
                    std::panic::resume_unwind(p);
                }
            }
            // The workers are gone, so `done` is closed and the writer ends.
            let written = match writer.join() {
                Ok(n) => n,
                Err(p) => std::panic::resume_unwind(p),
            };
            (error, table, written, unsent_bytes)
        })
    };
    FileResult {
        path: source.display().display().to_string(),
        summary,
        decode: decoder.stats().clone(),
        table,
        flows,
        error,
        unsent_payload_bytes,
    }
}

/// Reads the capture, on this thread with one shard, else on a framing thread of its
/// own that hands frames over in batches: the read system call, the record framing and
/// the copy then run beside the decoding and the flow table (the busiest thread).
fn read_all(
    source: &Source,
    cfg: &EngineConfig,
    summary: &mut FileSummary,
    decoder: &mut Decoder,
    dispatch: &mut Dispatch,
) -> (Option<CaptureError>, TableStats) {
    let mut table = Table::new(cfg.flow, dispatch.shards());
    let on_thread = matches!(dispatch, Dispatch::Inline(..));
    let mut each = |frame: &Frame| {
        on_frame(frame, decoder, &mut table, dispatch);
        if frame.number % 1024 == 0 {
            dispatch.quiet_flows(&mut table);
        }
    };
    let res = if !on_thread {
        framed(source, cfg, summary, &mut each)
    } else {
        let mut progress = Progress::new(cfg);
        let res = read_capture_capped(source, cfg.max_record, summary, |frame| {
            progress.frame(frame);
            each(frame);
        });
        progress.finish();
        res
    };
    table.finish_with(|events| forward(events, dispatch));
    dispatch.flush();
    (res.err(), table.stats)
}

/// Advances the progress bar by whole MiB of records read.
struct Progress<'a> {
    bar: Option<&'a indicatif::ProgressBar>,
    unreported: u64,
}

impl<'a> Progress<'a> {
    fn new(cfg: &'a EngineConfig) -> Self {
        Progress {
            bar: cfg.progress.as_ref(),
            unreported: 0,
        }
    }

    fn frame(&mut self, frame: &Frame) {
        if let Some(pb) = self.bar {
            // Record header plus captured bytes: close to the file's size when uncompressed.
            self.unreported += frame.data.len() as u64 + 16;
            if self.unreported >= 1 << 20 {
                pb.inc(self.unreported);
                self.unreported = 0;
            }
        }
    }

    fn finish(self) {
        if let Some(pb) = self.bar {
            pb.inc(self.unreported);
        }
    }
}

/// Batches of frames in flight: bounds memory whatever the file size. A batch is one
/// read buffer ([`crate::capture::READ_BUFFER`]) and the frames in it.
pub(super) const FRAME_BATCHES_IN_FLIGHT: usize = 4;

/// A frame of a [`FrameBatch`], its bytes at `start..start + len` of the batch's data.
struct FrameMeta {
    number: u64,
    ts_ns: i64,
    linktype: u32,
    orig_len: u32,
    start: usize,
    len: usize,
}

/// A read buffer, as the reader filled it, and the frames in it: the frames are not
/// copied out of the buffer the file was read into.
#[derive(Default)]
struct FrameBatch {
    frames: Vec<FrameMeta>,
    data: Vec<u8>,
    /// The buffer's length when it was sent (the decoding side frees a grown one).
    sent: usize,
}

/// Bytes of read buffers out on the way to the decoding thread or back before the
/// framing thread waits for one to come back. Never reached by 1 MiB buffers (the queue
/// holds [`FRAME_BATCHES_IN_FLIGHT`]); buffers grown for huge blocks (up to
/// [`crate::capture::MAX_BUFFER`]) would otherwise be in flight several at a time.
const FRAME_BYTES_IN_FLIGHT: usize = (FRAME_BATCHES_IN_FLIGHT + 2) * READ_BUFFER;

/// The framing thread's side of the batches: the frames of the buffer being read into,
/// and the channels.
struct Batcher<'a> {
    frames: Vec<FrameMeta>,
    /// The frame vector of the returned batch whose buffer is being read into.
    spare: Vec<FrameMeta>,
    full: Sender<FrameBatch>,
    empty: Receiver<FrameBatch>,
    /// Bytes sent and not yet taken back (see [`FRAME_BYTES_IN_FLIGHT`]).
    in_flight: usize,
    progress: Progress<'a>,
}

impl<'a> Batcher<'a> {
    fn new(full: Sender<FrameBatch>, empty: Receiver<FrameBatch>, cfg: &'a EngineConfig) -> Self {
        Batcher {
            frames: Vec::new(),
            spare: Vec::new(),
            full,
            empty,
            in_flight: 0,
            progress: Progress::new(cfg),
        }
    }
}

impl FrameSink for Batcher<'_> {
    fn frame(&mut self, frame: &Frame, start: usize) -> ControlFlow<()> {
        self.progress.frame(frame);
        self.frames.push(FrameMeta {
            number: frame.number,
            ts_ns: frame.ts_ns,
            linktype: frame.linktype,
            orig_len: frame.orig_len,
            start,
            len: frame.data.len(),
        });
        ControlFlow::Continue(())
    }

    fn fresh(&mut self) -> Vec<u8> {
        let mut back = self.empty.try_recv().ok();
        loop {
            if let Some(b) = &back {
                self.in_flight -= b.sent;
            }
            if self.in_flight <= FRAME_BYTES_IN_FLIGHT {
                break;
            }
            // Over the budget: wait for the decoding side to give a buffer back. Gone
            // (it panicked): the next `done` stops the read.
            back = self.empty.recv().ok();
            if back.is_none() {
                break;
            }
        }
        match back {
            Some(b) => {
                self.spare = b.frames;
                b.data
            }
            None => Vec::new(),
        }
    }

    fn done(&mut self, data: Vec<u8>) -> ControlFlow<()> {
        let mut frames = std::mem::take(&mut self.spare);
        frames.clear();
        std::mem::swap(&mut frames, &mut self.frames);
        let sent = data.len();
        self.in_flight += sent;
        match self.full.send(FrameBatch { frames, data, sent }) {
            Ok(()) => ControlFlow::Continue(()),
            // The decoding side is gone (it panicked): stop reading.
            Err(_) => ControlFlow::Break(()),
        }
    }
}

/// Frames the capture on a thread of its own and calls `each` here for every frame, in
/// order. Returns what reading returned (the summary is filled by the framing thread).
pub(super) fn framed(
    source: &Source,
    cfg: &EngineConfig,
    summary: &mut FileSummary,
    each: &mut dyn FnMut(&Frame),
) -> Result<(), CaptureError> {
    std::thread::scope(|scope| {
        // Made in here so that a panic below drops the receiver before the scope waits
        // for the framing thread, which then stops sending instead of blocking.
        let (full_tx, full_rx) = bounded::<FrameBatch>(FRAME_BATCHES_IN_FLIGHT);
        let (empty_tx, empty_rx) = unbounded::<FrameBatch>();
        let framer = scope.spawn(move || {
            let mut batcher = Batcher::new(full_tx, empty_rx, cfg);
            let res = read_capture_into(source, cfg.max_record, summary, &mut batcher);
            batcher.progress.finish();
            res
        });
        for mut batch in &full_rx {
            for m in &batch.frames {
                let frame = Frame {
                    number: m.number,
                    ts_ns: m.ts_ns,
                    linktype: m.linktype,
                    data: batch.data.get(m.start..m.start + m.len).unwrap_or_default(),
                    orig_len: m.orig_len,
                };
                each(&frame);
            }
            batch.frames.clear();
            // A buffer grown for a huge block gives that memory back rather than keep it.
            if batch.data.len() > 2 * READ_BUFFER {
                batch.data = Vec::new();
            }
            let _ = empty_tx.send(batch);
        }
        match framer.join() {
            Ok(res) => res,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

fn forward_events(table: &mut Table, dispatch: &mut Dispatch) {
    forward(&mut table.events, dispatch);
}

fn forward(events: &mut Vec<Event>, dispatch: &mut Dispatch) {
    for e in events.drain(..) {
        match e {
            Event::Open(shard, o) => dispatch.send(shard, Msg::Open(o), &[]),
            Event::Close {
                shard,
                flow_id,
                slot,
                reason,
                seq,
            } => dispatch.send(
                shard,
                Msg::Close {
                    flow_id,
                    slot,
                    reason,
                    seq,
                },
                &[],
            ),
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
        len: payload.len() as u32,
        ack,
        icmp_error: p.icmp_error,
    };
    let place = table.place(&view, frame.number, frame.ts_ns);
    forward_events(table, dispatch);
    let payload = if p.icmp_error { &[][..] } else { payload };
    // A flow whose shard only counts its payload (encrypted, or never recognised) gets
    // the length without the bytes: no copy into the batch.
    let unsent =
        !place.payload && kind == Kind::Tcp && !payload.is_empty() && payload.len() <= MAX_UNSENT;
    let msg = PacketMsg {
        flow_id: place.flow_id,
        slot: place.slot,
        dir: place.dir,
        frame: frame.number,
        ts_ns: frame.ts_ns,
        wire_len: frame.orig_len,
        kind,
        seq,
        ack,
        flags,
        spi,
        start: if unsent { NO_BYTES } else { 0 },
        len: payload.len() as u32,
        truncated: p.truncated,
        ah: p.ah,
        tunneled: p.tunnel_depth > 0,
        frag_conflict: p.frag_conflict,
    };
    dispatch.send(
        place.shard,
        Msg::Packet(msg),
        if unsent { &[][..] } else { payload },
    );
    table.after_packet();
    forward_events(table, dispatch);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that notes the order flows come in, and marks each flow it was handed.
    struct Seen(Vec<u64>);

    impl FlowSink for Seen {
        fn flow(&mut self, flow: &mut Flow) {
            self.0.push(flow.id);
            flow.first_frame = u64::MAX;
        }
    }

    fn batch(seqs: &[u64]) -> Vec<(u64, Flow)> {
        seqs.iter()
            .map(|&s| {
                let mut f = Flow::sample(Transport::Tcp, "10.0.0.1:50000", "10.0.0.2:80");
                f.id = s;
                (s, f)
            })
            .collect()
    }

    /// Flows reach the sink in close order whatever order the shards' batches bring
    /// them in, each once; every flow handed on goes back in the batch (to be freed by
    /// a shard), and those still waiting for an earlier one stay with the orderer.
    #[test]
    fn orderer_hands_on_in_close_order_and_gives_the_flows_back() {
        let mut order = Orderer::default();
        let mut sink = Seen(Vec::new());
        let mut back = Vec::new();
        for seqs in [&[0, 1, 3][..], &[5, 4], &[2], &[6, 7]] {
            let mut b = batch(seqs);
            order.push(&mut b, &mut sink);
            assert!(b
                .iter()
                .all(|(s, f)| f.id == *s && f.first_frame == u64::MAX));
            back.push(b.iter().map(|(s, _)| *s).collect::<Vec<_>>());
        }
        assert_eq!(sink.0, (0..8).collect::<Vec<u64>>());
        // 3 waits for 2, then 4 and 5 come with it; 6 and 7 go through in place.
        assert_eq!(back, [vec![0, 1], vec![], vec![2, 3, 4, 5], vec![6, 7]]);
        assert_eq!(order.finish(&mut sink), 8);
        assert_eq!(sink.0.len(), 8);
    }

    /// Buffers grown for huge blocks (16 MiB each) are not sent several at a time: the
    /// framing side waits for one to come back once the bytes out pass the budget,
    /// while 1 MiB buffers never wait for it.
    #[test]
    fn grown_buffers_in_flight_stay_within_the_byte_budget() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        const HUGE: usize = crate::capture::MAX_BUFFER;
        // The budget, spelled out so that a larger one fails here.
        let budget = (FRAME_BATCHES_IN_FLIGHT + 2) * READ_BUFFER;
        assert!(budget < HUGE);
        for (size, rounds) in [(HUGE, 12), (READ_BUFFER, 200)] {
            let cfg = EngineConfig::default();
            let (full_tx, full_rx) = bounded::<FrameBatch>(FRAME_BATCHES_IN_FLIGHT);
            let (empty_tx, empty_rx) = unbounded::<FrameBatch>();
            let out = AtomicUsize::new(0);
            let peak = std::thread::scope(|s| {
                let decoder = s.spawn(|| {
                    let mut peak = 0;
                    for mut b in &full_rx {
                        peak = peak.max(out.load(Ordering::SeqCst));
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        out.fetch_sub(b.sent, Ordering::SeqCst);
                        if b.data.len() > 2 * READ_BUFFER {
                            b.data = Vec::new();
                        }
                        let _ = empty_tx.send(b);
                    }
                    peak
                });
                let mut batcher = Batcher::new(full_tx, empty_rx, &cfg);
                for _ in 0..rounds {
                    let mut buf = batcher.fresh();
                    buf.resize(size, 0);
                    out.fetch_add(size, Ordering::SeqCst);
                    assert!(batcher.done(buf).is_continue());
                }
                drop(batcher);
                decoder.join().unwrap()
            });
            if size == HUGE {
                assert!(peak <= budget + HUGE, "{} MiB out at once", peak >> 20);
            } else {
                assert!(peak <= budget, "{} MiB out", peak >> 20);
            }
        }
    }
}
