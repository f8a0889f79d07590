//! Training throughput of the default network size: windows per second
//! through forward, backward and the optimiser step (plus the per-batch weight
//! average), on synthetic clips. `cargo bench -p seremotion-trainer`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use seremotion_core::features::FeatureConfig;
use seremotion_trainer::net::NetConfig;
use seremotion_trainer::train::{self, SpecMasks, TrainConfig};

#[path = "../tests/support/synthetic.rs"]
mod synthetic;

const WINDOWS_PER_EPOCH: usize = 320;

fn bench_training(c: &mut Criterion) {
    let window_frames = 50; // synthetic clips are 1.2 s
    let train_set = synthetic::clips(&FeatureConfig::default_model(), 0..8, window_frames);
    let val_set = synthetic::clips(&FeatureConfig::default_model(), 8..9, window_frames);
    let features = synthetic::normalised_features(&train_set, window_frames);
    let cfg = TrainConfig {
        max_epochs: 1,
        batch_size: 32,
        samples_per_epoch: WINDOWS_PER_EPOCH,
        learning_rate: 2e-3,
        weight_decay: 1e-3,
        label_smoothing: 0.05,
        hop_frames: 50,
        short_window_fraction: 0.25,
        spec_masks: SpecMasks::default(),
        weight_average_decay: 0.998,
        ..synthetic::small_config(NetConfig::new(features.n_features(), 4), window_frames)
    };
    let mut group = c.benchmark_group("training");
    group.sample_size(10);
    group.throughput(Throughput::Elements(WINDOWS_PER_EPOCH as u64));
    group.bench_function("default_network_epoch", |b| {
        b.iter(|| train::train(&cfg, &features, &train_set, &val_set, |_, _| {}).expect("epoch"))
    });
    group.finish();
}

criterion_group!(benches, bench_training);
criterion_main!(benches);
