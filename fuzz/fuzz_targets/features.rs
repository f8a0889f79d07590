//! The feature extractor and the resampler on arbitrary PCM, in arbitrary
//! chunks: never a panic, never a non-finite feature, and the frame count is
//! the one the configuration promises.
#![no_main]

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use seremotion_core::features::{FeatureConfig, FrameStream};
use seremotion_core::resample::StreamResampler;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Raw little-endian f32 samples: NaN, Inf, denormals and huge values included.
    pcm: Vec<u8>,
    /// Chunk sizes the samples arrive in.
    chunks: Vec<u8>,
    /// Input rate, as an index into a list that covers awkward ratios.
    rate: u8,
}

static PLANS: LazyLock<Mutex<HashMap<u32, (StreamResampler, FrameStream)>>> =
    LazyLock::new(Default::default);

const RATES: [u32; 8] = [16_000, 8_000, 11_025, 44_100, 44_101, 48_000, 96_000, 191_999];

fuzz_target!(|input: Input| {
    let samples: Vec<f32> = input
        .pcm
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    // The default model's front end, as the element runs it.
    let cfg = FeatureConfig::default_model();
    let from_hz = RATES[usize::from(input.rate) % RATES.len()];
    // Built once per rate and reset per input, as the element does after a
    // flush: building FFT plans each time would leave little time to fuzz.
    let mut cached = PLANS.lock().unwrap_or_else(|e| e.into_inner());
    let (resampler, stream) = cached.entry(from_hz).or_insert_with(|| {
        (
            StreamResampler::new(from_hz, cfg.sample_rate).expect("supported rate"),
            FrameStream::new(&cfg).expect("default config is valid"),
        )
    });
    resampler.reset();
    stream.reset();
    let mut resampled = Vec::new();
    let mut frames = 0usize;
    let mut total = 0usize;
    let mut check = |features: &[f32], rms_db: f32| {
        assert!(features.iter().all(|v| v.is_finite()), "{features:?}");
        assert!(rms_db.is_finite(), "{rms_db}");
        frames += 1;
    };
    let mut rest = samples.as_slice();
    let mut sizes = input.chunks.iter().cycle();
    while !rest.is_empty() {
        let n = sizes.next().map_or(rest.len(), |&s| usize::from(s).max(1)).min(rest.len());
        resampled.clear();
        resampler.process(&rest[..n], &mut resampled);
        // Conversion treats non-finite samples as 0; equal rates copy them
        // as they are, and the feature extractor then treats them as 0.
        assert!(
            from_hz == cfg.sample_rate || resampled.iter().all(|v| v.is_finite()),
            "resampler output not finite"
        );
        total += resampled.len();
        stream.push(&resampled, &mut check);
        rest = &rest[n..];
    }
    resampled.clear();
    resampler.flush(&mut resampled);
    total += resampled.len();
    stream.push(&resampled, &mut check);
    assert_eq!(frames, cfg.frames_in(total), "{total} samples");
});
