//! The exported ONNX model, run by ONNX Runtime through the root crate's
//! `model` module (the element's inference path), gives the same logits as
//! the trainer's burn forward pass, and carries the contract's names,
//! dynamic axes and metadata.

use burn::prelude::*;
use burn::tensor::TensorData;
use seremotion_core::model::writer::embed_metadata;
use seremotion_core::model::{Model, ModelMetadata};
use seremotion_trainer::export;
use seremotion_trainer::net::{EmotionCnn, Ensemble, NetConfig};
use seremotion_trainer::train::feature_config;

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
    let features = feature_config();
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
    let device = Device::flex();
    device.seed(seed);
    let mut net = NetConfig::new(feature_config().n_features(), 4);
    net.channels = vec![16, 24, 32];
    net.init(&device).valid()
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
    let probe = Tensor::<3>::ones([1, feature_config().n_features(), 40], &Device::flex());
    let diff = (a.forward(probe.clone()) - b.forward(probe))
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(diff > 1e-3, "members agree to {diff}: seeds not applied");
    assert_parity(&ensemble, |x| {
        (a.forward(x.clone()) + b.forward(x)).div_scalar(2.0)
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
    ] {
        let mut features = feature_config();
        features.normalization = normalization;
        let graph = export::export_graph(&model, features.n_features(), 99).expect("export");
        let meta = metadata(features.clone());
        let onnx = Model::from_bytes(&embed_metadata(&graph, &meta), "normalisation test")
            .expect("ONNX Runtime loads the export");
        assert_eq!(onnx.metadata().features, features, "{normalization:?}");
    }
}
