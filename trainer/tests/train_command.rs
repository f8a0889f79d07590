//! The `train` command end to end on a tiny RAVDESS-named folder of synthetic
//! clips: split, features, a two-network ensemble, export, held-out
//! evaluation through the element's inference path, and the report.

use seremotion_core::model::Model;
use seremotion_trainer::run::{DataSource, TrainOptions, member_seed, train_command};

#[path = "support/synthetic.rs"]
mod synthetic;
#[path = "support/wav.rs"]
mod wav;

/// Seven RAVDESS-named actors of synthetic clips in `dir/ravdess` (enough for
/// one validation and one test speaker), and a tiny, fast recipe for them.
fn tiny_corpus(dir: &std::path::Path) -> TrainOptions {
    let data = dir.join("ravdess");
    wav::write_ravdess_actors(&data, 7, synthetic::synthetic);
    TrainOptions {
        name: "tiny".into(),
        seed: 5,
        ..synthetic::tiny_recipe(data, dir.join("out"))
    }
}

#[test]
fn train_writes_an_ensemble_model_with_its_report() {
    let dir = wav::temp_dir("train-command");
    let opts = TrainOptions {
        ensemble: 2,
        ..tiny_corpus(&dir)
    };
    let out = opts.out.clone();
    train_command(&opts).expect("train command");

    let model = Model::from_file(&out.join("tiny.onnx")).expect("the element loads the model");
    assert_eq!(
        model.metadata().labels,
        ["neutral", "happy", "sad", "angry"]
    );
    let training: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training.json")).unwrap()).unwrap();
    let seeds: Vec<u64> = training["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["seed"].as_u64().expect("member seed"))
        .collect();
    assert_eq!(seeds, [member_seed(5, 0), member_seed(5, 1)]);
    assert_eq!(seeds[0], 5, "the first member keeps the run's seed");
    assert_ne!(seeds[0], seeds[1]);
    for set in ["test-clean", "test-telephone"] {
        let n = &training["results"][set]["overall"]["n"];
        assert_eq!(n, 4, "{set}: one held-out actor's four clips");
    }
    // The metadata lists the voices heard; `eval` keeps them apart.
    let meta = &model.metadata().training;
    let listed = |key: &str| -> Vec<String> {
        meta[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in the metadata"))
            .iter()
            .map(|p| {
                assert_eq!(p[0], "ravdess");
                p[1].as_str().unwrap().to_string()
            })
            .collect()
    };
    let (trained, validated) = (listed("training_speakers"), listed("validation_speakers"));
    assert_eq!((trained.len(), validated.len()), (5, 1));
    let clips = seremotion_trainer::run::load_clips(&[DataSource::Folder(dir.join("ravdess"))])
        .expect("clips");
    let report = seremotion_trainer::eval::evaluate(
        Some(&out.join("tiny.onnx")),
        &clips,
        &seremotion_trainer::eval::EvalOptions::new(dir.join("all.json")),
    )
    .expect("eval");
    assert_eq!(report.overall.n, 4, "only the test actor is held out");
    assert_eq!(report.per_corpus["ravdess"].n, 4);
    assert_eq!(
        report.per_corpus_seen["ravdess"].n, 24,
        "six heard actors apart"
    );
    assert_eq!(report.json["seen_speaker_clips"], 24);

    let report = std::fs::read_to_string(out.join("REPORT.md")).unwrap();
    assert!(report.contains("ensemble of 2 networks"), "{report}");
    assert!(report.contains("Member 2 (seed"), "{report}");
    assert!(report.contains("x 2 members"), "{report}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// With `distill`, the ensemble only teaches: the exported model is one
/// network (one network's multiply-adds), and the report and metadata name
/// its teachers.
#[test]
fn train_distils_its_ensemble_into_one_exported_network() {
    use seremotion_trainer::train::Distillation;

    let dir = wav::temp_dir("train-distill");
    let how = Distillation {
        temperature: 2.0,
        weight: 0.5,
    };
    let opts = TrainOptions {
        ensemble: 2,
        distill: Some(how),
        evaluate: false,
        ..tiny_corpus(&dir)
    };
    train_command(&opts).expect("train command");
    let model = Model::from_file(&opts.out.join("tiny.onnx")).expect("the element loads it");
    let training = &model.metadata().training;
    let seeds = |key: &str| -> Vec<u64> {
        training[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}"))
            .iter()
            .map(|m| m["seed"].as_u64().expect("seed"))
            .collect()
    };
    assert_eq!(seeds("teachers"), [member_seed(5, 0), member_seed(5, 1)]);
    assert_eq!(
        seeds("members"),
        [member_seed(5, 2)],
        "one student, its own seed"
    );
    let net: seremotion_trainer::net::NetConfig =
        serde_json::from_value(training["net"].clone()).expect("net config");
    assert_eq!(
        training["macs_per_window"].as_u64(),
        Some(net.macs(model.window_frames()) as u64),
        "one network runs per window, not three"
    );
    assert_eq!(training["distillation"]["temperature"], 2.0);
    let report = std::fs::read_to_string(opts.out.join("REPORT.md")).unwrap();
    assert!(report.contains("distilled from 2 networks"), "{report}");
    assert!(!report.contains("x 2 members"), "{report}");

    // Refit has no schedule for a student: refused before any work.
    let refused = train_command(&TrainOptions {
        refit: true,
        ..opts.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(refused.contains("--distill and --refit"), "{refused}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `member_stems`: an ensemble of unlike networks (a stem on one member
/// only) exports as one graph the element runs, and the report and
/// metadata count each member's own network.
#[test]
fn train_exports_an_ensemble_of_unlike_networks() {
    use seremotion_trainer::net::NetConfig;

    let dir = wav::temp_dir("train-unlike");
    let opts = TrainOptions {
        ensemble: 2,
        member_stems: vec![4, 0],
        evaluate: false,
        ..tiny_corpus(&dir)
    };
    train_command(&opts).expect("train command");
    let model = Model::from_file(&opts.out.join("tiny.onnx")).expect("the element loads it");
    let training = &model.metadata().training;
    let nets: Vec<NetConfig> = training["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| serde_json::from_value(m["net"].clone()).expect("a member's net"))
        .collect();
    let stems: Vec<usize> = nets.iter().map(|n| n.frequency_stem).collect();
    assert_eq!(stems, [4, 0]);
    let macs: usize = nets.iter().map(|n| n.macs(model.window_frames())).sum();
    assert_eq!(training["macs_per_window"].as_u64(), Some(macs as u64));
    assert!(nets[0].macs(100) > nets[1].macs(100), "the stem costs");
    let report = std::fs::read_to_string(opts.out.join("REPORT.md")).unwrap();
    assert!(
        report.contains("alike but for their frequency stems (4, 0 channels)"),
        "{report}"
    );

    // One stem width a member, refused before any work otherwise.
    let refused = train_command(&TrainOptions {
        ensemble: 3,
        ..opts.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("2 stem widths for 3 ensemble member"),
        "{refused}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// With `calibrate`, the exported model carries the offsets chosen on the
/// validation speaker: run through the element's inference path, it scores
/// that voice as the calibration said it would, and the metadata and report
/// say so.
#[test]
fn train_calibrates_the_exported_logits_on_validation_speakers() {
    let dir = wav::temp_dir("train-calibrate");
    let opts = TrainOptions {
        calibrate: true,
        evaluate: false,
        ..tiny_corpus(&dir)
    };
    train_command(&opts).expect("train --calibrate");
    let path = opts.out.join("tiny.onnx");
    let model = Model::from_file(&path).expect("the element loads it");
    let training = &model.metadata().training;
    let c = &training["calibration"];
    let offsets: Vec<f64> = c["offsets"]
        .as_array()
        .expect("offsets in the metadata")
        .iter()
        .map(|v| v.as_f64().expect("offset"))
        .collect();
    assert_eq!(offsets.len(), 4);
    assert_eq!(offsets[0], 0.0, "neutral is the reference");
    let (before, after) = (c["val_ua_before"].as_f64(), c["val_ua_after"].as_f64());
    if offsets.iter().any(|&o| o != 0.0) {
        assert!(after > before, "{c}");
    } else {
        assert_eq!(after, before, "{c}");
    }

    let validation = training["validation_speakers"][0][1]
        .as_str()
        .expect("a validation speaker");
    let clips: Vec<_> = seremotion_trainer::run::load_clips(&opts.sources)
        .expect("clips")
        .into_iter()
        .filter(|c| c.speaker == validation)
        .collect();
    assert_eq!(clips.len(), 4);
    let report = seremotion_trainer::eval::evaluate(
        Some(&path),
        &clips,
        &seremotion_trainer::eval::EvalOptions::new(dir.join("val.json")),
    )
    .expect("eval");
    let heard = report.per_corpus_seen["ravdess"].unweighted_accuracy;
    assert!(
        (heard - after.expect("val_ua_after")).abs() < 1e-6,
        "ONNX Runtime scores the validation voice {heard}, calibration said {c}"
    );
    let text = std::fs::read_to_string(opts.out.join("REPORT.md")).unwrap();
    assert!(text.contains("Logit offsets"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}
