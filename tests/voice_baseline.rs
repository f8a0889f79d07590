//! The voice baseline (`subtract_stream_mean` models) in the core analyser the
//! element runs: it learns each speech frame of a stream once, never from
//! silence, moves from the model's prior to the voice, and is forgotten on
//! request (the element does so at a new stream).
//!
//! The "tone bands" fixture's logit j is 0.1 x the window's mean of log-mel
//! band BANDS[j] (after normalisation), so what the baseline does shows in
//! the scores.

#[path = "support/signals.rs"]
mod signals;

use std::path::PathBuf;
use std::sync::Arc;

use seremotion_core::analysis::{AnalyzerSettings, EmotionAnalyzer};
use seremotion_core::features::WindowNormalization;
use seremotion_core::model::{Model, writer};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Log-mel band whose mean is the fixture's first logit ("neutral").
const NEUTRAL_BAND: usize = 8;

/// The fixture with a voice baseline of weight `prior_frames` whose prior
/// puts the "neutral" band far below any real level (and the others at 0 dB),
/// so that against the prior alone every window is neutral.
fn stream_model(prior_frames: f32) -> Arc<Model> {
    let reference = Model::from_file(&fixture("tone_bands.onnx")).expect("fixture loads");
    let mut meta = reference.metadata().clone();
    meta.features.normalization = WindowNormalization::SubtractStreamMean;
    meta.features.stream_prior = vec![0.0; meta.features.n_features()];
    meta.features.stream_prior[NEUTRAL_BAND] = -150.0;
    meta.features.stream_prior_frames = prior_frames;
    let bare = std::fs::read(fixture("tone_bands_bare.onnx")).expect("fixture");
    Model::from_bytes(&writer::embed_metadata(&bare, &meta), "voice baseline test")
        .expect("the stream model loads")
}

/// Speech-like audio (4 Hz syllables) at the model's rate, `seconds` long.
fn speech(seconds: usize) -> Vec<f32> {
    signals::speechy(16000, 1, 16000 * seconds)
}

struct Window {
    n_frames: usize,
    speech_frames: usize,
    scores: Option<Vec<f32>>,
}

fn analyse(analyzer: &mut EmotionAnalyzer, audio: &[f32]) -> Vec<Window> {
    let mut out = Vec::new();
    let mut collect = |r: &seremotion_core::analysis::WindowResult| {
        out.push(Window {
            n_frames: r.n_frames,
            speech_frames: (r.speech_ratio * r.n_frames as f32).round() as usize,
            scores: r.scores.map(<[f32]>::to_vec),
        })
    };
    for chunk in audio.chunks(1234) {
        analyzer.push(chunk, &mut collect).expect("inference");
    }
    out
}

#[test]
fn the_baseline_learns_every_speech_frame_once() {
    let model = stream_model(50.0);
    let mut settings = AnalyzerSettings::for_model(&model);
    // Windows side by side: the frames learnt are exactly the speech frames
    // the windows report.
    settings.hop_frames = settings.window_frames;
    let mut analyzer = EmotionAnalyzer::new(model.clone(), settings).expect("analyser");
    let windows = analyse(&mut analyzer, &speech(6));
    let speech_frames: usize = windows.iter().map(|w| w.speech_frames).sum();
    let frames: usize = windows.iter().map(|w| w.n_frames).sum();
    assert!(
        speech_frames > frames / 4,
        "the signal is speech: {speech_frames} of {frames}"
    );
    assert_eq!(analyzer.voice_frames(), speech_frames as f64);

    // Windows overlapping by half see every frame twice; it counts once.
    let mut settings = AnalyzerSettings::for_model(&model);
    settings.hop_frames = settings.window_frames / 2;
    let mut analyzer = EmotionAnalyzer::new(model.clone(), settings).expect("analyser");
    let windows = analyse(&mut analyzer, &speech(6));
    let covered =
        windows.last().map_or(0, |w| w.n_frames) + settings.hop_frames * (windows.len() - 1);
    assert!(analyzer.voice_frames() > 0.0);
    assert!(
        analyzer.voice_frames() <= covered as f64,
        "{} speech frames learnt from {covered} frames",
        analyzer.voice_frames()
    );

    // A new voice starts from the prior again; a discontinuity does not.
    analyzer.reset();
    assert!(analyzer.voice_frames() > 0.0);
    analyzer.forget_voice();
    assert_eq!(analyzer.voice_frames(), 0.0);
}

#[test]
fn silence_and_steady_noise_teach_the_baseline_nothing() {
    let model = stream_model(50.0);
    let settings = AnalyzerSettings::for_model(&model);
    let mut analyzer = EmotionAnalyzer::new(model, settings).expect("analyser");
    let mut quiet = vec![0f32; 16000 * 3];
    // Steady white-ish noise: loud, but never speech.
    let mut z = 0x2545_F491_4F6C_DD1Du64;
    quiet.extend((0..16000 * 3).map(|_| {
        z ^= z << 13;
        z ^= z >> 7;
        z ^= z << 17;
        ((z >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32 * 0.2
    }));
    let windows = analyse(&mut analyzer, &quiet);
    assert!(windows.iter().all(|w| w.scores.is_none()));
    assert_eq!(analyzer.voice_frames(), 0.0);
}

#[test]
fn the_voice_replaces_the_prior_as_speech_comes_in() {
    // Against the prior, the neutral band stands ~60 dB above the others
    // (logit +6): neutral. After seconds of the same voice the baseline is
    // the voice itself, every band sits near 0 and no label stands out.
    let model = stream_model(50.0);
    let settings = AnalyzerSettings::for_model(&model);
    let mut analyzer = EmotionAnalyzer::new(model, settings).expect("analyser");
    let scored: Vec<Vec<f32>> = analyse(&mut analyzer, &speech(20))
        .into_iter()
        .filter_map(|w| w.scores)
        .collect();
    assert!(scored.len() > 10, "{} speech windows", scored.len());
    let top = |s: &[f32]| s.iter().copied().fold(f32::MIN, f32::max);
    let (first, last) = (&scored[0], &scored[scored.len() - 1]);
    assert!(first[0] > 0.9, "against the prior: {first:?}");
    assert!(top(last) < 0.5, "against the voice: {last:?}");

    // A prior that outweighs any call keeps every window neutral.
    let heavy = stream_model(1e6);
    let mut analyzer =
        EmotionAnalyzer::new(heavy.clone(), AnalyzerSettings::for_model(&heavy)).expect("analyser");
    let scored: Vec<Vec<f32>> = analyse(&mut analyzer, &speech(20))
        .into_iter()
        .filter_map(|w| w.scores)
        .collect();
    assert!(scored.iter().all(|s| s[0] > 0.9));
}
