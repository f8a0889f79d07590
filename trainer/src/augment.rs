//! Training-data augmentation on mono f32 audio.
//!
//! Pure functions: the same input, parameters and RNG state give the same
//! output, so an augmented epoch is reproducible from the trainer's seed. They
//! are applied to training clips only, after the split.

use rand::Rng;
use seremotion_core::features::{FeatureConfig, FeatureKind};

/// Highest peak gain changes may produce: just under full scale, so a later
/// conversion to 16-bit cannot wrap.
const PEAK_CEILING: f32 = 32767.0 / 32768.0;

// ---------------------------------------------------------------------------
// Noise

/// Spectral colour of injected noise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseColor {
    White,
    /// −3 dB/octave, closer to room and fan noise than white.
    Pink,
}

/// Adds white Gaussian noise at `snr_db` relative to the signal's active-speech
/// power (silent stretches do not dilute the reference, so a clip with long
/// pauses gets as much noise as a dense one of the same loudness).
pub fn add_noise_snr<R: Rng + ?Sized>(x: &[f32], snr_db: f32, rng: &mut R) -> Vec<f32> {
    add_colored_noise_snr(x, snr_db, NoiseColor::White, rng)
}

pub fn add_colored_noise_snr<R: Rng + ?Sized>(
    x: &[f32],
    snr_db: f32,
    color: NoiseColor,
    rng: &mut R,
) -> Vec<f32> {
    let Some(signal_power) = active_power(x) else {
        // Nothing to be relative to: an all-silent clip stays silent.
        return x.to_vec();
    };
    let mut noise: Vec<f64> = (0..x.len()).map(|_| gaussian(rng)).collect();
    if color == NoiseColor::Pink {
        pinken(&mut noise);
    }
    let noise_power = noise.iter().map(|n| n * n).sum::<f64>() / noise.len() as f64;
    if noise_power <= 0.0 {
        return x.to_vec();
    }
    let scale = (signal_power / noise_power / 10f64.powf(snr_db as f64 / 10.0)).sqrt();
    x.iter()
        .zip(&noise)
        .map(|(&s, &n)| (s as f64 + n * scale).clamp(-1.0, 1.0) as f32)
        .collect()
}

/// Frame length for the active-speech measure: 20 ms at 16 kHz.
const ACTIVITY_FRAME: usize = 320;
/// Frames more than this far below the loudest frame count as pauses.
const ACTIVITY_RANGE_DB: f64 = 35.0;

/// Mean power of the frames that hold speech; `None` for silence.
pub fn active_power(x: &[f32]) -> Option<f64> {
    let powers: Vec<f64> = x
        .chunks(ACTIVITY_FRAME)
        .map(|f| f.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / f.len() as f64)
        .collect();
    let loudest = powers.iter().copied().fold(0.0, f64::max);
    let threshold = (loudest * 10f64.powf(-ACTIVITY_RANGE_DB / 10.0)).max(1e-12);
    let active: Vec<f64> = powers.into_iter().filter(|&p| p >= threshold).collect();
    if active.is_empty() || loudest < 1e-12 {
        None
    } else {
        Some(active.iter().sum::<f64>() / active.len() as f64)
    }
}

/// Standard normal sample (Box–Muller), to avoid a distributions dependency.
fn gaussian<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln stays finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// White to pink in place: Paul Kellet's refined filter (within 0.05 dB of
/// −3 dB/oct above 9 Hz at 44.1 kHz; good enough as a colour at 16 kHz).
fn pinken(noise: &mut [f64]) {
    let mut b = [0.0f64; 7];
    for n in noise.iter_mut() {
        let w = *n;
        b[0] = 0.99886 * b[0] + w * 0.0555179;
        b[1] = 0.99332 * b[1] + w * 0.0750759;
        b[2] = 0.96900 * b[2] + w * 0.1538520;
        b[3] = 0.86650 * b[3] + w * 0.3104856;
        b[4] = 0.55000 * b[4] + w * 0.5329522;
        b[5] = -0.7616 * b[5] - w * 0.0168980;
        *n = b[0] + b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + w * 0.5362;
        b[6] = w * 0.115926;
    }
}

// ---------------------------------------------------------------------------
// Time and pitch

/// WSOLA frame: 32 ms at 16 kHz, long enough to hold two periods of a low voice.
const WSOLA_FRAME: usize = 512;
const WSOLA_HOP: usize = WSOLA_FRAME / 2;
/// How far a frame may move to line up with the previous one's waveform.
const WSOLA_TOLERANCE: usize = WSOLA_FRAME / 4;

/// Changes duration by `1 / rate` (rate > 1 is faster) and keeps the pitch,
/// by WSOLA: Hann frames at a fixed output hop, each taken from near its
/// nominal input position where it best continues the previous frame's
/// waveform, so periods are not cut mid-cycle.
pub fn time_stretch(x: &[f32], rate: f32) -> Vec<f32> {
    if x.is_empty() || !rate.is_finite() || rate <= 0.0 || (rate - 1.0).abs() < 1e-6 {
        return x.to_vec();
    }
    let (n, hop, tol) = (WSOLA_FRAME, WSOLA_HOP, WSOLA_TOLERANCE);
    let rate = rate as f64;
    let out_len = (x.len() as f64 / rate).round() as usize;
    let frames = out_len / hop + 2;

    // Zero padding so every candidate frame lies inside the buffer: frame k
    // starts at xp[round(k * hop * rate) + delta + tol], delta in [-tol, tol].
    let pre = n / 2 + tol;
    let last_start = ((frames * hop) as f64 * rate).ceil() as usize + 2 * tol + hop;
    let mut xp = vec![0.0f32; pre];
    xp.extend_from_slice(x);
    xp.resize((last_start + n).max(xp.len()) + 1, 0.0);

    let window = hann(n);
    let mut out = vec![0.0f32; frames * hop + n];
    let mut norm = vec![0.0f32; out.len()];
    let mut prev_start = tol;
    for k in 0..frames {
        let nominal = ((k * hop) as f64 * rate).round() as usize + tol;
        let start = if k == 0 {
            nominal
        } else {
            let natural = &xp[prev_start + hop..prev_start + hop + n];
            best_alignment(&xp, natural, nominal - tol, nominal + tol)
        };
        let o = k * hop;
        for j in 0..n {
            out[o + j] += xp[start + j] * window[j];
            norm[o + j] += window[j];
        }
        prev_start = start;
    }
    // Output time 0 sits half a frame into the buffer (frame 0 is centred on it).
    (0..out_len)
        .map(|t| {
            let w = norm[t + n / 2];
            if w > 1e-3 { out[t + n / 2] / w } else { 0.0 }
        })
        .collect()
}

/// Start in `lo..=hi` whose frame best correlates with `target`: a coarse
/// search on every other lag and sample (a quarter of the work), then the
/// exact optimum among the neighbours of the coarse winner.
fn best_alignment(xp: &[f32], target: &[f32], lo: usize, hi: usize) -> usize {
    let corr = |s: usize, step: usize| -> f32 {
        xp[s..s + target.len()]
            .iter()
            .step_by(step)
            .zip(target.iter().step_by(step))
            .map(|(a, b)| a * b)
            .sum()
    };
    let argmax = |candidates: &mut dyn Iterator<Item = usize>, step: usize| {
        candidates.fold((f32::NEG_INFINITY, lo), |best, s| {
            let c = corr(s, step);
            if c > best.0 { (c, s) } else { best }
        })
    };
    let (_, coarse) = argmax(&mut (lo..=hi).step_by(2), 2);
    argmax(
        &mut (coarse.saturating_sub(1).max(lo)..=(coarse + 1).min(hi)),
        1,
    )
    .1
}

/// Periodic Hann: overlap-adds to exactly 1 at 50% overlap.
fn hann(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos() as f32)
        .collect()
}

/// Moves the signal by `shift_samples` (positive = later), filling with zeros
/// and keeping the length.
pub fn time_shift(x: &[f32], shift_samples: isize) -> Vec<f32> {
    let n = x.len();
    let mut out = vec![0.0; n];
    let k = shift_samples.unsigned_abs().min(n);
    if shift_samples >= 0 {
        out[k..].copy_from_slice(&x[..n - k]);
    } else {
        out[..n - k].copy_from_slice(&x[k..]);
    }
    out
}

/// Shifts pitch by `semitones` and keeps the length: stretch the duration by
/// the pitch factor, then resample back to the original length.
pub fn pitch_shift(x: &[f32], sample_rate: u32, semitones: f32) -> Vec<f32> {
    if x.is_empty() || sample_rate == 0 || !semitones.is_finite() || semitones.abs() < 1e-4 {
        return x.to_vec();
    }
    let factor = 2f64.powf(semitones as f64 / 12.0);
    let stretched = time_stretch(x, (1.0 / factor) as f32);
    // Playing the stretched signal at rate*factor raises its pitch by `factor`
    // and restores the duration; resampling from that rate does exactly this.
    let from = (sample_rate as f64 * factor).round() as u32;
    let mut y = resample(&stretched, from, sample_rate);
    y.resize(x.len(), 0.0);
    y
}

/// The shared resampler (so augmentation hears what the element hears); linear
/// interpolation only if it refuses a rate pair, which valid rates never cause.
fn resample(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to {
        return x.to_vec();
    }
    seremotion_core::resample::resample(x, from, to).unwrap_or_else(|_| {
        let ratio = from as f64 / to as f64;
        let len = (x.len() as f64 / ratio).round() as usize;
        (0..len)
            .map(|i| {
                let t = i as f64 * ratio;
                let j = t.floor() as usize;
                let frac = (t - j as f64) as f32;
                let a = x.get(j).copied().unwrap_or(0.0);
                let b = x.get(j + 1).copied().unwrap_or(a);
                a + (b - a) * frac
            })
            .collect()
    })
}

// ---------------------------------------------------------------------------
// Telephone channel

const PHONE_RATE: u32 = 8000;

/// G.711 companding law.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// North America and Japan.
    MuLaw,
    /// Europe and most of the rest of the world.
    ALaw,
}

/// One narrowband line: its codec and the edges of its pass band.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhoneLine {
    pub codec: Codec,
    pub low_hz: f32,
    pub high_hz: f32,
}

impl PhoneLine {
    /// The textbook line the telephone figures are measured through:
    /// mu-law, 300–3400 Hz.
    pub const STANDARD: PhoneLine = PhoneLine {
        codec: Codec::MuLaw,
        low_hz: 300.0,
        high_hz: 3400.0,
    };

    /// A line as calls meet them: either law, the lower edge anywhere from
    /// 200 to 400 Hz and the upper from 3000 to 3700 Hz (handsets, gateways
    /// and codecs place them differently).
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let codec = if chance(rng, 0.5) {
            Codec::ALaw
        } else {
            Codec::MuLaw
        };
        PhoneLine {
            codec,
            low_hz: uniform(rng, (200.0, 400.0)),
            high_hz: uniform(rng, (3000.0, 3700.0)),
        }
    }
}

/// A narrowband call through [`PhoneLine::STANDARD`].
pub fn telephone(x: &[f32], sample_rate: u32) -> Vec<f32> {
    telephone_line(x, sample_rate, PhoneLine::STANDARD)
}

/// A narrowband call: down to 8 kHz, the line's pass band, G.711 encode and
/// decode, and back to `sample_rate`. The length is kept.
pub fn telephone_line(x: &[f32], sample_rate: u32, line: PhoneLine) -> Vec<f32> {
    if x.is_empty() || sample_rate == 0 {
        return x.to_vec();
    }
    let mut narrow = resample(x, sample_rate, PHONE_RATE);
    // 4th-order Butterworth each side (two 2nd-order sections).
    let fs = PHONE_RATE as f64;
    let (low, high) = (f64::from(line.low_hz), f64::from(line.high_hz));
    for f in [
        Biquad::highpass(low, fs),
        Biquad::highpass(low, fs),
        Biquad::lowpass(high, fs),
        Biquad::lowpass(high, fs),
    ] {
        f.run(&mut narrow);
    }
    for s in &mut narrow {
        let pcm = to_i16(*s);
        let decoded = match line.codec {
            Codec::MuLaw => ulaw_to_linear(linear_to_ulaw(pcm)),
            Codec::ALaw => alaw_to_linear(linear_to_alaw(pcm)),
        };
        *s = decoded as f32 / 32768.0;
    }
    let mut out = resample(&narrow, PHONE_RATE, sample_rate);
    out.resize(x.len(), 0.0);
    out
}

fn to_i16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// G.711 mu-law encoder for 16-bit linear PCM, bit-exact with the reference
/// implementation (Sun's g711.c, as in CPython's audioop): the 14-bit magnitude
/// is biased by 33, its segment (exponent) and 4 mantissa bits are packed, and
/// the byte is inverted.
pub fn linear_to_ulaw(pcm: i16) -> u8 {
    const CLIP: i32 = 8159;
    const BIAS: i32 = 0x21;
    let mut v = (pcm as i32) >> 2; // G.711 works on 14-bit samples
    let mask: u8 = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    v = v.min(CLIP) + BIAS;
    // Segment: the first of the bounds 0x40, 0x80, .., 0x2000 that v is below.
    let seg = (0..8).find(|&s| v < (0x40 << s)).unwrap_or(8);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let uval = ((seg << 4) | ((v >> (seg + 1)) & 0x0F)) as u8;
    uval ^ mask
}

/// G.711 mu-law decoder to 16-bit linear PCM (the centre of each code's interval).
pub fn ulaw_to_linear(code: u8) -> i16 {
    const BIAS: i32 = 0x84;
    let u = !code;
    let t = ((((u & 0x0F) as i32) << 3) + BIAS) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { BIAS - t } else { t - BIAS }) as i16
}

/// G.711 A-law encoder for 16-bit linear PCM, bit-exact with the reference
/// implementation (Sun's g711.c): a 13-bit magnitude, its segment and 4
/// mantissa bits, even bits inverted.
pub fn linear_to_alaw(pcm: i16) -> u8 {
    const SEGMENT_ENDS: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut v = (pcm as i32) >> 3;
    let mask: u8 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let Some(seg) = SEGMENT_ENDS.iter().position(|&end| v <= end) else {
        return 0x7F ^ mask;
    };
    let mantissa = if seg < 2 { v >> 1 } else { v >> seg } & 0x0F;
    ((seg as u8) << 4 | mantissa as u8) ^ mask
}

/// G.711 A-law decoder to 16-bit linear PCM (the centre of each code's interval).
pub fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = i32::from(a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// RBJ-cookbook biquad (Butterworth Q), direct form I.
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
}

impl Biquad {
    fn highpass(f0: f64, fs: f64) -> Self {
        let (cos, alpha) = Self::prewarp(f0, fs);
        let b0 = (1.0 + cos) / 2.0;
        Self::normalised([b0, -(1.0 + cos), b0], cos, alpha)
    }

    fn lowpass(f0: f64, fs: f64) -> Self {
        let (cos, alpha) = Self::prewarp(f0, fs);
        let b0 = (1.0 - cos) / 2.0;
        Self::normalised([b0, 1.0 - cos, b0], cos, alpha)
    }

    fn prewarp(f0: f64, fs: f64) -> (f64, f64) {
        let w0 = std::f64::consts::TAU * f0 / fs;
        (w0.cos(), w0.sin() / (2.0 * std::f64::consts::FRAC_1_SQRT_2))
    }

    fn normalised(b: [f64; 3], cos: f64, alpha: f64) -> Self {
        let a0 = 1.0 + alpha;
        Self {
            b: b.map(|v| v / a0),
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
        }
    }

    fn run(&self, x: &mut [f32]) {
        let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
        for s in x {
            let x0 = *s as f64;
            let y0 =
                self.b[0] * x0 + self.b[1] * x1 + self.b[2] * x2 - self.a[0] * y1 - self.a[1] * y2;
            (x2, x1, y2, y1) = (x1, x0, y1, y0);
            *s = y0 as f32;
        }
    }
}

// ---------------------------------------------------------------------------
// Room

/// A room's impulse response at `sample_rate`: the direct sound (1.0 at
/// sample 0), then, from 2 ms on, a diffuse tail of Gaussian noise whose
/// energy falls by 60 dB over `rt60_s` seconds (where it ends), `drr_db`
/// below the direct sound in total (the direct-to-reverberant ratio).
pub fn room_impulse_response<R: Rng + ?Sized>(
    sample_rate: u32,
    rt60_s: f32,
    drr_db: f32,
    rng: &mut R,
) -> Vec<f32> {
    let sr = f64::from(sample_rate);
    let onset = (0.002 * sr).round().max(1.0) as usize;
    let len = ((f64::from(rt60_s) * sr).ceil() as usize).max(onset + 1);
    // Energy down 60 dB over rt60: amplitude by a factor of 1000.
    let decay_per_sample = 1000f64.ln() / (f64::from(rt60_s) * sr).max(1.0);
    let mut h = vec![0.0f64; len];
    h[0] = 1.0;
    for (i, v) in h.iter_mut().enumerate().skip(onset) {
        *v = gaussian(rng) * (-decay_per_sample * i as f64).exp();
    }
    let tail: f64 = h[onset..].iter().map(|v| v * v).sum();
    let scale = (10f64.powf(-f64::from(drr_db) / 10.0) / tail.max(1e-30)).sqrt();
    h[onset..].iter_mut().for_each(|v| *v *= scale);
    h.into_iter().map(|v| v as f32).collect()
}

/// `x` heard in the room `rir` ([`room_impulse_response`]): convolved (by
/// FFT), cut to `x`'s length so the clip keeps its timing, and brought back
/// to `x`'s mean power (a room is not a level change; the gain step is),
/// below full scale.
pub fn reverberate(x: &[f32], rir: &[f32]) -> Vec<f32> {
    if x.is_empty() || rir.is_empty() {
        return x.to_vec();
    }
    let n = (x.len() + rir.len() - 1).next_power_of_two();
    let mut planner = realfft::RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(n);
    let inverse = planner.plan_fft_inverse(n);
    let spectrum = |signal: &[f32]| {
        let mut buf = forward.make_input_vec();
        buf.iter_mut()
            .zip(signal)
            .for_each(|(b, &s)| *b = f64::from(s));
        let mut out = forward.make_output_vec();
        forward
            .process(&mut buf, &mut out)
            .expect("buffers sized by the plan");
        out
    };
    let mut wet = spectrum(x);
    let room = spectrum(rir);
    wet.iter_mut().zip(&room).for_each(|(a, b)| *a *= b);
    // The inverse ignores the imaginary parts of DC and Nyquist, which a
    // product of real signals' spectra has at rounding level only.
    wet[0].im = 0.0;
    wet[n / 2].im = 0.0;
    let mut y = inverse.make_output_vec();
    inverse
        .process(&mut wet, &mut y)
        .expect("buffers sized by the plan");
    y.truncate(x.len());
    let p_in: f64 = x.iter().map(|&s| f64::from(s).powi(2)).sum();
    let p_out: f64 = y.iter().map(|s| s * s).sum();
    let mut g = if p_out > 0.0 {
        (p_in / p_out).sqrt()
    } else {
        0.0
    };
    let peak = y.iter().fold(0.0f64, |m, &s| m.max(s.abs())) * g;
    if peak > f64::from(PEAK_CEILING) {
        g *= f64::from(PEAK_CEILING) / peak;
    }
    y.into_iter().map(|s| (s * g) as f32).collect()
}

// ---------------------------------------------------------------------------
// Gain

/// Multiplies by `db` decibels, limited so the peak stays below full scale
/// (a hard-clipped loud clip would teach distortion, not loudness).
pub fn gain_db(x: &[f32], db: f32) -> Vec<f32> {
    let peak = x.iter().fold(0.0f32, |m, &s| m.max(s.abs()));
    let mut g = 10f32.powf(db / 20.0);
    if peak * g > PEAK_CEILING {
        g = PEAK_CEILING / peak;
    }
    x.iter().map(|&s| s * g).collect()
}

// ---------------------------------------------------------------------------
// Vocal tract length

/// Moves the spectral envelope of log-mel `frames` (`cfg`'s layout, frame
/// after frame) by the factor `alpha` in frequency, as a longer (`alpha <
/// 1`) or shorter (`alpha > 1`) vocal tract would: each log-mel row takes
/// the value found at its centre frequency divided by `alpha`, interpolated
/// between rows on the mel scale (Jaitly and Hinton's VTLP, 2013). The other
/// rows (level, pitch) stay, so formants move apart from the voice's pitch,
/// which [`pitch_shift`] cannot do. MFCC frames are left as they are.
pub fn warp_formants(cfg: &FeatureConfig, frames: &mut [f32], alpha: f64) {
    let n_features = cfg.n_features();
    let n_mels = cfg.n_mels;
    if cfg.kind != FeatureKind::LogMel || n_mels < 2 || n_features == 0 || alpha <= 0.0 {
        return;
    }
    // Each row reads (lower row, weight of the upper row).
    let taps: Vec<(usize, f32)> = cfg
        .mel_row_centres()
        .iter()
        .map(|&hz| {
            let at = cfg
                .mel_row_position(hz / alpha)
                .clamp(0.0, (n_mels - 1) as f64);
            let lower = (at.floor() as usize).min(n_mels - 2);
            (lower, (at - lower as f64) as f32)
        })
        .collect();
    let mut source = vec![0f32; n_mels];
    for frame in frames.chunks_exact_mut(n_features) {
        source.copy_from_slice(&frame[..n_mels]);
        for (out, &(lower, w)) in frame.iter_mut().zip(&taps) {
            *out = (1.0 - w) * source[lower] + w * source[lower + 1];
        }
    }
}

// ---------------------------------------------------------------------------
// Random chains

/// Probabilities and ranges of [`augment_random`]. Ranges are `(low, high)`,
/// sampled uniformly; a probability of 0 disables a step.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AugmentConfig {
    pub pitch_prob: f32,
    pub pitch_semitones: (f32, f32),
    pub stretch_prob: f32,
    pub stretch_rate: (f32, f32),
    pub shift_prob: f32,
    /// Largest shift either way, in seconds.
    pub max_shift_s: f32,
    pub gain_prob: f32,
    /// Wide on purpose: level differs by 30 dB between corpora and by line on a call,
    /// so loudness must not be a shortcut.
    pub gain_db: (f32, f32),
    pub noise_prob: f32,
    pub snr_db: (f32, f32),
    /// Share of noise injections that use pink instead of white noise.
    pub pink_share: f32,
    pub telephone_prob: f32,
    /// Telephone renditions go through a [`PhoneLine::random`] line instead
    /// of [`PhoneLine::STANDARD`].
    pub varied_lines: bool,
    /// Chance that a rendition's features get [`warp_formants`], and the
    /// range of its factor. Applied to features, not audio, by whoever
    /// computes them ([`draw_formant_warp`]).
    pub formant_warp_prob: f32,
    pub formant_warp: (f32, f32),
    /// Chance that a rendition is heard in a room
    /// ([`room_impulse_response`], [`reverberate`]), and the ranges of its
    /// reverberation time (seconds) and direct-to-reverberant ratio (dB).
    pub reverb_prob: f32,
    pub reverb_rt60_s: (f32, f32),
    pub reverb_drr_db: (f32, f32),
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            pitch_prob: 0.3,
            pitch_semitones: (-2.0, 2.0),
            stretch_prob: 0.3,
            stretch_rate: (0.85, 1.15),
            shift_prob: 0.5,
            max_shift_s: 0.25,
            gain_prob: 0.8,
            gain_db: (-24.0, 12.0),
            noise_prob: 0.5,
            snr_db: (5.0, 30.0),
            pink_share: 0.5,
            telephone_prob: 0.25,
            varied_lines: false,
            formant_warp_prob: 0.0,
            formant_warp: (0.9, 1.1),
            reverb_prob: 0.0,
            reverb_rt60_s: (0.2, 0.8),
            reverb_drr_db: (0.0, 12.0),
        }
    }
}

/// A random chain in the order a recording goes through: the voice (pitch,
/// tempo), its timing in the clip, the room, the microphone level, background
/// noise, then the line.
pub fn augment_random<R: Rng + ?Sized>(
    x: &[f32],
    sample_rate: u32,
    cfg: &AugmentConfig,
    rng: &mut R,
) -> Vec<f32> {
    let mut y = x.to_vec();
    if chance(rng, cfg.pitch_prob) {
        y = pitch_shift(&y, sample_rate, uniform(rng, cfg.pitch_semitones));
    }
    if chance(rng, cfg.stretch_prob) {
        y = time_stretch(&y, uniform(rng, cfg.stretch_rate));
    }
    if chance(rng, cfg.shift_prob) {
        let max = cfg.max_shift_s.max(0.0) * sample_rate as f32;
        y = time_shift(&y, uniform(rng, (-max, max)).round() as isize);
    }
    // Draws nothing when off, so recipes without rooms keep their renditions
    // bit for bit.
    if cfg.reverb_prob > 0.0 && chance(rng, cfg.reverb_prob) {
        let rt60 = uniform(rng, cfg.reverb_rt60_s);
        let drr = uniform(rng, cfg.reverb_drr_db);
        y = reverberate(&y, &room_impulse_response(sample_rate, rt60, drr, rng));
    }
    if chance(rng, cfg.gain_prob) {
        y = gain_db(&y, uniform(rng, cfg.gain_db));
    }
    if chance(rng, cfg.noise_prob) {
        let color = if chance(rng, cfg.pink_share) {
            NoiseColor::Pink
        } else {
            NoiseColor::White
        };
        y = add_colored_noise_snr(&y, uniform(rng, cfg.snr_db), color, rng);
    }
    if chance(rng, cfg.telephone_prob) {
        // The standard line draws nothing, so recipes without varied lines
        // keep their renditions bit for bit.
        let line = if cfg.varied_lines {
            PhoneLine::random(rng)
        } else {
            PhoneLine::STANDARD
        };
        y = telephone_line(&y, sample_rate, line);
    }
    y
}

/// The factor for [`warp_formants`] of one rendition, if `cfg` draws one.
/// Draws nothing from `rng` when the warp is off, so recipes without it
/// keep their renditions bit for bit.
pub fn draw_formant_warp<R: Rng + ?Sized>(cfg: &AugmentConfig, rng: &mut R) -> Option<f64> {
    if cfg.formant_warp_prob <= 0.0 || !chance(rng, cfg.formant_warp_prob) {
        return None;
    }
    Some(f64::from(uniform(rng, cfg.formant_warp)))
}

fn chance<R: Rng + ?Sized>(rng: &mut R, p: f32) -> bool {
    // Always draw, so one step's probability does not shift later steps' draws.
    rng.random::<f32>() < p
}

fn uniform<R: Rng + ?Sized>(rng: &mut R, (lo, hi): (f32, f32)) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const SR: u32 = 16000;

    fn sine(freq: f32, amp: f32, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| amp * (std::f32::consts::TAU * freq * i as f32 / SR as f32).sin())
            .collect()
    }

    fn power(x: &[f32]) -> f64 {
        x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len() as f64
    }

    /// Frequency from interpolated upward zero crossings.
    fn frequency(x: &[f32]) -> f64 {
        let crossings: Vec<f64> = (1..x.len())
            .filter(|&i| x[i - 1] < 0.0 && x[i] >= 0.0)
            .map(|i| (i - 1) as f64 + (-x[i - 1] / (x[i] - x[i - 1])) as f64)
            .collect();
        let span = crossings[crossings.len() - 1] - crossings[0];
        (crossings.len() - 1) as f64 * SR as f64 / span
    }

    #[test]
    fn noise_snr_is_relative_to_active_speech() {
        // 0.5 s silence, 1 s tone, 0.5 s silence: the pauses must not count.
        let mut x = vec![0.0; 8000];
        x.extend(sine(220.0, 0.1, 16000));
        x.extend(vec![0.0; 8000]);
        for (seed, color) in [(1, NoiseColor::White), (2, NoiseColor::Pink)] {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let y = add_colored_noise_snr(&x, 10.0, color, &mut rng);
            let noise: Vec<f32> = y.iter().zip(&x).map(|(a, b)| a - b).collect();
            let snr = 10.0 * (power(&sine(220.0, 0.1, 16000)) / power(&noise)).log10();
            assert!((snr - 10.0).abs() < 0.5, "{color:?}: {snr} dB");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(add_noise_snr(&[0.0; 100], 10.0, &mut rng), vec![0.0; 100]);
    }

    #[test]
    fn pink_noise_has_more_low_than_high_energy() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut n: Vec<f64> = (0..1 << 15).map(|_| gaussian(&mut rng)).collect();
        pinken(&mut n);
        // First difference is a high-pass: white keeps 2x its power, pink much less.
        let p = n.iter().map(|v| v * v).sum::<f64>();
        let d = n.windows(2).map(|w| (w[1] - w[0]).powi(2)).sum::<f64>();
        assert!(d / p < 0.5, "{}", d / p);
    }

    #[test]
    fn time_stretch_changes_length_and_keeps_frequency() {
        let x = sine(440.0, 0.5, SR as usize);
        for (rate, len) in [(0.8f32, 20000usize), (1.25, 12800)] {
            let y = time_stretch(&x, rate);
            assert_eq!(y.len(), len);
            let f = frequency(&y[1000..len - 1000]);
            assert!((f - 440.0).abs() < 440.0 * 0.005, "rate {rate}: {f} Hz");
            // No dropouts where frames join.
            let rms = power(&y[1000..len - 1000]).sqrt();
            assert!((rms - 0.5 / 2f64.sqrt()).abs() < 0.03, "rms {rms}");
        }
        assert_eq!(time_stretch(&x, 1.0), x);
    }

    #[test]
    fn pitch_shift_octave_doubles_frequency_and_keeps_length() {
        let x = sine(220.0, 0.5, SR as usize);
        let up = pitch_shift(&x, SR, 12.0);
        assert_eq!(up.len(), x.len());
        let f = frequency(&up[1000..15000]);
        assert!((f - 440.0).abs() < 440.0 * 0.01, "{f} Hz");
        let down = pitch_shift(&x, SR, -12.0);
        assert_eq!(down.len(), x.len());
        let f = frequency(&down[1000..15000]);
        assert!((f - 110.0).abs() < 110.0 * 0.01, "{f} Hz");
    }

    #[test]
    fn time_shift_moves_an_impulse_exactly() {
        let mut x = vec![0.0; 1000];
        x[100] = 1.0;
        let later = time_shift(&x, 37);
        assert_eq!(later.len(), 1000);
        assert_eq!(later.iter().position(|&s| s == 1.0), Some(137));
        assert_eq!(later.iter().filter(|&&s| s != 0.0).count(), 1);
        let earlier = time_shift(&x, -60);
        assert_eq!(earlier.iter().position(|&s| s == 1.0), Some(40));
        assert!(time_shift(&x, -101).iter().all(|&s| s == 0.0));
        assert!(time_shift(&x, 5000).iter().all(|&s| s == 0.0));
    }

    #[test]
    fn mu_law_matches_g711_codewords() {
        // Reference values from CPython's audioop.lin2ulaw / ulaw2lin.
        for (pcm, code) in [
            (0i16, 0xFFu8),
            (4, 0xFE),
            (-1, 0x7E),
            (100, 0xF2),
            (-100, 0x72),
            (1000, 0xCE),
            (-1000, 0x4E),
            (8000, 0xA0),
            (-8000, 0x20),
            (32767, 0x80),
            (-32768, 0x00),
        ] {
            assert_eq!(linear_to_ulaw(pcm), code, "encode {pcm}");
        }
        for (code, pcm) in [
            (0xFFu8, 0i16),
            (0x7F, 0),
            (0xEF, 132),
            (0xCE, 988),
            (0x4E, -988),
            (0xA0, 7932),
            (0x80, 32124),
            (0x00, -32124),
        ] {
            assert_eq!(ulaw_to_linear(code), pcm, "decode {code:#04x}");
        }
    }

    #[test]
    fn mu_law_round_trip_error_is_bounded() {
        for v in i16::MIN..=i16::MAX {
            let back = ulaw_to_linear(linear_to_ulaw(v)) as i32;
            let v = v as i32;
            let err = (back - v).abs();
            if v.abs() <= 32124 {
                // Half a quantiser step (1/32 of the biased magnitude) plus the
                // 2 bits G.711 drops from 16-bit input.
                assert!(err <= (v.abs() + 132) / 32 + 4, "{v} -> {back}");
            } else {
                assert_eq!(back.abs(), 32124, "{v} clips to the top code");
            }
        }
        // Every code decodes to a value that encodes back to it (0x7F is -0 and
        // decodes to 0, which encodes as +0).
        for code in 0..=255u8 {
            let again = linear_to_ulaw(ulaw_to_linear(code));
            assert!(again == code || code == 0x7F, "{code:#04x} -> {again:#04x}");
        }
    }

    #[test]
    fn alaw_matches_the_reference_codec() {
        // Values from the reference g711.c (and CPython's audioop.lin2alaw).
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(linear_to_alaw(1000), 0xFA);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0xFA), 1008);
        for v in i16::MIN..=i16::MAX {
            let back = alaw_to_linear(linear_to_alaw(v)) as i32;
            let v = v as i32;
            // Half a step of the code's segment: 8 in the two linear
            // segments, 1/32 of the magnitude above, and the clipped top.
            let bound = (v.abs() / 32).max(8) + 1;
            if v.abs() <= 32256 {
                assert!((back - v).abs() <= bound, "{v} -> {back}");
            } else {
                assert_eq!(back.abs(), 32256, "{v} clips to the top code");
            }
        }
        for code in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(code)), code, "{code:#04x}");
        }
    }

    #[test]
    fn every_random_line_keeps_the_voice_band_and_cuts_above_4_khz() {
        let len = SR as usize;
        let mid = |y: &[f32]| power(&y[2000..len - 2000]);
        let tone = sine(1000.0, 0.3, len);
        let high = sine(6000.0, 0.3, len);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut codecs = Vec::new();
        for _ in 0..8 {
            let line = PhoneLine::random(&mut rng);
            assert!((200.0..=400.0).contains(&line.low_hz), "{line:?}");
            assert!((3000.0..=3700.0).contains(&line.high_hz), "{line:?}");
            codecs.push(line.codec);
            let kept_db = 10.0 * (mid(&telephone_line(&tone, SR, line)) / mid(&tone)).log10();
            assert!(
                kept_db.abs() < 1.0,
                "{line:?}: 1 kHz changed by {kept_db} dB"
            );
            let removed_db = 10.0 * (mid(&telephone_line(&high, SR, line)) / mid(&high)).log10();
            assert!(
                removed_db < -40.0,
                "{line:?}: 6 kHz only {removed_db} dB down"
            );
        }
        assert!(codecs.contains(&Codec::ALaw) && codecs.contains(&Codec::MuLaw));
        // The pass band really moves: 3.5 kHz passes a wide line, not a narrow one.
        let probe = sine(3500.0, 0.3, len);
        let through = |high_hz| {
            let line = PhoneLine {
                high_hz,
                ..PhoneLine::STANDARD
            };
            10.0 * (mid(&telephone_line(&probe, SR, line)) / mid(&probe)).log10()
        };
        assert!(through(3700.0) > through(3000.0) + 6.0);
    }

    #[test]
    fn telephone_keeps_voice_band_and_removes_the_rest() {
        let len = SR as usize;
        let mid = |y: &[f32]| power(&y[2000..len - 2000]);
        let tone = sine(1000.0, 0.3, len);
        let y = telephone(&tone, SR);
        assert_eq!(y.len(), len);
        let kept_db = 10.0 * (mid(&y) / mid(&tone)).log10();
        assert!(kept_db.abs() < 1.0, "1 kHz changed by {kept_db} dB");

        let high = sine(6000.0, 0.3, len);
        let removed_db = 10.0 * (mid(&telephone(&high, SR)) / mid(&high)).log10();
        assert!(removed_db < -40.0, "6 kHz only {removed_db} dB down");

        let low = sine(100.0, 0.3, len);
        let low_db = 10.0 * (mid(&telephone(&low, SR)) / mid(&low)).log10();
        assert!(low_db < -15.0, "100 Hz only {low_db} dB down");
    }

    #[test]
    fn formant_warp_moves_a_tone_to_the_row_of_the_warped_frequency() {
        let cfg = FeatureConfig::default_model();
        let nf = cfg.n_features();
        let frame_of = |hz: f32| {
            let m =
                seremotion_core::features::extract(&cfg, &sine(hz, 0.3, 16000)).expect("features");
            m.data[10 * nf..11 * nf].to_vec()
        };
        let peak = |frame: &[f32]| {
            (0..cfg.n_mels)
                .max_by(|&a, &b| frame[a].total_cmp(&frame[b]))
                .expect("rows")
        };
        let tone = frame_of(1500.0);
        let mut same = tone.clone();
        warp_formants(&cfg, &mut same, 1.0);
        for (a, b) in same.iter().zip(&tone) {
            assert!((a - b).abs() < 1e-4, "alpha 1 keeps the frame");
        }
        for alpha in [0.9, 1.1] {
            let mut warped = tone.clone();
            warp_formants(&cfg, &mut warped, alpha);
            let moved_to = frame_of(1500.0 * alpha as f32);
            assert_eq!(peak(&warped), peak(&moved_to), "alpha {alpha}");
            assert_ne!(peak(&warped), peak(&tone), "alpha {alpha} moves the peak");
            // Level and pitch rows are not spectral envelope.
            assert_eq!(warped[cfg.n_mels..], tone[cfg.n_mels..]);
        }
    }

    #[test]
    fn formant_warp_is_drawn_only_when_asked_for() {
        let off = AugmentConfig::default();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        assert!((0..100).all(|_| draw_formant_warp(&off, &mut rng).is_none()));
        assert_eq!(
            rng.random::<u64>(),
            ChaCha8Rng::seed_from_u64(4).random::<u64>(),
            "off draws nothing"
        );
        let on = AugmentConfig {
            formant_warp_prob: 0.5,
            ..AugmentConfig::default()
        };
        let drawn: Vec<f64> = (0..400)
            .filter_map(|_| draw_formant_warp(&on, &mut rng))
            .collect();
        assert!((150..250).contains(&drawn.len()), "{} of 400", drawn.len());
        assert!(drawn.iter().all(|a| (0.9..=1.1).contains(a)));
    }

    #[test]
    fn gain_is_clip_safe() {
        let x = sine(440.0, 0.5, 1600);
        let quieter = gain_db(&x, -20.0);
        assert!((power(&quieter) / power(&x) - 0.01).abs() < 1e-6);
        let louder = gain_db(&x, 20.0);
        let peak = louder.iter().fold(0.0f32, |m, &s| m.max(s.abs()));
        assert!(peak <= PEAK_CEILING && peak > 0.99, "{peak}");
        assert_eq!(gain_db(&[0.0; 4], 30.0), vec![0.0; 4]);
    }

    /// A chain whose every step has probability 0 (rooms are off by default).
    fn every_step_off() -> AugmentConfig {
        AugmentConfig {
            pitch_prob: 0.0,
            stretch_prob: 0.0,
            shift_prob: 0.0,
            gain_prob: 0.0,
            noise_prob: 0.0,
            telephone_prob: 0.0,
            ..Default::default()
        }
    }

    #[test]
    fn random_chains_are_deterministic_from_the_seed() {
        let x = sine(300.0, 0.2, 8000);
        let cfg = AugmentConfig {
            pitch_prob: 1.0,
            stretch_prob: 1.0,
            shift_prob: 1.0,
            gain_prob: 1.0,
            noise_prob: 1.0,
            telephone_prob: 1.0,
            ..Default::default()
        };
        let run = |seed| augment_random(&x, SR, &cfg, &mut ChaCha8Rng::seed_from_u64(seed));
        let a = run(42);
        assert_eq!(a, run(42));
        assert_ne!(a, run(43));
        assert!(a.iter().all(|s| s.is_finite() && s.abs() <= 1.0));

        assert_eq!(
            augment_random(&x, SR, &every_step_off(), &mut ChaCha8Rng::seed_from_u64(1)),
            x
        );
    }

    #[test]
    fn room_response_decays_by_its_reverberation_time_below_the_direct_sound() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (rt60, drr) in [(0.3f32, 0.0f32), (0.7, 9.0)] {
            let h = room_impulse_response(SR, rt60, drr, &mut rng);
            assert_eq!(h.len(), (f64::from(rt60) * f64::from(SR)).ceil() as usize);
            assert_eq!(h[0], 1.0);
            let onset = (0.002 * SR as f64).round() as usize;
            assert!(h[1..onset].iter().all(|&v| v == 0.0));
            let tail: f64 = h[onset..].iter().map(|&v| f64::from(v).powi(2)).sum();
            let measured_drr = -10.0 * tail.log10();
            assert!(
                (measured_drr - f64::from(drr)).abs() < 0.01,
                "{measured_drr}"
            );
            // Schroeder's backward integral; its fall from -5 to -25 dB,
            // three times over, estimates the reverberation time (T20).
            let mut energy = 0.0f64;
            let mut curve = vec![0.0f64; h.len()];
            for i in (onset..h.len()).rev() {
                energy += f64::from(h[i]).powi(2);
                curve[i] = energy;
            }
            let db = |i: usize| 10.0 * (curve[i] / tail).log10();
            let at = |level: f64| (onset..h.len()).find(|&i| db(i) < level).unwrap();
            let t20 = 3.0 * (at(-25.0) - at(-5.0)) as f64 / f64::from(SR);
            assert!(
                (t20 / f64::from(rt60) - 1.0).abs() < 0.1,
                "rt60 {rt60}: T20 {t20}"
            );
        }
    }

    #[test]
    fn a_click_in_a_room_becomes_the_room_response_at_the_same_power() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let h = room_impulse_response(SR, 0.4, 6.0, &mut rng);
        let mut x = vec![0.0f32; SR as usize];
        x[1000] = 0.5;
        let y = reverberate(&x, &h);
        assert_eq!(y.len(), x.len());
        assert!((power(&y) / power(&x) - 1.0).abs() < 1e-6);
        // Same shape as the response, delayed to the click and scaled.
        let g = y[1000] / h[0];
        assert!(y[..1000].iter().all(|v| v.abs() < 1e-6));
        for (i, &v) in h.iter().enumerate() {
            assert!((y[1000 + i] - g * v).abs() < 1e-5, "sample {i}");
        }
        // A tone keeps its frequency and its length; nothing is clipped.
        let tone = sine(440.0, 0.9, SR as usize);
        let wet = reverberate(&tone, &h);
        assert_eq!(wet.len(), tone.len());
        assert!((frequency(&wet[4000..]) - 440.0).abs() < 5.0);
        assert!(wet.iter().all(|v| v.abs() <= PEAK_CEILING));
    }

    #[test]
    fn rooms_are_drawn_only_when_asked_for() {
        let x = sine(300.0, 0.2, 8000);
        let chain = |reverb_prob| AugmentConfig {
            reverb_prob,
            ..Default::default()
        };
        // Off, the chain draws what it drew before rooms existed: one chance
        // per step, nothing for the room, so other recipes' renditions stay.
        let mut after_chain = ChaCha8Rng::seed_from_u64(5);
        augment_random(&x, SR, &every_step_off(), &mut after_chain);
        let mut six_chances = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..6 {
            six_chances.random::<f32>();
        }
        assert_eq!(after_chain.random::<u64>(), six_chances.random::<u64>());
        let off = augment_random(&x, SR, &chain(0.0), &mut ChaCha8Rng::seed_from_u64(5));
        let on = augment_random(&x, SR, &chain(1.0), &mut ChaCha8Rng::seed_from_u64(5));
        assert_ne!(off, on);
    }
}
