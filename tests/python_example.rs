//! examples/emotion_monitor.py: the element from Python through PyGObject,
//! with the installed plugin (scripts/setup.sh installs it, and Debian's
//! python3-gi for the system Python).

use std::process::Command;

#[test]
fn python_example_reads_results_from_the_bus() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let dir = std::env::temp_dir().join(format!("seremotion-python-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("sample.wav");
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg("I can't believe you did that. This is wonderful, thank you so much.")
        .status()
        .expect("espeak-ng is missing: scripts/setup.sh installs it");
    assert!(status.success());
    let out = Command::new("/usr/bin/python3")
        .arg(format!("{repo}/examples/emotion_monitor.py"))
        .arg(&wav)
        .output()
        .expect("/usr/bin/python3 is missing");
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let windows = stdout.lines().filter(|l| l.contains("channel -1")).count();
    let summaries = stdout
        .lines()
        .filter(|l| l.starts_with("summary channel -1: dominant "))
        .count();
    assert!(windows >= 2 && summaries == 1, "{stdout}{stderr}");
}
