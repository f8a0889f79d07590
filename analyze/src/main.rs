//! `seremotion-analyze`: finds the unhappy customers in a batch of call recordings.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use seremotion_analyze::batch::{Outcome, run_batch};
use seremotion_analyze::inputs::collect_files;
use seremotion_analyze::pipeline;
use seremotion_analyze::record::AnalysisSettings;
use seremotion_analyze::store::{CALLS, REPORT, RESULTS, ResultStore};

/// Exit status when the batch ran but some files could not be analysed.
const SOME_FILES_FAILED: u8 = 2;

#[derive(Parser)]
#[command(
    name = "seremotion-analyze",
    version,
    about = "Emotion analysis of call recordings: results.jsonl, calls.csv and report.html",
    long_about = "Runs every INPUT through the seremotion element (one GStreamer pipeline per job) and \
writes DIR/results.jsonl (one line per window and channel), DIR/calls.csv (one row per file and \
channel) and DIR/report.html (calls ranked by how negative the customer sounds, with a timeline \
per call). Each file's result is stored in DIR/parts/ as soon as it is done.\n\n\
Exit status: 0 all files analysed, 1 the batch could not run, 2 some files could not be analysed \
(they are listed on stderr and in the report).",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    analyse: AnalyseArgs,
}

#[derive(Args)]
struct AnalyseArgs {
    /// One stream of results per channel (agent and customer of a stereo call) instead of the downmix.
    #[arg(long)]
    per_channel: bool,
    /// The customer's channel, whose negativity ranks the calls in the report.
    #[arg(long, value_name = "N", default_value_t = 1)]
    customer_channel: i32,
    /// Pipelines at once [default: one per core].
    #[arg(long, short, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// A seremotion ONNX model instead of the element's embedded one.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Output folder.
    #[arg(long, short, value_name = "DIR", default_value = "seremotion-analysis")]
    out: PathBuf,
    /// Skip files whose results DIR already holds (analysed with the same settings).
    #[arg(long)]
    resume: bool,
    /// Print the files the inputs name, one a line, and exit.
    #[arg(long)]
    list_files: bool,
    /// Files, folders (searched recursively for audio files) and @LIST files (one input a line).
    #[arg(value_name = "INPUT", required = true)]
    inputs: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Builds results.jsonl, calls.csv and report.html in DIR from the stored results in DIR
    /// and in each SOURCE (output folders of runs that shared out a batch).
    Merge {
        #[arg(long, short, value_name = "DIR")]
        out: PathBuf,
        /// The customer's channel, whose negativity ranks the calls in the report.
        #[arg(long, value_name = "N", default_value_t = 1)]
        customer_channel: i32,
        /// Only these files' results, one file a line (as `--list-files` prints them);
        /// a listed file without a stored result is an error. Without it, every stored
        /// result, including those of earlier batches into DIR.
        #[arg(long, value_name = "LIST")]
        files: Option<PathBuf>,
        #[arg(value_name = "SOURCE")]
        sources: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Merge {
            out,
            customer_channel,
            files,
            sources,
        }) => merge(&out, customer_channel, files.as_deref(), &sources),
        None => analyse(&cli.analyse),
    };
    match outcome {
        Ok(failed) if failed > 0 => ExitCode::from(SOME_FILES_FAILED),
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("seremotion-analyze: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the batch; returns how many files failed.
fn analyse(args: &AnalyseArgs) -> Result<usize> {
    let files = collect_files(&args.inputs)?;
    if args.list_files {
        for file in &files {
            println!("{}", file.display());
        }
        return Ok(0);
    }
    if files.is_empty() {
        bail!("no audio files found in {}", args.inputs.join(" "));
    }
    let model = match &args.model {
        Some(path) => {
            std::fs::File::open(path)
                .with_context(|| format!("--model {}: cannot open", path.display()))?;
            Some(path.to_string_lossy().into_owned())
        }
        None => None,
    };
    let settings = AnalysisSettings {
        per_channel: args.per_channel,
        model,
    };
    let jobs = args.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    pipeline::init().map_err(anyhow::Error::msg)?;
    let store = ResultStore::create(&args.out)?;

    let started = Instant::now();
    let progress = Progress::new(files.len());
    let results = run_batch(&files, &settings, jobs, &store, args.resume, |o| {
        progress.update(o)
    })?;
    progress.finish();
    store.write_outputs(&results, args.customer_channel)?;

    let elapsed = started.elapsed().as_secs_f64();
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    let audio: f64 = results.iter().map(|r| r.duration).sum();
    eprintln!(
        "{} files ({failed} failed), {:.3} h of audio in {elapsed:.2} s with {} jobs: \
         {:.3} files/s, {:.4} audio hours/s; slowest file real-time factor {:.5} (wall clock / audio)",
        results.len(),
        audio / 3600.0,
        jobs.min(files.len()),
        results.len() as f64 / elapsed,
        audio / 3600.0 / elapsed,
        progress.slowest.get(),
    );
    print_outputs(&store);
    Ok(failed)
}

fn merge(
    out: &std::path::Path,
    customer_channel: i32,
    files: Option<&std::path::Path>,
    sources: &[PathBuf],
) -> Result<usize> {
    let store = ResultStore::create(out)?;
    for source in sources {
        if source.canonicalize().ok() != out.canonicalize().ok() {
            store.import(source)?;
        }
    }
    let mut results = store.all()?;
    if let Some(list) = files {
        let text = std::fs::read_to_string(list)
            .with_context(|| format!("--files {}: cannot read", list.display()))?;
        let wanted: std::collections::BTreeSet<&str> =
            text.lines().filter(|l| !l.trim().is_empty()).collect();
        results.retain(|r| wanted.contains(r.file.as_str()));
        if let Some(missing) = wanted
            .iter()
            .find(|f| !results.iter().any(|r| r.file == **f))
        {
            bail!(
                "{missing}: listed in {} but no stored result in {} or the sources given",
                list.display(),
                out.display()
            );
        }
    }
    if results.is_empty() {
        bail!(
            "no stored results in {} or the sources given",
            out.display()
        );
    }
    for result in &results {
        if let Some(error) = &result.error {
            eprintln!("failed: {}: {error}", result.file);
        }
    }
    store.write_outputs(&results, customer_channel)?;
    print_outputs(&store);
    Ok(results.iter().filter(|r| r.error.is_some()).count())
}

fn print_outputs(store: &ResultStore) {
    for name in [RESULTS, CALLS, REPORT] {
        eprintln!("wrote {}", store.dir().join(name).display());
    }
}

/// A progress bar on a terminal, one plain line per file otherwise (logs, CI).
struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    done: std::cell::Cell<usize>,
    audio: std::cell::Cell<f64>,
    /// Largest wall-clock time / audio time of one file: below 1, every
    /// pipeline kept up with real time even with all of them running at once.
    slowest: std::cell::Cell<f64>,
}

impl Progress {
    fn new(total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {pos}/{len} files, {msg} audio, {elapsed} elapsed, ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message("0.00 h");
            bar
        });
        Progress {
            bar,
            total,
            done: 0.into(),
            audio: 0.0.into(),
            slowest: 0.0.into(),
        }
    }

    fn update(&self, outcome: &Outcome) {
        let result = outcome.result();
        self.done.set(self.done.get() + 1);
        self.audio.set(self.audio.get() + result.duration);
        if let Outcome::Done { wall, .. } = outcome
            && result.duration > 0.0
        {
            let rtf = wall.as_secs_f64() / result.duration;
            self.slowest.set(self.slowest.get().max(rtf));
        }
        let line = match (outcome, &result.error) {
            (_, Some(error)) => format!("failed: {}: {error}", result.file),
            (Outcome::Skipped { .. }, None) => format!("skipped (already done): {}", result.file),
            (Outcome::Done { wall, .. }, None) => format!(
                "done: {} ({:.1} s of audio in {:.2} s)",
                result.file,
                result.duration,
                wall.as_secs_f64()
            ),
        };
        match &self.bar {
            Some(bar) => {
                if result.error.is_some() {
                    bar.println(line);
                }
                bar.set_message(format!("{:.2} h", self.audio.get() / 3600.0));
                bar.inc(1);
            }
            None => eprintln!("[{}/{}] {line}", self.done.get(), self.total),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
