//! The exported ONNX model, run by ONNX Runtime through the root crate's
//! `model` module (the element's inference path), gives the same logits as
//! the trainer's burn forward pass, and carries the contract's names,
//! dynamic axes and metadata.

use burn::prelude::*;
use burn::tensor::TensorData;
use onnx_ir::{Message, ModelProto};
use seremotion_core::features::FeatureConfig;
use seremotion_core::model::writer::embed_metadata;
use seremotion_core::model::{Model, ModelMetadata};
use seremotion_trainer::export;
use seremotion_trainer::net::{EmotionCnn, Ensemble, NetConfig, Pooling};

/// Deterministic pseudo-random inputs in [-2, 2).
fn input(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn metadata(features: seremotion_core::features::FeatureConfig) -> ModelMetadata {
    ModelMetadata {
        labels: ["neutral", "happy", "sad", "angry"]
            .map(String::from)
            .to_vec(),
        sample_rate: 16000,
        window: 2.0,
        features,
        training: serde_json::json!({"test": "export parity"}),
    }
}

/// Exports `model`, loads it through the element's inference path and checks
/// the contract and that ONNX Runtime's logits equal `reference`'s within 1e-4.
fn assert_parity(model: &Ensemble, reference: impl Fn(Tensor<3>) -> Tensor<2>) {
    let features = FeatureConfig::default_model();
    let nf = features.n_features();
    let device = Device::flex();
    let window_frames = 99;
    let graph = export::export_graph(model, nf, window_frames).expect("export");
    let meta = metadata(features);
    let bytes = embed_metadata(&graph, &meta);
    let onnx =
        Model::from_bytes(&bytes, "export parity test").expect("ONNX Runtime loads the export");
    assert_eq!(onnx.metadata().labels, meta.labels);
    assert_eq!(onnx.fixed_frames(), None, "frames axis must be dynamic");
    assert_eq!(onnx.window_frames(), window_frames);

    // The full window, the element's shortest padded window, and an odd length.
    for (batch, frames) in [(1, window_frames), (2, 32), (3, 57)] {
        let x = input(batch * nf * frames, frames as u64);
        let tensor =
            Tensor::<3>::from_data(TensorData::new(x.clone(), [batch, nf, frames]), &device);
        let expected: Vec<f32> = reference(tensor)
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 logits");
        let got = onnx
            .logits(&x, batch, frames)
            .expect("ONNX Runtime inference");
        assert_eq!(got.len(), expected.len());
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-4,
            "batch {batch}, {frames} frames: max |onnx - burn| = {worst}"
        );
    }
}

fn small_network(seed: u64) -> EmotionCnn {
    pooled_network(seed, Pooling::Mean)
}

fn pooled_network(seed: u64, pooling: Pooling) -> EmotionCnn {
    let device = Device::flex();
    device.seed(seed);
    let net = NetConfig {
        channels: vec![16, 24, 32],
        pooling,
        ..NetConfig::new(FeatureConfig::default_model().n_features(), 4)
    };
    net.init(&device).valid()
}

/// Statistics and attentive pooling export without dividing by the dynamic
/// frame count, and ONNX Runtime computes what burn does at every length.
#[test]
fn statistics_and_attentive_pooling_match_onnx_runtime() {
    for pooling in [Pooling::MeanStd, Pooling::Attentive] {
        let model = pooled_network(6, pooling);
        let single = Ensemble::new(vec![model.clone()]);
        assert_parity(&single, |x| model.forward(x));
    }
}

/// The standard deviation is a real input to the classifier: two windows
/// with the same per-channel means but different spread must score apart
/// under statistics pooling, and alike under mean pooling of a constant.
#[test]
fn statistics_pooling_sees_spread_that_the_mean_does_not() {
    let device = Device::flex();
    let nf = FeatureConfig::default_model().n_features();
    let frames = 40;
    let flat = Tensor::<3>::zeros([1, nf, frames], &device);
    // +/-1.5 alternating over time: zero mean per row, unit-scale spread.
    let alternating: Vec<f32> = (0..nf * frames)
        .map(|i| if i % 2 == 0 { 1.5 } else { -1.5 })
        .collect();
    let moving = Tensor::<3>::from_data(TensorData::new(alternating, [1, nf, frames]), &device);
    let net = pooled_network(7, Pooling::MeanStd);
    let gap = (net.forward(flat.clone()) - net.forward(moving))
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(gap > 1e-3, "mean-std pooling ignored the spread ({gap})");
    // A window of one repeated frame has no spread: finite logits, no NaN
    // from the square root.
    let logits: Vec<f32> = net
        .forward(flat)
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 logits");
    assert!(logits.iter().all(|v| v.is_finite()), "{logits:?}");
}

/// The frequency stem (3x3 convolution over rows and frames, pooling over
/// rows, projection added into the first block) exports, and ONNX Runtime
/// computes what burn does at every length, alone and in an ensemble.
#[test]
fn frequency_stem_matches_onnx_runtime() {
    let device = Device::flex();
    let stemmed_pooling = |seed: u64, stem_pool: usize| {
        device.seed(seed);
        NetConfig {
            channels: vec![16, 24, 32],
            frequency_stem: 4,
            stem_pool,
            ..NetConfig::new(FeatureConfig::default_model().n_features(), 4)
        }
        .init(&device)
        .valid()
    };
    let stemmed = |seed: u64| stemmed_pooling(seed, 4);
    let model = stemmed(8);
    assert_parity(&Ensemble::new(vec![model.clone()]), |x| model.forward(x));
    // Overlapping pooling spans (`--stem-pool 8`), fused as a pair.
    let wide = Ensemble::new(vec![stemmed_pooling(8, 8), stemmed_pooling(9, 8)]);
    assert_parity(&wide, |x| wide.forward(x));
    // Dilated blocks (`--dilations 1,2,2`), fused as a pair.
    let dilated = |seed: u64| {
        device.seed(seed);
        NetConfig {
            channels: vec![16, 24, 32],
            frequency_stem: 4,
            dilations: vec![1, 2, 2],
            ..NetConfig::new(FeatureConfig::default_model().n_features(), 4)
        }
        .init(&device)
        .valid()
    };
    let pair = Ensemble::new(vec![dilated(8), dilated(9)]);
    assert_parity(&pair, |x| pair.forward(x));
    let pair = Ensemble::new(vec![stemmed(8), stemmed(9)]);
    assert_parity(&pair, |x| pair.forward(x));
    // Unlike members (`--member-stems 4,0`): one graph, two shapes of network.
    let mixed = Ensemble::new(vec![stemmed(8), small_network(9)]);
    assert_parity(&mixed, |x| mixed.forward(x));

    // Members of one shape export as one network of grouped layers: the
    // pair's graph has one network's convolutions (stem, projection, three
    // blocks), the unlike pair each member's.
    let convolutions = |model: &Ensemble| {
        let nf = FeatureConfig::default_model().n_features();
        let graph = export::export_graph(model, nf, 99).expect("export");
        let proto = ModelProto::parse_from_bytes(&graph).expect("ONNX");
        let nodes = proto.graph.into_option().expect("a graph").node;
        nodes.iter().filter(|n| n.op_type == "Conv").count()
    };
    assert_eq!(convolutions(&pair), 5);
    assert_eq!(convolutions(&mixed), 5 + 3);
}

#[test]
fn onnx_runtime_matches_burn_within_1e_4() {
    let model = small_network(3);
    let single = Ensemble::new(vec![model.clone()]);
    assert_parity(&single, |x| model.forward(x));
}

#[test]
fn an_exported_ensemble_averages_its_members_logits() {
    let (a, b) = (small_network(3), small_network(4));
    let ensemble = Ensemble::new(vec![a.clone(), b.clone()]);
    // Different seeds must give different members, or the mean proves nothing.
    let probe = Tensor::<3>::ones(
        [1, FeatureConfig::default_model().n_features(), 40],
        &Device::flex(),
    );
    let diff = (a.forward(probe.clone()) - b.forward(probe))
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(diff > 1e-3, "members agree to {diff}: seeds not applied");
    assert_parity(&ensemble, |x| {
        (a.forward(x.clone()) + b.forward(x)).div_scalar(2.0)
    });
}

/// Calibration's offsets live in the classifier's bias: the element's ONNX
/// Runtime logits are the uncalibrated ensemble's plus the offsets.
#[test]
fn logit_offsets_reach_onnx_runtime_through_the_bias() {
    let (a, b) = (small_network(8), small_network(9));
    let offsets = [0.0, 0.7, -0.4, 0.25];
    let shifted = Ensemble::new(vec![a.clone(), b.clone()]).with_logit_offsets(&offsets);
    let device = Device::flex();
    assert_parity(&shifted, |x| {
        let [batch, _, _] = x.dims();
        let shift = Tensor::<1>::from_floats(offsets, &device)
            .unsqueeze_dim::<2>(0)
            .repeat_dim(0, batch);
        (a.forward(x.clone()) + b.forward(x)).div_scalar(2.0) + shift
    });
}

/// The window normalisation the network was trained with reaches the element
/// unchanged through the model's metadata, for every variant.
#[test]
fn every_window_normalisation_round_trips_through_the_model_file() {
    use seremotion_core::features::WindowNormalization;
    let model = Ensemble::new(vec![small_network(5)]);
    for normalization in [
        WindowNormalization::None,
        WindowNormalization::SubtractMean,
        WindowNormalization::SubtractGain,
        WindowNormalization::SubtractStreamMean,
        WindowNormalization::SubtractSpeechMean,
    ] {
        let mut features = FeatureConfig::default_model();
        features.normalization = normalization;
        if normalization == WindowNormalization::SubtractStreamMean {
            features.stream_prior = input(features.n_features(), 11);
            features.stream_prior_frames = 200.0;
        }
        let graph = export::export_graph(&model, features.n_features(), 99).expect("export");
        let meta = metadata(features.clone());
        let onnx = Model::from_bytes(&embed_metadata(&graph, &meta), "normalisation test")
            .expect("ONNX Runtime loads the export");
        assert_eq!(onnx.metadata().features, features, "{normalization:?}");
    }
}

/// Syllable-like bursts of different pitch, loudness and length.
fn burst_clips() -> Vec<Vec<f32>> {
    (0..10)
        .map(|k| {
            let (f, level, seconds) = (
                120.0 + 90.0 * k as f64,
                0.02 + 0.05 * k as f64,
                1.5 + 0.4 * k as f64,
            );
            (0..(seconds * 16000.0) as usize)
                .map(|i| {
                    let t = i as f64 / 16000.0;
                    let on = if (t * (3.0 + k as f64 * 0.3)).fract() < 0.6 {
                        1.0
                    } else {
                        0.05
                    };
                    (on * level
                        * ((std::f64::consts::TAU * f * t).sin()
                            + 0.3 * (std::f64::consts::TAU * 2.3 * f * t).sin()))
                        as f32
                })
                .collect()
        })
        .collect()
}

/// The largest difference between two scorings of the same clips (clips
/// either left without a speech window are skipped).
fn largest_score_gap(a: &[Option<Vec<f32>>], b: &[Option<Vec<f32>>]) -> f32 {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| Some((x.as_ref()?, y.as_ref()?)))
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0f32, f32::max)
}

/// Scores [`burst_clips`] clip by clip with the trainer (`clip_scores`,
/// burn) and with the element's path (`classify_clip`, ONNX Runtime), checks
/// they agree within 1e-4, and returns the clips' features and the trainer's
/// scores. `network` is one network or an ensemble; its exported graph is
/// what the element runs.
fn assert_clip_parity(
    network: &Ensemble,
    features: &seremotion_core::features::FeatureConfig,
) -> (
    Vec<seremotion_trainer::train::ClipFeatures>,
    Vec<Option<Vec<f32>>>,
) {
    use seremotion_core::analysis::{
        AnalyzerSettings, DEFAULT_INTERVAL, classify_clip, seconds_to_frames,
    };
    use seremotion_trainer::train::{ClipFeatures, Utterance, clip_scores};
    use std::sync::Arc;

    let window_frames = 99;
    let hop_frames = seconds_to_frames(DEFAULT_INTERVAL, features.frame_rate());
    let graph =
        export::export_graph(network, features.n_features(), window_frames).expect("export");
    let model = Model::from_bytes(
        &embed_metadata(&graph, &metadata(features.clone())),
        "clip parity",
    )
    .expect("ONNX Runtime loads the export");
    let settings = AnalyzerSettings::for_model(&model);
    assert_eq!(settings.window_frames, window_frames);

    let clips = burst_clips();
    let clip_features: Vec<ClipFeatures> = clips
        .iter()
        .map(|audio| ClipFeatures {
            label: 0,
            corpus: "synthetic".into(),
            speaker: "one".into(),
            scored: true,
            versions: vec![Arc::new(
                Utterance::from_audio(features, audio, window_frames).expect("features"),
            )],
        })
        .collect();
    let trainer = clip_scores(
        network,
        features,
        &clip_features,
        window_frames,
        hop_frames,
        4,
        false,
    );
    let mut heard = 0;
    for (k, (audio, mine)) in clips.iter().zip(&trainer).enumerate() {
        let summary = classify_clip(&model, audio, &settings).expect("inference");
        match mine {
            None => assert_eq!(summary.speech_windows, 0, "clip {k}"),
            Some(mine) => {
                heard += 1;
                for (a, b) in mine.iter().zip(&summary.mean_scores) {
                    assert!(
                        (a - b).abs() < 1e-4,
                        "clip {k}: {mine:?} vs {:?}",
                        summary.mean_scores
                    );
                }
            }
        }
    }
    assert!(heard >= 8, "{heard} clips with speech");
    (clip_features, trainer)
}

/// The trainer's validation and cross-validation scores (`predict_clips`,
/// burn) are the element's (`classify_clip`, ONNX Runtime) for a model with a
/// voice baseline: same windows, speech decision, baseline and aggregation.
#[test]
fn trainer_predictions_are_the_elements_with_a_voice_baseline() {
    use seremotion_core::analysis::{DEFAULT_INTERVAL, seconds_to_frames};
    use seremotion_core::features::WindowNormalization;
    use seremotion_trainer::train::clip_scores;

    let network = small_network(21);
    let mut features = FeatureConfig::default_model();
    features.normalization = WindowNormalization::SubtractStreamMean;
    features.stream_prior = vec![-45.0; features.n_features()];
    features.stream_prior_frames = 100.0;
    // Unit-scale inputs, or the untrained network gives one answer to all.
    features.mean = vec![0.0; features.n_features()];
    features.std = vec![5.0; features.n_features()];
    let (clip_features, trainer) =
        assert_clip_parity(&Ensemble::new(vec![network.clone()]), &features);
    let window_frames = 99;
    let hop_frames = seconds_to_frames(DEFAULT_INTERVAL, features.frame_rate());

    // Heard as one speaker's stream, the baseline carries from clip to clip
    // and changes what later clips are heard as.
    let streamed = clip_scores(
        &network,
        &features,
        &clip_features,
        window_frames,
        hop_frames,
        4,
        true,
    );
    assert_eq!(streamed[0], trainer[0], "the first clip has no history");
    let moved = largest_score_gap(&streamed[1..], &trainer[1..]);
    assert!(moved > 1e-3, "the history moved no score ({moved})");
}

/// With the window's speech mean removed, the trainer (burn, the speech mask
/// judged from the clip's levels) and the element (ONNX Runtime, the mask
/// from its streaming speech detector) hear the same windows the same way;
/// and the pauses between the bursts are left out of the mean (the scores
/// are not those of the window mean).
#[test]
fn trainer_predictions_are_the_elements_with_the_speech_mean_removed() {
    use seremotion_core::features::WindowNormalization;

    let network = Ensemble::new(vec![small_network(23)]);
    let mut features = FeatureConfig::default_model();
    features.mean = vec![0.0; features.n_features()];
    features.std = vec![5.0; features.n_features()];
    features.normalization = WindowNormalization::SubtractSpeechMean;
    let (_, speech_mean) = assert_clip_parity(&network, &features);
    features.normalization = WindowNormalization::SubtractMean;
    let (_, window_mean) = assert_clip_parity(&network, &features);
    let moved = largest_score_gap(&speech_mean, &window_mean);
    assert!(
        moved > 1e-3,
        "leaving the pauses out moved no score ({moved})"
    );
}

/// Pitch rows and statistics pooling: the element computes the same pitch
/// rows as the trainer's features and ONNX Runtime pools as burn does, so
/// clip scores agree.
#[test]
fn trainer_predictions_are_the_elements_with_pitch_rows_and_statistics_pooling() {
    let mut features = FeatureConfig::default_model();
    features.append_pitch = true;
    let nf = features.n_features();
    features.mean = vec![0.0; nf];
    features.std = vec![5.0; nf];
    for pooling in [Pooling::MeanStd, Pooling::Attentive] {
        let device = Device::flex();
        device.seed(22);
        let network = NetConfig {
            channels: vec![16, 24, 32],
            pooling,
            ..NetConfig::new(nf, 4)
        }
        .init(&device)
        .valid();
        let (clips, trainer) = assert_clip_parity(&Ensemble::new(vec![network]), &features);
        // The pitch rows really vary over these clips (120 to 930 Hz bursts).
        let pitch_row = nf - 2;
        let pitches: Vec<f32> = clips
            .iter()
            .map(|c| {
                let u = &c.versions[0];
                (0..u.n_frames)
                    .map(|t| u.frames[t * nf + pitch_row])
                    .fold(f32::MIN, f32::max)
            })
            .collect();
        assert!(
            pitches.iter().fold(f32::MIN, |a, &b| a.max(b))
                - pitches.iter().fold(f32::MAX, |a, &b| a.min(b))
                > 6.0,
            "{pitches:?}"
        );
        assert!(trainer.iter().flatten().count() >= 8);
    }
}

/// `cv --ensemble` scores an ensemble with the trainer's `clip_scores`: those
/// scores are the exported ensemble's in the element, and differ from each
/// member's.
#[test]
fn trainer_scores_an_ensemble_as_the_element_runs_its_export() {
    use seremotion_core::analysis::{DEFAULT_INTERVAL, seconds_to_frames};
    use seremotion_trainer::train::clip_scores;

    let mut features = FeatureConfig::default_model();
    features.mean = vec![0.0; features.n_features()];
    features.std = vec![5.0; features.n_features()];
    let (a, b) = (small_network(31), small_network(32));
    let (clips, together) =
        assert_clip_parity(&Ensemble::new(vec![a.clone(), b.clone()]), &features);
    let hop_frames = seconds_to_frames(DEFAULT_INTERVAL, features.frame_rate());
    let alone = clip_scores(&a, &features, &clips, 99, hop_frames, 4, false);
    let largest_gap = largest_score_gap(&together, &alone);
    assert!(
        largest_gap > 1e-3,
        "the ensemble scores as its first member"
    );
}
