//! Checks the corpus readers against the real data in `../shared/datasets/`
//! (skipped, with a note, where that folder is absent, e.g. on a user's machine).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use seremotion_trainer::corpus::{
    Clip, Emotion, LABELS, load_audio, load_manifest, scan_folder_report,
};
use seremotion_trainer::split::{SplitConfig, split};

fn datasets() -> Option<PathBuf> {
    let dir = std::env::var_os("SEREMOTION_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets"));
    if dir.join("MANIFEST.csv").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: no datasets at {} (set SEREMOTION_DATASETS)",
            dir.display()
        );
        None
    }
}

fn key(c: &Clip) -> (PathBuf, String, String, Emotion, String) {
    let path = c.path.canonicalize().expect("listed file exists");
    (
        path,
        c.corpus.clone(),
        c.speaker.clone(),
        c.emotion,
        c.group.clone(),
    )
}

#[test]
fn folder_scan_agrees_with_the_manifest() {
    let Some(dir) = datasets() else { return };
    let all = load_manifest(&dir.join("MANIFEST.csv")).unwrap();
    assert_eq!(all.len(), 5298);
    // The folder scan knows the corpora with a naming convention of their
    // own (RAVDESS, SAVEE, TESS, CREMA-D); ASED and nEMO come from the manifest.
    let manifest: Vec<_> = all
        .into_iter()
        .filter(|c| ["tess", "ravdess", "savee"].contains(&c.corpus.as_str()))
        .collect();
    let scan = scan_folder_report(&dir).unwrap();
    let foreign: Vec<_> = scan
        .unrecognised
        .iter()
        .filter(|p| {
            let p = p.to_string_lossy();
            !(p.contains("/ased/") || p.contains("/nemo/"))
        })
        .take(5)
        .collect();
    assert!(foreign.is_empty(), "{foreign:?}");
    assert_eq!(scan.dropped_emotions, 0);
    assert_eq!(manifest.len(), 2384);
    let a: BTreeSet<_> = manifest.iter().map(key).collect();
    let b: BTreeSet<_> = scan.clips.iter().map(key).collect();
    assert_eq!(a.len(), manifest.len(), "duplicate manifest rows");
    let only_manifest: Vec<_> = a.difference(&b).take(5).collect();
    let only_scan: Vec<_> = b.difference(&a).take(5).collect();
    assert!(
        only_manifest.is_empty() && only_scan.is_empty(),
        "manifest only: {only_manifest:?}\nscan only: {only_scan:?}"
    );
    // README totals: neutral 570, happy 604, sad 605, angry 605.
    let mut per = [0usize; 4];
    manifest.iter().for_each(|c| per[c.emotion.index()] += 1);
    assert_eq!(per, [570, 604, 605, 605], "{LABELS:?}");
    let words: BTreeSet<_> = manifest
        .iter()
        .filter(|c| c.corpus == "tess")
        .map(|c| &c.group)
        .collect();
    assert_eq!(words.len(), 200);
}

#[test]
fn real_split_is_speaker_independent() {
    let Some(dir) = datasets() else { return };
    let clips = load_manifest(&dir.join("MANIFEST.csv")).unwrap();
    let s = split(
        &clips,
        &SplitConfig {
            seed: 1,
            ..Default::default()
        },
    );
    let voices = |v: &[Clip]| -> BTreeSet<(String, String)> {
        v.iter()
            .filter(|c| c.corpus != "tess")
            .map(|c| (c.corpus.clone(), c.speaker.clone()))
            .collect()
    };
    let train = voices(&s.train);
    assert!(train.is_disjoint(&voices(&s.val)));
    assert!(train.is_disjoint(&voices(&s.test)));
    let words = |v: &[Clip]| -> BTreeSet<String> {
        v.iter()
            .filter(|c| c.corpus == "tess")
            .map(|c| c.group.clone())
            .collect()
    };
    assert!(words(&s.train).is_disjoint(&words(&s.test)));
    assert_eq!(s.train.len() + s.val.len() + s.test.len(), clips.len());
}

#[test]
fn real_audio_decodes_at_the_listed_duration() {
    let Some(dir) = datasets() else { return };
    let text = std::fs::read_to_string(dir.join("MANIFEST.csv")).unwrap();
    // One file per corpus, including TESS's `OA_` and the AIFF-sourced file.
    for rel in [
        "ravdess/Actor_20/03-01-03-01-02-01-20.flac",
        "tess/OA_bite_neutral.flac",
        "tess/YAF_germ_angry.flac",
        "savee/JK_sa15.flac",
    ] {
        let row = text.lines().find(|l| l.starts_with(rel)).expect(rel);
        let duration: f64 = row.split(',').nth(4).unwrap().parse().unwrap();
        let x = load_audio(&dir.join(rel), 16000).unwrap();
        assert!((x.len() as f64 / 16000.0 - duration).abs() < 0.002, "{rel}");
        let peak = x.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.001 && peak <= 1.0, "{rel}: peak {peak}");
        // The trainer may ask for another rate; the shared resampler serves it.
        let y = load_audio(&dir.join(rel), 8000).unwrap();
        assert!((y.len() as i64 - (x.len() / 2) as i64).abs() <= 1, "{rel}");
    }
}
