//! From mono audio at the model's rate to one emotion result per window.
//!
//! This is the element's analysis loop without GStreamer: frames are computed
//! once each by [`FrameStream`] and kept in a buffer, windows of
//! `window_frames` frames are taken every `hop_frames` frames, windows with too
//! little speech ([`crate::speech`]: voice-band energy that rises above the
//! noise floor) are reported as silence instead of being classified, and the
//! rest go through the model. The trainer's evaluation runs clips through
//! [`classify_clip`], which is this same loop, so reported accuracy is the
//! accuracy of the element.

use std::sync::Arc;

use crate::features::{self, FrameStream, StreamBaseline, WindowNormalization};
use crate::model::{self, Model, ModelError};
use crate::speech::SpeechDetector;

/// Default hop between window starts, in seconds.
pub const DEFAULT_INTERVAL: f64 = 1.0;
/// Frames whose voice-band level (RMS, dBFS) is at or below this are not speech.
pub const DEFAULT_SPEECH_THRESHOLD_DB: f32 = -55.0;
/// The thresholds a user may set: from below any real signal to full scale.
pub const SPEECH_THRESHOLD_RANGE_DB: std::ops::RangeInclusive<f32> = -120.0..=0.0;
/// A window needs at least this fraction of speech frames to be classified.
pub const DEFAULT_MIN_SPEECH_RATIO: f32 = 0.2;

/// How windows are cut and gated. Frame counts are at the model's frame rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnalyzerSettings {
    pub window_frames: usize,
    pub hop_frames: usize,
    pub speech_threshold_db: f32,
    pub min_speech_ratio: f32,
}

impl AnalyzerSettings {
    /// The model's own window, a 1 s interval and the default speech gate.
    pub fn for_model(model: &Model) -> Self {
        let frame_rate = model.metadata().features.frame_rate();
        Self {
            window_frames: model.window_frames(),
            hop_frames: seconds_to_frames(DEFAULT_INTERVAL, frame_rate),
            speech_threshold_db: DEFAULT_SPEECH_THRESHOLD_DB,
            min_speech_ratio: DEFAULT_MIN_SPEECH_RATIO,
        }
    }
}

/// Largest clock time in nanoseconds (GStreamer reserves `u64::MAX` for "none").
pub const MAX_TIME_NS: u64 = u64::MAX - 1;

/// How long `samples` samples last at `rate` Hz, in nanoseconds, rounded down;
/// saturates at [`MAX_TIME_NS`] (0 for a rate of 0).
pub fn samples_to_ns(samples: u64, rate: u32) -> u64 {
    if rate == 0 {
        return 0;
    }
    let ns = u128::from(samples) * 1_000_000_000 / u128::from(rate);
    u64::try_from(ns).unwrap_or(MAX_TIME_NS).min(MAX_TIME_NS)
}

/// Samples in `ns` nanoseconds at `rate` Hz, rounded to the nearest; saturates.
pub fn ns_to_samples(ns: u64, rate: u32) -> u64 {
    let samples = (u128::from(ns) * u128::from(rate) + 500_000_000) / 1_000_000_000;
    u64::try_from(samples).unwrap_or(u64::MAX)
}

/// `base + samples_to_ns(samples, rate)`, saturating at [`MAX_TIME_NS`]:
/// extreme timestamps give the last representable time, never an overflow.
pub fn time_after(base_ns: u64, samples: u64, rate: u32) -> u64 {
    base_ns
        .saturating_add(samples_to_ns(samples, rate))
        .min(MAX_TIME_NS)
}

/// Whole frames in `seconds` at `frame_rate`, at least one.
pub fn seconds_to_frames(seconds: f64, frame_rate: f64) -> usize {
    ((seconds * frame_rate).round() as usize).max(1)
}

/// One analysed window. Frame `i` starts at sample `i * hop_length` of the
/// analysed stream (at the model's sample rate).
#[derive(Debug, Clone, Copy)]
pub struct WindowResult<'a> {
    pub start_frame: u64,
    pub n_frames: usize,
    /// Fraction of frames judged speech (see [`crate::speech`]).
    pub speech_ratio: f32,
    /// Softmax scores in label order; `None` when the window is silence.
    pub scores: Option<&'a [f32]>,
    /// The model's logits were NaN or infinite: `scores` are uniform and say
    /// nothing (report the window as uncertain, not as an emotion).
    pub non_finite: bool,
    /// Speech frames the stream's voice baseline had learnt from when this
    /// window was judged; `None` for models without one.
    pub voice_frames: Option<f64>,
}

impl WindowResult<'_> {
    /// Index and score of the best label, `None` for silence and for
    /// non-finite model output.
    pub fn top(&self) -> Option<(usize, f32)> {
        if self.non_finite {
            return None;
        }
        self.scores.and_then(argmax)
    }
}

/// Index and value of the largest score.
pub fn argmax(scores: &[f32]) -> Option<(usize, f32)> {
    scores
        .iter()
        .copied()
        .enumerate()
        .fold(None, |best, (i, s)| match best {
            Some((_, b)) if b >= s => best,
            _ => Some((i, s)),
        })
}

/// Shortest window a length-agnostic model is given; shorter ones are zero-padded
/// (zero is the mean of standardised features) so that pooling layers never
/// see an empty time axis.
pub const MIN_MODEL_FRAMES: usize = 32;

/// Whether a window with `speech_frames` of its `n_frames` frames judged
/// speech is classified; otherwise it is reported as silence.
pub fn is_speech_window(speech_frames: usize, n_frames: usize, min_speech_ratio: f32) -> bool {
    speech_frames > 0 && speech_frames as f32 / n_frames.max(1) as f32 >= min_speech_ratio
}

/// The windows (first frame, length) that [`EmotionAnalyzer`] analyses in a
/// stream of `n_frames` frames followed by end of stream: full windows every
/// `hop`, then the frames no window has covered yet (at most one window).
/// For callers that hold a clip's features already (the trainer).
pub fn clip_windows(n_frames: usize, window: usize, hop: usize) -> Vec<(usize, usize)> {
    let (window, hop) = (window.max(1), hop.max(1));
    let mut out = Vec::new();
    let mut next = 0;
    let mut analysed_until = 0;
    while next + window <= n_frames {
        out.push((next, window));
        analysed_until = next + window;
        next += hop;
    }
    if n_frames > analysed_until && n_frames > next {
        let n = (n_frames - next).min(window);
        out.push((n_frames - n, n));
    }
    out
}

/// What the stream knows about a window beyond its frames, for the
/// normalisations that use it.
#[derive(Clone, Copy, Debug, Default)]
pub struct WindowContext<'a> {
    /// The stream's voice baseline (see [`features::window_tensor_from`];
    /// empty for the model's prior).
    pub baseline: &'a [f32],
    /// Which of the window's frames are speech (see
    /// [`features::window_tensor_masked`]; empty for all).
    pub speech: &'a [bool],
}

/// The model's input for one window: `frames` (frame-major, `n_frames`
/// frames) normalised into channels-first `out` of `model_frames` frames,
/// zero padded after normalisation when the window is shorter. `packed` is
/// scratch of at least `n_features * n_frames` values.
pub fn window_input(
    cfg: &features::FeatureConfig,
    frames: &[f32],
    n_frames: usize,
    model_frames: usize,
    context: WindowContext<'_>,
    packed: &mut [f32],
    out: &mut [f32],
) {
    let WindowContext { baseline, speech } = context;
    let nf = cfg.n_features();
    let out = &mut out[..nf * model_frames];
    if model_frames == n_frames {
        features::window_tensor_masked(cfg, frames, n_frames, baseline, speech, out);
        return;
    }
    let packed = &mut packed[..nf * n_frames];
    features::window_tensor_masked(cfg, frames, n_frames, baseline, speech, packed);
    out.fill(0.0);
    for (dst, src) in out
        .chunks_exact_mut(model_frames)
        .zip(packed.chunks_exact(n_frames))
    {
        dst[..n_frames].copy_from_slice(src);
    }
}

/// Streaming analyser for one mono channel.
pub struct EmotionAnalyzer {
    model: Arc<Model>,
    settings: AnalyzerSettings,
    stream: FrameStream,
    n_features: usize,
    /// Frame-major features of frames `first_frame..received`, oldest first.
    frames: Vec<f32>,
    speech: SpeechDetector,
    /// Absolute index of the first buffered frame; may lie ahead of `received`
    /// when the interval is longer than the window (those frames are skipped).
    first_frame: u64,
    /// Absolute index of the next frame the feature stream will produce.
    received: u64,
    /// Absolute index of the next window's first frame.
    next_start: u64,
    /// One past the last frame a window has covered.
    analysed_until: u64,
    /// Model input `[n_features, frames]` and a packing buffer for padded windows.
    tensor: Vec<f32>,
    packed: Vec<f32>,
    scores: Vec<f32>,
    /// The voice's baseline (models with `SubtractStreamMean`), what it is
    /// now, and one past the last frame it has learnt from (windows overlap:
    /// each frame counts once).
    baseline: StreamBaseline,
    baseline_now: Vec<f32>,
    baseline_until: u64,
    speech_mask: Vec<bool>,
}

impl EmotionAnalyzer {
    pub fn new(model: Arc<Model>, settings: AnalyzerSettings) -> Result<Self, ModelError> {
        let invalid = |e: features::FeatureError| ModelError::Invalid {
            origin: model.origin().to_string(),
            problem: e.to_string(),
        };
        let stream = FrameStream::new(&model.metadata().features).map_err(invalid)?;
        let speech = SpeechDetector::new(&model.metadata().features, settings.speech_threshold_db)
            .map_err(invalid)?;
        let n_features = model.n_features();
        let settings = AnalyzerSettings {
            window_frames: model
                .fixed_frames()
                .unwrap_or(settings.window_frames)
                .max(1),
            hop_frames: settings.hop_frames.max(1),
            ..settings
        };
        let capacity = settings.window_frames.max(MIN_MODEL_FRAMES);
        let baseline = StreamBaseline::new(&model.metadata().features);
        Ok(Self {
            baseline,
            baseline_now: vec![0.0; n_features],
            baseline_until: 0,
            speech_mask: Vec::with_capacity(settings.window_frames),
            frames: Vec::with_capacity((settings.window_frames + 1) * n_features),
            speech,
            tensor: vec![0.0; capacity * n_features],
            packed: vec![0.0; capacity * n_features],
            scores: vec![0.0; model.n_labels()],
            model,
            settings,
            stream,
            n_features,
            first_frame: 0,
            received: 0,
            next_start: 0,
            analysed_until: 0,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn settings(&self) -> &AnalyzerSettings {
        &self.settings
    }

    /// Samples at the model's rate between the starts of two consecutive frames.
    pub fn hop_samples(&self) -> usize {
        self.model.metadata().features.hop_length
    }

    /// Forgets all audio (flush, seek, discontinuity); the next sample starts
    /// frame 0. The voice baseline stays: after a gap or a seek it is still
    /// the same call ([`Self::forget_voice`] for a new one).
    pub fn reset(&mut self) {
        self.stream.reset();
        self.frames.clear();
        self.speech.reset();
        self.first_frame = 0;
        self.received = 0;
        self.next_start = 0;
        self.analysed_until = 0;
        self.baseline_until = 0;
    }

    /// Forgets the voice baseline (a new stream: another call or file); the
    /// audio buffered so far is still analysed.
    pub fn forget_voice(&mut self) {
        self.baseline.reset();
    }

    /// Speech frames the voice baseline has learnt from.
    pub fn voice_frames(&self) -> f64 {
        self.baseline.speech_frames()
    }

    /// Feeds mono samples at the model's rate; calls `on_result` for every completed window.
    pub fn push(
        &mut self,
        samples: &[f32],
        mut on_result: impl FnMut(&WindowResult),
    ) -> Result<(), ModelError> {
        // The frame callback borrows the stream; the buffers live beside it.
        let Self {
            stream,
            frames,
            speech,
            first_frame,
            received,
            ..
        } = self;
        // The detector reads each frame from the feature stream (and its
        // spectrum, see `speech::VoiceBand`), so it holds a level for every
        // frame received.
        stream.push_frames(samples, |frame| {
            if *received >= *first_frame {
                frames.extend_from_slice(frame.features);
            }
            speech.push_frame(frame);
            *received += 1;
        });
        // Windows are cut once the chunk's frames are in: inference stays out of
        // the frame callback and results do not depend on how audio is chunked.
        while self.next_start + self.settings.window_frames as u64 <= self.received {
            let start = self.next_start;
            let end = start + self.settings.window_frames as u64;
            let result = self.analyse(start, self.settings.window_frames, &mut on_result);
            self.analysed_until = end;
            self.next_start += self.settings.hop_frames as u64;
            self.drop_before(self.next_start);
            result?;
        }
        Ok(())
    }

    /// At end of stream: analyses the frames no window has covered yet as one
    /// last window (shorter than usual if the stream was) ending at the last frame.
    pub fn flush(&mut self, mut on_result: impl FnMut(&WindowResult)) -> Result<(), ModelError> {
        let buffered = self.buffered_frames();
        if self.received <= self.analysed_until || buffered == 0 {
            return Ok(());
        }
        let n = buffered.min(self.settings.window_frames);
        let start = self.received - n as u64;
        let result = self.analyse(start, n, &mut on_result);
        self.analysed_until = self.received;
        self.next_start = self.received;
        self.drop_before(self.received);
        result
    }

    /// Drops buffered frames before absolute frame `frame`, which may lie ahead.
    fn drop_before(&mut self, frame: u64) {
        if frame <= self.first_frame {
            return;
        }
        let drop = ((frame - self.first_frame) as usize).min(self.buffered_frames());
        self.frames.drain(..drop * self.n_features);
        self.speech.forget_before(frame);
        self.first_frame = frame;
    }

    /// Frames whose features are buffered.
    fn buffered_frames(&self) -> usize {
        self.frames.len() / self.n_features
    }

    fn analyse(
        &mut self,
        start: u64,
        n_frames: usize,
        on_result: &mut impl FnMut(&WindowResult),
    ) -> Result<(), ModelError> {
        let offset = (start - self.first_frame) as usize;
        let nf = self.n_features;
        let cfg = &self.model.metadata().features;
        let speech_frames = self.speech.mark(start, n_frames, &mut self.speech_mask);
        if cfg.normalization == WindowNormalization::SubtractStreamMean {
            let end = start + n_frames as u64;
            let new_from = self.baseline_until.max(start);
            if new_from < end {
                let skip = (new_from - start) as usize;
                for (t, _) in self
                    .speech_mask
                    .iter()
                    .enumerate()
                    .skip(skip)
                    .filter(|m| *m.1)
                {
                    let i = offset + t;
                    self.baseline.add_frame(&self.frames[i * nf..(i + 1) * nf]);
                }
                self.baseline_until = end;
            }
            self.baseline.current(&mut self.baseline_now);
        }
        let speech_ratio = speech_frames as f32 / n_frames as f32;
        let voice_frames = (cfg.normalization == WindowNormalization::SubtractStreamMean)
            .then(|| self.baseline.speech_frames());
        if !is_speech_window(speech_frames, n_frames, self.settings.min_speech_ratio) {
            on_result(&WindowResult {
                start_frame: start,
                n_frames,
                speech_ratio,
                scores: None,
                non_finite: false,
                voice_frames,
            });
            return Ok(());
        }
        let window = &self.frames[offset * nf..(offset + n_frames) * nf];
        let model_frames = self
            .model
            .fixed_frames()
            .unwrap_or_else(|| n_frames.max(MIN_MODEL_FRAMES));
        window_input(
            cfg,
            window,
            n_frames,
            model_frames,
            WindowContext {
                baseline: &self.baseline_now,
                speech: &self.speech_mask,
            },
            &mut self.packed,
            &mut self.tensor,
        );
        let tensor = &self.tensor[..nf * model_frames];
        self.model
            .logits_into(tensor, 1, model_frames, &mut self.scores)?;
        let non_finite = self.scores.iter().any(|v| !v.is_finite());
        model::softmax(&mut self.scores);
        on_result(&WindowResult {
            start_frame: start,
            n_frames,
            speech_ratio,
            scores: Some(&self.scores),
            non_finite,
            voice_frames,
        });
        Ok(())
    }
}

/// Aggregates window results into one verdict for a clip or a whole stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Windows seen, and how many of them were speech.
    pub windows: usize,
    pub speech_windows: usize,
    /// Per label: fraction of speech windows whose top label it was.
    pub shares: Vec<f32>,
    /// Per label: mean score over speech windows.
    pub mean_scores: Vec<f32>,
}

impl Summary {
    /// The label with the highest mean score; `None` when no window held speech.
    pub fn dominant(&self) -> Option<usize> {
        if self.speech_windows == 0 {
            None
        } else {
            argmax(&self.mean_scores).map(|(i, _)| i)
        }
    }
}

/// Running sums behind a [`Summary`]; allocation-free per window.
#[derive(Debug, Clone)]
pub struct SummaryAccumulator {
    windows: usize,
    speech_windows: usize,
    top_counts: Vec<usize>,
    score_sums: Vec<f64>,
}

impl SummaryAccumulator {
    pub fn new(n_labels: usize) -> Self {
        Self {
            windows: 0,
            speech_windows: 0,
            top_counts: vec![0; n_labels],
            score_sums: vec![0.0; n_labels],
        }
    }

    /// Counts a window; silence and non-finite model output add no scores.
    pub fn add(&mut self, result: &WindowResult) {
        self.windows += 1;
        if result.non_finite {
            return;
        }
        if let Some(scores) = result.scores {
            self.speech_windows += 1;
            if let Some((top, _)) = argmax(scores) {
                self.top_counts[top] += 1;
            }
            for (sum, &s) in self.score_sums.iter_mut().zip(scores) {
                *sum += f64::from(s);
            }
        }
    }

    pub fn reset(&mut self) {
        self.windows = 0;
        self.speech_windows = 0;
        self.top_counts.iter_mut().for_each(|c| *c = 0);
        self.score_sums.iter_mut().for_each(|s| *s = 0.0);
    }

    pub fn summary(&self) -> Summary {
        let speech = self.speech_windows.max(1) as f64;
        Summary {
            windows: self.windows,
            speech_windows: self.speech_windows,
            shares: self
                .top_counts
                .iter()
                .map(|&c| (c as f64 / speech) as f32)
                .collect(),
            mean_scores: self
                .score_sums
                .iter()
                .map(|&s| (s / speech) as f32)
                .collect(),
        }
    }
}

/// Classifies a whole clip (mono, at the model's sample rate) exactly as the
/// element would analyse it as a stream: same windows, gate and aggregation.
pub fn classify_clip(
    model: &Arc<Model>,
    samples: &[f32],
    settings: &AnalyzerSettings,
) -> Result<Summary, ModelError> {
    let mut analyzer = EmotionAnalyzer::new(model.clone(), *settings)?;
    let mut acc = SummaryAccumulator::new(model.n_labels());
    analyzer.push(samples, |r| acc.add(r))?;
    analyzer.flush(|r| acc.add(r))?;
    Ok(acc.summary())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn time_arithmetic_never_overflows(base in any::<u64>(), samples in any::<u64>(), rate in 1u32..=1_000_000) {
            let t = time_after(base, samples, rate);
            prop_assert!(t <= MAX_TIME_NS);
            prop_assert!(t >= base.min(MAX_TIME_NS));
            // Monotone in the sample count.
            prop_assert!(time_after(base, samples.saturating_add(1), rate) >= t);
        }

        // Any count whose duration fits the clock (2^34 samples last >= 2^34 s > 500 years).
        #[test]
        fn samples_and_ns_round_trip(samples in 0u64..(1 << 34), rate in 1u32..=192_000) {
            let ns = samples_to_ns(samples, rate);
            prop_assert_eq!(ns_to_samples(ns, rate), samples);
        }

        #[test]
        fn seconds_to_frames_is_at_least_one(seconds in 0.0f64..1e6, frame_rate in 0.0f64..1e4) {
            let frames = seconds_to_frames(seconds, frame_rate);
            prop_assert!(frames >= 1);
            prop_assert!((frames as f64 - (seconds * frame_rate).round()).abs() <= 1.0 || frames == 1);
        }
    }

    #[test]
    fn the_analyser_cuts_the_windows_clip_windows_lists() {
        assert_eq!(clip_windows(99, 99, 50), vec![(0, 99)]);
        assert_eq!(
            clip_windows(150, 99, 50),
            vec![(0, 99), (50, 99), (100, 50)]
        );
        assert_eq!(clip_windows(60, 99, 50), vec![(0, 60)]);
        assert!(clip_windows(0, 99, 50).is_empty());

        let model = Model::default_model().unwrap();
        let cfg = model.metadata().features.clone();
        let settings = AnalyzerSettings::for_model(&model);
        for seconds in [0.7, 2.0, 3.3, 5.05] {
            let n = (seconds * f64::from(cfg.sample_rate)) as usize;
            // Any signal: silent windows are reported too, with their place.
            let audio: Vec<f32> = (0..n).map(|i| (i as f32 * 0.05).sin() * 0.1).collect();
            let n_frames = features::extract(&cfg, &audio).unwrap().n_frames;
            let mut analyzer = EmotionAnalyzer::new(model.clone(), settings).unwrap();
            let mut seen = Vec::new();
            for chunk in audio.chunks(777) {
                analyzer
                    .push(chunk, |r| seen.push((r.start_frame as usize, r.n_frames)))
                    .unwrap();
            }
            analyzer
                .flush(|r| seen.push((r.start_frame as usize, r.n_frames)))
                .unwrap();
            let s = analyzer.settings();
            assert_eq!(
                seen,
                clip_windows(n_frames, s.window_frames, s.hop_frames),
                "{seconds} s"
            );
        }
    }

    #[test]
    fn speech_windows_need_speech_and_the_ratio() {
        assert!(!is_speech_window(0, 100, 0.0));
        assert!(!is_speech_window(19, 100, 0.2));
        assert!(is_speech_window(20, 100, 0.2));
        assert!(is_speech_window(1, 1, 1.0));
    }

    #[test]
    fn extreme_times_saturate() {
        assert_eq!(time_after(MAX_TIME_NS, 1, 16000), MAX_TIME_NS);
        assert_eq!(time_after(u64::MAX, 0, 16000), MAX_TIME_NS);
        assert_eq!(samples_to_ns(u64::MAX, 1), MAX_TIME_NS);
        assert_eq!(samples_to_ns(16000, 0), 0);
        assert_eq!(samples_to_ns(16000, 16000), 1_000_000_000);
    }
}
