//! `evaluate` end to end through the root crate's model and analysis path,
//! with the embedded default model (needs ONNX Runtime, as the element does).

use std::path::{Path, PathBuf};

use seremotion_trainer::corpus::{Clip, Emotion, load_manifest};
use seremotion_trainer::eval::{EvalOptions, evaluate};

#[path = "support/wav.rs"]
mod wav;
use wav::{temp_dir, write_wav};

#[test]
fn silent_clips_count_as_errors_and_outputs_are_written() {
    let dir = temp_dir("silence");
    let silent = dir.join("silent.wav");
    write_wav(&silent, &vec![0; 48000]);
    let clip = |emotion| Clip {
        path: silent.clone(),
        corpus: "synthetic".into(),
        speaker: "S1".into(),
        emotion,
        group: "S1".into(),
    };
    let clips = [clip(Emotion::Sad), clip(Emotion::Neutral)];
    let opts = EvalOptions {
        telephony: true,
        plot_dir: Some(dir.join("plots")),
        ..EvalOptions::new(dir.join("out/eval.json"))
    };
    let report = evaluate(None, &clips, &opts).unwrap();
    assert_eq!(report.overall.n, 2);
    assert_eq!(report.overall.accuracy, 0.0);
    assert_eq!(report.overall.unclassified.iter().sum::<usize>(), 2);
    assert!(report.clips.iter().all(|c| c.predicted.is_none()));

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&opts.json_out).unwrap()).unwrap();
    assert_eq!(json["telephony"], true);
    assert_eq!(json["labels"].as_array().unwrap().len(), 4);
    for key in seremotion_trainer::metrics::METRIC_KEYS {
        assert!(json["overall"].get(key).is_some(), "{key}");
        assert!(json["per_corpus"]["synthetic"].get(key).is_some(), "{key}");
    }
    for png in [
        "confusion_synthetic_telephony.png",
        "confusion_overall_telephony.png",
    ] {
        assert!(dir.join("plots").join(png).is_file(), "{png}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A voice-like sound (150 Hz and its harmonics, coming and going four
/// times a second) whose loudest 50 ms are about -60 dBFS: below the
/// element's default gate, above a lowered one.
#[test]
fn a_lowered_speech_threshold_classifies_quiet_speech_the_default_gate_drops() {
    let dir = temp_dir("quiet");
    let quiet = dir.join("quiet.wav");
    let rate = 16000.0;
    let pcm: Vec<i16> = (0..48000)
        .map(|i| {
            let t = i as f32 / rate;
            let syllables = 0.5 - 0.5 * (std::f32::consts::TAU * 4.0 * t).cos();
            let voice: f32 = (1..=8)
                .map(|h| (std::f32::consts::TAU * 150.0 * h as f32 * t).sin() / h as f32)
                .sum();
            (voice * syllables * 20.0).round() as i16
        })
        .collect();
    write_wav(&quiet, &pcm);
    let clips = [Clip {
        path: quiet,
        corpus: "synthetic".into(),
        speaker: "S1".into(),
        emotion: Emotion::Sad,
        group: "S1".into(),
    }];
    let eval = |speech_threshold_db| {
        let opts = EvalOptions {
            speech_threshold_db,
            ..EvalOptions::new(dir.join("eval.json"))
        };
        evaluate(None, &clips, &opts).unwrap()
    };
    let default_gate = eval(None);
    assert_eq!(default_gate.overall.unclassified, [0, 0, 1, 0]);
    let lowered = eval(Some(-75.0));
    assert_eq!(lowered.overall.unclassified, [0, 0, 0, 0]);
    assert!(lowered.clips[0].predicted.is_some());
    assert_eq!(lowered.json["analysis"]["speech_threshold_db"], -75.0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unreadable_clip_is_an_error_naming_it() {
    let dir = temp_dir("missing");
    let clips = [Clip {
        path: dir.join("gone.flac"),
        corpus: "x".into(),
        speaker: "s".into(),
        emotion: Emotion::Happy,
        group: "s".into(),
    }];
    let opts = EvalOptions::new(dir.join("e.json"));
    let e = evaluate(None, &clips, &opts).unwrap_err().to_string();
    assert!(e.contains("gone.flac"), "{e}");
    assert!(evaluate(None, &[], &opts).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn real_clips_per_corpus() {
    let dir = std::env::var_os("SEREMOTION_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets"));
    let Ok(all) = load_manifest(&dir.join("MANIFEST.csv")) else {
        eprintln!("skipped: no datasets at {}", dir.display());
        return;
    };
    // A few clips of every corpus and emotion keep this quick.
    let clips: Vec<Clip> = all.into_iter().step_by(60).collect();
    let out = temp_dir("real");
    let opts = EvalOptions::new(out.join("eval.json"));
    let report = evaluate(None, &clips, &opts).unwrap();
    // ASED's emotion-specific sentences are not scored; the default model
    // trained on every speaker of these corpora, so every scored clip is
    // reported apart, as a seen speaker's, and none as held out.
    let scored = clips.iter().filter(|c| c.is_scored()).count();
    assert!(scored < clips.len(), "some ASED clips are left out");
    assert_eq!(report.overall.n, 0);
    assert!(report.per_corpus.is_empty());
    let seen: usize = report.per_corpus_seen.values().map(|m| m.n).sum();
    assert_eq!(seen, scored);
    let corpora: std::collections::BTreeSet<&str> = clips
        .iter()
        .filter(|c| c.is_scored())
        .map(|c| c.corpus.as_str())
        .collect();
    assert_eq!(report.per_corpus_seen.len(), corpora.len());
    assert_eq!(
        report.json["unscored_clips"].as_u64(),
        Some((clips.len() - scored) as u64)
    );
    std::fs::remove_dir_all(out).unwrap();
}
