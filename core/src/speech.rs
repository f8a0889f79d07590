//! Speech or not: which frames of a window may be given an emotion.
//!
//! Level alone cannot tell speech from a DC offset, mains hum or fan noise:
//! they are all loud enough. Speech differs in two ways this module measures:
//!
//! 1. Its energy sits in the voice band. Each frame's level is the energy
//!    between [`BAND_LOW_HZ`] and [`BAND_HIGH_HZ`] (Hann-windowed FFT of the
//!    whole frame, see [`VoiceBand`]), so a DC offset and the 50/60 Hz
//!    fundamental of hum do not count at all.
//! 2. It comes and goes with syllables, several times a second, by 10 dB and
//!    more. Steady sounds (hum with its harmonics, white or pink noise, a held
//!    tone) stay within a dB or two of their own level. A frame is speech only
//!    if it stands [`FLOOR_MARGIN_DB`] above the noise floor, estimated as a
//!    low percentile of the frames of the window and the seconds before it
//!    that carry any signal (above [`NO_SIGNAL_DB`]: digital silence or
//!    dither before a noise is no floor for it). Speech 10 dB above steady
//!    noise still rises well clear of it; quiet speech in a quiet room is
//!    judged against the room, so every frame above the threshold counts.
//!
//! Frames at or below the absolute `threshold_db` (and digital zero at any
//! threshold) are never speech. Music, which also comes and goes, is not
//! rejected by this test (README: what was measured, and why no music cue).
//!
//! Framing is that of [`crate::features::FrameStream`] (frame `t` covers
//! samples `[t * hop, t * hop + n_fft)`), so level `t` belongs to feature frame `t`.

use std::collections::VecDeque;

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{RealFftPlanner, RealToComplex};

use crate::features::{self, FeatureConfig, FeatureError, Frame, FrameExtractor, Framer};

/// Lower edge of the voice band, Hz: above DC and the mains fundamental.
pub const BAND_LOW_HZ: f32 = 150.0;
/// Upper edge of the voice band, Hz (or 45 % of the sample rate, if lower).
pub const BAND_HIGH_HZ: f32 = 4000.0;
/// A speech frame stands at least this far above the noise floor.
pub const FLOOR_MARGIN_DB: f32 = 6.0;
/// The noise floor is this quantile of the audible frames' levels.
pub const FLOOR_QUANTILE: f32 = 0.1;
/// Seconds of audio before a window that also inform its noise floor.
pub const HISTORY_SECONDS: f64 = 3.0;
/// Level reported for digital zero, far below any threshold.
pub const SILENT_DB: f32 = -300.0;
/// Frames quieter than this (or than the threshold, if lower) carry no
/// signal: they do not inform the noise floor.
pub const NO_SIGNAL_DB: f32 = -90.0;

/// Voice-band level of frames in dBFS (RMS, full-scale square wave = 0 dB).
///
/// The band is read from a Hann-windowed power spectrum of the whole
/// `n_fft` frame. When the features use that very window (`win_length ==
/// n_fft`, as every model the trainer makes), the spectrum is the one the
/// feature extractor computed ([`FrameExtractor::power`]): one FFT per frame
/// serves both. A feature window shorter than the frame has wider spectral
/// leakage, enough for DC and mains hum to reach the voice band and for hum
/// to pass as speech (its level then wobbles by more than
/// [`FLOOR_MARGIN_DB`] from frame to frame), so in that case the level keeps
/// an FFT of its own with the whole-frame window.
pub struct VoiceBand {
    /// FFT bins of the voice band.
    band: std::ops::Range<usize>,
    /// Converts the band's summed bin power to a mean square.
    scale: f32,
    /// `None` when the feature extractor's spectrum is used.
    own: Option<OwnSpectrum>,
}

/// The whole-frame Hann spectrum, for feature windows shorter than the frame.
struct OwnSpectrum {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    input: Vec<f32>,
    spectrum: Vec<Complex32>,
    scratch: Vec<Complex32>,
    power: Vec<f32>,
}

impl std::fmt::Debug for VoiceBand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceBand")
            .field("band", &self.band)
            .field("feature_spectrum", &self.uses_feature_spectrum())
            .finish_non_exhaustive()
    }
}

impl VoiceBand {
    pub fn new(cfg: &FeatureConfig) -> Result<Self, FeatureError> {
        cfg.validate()?;
        let n = cfg.n_fft;
        let bin_hz = cfg.sample_rate as f32 / n as f32;
        let high = BAND_HIGH_HZ.min(0.45 * cfg.sample_rate as f32);
        let lo = ((BAND_LOW_HZ / bin_hz).ceil() as usize).max(1);
        let hi = ((high / bin_hz).floor() as usize).min(n / 2);
        // A frame too short to resolve the band still skips DC.
        let band = if lo <= hi { lo..hi + 1 } else { 1..n / 2 + 1 };
        // The periodic Hann over the whole frame: the features' window when
        // it spans the frame.
        let window = features::analysis_window(&FeatureConfig {
            win_length: n,
            ..cfg.clone()
        });
        let own = (cfg.win_length != n).then(|| {
            let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
            OwnSpectrum {
                window: window.iter().map(|&w| w as f32).collect(),
                input: vec![0.0; n],
                spectrum: fft.make_output_vec(),
                scratch: fft.make_scratch_vec(),
                power: vec![0.0; n / 2 + 1],
                fft,
            }
        });
        // Parseval: the one-sided bins of a windowed frame sum to
        // n * sum(w^2) / 2 times its mean square.
        let window_power: f64 = window.iter().map(|w| w * w).sum();
        Ok(VoiceBand {
            band,
            scale: (2.0 / (n as f64 * window_power)) as f32,
            own,
        })
    }

    /// Whether [`VoiceBand::level`] reads the feature extractor's spectrum
    /// (else it transforms the frame itself).
    pub fn uses_feature_spectrum(&self) -> bool {
        self.own.is_none()
    }

    /// Level of one frame: its `n_fft` samples and the feature extractor's
    /// power spectrum of them (ignored, and may be empty, when
    /// [`VoiceBand::uses_feature_spectrum`] is false).
    ///
    /// # Panics
    /// If the spectrum is used and has fewer than `n_fft / 2 + 1` bins (caller bug).
    pub fn level(&mut self, samples: &[f32], feature_power: &[f32]) -> f32 {
        let power = match &mut self.own {
            None => feature_power,
            Some(own) => {
                for ((dst, &x), &w) in own.input.iter_mut().zip(samples).zip(&own.window) {
                    *dst = if x.is_finite() { x * w } else { 0.0 };
                }
                // Sizes are fixed at construction, so the transform cannot fail.
                own.fft
                    .process_with_scratch(&mut own.input, &mut own.spectrum, &mut own.scratch)
                    .expect("FFT buffers sized by the plan");
                for (p, c) in own.power.iter_mut().zip(&own.spectrum) {
                    *p = c.norm_sqr();
                }
                &own.power
            }
        };
        let sum: f32 = power[self.band.clone()].iter().sum();
        let mean_square = sum * self.scale;
        if mean_square > 0.0 && mean_square.is_finite() {
            (10.0 * mean_square.log10()).max(SILENT_DB)
        } else {
            SILENT_DB
        }
    }
}

/// Counts the speech frames in `levels[window]`, judging them against the
/// noise floor of the frames in `levels` (the window and what came before it)
/// that carry a signal. `scratch` is reused between calls.
pub fn count_speech(
    levels: &[f32],
    window: std::ops::Range<usize>,
    threshold_db: f32,
    scratch: &mut Vec<f32>,
) -> usize {
    match speech_test(levels, threshold_db, scratch) {
        Some(is_speech) => levels[window].iter().filter(|&&l| is_speech(l)).count(),
        None => 0,
    }
}

/// [`count_speech`], also marking each frame of `levels[window]` in `mask`
/// (cleared first): which frames a voice baseline may learn from.
pub fn mark_speech(
    levels: &[f32],
    window: std::ops::Range<usize>,
    threshold_db: f32,
    scratch: &mut Vec<f32>,
    mask: &mut Vec<bool>,
) -> usize {
    mask.clear();
    match speech_test(levels, threshold_db, scratch) {
        Some(is_speech) => mask.extend(levels[window].iter().map(|&l| is_speech(l))),
        None => mask.resize(window.len(), false),
    }
    mask.iter().filter(|&&m| m).count()
}

/// The per-frame test against the noise floor of `levels`' frames that carry
/// a signal; `None` when none does (nothing is speech).
fn speech_test(
    levels: &[f32],
    threshold_db: f32,
    scratch: &mut Vec<f32>,
) -> Option<impl Fn(f32) -> bool> {
    let signal = NO_SIGNAL_DB.min(threshold_db).max(SILENT_DB);
    scratch.clear();
    scratch.extend(levels.iter().copied().filter(|&l| l > signal));
    if scratch.is_empty() {
        return None;
    }
    let k = ((scratch.len() - 1) as f32 * FLOOR_QUANTILE) as usize;
    let (_, &mut floor, _) = scratch.select_nth_unstable_by(k, f32::total_cmp);
    Some(move |l: f32| l > threshold_db && l > SILENT_DB && l > floor + FLOOR_MARGIN_DB)
}

/// Band levels of a whole clip, one per feature frame, as a
/// [`SpeechDetector`] fed the frames of [`crate::features::FrameStream`]
/// over the same audio holds them (same framing, window and FFT).
pub fn band_levels(cfg: &FeatureConfig, samples: &[f32]) -> Result<Vec<f32>, FeatureError> {
    let mut extractor = FrameExtractor::new(cfg)?;
    let mut band = VoiceBand::new(cfg)?;
    let mut framer = Framer::new(cfg.n_fft, cfg.hop_length);
    let mut levels = Vec::with_capacity(cfg.frames_in(samples.len()));
    framer.push(samples, |frame| {
        let power = if band.uses_feature_spectrum() {
            extractor.power_spectrum(frame)
        } else {
            &[]
        };
        levels.push(band.level(frame, power));
    });
    Ok(levels)
}

/// Speech frames in the window of `n` frames from `start` of a clip whose
/// band levels are `levels`: the element's decision for that window (the
/// floor comes from the window and the `history` frames before it).
pub fn window_speech_frames(
    levels: &[f32],
    start: usize,
    n: usize,
    history: usize,
    threshold_db: f32,
    scratch: &mut Vec<f32>,
) -> usize {
    let end = (start + n).min(levels.len());
    if end <= start {
        return 0;
    }
    let lo = start.saturating_sub(history);
    count_speech(
        &levels[lo..end],
        start - lo..end - lo,
        threshold_db,
        scratch,
    )
}

/// [`window_speech_frames`], also marking each of the window's frames in
/// `mask` (`n` entries; frames past the end of `levels` are not speech).
pub fn window_speech_mask(
    levels: &[f32],
    start: usize,
    n: usize,
    history: usize,
    threshold_db: f32,
    scratch: &mut Vec<f32>,
    mask: &mut Vec<bool>,
) -> usize {
    let end = (start + n).min(levels.len());
    if end <= start {
        mask.clear();
        mask.resize(n, false);
        return 0;
    }
    let lo = start.saturating_sub(history);
    let count = mark_speech(
        &levels[lo..end],
        start - lo..end - lo,
        threshold_db,
        scratch,
        mask,
    );
    mask.resize(n, false);
    count
}

/// Per-frame speech decisions for a whole clip from its [`band_levels`]:
/// frame `t` is judged with the [`HISTORY_SECONDS`] before it and the window
/// of `window_frames` frames that starts at `t` (for choosing training crops;
/// whole windows are judged by [`window_speech_frames`]).
pub fn speech_mask(
    cfg: &FeatureConfig,
    levels: &[f32],
    threshold_db: f32,
    window_frames: usize,
) -> Vec<bool> {
    let history = history_frames(cfg);
    let window_frames = window_frames.max(1);
    let mut scratch = Vec::new();
    (0..levels.len())
        .map(|t| {
            let lo = t.saturating_sub(history);
            let hi = (t + window_frames).min(levels.len());
            count_speech(
                &levels[lo..hi],
                t - lo..t - lo + 1,
                threshold_db,
                &mut scratch,
            ) == 1
        })
        .collect()
}

/// Frames of history kept for the noise floor.
pub fn history_frames(cfg: &FeatureConfig) -> usize {
    (HISTORY_SECONDS * cfg.frame_rate()).ceil() as usize
}

/// Streaming speech decision beside the feature frames of one analyser: it
/// is handed each frame as the feature stream computes it
/// ([`crate::features::FrameStream::push_frames`]).
#[derive(Debug)]
pub struct SpeechDetector {
    band: VoiceBand,
    threshold_db: f32,
    history: usize,
    /// Levels of frames `first..first + levels.len()`.
    levels: VecDeque<f32>,
    first: u64,
    scratch: Vec<f32>,
}

impl SpeechDetector {
    pub fn new(cfg: &FeatureConfig, threshold_db: f32) -> Result<Self, FeatureError> {
        Ok(SpeechDetector {
            band: VoiceBand::new(cfg)?,
            threshold_db,
            history: history_frames(cfg),
            levels: VecDeque::new(),
            first: 0,
            scratch: Vec::new(),
        })
    }

    /// Frames whose level is known so far.
    pub fn frames(&self) -> u64 {
        self.first + self.levels.len() as u64
    }

    /// Appends the next frame of the feature stream.
    pub fn push_frame(&mut self, frame: &Frame<'_>) {
        let level = self.band.level(frame.samples, frame.power);
        self.levels.push_back(level);
    }

    /// Level of absolute frame `frame`, if still held.
    pub fn level(&self, frame: u64) -> Option<f32> {
        let i = usize::try_from(frame.checked_sub(self.first)?).ok()?;
        self.levels.get(i).copied()
    }

    /// Speech frames among frames `start..start + n` (all must have been
    /// pushed), marking in `mask` which of the `n` frames are speech.
    pub fn mark(&mut self, start: u64, n: usize, mask: &mut Vec<bool>) -> usize {
        let Some(offset) = start.checked_sub(self.first) else {
            mask.clear();
            mask.resize(n, false);
            return 0;
        };
        let levels = self.levels.make_contiguous();
        // Levels before `first` are forgotten: the history is what is held.
        let history = (offset as usize).min(self.history);
        window_speech_mask(
            levels,
            offset as usize,
            n,
            history,
            self.threshold_db,
            &mut self.scratch,
            mask,
        )
    }

    /// Forgets levels that no window starting at `frame` or later needs.
    pub fn forget_before(&mut self, frame: u64) {
        let keep_from = frame.saturating_sub(self.history as u64);
        while self.first < keep_from && self.levels.pop_front().is_some() {
            self.first += 1;
        }
        if self.levels.is_empty() {
            self.first = self.first.max(keep_from);
        }
    }

    pub fn reset(&mut self) {
        self.levels.clear();
        self.first = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 16000;

    /// Deterministic white noise in [-1, 1).
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

    /// Pink noise (Paul Kellet's filter over white noise).
    fn pink(n: usize, seed: u64) -> Vec<f32> {
        let mut b = [0.0f32; 7];
        white(n, seed)
            .into_iter()
            .map(|w| {
                b[0] = 0.99886 * b[0] + w * 0.0555179;
                b[1] = 0.99332 * b[1] + w * 0.0750759;
                b[2] = 0.96900 * b[2] + w * 0.153852;
                b[3] = 0.86650 * b[3] + w * 0.3104856;
                b[4] = 0.55000 * b[4] + w * 0.5329522;
                b[5] = -0.7616 * b[5] - w * 0.0168980;
                let p = b[..6].iter().sum::<f32>() + b[6] + w * 0.5362;
                b[6] = w * 0.115926;
                p * 0.11
            })
            .collect()
    }

    fn hum(n: usize, mains: f64, amplitude: f64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(RATE);
                (1..=8)
                    .map(|h| {
                        amplitude / h as f64 * (std::f64::consts::TAU * mains * h as f64 * t).sin()
                    })
                    .sum::<f64>() as f32
            })
            .collect()
    }

    /// Voiced, syllable-modulated sound: harmonics of 140 Hz, 4 syllables a second.
    fn syllables(n: usize, amplitude: f64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(RATE);
                let env = (std::f64::consts::TAU * 2.0 * t).sin().abs().powf(1.5);
                let voiced: f64 = (1..=20)
                    .map(|h| (std::f64::consts::TAU * 140.0 * h as f64 * t).sin() / h as f64)
                    .sum();
                (amplitude * env * voiced) as f32
            })
            .collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// The library default (a 400-sample window in a 512 FFT: the level
    /// takes its own FFT) and the default model's front end (512 in 512, 20 ms
    /// hop: the level reads the feature spectrum).
    fn configs() -> [FeatureConfig; 2] {
        [
            FeatureConfig::default(),
            FeatureConfig {
                win_length: 512,
                hop_length: 320,
                ..FeatureConfig::default()
            },
        ]
    }

    fn share_with(cfg: &FeatureConfig, samples: &[f32], threshold_db: f32) -> f64 {
        let levels = band_levels(cfg, samples).expect("valid config");
        let mask = speech_mask(cfg, &levels, threshold_db, 200);
        mask.iter().filter(|&&s| s).count() as f64 / mask.len() as f64
    }

    /// Speech share under each of [`configs`].
    fn speech_share(samples: &[f32], threshold_db: f32) -> [f64; 2] {
        configs().map(|cfg| share_with(&cfg, samples, threshold_db))
    }

    /// Level of one frame of `n_fft` samples, as the detector computes it.
    fn frame_level(cfg: &FeatureConfig, frame: &[f32]) -> f32 {
        band_levels(cfg, frame).expect("valid")[0]
    }

    #[test]
    fn band_level_of_a_sine_is_its_rms() {
        // The library default (400-sample window in a 512 FFT) and the
        // default model's (512 in 512): calibrated by the window's power.
        for cfg in configs() {
            let x: Vec<f32> = (0..512)
                .map(|i| 0.5 * (std::f32::consts::TAU * 1000.0 * i as f32 / 16000.0).sin())
                .collect();
            let want = 20.0 * (0.5f32 / 2f32.sqrt()).log10();
            let got = frame_level(&cfg, &x);
            assert!((got - want).abs() < 0.1, "{got} dB, want {want}");
            // DC and a 50 Hz fundamental lie below the band.
            assert!(frame_level(&cfg, &[0.3; 512]) < -60.0);
            let hum: Vec<f32> = (0..512)
                .map(|i| 0.3 * (std::f32::consts::TAU * 50.0 * i as f32 / 16000.0).sin())
                .collect();
            assert!(frame_level(&cfg, &hum) < -40.0);
            assert_eq!(frame_level(&cfg, &[0.0; 512]), SILENT_DB);
        }
    }

    #[test]
    fn the_feature_spectrum_serves_the_band_level_when_the_windows_agree() {
        // One FFT per frame: with the feature window spanning the frame (the
        // trainer's models) the level is read from the feature extractor's
        // spectrum; a shorter feature window keeps the whole-frame window.
        let model_like = FeatureConfig {
            win_length: 512,
            hop_length: 320,
            ..FeatureConfig::default()
        };
        assert!(
            VoiceBand::new(&model_like)
                .expect("valid")
                .uses_feature_spectrum()
        );
        assert!(
            !VoiceBand::new(&FeatureConfig::default())
                .expect("valid")
                .uses_feature_spectrum()
        );
        // The level comes from the spectrum handed over: a spectrum of zeros
        // says silence whatever the samples.
        let x = syllables(512, 0.2);
        let mut band = VoiceBand::new(&model_like).expect("valid");
        assert_eq!(band.level(&x, &[0.0; 257]), SILENT_DB);

        // The streaming detector and the trainer's band_levels agree
        // exactly, for either kind of window and any chunking.
        let mut x = syllables(RATE as usize * 2, 0.2);
        x.extend(white(RATE as usize, 12).iter().map(|w| 0.05 * w));
        for (win, hop) in [(400, 160), (512, 320), (300, 700)] {
            let cfg = FeatureConfig {
                win_length: win,
                hop_length: hop,
                ..FeatureConfig::default()
            };
            let mut det = SpeechDetector::new(&cfg, -55.0).expect("valid");
            let mut stream = crate::features::FrameStream::new(&cfg).expect("valid");
            for chunk in x.chunks(333) {
                stream.push_frames(chunk, |frame| det.push_frame(frame));
            }
            let clip = band_levels(&cfg, &x).expect("valid");
            assert_eq!(clip.len(), cfg.frames_in(x.len()));
            let streamed: Vec<f32> = (0..det.frames())
                .map(|t| det.level(t).expect("held"))
                .collect();
            assert_eq!(streamed, clip, "win {win}, hop {hop}");
        }
    }

    #[test]
    fn steady_sounds_are_not_speech() {
        let n = RATE as usize * 6;
        let dc: Vec<f32> = white(n, 1).iter().map(|w| 0.25 + 1e-4 * w).collect();
        let noise: Vec<f32> = white(n, 2).iter().map(|w| 0.1 * w).collect();
        for (name, x) in [
            ("DC offset", dc),
            ("50 Hz hum", hum(n, 50.0, 0.2)),
            ("60 Hz hum", hum(n, 60.0, 0.05)),
            ("white noise", noise),
            ("pink noise", pink(n, 3)),
        ] {
            for threshold in [-120.0, -55.0] {
                let share = speech_share(&x, threshold);
                assert_eq!(
                    share, [0.0; 2],
                    "{name} at threshold {threshold} dB: {share:?} speech"
                );
            }
        }
    }

    #[test]
    fn noise_after_digital_silence_is_not_speech() {
        let mut x = vec![0.0; RATE as usize * 2];
        x.extend(white(RATE as usize * 4, 5).iter().map(|w| 0.05 * w));
        assert_eq!(speech_share(&x, -55.0), [0.0; 2]);
    }

    #[test]
    fn quiet_speech_in_a_quiet_room_counts_above_the_threshold() {
        // Syllables peaking around -45 dBFS over a -75 dBFS room.
        let n = RATE as usize * 4;
        let x: Vec<f32> = syllables(n, 0.01)
            .iter()
            .zip(white(n, 6))
            .map(|(v, w)| v + 2e-4 * w)
            .collect();
        for cfg in configs() {
            let share = share_with(&cfg, &x, -55.0);
            let levels = band_levels(&cfg, &x).expect("valid");
            let above = levels.iter().filter(|&&l| l > -55.0).count() as f64 / levels.len() as f64;
            assert!(above > 0.3, "{above}");
            assert!(
                (share - above).abs() < 1e-9,
                "speech {share}, above threshold {above}"
            );
        }
    }

    #[test]
    fn digital_zero_is_not_speech_at_any_threshold() {
        assert_eq!(speech_share(&vec![0.0; 32000], -120.0), [0.0; 2]);
        assert_eq!(speech_share(&vec![0.0; 32000], -300.0), [0.0; 2]);
    }

    #[test]
    fn syllables_in_noise_at_10_db_snr_are_speech() {
        let n = RATE as usize * 6;
        let voice = syllables(n, 0.1);
        let noise = white(n, 4);
        let gain = rms(&voice) / rms(&noise) / 10f64.powf(10.0 / 20.0);
        let mix: Vec<f32> = voice
            .iter()
            .zip(&noise)
            .map(|(&v, &w)| v + (gain * f64::from(w)) as f32)
            .collect();
        let clean = speech_share(&voice, -55.0);
        let noisy = speech_share(&mix, -55.0);
        assert!(clean.iter().all(|&s| s > 0.5), "clean syllables: {clean:?}");
        assert!(
            noisy.iter().all(|&s| s > 0.3),
            "syllables at 10 dB SNR: {noisy:?}"
        );
    }

    #[test]
    fn streaming_detector_matches_the_clip_mask() {
        let cfg = FeatureConfig::default();
        let mut x = syllables(RATE as usize * 4, 0.2);
        x.extend(white(RATE as usize * 4, 9).iter().map(|w| 0.05 * w));
        let mut det = SpeechDetector::new(&cfg, -55.0).expect("valid");
        let mut stream = crate::features::FrameStream::new(&cfg).expect("valid");
        for chunk in x.chunks(777) {
            stream.push_frames(chunk, |frame| det.push_frame(frame));
        }
        let levels = band_levels(&cfg, &x).expect("valid");
        let mask = speech_mask(&cfg, &levels, -55.0, 1);
        // The clip mask judges each frame with the history before it and itself.
        let mut det_mask = Vec::new();
        let mut one = Vec::new();
        for t in 0..det.frames() {
            det_mask.push(det.mark(t, 1, &mut one) == 1);
        }
        assert_eq!(mask.len() as u64, det.frames());
        assert_eq!(det_mask, mask);
        // Whole windows, as the element and the trainer's validation count them.
        let mut scratch = Vec::new();
        let history = history_frames(&cfg);
        let mut some_speech = false;
        for start in (0..levels.len()).step_by(50) {
            let n = 200.min(levels.len() - start);
            let clip = window_speech_frames(&levels, start, n, history, -55.0, &mut scratch);
            assert_eq!(
                clip,
                det.mark(start as u64, n, &mut one),
                "window at {start}"
            );
            some_speech |= clip > 0;
        }
        assert!(some_speech);
        det.forget_before(600);
        assert!(det.level(599 - history_frames(&cfg) as u64).is_none());
        assert!(det.level(600).is_some());
    }
}
