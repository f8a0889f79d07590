//! Throughput of the feature front end and the resampler over 10 s of audio.
//!
//! `cargo bench --bench features`. The per-frame cost is the FrameStream time
//! divided by the 998 frames that 10 s at 16 kHz yield.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use seremotion_core::features::{FeatureConfig, FeatureKind, FrameStream};
use seremotion_core::resample::StreamResampler;

/// Deterministic white noise (splitmix64), amplitude 0.1.
fn noise(n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 11) as f64 / (1u64 << 53) as f64 * 0.2 - 0.1) as f32
        })
        .collect()
}

fn bench_features(c: &mut Criterion) {
    let audio = noise(10 * 16000);
    let mut group = c.benchmark_group("frame_stream_10s_16k");
    group.throughput(Throughput::Elements(audio.len() as u64));
    let shipped = FeatureConfig::default_model();
    let configs = [
        ("log_mel64", FeatureConfig::default()),
        (
            "mfcc20_rms_zcr",
            FeatureConfig {
                kind: FeatureKind::Mfcc,
                n_mfcc: 20,
                append_rms: true,
                append_zcr: true,
                ..FeatureConfig::default()
            },
        ),
        // The shipped model's front end, and the same without the pitch rows.
        (
            "log_mel64_rms_20ms",
            FeatureConfig {
                append_pitch: false,
                ..shipped.clone()
            },
        ),
        ("log_mel64_rms_pitch_20ms", shipped),
    ];
    for (name, cfg) in configs {
        let mut stream = FrameStream::new(&cfg).expect("valid config");
        group.bench_function(name, |b| {
            b.iter(|| {
                stream.reset();
                let mut acc = 0.0f32;
                // 10 ms chunks, as a live pipeline delivers them.
                for chunk in audio.chunks(160) {
                    stream.push(black_box(chunk), |f, rms| acc += f[0] + rms);
                }
                black_box(acc)
            })
        });
    }
    group.finish();
}

fn bench_resample(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream_resampler_10s");
    for from in [48000u32, 8000] {
        let audio = noise(10 * from as usize);
        let mut r = StreamResampler::new(from, 16000).expect("valid rates");
        let mut out = Vec::with_capacity(200_000);
        group.throughput(Throughput::Elements(audio.len() as u64));
        group.bench_function(format!("{from}_to_16000"), |b| {
            b.iter(|| {
                out.clear();
                r.reset();
                for chunk in audio.chunks(from as usize / 100) {
                    r.process(black_box(chunk), &mut out);
                }
                r.flush(&mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_features, bench_resample);
criterion_main!(benches);
