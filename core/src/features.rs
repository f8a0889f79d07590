//! Acoustic features: log-mel spectrogram or MFCC, plus optional frame RMS and
//! zero-crossing-rate rows.
//!
//! This module is pure DSP with no GStreamer types, so the element and the
//! trainer run the very same code and cannot drift apart. The definitions
//! follow librosa 0.11 exactly (checked against values it computes, see
//! `scripts/golden_features.py`), so that models and analyses prototyped in
//! Python carry over:
//!
//! * framing is `center = False`: frame `t` covers samples
//!   `[t * hop_length, t * hop_length + n_fft)`;
//! * the window is a periodic Hann window of `win_length` samples, zero-padded
//!   centred to `n_fft` (`librosa.filters.get_window` + `util.pad_center`);
//! * the power spectrum `|X|^2` goes through
//!   `librosa.filters.mel(htk = False, norm = "slaney")` and
//!   `10 * log10(max(mel, 1e-10))` (`power_to_db(ref = 1, amin = 1e-10,
//!   top_db = None)`);
//! * MFCC is the orthonormal DCT-II of that log-mel, first `n_mfcc`
//!   coefficients (`librosa.feature.mfcc(S = log_mel, dct_type = 2,
//!   norm = "ortho")`);
//! * the RMS row is `20 * log10(max(rms, 1e-5))` (dB relative to a full-scale
//!   square wave, floor −100 dB) over the `win_length` samples the window
//!   covers;
//! * the ZCR row is `librosa.feature.zero_crossing_rate(frame_length = n_fft,
//!   center = False)`: samples with `|x| <= 1e-10` count as zero, zero counts
//!   as positive, a crossing is a sign-bit change between neighbours, and the
//!   count is divided by `n_fft`.
//!
//! * the pitch rows (`append_pitch`) come from subharmonic summation over the
//!   frame's amplitude spectrum (see [`PitchTracker`]): the fundamental in
//!   semitones above 100 Hz, faded to 0 as the frame stops being harmonic,
//!   and the harmonicity, the natural log of how much more amplitude lies on
//!   the best candidate's harmonics than a flat spectrum would put there.
//!
//! Rows are ordered: mel (or MFCC) rows, then RMS (if `append_rms`), then ZCR
//! (if `append_zcr`), then pitch and harmonicity (if `append_pitch`).
//!
//! Non-finite input samples (NaN, ±inf) are treated as 0, so output is always
//! finite. The FFT runs in `f64`, which keeps low-level bands (down to the
//! −100 dB floor) in agreement with the float64 reference; the mel sums and
//! the logarithm run in `f32` (vectorised) and the DCT accumulates in `f64`
//! (see [`FrameExtractor`]).

use std::fmt;
use std::sync::Arc;

use multiversion::multiversion;
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

/// Floor of the frame RMS before the logarithm: −100 dB.
const RMS_FLOOR: f64 = 1e-5;
/// Magnitudes at or below this count as zero for the zero-crossing rate (librosa default).
const ZCR_THRESHOLD: f32 = 1e-10;

/// Which spectral representation forms the main rows of the feature matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// `n_mels` rows of log-mel power in dB.
    LogMel,
    /// `n_mfcc` rows of DCT-II (orthonormal) of the log-mel.
    Mfcc,
}

/// Normalisation applied per inference window, before the global mean/std.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowNormalization {
    /// Leave the window as it is.
    #[default]
    None,
    /// Subtract, per feature row, its mean over the window's frames
    /// (cepstral-mean style). A constant gain, or a fixed channel colouring,
    /// adds a constant to every log-mel row, so this removes it; loudness then
    /// reaches the model only through variation within the window.
    SubtractMean,
    /// Subtract one number from every level row: the window's mean log-mel
    /// level (dB, over bands and frames). A constant gain shifts every level
    /// row alike, so this removes it while the spectral tilt and the
    /// loudness contour within the window (arousal cues) stay.
    SubtractGain,
    /// Subtract, per feature row, the voice's own baseline: the mean of the
    /// speech frames its stream has carried so far, blended with the model's
    /// `stream_prior` until enough speech has been heard ([`StreamBaseline`]).
    /// Speaker, microphone and line (constant per call) go; how loud and
    /// bright this moment is *for this voice* (the arousal cue) stays.
    SubtractStreamMean,
    /// [`SubtractMean`](Self::SubtractMean) over the window's speech frames
    /// only (all of them when none is speech): pauses, whose level is the
    /// room's or the line's noise floor, no longer pull the mean, so the
    /// same speech comes out the same whatever the floor and however much
    /// of the window is pause.
    SubtractSpeechMean,
}

/// Feature configuration, serialised into the model metadata
/// (`seremotion.features`) so a model carries the exact front end it was
/// trained with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    /// Main rows: log-mel or MFCC.
    pub kind: FeatureKind,
    /// Sample rate in Hz the features assume; audio is resampled to it first.
    pub sample_rate: u32,
    /// FFT length, a power of two `>= win_length`.
    pub n_fft: usize,
    /// Length of the periodic Hann window, centred in the FFT frame.
    pub win_length: usize,
    /// Samples between consecutive frames.
    pub hop_length: usize,
    /// Number of mel bands.
    pub n_mels: usize,
    /// Lowest mel-band edge in Hz.
    pub fmin: f32,
    /// Highest mel-band edge in Hz, at most `sample_rate / 2`.
    pub fmax: f32,
    /// Number of cepstral coefficients kept when `kind == Mfcc` (`1..=n_mels`).
    #[serde(default)]
    pub n_mfcc: usize,
    /// Append one row: frame RMS in dB (full-scale square wave = 0 dB, floor −100 dB).
    #[serde(default)]
    pub append_rms: bool,
    /// Append one row: zero-crossing rate in `[0, 1]`.
    #[serde(default)]
    pub append_zcr: bool,
    /// Append two rows: pitch and harmonicity (see the module docs). Needs
    /// FFT bins of at most [`MAX_PITCH_BIN_HZ`] Hz.
    // Left out when off, so models without it load in older elements.
    #[serde(default, skip_serializing_if = "is_false")]
    pub append_pitch: bool,
    /// Per-window normalisation, applied by [`window_tensor`] before `mean`/`std`.
    #[serde(default)]
    pub normalization: WindowNormalization,
    /// Global standardisation `(x - mean[i]) / std[i]` applied by
    /// [`window_tensor`]; empty for none, else `n_features()` values.
    #[serde(default)]
    pub mean: Vec<f32>,
    /// See `mean`; same length, every value finite and `> 0`.
    #[serde(default)]
    pub std: Vec<f32>,
    /// With [`WindowNormalization::SubtractStreamMean`]: the baseline a
    /// stream starts from, per feature row (the training voices' mean speech
    /// frame); `n_features()` finite values. Empty otherwise.
    // Left out when unused, so models without a voice baseline still load
    // in elements that predate it (the config refuses unknown fields).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stream_prior: Vec<f32>,
    /// Weight of `stream_prior`, in speech frames: after this many speech
    /// frames the stream's own mean counts as much as the prior.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stream_prior_frames: f32,
}

fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for FeatureConfig {
    /// 64 log-mel bands of 25 ms windows every 10 ms at 16 kHz, 20 Hz–8 kHz.
    fn default() -> Self {
        FeatureConfig {
            kind: FeatureKind::LogMel,
            sample_rate: 16000,
            n_fft: 512,
            win_length: 400,
            hop_length: 160,
            n_mels: 64,
            fmin: 20.0,
            fmax: 8000.0,
            n_mfcc: 0,
            append_rms: false,
            append_zcr: false,
            append_pitch: false,
            normalization: WindowNormalization::None,
            mean: Vec::new(),
            std: Vec::new(),
            stream_prior: Vec::new(),
            stream_prior_frames: 0.0,
        }
    }
}

impl FeatureConfig {
    /// The front end the default model is trained with (and that travels in
    /// it): 64 log-mel bands, frame energy, pitch and harmonicity every 20 ms,
    /// per-window mean removal so gain and fixed channel colouring (corpus
    /// fingerprints, phone lines) do not reach the network. 20 ms frames halve
    /// the element's feature and network cost against 10 ms with no loss for
    /// emotion cues, which live in 100 ms+ prosody and spectral envelope. The
    /// pitch rows gained 1.3 points clean and 1.2 on the phone on the mean of
    /// the four target corpora (4-fold by speaker, seed 7), less than a second
    /// seed moves the same recipe (models/EXPERIMENTS.md). The training
    /// statistics (`mean`, `std`) are left empty: the trainer fits them.
    pub fn default_model() -> Self {
        FeatureConfig {
            win_length: 512,
            hop_length: 320,
            append_rms: true,
            append_pitch: true,
            normalization: WindowNormalization::SubtractMean,
            ..FeatureConfig::default()
        }
    }
}

/// Why a [`FeatureConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureError {
    /// A size or rate that must be positive is zero.
    Zero {
        /// Name of the offending field.
        field: &'static str,
    },
    /// `n_fft` is not a power of two.
    FftNotPowerOfTwo {
        /// The configured `n_fft`.
        n_fft: usize,
    },
    /// The window does not fit in the FFT frame.
    WindowLongerThanFft {
        /// The configured `win_length`.
        win_length: usize,
        /// The configured `n_fft`.
        n_fft: usize,
    },
    /// `fmin`/`fmax` are not finite, negative, out of order or above Nyquist.
    FrequencyRange {
        /// The configured `fmin`.
        fmin: f32,
        /// The configured `fmax`.
        fmax: f32,
        /// `sample_rate / 2`.
        nyquist: f32,
    },
    /// `n_mfcc` is outside `1..=n_mels` while `kind == Mfcc`.
    MfccCount {
        /// The configured `n_mfcc`.
        n_mfcc: usize,
        /// The configured `n_mels`.
        n_mels: usize,
    },
    /// A mel band falls between two FFT bins and would always be silent.
    EmptyMelBand {
        /// Index of the first empty band.
        band: usize,
        /// The configured `n_mels`.
        n_mels: usize,
        /// The configured `n_fft`.
        n_fft: usize,
    },
    /// A size beyond what any speech front end uses; refused before anything
    /// that large is allocated.
    TooLarge {
        /// Name of the offending field.
        field: &'static str,
        /// Its value.
        value: usize,
        /// The largest value accepted.
        max: usize,
    },
    /// `mean` or `std` has the wrong length.
    StatsLength {
        /// `"mean"` or `"std"`.
        field: &'static str,
        /// Its length.
        len: usize,
        /// `n_features()`.
        expected: usize,
    },
    /// `subtract_stream_mean` without a usable `stream_prior` /
    /// `stream_prior_frames`.
    /// `append_pitch` with FFT bins too wide to resolve voice harmonics, or a
    /// rate too low to hold the harmonics the tracker sums.
    PitchResolution {
        /// `sample_rate / n_fft`.
        bin_hz: f32,
        /// The configured `sample_rate`.
        sample_rate: u32,
    },
    StreamPrior {
        /// What is wrong with them.
        problem: String,
    },
    /// A `mean` value is not finite, or a `std` value is not finite and positive.
    BadStat {
        /// `"mean"` or `"std"`.
        field: &'static str,
        /// Index of the offending value.
        index: usize,
        /// The value.
        value: f32,
    },
}

impl fmt::Display for FeatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureError::Zero { field } => {
                write!(f, "feature config: `{field}` is 0; it must be positive")
            }
            FeatureError::FftNotPowerOfTwo { n_fft } => write!(
                f,
                "feature config: n_fft = {n_fft} is not a power of two (use e.g. 512 at 16 kHz)"
            ),
            FeatureError::WindowLongerThanFft { win_length, n_fft } => write!(
                f,
                "feature config: win_length = {win_length} is longer than n_fft = {n_fft}; \
                 raise n_fft to a power of two >= win_length"
            ),
            FeatureError::FrequencyRange {
                fmin,
                fmax,
                nyquist,
            } => write!(
                f,
                "feature config: need 0 <= fmin < fmax <= sample_rate / 2 = {nyquist} Hz, \
                 got fmin = {fmin} Hz, fmax = {fmax} Hz"
            ),
            FeatureError::MfccCount { n_mfcc, n_mels } => write!(
                f,
                "feature config: kind = mfcc needs n_mfcc in 1..={n_mels} (n_mels), got {n_mfcc}"
            ),
            FeatureError::EmptyMelBand {
                band,
                n_mels,
                n_fft,
            } => write!(
                f,
                "feature config: mel band {band} of {n_mels} contains no FFT bin at n_fft = {n_fft}; \
                 lower n_mels, raise fmin or raise n_fft"
            ),
            FeatureError::TooLarge { field, value, max } => write!(
                f,
                "feature config: `{field}` = {value} is larger than the {max} seremotion accepts"
            ),
            FeatureError::StatsLength {
                field,
                len,
                expected,
            } => write!(
                f,
                "feature config: `{field}` has {len} values but there are {expected} features \
                 (leave it empty for no standardisation)"
            ),
            FeatureError::PitchResolution {
                bin_hz,
                sample_rate,
            } => write!(
                f,
                "feature config: append_pitch needs FFT bins of at most {MAX_PITCH_BIN_HZ} Hz and \
                 a sample rate of at least {} Hz; n_fft gives {bin_hz} Hz bins at {sample_rate} Hz \
                 (raise n_fft)",
                2.0 * PITCH_MAX_HARMONIC_HZ
            ),
            FeatureError::StreamPrior { problem } => write!(
                f,
                "feature config: normalization = subtract_stream_mean needs {problem}"
            ),
            FeatureError::BadStat {
                field,
                index,
                value,
            } => write!(
                f,
                "feature config: `{field}[{index}]` = {value} is not usable \
                 (mean must be finite, std finite and > 0)"
            ),
        }
    }
}

impl std::error::Error for FeatureError {}

/// Largest `n_fft` (and `hop_length`): 0.34 s at 192 kHz, far beyond speech analysis.
pub const MAX_N_FFT: usize = 1 << 16;
/// Largest `n_mels`.
pub const MAX_N_MELS: usize = 512;
/// Largest `sample_rate`, Hz.
pub const MAX_SAMPLE_RATE: usize = 192_000;
/// Largest `stream_prior_frames`: beyond it a stream would never outweigh the prior.
pub const MAX_STREAM_PRIOR_FRAMES: f32 = 1e6;

impl FeatureConfig {
    /// Checks that features can be computed with this configuration.
    pub fn validate(&self) -> Result<(), FeatureError> {
        for (field, value) in [
            ("sample_rate", self.sample_rate as usize),
            ("n_fft", self.n_fft),
            ("win_length", self.win_length),
            ("hop_length", self.hop_length),
            ("n_mels", self.n_mels),
        ] {
            if value == 0 {
                return Err(FeatureError::Zero { field });
            }
        }
        // Bounded first: the filterbank built below is n_mels x n_fft.
        for (field, value, max) in [
            ("sample_rate", self.sample_rate as usize, MAX_SAMPLE_RATE),
            ("n_fft", self.n_fft, MAX_N_FFT),
            ("hop_length", self.hop_length, MAX_N_FFT),
            ("n_mels", self.n_mels, MAX_N_MELS),
        ] {
            if value > max {
                return Err(FeatureError::TooLarge { field, value, max });
            }
        }
        if !self.n_fft.is_power_of_two() {
            return Err(FeatureError::FftNotPowerOfTwo { n_fft: self.n_fft });
        }
        if self.win_length > self.n_fft {
            return Err(FeatureError::WindowLongerThanFft {
                win_length: self.win_length,
                n_fft: self.n_fft,
            });
        }
        let nyquist = self.sample_rate as f32 / 2.0;
        let range_ok = self.fmin.is_finite()
            && self.fmax.is_finite()
            && self.fmin >= 0.0
            && self.fmin < self.fmax
            && self.fmax <= nyquist;
        if !range_ok {
            return Err(FeatureError::FrequencyRange {
                fmin: self.fmin,
                fmax: self.fmax,
                nyquist,
            });
        }
        if self.kind == FeatureKind::Mfcc && !(1..=self.n_mels).contains(&self.n_mfcc) {
            return Err(FeatureError::MfccCount {
                n_mfcc: self.n_mfcc,
                n_mels: self.n_mels,
            });
        }
        if self.append_pitch {
            let bin_hz = self.sample_rate as f32 / self.n_fft as f32;
            if bin_hz > MAX_PITCH_BIN_HZ || nyquist < PITCH_MAX_HARMONIC_HZ {
                return Err(FeatureError::PitchResolution {
                    bin_hz,
                    sample_rate: self.sample_rate,
                });
            }
        }
        let expected = self.n_features();
        if !self.mean.is_empty() || !self.std.is_empty() {
            for (field, stats) in [("mean", &self.mean), ("std", &self.std)] {
                if stats.len() != expected {
                    return Err(FeatureError::StatsLength {
                        field,
                        len: stats.len(),
                        expected,
                    });
                }
            }
        }
        if let Some((index, &value)) = self.mean.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(FeatureError::BadStat {
                field: "mean",
                index,
                value,
            });
        }
        if let Some((index, &value)) = self
            .std
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && **v > 0.0))
        {
            return Err(FeatureError::BadStat {
                field: "std",
                index,
                value,
            });
        }
        if self.normalization == WindowNormalization::SubtractStreamMean {
            let problem = if self.stream_prior.len() != expected {
                Some(format!(
                    "`stream_prior` with {expected} values (one per feature), got {}",
                    self.stream_prior.len()
                ))
            } else if let Some(i) = self.stream_prior.iter().position(|v| !v.is_finite()) {
                Some(format!("finite `stream_prior` values; [{i}] is not"))
            } else if !(self.stream_prior_frames > 0.0
                && self.stream_prior_frames <= MAX_STREAM_PRIOR_FRAMES)
            {
                Some(format!(
                    "`stream_prior_frames` in (0, {MAX_STREAM_PRIOR_FRAMES}], got {}",
                    self.stream_prior_frames
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(FeatureError::StreamPrior { problem });
            }
        }
        if let Some(band) = mel_filterbank(self)
            .iter()
            .position(|b| b.weights.is_empty())
        {
            return Err(FeatureError::EmptyMelBand {
                band,
                n_mels: self.n_mels,
                n_fft: self.n_fft,
            });
        }
        Ok(())
    }

    /// Rows per frame: `n_mels` (log-mel) or `n_mfcc` (MFCC), plus one for
    /// each appended RMS / ZCR row and two for the pitch rows.
    pub fn n_features(&self) -> usize {
        let main = match self.kind {
            FeatureKind::LogMel => self.n_mels,
            FeatureKind::Mfcc => self.n_mfcc,
        };
        main + usize::from(self.append_rms)
            + usize::from(self.append_zcr)
            + 2 * usize::from(self.append_pitch)
    }

    /// Where `hz` falls among the log-mel rows, as a fractional row index:
    /// row `i`'s filter peaks at `i`, and a frequency between two peaks lies
    /// between their rows in proportion on the mel scale. Below the first
    /// peak or above the last the index runs past `0` or `n_mels - 1`.
    pub fn mel_row_position(&self, hz: f64) -> f64 {
        let (mel_lo, mel_hi) = (
            hz_to_mel(f64::from(self.fmin)),
            hz_to_mel(f64::from(self.fmax)),
        );
        let step = (mel_hi - mel_lo) / (self.n_mels + 1) as f64;
        (hz_to_mel(hz) - mel_lo) / step - 1.0
    }

    /// The frequency in Hz at which each log-mel row's filter peaks.
    pub fn mel_row_centres(&self) -> Vec<f64> {
        mel_edges_hz(self)[1..=self.n_mels].to_vec()
    }

    /// Frames per second of audio.
    pub fn frame_rate(&self) -> f64 {
        f64::from(self.sample_rate) / self.hop_length as f64
    }

    /// Frames that `n_samples` samples yield with `center = False` framing:
    /// 0 below `n_fft`, else `(n_samples - n_fft) / hop_length + 1`.
    pub fn frames_in(&self, n_samples: usize) -> usize {
        if n_samples < self.n_fft || self.hop_length == 0 {
            0
        } else {
            (n_samples - self.n_fft) / self.hop_length + 1
        }
    }
}

// ---------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------

/// Hz to mel on the Slaney scale (librosa `hz_to_mel(htk=False)`): linear
/// below 1 kHz, logarithmic above.
fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / logstep
    } else {
        hz / F_SP
    }
}

/// Inverse of [`hz_to_mel`] (librosa `mel_to_hz(htk=False)`).
fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (logstep * (mel - MIN_LOG_MEL)).exp()
    } else {
        F_SP * mel
    }
}

/// One triangular mel filter, stored sparsely: its non-zero weights start at
/// FFT bin `start`.
#[derive(Clone, Debug)]
struct MelBand {
    start: usize,
    weights: Vec<f32>,
}

/// `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False,
/// norm="slaney")`, sparse. Weights are rounded exactly as librosa rounds
/// them (to f32, then scaled by the Slaney area norm in f64 and rounded to f32
/// again), so the dot product reproduces librosa's to the last bit of the
/// weights.
fn mel_filterbank(cfg: &FeatureConfig) -> Vec<MelBand> {
    let n_bins = cfg.n_fft / 2 + 1;
    let sr = f64::from(cfg.sample_rate);
    let fft_freq = |k: usize| k as f64 * (sr / 2.0) / (n_bins - 1).max(1) as f64;
    let edges = mel_edges_hz(cfg);
    (0..cfg.n_mels)
        .map(|m| {
            let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
            let enorm = 2.0 / (hi - lo);
            let mut start = None;
            let mut weights = Vec::new();
            for k in 0..n_bins {
                let f = fft_freq(k);
                let lower = -(lo - f) / (mid - lo);
                let upper = (hi - f) / (hi - mid);
                let w = lower.min(upper).max(0.0);
                let w = ((w as f32) as f64 * enorm) as f32;
                if w > 0.0 {
                    let s = *start.get_or_insert(k);
                    // Triangles are convex: non-zero bins are contiguous.
                    weights.resize(k - s, 0.0);
                    weights.push(w);
                }
            }
            MelBand {
                start: start.unwrap_or(0),
                weights,
            }
        })
        .collect()
}

/// The `n_mels + 2` corners of the triangular filters in Hz: filter `m`
/// rises from `edges[m]`, peaks at `edges[m + 1]` and ends at `edges[m + 2]`
/// (librosa: `np.linspace(min_mel, max_mel, n_mels + 2)`, back to Hz).
fn mel_edges_hz(cfg: &FeatureConfig) -> Vec<f64> {
    let (mel_lo, mel_hi) = (
        hz_to_mel(f64::from(cfg.fmin)),
        hz_to_mel(f64::from(cfg.fmax)),
    );
    let n_pts = cfg.n_mels + 2;
    (0..n_pts)
        .map(|i| {
            let step = (mel_hi - mel_lo) / (n_pts - 1) as f64;
            let mel = if i == n_pts - 1 {
                mel_hi
            } else {
                mel_lo + i as f64 * step
            };
            mel_to_hz(mel)
        })
        .collect()
}

/// Periodic Hann window of `win_length` samples, zero-padded centred to
/// `n_fft` (librosa `pad_center`: left padding `(n_fft - win_length) / 2`).
fn padded_hann(win_length: usize, n_fft: usize) -> Vec<f64> {
    let mut w = vec![0.0; n_fft];
    let lpad = (n_fft - win_length) / 2;
    for (i, v) in w[lpad..lpad + win_length].iter_mut().enumerate() {
        let phase = 2.0 * std::f64::consts::PI * i as f64 / win_length as f64;
        *v = 0.5 - 0.5 * phase.cos();
    }
    w
}

/// The analysis window of `cfg` over the whole FFT frame (the periodic Hann
/// of `win_length` samples, zero-padded centred to `n_fft`), for calibrating
/// measurements taken from [`FrameExtractor::power`].
pub fn analysis_window(cfg: &FeatureConfig) -> Vec<f64> {
    padded_hann(cfg.win_length, cfg.n_fft)
}

/// Orthonormal DCT-II matrix (`scipy.fft.dct(type=2, norm="ortho")`), first
/// `n_out` rows of an `n_in`-point transform, row-major.
fn dct2_ortho(n_out: usize, n_in: usize) -> Vec<f64> {
    let n = n_in as f64;
    let mut m = Vec::with_capacity(n_out * n_in);
    for k in 0..n_out {
        let scale = if k == 0 {
            (1.0 / n).sqrt()
        } else {
            (2.0 / n).sqrt()
        };
        for i in 0..n_in {
            let arg = std::f64::consts::PI * k as f64 * (2 * i + 1) as f64 / (2.0 * n);
            m.push(scale * arg.cos());
        }
    }
    m
}

/// Zero-crossing rate of `frame` as librosa defines it (see module docs).
fn zero_crossing_rate(frame: &[f32]) -> f32 {
    // Non-finite samples count as 0, i.e. positive (NaN compares false).
    let negative = |x: f32| x < -ZCR_THRESHOLD && x != f32::NEG_INFINITY;
    let crossings = frame
        .windows(2)
        .filter(|p| negative(p[0]) != negative(p[1]))
        .count();
    crossings as f32 / frame.len() as f32
}

// ---------------------------------------------------------------------------
// Per-frame extractor
// ---------------------------------------------------------------------------

/// Computes the features of one `n_fft`-sample frame.
///
/// Everything that depends only on the configuration (FFT plan, window,
/// filterbank, DCT matrix, scratch buffers) is built in [`FrameExtractor::new`];
/// [`FrameExtractor::compute`] does not allocate.
///
/// Precision: the FFT runs in `f64`. In `f32` its rounding noise sits about
/// 140 dB below the frame's peak, which is within reach of the −100 dB floor
/// for a loud frame (a 1 kHz sine at −6 dBFS puts bands at −98 dB): bands
/// there would move by up to a dB against librosa. Everything after the
/// power spectrum (mel sums, logarithm) runs in `f32`, whose rounding stays
/// below 1e-5 dB, and the MFCC DCT accumulates in `f64`.
pub struct FrameExtractor {
    kind: FeatureKind,
    win_start: usize,
    win_length: usize,
    append_rms: bool,
    append_zcr: bool,
    pitch: Option<PitchTracker>,
    n_features: usize,
    fft: Arc<dyn RealToComplex<f64>>,
    /// The periodic Hann window over `win_length` samples (the zero padding
    /// around it is not stored: those FFT inputs are always 0).
    window: Vec<f64>,
    bands: Vec<MelBand>,
    /// `n_mfcc x n_mels`, row-major; empty for log-mel.
    dct: Vec<f64>,
    fft_in: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    power: Vec<f32>,
    fft_scratch: Vec<Complex<f64>>,
    log_mel: Vec<f32>,
    /// `log_mel` in `f64`, the DCT's input (MFCC only).
    log_mel64: Vec<f64>,
}

impl fmt::Debug for FrameExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameExtractor")
            .field("kind", &self.kind)
            .field("n_fft", &self.fft_in.len())
            .field("n_features", &self.n_features)
            .finish_non_exhaustive()
    }
}

impl FrameExtractor {
    /// Validates `cfg` and precomputes everything a frame needs.
    pub fn new(cfg: &FeatureConfig) -> Result<Self, FeatureError> {
        cfg.validate()?;
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(cfg.n_fft);
        let dct = match cfg.kind {
            FeatureKind::LogMel => Vec::new(),
            FeatureKind::Mfcc => dct2_ortho(cfg.n_mfcc, cfg.n_mels),
        };
        let win_start = (cfg.n_fft - cfg.win_length) / 2;
        let window =
            padded_hann(cfg.win_length, cfg.n_fft)[win_start..win_start + cfg.win_length].to_vec();
        Ok(FrameExtractor {
            kind: cfg.kind,
            win_start,
            win_length: cfg.win_length,
            append_rms: cfg.append_rms,
            append_zcr: cfg.append_zcr,
            pitch: cfg.append_pitch.then(|| PitchTracker::new(cfg)),
            n_features: cfg.n_features(),
            fft_in: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            fft_scratch: fft.make_scratch_vec(),
            power: vec![0.0; cfg.n_fft / 2 + 1],
            fft,
            window,
            bands: mel_filterbank(cfg),
            log_mel64: vec![0.0; if dct.is_empty() { 0 } else { cfg.n_mels }],
            dct,
            log_mel: vec![0.0; cfg.n_mels],
        })
    }

    /// Values written per frame by [`FrameExtractor::compute`].
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Computes one frame.
    ///
    /// `frame` has exactly `n_fft` samples (f32, nominally in `[-1, 1]`;
    /// non-finite samples count as 0). Writes `n_features()` values to `out`
    /// and returns the frame RMS in dB (full-scale square = 0 dB, floor
    /// −100 dB) over the `win_length` samples the window covers, for speech
    /// gating — whether or not an RMS row is appended.
    ///
    /// # Panics
    /// If `frame.len() != n_fft` or `out.len() != n_features()` (caller bug).
    pub fn compute(&mut self, frame: &[f32], out: &mut [f32]) -> f32 {
        assert_eq!(
            out.len(),
            self.n_features,
            "out must have n_features values"
        );
        let energy = self.transform(frame);
        for (lm, band) in self.log_mel.iter_mut().zip(&self.bands) {
            let bins = &self.power[band.start..band.start + band.weights.len()];
            *lm = bins.iter().zip(&band.weights).map(|(&p, &w)| p * w).sum();
        }
        bands_to_db(&mut self.log_mel);

        let n_main = match self.kind {
            FeatureKind::LogMel => {
                out[..self.log_mel.len()].copy_from_slice(&self.log_mel);
                self.log_mel.len()
            }
            FeatureKind::Mfcc => {
                for (d, &v) in self.log_mel64.iter_mut().zip(&self.log_mel) {
                    *d = f64::from(v);
                }
                let n_mels = self.log_mel.len();
                let n_mfcc = self.dct.len() / n_mels;
                for (o, row) in out.iter_mut().zip(self.dct.chunks_exact(n_mels)) {
                    let c: f64 = row.iter().zip(&self.log_mel64).map(|(a, b)| a * b).sum();
                    *o = c as f32;
                }
                n_mfcc
            }
        };

        let rms = energy_db(energy, self.win_length);
        let mut row = n_main;
        if self.append_rms {
            out[row] = rms;
            row += 1;
        }
        if self.append_zcr {
            out[row] = zero_crossing_rate(frame);
            row += 1;
        }
        if let Some(pitch) = &mut self.pitch {
            let (semitones, harmonicity) = pitch.track(&self.power);
            out[row] = semitones;
            out[row + 1] = harmonicity;
        }
        rms
    }

    /// The power spectrum `|X[k]|^2`, `k = 0..=n_fft / 2`, of `frame`: the
    /// window and FFT of [`FrameExtractor::compute`] without the features,
    /// for measurements that need the spectrum only (the speech decision's
    /// voice-band level of a whole clip).
    ///
    /// # Panics
    /// If `frame.len() != n_fft` (caller bug).
    pub fn power_spectrum(&mut self, frame: &[f32]) -> &[f32] {
        self.transform(frame);
        &self.power
    }

    /// The power spectrum of the frame last passed to
    /// [`FrameExtractor::compute`] or [`FrameExtractor::power_spectrum`]
    /// (zeros before the first): other per-frame measurements read it
    /// instead of transforming the frame again.
    pub fn power(&self) -> &[f32] {
        &self.power
    }

    /// Windows `frame` into the FFT input, transforms it into `self.power`
    /// and returns the energy of the `win_length` samples the window covers.
    fn transform(&mut self, frame: &[f32]) -> f64 {
        assert_eq!(
            frame.len(),
            self.fft_in.len(),
            "frame must have n_fft samples"
        );
        // The FFT uses its input as scratch, so the zero padding is rewritten.
        let (win_start, win_end) = (self.win_start, self.win_start + self.win_length);
        self.fft_in[..win_start].fill(0.0);
        self.fft_in[win_end..].fill(0.0);
        let energy = window_frame(
            &mut self.fft_in[win_start..win_end],
            &frame[win_start..win_end],
            &self.window,
        );
        // Lengths are fixed at construction, so the FFT cannot fail.
        self.fft
            .process_with_scratch(&mut self.fft_in, &mut self.spectrum, &mut self.fft_scratch)
            .expect("FFT buffers sized by the plan");
        for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
            *p = c.norm_sqr() as f32;
        }
        energy
    }
}

// The per-frame loops below are written in eight explicit lanes so that they
// vectorise, and compiled twice: for the baseline x86-64 (SSE2) and, chosen
// at run time, for AVX2, where one register holds all eight lanes. Each lane
// sees the same operations in the same order either way (Rust never fuses a
// multiply and an add), so both give bit-identical features; AVX2 roughly
// halves the cost of the pitch scores and the window.

/// Writes `src` (non-finite samples as 0) times `window` into `dst` and
/// returns the energy of `src`.
#[multiversion(targets("x86_64+avx2"))]
fn window_frame(dst: &mut [f64], src: &[f32], window: &[f64]) -> f64 {
    // Eight partial sums: a single running sum is a serial dependency the
    // compiler may not reorder.
    let mut lanes = [0.0f64; 8];
    let mut dst_blocks = dst.chunks_exact_mut(8);
    let mut src_blocks = src.chunks_exact(8);
    let mut win_blocks = window.chunks_exact(8);
    for ((d, x), w) in (&mut dst_blocks).zip(&mut src_blocks).zip(&mut win_blocks) {
        for i in 0..8 {
            let v = f64::from(finite_or_zero(x[i]));
            lanes[i] += v * v;
            d[i] = v * w[i];
        }
    }
    for ((d, &x), &w) in dst_blocks
        .into_remainder()
        .iter_mut()
        .zip(src_blocks.remainder())
        .zip(win_blocks.remainder())
    {
        let v = f64::from(finite_or_zero(x));
        lanes[0] += v * v;
        *d = v * w;
    }
    lanes.iter().sum()
}

/// Mel band powers to dB in place.
#[multiversion(targets("x86_64+avx2"))]
fn bands_to_db(bands: &mut [f32]) {
    for b in bands.iter_mut() {
        *b = power_db(*b);
    }
}

/// Largest FFT bin width, Hz, at which [`PitchTracker`] still separates the
/// harmonics of a low voice.
pub const MAX_PITCH_BIN_HZ: f32 = 40.0;
/// Lowest and highest fundamental searched, Hz.
const PITCH_MIN_HZ: f32 = 60.0;
const PITCH_MAX_HZ: f32 = 400.0;
/// Harmonics are summed up to this frequency, Hz (where voiced speech keeps
/// its clearest harmonics, inside the telephone band too).
const PITCH_MAX_HARMONIC_HZ: f32 = 2000.0;
/// Candidates per octave.
const PITCH_STEPS_PER_OCTAVE: f32 = 24.0;
/// Weight of harmonic `h` is `PITCH_DECAY^(h - 1)` (Hermes 1988): the
/// fundamental's subharmonics would otherwise collect as much as it does.
const PITCH_DECAY: f32 = 0.84;
/// Salience (harmonic amplitude over a flat spectrum's) at which a frame
/// counts as fully voiced; the pitch row fades in from a salience of 1.
const PITCH_FULLY_VOICED: f32 = 2.0;

/// Pitch by subharmonic summation (Hermes 1988) over the amplitude spectrum
/// the feature extractor already computed: each candidate fundamental on a
/// 1/24-octave grid from 60 to 400 Hz scores the weighted amplitude at its
/// harmonics up to 2 kHz, against what a flat spectrum of the same mean
/// amplitude would score. No second transform, so it fits the element's
/// budget; the coarse grid is enough for the 2-semitone movements emotion
/// makes.
#[derive(Debug)]
pub struct PitchTracker {
    /// Candidate fundamentals, Hz.
    candidates: Vec<f32>,
    /// Per candidate, a row of `amplitude.len()` weights: each harmonic's
    /// weight split between the two bins around it (linear interpolation),
    /// normalised to sum to 1. Dense, so scoring is a matrix-vector product
    /// that vectorises, instead of scattered reads.
    weights: Vec<f32>,
    /// Bins `1..=last_bin` are read.
    last_bin: usize,
    amplitude: Vec<f32>,
}

impl PitchTracker {
    /// For a config that passed [`FeatureConfig::validate`] with `append_pitch`.
    pub fn new(cfg: &FeatureConfig) -> Self {
        let bin_hz = cfg.sample_rate as f32 / cfg.n_fft as f32;
        let last_bin = ((PITCH_MAX_HARMONIC_HZ / bin_hz).ceil() as usize + 1).min(cfg.n_fft / 2);
        let width = last_bin + 1;
        let n_candidates =
            ((PITCH_MAX_HZ / PITCH_MIN_HZ).log2() * PITCH_STEPS_PER_OCTAVE).round() as usize + 1;
        let candidates: Vec<f32> = (0..n_candidates)
            .map(|i| PITCH_MIN_HZ * (i as f32 / PITCH_STEPS_PER_OCTAVE).exp2())
            .collect();
        let mut weights = vec![0f32; n_candidates * width];
        for (&f0, row) in candidates.iter().zip(weights.chunks_exact_mut(width)) {
            let mut h = 1;
            while h as f32 * f0 <= PITCH_MAX_HARMONIC_HZ {
                let bin = h as f32 * f0 / bin_hz;
                let lower = bin.floor() as usize;
                if lower + 1 > last_bin {
                    break;
                }
                let (frac, w) = (bin - lower as f32, PITCH_DECAY.powi(h - 1));
                row[lower] += w * (1.0 - frac);
                row[lower + 1] += w * frac;
                h += 1;
            }
            let total: f32 = row.iter().sum();
            row.iter_mut().for_each(|w| *w /= total);
        }
        PitchTracker {
            candidates,
            weights,
            last_bin,
            amplitude: vec![0.0; width],
        }
    }

    /// `(pitch, harmonicity)` of a frame from its power spectrum: the best
    /// candidate in semitones above 100 Hz, scaled by how voiced the frame
    /// is (0 when it is not), and the natural log of its salience (0 for
    /// silence or a flat spectrum).
    pub fn track(&mut self, power: &[f32]) -> (f32, f32) {
        amplitude_of(&mut self.amplitude[1..], &power[1..=self.last_bin]);
        let flat = self.amplitude.iter().sum::<f32>() / self.last_bin as f32;
        // Silence: nothing to compare (and a NaN-free answer for zeros).
        if !flat.is_finite() || flat <= 1e-12 {
            return (0.0, 0.0);
        }
        let (best_f0, best) = best_candidate(&self.candidates, &self.weights, &self.amplitude);
        let salience = (best / flat).max(1e-6);
        let voiced = ((salience - 1.0) / (PITCH_FULLY_VOICED - 1.0)).clamp(0.0, 1.0);
        let semitones = 12.0 * (best_f0 / 100.0).max(1e-6).log2();
        (semitones * voiced, salience.ln())
    }
}

/// `sqrt(max(power, 0))` of every bin.
#[multiversion(targets("x86_64+avx2"))]
fn amplitude_of(amplitude: &mut [f32], power: &[f32]) {
    for (a, &p) in amplitude.iter_mut().zip(power) {
        *a = p.max(0.0).sqrt();
    }
}

/// The candidate (from `candidates`, one row of `weights` each) whose
/// weighted sum of `amplitude` is highest, and that sum; `(0, 0)` if none
/// is positive.
#[multiversion(targets("x86_64+avx2"))]
fn best_candidate(candidates: &[f32], weights: &[f32], amplitude: &[f32]) -> (f32, f32) {
    let (mut best_f0, mut best) = (0.0, 0f32);
    for (&f0, row) in candidates.iter().zip(weights.chunks_exact(amplitude.len())) {
        let score = dot(row, amplitude);
        if score > best {
            (best_f0, best) = (f0, score);
        }
    }
    (best_f0, best)
}

/// Dot product in eight lanes, so that it vectorises.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_blocks, b_blocks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_blocks
        .remainder()
        .iter()
        .zip(b_blocks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_blocks.zip(b_blocks) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `x` if finite, else 0 (NaN and infinities carry no sound).
#[inline(always)]
fn finite_or_zero(x: f32) -> f32 {
    // Branch-free (vectorises): all-ones mask unless the exponent is all ones.
    let bits = x.to_bits();
    let keep = ((bits & 0x7f80_0000) != 0x7f80_0000) as u32;
    f32::from_bits(bits & keep.wrapping_neg())
}

/// `10 log10(max(power, 1e-10))` in `f32`, branch-free so that the loop over
/// the mel bands vectorises (libm's `log10f` is a call per value). The
/// power's binary exponent is taken from its bits, and the logarithm of the
/// mantissa `m` (scaled into `[√½, √2)`) from the series
/// `ln m = 2 (s + s³/3 + s⁵/5 + …)`, `s = (m − 1)/(m + 1)`, `|s| ≤ 0.172`,
/// truncated after `s⁹/9` (truncation error < 1e-9). Absolute error below
/// 1e-5 dB over the whole range down to the floor (test
/// `power_db_matches_log10`).
#[inline(always)]
fn power_db(power: f32) -> f32 {
    const FLOOR: f32 = 1e-10;
    // 10 log10(2) and 10 / ln(10).
    const DB_PER_OCTAVE: f64 = 10.0 * std::f64::consts::LOG10_2;
    const DB_PER_NEPER: f64 = 10.0 * std::f64::consts::LOG10_E;
    let x = if power > FLOOR { power } else { FLOOR };
    let bits = x.to_bits();
    // Exponent and mantissa in [1, 2); mantissas above √2 are halved and
    // the exponent raised, so `m` lies in [√½, √2).
    let mut exponent = ((bits >> 23) as i32) - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let high = m > std::f32::consts::SQRT_2;
    if high {
        m *= 0.5;
        exponent += 1;
    }
    // The series runs in f64 so that rounding stays far below the 1e-5 dB
    // budget whatever the optimiser does; the result is rounded once to f32.
    let m = f64::from(m);
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series = 1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0))));
    let ln_m = 2.0 * s * series;
    let db = f64::from(exponent) * DB_PER_OCTAVE + ln_m * DB_PER_NEPER;
    // The floor is exactly -100 dB, as librosa's amin = 1e-10 gives.
    if power > FLOOR { db as f32 } else { -100.0 }
}

/// RMS in dB (`20 log10`, floor −100 dB) from the energy of `n` samples.
fn energy_db(energy: f64, n: usize) -> f32 {
    let rms = (energy / n.max(1) as f64).sqrt();
    (20.0 * rms.max(RMS_FLOOR).log10()) as f32
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

/// Cuts a sample stream into frames of `n_fft` samples every `hop` samples,
/// the framing of [`extract`]; shared by every per-frame measurement.
#[derive(Debug)]
pub struct Framer {
    n_fft: usize,
    hop: usize,
    /// The samples of the next frame collected so far (`len <= n_fft`).
    pending: Vec<f32>,
    /// Samples still to discard before the next frame starts (only when hop > n_fft).
    skip: usize,
}

impl Framer {
    pub fn new(n_fft: usize, hop: usize) -> Self {
        Framer {
            n_fft,
            hop,
            pending: Vec::with_capacity(n_fft),
            skip: 0,
        }
    }

    /// Appends `samples`; calls `on_frame` with every frame completed, in order.
    pub fn push(&mut self, mut samples: &[f32], mut on_frame: impl FnMut(&[f32])) {
        while !samples.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(samples.len());
                self.skip -= n;
                samples = &samples[n..];
                continue;
            }
            let n = (self.n_fft - self.pending.len()).min(samples.len());
            self.pending.extend_from_slice(&samples[..n]);
            samples = &samples[n..];
            if self.pending.len() == self.n_fft {
                on_frame(&self.pending);
                if self.hop < self.n_fft {
                    self.pending.copy_within(self.hop.., 0);
                    self.pending.truncate(self.n_fft - self.hop);
                } else {
                    self.pending.clear();
                    self.skip = self.hop - self.n_fft;
                }
            }
        }
    }

    /// Forgets buffered audio.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.skip = 0;
    }
}

/// One frame as [`FrameStream::push_frames`] hands it over.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// The `n_fft` input samples.
    pub samples: &'a [f32],
    /// The `n_features` feature values.
    pub features: &'a [f32],
    /// RMS in dB (see [`FrameExtractor::compute`]).
    pub rms_db: f32,
    /// The power spectrum, `n_fft / 2 + 1` bins ([`FrameExtractor::power`]).
    pub power: &'a [f32],
}

/// Streaming framing over audio that arrives in chunks of any size.
///
/// Uses `center = False` framing (frame `t` covers samples
/// `[t * hop, t * hop + n_fft)` of the stream since the last reset), so the
/// frames, and their features, are identical however the audio is chunked.
/// Holds at most `n_fft` samples; no allocation after construction.
#[derive(Debug)]
pub struct FrameStream {
    extractor: FrameExtractor,
    framer: Framer,
    out: Vec<f32>,
    emitted: u64,
}

impl FrameStream {
    /// Validates `cfg` and prepares an empty stream.
    pub fn new(cfg: &FeatureConfig) -> Result<Self, FeatureError> {
        let extractor = FrameExtractor::new(cfg)?;
        Ok(FrameStream {
            out: vec![0.0; extractor.n_features()],
            extractor,
            framer: Framer::new(cfg.n_fft, cfg.hop_length),
            emitted: 0,
        })
    }

    /// Values per frame passed to `on_frame`.
    pub fn n_features(&self) -> usize {
        self.extractor.n_features()
    }

    /// Appends `samples`; calls `on_frame(features, rms_db)` for every frame
    /// completed, in order.
    pub fn push(&mut self, samples: &[f32], mut on_frame: impl FnMut(&[f32], f32)) {
        self.push_frames(samples, |f| on_frame(f.features, f.rms_db));
    }

    /// [`FrameStream::push`] that hands over each frame's samples and power
    /// spectrum too, so that other measurements of the frame (the speech
    /// decision's voice-band level) need no FFT of their own.
    pub fn push_frames(&mut self, samples: &[f32], mut on_frame: impl FnMut(&Frame<'_>)) {
        let (extractor, out, emitted) = (&mut self.extractor, &mut self.out, &mut self.emitted);
        self.framer.push(samples, |frame| {
            let rms_db = extractor.compute(frame, out);
            *emitted += 1;
            on_frame(&Frame {
                samples: frame,
                features: out,
                rms_db,
                power: extractor.power(),
            });
        });
    }

    /// Forgets buffered audio and the frame count (after a flush or seek).
    pub fn reset(&mut self) {
        self.framer.reset();
        self.emitted = 0;
    }

    /// Frames emitted since construction or the last reset.
    pub fn frames_emitted(&self) -> u64 {
        self.emitted
    }
}

// ---------------------------------------------------------------------------
// Whole clips and model input
// ---------------------------------------------------------------------------

/// Features of a whole clip, frame-major.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureMatrix {
    /// Frames (`cfg.frames_in(samples.len())`).
    pub n_frames: usize,
    /// Values per frame.
    pub n_features: usize,
    /// Frame-major: `data[t * n_features + f]`.
    pub data: Vec<f32>,
    /// Per-frame RMS in dB (see [`FrameExtractor::compute`]).
    pub rms_db: Vec<f32>,
}

impl FeatureMatrix {
    /// Features of frame `t`.
    pub fn frame(&self, t: usize) -> &[f32] {
        &self.data[t * self.n_features..(t + 1) * self.n_features]
    }
}

/// A voice's baseline for [`WindowNormalization::SubtractStreamMean`]: per
/// feature row, the mean of the speech frames a stream has carried, blended
/// with the model's prior,
/// `(sum of speech frames + prior_frames * prior) / (speech frames + prior_frames)`.
/// A stream starts at the prior and moves to its own voice as speech comes
/// in, so the first seconds of a call are judged against the training voices
/// and the rest against the caller. The element keeps one per result stream;
/// the trainer builds the same from a speaker's other clips.
#[derive(Clone, Debug)]
pub struct StreamBaseline {
    sum: Vec<f64>,
    frames: f64,
    prior: Vec<f32>,
    prior_frames: f64,
}

impl StreamBaseline {
    /// An empty stream of `cfg`'s model (all prior). Without a prior (other
    /// normalisations) the prior is zero.
    pub fn new(cfg: &FeatureConfig) -> Self {
        let nf = cfg.n_features();
        let mut prior = cfg.stream_prior.clone();
        prior.resize(nf, 0.0);
        Self {
            sum: vec![0.0; nf],
            frames: 0.0,
            prior,
            prior_frames: f64::from(cfg.stream_prior_frames.max(0.0)),
        }
    }

    /// Adds one speech frame (`n_features` values).
    pub fn add_frame(&mut self, frame: &[f32]) {
        for (s, &x) in self.sum.iter_mut().zip(frame) {
            *s += f64::from(x);
        }
        self.frames += 1.0;
    }

    /// Adds `frames` speech frames whose per-row sums are `sum`.
    pub fn add_sums(&mut self, sum: &[f64], frames: f64) {
        for (s, &x) in self.sum.iter_mut().zip(sum) {
            *s += x;
        }
        self.frames += frames;
    }

    /// Speech frames heard so far.
    pub fn speech_frames(&self) -> f64 {
        self.frames
    }

    /// The baseline now, one value per feature row.
    pub fn current(&self, out: &mut [f32]) {
        let weight = self.frames + self.prior_frames;
        for ((o, &s), &p) in out.iter_mut().zip(&self.sum).zip(&self.prior) {
            *o = if weight > 0.0 {
                ((s + self.prior_frames * f64::from(p)) / weight) as f32
            } else {
                p
            };
        }
    }

    /// Forgets the stream's speech (a new voice): back to the prior.
    pub fn reset(&mut self) {
        self.sum.iter_mut().for_each(|s| *s = 0.0);
        self.frames = 0.0;
    }
}

/// Features of a whole clip (`center = False`; a clip shorter than `n_fft`
/// yields zero frames).
pub fn extract(cfg: &FeatureConfig, samples: &[f32]) -> Result<FeatureMatrix, FeatureError> {
    let mut stream = FrameStream::new(cfg)?;
    let n_frames = cfg.frames_in(samples.len());
    let n_features = stream.n_features();
    let mut data = Vec::with_capacity(n_frames * n_features);
    let mut rms = Vec::with_capacity(n_frames);
    stream.push(samples, |f, r| {
        data.extend_from_slice(f);
        rms.push(r);
    });
    debug_assert_eq!(rms.len(), n_frames);
    Ok(FeatureMatrix {
        n_frames,
        n_features,
        data,
        rms_db: rms,
    })
}

/// Turns `n_frames` frame-major frames (`frames[t * n_features + f]`) into
/// the model's channels-first input `out[f * n_frames + t]`, applying
/// `cfg.normalization`, then `cfg.mean` / `cfg.std`. The element and the
/// trainer both go through here, so the model always sees the same layout
/// and scaling.
///
/// # Panics
/// If `frames` or `out` is not `n_frames * cfg.n_features()` long (caller bug).
pub fn window_tensor(cfg: &FeatureConfig, frames: &[f32], n_frames: usize, out: &mut [f32]) {
    window_tensor_from(cfg, frames, n_frames, &cfg.stream_prior, out);
}

/// [`window_tensor`] for a window of a stream whose voice baseline is
/// `baseline` (from [`StreamBaseline::current`]; used only by
/// [`WindowNormalization::SubtractStreamMean`], where an empty slice means
/// the model's prior).
///
/// # Panics
/// If `frames` or `out` is not `n_frames * cfg.n_features()` long, or a
/// non-empty `baseline` is not `cfg.n_features()` long (caller bug).
pub fn window_tensor_from(
    cfg: &FeatureConfig,
    frames: &[f32],
    n_frames: usize,
    baseline: &[f32],
    out: &mut [f32],
) {
    window_tensor_masked(cfg, frames, n_frames, baseline, &[], out);
}

/// [`window_tensor_from`] that knows which of the window's frames are speech
/// (`speech[t]`, from the speech decision; used only by
/// [`WindowNormalization::SubtractSpeechMean`], where an empty or all-false
/// mask means every frame).
///
/// # Panics
/// As [`window_tensor_from`], or if a non-empty `speech` is not `n_frames`
/// long (caller bug).
pub fn window_tensor_masked(
    cfg: &FeatureConfig,
    frames: &[f32],
    n_frames: usize,
    baseline: &[f32],
    speech: &[bool],
    out: &mut [f32],
) {
    let nf = cfg.n_features();
    assert!(
        speech.is_empty() || speech.len() == n_frames,
        "speech mask must be empty or n_frames long"
    );
    let baseline = if baseline.is_empty() {
        &cfg.stream_prior
    } else {
        baseline
    };
    assert_eq!(
        frames.len(),
        nf * n_frames,
        "frames must be n_frames * n_features"
    );
    assert_eq!(
        out.len(),
        nf * n_frames,
        "out must be n_frames * n_features"
    );
    if n_frames == 0 {
        return;
    }
    // Counted only where it is used: the element hands every window's mask.
    let speech_frames = if cfg.normalization == WindowNormalization::SubtractSpeechMean {
        speech.iter().filter(|&&s| s).count()
    } else {
        0
    };
    let only_speech = speech_frames > 0;
    let gain_shift = match cfg.normalization {
        WindowNormalization::SubtractGain => window_level_shifts(cfg, frames, n_frames),
        _ => Vec::new(),
    };
    for (f, row) in out.chunks_exact_mut(n_frames).enumerate() {
        for (t, o) in row.iter_mut().enumerate() {
            *o = frames[t * nf + f];
        }
        match cfg.normalization {
            WindowNormalization::None => {}
            WindowNormalization::SubtractMean | WindowNormalization::SubtractSpeechMean => {
                let mean = if only_speech {
                    let sum: f64 = row
                        .iter()
                        .zip(speech)
                        .filter(|(_, s)| **s)
                        .map(|(&x, _)| f64::from(x))
                        .sum();
                    sum / speech_frames as f64
                } else {
                    row.iter().map(|&x| f64::from(x)).sum::<f64>() / n_frames as f64
                };
                let mean = mean as f32;
                row.iter_mut().for_each(|x| *x -= mean);
            }
            WindowNormalization::SubtractGain => {
                let shift = gain_shift[f];
                row.iter_mut().for_each(|x| *x -= shift);
            }
            WindowNormalization::SubtractStreamMean => {
                // A config that passed `validate` has a prior for every row.
                let level = baseline.get(f).copied().unwrap_or(0.0);
                row.iter_mut().for_each(|x| *x -= level);
            }
        }
        if let (Some(&m), Some(&s)) = (cfg.mean.get(f), cfg.std.get(f)) {
            let inv = 1.0 / s;
            row.iter_mut().for_each(|x| *x = (*x - m) * inv);
        }
    }
}

/// Per feature row, what a gain of the window's mean level adds to it: the
/// level itself on log-mel and RMS rows, `sqrt(n_mels)` times it on the
/// orthonormal MFCC c0 row, nothing on the other cepstra and the ZCR row.
fn window_level_shifts(cfg: &FeatureConfig, frames: &[f32], n_frames: usize) -> Vec<f32> {
    let nf = cfg.n_features();
    let mut shifts = vec![0.0f32; nf];
    let scale = (cfg.n_mels as f64).sqrt();
    let level = match cfg.kind {
        FeatureKind::LogMel => {
            let sum: f64 = frames
                .chunks_exact(nf)
                .flat_map(|fr| &fr[..cfg.n_mels])
                .map(|&x| f64::from(x))
                .sum();
            sum / (n_frames * cfg.n_mels) as f64
        }
        FeatureKind::Mfcc => {
            let sum: f64 = frames.chunks_exact(nf).map(|fr| f64::from(fr[0])).sum();
            sum / n_frames as f64 / scale
        }
    };
    match cfg.kind {
        FeatureKind::LogMel => shifts[..cfg.n_mels].fill(level as f32),
        FeatureKind::Mfcc => shifts[0] = (level * scale) as f32,
    }
    if cfg.append_rms {
        let main = match cfg.kind {
            FeatureKind::LogMel => cfg.n_mels,
            FeatureKind::Mfcc => cfg.n_mfcc,
        };
        shifts[main] = level as f32;
    }
    shifts
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/features_golden.json"
    ));

    fn splitmix64(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The signals of `scripts/golden_features.py`, same formulas.
    fn golden_signal(name: &str, n: usize) -> Vec<f32> {
        let sr = 16000.0;
        let dur = n as f64 / sr;
        let tau = 2.0 * std::f64::consts::PI;
        (0..n)
            .map(|i| {
                let t = i as f64 / sr;
                let v = match name {
                    "sine" => 0.5 * (tau * 1000.0 * t).sin(),
                    "chirp" => {
                        let (f0, f1) = (100.0, 7000.0);
                        0.5 * (tau * (f0 * t + (f1 - f0) / (2.0 * dur) * t * t)).sin()
                    }
                    "noise" => {
                        let u = (splitmix64(42 + i as u64) >> 11) as f64 / (1u64 << 53) as f64;
                        0.1 * (2.0 * u - 1.0)
                    }
                    "silence" => 0.0,
                    other => panic!("unknown golden signal {other}"),
                };
                v as f32
            })
            .collect()
    }

    fn sine(freq: f64, amp: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 16000.0).sin()) as f32)
            .collect()
    }

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let u = (splitmix64(seed + i as u64) >> 11) as f64 / (1u64 << 53) as f64;
                (0.2 * (2.0 * u - 1.0)) as f32
            })
            .collect()
    }

    fn json_f64s(v: &serde_json::Value) -> Vec<f64> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_f64().expect("number"))
            .collect()
    }

    #[test]
    fn matches_librosa_golden_values() {
        let g: serde_json::Value = serde_json::from_str(GOLDEN).expect("golden JSON parses");
        let cfg: FeatureConfig =
            serde_json::from_value(g["config"].clone()).expect("golden config parses");
        assert_eq!(cfg, FeatureConfig::default());
        let n_mfcc = g["n_mfcc"].as_u64().expect("n_mfcc") as usize;
        let n = g["n_samples"].as_u64().expect("n_samples") as usize;
        let frames: Vec<usize> = json_f64s(&g["frames"])
            .iter()
            .map(|&t| t as usize)
            .collect();

        let mel_cfg = FeatureConfig {
            append_rms: true,
            append_zcr: true,
            ..cfg.clone()
        };
        let mfcc_cfg = FeatureConfig {
            kind: FeatureKind::Mfcc,
            n_mfcc,
            ..cfg.clone()
        };
        let mut worst = [0.0f64; 4];
        for (name, sig) in g["signals"].as_object().expect("signals") {
            let y = golden_signal(name, n);
            for (a, b) in y.iter().zip(json_f64s(&sig["first_samples"])) {
                assert_eq!(f64::from(*a), b, "{name}: signal differs from the script's");
            }
            let mel = extract(&mel_cfg, &y).expect("extract");
            let mfcc = extract(&mfcc_cfg, &y).expect("extract");
            assert_eq!(
                mel.n_frames as u64,
                sig["n_frames"].as_u64().expect("n_frames")
            );
            for (i, &t) in frames.iter().enumerate() {
                let ours = mel.frame(t);
                let want = json_f64s(&sig["log_mel"][i]);
                for (b, (&o, &w)) in ours.iter().zip(&want).enumerate() {
                    let err = (f64::from(o) - w).abs();
                    // Measured: < 4e-6 dB everywhere, down to the −100 dB floor.
                    let tol = 1e-4;
                    assert!(err <= tol, "{name} frame {t} mel {b}: {o} vs librosa {w}");
                    worst[0] = worst[0].max(err);
                }
                for (c, (&o, w)) in mfcc
                    .frame(t)
                    .iter()
                    .zip(json_f64s(&sig["mfcc"][i]))
                    .enumerate()
                {
                    let err = (f64::from(o) - w).abs();
                    assert!(err <= 5e-4, "{name} frame {t} mfcc {c}: {o} vs librosa {w}");
                    worst[1] = worst[1].max(err);
                }
                let rms_want = sig["rms_db"][i].as_f64().expect("rms");
                let rms_err = (f64::from(ours[64]) - rms_want).abs();
                assert!(
                    rms_err <= 1e-4,
                    "{name} frame {t} rms: {} vs {rms_want}",
                    ours[64]
                );
                assert_eq!(mel.rms_db[t], ours[64]);
                worst[2] = worst[2].max(rms_err);
                let zcr_want = sig["zcr"][i].as_f64().expect("zcr");
                let zcr_err = (f64::from(ours[65]) - zcr_want).abs();
                assert!(
                    zcr_err <= 1e-6,
                    "{name} frame {t} zcr: {} vs {zcr_want}",
                    ours[65]
                );
                worst[3] = worst[3].max(zcr_err);
            }
        }
        eprintln!(
            "worst abs error vs librosa: log-mel {:.2e} dB, mfcc {:.2e}, rms {:.2e} dB, zcr {:.2e}",
            worst[0], worst[1], worst[2], worst[3]
        );
    }

    #[test]
    fn mel_scale_round_trips_and_matches_slaney() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
        for hz in [0.0, 20.0, 999.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
        }
    }

    #[test]
    fn each_row_centre_sits_at_its_own_row_position() {
        let cfg = FeatureConfig::default_model();
        let centres = cfg.mel_row_centres();
        assert_eq!(centres.len(), cfg.n_mels);
        for (i, &hz) in centres.iter().enumerate() {
            assert!(
                (cfg.mel_row_position(hz) - i as f64).abs() < 1e-9,
                "row {i}"
            );
        }
        assert!(centres.windows(2).all(|w| w[1] > w[0]));
        // Each centre is where its filter's weights peak.
        let bands = mel_filterbank(&cfg);
        let bin_hz = f64::from(cfg.sample_rate) / cfg.n_fft as f64;
        for (band, &hz) in bands.iter().zip(&centres).skip(8) {
            let peak = band
                .weights
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(k, _)| (band.start + k) as f64 * bin_hz)
                .expect("a non-empty band");
            assert!((peak - hz).abs() <= bin_hz, "{peak} vs {hz}");
        }
    }

    #[test]
    fn sine_peaks_in_the_band_that_contains_it() {
        let cfg = FeatureConfig::default();
        let m = extract(&cfg, &sine(1000.0, 0.5, 1600)).expect("extract");
        let frame = m.frame(3);
        let peak = (0..frame.len())
            .max_by(|&a, &b| frame[a].total_cmp(&frame[b]))
            .expect("non-empty");
        let bands = mel_filterbank(&cfg);
        let k = 1000 * 512 / 16000; // bin 32 holds exactly 1 kHz
        let band = &bands[peak];
        assert!(band.start <= k && k < band.start + band.weights.len());
        // No other band is within 3 dB of the peak but the neighbour sharing bin 32.
        let close = frame.iter().filter(|&&v| v > frame[peak] - 3.0).count();
        assert!(close <= 2, "{close} bands near the peak");
    }

    #[test]
    fn silence_sits_at_the_floor_and_everything_stays_finite() {
        let cfg = FeatureConfig {
            append_rms: true,
            append_zcr: true,
            ..FeatureConfig::default()
        };
        let m = extract(&cfg, &vec![0.0; 2000]).expect("extract");
        for t in 0..m.n_frames {
            let f = m.frame(t);
            assert!(f[..64].iter().all(|&v| v == -100.0));
            assert_eq!(f[64], -100.0);
            assert_eq!(f[65], 0.0);
            assert_eq!(m.rms_db[t], -100.0);
        }
        let mfcc = FeatureConfig {
            kind: FeatureKind::Mfcc,
            n_mfcc: 13,
            ..cfg.clone()
        };
        let mut bad = noise(2000, 7);
        bad[100] = f32::NAN;
        bad[700] = f32::INFINITY;
        bad[900] = f32::NEG_INFINITY;
        for c in [&mfcc, &FeatureConfig::default()] {
            for sig in [
                &bad,
                &vec![f32::NAN; 600],
                &vec![1.0; 600],
                &vec![f32::MAX; 600],
            ] {
                let m = extract(c, sig).expect("extract");
                assert!(m.data.iter().chain(&m.rms_db).all(|v| v.is_finite()));
            }
        }
        // Non-finite samples are exactly zeros.
        let mut zeroed = bad.clone();
        zeroed
            .iter_mut()
            .filter(|v| !v.is_finite())
            .for_each(|v| *v = 0.0);
        assert_eq!(extract(&cfg, &bad), extract(&cfg, &zeroed));
    }

    #[test]
    fn doubling_gain_adds_6_02_db_and_subtract_mean_removes_it() {
        let cfg = FeatureConfig::default();
        let x = noise(16000, 3);
        let x2: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
        let a = extract(&cfg, &x).expect("extract");
        let b = extract(&cfg, &x2).expect("extract");
        let gain = 20.0 * 2f32.log10();
        for (p, q) in a.data.iter().zip(&b.data) {
            assert!((q - p - gain).abs() < 1e-3, "{p} -> {q}");
        }
        for (p, q) in a.rms_db.iter().zip(&b.rms_db) {
            assert!((q - p - gain).abs() < 1e-3);
        }
        let norm = FeatureConfig {
            normalization: WindowNormalization::SubtractMean,
            ..cfg
        };
        let n = 50;
        let len = n * norm.n_features();
        let (mut ta, mut tb) = (vec![0.0; len], vec![0.0; len]);
        window_tensor(&norm, &a.data[..len], n, &mut ta);
        window_tensor(&norm, &b.data[..len], n, &mut tb);
        for (p, q) in ta.iter().zip(&tb) {
            assert!((p - q).abs() < 1e-3, "{p} vs {q}");
        }
    }

    /// The speech mean leaves pauses out: the speech frames come out the same
    /// whatever the floor between them, with mean 0 per row; without a mask,
    /// or with no speech frame, it is the window mean.
    #[test]
    fn the_speech_mean_ignores_the_pauses_floor() {
        let cfg = FeatureConfig {
            normalization: WindowNormalization::SubtractSpeechMean,
            mean: Vec::new(),
            std: Vec::new(),
            ..FeatureConfig::default_model()
        };
        let nf = cfg.n_features();
        let speech = [false, true, true, false, true, false];
        let n = speech.len();
        let frames = |floor: f32| -> Vec<f32> {
            (0..n * nf)
                .map(|i| {
                    let (t, f) = (i / nf, i % nf);
                    if speech[t] {
                        10.0 + f as f32 * 0.5 + (t * t) as f32
                    } else {
                        floor
                    }
                })
                .collect()
        };
        let normalised = |floor: f32, mask: &[bool], cfg: &FeatureConfig| {
            let mut out = vec![0f32; n * nf];
            window_tensor_masked(cfg, &frames(floor), n, &[], mask, &mut out);
            out
        };
        let (quiet, noisy) = (
            normalised(-80.0, &speech, &cfg),
            normalised(-30.0, &speech, &cfg),
        );
        for f in 0..nf {
            let row = |w: &[f32], t: usize| w[f * n + t];
            let spoken: Vec<usize> = (0..n).filter(|&t| speech[t]).collect();
            for &t in &spoken {
                assert!(
                    (row(&quiet, t) - row(&noisy, t)).abs() < 1e-4,
                    "row {f} frame {t}"
                );
            }
            let mean = spoken.iter().map(|&t| row(&quiet, t)).sum::<f32>() / spoken.len() as f32;
            assert!(mean.abs() < 1e-4, "row {f}: speech mean {mean}");
            assert!(
                row(&quiet, 0) < -50.0,
                "the pause stays far below the speech"
            );
        }
        let window_mean = FeatureConfig {
            normalization: WindowNormalization::SubtractMean,
            ..cfg.clone()
        };
        let plain = normalised(-80.0, &[], &window_mean);
        assert_eq!(normalised(-80.0, &[], &cfg), plain);
        assert_eq!(normalised(-80.0, &[false; 6], &cfg), plain);
        assert_ne!(quiet, plain);
    }

    /// Channels-first window of the first `n` frames of `x` under `norm`.
    fn normalised_window(cfg: &FeatureConfig, x: &[f32], n: usize) -> Vec<f32> {
        let m = extract(cfg, x).expect("extract");
        let len = n * cfg.n_features();
        let mut out = vec![0.0; len];
        window_tensor(cfg, &m.data[..len], n, &mut out);
        out
    }

    #[test]
    fn a_voice_baseline_moves_from_the_prior_to_the_voice() {
        let cfg = FeatureConfig {
            n_mels: 2,
            fmax: 4000.0,
            normalization: WindowNormalization::SubtractStreamMean,
            stream_prior: vec![1.0, 2.0],
            stream_prior_frames: 2.0,
            ..FeatureConfig::default()
        };
        let mut voice = StreamBaseline::new(&cfg);
        let mut now = [0f32; 2];
        voice.current(&mut now);
        assert_eq!(now, [1.0, 2.0], "no speech yet: the prior");
        voice.add_frame(&[3.0, 4.0]);
        voice.add_frame(&[3.0, 4.0]);
        voice.current(&mut now);
        // As much speech as prior weight: halfway.
        assert_eq!(now, [2.0, 3.0]);
        voice.add_sums(&[30.0, 40.0], 10.0);
        voice.current(&mut now);
        assert!((now[0] - 38.0 / 14.0).abs() < 1e-6 && (now[1] - 52.0 / 14.0).abs() < 1e-6);
        assert_eq!(voice.speech_frames(), 12.0);
        voice.reset();
        voice.current(&mut now);
        assert_eq!(now, [1.0, 2.0], "a new voice starts at the prior again");
    }

    #[test]
    fn stream_normalisation_removes_the_voice_and_keeps_the_moment() {
        let base = FeatureConfig {
            append_rms: true,
            ..FeatureConfig::default()
        };
        let n = 40;
        let rows = base.n_features();
        let plain = FeatureConfig {
            normalization: WindowNormalization::None,
            ..base.clone()
        };
        let stream = FeatureConfig {
            normalization: WindowNormalization::SubtractStreamMean,
            stream_prior: vec![-40.0; rows],
            stream_prior_frames: 100.0,
            ..base.clone()
        };
        stream.validate().unwrap();
        let row_mean = |w: &[f32], f: usize| w[f * n..(f + 1) * n].iter().sum::<f32>() / n as f32;
        let loud = noise(16000, 5);
        let frames = |x: &[f32]| extract(&base, x).unwrap().data[..n * rows].to_vec();
        // The voice's baseline is its own quieter speech (12 dB down).
        let quiet: Vec<f32> = loud.iter().map(|v| v * 0.25).collect();
        let voice: Vec<f32> = {
            let f = frames(&quiet);
            (0..rows)
                .map(|r| f.iter().skip(r).step_by(rows).sum::<f32>() / n as f32)
                .collect()
        };
        let mut out = vec![0f32; n * rows];
        window_tensor_from(&stream, &frames(&loud), n, &voice, &mut out);
        // A louder moment than the voice's usual stays +12 dB on every level
        // row (SubtractMean would make it 0: the arousal cue).
        let gain = 20.0 * 4f32.log10();
        for f in 0..rows {
            assert!((row_mean(&out, f) - gain).abs() < 1e-2, "row {f}");
        }
        // A line 20 dB hotter moves window and baseline alike: nothing changes.
        let hot: Vec<f32> = loud.iter().map(|v| v * 10.0).collect();
        let hot_voice: Vec<f32> = voice.iter().map(|v| v + 20.0).collect();
        let mut hot_out = vec![0f32; n * rows];
        window_tensor_from(&stream, &frames(&hot), n, &hot_voice, &mut hot_out);
        for (p, q) in out.iter().zip(&hot_out) {
            assert!((p - q).abs() < 1e-2, "{p} vs {q}");
        }
        // No baseline given: the prior.
        let mut prior_out = vec![0f32; n * rows];
        window_tensor(&stream, &frames(&loud), n, &mut prior_out);
        let mut raw = vec![0f32; n * rows];
        window_tensor(&plain, &frames(&loud), n, &mut raw);
        for (p, q) in prior_out.iter().zip(&raw) {
            assert!((p - (q + 40.0)).abs() < 1e-3);
        }
    }

    #[test]
    fn configs_without_a_voice_baseline_serialise_as_before() {
        let json = serde_json::to_string(&FeatureConfig::default()).unwrap();
        assert!(!json.contains("stream_prior"), "{json}");
        let stream = FeatureConfig {
            normalization: WindowNormalization::SubtractStreamMean,
            stream_prior: vec![-50.0; 64],
            stream_prior_frames: 50.0,
            ..FeatureConfig::default()
        };
        let json = serde_json::to_string(&stream).unwrap();
        assert!(json.contains("\"stream_prior_frames\":50.0"), "{json}");
        assert_eq!(
            serde_json::from_str::<FeatureConfig>(&json).unwrap(),
            stream
        );
    }

    #[test]
    fn stream_normalisation_needs_a_usable_prior() {
        let ok = FeatureConfig {
            normalization: WindowNormalization::SubtractStreamMean,
            stream_prior: vec![-50.0; 64],
            stream_prior_frames: 200.0,
            ..FeatureConfig::default()
        };
        ok.validate().unwrap();
        for (bad, needle) in [
            (
                FeatureConfig {
                    stream_prior: Vec::new(),
                    ..ok.clone()
                },
                "64 values",
            ),
            (
                FeatureConfig {
                    stream_prior: vec![f32::NAN; 64],
                    ..ok.clone()
                },
                "finite",
            ),
            (
                FeatureConfig {
                    stream_prior_frames: 0.0,
                    ..ok.clone()
                },
                "stream_prior_frames",
            ),
            (
                FeatureConfig {
                    stream_prior_frames: f32::INFINITY,
                    ..ok.clone()
                },
                "stream_prior_frames",
            ),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(
                err.contains("subtract_stream_mean") && err.contains(needle),
                "{err}"
            );
        }
    }

    #[test]
    fn each_normalisation_on_a_gain_step_and_a_tilt() {
        // Bright noise (white) against dark noise (a 1 kHz sine plus quiet
        // white noise): the tilt differs, and the dark one is 12 dB lower.
        let base = FeatureConfig {
            append_rms: true,
            ..FeatureConfig::default()
        };
        let n = 40;
        let white = noise(16000, 5);
        let quiet: Vec<f32> = white.iter().map(|v| v * 0.25).collect();
        let gain = 20.0 * 4f32.log10();
        let rows = base.n_features();
        let row_mean = |w: &[f32], f: usize| w[f * n..(f + 1) * n].iter().sum::<f32>() / n as f32;

        // None: the gain reaches every level row in full.
        let none = FeatureConfig {
            normalization: WindowNormalization::None,
            ..base.clone()
        };
        let (a, b) = (
            normalised_window(&none, &white, n),
            normalised_window(&none, &quiet, n),
        );
        for f in 0..rows {
            let d = row_mean(&a, f) - row_mean(&b, f);
            assert!((d - gain).abs() < 1e-2, "row {f}: {d} dB, want {gain}");
        }

        // SubtractMean: every row of every window has mean 0 (tilt gone too).
        let sub = FeatureConfig {
            normalization: WindowNormalization::SubtractMean,
            ..base.clone()
        };
        for w in [
            normalised_window(&sub, &white, n),
            normalised_window(&sub, &sine(1000.0, 0.5, 16000), n),
        ] {
            for f in 0..rows {
                assert!(row_mean(&w, f).abs() < 1e-3, "row {f}");
            }
        }

        // SubtractGain: the gain goes, the spectral shape stays.
        let gain_only = FeatureConfig {
            normalization: WindowNormalization::SubtractGain,
            ..base.clone()
        };
        let (a, b) = (
            normalised_window(&gain_only, &white, n),
            normalised_window(&gain_only, &quiet, n),
        );
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-2, "{p} vs {q}");
        }
        // The mean over bands and frames is 0, but the sine's band stands
        // out above the others by what it did before normalisation.
        let tone = sine(1000.0, 0.5, 16000);
        let raw = normalised_window(&none, &tone, n);
        let w = normalised_window(&gain_only, &tone, n);
        let mel_mean: f32 = (0..base.n_mels).map(|f| row_mean(&w, f)).sum::<f32>() / 64.0;
        assert!(mel_mean.abs() < 1e-3, "{mel_mean}");
        let peak = (0..base.n_mels)
            .max_by(|&i, &j| row_mean(&raw, i).total_cmp(&row_mean(&raw, j)))
            .unwrap();
        let (low_raw, low) = (row_mean(&raw, 0), row_mean(&w, 0));
        let contrast_raw = row_mean(&raw, peak) - low_raw;
        let contrast = row_mean(&w, peak) - low;
        assert!(
            contrast_raw > 30.0,
            "the tone stands out: {contrast_raw} dB"
        );
        assert!((contrast - contrast_raw).abs() < 1e-2, "tilt kept");
        // The RMS row moves by the same level as the bands.
        let shift = row_mean(&raw, 0) - row_mean(&w, 0);
        assert!((row_mean(&raw, 64) - row_mean(&w, 64) - shift).abs() < 1e-3);

        // MFCC: only c0 (and the RMS row) carry the gain.
        let mfcc = FeatureConfig {
            kind: FeatureKind::Mfcc,
            n_mfcc: 13,
            normalization: WindowNormalization::SubtractGain,
            ..base.clone()
        };
        let (a, b) = (
            normalised_window(&mfcc, &white, n),
            normalised_window(&mfcc, &quiet, n),
        );
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-2, "mfcc: {p} vs {q}");
        }
    }

    #[test]
    fn normalisation_defaults_to_none_for_configs_without_it() {
        let mut v = serde_json::to_value(FeatureConfig::default()).expect("json");
        v.as_object_mut().expect("object").remove("normalization");
        let cfg: FeatureConfig = serde_json::from_value(v).expect("parse");
        assert_eq!(cfg.normalization, WindowNormalization::None);
        let gain: WindowNormalization = serde_json::from_str("\"subtract_gain\"").expect("parse");
        assert_eq!(gain, WindowNormalization::SubtractGain);
    }

    #[test]
    fn frame_stream_is_chunking_invariant() {
        for (hop, n_fft, win) in [(160, 512, 400), (512, 512, 512), (700, 512, 300)] {
            let cfg = FeatureConfig {
                hop_length: hop,
                n_fft,
                win_length: win,
                append_rms: true,
                append_zcr: true,
                ..FeatureConfig::default()
            };
            let x = noise(5000, 11);
            let whole = extract(&cfg, &x).expect("extract");
            assert_eq!(whole.n_frames, cfg.frames_in(x.len()));

            let mut stream = FrameStream::new(&cfg).expect("stream");
            let mut one = Vec::new();
            for s in x.chunks(1) {
                stream.push(s, |f, _| one.extend_from_slice(f));
            }
            assert_eq!(one, whole.data);
            assert_eq!(stream.frames_emitted(), whole.n_frames as u64);

            stream.reset();
            assert_eq!(stream.frames_emitted(), 0);
            let mut odd = Vec::new();
            let mut rest = &x[..];
            for size in [0, 1, 7, 511, 513, 1000].iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (c, r) = rest.split_at((*size).min(rest.len()));
                stream.push(c, |f, _| odd.extend_from_slice(f));
                rest = r;
            }
            assert_eq!(odd, whole.data);
        }
    }

    #[test]
    fn frames_in_and_frame_rate() {
        let cfg = FeatureConfig::default();
        assert_eq!(cfg.frames_in(0), 0);
        assert_eq!(cfg.frames_in(511), 0);
        assert_eq!(cfg.frames_in(512), 1);
        assert_eq!(cfg.frames_in(671), 1);
        assert_eq!(cfg.frames_in(672), 2);
        assert_eq!(cfg.frames_in(16000), 97);
        assert_eq!(cfg.frame_rate(), 100.0);
        assert_eq!(extract(&cfg, &[0.1; 100]).expect("extract").n_frames, 0);
    }

    #[test]
    fn window_tensor_is_channels_first_and_standardised() {
        let cfg = FeatureConfig {
            n_mels: 2,
            append_rms: true,
            ..FeatureConfig::default()
        };
        assert_eq!(cfg.n_features(), 3);
        // 4 frames x 3 features, value = 10 t + f.
        let frames: Vec<f32> = (0..4)
            .flat_map(|t| (0..3).map(move |f| (10 * t + f) as f32))
            .collect();
        let mut out = vec![0.0; 12];
        window_tensor(&cfg, &frames, 4, &mut out);
        assert_eq!(
            out,
            [0., 10., 20., 30., 1., 11., 21., 31., 2., 12., 22., 32.]
        );

        let std_cfg = FeatureConfig {
            mean: vec![15.0, 0.0, 2.0],
            std: vec![5.0, 1.0, 0.5],
            ..cfg.clone()
        };
        std_cfg.validate().expect("valid");
        window_tensor(&std_cfg, &frames, 4, &mut out);
        assert_eq!(
            out,
            [-3., -1., 1., 3., 1., 11., 21., 31., 0., 20., 40., 60.]
        );

        let both = FeatureConfig {
            normalization: WindowNormalization::SubtractMean,
            ..std_cfg
        };
        window_tensor(&both, &frames, 4, &mut out);
        // Row means are 15, 16, 17; then (x - mean) / std.
        assert_eq!(
            out,
            [-6., -4., -2., 0., -15., -5., 5., 15., -34., -14., 6., 26.]
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let ok = FeatureConfig::default();
        ok.validate().expect("default is valid");
        let cases: Vec<(FeatureConfig, FeatureError)> = vec![
            (
                FeatureConfig {
                    n_fft: 500,
                    ..ok.clone()
                },
                FeatureError::FftNotPowerOfTwo { n_fft: 500 },
            ),
            (
                FeatureConfig {
                    n_fft: 256,
                    ..ok.clone()
                },
                FeatureError::WindowLongerThanFft {
                    win_length: 400,
                    n_fft: 256,
                },
            ),
            (
                FeatureConfig {
                    hop_length: 0,
                    ..ok.clone()
                },
                FeatureError::Zero {
                    field: "hop_length",
                },
            ),
            (
                FeatureConfig {
                    sample_rate: 0,
                    ..ok.clone()
                },
                FeatureError::Zero {
                    field: "sample_rate",
                },
            ),
            (
                FeatureConfig {
                    fmax: 9000.0,
                    ..ok.clone()
                },
                FeatureError::FrequencyRange {
                    fmin: 20.0,
                    fmax: 9000.0,
                    nyquist: 8000.0,
                },
            ),
            (
                FeatureConfig {
                    fmin: 4000.0,
                    fmax: 3000.0,
                    ..ok.clone()
                },
                FeatureError::FrequencyRange {
                    fmin: 4000.0,
                    fmax: 3000.0,
                    nyquist: 8000.0,
                },
            ),
            (
                FeatureConfig {
                    kind: FeatureKind::Mfcc,
                    n_mfcc: 0,
                    ..ok.clone()
                },
                FeatureError::MfccCount {
                    n_mfcc: 0,
                    n_mels: 64,
                },
            ),
            (
                FeatureConfig {
                    kind: FeatureKind::Mfcc,
                    n_mfcc: 65,
                    ..ok.clone()
                },
                FeatureError::MfccCount {
                    n_mfcc: 65,
                    n_mels: 64,
                },
            ),
            (
                FeatureConfig {
                    mean: vec![0.0; 3],
                    std: vec![1.0; 3],
                    ..ok.clone()
                },
                FeatureError::StatsLength {
                    field: "mean",
                    len: 3,
                    expected: 64,
                },
            ),
            (
                FeatureConfig {
                    mean: vec![0.0; 64],
                    ..ok.clone()
                },
                FeatureError::StatsLength {
                    field: "std",
                    len: 0,
                    expected: 64,
                },
            ),
            (
                FeatureConfig {
                    mean: vec![0.0; 64],
                    std: {
                        let mut s = vec![1.0; 64];
                        s[5] = 0.0;
                        s
                    },
                    ..ok.clone()
                },
                FeatureError::BadStat {
                    field: "std",
                    index: 5,
                    value: 0.0,
                },
            ),
            (
                FeatureConfig {
                    n_mels: 256,
                    ..ok.clone()
                },
                FeatureError::EmptyMelBand {
                    band: 1,
                    n_mels: 256,
                    n_fft: 512,
                },
            ),
        ];
        for (cfg, want) in cases {
            let got = cfg.validate().expect_err("invalid config accepted");
            assert_eq!(got, want);
            assert!(!got.to_string().is_empty());
            assert!(FrameStream::new(&cfg).is_err());
        }
        let msg = FeatureConfig { n_fft: 256, ..ok }
            .validate()
            .expect_err("invalid")
            .to_string();
        assert!(
            msg.contains("win_length = 400") && msg.contains("n_fft = 256"),
            "{msg}"
        );
    }

    #[test]
    fn config_serde_round_trip_and_defaults() {
        let cfg = FeatureConfig {
            kind: FeatureKind::Mfcc,
            n_mfcc: 20,
            append_rms: true,
            append_zcr: true,
            normalization: WindowNormalization::SubtractMean,
            mean: vec![0.5; 22],
            std: vec![2.0; 22],
            ..FeatureConfig::default()
        };
        let json = serde_json::to_string(&cfg).expect("serialise");
        assert!(
            json.contains("\"kind\":\"mfcc\"") && json.contains("\"subtract_mean\""),
            "{json}"
        );
        let back: FeatureConfig = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, cfg);

        let minimal = r#"{"kind":"log_mel","sample_rate":16000,"n_fft":512,"win_length":400,
            "hop_length":160,"n_mels":64,"fmin":20.0,"fmax":8000.0}"#;
        let parsed: FeatureConfig = serde_json::from_str(minimal).expect("minimal parses");
        assert_eq!(parsed, FeatureConfig::default());
        let unknown = minimal.replace("\"n_mels\"", "\"n_melz\":1,\"n_mels\"");
        assert!(serde_json::from_str::<FeatureConfig>(&unknown).is_err());
        assert!(serde_json::from_str::<FeatureConfig>(&minimal.replace("log_mel", "cqt")).is_err());
    }

    #[test]
    fn power_db_matches_log10() {
        let mut worst = 0.0f64;
        // Every octave from below the floor to far above any real power, densely.
        let mut x = 1e-12f32;
        while x < 1e12 {
            let want = 10.0 * f64::from(x).max(1e-10).log10();
            let err = (f64::from(power_db(x)) - want).abs();
            worst = worst.max(err);
            x *= 1.000_7;
        }
        assert!(worst < 1e-5, "worst error {worst} dB");
        assert_eq!(power_db(0.0), -100.0);
        assert_eq!(power_db(1e-10), -100.0);
        assert_eq!(power_db(1.0), 0.0);
        assert!((power_db(f32::MAX) - 10.0 * f32::MAX.log10()).abs() < 1e-4);
    }

    #[test]
    fn zero_crossing_rate_definition() {
        // + + - - + : 2 crossings over 5 samples; tiny values count as zero (positive).
        assert_eq!(zero_crossing_rate(&[1.0, 0.5, -0.5, -1.0, 1.0]), 2.0 / 5.0);
        assert_eq!(zero_crossing_rate(&[0.0, -1e-12, 1e-12, -0.0]), 0.0);
        assert_eq!(zero_crossing_rate(&[-1.0, 0.0, -1.0]), 2.0 / 3.0);
    }

    /// The trainer's frames (512 samples every 20 ms at 16 kHz) with pitch rows.
    fn pitch_config() -> FeatureConfig {
        FeatureConfig {
            win_length: 512,
            hop_length: 320,
            append_rms: true,
            append_pitch: true,
            ..FeatureConfig::default()
        }
    }

    /// Pitch and harmonicity rows of one frame of `x` (n_fft samples).
    fn pitch_rows(x: &[f32]) -> (f32, f32) {
        let cfg = pitch_config();
        let mut fx = FrameExtractor::new(&cfg).expect("valid");
        let mut out = vec![0.0; cfg.n_features()];
        fx.compute(x, &mut out);
        let n = out.len();
        (out[n - 2], out[n - 1])
    }

    /// A voice-like harmonic series: harmonics to 4 kHz falling 6 dB an octave.
    fn harmonic(f0: f32, amp: f32) -> Vec<f32> {
        (0..512)
            .map(|i| {
                let t = i as f32 / 16000.0;
                let mut v = 0.0;
                let mut h = 1;
                while h as f32 * f0 < 4000.0 {
                    v += (std::f32::consts::TAU * h as f32 * f0 * t + h as f32).sin() / h as f32;
                    h += 1;
                }
                amp * v
            })
            .collect()
    }

    #[test]
    fn pitch_rows_find_the_fundamental_of_voices_high_and_low() {
        for f0 in [85.0f32, 120.0, 150.0, 210.0, 290.0, 380.0] {
            let (pitch, harmonicity) = pitch_rows(&harmonic(f0, 0.1));
            let want = 12.0 * (f0 / 100.0).log2();
            // The grid is a quarter tone; no octave errors.
            assert!(
                (pitch - want).abs() <= 0.6,
                "{f0} Hz: {pitch} semitones, want {want}"
            );
            assert!(
                harmonicity > PITCH_FULLY_VOICED.ln(),
                "{f0} Hz: {harmonicity}"
            );
        }
    }

    #[test]
    fn pitch_rows_ignore_level_and_stay_quiet_for_noise_and_silence() {
        let loud = pitch_rows(&harmonic(180.0, 0.3));
        let quiet = pitch_rows(&harmonic(180.0, 0.003));
        assert!((loud.0 - quiet.0).abs() < 1e-3 && (loud.1 - quiet.1).abs() < 1e-3);

        let mut state = 7u64;
        let noise: Vec<f32> = (0..512)
            .map(|_| {
                state = splitmix64(state);
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let (pitch, harmonicity) = pitch_rows(&noise);
        assert!(
            harmonicity < 0.5 * PITCH_FULLY_VOICED.ln(),
            "noise: {harmonicity}"
        );
        assert!(pitch.abs() < 0.5 * loud.0.abs(), "noise: {pitch} semitones");

        assert_eq!(pitch_rows(&[0.0; 512]), (0.0, 0.0));
        let mut broken = harmonic(180.0, 0.1);
        broken[100] = f32::NAN;
        broken[200] = f32::INFINITY;
        let (p, h) = pitch_rows(&broken);
        assert!(p.is_finite() && h.is_finite() && (p - loud.0).abs() < 0.6);
    }

    #[test]
    fn pitch_rows_need_fine_enough_bins_and_old_configs_read_without_them() {
        let coarse = FeatureConfig {
            n_fft: 256,
            win_length: 256,
            ..pitch_config()
        };
        let err = coarse.validate().expect_err("62.5 Hz bins");
        assert!(matches!(err, FeatureError::PitchResolution { .. }), "{err}");
        assert!(err.to_string().contains("raise n_fft"), "{err}");
        assert_eq!(pitch_config().n_features(), 64 + 1 + 2);
        // Off, the field is not written (older elements refuse unknown
        // fields) and a config without it reads as off.
        let off = serde_json::to_string(&FeatureConfig::default()).expect("json");
        assert!(!off.contains("append_pitch"), "{off}");
        let on = serde_json::to_string(&pitch_config()).expect("json");
        let back: FeatureConfig = serde_json::from_str(&on).expect("read back");
        assert!(back.append_pitch);
    }
}
