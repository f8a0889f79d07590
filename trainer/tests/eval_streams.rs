//! `eval --streams speaker`: each speaker's clips are played as one stream,
//! with silence between them, and every clip is scored by the windows centred
//! inside it. The fixture model answers by tone frequency (logit j is the mean
//! of one log-mel band), so each clip's right answer is known.

use std::path::{Path, PathBuf};

use seremotion_core::analysis::{AnalyzerSettings, classify_clip};
use seremotion_core::model::Model;
use seremotion_trainer::corpus::{Clip, Emotion};
use seremotion_trainer::eval::{EvalOptions, Streams, evaluate};

#[path = "support/wav.rs"]
mod wav;
use wav::{temp_dir, write_wav};

const RATE: f64 = 16000.0;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tone_bands.onnx")
}

/// A tone in 4 Hz bursts over a quiet floor, so the speech decision hears
/// syllables rather than a steady hum.
fn bursts(freq: f64, seconds: f64) -> Vec<f32> {
    (0..(seconds * RATE) as usize)
        .map(|i| {
            let t = i as f64 / RATE;
            let level = if (t * 4.0).fract() < 0.6 { 0.5 } else { 0.02 };
            (level * (std::f64::consts::TAU * freq * t).sin()) as f32
        })
        .collect()
}

/// A frequency the fixture model gives `label` on its own.
fn freq_for(model: &std::sync::Arc<Model>, label: usize) -> f64 {
    let settings = AnalyzerSettings::for_model(model);
    (0..60)
        .map(|k| 100.0 * 1.07f64.powi(k))
        .find(|&f| {
            let summary = classify_clip(model, &bursts(f, 2.0), &settings).unwrap();
            summary.dominant() == Some(label)
        })
        .unwrap_or_else(|| panic!("no tone the fixture calls label {label}"))
}

#[test]
fn speaker_streams_score_each_clip_by_its_own_windows() {
    let model = Model::from_file(&fixture()).unwrap();
    let labels = model.labels().to_vec();
    let dir = temp_dir("streams");
    // Speaker A's clips (one short), then speaker B's, with the windows each
    // gets as a speaker stream. The fixture's windows are 97 frames (of 400
    // samples every 160) every 100 frames, so centred at k + 0.4925 s. A's
    // stream: clips at 0-2.7, 3.2-6.3, 6.8-8.1 and 8.6-11.5 s (the centre at
    // 8.49 s falls in a gap, the last at 11.49 s does not). B's: 0-2.9 and
    // 3.4-6.6 s; the short last window, centred at 7.05 s, is in the silence
    // after them.
    let settings = AnalyzerSettings::for_model(&model);
    assert_eq!((settings.window_frames, settings.hop_frames), (97, 100));
    let plan = [
        ("A", Emotion::Happy, 2.7, 3),
        ("A", Emotion::Sad, 3.1, 3),
        ("A", Emotion::Angry, 1.3, 1),
        ("A", Emotion::Neutral, 2.9, 3),
        ("B", Emotion::Sad, 2.9, 3),
        ("B", Emotion::Happy, 3.2, 4),
    ];
    let clips: Vec<Clip> = plan
        .iter()
        .enumerate()
        .map(|(i, &(speaker, emotion, seconds, _))| {
            let label = labels.iter().position(|l| l == emotion.name()).unwrap();
            let path = dir.join(format!("{i}.wav"));
            let samples: Vec<i16> = bursts(freq_for(&model, label), seconds)
                .iter()
                .map(|&x| (x * 32767.0) as i16)
                .collect();
            write_wav(&path, &samples);
            Clip {
                path,
                corpus: "synthetic".into(),
                speaker: speaker.into(),
                emotion,
                group: speaker.into(),
            }
        })
        .collect();

    for streams in [Streams::Clip, Streams::Speaker] {
        let opts = EvalOptions {
            streams,
            ..EvalOptions::new(dir.join(format!("{streams:?}.json")))
        };
        let report = evaluate(Some(&fixture()), &clips, &opts).unwrap();
        // In the clips' order, each with its own answer.
        let paths: Vec<&Path> = report.clips.iter().map(|c| c.path.as_path()).collect();
        let expected: Vec<&Path> = clips.iter().map(|c| c.path.as_path()).collect();
        assert_eq!(paths, expected, "{streams:?}");
        for c in &report.clips {
            assert_eq!(
                c.predicted,
                Some(c.truth),
                "{streams:?}: {}",
                c.path.display()
            );
        }
        if streams == Streams::Speaker {
            let windows: Vec<usize> = report.clips.iter().map(|c| c.windows).collect();
            let expected: Vec<usize> = plan.iter().map(|p| p.3).collect();
            assert_eq!(windows, expected, "windows per clip, centred inside it");
        }
        assert_eq!(report.overall.n, clips.len());
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&opts.json_out).unwrap()).unwrap();
        let name = if streams == Streams::Clip {
            "clip"
        } else {
            "speaker"
        };
        assert_eq!(written["streams"], name);
    }
    std::fs::remove_dir_all(dir).unwrap();
}
