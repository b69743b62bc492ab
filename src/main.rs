//! The `dpaudit` command line (thin: parse, run, exit code).
use clap::{Parser, Subcommand};

/// mimalloc: per-thread free lists make the many small per-flow allocations (fact
/// strings, analyzer buffers) cheaper and return memory to the system sooner than glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    /// mimalloc's "free what you can now" (`mimalloc.h`), in the library the mimalloc
    /// crate links for the allocator above.
    fn mi_collect(force: bool);
}

/// Hands the memory a finished pass freed back to the system now. mimalloc keeps freed
/// pages for a second before returning them, which costs nothing within a pass (they
/// are reused) but between `audit`'s passes would let the next pass allocate beside the
/// last one's leftovers: 250-270 MiB at the peak of a 1 GiB audit instead of 200-220.
fn release_memory() {
    // SAFETY: `mi_collect` takes no pointer and may be called from any thread at any
    // time; it only frees pages that hold no live allocation.
    #[allow(unsafe_code)]
    unsafe {
        mi_collect(true)
    }
}
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "dpaudit",
    version,
    about = "Audit captures against the Exchange 2007 data paths"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the data-path catalog.
    Catalog {
        #[arg(long, default_value = "table")]
        format: String,
        /// Another catalog of the same schema.
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
    /// List every cap on what a capture can make dpaudit hold: flag, default, rationale.
    Caps {
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// Count frames per capture (pcap, pcapng, gzip, zstd, `-` for stdin).
    Frames { captures: Vec<PathBuf> },
    /// Audit captures against the Exchange 2007 data paths: classify every flow, report
    /// findings (`--fail-on` makes CI fail on them).
    Audit(AuditArgs),
    /// List the flows of captures: stream index, endpoints, frames, bytes, protocol,
    /// encryption, authentication (`-` reads standard input).
    Flows(FlowsArgs),
    /// Write a synthetic capture: named scenarios, or a mix of a given size.
    Gen {
        /// The capture to write (not needed with --list or --hostile list).
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Scenario names (see --list); empty = all.
        #[arg(long)]
        scenario: Vec<String>,
        /// Instead of scenarios: a data-path family capture (fixtures/families), e.g.
        /// transport-compliant, handshakes only.
        #[arg(long, conflicts_with = "scenario")]
        family: Option<String>,
        #[arg(long)]
        list: bool,
        #[arg(long)]
        pcapng: bool,
        /// Instead of scenarios: a traffic mix of about this many bytes (e.g. 1G, 64M).
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// The mix for --size: handshake-heavy, full, or bulk.
        #[arg(long, value_enum, default_value = "handshake")]
        mix: GenMix,
        /// Flows interleaved at once for --size.
        #[arg(long, default_value_t = 2000)]
        concurrency: usize,
        /// Instead of scenarios: a hostile or damaged capture (`--hostile list` names them).
        #[arg(long)]
        hostile: Option<String>,
        /// Packets (or flows, or bytes) of a hostile flood; default per kind.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(clap::Args)]
struct FlowsArgs {
    /// pcap / pcapng files, optionally gzip or zstd compressed; `-` for standard input.
    #[arg(required = true)]
    captures: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    format: OutFormat,
    /// Worker threads (default: every core). Output is identical for any value.
    #[arg(long, short = 'j')]
    threads: Option<usize>,
    /// Print captured secrets in full instead of redacted (`j***`).
    #[arg(long)]
    show_secrets: bool,
    #[command(flatten)]
    engine: EngineArgs,
    /// Write the report to this file (through a temporary file renamed when complete)
    /// instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Never draw a progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Caps and timeouts (`dpaudit caps` explains each cap and its default).
#[derive(clap::Args)]
struct EngineArgs {
    /// Flows open at once before the longest-idle one is evicted.
    #[arg(long, default_value_t = dpaudit::flow::table::DEFAULT_MAX_LIVE)]
    max_flows: usize,
    /// Ended conversations remembered so late packets keep their stream index.
    #[arg(long, default_value_t = dpaudit::flow::table::DEFAULT_MAX_REMEMBERED)]
    max_remembered: usize,
    /// Out-of-order TCP segments held per direction.
    #[arg(long, default_value_t = dpaudit::flow::reassembly::DEFAULT_MAX_OOO_SEGMENTS)]
    max_ooo_segments: usize,
    /// Out-of-order TCP bytes held per direction.
    #[arg(long, default_value_t = dpaudit::flow::reassembly::DEFAULT_MAX_OOO_BYTES)]
    max_ooo_bytes: usize,
    /// IP datagrams in reassembly at once.
    #[arg(long, default_value_t = dpaudit::decode::DEFAULT_MAX_DATAGRAMS)]
    max_fragment_datagrams: usize,
    /// Bytes held over all IP datagrams in reassembly.
    #[arg(long, default_value_t = dpaudit::decode::DEFAULT_MAX_BYTES)]
    max_fragment_bytes: usize,
    /// TLS records read per direction before encryption starts.
    #[arg(long, default_value_t = dpaudit::limits::DEFAULT_TLS_HANDSHAKE_RECORDS)]
    max_tls_records: u64,
    /// Largest HTTP header block per message, in bytes.
    #[arg(long, default_value_t = dpaudit::limits::DEFAULT_HTTP_HEADER)]
    max_http_header: usize,
    /// Requests awaiting their answer per flow (SMTP, IMAP, POP3, HTTP, SMB, DCE/RPC).
    #[arg(long, default_value_t = dpaudit::limits::DEFAULT_TRANSACTIONS)]
    max_transactions: usize,
    /// Largest captured length accepted for one packet record, in bytes.
    #[arg(long, default_value_t = dpaudit::capture::MAX_CAPLEN)]
    max_record: u32,
    /// Idle seconds (capture time) before a TCP flow record is closed.
    #[arg(long, default_value_t = 600)]
    tcp_timeout: u32,
    /// Idle seconds (capture time) before a UDP flow record is closed.
    #[arg(long, default_value_t = 60)]
    udp_timeout: u32,
    /// At the end, print frames, bytes, time, throughput and peak memory (RSS) to
    /// standard error.
    #[arg(long)]
    stats: bool,
}

/// The `--stats` line.
fn print_stats(started: std::time::Instant, frames: u64, bytes: u64) {
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let rss = dpaudit::report::audit::peak_rss()
        .map_or_else(|| "unknown".to_string(), |b| format!("{}", b >> 20));
    eprintln!(
        "dpaudit: stats: {frames} frames, {bytes} bytes in {secs:.3} s ({:.1} MB/s, {:.0} frames/s), peak RSS {rss} MiB",
        bytes as f64 / secs / 1e6,
        frames as f64 / secs
    );
}

impl EngineArgs {
    fn apply(&self, cfg: &mut dpaudit::flow::EngineConfig) {
        let sec = 1_000_000_000i64;
        cfg.flow.max_live = self.max_flows.max(1);
        cfg.flow.max_remembered = self.max_remembered;
        cfg.flow.tcp_idle_ns = i64::from(self.tcp_timeout) * sec;
        cfg.flow.udp_idle_ns = i64::from(self.udp_timeout) * sec;
        cfg.reassembly.max_segments = self.max_ooo_segments;
        cfg.reassembly.max_bytes = self.max_ooo_bytes;
        cfg.defrag.max_datagrams = self.max_fragment_datagrams.max(1);
        cfg.defrag.max_bytes = self.max_fragment_bytes;
        cfg.proto.tls_handshake_records = self.max_tls_records;
        cfg.proto.http_header = self.max_http_header;
        cfg.proto.transactions = self.max_transactions.max(1);
        cfg.max_record = self.max_record;
    }
}

#[derive(clap::Args)]
struct AuditArgs {
    /// pcap / pcapng files, optionally gzip or zstd compressed; `-` for standard input.
    #[arg(required = true)]
    captures: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    format: AuditFormat,
    /// Which hosts hold which Exchange roles (TOML); without it roles are inferred.
    #[arg(long)]
    roles: Option<PathBuf>,
    /// Another catalog of the same schema as the built-in one.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Exit 1 when a finding at or above this severity remains.
    #[arg(long, value_parser = ["critical", "high", "medium", "low", "info"])]
    fail_on: Option<String>,
    /// A previous `audit --format json` report: findings it already lists (same
    /// fingerprint) are not reported again.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Write a pcapng copy of the capture with a comment on every evidence frame
    /// (Wireshark: `frame.comment contains "dpaudit"`). One capture only.
    #[arg(long)]
    annotate: Option<PathBuf>,
    /// Worker threads (default: every core). Output is identical for any value.
    #[arg(long, short = 'j')]
    threads: Option<usize>,
    /// Print captured secrets in full instead of redacted (`j***`).
    #[arg(long)]
    show_secrets: bool,
    /// Write the report to this file (through a temporary file renamed when complete)
    /// instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Flow records held for judging; flows past it are counted with an unknown verdict.
    #[arg(long, default_value_t = dpaudit::report::audit::DEFAULT_MAX_AUDIT_FLOWS)]
    max_audit_flows: usize,
    /// Bytes of flow records (and, apart, of findings) held in memory before a sorted
    /// run goes to a temporary file in TMPDIR, as `sort -S` does. Output is the same
    /// for any value; only memory and temporary disk change. At least 1 MiB: each
    /// run is read back through a buffer of its own, so a tiny budget would trade
    /// the records' memory for as many buffers.
    #[arg(long, default_value_t = dpaudit::report::audit::DEFAULT_SPILL_BUDGET as u64,
          value_parser = clap::value_parser!(u64).range(dpaudit::report::audit::MIN_SPILL_BUDGET as u64..))]
    spill_budget: u64,
    #[command(flatten)]
    engine: EngineArgs,
}

fn audit(args: AuditArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let started = std::time::Instant::now();
    use dpaudit::report::audit;
    let catalog = match &args.catalog {
        Some(p) => dpaudit::catalog::Catalog::load(p)?,
        None => dpaudit::catalog::Catalog::builtin()?,
    };
    let stated = match &args.roles {
        Some(p) => Some(dpaudit::catalog::roles::Roles::load(p)?),
        None => None,
    };
    let threads = thread_count(args.threads);
    let sources = sources_of(&args.captures);
    let mut cfg = dpaudit::flow::EngineConfig {
        threads,
        release_memory: Some(release_memory),
        ..Default::default()
    };
    args.engine.apply(&mut cfg);
    let known = match &args.baseline {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("{}: cannot read baseline: {e}", p.display()))?;
            Some(audit::baseline_fingerprints(&text).map_err(|e| format!("{}: {e}", p.display()))?)
        }
        None => None,
    };
    if let Some(dest) = &args.annotate {
        if sources.len() != 1 {
            return Err("--annotate takes exactly one capture".into());
        }
        dpaudit::report::output::refuse_input(dest, &args.captures)?;
    }
    // Opened before the run so that a refused or unwritable destination fails early.
    let mut out = dpaudit::report::output::ReportOut::open(args.output.as_deref(), &args.captures)?;
    let g = audit::gather(
        &sources,
        &cfg,
        stated,
        args.max_audit_flows,
        usize::try_from(args.spill_budget).unwrap_or(usize::MAX),
    )?;
    for r in &g.files {
        if let Some(e) = &r.error {
            if e.is_partial() {
                eprintln!(
                    "dpaudit: warning: {e} (results cover the {} frames before it)",
                    r.summary.frames
                );
            } else {
                eprintln!("dpaudit: {e}");
            }
        }
    }
    let opts = dpaudit::report::flows::Options {
        show_secrets: args.show_secrets,
    };
    let known = known.as_ref();
    let mut a = match args.format {
        AuditFormat::Json => audit::write_json(&mut out, g, &catalog, known, &opts)?,
        format => {
            let mut a = g.judge(&catalog, known, None)?;
            match format {
                AuditFormat::Jsonl => audit::write_jsonl(&mut out, &mut a)?,
                AuditFormat::Sarif => audit::write_sarif(&mut out, &mut a)?,
                _ => {
                    use std::io::IsTerminal;
                    let colour = args.output.is_none()
                        && std::io::stdout().is_terminal()
                        && std::env::var_os("NO_COLOR").is_none();
                    audit::write_table(&mut out, &mut a, &catalog, colour)?
                }
            }
            a
        }
    };
    let mut code = ExitCode::SUCCESS;
    if a.files.iter().any(|r| r.error.is_some()) {
        code = ExitCode::from(2);
    }
    out.finish()?;
    if args.engine.stats {
        print_stats(started, a.coverage.frames, a.coverage.bytes);
        let mut stages: Vec<String> = a
            .timings
            .iter()
            .map(|st| match st.peak_rss {
                Some(b) => format!(
                    "{} {:.2} s (peak RSS {} MiB so far)",
                    st.name,
                    st.wall.as_secs_f64(),
                    b >> 20
                ),
                None => format!("{} {:.2} s", st.name, st.wall.as_secs_f64()),
            })
            .collect();
        let staged: std::time::Duration = a.timings.iter().map(|st| st.wall).sum();
        let rest = started.elapsed().saturating_sub(staged);
        stages.push(format!(
            "the rest (report, set-up) {:.2} s",
            rest.as_secs_f64()
        ));
        eprintln!("dpaudit: stats: {}", stages.join(", "));
        let [(fb, fr), (gb, gr)] = a.spilled();
        eprintln!(
            "dpaudit: stats: {} flows judged, {} findings; spilled {:.1} MiB of flow records in {fr} runs, {:.1} MiB of findings in {gr} runs",
            a.flows,
            a.finding_count,
            fb as f64 / 1048576.0,
            gb as f64 / 1048576.0
        );
    }
    if let (Some(dest), Some(src)) = (&args.annotate, sources.first()) {
        let comments = audit::evidence_comments(&mut a, 0)?;
        let n = dpaudit::report::annotate::annotate(src, dest, &comments)?;
        eprintln!(
            "dpaudit: wrote {} ({n} frames, {} with comments)",
            dest.display(),
            comments.len()
        );
    }
    if a.flows == 0 {
        eprintln!("dpaudit: no flow could be analysed: nothing was audited");
        return Ok(ExitCode::from(2));
    }
    if let Some(level) = args
        .fail_on
        .as_deref()
        .and_then(dpaudit::findings::Severity::from_name)
    {
        if a.worst().is_some_and(|w| w >= level) && code == ExitCode::SUCCESS {
            code = ExitCode::from(1);
        }
    }
    Ok(code)
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AuditFormat {
    Table,
    Json,
    Jsonl,
    Sarif,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GenMix {
    Handshake,
    Full,
    Bulk,
}

/// `64M`, `1G`, `500k` or a plain byte count.
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mul) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("not a size: {s} (use e.g. 64M or 1G)"))
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutFormat {
    Table,
    Json,
    Jsonl,
    /// The files and the coverage section only, as JSON (no flow records).
    Summary,
}

fn flows(args: FlowsArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let started = std::time::Instant::now();
    use dpaudit::flow::{analyze, EngineConfig, FileResult};
    use std::io::IsTerminal;
    let threads = thread_count(args.threads);
    let sources = sources_of(&args.captures);
    let progress = if !args.quiet && std::io::stderr().is_terminal() {
        let total: u64 = args
            .captures
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(pb)
    } else {
        None
    };
    let mut cfg = EngineConfig {
        threads,
        progress: progress.clone(),
        ..EngineConfig::default()
    };
    args.engine.apply(&mut cfg);
    use dpaudit::report::flows::{FlowWriter, Format, Options};
    let fmt = match args.format {
        OutFormat::Table => Format::Table,
        OutFormat::Json => Format::Json,
        OutFormat::Jsonl => Format::Jsonl,
        OutFormat::Summary => Format::Summary,
    };
    let opts = Options {
        show_secrets: args.show_secrets,
    };
    let out = dpaudit::report::output::ReportOut::open(args.output.as_deref(), &args.captures)?;
    let mut writer = FlowWriter::new(out, fmt, opts);
    let results: Vec<FileResult> = if sources.len() <= 1 || threads == 1 {
        // One capture at a time, each with every thread, printed as its flows end.
        sources
            .iter()
            .map(|s| {
                writer.begin_file(&s.display().display().to_string());
                dpaudit::flow::pipeline::analyze_file(s, &cfg, threads, &mut writer)
            })
            .collect()
    } else {
        // Several captures at once: each prints into its own buffer, copied in order.
        let sub = match fmt {
            Format::Table => Format::Table,
            Format::Summary => Format::Summary,
            _ => Format::Jsonl,
        };
        let done = analyze(&sources, &cfg, |i| {
            let mut w = FlowWriter::new(Vec::new(), sub, opts);
            if let Some(s) = sources.get(i) {
                w.begin_file(&s.display().display().to_string());
            }
            w
        });
        let mut results = Vec::new();
        for (r, w) in done {
            writer.absorb(w);
            results.push(r);
        }
        results
    };
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    let mut code = ExitCode::SUCCESS;
    for r in &results {
        match &r.error {
            Some(e) if e.is_partial() => {
                eprintln!(
                    "dpaudit: warning: {e} (results cover the {} frames before it)",
                    r.summary.frames
                );
                code = ExitCode::from(2);
            }
            Some(e) => {
                eprintln!("dpaudit: {e}");
                code = ExitCode::from(2);
            }
            None => {}
        }
    }
    writer.finish(&results)?.finish()?;
    if args.engine.stats {
        let frames = results.iter().map(|r| r.summary.frames).sum();
        let bytes = results.iter().map(|r| r.summary.bytes).sum();
        print_stats(started, frames, bytes);
    }
    Ok(code)
}

/// `-j N`, or every core.
fn thread_count(asked: Option<usize>) -> usize {
    asked
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// Capture arguments (`-` is standard input).
fn sources_of(captures: &[PathBuf]) -> Vec<dpaudit::capture::Source> {
    captures
        .iter()
        .map(|p| dpaudit::capture::Source::from_arg(p))
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // `dpaudit flows x | head`: the reader went away; nothing is wrong.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dpaudit: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // `flows` writes from its own thread: it must not run under this thread's stdout lock.
    let cmd = match cli.cmd {
        Cmd::Flows(args) => return flows(args),
        Cmd::Audit(args) => return audit(args),
        other => other,
    };
    let mut out = std::io::stdout().lock();
    match cmd {
        Cmd::Catalog { format, catalog } => {
            let cat = match catalog {
                Some(p) => dpaudit::catalog::Catalog::load(&p)?,
                None => dpaudit::catalog::Catalog::builtin()?,
            };
            let text = if format == "json" {
                dpaudit::catalog::render_json(&cat)?
            } else {
                dpaudit::catalog::render_table(&cat)
            };
            writeln!(out, "{text}")?;
        }
        Cmd::Flows(_) | Cmd::Audit(_) => {}
        Cmd::Caps { format } => {
            use dpaudit::limits::CAPS;
            if format == "json" {
                let caps: Vec<_> = CAPS
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "name": c.name, "flag": c.flag, "unit": c.unit,
                            "default": c.default, "why": c.why, "when_hit": c.when_hit,
                        })
                    })
                    .collect();
                serde_json::to_writer_pretty(&mut out, &caps)?;
                writeln!(out)?;
            } else {
                for c in CAPS {
                    writeln!(out, "{:<24}{:<28}{} {}", c.name, c.flag, c.default, c.unit)?;
                    writeln!(out, "    {}", c.why)?;
                    writeln!(out, "    reported: {}", c.when_hit)?;
                }
            }
        }
        Cmd::Frames { captures } => {
            let mut code = ExitCode::SUCCESS;
            for c in captures {
                let src = dpaudit::capture::Source::from_arg(&c);
                let mut sum = dpaudit::capture::FileSummary::default();
                let res = dpaudit::capture::read_capture(&src, &mut sum, |_| {});
                if let Err(e) = res {
                    eprintln!("dpaudit: {e}");
                    code = ExitCode::from(2);
                    if !e.is_partial() {
                        continue;
                    }
                }
                writeln!(
                    out,
                    "{}\t{}\t{}\t{} frames",
                    sum.path, sum.format, sum.compression, sum.frames
                )?;
            }
            return Ok(code);
        }
        Cmd::Gen {
            output,
            seed,
            scenario,
            family,
            list,
            pcapng,
            size,
            mix,
            concurrency,
            hostile,
            count,
        } => {
            if list {
                for n in dpaudit::gen::scenario_names() {
                    writeln!(out, "{n}")?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            if hostile.as_deref() == Some("list") {
                for k in dpaudit::gen::hostile::KINDS {
                    writeln!(out, "{:<22}{}", k.name, k.about)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            let output = output.ok_or("gen needs --output FILE")?;
            if let Some(kind) = hostile {
                use dpaudit::gen::hostile;
                let f = std::fs::File::create(&output)?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                hostile::write(&kind, count, &mut w)?;
                w.flush()?;
                return Ok(ExitCode::SUCCESS);
            }
            let fmt = if pcapng {
                dpaudit::gen::Format::Pcapng
            } else {
                dpaudit::gen::Format::Pcap
            };
            if let Some(target_bytes) = size {
                let cfg = dpaudit::gen::Config {
                    seed,
                    target_bytes,
                    format: fmt,
                    mix: match mix {
                        GenMix::Handshake => dpaudit::gen::Mix::Handshake,
                        GenMix::Full => dpaudit::gen::Mix::Full,
                        GenMix::Bulk => dpaudit::gen::Mix::Bulk,
                    },
                    concurrency,
                    vlan_percent: 5,
                    ipv6_percent: 10,
                };
                let f = std::fs::File::create(&output)?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                let st = dpaudit::gen::generate(&cfg, &mut w)?;
                w.flush()?;
                writeln!(
                    out,
                    "{}: {} packets, {} bytes, {} flows",
                    output.display(),
                    st.packets,
                    st.bytes,
                    st.flows
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            let names: Vec<&str> = if scenario.is_empty() {
                dpaudit::gen::scenario_names()
            } else {
                scenario.iter().map(String::as_str).collect()
            };
            let mut f = std::fs::File::create(&output)?;
            let st = match &family {
                Some(fam) => dpaudit::gen::write_family(fam, seed, fmt, &mut f)?,
                None => dpaudit::gen::write_scenarios(&names, seed, fmt, &mut f)?,
            };
            writeln!(
                out,
                "{}: {} packets, {} bytes",
                output.display(),
                st.packets,
                st.bytes
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
