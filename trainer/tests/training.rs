//! A tiny end-to-end training run on synthetic "emotions" (tones whose pitch,
//! level contour and noise differ per class): the loss must drop and the
//! validation windows must be classified above chance.

use gstseremotion::features::FeatureConfig;
use seremotion_trainer::net::NetConfig;
use seremotion_trainer::train::feature_config;
use seremotion_trainer::train::{self, ClipFeatures, TrainConfig, Utterance};

/// 1.2 s of a class-specific signal: base pitch and tremolo rate per class.
fn synthetic(label: usize, variant: usize) -> Vec<f32> {
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

fn clips(cfg: &FeatureConfig, variants: std::ops::Range<usize>) -> Vec<ClipFeatures> {
    let mut out = Vec::new();
    for label in 0..4 {
        for v in variants.clone() {
            out.push(ClipFeatures {
                label,
                corpus: "synthetic".into(),
                versions: vec![Utterance::from_audio(cfg, &synthetic(label, v)).expect("features")],
            });
        }
    }
    out
}

/// Feature configuration carrying the statistics of `train_set`.
fn normalised_features(train_set: &[ClipFeatures], window_frames: usize) -> FeatureConfig {
    let mut features = feature_config();
    let (mean, std) = train::feature_stats(&features, train_set, window_frames);
    features.mean = mean;
    features.std = std;
    features
}

/// A small, fast run: no regularisation, no augmentation, no averaging.
fn small_config(net: NetConfig, window_frames: usize) -> TrainConfig {
    TrainConfig {
        seed: 1,
        max_epochs: 6,
        batch_size: 8,
        samples_per_epoch: 32,
        learning_rate: 1e-2,
        weight_decay: 0.0,
        label_smoothing: 0.0,
        early_stop_patience: 100,
        lr_patience: 100,
        lr_factor: 0.5,
        min_lr: 1e-5,
        window_frames,
        hop_frames: 20,
        short_window_fraction: 0.0,
        freq_mask: 0,
        time_mask: 0,
        weight_average_decay: 0.0,
        fixed_schedule: None,
        net,
    }
}

fn small_net(features: &FeatureConfig) -> NetConfig {
    let mut net = NetConfig::new(features.n_features(), 4);
    net.channels = vec![8, 8];
    net.dropout = 0.0;
    net
}

#[test]
fn tiny_training_run_lowers_the_loss() {
    let window_frames = 40;
    let train_set = clips(&feature_config(), 0..3);
    let val_set = clips(&feature_config(), 3..4);
    let features = normalised_features(&train_set, window_frames);
    let cfg = small_config(small_net(&features), window_frames);
    let outcome = train::train(&cfg, &features, &train_set, &val_set, |_, _| {}).expect("training");
    let first = outcome.history.first().expect("an epoch").loss;
    let last = outcome.history.last().expect("an epoch").loss;
    assert!(last < first * 0.8, "loss did not drop: {first} -> {last}");
    assert!(
        outcome.best_val_ua > 0.4,
        "validation UA {} not above chance (0.25)",
        outcome.best_val_ua
    );
}

#[test]
fn a_refit_runs_its_schedule_without_validation() {
    let window_frames = 40;
    let train_set = clips(&feature_config(), 0..3);
    let features = normalised_features(&train_set, window_frames);
    let schedule = vec![1e-2, 1e-2, 5e-3];
    let cfg = TrainConfig {
        max_epochs: 50,
        samples_per_epoch: 16,
        // Neither may matter when a schedule is given.
        learning_rate: 1.0,
        early_stop_patience: 1,
        lr_patience: 1,
        weight_average_decay: 0.9,
        fixed_schedule: Some(schedule.clone()),
        ..small_config(small_net(&features), window_frames)
    };
    let outcome = train::train(&cfg, &features, &train_set, &[], |_, _| {}).expect("refit");
    let lrs: Vec<f64> = outcome.history.iter().map(|h| h.lr).collect();
    assert_eq!(
        lrs, schedule,
        "epochs and learning rates follow the schedule"
    );
    assert_eq!(outcome.best_epoch, 3, "the last epoch is the outcome");
    assert!(outcome.best_val_ua.is_nan(), "nothing was validated");
}

/// Throughput of the real network size; run by hand with `--ignored --nocapture`.
#[test]
#[ignore]
fn throughput_of_the_default_network() {
    let window_frames = 50; // synthetic clips are 1.2 s
    let train_set = clips(&feature_config(), 0..8);
    let val_set = clips(&feature_config(), 8..9);
    let features = normalised_features(&train_set, window_frames);
    let cfg = TrainConfig {
        max_epochs: 2,
        batch_size: 32,
        samples_per_epoch: 640,
        learning_rate: 2e-3,
        weight_decay: 1e-3,
        label_smoothing: 0.05,
        hop_frames: 50,
        short_window_fraction: 0.25,
        freq_mask: 8,
        time_mask: 10,
        weight_average_decay: 0.998,
        ..small_config(NetConfig::new(features.n_features(), 4), window_frames)
    };
    let t = std::time::Instant::now();
    let outcome = train::train(&cfg, &features, &train_set, &val_set, |log, _| {
        eprintln!(
            "epoch {} loss {:.3} val UA {:.3} {:.1} s",
            log.epoch, log.loss, log.val_ua, log.seconds
        )
    })
    .expect("training");
    eprintln!("{} windows/s", 2.0 * 640.0 / t.elapsed().as_secs_f64());
    assert_eq!(outcome.history.len(), 2);
}
