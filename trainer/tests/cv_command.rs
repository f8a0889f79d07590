//! The `cv` command end to end on a tiny RAVDESS-named folder of synthetic
//! clips: folds by speaker, validation speakers, a network per fold with and
//! without calibration, and the JSON and Markdown it writes.

use std::collections::BTreeSet;

use seremotion_trainer::cv::{CvOptions, cv_command};
use seremotion_trainer::run::TrainOptions;
use seremotion_trainer::train::CorpusShares;

#[path = "support/synthetic.rs"]
mod synthetic;
#[path = "support/wav.rs"]
mod wav;

const ACTORS: usize = 6;

#[test]
fn cv_tests_every_speaker_once_and_scores_the_calibrated_networks_beside() {
    let dir = wav::temp_dir("cv-command");
    let data = dir.join("ravdess");
    wav::write_ravdess_actors(&data, ACTORS, synthetic::synthetic);
    let out = dir.join("cv");
    let o = CvOptions {
        train: TrainOptions {
            seed: 3,
            ensemble: 1,
            calibrate: true,
            corpus_shares: CorpusShares::Equal,
            ..synthetic::tiny_recipe(data, out.clone())
        },
        folds: 3,
        max_folds: None,
        held_out: Vec::new(),
        leave_one_corpus_out: false,
        normalizations: vec![Default::default()],
        val_fraction: 0.2,
    };
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
    let md = std::fs::read_to_string(out.join("cv.md")).unwrap();
    assert!(md.contains(", calibrated | ravdess"), "{md}");
    assert!(
        md.contains("the same share of the training windows"),
        "{md}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
