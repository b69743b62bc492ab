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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
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
