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
        #[arg(long)]
        list: bool,
        #[arg(long)]
        pcapng: bool,
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
    #[arg(long, default_value_t = 120)]
    udp_timeout: u32,
    /// Never draw a progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutFormat {
    Table,
    Json,
    Jsonl,
}

fn flows(args: FlowsArgs, out: &mut dyn Write) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use dpaudit::flow::{analyze, EngineConfig};
    use std::io::IsTerminal;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let sources: Vec<_> = args
        .captures
        .iter()
        .map(|p| dpaudit::capture::Source::from_arg(p))
        .collect();
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
    let analysis = analyze(&sources, &cfg);
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    let mut code = ExitCode::SUCCESS;
    let mut readable = Vec::new();
    for r in analysis.files {
        match &r.error {
            Some(e) if e.is_partial() => {
                eprintln!(
                    "dpaudit: warning: {e} (results cover the {} frames before it)",
                    r.summary.frames
                );
                code = ExitCode::from(2);
                readable.push(r);
            }
            Some(e) => {
                eprintln!("dpaudit: {e}");
                code = ExitCode::from(2);
            }
            None => readable.push(r),
        }
    }
    let fmt = match args.format {
        OutFormat::Table => dpaudit::report::flows::Format::Table,
        OutFormat::Json => dpaudit::report::flows::Format::Json,
        OutFormat::Jsonl => dpaudit::report::flows::Format::Jsonl,
    };
    let opts = dpaudit::report::flows::Options {
        show_secrets: args.show_secrets,
    };
    dpaudit::report::flows::write(out, &readable, fmt, &opts)?;
    Ok(code)
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
    let mut out = std::io::stdout().lock();
    match cli.cmd {
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
        Cmd::Flows(args) => return flows(args, &mut out),
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
            list,
            pcapng,
        } => {
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
            let fmt = if pcapng {
                dpaudit::gen::Format::Pcapng
            } else {
                dpaudit::gen::Format::Pcap
            };
            let mut f = std::fs::File::create(&output)?;
            let st = dpaudit::gen::write_scenarios(&names, seed, fmt, &mut f)?;
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
