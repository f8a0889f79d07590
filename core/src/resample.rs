//! Sample-rate conversion shared by the element (any input rate -> the
//! model's rate) and the trainer (telephone-band simulation, corpora at other
//! rates).
//!
//! Built on rubato's [`FftFixedInOut`]: a fixed-ratio resampler that filters
//! in the frequency domain with a Blackman-Harris² windowed sinc as long as
//! one FFT block. It is exact for rational ratios (every pair of integer rates
//! is one) and linear-phase. With blocks of at least [`MIN_BLOCK`] samples on
//! both sides (measured for 16k->8k, 48k->16k, 192k->16k): flat to 95 % of
//! the lower Nyquist frequency, −3 dB at 97 %, and tones above it attenuated
//! by more than 140 dB — aliasing never reaches the features.
//!
//! Rates with a large ratio denominator (e.g. 44101 -> 16000, coprime) would
//! need blocks of a second of audio or more (latency, and hundreds of MB for 8
//! channels). Where the FFT block would hold more than 100 ms of input,
//! rubato's [`SincFixedIn`] takes over: a Blackman-Harris² windowed
//! sinc (256 taps per halving of the rate), cubic interpolation over an
//! oversampled table of at most 512 kB, in fixed chunks of 10 ms of input.
//! Latency and memory are then bounded at any rate (under 50 ms and about
//! 0.6 MB per channel; measured by the tests: 44101 -> 16000 keeps a 1 kHz
//! tone's amplitude to 1e-5 and its timing to 0.25 input samples, and leaves
//! a 9.6 kHz tone at -53 dB), instead of exact.
//!
//! rubato's filter delays the signal by half an output block. The
//! [`StreamResampler`] compensates: it drops those first samples, so output
//! sample `j` corresponds to time `j / to_hz` exactly like input sample `i`
//! corresponds to `i / from_hz`. [`StreamResampler::latency_output_samples`]
//! reports how many output samples the stream holds back before they come out
//! (the price of that alignment in a live pipeline).

use std::fmt;

use rubato::{
    FftFixedInOut, Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

/// Smallest FFT block, in samples on each side of the conversion.
pub const MIN_BLOCK: usize = 512;
const SINC_LEN: usize = 256;
/// Sinc table entries (taps x oversampling) per resampler: 512 kB of f32.
const SINC_TABLE: usize = 1 << 17;

/// Sinc taps: 256 per halving of the rate, so the transition band stays as
/// narrow at the output rate when decimating by a large factor.
fn sinc_len(from_hz: u32, to_hz: u32) -> usize {
    let halvings = (f64::from(from_hz) / f64::from(to_hz) / 2.0)
        .ceil()
        .max(1.0) as usize;
    SINC_LEN * halvings
}

/// Why a resampler could not be made.
#[derive(Debug)]
pub enum ResampleError {
    /// A sample rate of 0 Hz.
    ZeroRate {
        /// Input rate in Hz.
        from_hz: u32,
        /// Output rate in Hz.
        to_hz: u32,
    },
    /// rubato refused the configuration.
    Rubato(rubato::ResamplerConstructionError),
}

impl fmt::Display for ResampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResampleError::ZeroRate { from_hz, to_hz } => write!(
                f,
                "cannot resample from {from_hz} Hz to {to_hz} Hz: sample rates must be positive"
            ),
            ResampleError::Rubato(e) => write!(f, "cannot build the resampler: {e}"),
        }
    }
}

impl std::error::Error for ResampleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResampleError::Rubato(e) => Some(e),
            ResampleError::ZeroRate { .. } => None,
        }
    }
}

/// Exact FFT conversion for small ratios, bounded sinc conversion otherwise.
enum Engine {
    Fft(FftFixedInOut<f32>),
    Sinc(SincFixedIn<f32>),
}

macro_rules! engine {
    ($engine:expr, $r:ident => $body:expr) => {
        match $engine {
            Engine::Fft($r) => $body,
            Engine::Sinc($r) => $body,
        }
    };
}

impl Engine {
    fn input_frames_next(&self) -> usize {
        engine!(self, r => r.input_frames_next())
    }
    fn input_frames_max(&self) -> usize {
        engine!(self, r => r.input_frames_max())
    }
    fn output_frames_max(&self) -> usize {
        engine!(self, r => r.output_frames_max())
    }
    fn output_delay(&self) -> usize {
        engine!(self, r => r.output_delay())
    }
    fn reset(&mut self) {
        engine!(self, r => r.reset())
    }
    fn process_into_buffer(
        &mut self,
        input: &[&Vec<f32>],
        output: &mut [Vec<f32>],
    ) -> rubato::ResampleResult<(usize, usize)> {
        engine!(self, r => r.process_into_buffer(input, output, None))
    }
}

/// The conversion engine and its pre-sized buffers.
struct Converter {
    inner: Engine,
    /// Input samples of the block being collected (capacity = one block).
    block_in: Vec<f32>,
    /// rubato's output for one block (one channel).
    block_out: [Vec<f32>; 1],
    /// Output samples still to drop to compensate the filter delay.
    to_skip: usize,
    delay: usize,
    /// Zeros fed ahead of the input to delay the output into alignment.
    lead_in: usize,
    /// Output samples held back at most (see `latency_output_samples`).
    latency: usize,
}

impl Converter {
    fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        let (from, to) = (from_hz as usize, to_hz as usize);
        let g = gcd(from, to);
        let (unit_in, unit_out) = (from / g, to / g);
        // rubato rounds the requested input block up to whole units; ask for
        // enough units that both sides reach MIN_BLOCK.
        let mut units = MIN_BLOCK
            .div_ceil(unit_in)
            .max(MIN_BLOCK.div_ceil(unit_out));
        // rubato's filter is centred on sample `block_in / 2`; with both block
        // sizes even its delay is exactly `block_out / 2` output samples, a
        // whole number we can drop. (An odd block leaves a half-sample shift.)
        if (units * unit_in) % 2 == 1 || (units * unit_out) % 2 == 1 {
            units += 1;
        }
        let inner = if units * unit_in <= (from / 10).max(MIN_BLOCK) {
            Engine::Fft(
                FftFixedInOut::<f32>::new(from, to, units * unit_in, 1)
                    .map_err(ResampleError::Rubato)?,
            )
        } else {
            let params = SincInterpolationParameters {
                sinc_len: sinc_len(from_hz, to_hz),
                f_cutoff: 0.95,
                oversampling_factor: (SINC_TABLE / sinc_len(from_hz, to_hz)).clamp(32, 256),
                interpolation: SincInterpolationType::Cubic,
                window: WindowFunction::BlackmanHarris2,
            };
            Engine::Sinc(
                SincFixedIn::<f32>::new(
                    to as f64 / from as f64,
                    1.0,
                    params,
                    (from / 100).max(64),
                    1,
                )
                .map_err(ResampleError::Rubato)?,
            )
        };
        // The FFT resampler delays by whole output samples: drop them. rubato's
        // sinc resampler compensates its filter itself but leaves its output
        // `ratio - 1` output samples late (measured: -0.64 at 44101 -> 16000,
        // +1.74 at 16000 -> 44101); lead-in zeros or dropped samples bring that
        // within half an input sample.
        let ratio = to as f64 / from as f64;
        let (delay, lead_in) = match &inner {
            Engine::Fft(_) => (inner.output_delay(), 0),
            Engine::Sinc(_) if ratio < 1.0 => (0, ((1.0 - ratio) / ratio).round() as usize),
            Engine::Sinc(_) => ((ratio - 1.0).round() as usize, 0),
        };
        let latency = match &inner {
            Engine::Fft(_) => inner.output_frames_max() + delay,
            // The sinc filter's look-ahead comes on top of one chunk.
            Engine::Sinc(_) => {
                let taps = sinc_len(from_hz, to_hz) as f64;
                inner.output_frames_max() + (taps * ratio / 2.0).ceil() as usize + 1
            }
        };
        let mut block_in = Vec::with_capacity(inner.input_frames_max());
        block_in.resize(lead_in, 0.0);
        Ok(Converter {
            block_in,
            block_out: [vec![0.0; inner.output_frames_max()]],
            to_skip: delay,
            delay,
            lead_in,
            latency,
            inner,
        })
    }

    /// Converts the full block in `block_in` and appends what is due to `out`.
    fn run_block(&mut self, out: &mut Vec<f32>) {
        let (_, n_out) = self
            .inner
            .process_into_buffer(&[&self.block_in], &mut self.block_out)
            .expect("block sizes fixed at construction");
        self.block_in.clear();
        let produced = &self.block_out[0][..n_out];
        let skip = self.to_skip.min(produced.len());
        self.to_skip -= skip;
        out.extend_from_slice(&produced[skip..]);
    }

    fn reset(&mut self) {
        self.inner.reset();
        self.block_in.clear();
        self.block_in.resize(self.lead_in, 0.0);
        self.to_skip = self.delay;
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Streaming mono resampler with a fixed ratio, time-aligned output.
///
/// Feed chunks of any size to [`process`](Self::process); the output does
/// not depend on how the input was chunked. Call [`flush`](Self::flush) at the
/// end of the stream to get the tail: the total output is then
/// `round(n_in * to_hz / from_hz)` samples. No allocation in steady state
/// (the caller reuses `out`).
pub struct StreamResampler {
    from_hz: u32,
    to_hz: u32,
    /// `None` when the rates are equal: samples are copied unchanged.
    converter: Option<Box<Converter>>,
    consumed: u64,
    emitted: u64,
}

impl fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .field("consumed", &self.consumed)
            .field("emitted", &self.emitted)
            .finish_non_exhaustive()
    }
}

impl StreamResampler {
    /// A resampler from `from_hz` to `to_hz`. Equal rates give an exact
    /// pass-through copy.
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        if from_hz == 0 || to_hz == 0 {
            return Err(ResampleError::ZeroRate { from_hz, to_hz });
        }
        let converter = if from_hz == to_hz {
            None
        } else {
            Some(Box::new(Converter::new(from_hz, to_hz)?))
        };
        Ok(StreamResampler {
            from_hz,
            to_hz,
            converter,
            consumed: 0,
            emitted: 0,
        })
    }

    /// Input rate in Hz.
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// Output rate in Hz.
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Converts `input` and appends the output samples now available to `out`.
    ///
    /// Non-finite samples are converted as 0 and huge ones clipped to ±1000
    /// (equal rates copy them unchanged).
    pub fn process(&mut self, mut input: &[f32], out: &mut Vec<f32>) {
        self.consumed += input.len() as u64;
        let start = out.len();
        match &mut self.converter {
            None => out.extend_from_slice(input),
            Some(c) => {
                while !input.is_empty() {
                    let want = c.inner.input_frames_next() - c.block_in.len();
                    let n = want.min(input.len());
                    c.block_in
                        .extend(input[..n].iter().map(|&x| bounded_sample(x)));
                    input = &input[n..];
                    if n == want {
                        c.run_block(out);
                    }
                }
            }
        }
        self.emitted += (out.len() - start) as u64;
    }

    /// Ends the stream: pads with zeros internally and appends the remaining
    /// output, so that the total since the last reset is
    /// `round(n_in * to_hz / from_hz)`. Then resets for a new stream.
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        let total = self.expected_output(self.consumed);
        if let Some(c) = &mut self.converter {
            let start = out.len();
            let mut have = self.emitted;
            while have < total {
                let target = c.inner.input_frames_next();
                c.block_in.resize(target, 0.0);
                let before = out.len();
                c.run_block(out);
                have += (out.len() - before) as u64;
            }
            // Only this call's output is trimmed; `emitted <= total` always
            // holds (the filter delay is dropped up front), so nothing else is lost.
            let excess = usize::try_from(have.saturating_sub(total)).unwrap_or(usize::MAX);
            out.truncate(out.len().saturating_sub(excess).max(start));
        }
        self.reset();
    }

    /// Forgets all buffered audio (after a flush or seek).
    pub fn reset(&mut self) {
        if let Some(c) = &mut self.converter {
            c.reset();
        }
        self.consumed = 0;
        self.emitted = 0;
    }

    /// Output samples the stream holds back at most: the resampler's block
    /// plus its filter delay, expressed at the output rate. Input arriving now
    /// leaves `process` at most this many output samples later (0 for
    /// pass-through). Useful for latency queries.
    pub fn latency_output_samples(&self) -> usize {
        self.converter.as_ref().map_or(0, |c| c.latency)
    }

    /// `round(n_in * to / from)`.
    fn expected_output(&self, n_in: u64) -> u64 {
        let (from, to) = (u128::from(self.from_hz), u128::from(self.to_hz));
        ((u128::from(n_in) * to * 2 + from) / (2 * from)) as u64
    }
}

/// Samples beyond this magnitude (60 dB over full scale) are clipped to it.
const MAX_SAMPLE: f32 = 1000.0;

/// `x` as the converter may take it: a NaN or infinity would smear over a
/// whole FFT block, so it counts as 0, and a huge finite value (a corrupt
/// float stream) would overflow the FFT into NaN, which the converter does
/// not survive, so it is clipped.
fn bounded_sample(x: f32) -> f32 {
    if x.is_finite() {
        x.clamp(-MAX_SAMPLE, MAX_SAMPLE)
    } else {
        0.0
    }
}

/// Resamples a whole clip: time-aligned, `round(n * to_hz / from_hz)` samples.
pub fn resample(input: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, ResampleError> {
    let mut r = StreamResampler::new(from_hz, to_hz)?;
    let total = r.expected_output(input.len() as u64) as usize;
    let mut out = Vec::with_capacity(total + r.latency_output_samples());
    r.process(input, &mut out);
    r.flush(&mut out);
    // The sinc resampler's lead-in can leave one sample too many.
    out.truncate(total);
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzzing found that huge finite samples (0x5f5f5f5f is 1.6e19) made
    /// rubato panic on a NaN spectrum; they are clipped and the stream goes on.
    #[test]
    fn huge_and_non_finite_samples_do_not_break_the_converter() {
        let mut r = StreamResampler::new(44_100, 16_000).expect("rates");
        let mut out = Vec::new();
        let hostile: Vec<f32> = [
            f32::from_bits(0x5f5f_5f5f),
            f32::MAX,
            f32::NAN,
            f32::INFINITY,
        ]
        .into_iter()
        .cycle()
        .take(4410)
        .collect();
        r.process(&hostile, &mut out);
        r.process(&vec![0.25; 44_100], &mut out);
        r.flush(&mut out);
        assert_eq!(out.len(), 16_000 + 1600);
        assert!(out.iter().all(|v| v.is_finite()));
        // The clipped burst is loud, but bounded by the clip level.
        assert!(
            out.iter().all(|v| v.abs() <= 2.0 * MAX_SAMPLE),
            "{:?}",
            out.iter().fold(0f32, |m, v| m.max(v.abs()))
        );
    }

    const RATES: [u32; 9] = [
        8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000, 192000,
    ];

    fn tone(freq: f64, amp: f64, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as f32
            })
            .collect()
    }

    /// Amplitude and phase of `freq` in `x` (least-squares fit of sin/cos).
    fn fit(x: &[f32], freq: f64, rate: u32) -> (f64, f64) {
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &v) in x.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate);
            s += f64::from(v) * ph.sin();
            c += f64::from(v) * ph.cos();
        }
        let n = x.len() as f64;
        ((s * s + c * c).sqrt() * 2.0 / n, c.atan2(s))
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn sine_keeps_frequency_amplitude_and_phase() {
        let x = tone(440.0, 0.5, 48000, 48000);
        let y = resample(&x, 48000, 16000).expect("resample");
        assert_eq!(y.len(), 16000);
        let want = tone(440.0, 0.5, 16000, 16000);
        // Away from the edges the output is the ideally sampled tone.
        let mid = 1000..15000;
        let err: Vec<f32> = y[mid.clone()]
            .iter()
            .zip(&want[mid.clone()])
            .map(|(a, b)| a - b)
            .collect();
        assert!(rms(&err) < 1e-4, "rms error {}", rms(&err));
        let (amp, _) = fit(&y[mid], 440.0, 16000);
        assert!((amp - 0.5).abs() < 1e-3, "amplitude {amp}");
    }

    #[test]
    fn every_rate_pair_works_and_keeps_a_tone() {
        let mut worst = 0.0f64;
        for &from in &RATES {
            for &to in &RATES {
                let n = from as usize / 4;
                let x = tone(1000.0, 0.5, from, n);
                let y = resample(&x, from, to).expect("resample");
                let expect = ((n as u64 * u64::from(to) * 2 + u64::from(from))
                    / (2 * u64::from(from))) as usize;
                assert_eq!(y.len(), expect, "{from}->{to}");
                let want = tone(1000.0, 0.5, to, y.len());
                let edge = y.len() / 8;
                let err: Vec<f32> = y[edge..y.len() - edge]
                    .iter()
                    .zip(&want[edge..y.len() - edge])
                    .map(|(a, b)| a - b)
                    .collect();
                assert!(rms(&err) < 1e-4, "{from}->{to}: rms error {}", rms(&err));
                worst = worst.max(rms(&err));
            }
        }
        eprintln!("worst rms error of a 1 kHz tone over all rate pairs: {worst:.2e}");
    }

    #[test]
    fn downsampling_removes_what_does_not_fit() {
        let x = tone(6000.0, 0.5, 16000, 16000);
        let y = resample(&x, 16000, 8000).expect("resample");
        let level = 20.0 * (rms(&y[500..7500]) / rms(&x)).log10();
        assert!(level < -40.0, "6 kHz tone only {level:.1} dB down");
        eprintln!("16k->8k: 6 kHz tone at {level:.1} dB");
        // A tone well inside the new band passes untouched.
        let x = tone(3000.0, 0.5, 16000, 16000);
        let y = resample(&x, 16000, 8000).expect("resample");
        let level = 20.0 * (rms(&y[500..7500]) / rms(&x)).log10();
        assert!(level.abs() < 0.05, "3 kHz tone changed by {level:.2} dB");
    }

    #[test]
    fn impulse_and_step_stay_in_place() {
        for &(from, to) in &[
            (48000, 16000),
            (8000, 16000),
            (44100, 16000),
            (16000, 8000),
            (11025, 16000),
        ] {
            let n = from as usize / 2;
            let at = n / 2;
            let mut x = vec![0.0f32; n];
            x[at] = 1.0;
            let y = resample(&x, from, to).expect("resample");
            let peak = (0..y.len())
                .max_by(|&a, &b| y[a].abs().total_cmp(&y[b].abs()))
                .expect("non-empty");
            let expect = at as f64 * f64::from(to) / f64::from(from);
            assert!(
                (peak as f64 - expect).abs() <= 1.0,
                "{from}->{to}: impulse at {peak}, want {expect}"
            );

            let step: Vec<f32> = (0..n).map(|i| if i >= at { 0.5 } else { 0.0 }).collect();
            let y = resample(&step, from, to).expect("resample");
            let cross = y.iter().position(|&v| v >= 0.25).expect("step arrives");
            assert!(
                (cross as f64 - expect).abs() <= 2.0,
                "{from}->{to}: step at {cross}, want {expect}"
            );
        }
    }

    #[test]
    fn chunked_equals_whole() {
        for &(from, to) in &[
            (48000, 16000),
            (8000, 16000),
            (44100, 16000),
            (22050, 8000),
            (44101, 16000),
            (191999, 16000),
        ] {
            let x: Vec<f32> = (0..30000)
                .map(|i| ((i * 7919 % 2001) as f32 / 1000.0 - 1.0) * 0.3)
                .collect();
            let whole = resample(&x, from, to).expect("resample");
            let mut r = StreamResampler::new(from, to).expect("new");
            let mut out = Vec::new();
            let mut rest = &x[..];
            for size in [1usize, 3, 100, 4097, 0, 999].iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (c, tail) = rest.split_at((*size).min(rest.len()));
                r.process(c, &mut out);
                rest = tail;
            }
            r.flush(&mut out);
            assert_eq!(out.len(), whole.len());
            let worst = out
                .iter()
                .zip(&whole)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst <= 1e-5, "{from}->{to}: chunked differs by {worst}");
            // After flush the stream starts over: same input, same output.
            let mut again = Vec::new();
            r.process(&x, &mut again);
            r.flush(&mut again);
            assert_eq!(again, whole);
        }
    }

    #[test]
    fn equal_rates_pass_through_exactly() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32).sin()).collect();
        assert_eq!(resample(&x, 16000, 16000).expect("resample"), x);
        let mut r = StreamResampler::new(44100, 44100).expect("new");
        assert_eq!(r.latency_output_samples(), 0);
        let mut out = Vec::new();
        r.process(&x[..10], &mut out);
        assert_eq!(out, &x[..10]);
    }

    #[test]
    fn non_finite_input_is_treated_as_zero() {
        let mut x = tone(440.0, 0.5, 48000, 4800);
        let mut clean = x.clone();
        x[100] = f32::NAN;
        x[2000] = f32::INFINITY;
        clean[100] = 0.0;
        clean[2000] = 0.0;
        let y = resample(&x, 48000, 16000).expect("resample");
        assert!(y.iter().all(|v| v.is_finite()));
        assert_eq!(y, resample(&clean, 48000, 16000).expect("resample"));
    }

    #[test]
    fn zero_rate_is_refused_with_a_clear_message() {
        let e = StreamResampler::new(0, 16000).expect_err("0 Hz accepted");
        assert!(e.to_string().contains("0 Hz"), "{e}");
        assert!(resample(&[0.0], 16000, 0).is_err());
    }

    #[test]
    fn short_and_empty_inputs() {
        assert!(resample(&[], 48000, 16000).expect("resample").is_empty());
        assert_eq!(
            resample(&[0.5; 3], 48000, 16000).expect("resample").len(),
            1
        );
        assert_eq!(
            resample(&[0.5; 5], 8000, 16000).expect("resample").len(),
            10
        );
    }

    #[test]
    fn rates_without_a_small_ratio_are_accurate_with_bounded_latency() {
        for &(from, to) in &[
            (44101, 16000),
            (191999, 16000),
            (8001, 16000),
            (47999, 8000),
        ] {
            let r = StreamResampler::new(from, to).expect("new");
            let latency_ms = r.latency_output_samples() as f64 * 1000.0 / f64::from(to);
            assert!(
                latency_ms < 50.0,
                "{from}->{to}: {latency_ms:.1} ms latency"
            );
            let n = from as usize / 2;
            let x = tone(1000.0, 0.5, from, n);
            let y = resample(&x, from, to).expect("resample");
            let mid = &y[y.len() / 8..y.len() * 7 / 8];
            let (amp, phase) = fit(mid, 1000.0, to);
            let (_, want_phase) = fit(
                &tone(1000.0, 0.5, to, y.len())[y.len() / 8..y.len() * 7 / 8],
                1000.0,
                to,
            );
            // Time offset of the output, in input samples.
            let tau = std::f64::consts::TAU;
            let wrapped = (want_phase - phase + 1.5 * tau).rem_euclid(tau) - 0.5 * tau;
            let shift = wrapped / tau * f64::from(from) / 1000.0;
            eprintln!(
                "{from}->{to}: latency {latency_ms:.1} ms, 1 kHz tone amplitude {amp:.5}, \
                 offset {shift:.2} input samples"
            );
            assert!((amp - 0.5).abs() < 2e-3, "{from}->{to}: amplitude {amp}");
            assert!(
                shift.abs() <= 1.0,
                "{from}->{to}: output off by {shift:.2} samples"
            );
            // A tone above the new Nyquist frequency is removed.
            if to < from {
                let above = tone(0.6 * f64::from(to), 0.5, from, n);
                let alias = resample(&above, from, to).expect("resample");
                let level = 20.0 * (rms(&alias[alias.len() / 8..]) / rms(&above)).log10();
                eprintln!("{from}->{to}: tone at 0.6 x {to} Hz comes out at {level:.1} dB");
                assert!(level < -50.0, "{from}->{to}: alias at {level:.1} dB");
            }
            // Streaming: output never lags the input by more than the latency.
            let mut r = StreamResampler::new(from, to).expect("new");
            let mut out = Vec::new();
            let chunk = from as usize / 50;
            for (i, c) in x.chunks(chunk).enumerate() {
                r.process(c, &mut out);
                let due = ((i + 1) * c.len()) as f64 * f64::from(to) / f64::from(from);
                assert!(
                    out.len() as f64 + r.latency_output_samples() as f64 >= due.floor(),
                    "{from}->{to}: {} out after {due} due",
                    out.len()
                );
            }
        }
    }
}
