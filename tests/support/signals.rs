//! Speech-like test signals shared by the benches and the allocation test
//! (included with `#[path]`, as benches and tests are separate crates).
//!
//! A voiced sound (harmonic-ish partials at 150 Hz to 2.6 kHz) under a 4 Hz
//! syllable envelope, well above the element's speech gate, so every window
//! reaches the model; a little deterministic noise keeps spectra realistic.

#![allow(dead_code)]

const PARTIALS: [(f64, f64); 4] = [(150.0, 0.3), (700.0, 0.2), (1200.0, 0.1), (2600.0, 0.05)];

/// Interleaved speech-like samples in [-1, 1]; each channel has its own
/// phase and a slightly shifted pitch, so per-channel analyses differ.
pub fn speechy(rate: usize, channels: usize, frames: usize) -> Vec<f32> {
    let tau = 2.0 * std::f64::consts::PI;
    let mut z = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(frames * channels);
    for i in 0..frames {
        let t = i as f64 / rate as f64;
        for c in 0..channels {
            let envelope = 0.55 + 0.45 * (tau * 4.0 * t + c as f64).sin();
            let voiced: f64 = PARTIALS
                .iter()
                .map(|&(f, a)| a * (tau * f * (1.0 + 0.1 * c as f64) * t).sin())
                .sum();
            // xorshift64: reproducible noise without a dependency.
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            let noise = (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            out.push((0.5 * envelope * voiced + 0.01 * noise) as f32);
        }
    }
    out
}

/// [`speechy`] as interleaved S16LE bytes.
pub fn speechy_s16(rate: usize, channels: usize, seconds: usize) -> Vec<u8> {
    speechy(rate, channels, rate * seconds)
        .into_iter()
        .flat_map(|s| ((s * 32767.0) as i16).to_le_bytes())
        .collect()
}
