//! A tiny end-to-end training run on synthetic "emotions" (tones whose pitch,
//! level contour and noise differ per class): the loss must drop and the
//! validation windows must be classified above chance; a refit follows its
//! schedule; the same seed gives the same model; no checkpoint comes before
//! the first epoch allowed.

use seremotion_core::features::FeatureConfig;
use seremotion_trainer::train::{self, SpecMasks, TrainConfig};

#[path = "support/synthetic.rs"]
mod synthetic;
use synthetic::{clips, normalised_features, small_config, small_net, train_val_features};

/// burn's backend seed is process-wide: trainings in parallel tests would
/// draw from each other's generator, so the tests of this file take turns.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn tiny_training_run_lowers_the_loss() {
    let _serial = serial();
    let window_frames = 40;
    let (train_set, val_set, features) = train_val_features(window_frames);
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
    let _serial = serial();
    let window_frames = 40;
    let train_set = clips(&FeatureConfig::default_model(), 0..3, window_frames);
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

#[test]
fn the_same_seed_trains_the_same_model() {
    let _serial = serial();
    let window_frames = 40;
    let (train_set, val_set, features) = train_val_features(window_frames);
    let run = |seed| {
        let cfg = TrainConfig {
            seed,
            max_epochs: 2,
            short_window_fraction: 0.5,
            spec_masks: SpecMasks {
                max_rows: 4,
                max_frames: 4,
                count: 1,
            },
            weight_average_decay: 0.9,
            ..small_config(small_net(&features), window_frames)
        };
        let outcome = train::train(&cfg, &features, &train_set, &val_set, |_, _| {}).expect("run");
        let losses: Vec<f32> = outcome.history.iter().map(|h| h.loss).collect();
        (losses, train::float_tensors(&outcome.model))
    };
    let (losses, weights) = run(5);
    let (again_losses, again_weights) = run(5);
    assert_eq!(losses, again_losses, "same seed, same losses");
    assert!(weights == again_weights, "same seed, same weights");
    let (other_losses, _) = run(6);
    assert_ne!(losses, other_losses, "another seed draws other batches");
}

/// Patience of one epoch would end a run at its second or third epoch; with
/// the first checkpoint at the last epoch, it runs to the end and keeps that
/// epoch, whatever validation said before.
#[test]
fn no_checkpoint_is_kept_before_the_first_checkpoint_epoch() {
    let _serial = serial();
    let window_frames = 40;
    let (train_set, val_set, features) = train_val_features(window_frames);
    let cfg = TrainConfig {
        max_epochs: 5,
        early_stop_patience: 1,
        first_checkpoint_epoch: 5,
        ..small_config(small_net(&features), window_frames)
    };
    let outcome = train::train(&cfg, &features, &train_set, &val_set, |_, _| {}).expect("run");
    assert_eq!(
        outcome.history.len(),
        5,
        "it ran to the first checkpoint epoch"
    );
    assert_eq!(outcome.best_epoch, 5);
    assert_eq!(outcome.best_val_ua, outcome.history[4].val_ua);
}

#[test]
fn mixup_trains_on_blended_batches() {
    let _serial = serial();
    let window_frames = 40;
    let (train_set, val_set, features) = train_val_features(window_frames);
    let run = |mixup_alpha| {
        let cfg = TrainConfig {
            mixup_alpha,
            label_smoothing: 0.05,
            ..small_config(small_net(&features), window_frames)
        };
        train::train(&cfg, &features, &train_set, &val_set, |_, _| {}).expect("run")
    };
    let plain = run(0.0);
    let mixed = run(0.4);
    let losses = |o: &train::TrainOutcome| o.history.iter().map(|h| h.loss).collect::<Vec<_>>();
    assert!(losses(&mixed).iter().all(|l| l.is_finite()));
    assert_ne!(losses(&plain), losses(&mixed), "mixup changes the batches");
    assert!(
        mixed.best_val_ua > 0.4,
        "validation UA {} not above chance (0.25)",
        mixed.best_val_ua
    );
}

/// With a voice baseline and `validate_streams`, each epoch is judged on the
/// validation clips alone and as speaker streams: the per-corpus list gains
/// the stream figures and the epoch's UA is the mean of the two. Without a
/// baseline the flag changes nothing (streams would score as lone clips).
#[test]
fn stream_validation_averages_clip_and_speaker_stream_ua() {
    use seremotion_core::features::WindowNormalization;
    let _serial = serial();
    let window_frames = 40;
    let train_set = clips(&FeatureConfig::default_model(), 0..3, window_frames);
    let val_set = clips(&FeatureConfig::default_model(), 3..5, window_frames);
    let mut features = FeatureConfig::default_model();
    features.normalization = WindowNormalization::SubtractStreamMean;
    train::fit_normalisation(&mut features, &train_set, window_frames, 1.0);
    let cfg = TrainConfig {
        max_epochs: 2,
        validate_streams: true,
        ..small_config(small_net(&features), window_frames)
    };
    let outcome = train::train(&cfg, &features, &train_set, &val_set, |_, _| {}).expect("training");
    for epoch in &outcome.history {
        let names: Vec<&str> = epoch
            .val_ua_per_corpus
            .iter()
            .map(|(c, _)| c.as_str())
            .collect();
        assert_eq!(names, ["synthetic", "synthetic stream"]);
        let mean = epoch.val_ua_per_corpus.iter().map(|p| p.1).sum::<f32>() / 2.0;
        assert!((epoch.val_ua - mean).abs() < 1e-6, "{epoch:?}");
    }

    let mut window_mean = features.clone();
    window_mean.normalization = WindowNormalization::SubtractMean;
    train::fit_normalisation(&mut window_mean, &train_set, window_frames, 1.0);
    let outcome =
        train::train(&cfg, &window_mean, &train_set, &val_set, |_, _| {}).expect("training");
    assert_eq!(outcome.history[0].val_ua_per_corpus.len(), 1);
}

/// A student taught by a trained teacher alone (teacher weight 1) learns the
/// classes although every label it is given says "class 0": the teacher's
/// answers reach it, the labels do not.
#[test]
fn a_student_learns_from_its_teacher_and_not_from_the_labels_at_weight_one() {
    use seremotion_trainer::net::Ensemble;
    use seremotion_trainer::train::{Distillation, Teacher};

    let _serial = serial();
    let window_frames = 40;
    let (train_set, val_set, features) = train_val_features(window_frames);
    let cfg = small_config(small_net(&features), window_frames);
    let teacher = train::train(&cfg, &features, &train_set, &val_set, |_, _| {}).expect("teacher");
    assert!(teacher.best_val_ua > 0.4, "{}", teacher.best_val_ua);

    let mislabelled: Vec<_> = train_set
        .iter()
        .cloned()
        .map(|mut c| {
            c.label = 0;
            c
        })
        .collect();
    let teachers = Ensemble::new(vec![teacher.model]);
    let student_cfg = TrainConfig { seed: 2, ..cfg };
    let taught = |weight| {
        let teacher = Teacher {
            model: &teachers,
            how: Distillation {
                temperature: 2.0,
                weight,
            },
        };
        train::train_with_teacher(
            &student_cfg,
            &features,
            &mislabelled,
            &val_set,
            Some(&teacher),
            |_, _| {},
        )
        .expect("student")
    };
    let student = taught(1.0);
    assert!(
        student.best_val_ua > 0.4,
        "the student did not learn from its teacher: UA {}",
        student.best_val_ua
    );
    // The labels alone teach one class: chance.
    let labels_only = taught(0.0);
    assert!(
        labels_only.best_val_ua <= 0.26,
        "UA {} from labels that are all class 0",
        labels_only.best_val_ua
    );
    assert!(
        student.history.iter().all(|h| h.loss >= 0.0),
        "a KL divergence is never negative"
    );
}

/// The speaker adversary works against the voice: a near-zero strength lets
/// its classifier learn the three training voices (each with a tone pulsing
/// its own way, whatever the emotion); against a strong one the network
/// keeps its guesses at chance or worse (the log of the speaker count) while
/// the emotions are still learnt. Off, nothing is logged, and mixup (two
/// voices in one window) is refused.
#[test]
fn a_speaker_adversary_keeps_the_voices_apart_from_the_pooled_vector() {
    let _serial = serial();
    let window_frames = 40;
    let train_set = voiced_clips(window_frames);
    let val_set = clips(&FeatureConfig::default_model(), 3..4, window_frames);
    let features = normalised_features(&train_set, window_frames);
    let run = |speaker_adversary| {
        let cfg = TrainConfig {
            max_epochs: 24,
            samples_per_epoch: 256,
            speaker_adversary,
            ..small_config(small_net(&features), window_frames)
        };
        train::train(&cfg, &features, &train_set, &val_set, |_, _| {}).expect("training")
    };
    let final_speaker_loss = |o: &train::TrainOutcome| {
        let tail: Vec<f32> = o.history[o.history.len() - 4..]
            .iter()
            .map(|h| h.speaker_loss.expect("the adversary logs its loss"))
            .collect();
        tail.iter().sum::<f32>() / tail.len() as f32
    };
    let chance = 3f32.ln();
    let weak = final_speaker_loss(&run(1e-6));
    let strong_outcome = run(3.0);
    let strong = final_speaker_loss(&strong_outcome);
    assert!(
        weak < chance - 0.05,
        "unopposed, the adversary learns the voices: {weak} vs chance {chance}"
    );
    // Pushed by the reversed gradient, the network does more than hide the
    // voices: it misleads the adversary (loss above chance).
    assert!(
        strong > chance && strong > weak + 0.15,
        "the network hides the voices: {strong} vs {weak} unopposed"
    );
    assert!(
        strong_outcome.best_val_ua > 0.4,
        "the emotions are still learnt: UA {}",
        strong_outcome.best_val_ua
    );

    let off = run(0.0);
    assert!(off.history.iter().all(|h| h.speaker_loss.is_none()));
    let cfg = TrainConfig {
        speaker_adversary: 0.3,
        mixup_alpha: 0.2,
        ..small_config(small_net(&features), window_frames)
    };
    let refused = train::train(&cfg, &features, &train_set, &val_set, |_, _| {});
    assert!(refused.is_err(), "mixup blends two voices into one window");
}

/// Three "voices" saying the four synthetic emotions: each voice adds a
/// 4 kHz tone pulsing 4 times a second, on for its own share of the time
/// (never, 15 % or half), which a window's mean removal keeps (it is not
/// stationary) and which says nothing of the emotion.
fn voiced_clips(window_frames: usize) -> Vec<train::ClipFeatures> {
    let cfg = FeatureConfig::default_model();
    let mut out = Vec::new();
    for (voice, duty) in [0.0f32, 0.15, 0.5].into_iter().enumerate() {
        for label in 0..4 {
            let audio: Vec<f32> = synthetic::synthetic(label, voice)
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    let t = i as f32 / 16000.0;
                    let on = (4.0 * t).fract() < duty;
                    x + if on {
                        0.3 * (std::f32::consts::TAU * 1000.0 * t).sin()
                    } else {
                        0.0
                    }
                })
                .collect();
            out.push(train::ClipFeatures {
                label,
                corpus: "synthetic".into(),
                speaker: format!("voice{voice}"),
                scored: true,
                versions: vec![std::sync::Arc::new(
                    train::Utterance::from_audio(&cfg, &audio, window_frames).expect("features"),
                )],
            });
        }
    }
    out
}
