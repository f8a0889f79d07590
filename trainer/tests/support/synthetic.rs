//! Synthetic "emotions" for trainer tests and benches (included with
//! `#[path]`): tones whose pitch and tremolo differ per class, and a small,
//! fast training configuration.

#![allow(dead_code)]

use seremotion_core::features::FeatureConfig;
use seremotion_trainer::net::NetConfig;
use seremotion_trainer::train::{self, ClipFeatures, SpecMasks, TrainConfig, Utterance};

/// 1.2 s of a class-specific signal: base pitch and tremolo rate per class.
pub fn synthetic(label: usize, variant: usize) -> Vec<f32> {
    let sr = 16000.0;
    let f0 = [120.0, 220.0, 90.0, 300.0][label] * (1.0 + 0.03 * variant as f32);
    let trem = [2.0, 6.0, 1.0, 9.0][label];
    (0..19200)
        .map(|i| {
            let t = i as f32 / sr;
            let env = 0.3 * (0.6 + 0.4 * (std::f32::consts::TAU * trem * t).sin());
            let mut x = 0.0;
            for h in 1..6 {
                x += (std::f32::consts::TAU * f0 * h as f32 * t).sin() / h as f32;
            }
            env * x
        })
        .collect()
}

/// `window_frames`: the model window the speech decision looks back over.
pub fn clips(
    cfg: &FeatureConfig,
    variants: std::ops::Range<usize>,
    window_frames: usize,
) -> Vec<ClipFeatures> {
    let mut out = Vec::new();
    for label in 0..4 {
        for v in variants.clone() {
            out.push(ClipFeatures {
                label,
                corpus: "synthetic".into(),
                speaker: format!("v{v}"),
                scored: true,
                versions: vec![std::sync::Arc::new(
                    Utterance::from_audio(cfg, &synthetic(label, v), window_frames)
                        .expect("features"),
                )],
            });
        }
    }
    out
}

/// Feature configuration carrying the statistics of `train_set`.
pub fn normalised_features(train_set: &[ClipFeatures], window_frames: usize) -> FeatureConfig {
    let mut features = FeatureConfig::default_model();
    let (mean, std) = train::feature_stats(&features, train_set, window_frames);
    features.mean = mean;
    features.std = std;
    features
}

/// Training clips (variants 0–2), validation clips (variant 3) and the
/// feature configuration with the training set's statistics.
pub fn train_val_features(
    window_frames: usize,
) -> (Vec<ClipFeatures>, Vec<ClipFeatures>, FeatureConfig) {
    let train_set = clips(&FeatureConfig::default_model(), 0..3, window_frames);
    let val_set = clips(&FeatureConfig::default_model(), 3..4, window_frames);
    let features = normalised_features(&train_set, window_frames);
    (train_set, val_set, features)
}

/// A small, fast run: no regularisation, no augmentation, no averaging.
pub fn small_config(net: NetConfig, window_frames: usize) -> TrainConfig {
    TrainConfig {
        seed: 1,
        max_epochs: 6,
        batch_size: 8,
        samples_per_epoch: 32,
        learning_rate: 1e-2,
        weight_decay: 0.0,
        label_smoothing: 0.0,
        early_stop_patience: 100,
        first_checkpoint_epoch: 1,
        lr_patience: 100,
        lr_factor: 0.5,
        min_lr: 1e-5,
        window_frames,
        hop_frames: 20,
        short_window_fraction: 0.0,
        spec_masks: SpecMasks::OFF,
        weight_average_decay: 0.0,
        mixup_alpha: 0.0,
        fixed_schedule: None,
        validate_streams: false,
        speaker_adversary: 0.0,
        corpus_shares: Default::default(),
        net,
    }
}

pub fn small_net(features: &FeatureConfig) -> NetConfig {
    let mut net = NetConfig::new(features.n_features(), 4);
    net.channels = vec![8, 8];
    net.dropout = 0.0;
    net
}

/// A tiny, fast recipe of the `train` and `cv` commands for a folder of
/// [`synthetic`] clips: two epochs of small networks on 1 s windows.
pub fn tiny_recipe(
    data: std::path::PathBuf,
    out: std::path::PathBuf,
) -> seremotion_trainer::run::TrainOptions {
    use seremotion_trainer::run::{DataSource, TrainOptions};
    TrainOptions {
        sources: vec![DataSource::Folder(data)],
        out,
        epochs: 2,
        copies: 1,
        samples_per_epoch: 16,
        batch_size: 8,
        window_seconds: 1.0,
        channels: vec![8, 8],
        // One network unless a test asks for more: the tests train fast.
        ensemble: 1,
        ..Default::default()
    }
}
