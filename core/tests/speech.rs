//! The speech decision on synthetic speech (espeak-ng, installed by
//! `scripts/setup.sh`) in noise, and on the sounds that must never count.

use std::process::Command;

use seremotion_core::features::FeatureConfig;
use seremotion_core::{resample, speech};

const RATE: usize = 16000;

/// `text` spoken by espeak-ng, at 16 kHz.
fn espeak(text: &str) -> Vec<f32> {
    let out = Command::new("espeak-ng")
        .args(["--stdout", "-v", "en-us", text])
        .output()
        .expect("espeak-ng runs (scripts/setup.sh installs it)");
    assert!(out.status.success(), "espeak-ng failed: {out:?}");
    // Written to a pipe, the WAV header carries placeholder sizes: fix them.
    let mut wav = out.stdout;
    let len = u32::try_from(wav.len()).expect("short WAV");
    wav[4..8].copy_from_slice(&(len - 8).to_le_bytes());
    wav[40..44].copy_from_slice(&(len - 44).to_le_bytes());
    let reader = hound::WavReader::new(std::io::Cursor::new(wav)).expect("espeak-ng writes WAV");
    let rate = reader.spec().sample_rate;
    let samples: Vec<f32> = reader
        .into_samples::<i16>()
        .map(|s| f32::from(s.expect("sample")) / 32768.0)
        .collect();
    resample::resample(&samples, rate, RATE as u32).expect("resample")
}

fn white(n: usize, seed: u64) -> Vec<f32> {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            (z >> 11) as f32 / (1u64 << 52) as f32 - 1.0
        })
        .collect()
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Speech share under the library's default front end (its band level takes
/// an FFT of its own) and the default model's (the level reads the feature
/// extractor's spectrum): the lower of the two for speech, the higher for the
/// sounds that must never count.
fn shares(x: &[f32]) -> [f64; 2] {
    let model_like = FeatureConfig {
        win_length: 512,
        hop_length: 320,
        ..FeatureConfig::default()
    };
    [FeatureConfig::default(), model_like].map(|cfg| {
        let levels = speech::band_levels(&cfg, x).expect("config");
        let mask = speech::speech_mask(&cfg, &levels, -55.0, 200);
        mask.iter().filter(|&&s| s).count() as f64 / mask.len() as f64
    })
}

fn speech_share(x: &[f32]) -> f64 {
    let [a, b] = shares(x);
    a.min(b)
}

fn non_speech_share(x: &[f32]) -> f64 {
    let [a, b] = shares(x);
    a.max(b)
}

#[test]
fn espeak_speech_counts_clean_and_at_10_db_snr_noise_alone_does_not() {
    let mut voice = espeak(
        "Kids are talking by the door. Dogs are sitting by the door. \
         I can't believe you did that. This is wonderful, thank you so much.",
    );
    // Quiet, as the quietest corpora are recorded (about -35 dBFS).
    let gain = 10f64.powf(-35.0 / 20.0) / rms(&voice);
    voice
        .iter_mut()
        .for_each(|v| *v = (f64::from(*v) * gain) as f32);
    let noise = white(voice.len(), 7);
    // Noise 10 dB below the speech, measured over the whole utterance.
    let noise_gain = rms(&voice) / rms(&noise) / 10f64.powf(10.0 / 20.0);
    let noise: Vec<f32> = noise
        .iter()
        .map(|&w| (noise_gain * f64::from(w)) as f32)
        .collect();
    let noisy: Vec<f32> = voice.iter().zip(&noise).map(|(v, w)| v + w).collect();

    let clean = speech_share(&voice);
    let at_10_db = speech_share(&noisy);
    let alone = non_speech_share(&noise);
    eprintln!("speech share: clean {clean:.2}, 10 dB SNR {at_10_db:.2}, noise alone {alone:.2}");
    assert!(clean > 0.4, "clean speech: {clean:.2} of frames");
    assert!(
        at_10_db > 0.3,
        "speech at 10 dB SNR: {at_10_db:.2} of frames"
    );
    assert_eq!(alone, 0.0, "the noise alone");
    // The same speech with a DC offset and mains hum under it is still speech.
    let hum: Vec<f32> = (0..voice.len())
        .map(|i| {
            let t = i as f64 / RATE as f64;
            (0.1 + 0.01 * (std::f64::consts::TAU * 50.0 * t).sin()) as f32
        })
        .collect();
    let humming: Vec<f32> = voice.iter().zip(&hum).map(|(v, h)| v + h).collect();
    assert!(speech_share(&humming) > 0.4);
    assert_eq!(non_speech_share(&hum), 0.0, "DC and hum alone");
}
