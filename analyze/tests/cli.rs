//! `seremotion-analyze` end to end on stereo calls generated with espeak-ng and
//! sox (installed by scripts/setup.sh), in temporary folders: no audio is committed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_seremotion-analyze");

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (scripts/setup.sh installs it)"))
}

fn check(cmd: &mut Command) {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// espeak-ng saying `text` into `path`, `pad` seconds of silence before it.
fn speak(path: &Path, text: &str, pitch: u32, pad: f64) {
    let raw = path.with_extension("raw.wav");
    check(
        Command::new("espeak-ng")
            .args(["-v", "en-us", "-p", &pitch.to_string(), "-w"])
            .arg(&raw)
            .arg(text),
    );
    check(
        Command::new("sox")
            .arg(&raw)
            .arg(path)
            .args(["pad", &pad.to_string()]),
    );
    std::fs::remove_file(raw).unwrap();
}

/// A stereo call: the agent on channel 0, the customer on channel 1, the
/// customer starting `customer_delay` seconds in.
fn make_call(dir: &Path, name: &str, agent: &str, customer: &str, customer_delay: f64) -> PathBuf {
    let a = dir.join(format!("{name}.agent.wav"));
    let c = dir.join(format!("{name}.customer.wav"));
    speak(&a, agent, 40, 0.0);
    speak(&c, customer, 70, customer_delay);
    let call = dir.join(name);
    // -M: one channel per input; the shorter one is padded with silence.
    check(Command::new("sox").arg("-M").arg(&a).arg(&c).arg(&call));
    std::fs::remove_file(a).unwrap();
    std::fs::remove_file(c).unwrap();
    call
}

fn soxi_duration(path: &Path) -> f64 {
    let out = run(Command::new("soxi").arg("-D").arg(path));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

const AGENT: &str =
    "Hello, thank you for calling. How can I help you today? Let me check that for you.";
const CUSTOMER: &str =
    "I have been waiting for forty minutes. This is absolutely unacceptable. I want a refund now.";

struct Batch {
    _dir: tempfile::TempDir,
    root: PathBuf,
    calls: Vec<PathBuf>,
}

fn batch() -> Batch {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("calls/monday")).unwrap();
    let calls = vec![
        make_call(&root, "calls/a.wav", AGENT, CUSTOMER, 0.0),
        make_call(&root, "calls/monday/b.flac", CUSTOMER, AGENT, 0.5),
        // The customer says nothing for 5 s.
        make_call(&root, "calls/monday/c.wav", AGENT, CUSTOMER, 5.0),
    ];
    Batch {
        _dir: dir,
        root,
        calls,
    }
}

fn analyse(args: &[&str], inputs: &[&Path]) -> Output {
    run(Command::new(BIN).args(args).args(inputs))
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn read_csv(path: &Path) -> Vec<csv::StringRecord> {
    csv::Reader::from_path(path)
        .unwrap()
        .records()
        .map(Result::unwrap)
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn stereo_calls_end_to_end() {
    let b = batch();
    let out_dir = b.root.join("out");
    let out = analyse(
        &[
            "--per-channel",
            "--jobs",
            "2",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[&b.root.join("calls")],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let windows = read_jsonl(&out_dir.join("results.jsonl"));
    for call in &b.calls {
        let file = call.to_str().unwrap();
        let duration = soxi_duration(call);
        for channel in [0, 1] {
            let w: Vec<&Value> = windows
                .iter()
                .filter(|w| w["file"] == file && w["channel"] == channel)
                .collect();
            // 2 s windows every second over the whole call.
            assert!(
                w.len() as f64 >= duration - 2.0,
                "{file} ch {channel}: {}",
                w.len()
            );
            for (i, w) in w.iter().enumerate() {
                assert_eq!(w["start"].as_f64().unwrap(), i as f64, "{w}");
                assert!(w["end"].as_f64().unwrap() > w["start"].as_f64().unwrap());
                let scores = w["scores"].as_object().unwrap();
                assert_eq!(scores.len(), 4, "{w}");
                if w["emotion"] != "silence" {
                    let sum: f64 = scores.values().map(|s| s.as_f64().unwrap()).sum();
                    assert!((sum - 1.0).abs() < 1e-3, "{w}");
                    assert_eq!(scores[w["emotion"].as_str().unwrap()], w["confidence"]);
                }
            }
        }
    }
    // The silent start of c.wav's customer channel is silence, then speech.
    let c = b.calls[2].to_str().unwrap();
    let customer: Vec<&Value> = windows
        .iter()
        .filter(|w| w["file"] == c && w["channel"] == 1)
        .collect();
    assert!(
        customer[..3].iter().all(|w| w["emotion"] == "silence"),
        "{customer:?}"
    );
    assert!(
        customer[6..].iter().any(|w| w["emotion"] != "silence"),
        "{customer:?}"
    );

    let rows = read_csv(&out_dir.join("calls.csv"));
    assert_eq!(rows.len(), 6);
    let expected: Vec<(String, &str)> = b
        .calls
        .iter()
        .flat_map(|c| {
            [
                (c.display().to_string(), "0"),
                (c.display().to_string(), "1"),
            ]
        })
        .collect();
    for (row, (call, channel)) in rows.iter().zip(&expected) {
        assert_eq!(&row[0], call);
        assert_eq!(&row[1], *channel);
        let duration: f64 = row[2].parse().unwrap();
        assert!(
            (duration - soxi_duration(Path::new(&call))).abs() < 0.05,
            "{row:?}"
        );
        let shares: f64 = (4..8).map(|i| row[i].parse::<f64>().unwrap()).sum();
        assert!((shares - 1.0).abs() < 1e-3, "{row:?}");
        assert!(row[11].is_empty(), "{row:?}");
    }
    let speech = |file: &Path, ch: &str| -> f64 {
        rows.iter()
            .find(|r| &r[0] == file.to_str().unwrap() && &r[1] == ch)
            .unwrap()[3]
            .parse()
            .unwrap()
    };
    assert!(speech(&b.calls[2], "1") < speech(&b.calls[0], "1"));

    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 3);
    for call in &b.calls {
        assert!(html.contains(call.to_str().unwrap()));
    }
}

#[test]
fn mixdown_and_list_file() {
    let b = batch();
    let list = b.root.join("list.txt");
    std::fs::write(
        &list,
        format!(
            "# two of the three\n{}\n\n{}\n",
            b.calls[0].display(),
            b.calls[2].display()
        ),
    )
    .unwrap();
    let out_dir = b.root.join("out");
    let out = analyse(
        &["--out", out_dir.to_str().unwrap()],
        &[Path::new(&format!("@{}", list.display()))],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let windows = read_jsonl(&out_dir.join("results.jsonl"));
    let files: std::collections::BTreeSet<&str> = windows
        .iter()
        .map(|w| w["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [b.calls[0].to_str().unwrap(), b.calls[2].to_str().unwrap()].into()
    );
    // Without --per-channel there is one stream: the downmix.
    assert!(windows.iter().all(|w| w["channel"] == -1));
    let rows = read_csv(&out_dir.join("calls.csv"));
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| &r[1] == "-1"));
}

#[test]
fn corrupt_files_are_reported_and_the_batch_goes_on() {
    let b = batch();
    let corrupt = b.root.join("calls/corrupt.wav");
    std::fs::write(
        &corrupt,
        (0..20_000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let missing = b.root.join("calls/missing.mp3");
    let out_dir = b.root.join("out");
    let out = analyse(
        &["--per-channel", "--out", out_dir.to_str().unwrap()],
        &[&b.root.join("calls"), &missing],
    );
    // 2: the batch ran, some files failed.
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("failed: {}", corrupt.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("failed: {}: cannot open", missing.display())),
        "{err}"
    );

    let rows = read_csv(&out_dir.join("calls.csv"));
    assert_eq!(rows.len(), 3 * 2 + 2);
    let failed: Vec<&csv::StringRecord> = rows.iter().filter(|r| !r[11].is_empty()).collect();
    assert_eq!(failed.len(), 2);
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("Files that could not be analysed"));
    assert!(html.contains(corrupt.to_str().unwrap()));
    assert!(html.contains(missing.to_str().unwrap()));
    let windows = read_jsonl(&out_dir.join("results.jsonl"));
    for call in &b.calls {
        assert!(windows.iter().any(|w| w["file"] == call.to_str().unwrap()));
    }
}

fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    ["results.jsonl", "calls.csv", "report.html"]
        .iter()
        .map(|n| (n.to_string(), std::fs::read(dir.join(n)).unwrap()))
        .collect()
}

#[test]
fn resume_skips_files_already_done() {
    let b = batch();
    let out_dir = b.root.join("out");
    let o = out_dir.to_str().unwrap();
    let out = analyse(&["--per-channel", "--out", o], &[&b.calls[0], &b.calls[1]]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A file that fails is tried again on resume; the two done are not.
    let late = b.root.join("calls/late.wav");
    let out = analyse(
        &["--per-channel", "--out", o, "--resume"],
        &[&b.root.join("calls"), &late],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for call in &b.calls[..2] {
        assert!(
            err.contains(&format!("skipped (already done): {}", call.display())),
            "{err}"
        );
    }
    assert!(
        err.contains(&format!("done: {}", b.calls[2].display())),
        "{err}"
    );

    std::fs::copy(&b.calls[0], &late).unwrap();
    let out = analyse(
        &["--per-channel", "--out", o, "--resume"],
        &[&b.root.join("calls")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("skipped (already done)").count(), 3, "{err}");
    assert!(err.contains(&format!("done: {}", late.display())), "{err}");

    // Resumed outputs are those of one fresh run.
    let fresh = b.root.join("fresh");
    let out = analyse(
        &["--per-channel", "--out", fresh.to_str().unwrap()],
        &[&b.root.join("calls")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(outputs(&out_dir), outputs(&fresh));

    // Other settings are not resumed from results made another way.
    let out = analyse(&["--out", o, "--resume"], &[&b.calls[0]]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("skipped"), "{}", stderr(&out));
}

#[test]
fn merged_shares_equal_one_run() {
    let b = batch();
    let dir = |n: &str| b.root.join(n);
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    for (out, calls) in [
        ("one", &b.calls[..]),
        ("half1", &b.calls[..1]),
        ("half2", &b.calls[1..]),
    ] {
        let inputs: Vec<&Path> = calls.iter().map(PathBuf::as_path).collect();
        let o = analyse(&["--per-channel", "--out", &s(&dir(out))], &inputs);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = run(Command::new(BIN).args([
        "merge",
        "--out",
        &s(&dir("merged")),
        &s(&dir("half1")),
        &s(&dir("half2")),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(outputs(&dir("one")), outputs(&dir("merged")));

    // A later batch into the same folder: `--files` keeps only its own files.
    let list = dir("second-batch.txt");
    let second: String = b.calls[1..].iter().map(|c| s(c) + "\n").collect();
    std::fs::write(&list, second).unwrap();
    let merge_only = |list: &Path| {
        run(Command::new(BIN).args([
            "merge",
            "--out",
            &s(&dir("merged")),
            "--files",
            list.to_str().unwrap(),
        ]))
    };
    let o = merge_only(&list);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(outputs(&dir("merged")), outputs(&dir("half2")));
    // A listed file that was never analysed is named.
    std::fs::write(&list, "/nowhere/call9.wav\n").unwrap();
    let o = merge_only(&list);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nowhere/call9.wav"), "{}", stderr(&o));
}

/// Pixels of `color` (within a small tolerance) in an RGB(A) PNG.
fn count_pixels(png_path: &Path, colors: &[[u8; 3]]) -> Vec<usize> {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected screenshot format {other:?}"),
    };
    colors
        .iter()
        .map(|c| {
            buf[..info.buffer_size()]
                .chunks(step)
                .filter(|p| (0..3).all(|i| p[i].abs_diff(c[i]) <= 6))
                .count()
        })
        .collect()
}

#[test]
fn report_shows_the_timelines_in_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "chromium is missing in CI: scripts/setup.sh installs it"
        );
        eprintln!(
            "SKIPPED report_shows_the_timelines_in_chromium: chromium is not installed (apt-get install chromium)"
        );
        return;
    };
    let b = batch();
    let out_dir = b.root.join("out");
    let out = analyse(
        &["--per-channel", "--out", out_dir.to_str().unwrap()],
        &[&b.root.join("calls")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shot = b.root.join("report.png");
    let profile = b.root.join("chromium-profile");
    let out = run(Command::new("timeout")
        .args([
            "120",
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--window-size=1100,1400")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", out_dir.join("report.html").display())));
    assert!(shot.exists(), "no screenshot: {}", stderr(&out));
    let colors = ["neutral", "happy", "sad", "angry", "silence"].map(|e| {
        let c = seremotion_analyze::timeline::emotion_color(e);
        [c.0, c.1, c.2]
    });
    let counts = count_pixels(&shot, &colors);
    eprintln!("screenshot pixels of neutral, happy, sad, angry, silence: {counts:?}");
    // The legend's swatches are about 15 x 15 pixels each; three timelines of
    // two 820-pixel rows are tens of thousands. Every call has speech and silence.
    let emotions: usize = counts[..4].iter().sum();
    assert!(
        emotions > 20_000,
        "emotion pixels per colour {counts:?}: are the plots drawn?"
    );
    assert!(counts[4] > 1_000, "silence pixels {counts:?}");
}
