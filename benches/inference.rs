//! Inference per window with the default model, and the whole analysis path
//! (features + windows + gate + inference) per second of audio.
//!
//! `cargo bench --bench inference`. Uses whatever `models/default.onnx` is
//! (embedded at build time); `SEREMOTION_BENCH_MODEL=path.onnx` benchmarks
//! another seremotion model instead (e.g. the ~2 M multiply-add proxy that
//! `scripts/make_bench_models.py` writes).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use seremotion_core::analysis::{AnalyzerSettings, EmotionAnalyzer};
use seremotion_core::model::Model;

#[path = "../tests/support/signals.rs"]
mod signals;

fn load_model() -> Arc<Model> {
    match std::env::var_os("SEREMOTION_BENCH_MODEL") {
        Some(path) => Model::from_file(path.as_ref()).expect("SEREMOTION_BENCH_MODEL loads"),
        None => Model::default_model().expect("the default model loads"),
    }
}

fn bench_inference(c: &mut Criterion) {
    let model = load_model();
    let frames = model.fixed_frames().unwrap_or(model.window_frames());
    let n = model.n_features() * frames;
    let input: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
        .collect();
    let mut logits = vec![0.0; model.n_labels()];
    let mut group = c.benchmark_group("inference");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("window_{frames}_frames"), |b| {
        b.iter(|| {
            model
                .logits_into(black_box(&input), 1, frames, &mut logits)
                .expect("inference");
            black_box(logits[0])
        })
    });
    group.finish();
}

fn bench_analysis(c: &mut Criterion) {
    let model = load_model();
    let rate = model.metadata().sample_rate as usize;
    let seconds = 10;
    let audio = signals::speechy(rate, 1, seconds * rate);
    let settings = AnalyzerSettings::for_model(&model);
    let mut analyzer = EmotionAnalyzer::new(model.clone(), settings).expect("analyzer");
    let mut group = c.benchmark_group("analysis_10s");
    // Throughput in seconds of audio: criterion's "elem/s" is then the speed-up over real time.
    group.throughput(Throughput::Elements(seconds as u64));
    group.bench_function("features_gate_inference", |b| {
        b.iter(|| {
            analyzer.reset();
            let mut classified = 0usize;
            for chunk in audio.chunks(rate / 50) {
                analyzer
                    .push(black_box(chunk), |r| {
                        classified += r.scores.is_some() as usize
                    })
                    .expect("analysis");
            }
            assert!(classified > 0, "no window reached the model");
            black_box(classified)
        })
    });
    group.finish();
}

/// N threads sharing one model, each running the same number of windows.
/// With inference serialised the time grows N-fold; with one session per
/// concurrent caller it stays flat up to the number of cores
/// (`parallel/threads_2` about equal to `parallel/threads_1` on two cores).
fn bench_parallel(c: &mut Criterion) {
    const WINDOWS_PER_THREAD: usize = 200;
    let model = load_model();
    let frames = model.fixed_frames().unwrap_or(model.window_frames());
    let input: Vec<f32> = (0..model.n_features() * frames)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("parallel");
    group.sample_size(10);
    for threads in (1..=cores).filter(|&t| t == 1 || t == cores) {
        // Throughput in windows: elem/s should grow with the thread count.
        group.throughput(Throughput::Elements((threads * WINDOWS_PER_THREAD) as u64));
        group.bench_function(format!("threads_{threads}"), |b| {
            b.iter(|| {
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            let mut logits = vec![0.0; model.n_labels()];
                            for _ in 0..WINDOWS_PER_THREAD {
                                model
                                    .logits_into(black_box(&input), 1, frames, &mut logits)
                                    .expect("inference");
                            }
                            black_box(logits[0])
                        });
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_inference, bench_analysis, bench_parallel);
criterion_main!(benches);
