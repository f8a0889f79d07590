//! Call-recording analysis: runs `seremotion` over files (or folders of files)
//! and writes one JSON line per result and one summary line per file and channel.
//!
//! ```sh
//! cargo run --release --example analyze_recordings -- [--per-channel] [--jobs N] [--list FILE] FILE_OR_DIR... > results.jsonl
//! ```
//!
//! `--list FILE` reads more paths from FILE, one per line (`-`: standard input).
//! One pipeline runs per job (default: one per core), all in this process and
//! sharing one loaded model. Progress and the final throughput (files and
//! audio hours per second, the slowest file's real-time factor, peak memory)
//! go to stderr, results to stdout: one JSON line per window and channel
//! (`"type": "window"`), then per file and channel a `"type": "summary"` line
//! that also carries the file's `wall_seconds`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::prelude::*;
use serde_json::{Map, Value, json};

const USAGE: &str =
    "usage: analyze_recordings [--per-channel] [--jobs N] [--list FILE] FILE_OR_DIR...";

const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "flac", "mp3", "ogg", "opus", "m4a", "aac", "webm", "mka",
];

fn main() {
    if let Err(err) = run() {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

struct Options {
    per_channel: bool,
    jobs: usize,
    inputs: Vec<PathBuf>,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        per_channel: false,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        inputs: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--per-channel" => options.per_channel = true,
            "--jobs" => {
                let n = args.next().ok_or("--jobs needs a number")?;
                options.jobs = n
                    .parse()
                    .map_err(|_| format!("--jobs: `{n}` is not a number"))?;
            }
            "--list" => {
                let list = args.next().ok_or("--list needs a file (or - for stdin)")?;
                let text = if list == "-" {
                    std::io::read_to_string(std::io::stdin())
                } else {
                    std::fs::read_to_string(&list)
                }
                .map_err(|e| format!("--list {list}: {e}"))?;
                options.inputs.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(PathBuf::from),
                );
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ => options.inputs.push(PathBuf::from(arg)),
        }
    }
    if options.inputs.is_empty() {
        return Err(USAGE.into());
    }
    options.jobs = options.jobs.max(1);
    Ok(options)
}

fn collect_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = inputs.to_vec();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            let entries =
                std::fs::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            for entry in entries {
                stack.push(
                    entry
                        .map_err(|e| format!("{}: {e}", path.display()))?
                        .path(),
                );
            }
        } else if path.is_file() {
            let is_audio = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
            // Files named explicitly are always analysed; folders contribute audio files only.
            if is_audio || inputs.contains(&path) {
                files.push(path);
            }
        } else {
            return Err(format!("{}: no such file or folder", path.display()));
        }
    }
    files.sort();
    Ok(files)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_args()?;
    let files = collect_files(&options.inputs)?;
    gst::init()?;
    gstseremotion::plugin_register_static()?;

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let audio_seconds = Arc::new(Mutex::new(0.0f64));
    // Largest wall-clock time / audio time of one file: below 1, every
    // pipeline kept up with real time even with all of them running at once.
    let slowest = Arc::new(Mutex::new(0.0f64));
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    let files = Arc::new(files);

    let workers: Vec<_> = (0..options.jobs.min(files.len().max(1)))
        .map(|_| {
            let (next, done, failed, audio_seconds, slowest, stdout, files) = (
                next.clone(),
                done.clone(),
                failed.clone(),
                audio_seconds.clone(),
                slowest.clone(),
                stdout.clone(),
                files.clone(),
            );
            let per_channel = options.per_channel;
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(file) = files.get(i) else { break };
                    // Lines go out as the bus delivers them (each names its
                    // file), so memory stays flat however long the recording.
                    let emit = |line: Value| {
                        let mut out = stdout.lock().unwrap_or_else(|e| e.into_inner());
                        // A closed stdout (e.g. `| head`) ends the output, not the program's accounting.
                        let _ = writeln!(out, "{line}");
                    };
                    match analyse_file(file, per_channel, Instant::now(), &emit) {
                        Ok((seconds, wall)) => {
                            *audio_seconds.lock().unwrap_or_else(|e| e.into_inner()) += seconds;
                            if seconds > 0.0 {
                                let mut s = slowest.lock().unwrap_or_else(|e| e.into_inner());
                                *s = s.max(wall / seconds);
                            }
                        }
                        Err(err) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            emit(json!({"file": file.display().to_string(), "error": err}));
                        }
                    }
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    progress(n, files.len(), started);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| "a worker thread panicked")?;
    }

    let elapsed = started.elapsed().as_secs_f64();
    let audio = *audio_seconds.lock().unwrap_or_else(|e| e.into_inner());
    eprintln!();
    eprintln!(
        "{} files ({} failed), {:.2} h of audio in {:.2} s: {:.2} files/s, {:.3} audio hours/s (real-time factor {:.5})",
        files.len(),
        failed.load(Ordering::SeqCst),
        audio / 3600.0,
        elapsed,
        files.len() as f64 / elapsed,
        audio / 3600.0 / elapsed,
        if audio > 0.0 { elapsed / audio } else { 0.0 }
    );
    eprintln!(
        "{} pipelines at once; slowest file real-time factor {:.5} (wall clock / audio); peak memory {}",
        options.jobs.min(files.len().max(1)),
        *slowest.lock().unwrap_or_else(|e| e.into_inner()),
        peak_rss().map_or("unknown".to_string(), |kb| format!(
            "{:.1} MB",
            kb as f64 / 1024.0
        ))
    );
    Ok(())
}

/// Peak resident set size of this process in KiB (Linux: `VmHWM`).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn progress(done: usize, total: usize, started: Instant) {
    const WIDTH: usize = 30;
    let filled = WIDTH * done / total.max(1);
    let elapsed = started.elapsed().as_secs_f64();
    let eta = if done > 0 {
        elapsed / done as f64 * (total - done) as f64
    } else {
        0.0
    };
    eprint!(
        "\r[{}{}] {done}/{total} files, {elapsed:.1} s elapsed, ETA {eta:.1} s ",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled)
    );
}

/// Runs one pipeline over `file`, handing every result line to `emit`;
/// returns the seconds of audio analysed and the wall-clock seconds it took.
fn analyse_file(
    file: &Path,
    per_channel: bool,
    started: Instant,
    emit: &dyn Fn(Value),
) -> Result<(f64, f64), String> {
    let pipeline = gst::Pipeline::new();
    let make = |name: &str| {
        gst::ElementFactory::make(name)
            .build()
            .map_err(|e| e.to_string())
    };
    let src = gst::ElementFactory::make("filesrc")
        .property("location", file.to_string_lossy().as_ref())
        .build()
        .map_err(|e| e.to_string())?;
    let decode = make("decodebin")?;
    let convert = make("audioconvert")?;
    let seremotion = make("seremotion")?;
    seremotion.set_property_from_str(
        "channel-mode",
        if per_channel { "per-channel" } else { "mix" },
    );
    // sync=false: analyse as fast as the CPU allows, not in real time.
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        .map_err(|e| e.to_string())?;
    pipeline
        .add_many([&src, &decode, &convert, &seremotion, &sink])
        .map_err(|e| e.to_string())?;
    src.link(&decode).map_err(|e| e.to_string())?;
    gst::Element::link_many([&convert, &seremotion, &sink]).map_err(|e| e.to_string())?;
    let convert_weak = convert.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let Some(convert) = convert_weak.upgrade() else {
            return;
        };
        let is_audio = pad
            .current_caps()
            .and_then(|caps| caps.structure(0).map(|s| s.name().starts_with("audio/")))
            .unwrap_or(false);
        if let Some(sink_pad) = convert.static_pad("sink")
            && is_audio
            && !sink_pad.is_linked()
        {
            let _ = pad.link(&sink_pad);
        }
    });

    let bus = pipeline.bus().ok_or("pipeline without bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let name = file.display().to_string();
    let mut seconds = 0.0;
    let mut outcome = Ok(());
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure()
                    && (s.name() == "seremotion" || s.name() == "seremotion-summary")
                {
                    let mut line = structure_to_json(s);
                    line.insert("file".into(), json!(name));
                    line.insert(
                        "type".into(),
                        json!(if s.name() == "seremotion" {
                            "window"
                        } else {
                            "summary"
                        }),
                    );
                    if s.name() == "seremotion-summary" {
                        seconds = s
                            .get::<gst::ClockTime>("duration")
                            .map_or(0.0, |d| d.seconds_f64());
                        line.insert(
                            "wall_seconds".into(),
                            json!(started.elapsed().as_secs_f64()),
                        );
                    }
                    emit(Value::Object(line));
                }
            }
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(err) => {
                outcome = Err(err.error().to_string());
                break;
            }
            _ => (),
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    outcome.map(|()| (seconds, started.elapsed().as_secs_f64()))
}

/// Fields that hold clock times (nanoseconds); written as seconds.
const TIME_FIELDS: &[&str] = &["timestamp", "stream-time", "running-time", "duration"];

/// Converts a message structure to JSON; clock times become seconds (null when unknown).
fn structure_to_json(s: &gst::StructureRef) -> Map<String, Value> {
    let mut map = Map::new();
    for (field, value) in s.iter() {
        let key = field.as_str().replace('-', "_");
        let json_value = if TIME_FIELDS.contains(&field.as_str()) {
            match value.get::<Option<gst::ClockTime>>() {
                Ok(Some(t)) => json!(t.seconds_f64()),
                _ => Value::Null,
            }
        } else if let Ok(v) = value.get::<f64>() {
            json!(v)
        } else if let Ok(v) = value.get::<i32>() {
            json!(v)
        } else if let Ok(v) = value.get::<u64>() {
            json!(v)
        } else if let Ok(v) = value.get::<&str>() {
            json!(v)
        } else if let Ok(inner) = value.get::<gst::Structure>() {
            Value::Object(structure_to_json(&inner))
        } else {
            json!(value.serialize().map(|s| s.to_string()).unwrap_or_default())
        };
        map.insert(key, json_value);
    }
    map
}
