//! The `dpaudit` command line (thin: parse, run, exit code).
use clap::{Parser, Subcommand};
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
        #[arg(long, short)]
        output: PathBuf,
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
    /// Flows open at once before the longest-idle one is evicted.
    #[arg(long, default_value_t = dpaudit::flow::FlowLimits::default().max_live)]
    max_flows: usize,
    /// Out-of-order TCP segments held per direction.
    #[arg(long, default_value_t = dpaudit::flow::ReassemblyLimits::default().max_segments)]
    max_ooo_segments: usize,
    /// Out-of-order TCP bytes held per direction.
    #[arg(long, default_value_t = dpaudit::flow::ReassemblyLimits::default().max_bytes)]
    max_ooo_bytes: usize,
    /// Idle seconds (capture time) before a TCP flow record is closed.
    #[arg(long, default_value_t = 600)]
    tcp_timeout: u32,
    /// Idle seconds (capture time) before a UDP flow record is closed.
    #[arg(long, default_value_t = 60)]
    udp_timeout: u32,
    /// Never draw a progress bar.
    #[arg(long, short)]
    quiet: bool,
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
}

fn audit(args: AuditArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
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
    let cfg = dpaudit::flow::EngineConfig {
        threads,
        ..Default::default()
    };
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
        let same = |p: &PathBuf| match (std::fs::canonicalize(p), std::fs::canonicalize(dest)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if args.captures.iter().any(same) {
            return Err(format!(
                "{}: refusing to annotate over the input capture",
                dest.display()
            )
            .into());
        }
    }
    let mut a = audit::run(&sources, &cfg, &catalog, stated);
    if let Some(known) = &known {
        a.apply_baseline(known);
    }
    let mut code = ExitCode::SUCCESS;
    for r in &a.files {
        if let Some(e) = &r.error {
            if e.is_partial() {
                eprintln!(
                    "dpaudit: warning: {e} (results cover the {} frames before it)",
                    r.summary.frames
                );
            } else {
                eprintln!("dpaudit: {e}");
            }
            code = ExitCode::from(2);
        }
    }
    let opts = dpaudit::report::flows::Options {
        show_secrets: args.show_secrets,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        AuditFormat::Json => audit::write_json(&mut out, &a, &opts)?,
        AuditFormat::Jsonl => audit::write_jsonl(&mut out, &a)?,
        AuditFormat::Sarif => audit::write_sarif(&mut out, &a)?,
        AuditFormat::Table => {
            use std::io::IsTerminal;
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            audit::write_table(&mut out, &a, &catalog, colour)?
        }
    }
    out.flush()?;
    if let (Some(dest), Some(src)) = (&args.annotate, sources.first()) {
        let comments = audit::evidence_comments(&a, 0);
        let n = dpaudit::report::annotate::annotate(src, dest, &comments)?;
        eprintln!(
            "dpaudit: wrote {} ({n} frames, {} with comments)",
            dest.display(),
            comments.len()
        );
    }
    if a.flows.is_empty() {
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
}

fn flows(args: FlowsArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
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
    let sec = 1_000_000_000i64;
    let mut cfg = EngineConfig {
        threads,
        progress: progress.clone(),
        ..EngineConfig::default()
    };
    cfg.flow.max_live = args.max_flows.max(1);
    cfg.flow.tcp_idle_ns = i64::from(args.tcp_timeout) * sec;
    cfg.flow.udp_idle_ns = i64::from(args.udp_timeout) * sec;
    cfg.reassembly.max_segments = args.max_ooo_segments;
    cfg.reassembly.max_bytes = args.max_ooo_bytes;
    use dpaudit::report::flows::{FlowWriter, Format, Options};
    let fmt = match args.format {
        OutFormat::Table => Format::Table,
        OutFormat::Json => Format::Json,
        OutFormat::Jsonl => Format::Jsonl,
    };
    let opts = Options {
        show_secrets: args.show_secrets,
    };
    let stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
    let mut writer = FlowWriter::new(stdout, fmt, opts);
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
    writer.finish(&results)?;
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
        } => {
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
            if list {
                for n in dpaudit::gen::scenario_names() {
                    writeln!(out, "{n}")?;
                }
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
