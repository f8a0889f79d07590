//! The `cv` command end to end on a tiny RAVDESS-named folder of synthetic
//! clips: folds by speaker, validation speakers, a network per fold with and
//! without calibration, the JSON and Markdown it writes, and a run resumed
//! in a second sitting.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use seremotion_trainer::cv::{CvOptions, cv_command};
use seremotion_trainer::run::TrainOptions;
use seremotion_trainer::train::CorpusShares;

#[path = "support/synthetic.rs"]
mod synthetic;
#[path = "support/wav.rs"]
mod wav;

const ACTORS: usize = 6;

/// burn seeds one random generator per process: trainings in parallel tests
/// would draw from it in turn and make each other's numbers.
static TRAINING: Mutex<()> = Mutex::new(());

/// Three folds of the tiny recipe on `data`, into `out`.
fn three_folds(data: &Path, out: &Path, seed: u64) -> CvOptions {
    CvOptions {
        train: TrainOptions {
            seed,
            ensemble: 1,
            ..synthetic::tiny_recipe(data.to_path_buf(), out.to_path_buf())
        },
        folds: 3,
        max_folds: None,
        only_folds: Vec::new(),
        held_out: Vec::new(),
        leave_one_corpus_out: false,
        normalizations: vec![Default::default()],
        val_fraction: 0.2,
        resume: false,
    }
}

#[test]
fn cv_tests_every_speaker_once_and_scores_the_calibrated_networks_beside() {
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = wav::temp_dir("cv-command");
    let data = dir.join("ravdess");
    wav::write_ravdess_actors(&data, ACTORS, synthetic::synthetic);
    let out = dir.join("cv");
    let mut o = three_folds(&data, &out, 3);
    o.train.calibrate = true;
    o.train.corpus_shares = CorpusShares::Equal;
    cv_command(&o).expect("cv");

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cv.json")).unwrap()).unwrap();
    assert_eq!(v["calibrate"], true);
    assert_eq!(v["corpus_shares"], "equal");
    let runs = v["runs"].as_array().expect("runs");
    let (plain, calibrated): (Vec<_>, Vec<_>) = runs
        .iter()
        .partition(|r| !r["recipe"].as_str().unwrap().ends_with(", calibrated"));
    assert_eq!(
        (plain.len(), calibrated.len()),
        (3, 3),
        "a row of each a fold"
    );
    // Each actor is a test speaker in exactly one fold.
    let mut tested = Vec::new();
    for r in &plain {
        assert!(r.get("calibration").is_none(), "{r}");
        for voice in r["test_voices"].as_array().unwrap() {
            tested.push(voice[1].as_str().unwrap().to_string());
        }
    }
    let unique: BTreeSet<&String> = tested.iter().collect();
    assert_eq!((tested.len(), unique.len()), (ACTORS, ACTORS), "{tested:?}");
    // The calibrated row is the same fold's network with offsets chosen on
    // its validation speakers.
    for (p, c) in plain.iter().zip(&calibrated) {
        assert_eq!(p["fold"], c["fold"]);
        assert_eq!(p["best_epoch"], c["best_epoch"]);
        let offsets = c["calibration"]["offsets"].as_array().expect("offsets");
        assert_eq!(offsets.len(), 4);
        assert_eq!(offsets[0], 0.0);
        assert!(
            c["calibration"]["val_ua_after"].as_f64() >= c["calibration"]["val_ua_before"].as_f64()
        );
    }
    // Each partition's exported model (the calibrated networks) is kept;
    // the element's inference path scores its test speakers as cv did, and
    // keeps the voices it heard apart.
    let clips = seremotion_trainer::run::load_clips(&o.train.sources).expect("clips");
    for c in &calibrated {
        let fold = c["fold"].as_str().unwrap().replace(' ', "-");
        let path = out.join(format!("models/speaker-k-fold-{fold}.onnx"));
        let report = seremotion_trainer::eval::evaluate(
            Some(&path),
            &clips,
            &seremotion_trainer::eval::EvalOptions::new(dir.join("eval.json")),
        )
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        let scored = &report.per_corpus["ravdess"];
        assert_eq!(scored.n, c["per_corpus"]["ravdess"]["clips"], "{fold}");
        assert_eq!(
            scored.unweighted_accuracy, c["per_corpus"]["ravdess"]["clean_ua"],
            "{fold}"
        );
        assert_eq!(report.per_corpus_seen["ravdess"].n + scored.n, clips.len());
    }
    let md = std::fs::read_to_string(out.join("cv.md")).unwrap();
    assert!(md.contains(", calibrated | ravdess"), "{md}");
    assert!(
        md.contains("the same share of the training windows"),
        "{md}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_resumed_run_keeps_its_rows_and_ends_as_an_uninterrupted_one() {
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = wav::temp_dir("cv-resume");
    let data = dir.join("ravdess");
    wav::write_ravdess_actors(&data, ACTORS, synthetic::synthetic);
    let options = |out: &PathBuf, seed, max_folds, resume| CvOptions {
        max_folds,
        resume,
        ..three_folds(&data, out, seed)
    };
    let whole = dir.join("whole");
    cv_command(&options(&whole, 5, None, false)).expect("uninterrupted run");

    // First sitting: one fold. Its row is marked, to tell a kept row from a
    // retrained one.
    let split = dir.join("split");
    cv_command(&options(&split, 5, Some(1), false)).expect("first sitting");
    let mut first = read_json(&split.join("cv.json"));
    assert_eq!(first["runs"].as_array().unwrap().len(), 1);
    first["runs"][0]["seconds"] = 12345.0.into();
    std::fs::write(split.join("cv.json"), first.to_string()).unwrap();

    // Another recipe may not add its rows to this table.
    let err = cv_command(&options(&split, 6, None, true)).expect_err("another seed");
    let err = format!("{err:#}");
    assert!(err.contains("train.seed was 5, now 6"), "{err}");

    // Second sitting: only the last fold, as a full run makes it.
    cv_command(&CvOptions {
        only_folds: vec![3],
        ..options(&split, 5, None, true)
    })
    .expect("second sitting");
    assert_eq!(
        read_json(&split.join("cv.json"))["runs"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    cv_command(&options(&split, 5, None, true)).expect("third sitting");
    let resumed = read_json(&split.join("cv.json"));
    let uninterrupted = read_json(&whole.join("cv.json"));
    let runs = resumed["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0]["seconds"], 12345.0, "fold 1 was trained again");
    // Trained as folds 1, 3, 2; stored in fold order, as an uninterrupted run.
    for (r, u) in runs.iter().zip(uninterrupted["runs"].as_array().unwrap()) {
        for key in [
            "fold",
            "test_voices",
            "best_epoch",
            "best_val_ua",
            "per_corpus",
        ] {
            assert_eq!(r[key], u[key], "{key} of {}", r["fold"]);
        }
    }
    assert_eq!(resumed["summary"], uninterrupted["summary"]);
    assert_eq!(resumed["earlier_commands"].as_array().unwrap().len(), 2);

    // Nothing left to train: the table is written again as it was.
    cv_command(&options(&split, 5, None, true)).expect("fourth sitting");
    assert_eq!(read_json(&split.join("cv.json"))["runs"], resumed["runs"]);
    std::fs::remove_dir_all(dir).unwrap();
}
