//! From mono audio at the model's rate to one emotion result per window.
//!
//! This is the element's analysis loop without GStreamer: frames are computed
//! once each by [`FrameStream`] and kept in a buffer, windows of
//! `window_frames` frames are taken every `hop_frames` frames, windows with too
//! little speech are reported as silence instead of being classified, and the
//! rest go through the model. The trainer's evaluation runs clips through
//! [`classify_clip`], which is this same loop, so reported accuracy is the
//! accuracy of the element.

use std::sync::Arc;

use crate::features::{self, FrameStream};
use crate::model::{self, Model, ModelError};

/// Default hop between window starts, in seconds.
pub const DEFAULT_INTERVAL: f64 = 1.0;
/// Frames quieter than this (RMS, dBFS) are not speech.
pub const DEFAULT_SPEECH_THRESHOLD_DB: f32 = -55.0;
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
    /// Fraction of frames above the speech threshold.
    pub speech_ratio: f32,
    /// Softmax scores in label order; `None` when the window is silence.
    pub scores: Option<&'a [f32]>,
}

impl WindowResult<'_> {
    /// Index and score of the best label, `None` for silence.
    pub fn top(&self) -> Option<(usize, f32)> {
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

/// Streaming analyser for one mono channel.
pub struct EmotionAnalyzer {
    model: Arc<Model>,
    settings: AnalyzerSettings,
    stream: FrameStream,
    n_features: usize,
    /// Frame-major features of frames `first_frame..received`, oldest first.
    frames: Vec<f32>,
    speech: Vec<bool>,
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
}

impl EmotionAnalyzer {
    pub fn new(model: Arc<Model>, settings: AnalyzerSettings) -> Result<Self, ModelError> {
        let stream =
            FrameStream::new(&model.metadata().features).map_err(|e| ModelError::Invalid {
                origin: model.origin().to_string(),
                problem: e.to_string(),
            })?;
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
        Ok(Self {
            frames: Vec::with_capacity((settings.window_frames + 1) * n_features),
            speech: Vec::with_capacity(settings.window_frames + 1),
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

    /// Forgets all audio (flush, seek, discontinuity); the next sample starts frame 0.
    pub fn reset(&mut self) {
        self.stream.reset();
        self.frames.clear();
        self.speech.clear();
        self.first_frame = 0;
        self.received = 0;
        self.next_start = 0;
        self.analysed_until = 0;
    }

    /// Feeds mono samples at the model's rate; calls `on_result` for every completed window.
    pub fn push(
        &mut self,
        samples: &[f32],
        mut on_result: impl FnMut(&WindowResult),
    ) -> Result<(), ModelError> {
        let threshold = self.settings.speech_threshold_db;
        // The frame callback borrows the stream; the buffers live beside it.
        let Self {
            stream,
            frames,
            speech,
            first_frame,
            received,
            ..
        } = self;
        stream.push(samples, |frame, rms_db| {
            if *received >= *first_frame {
                frames.extend_from_slice(frame);
                speech.push(rms_db > threshold);
            }
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
        if self.received <= self.analysed_until || self.speech.is_empty() {
            return Ok(());
        }
        let n = self.speech.len().min(self.settings.window_frames);
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
        let drop = ((frame - self.first_frame) as usize).min(self.speech.len());
        self.frames.drain(..drop * self.n_features);
        self.speech.drain(..drop);
        self.first_frame = frame;
    }

    fn analyse(
        &mut self,
        start: u64,
        n_frames: usize,
        on_result: &mut impl FnMut(&WindowResult),
    ) -> Result<(), ModelError> {
        let offset = (start - self.first_frame) as usize;
        let speech_frames = self.speech[offset..offset + n_frames]
            .iter()
            .filter(|&&s| s)
            .count();
        let speech_ratio = speech_frames as f32 / n_frames as f32;
        if speech_frames == 0 || speech_ratio < self.settings.min_speech_ratio {
            on_result(&WindowResult {
                start_frame: start,
                n_frames,
                speech_ratio,
                scores: None,
            });
            return Ok(());
        }
        let nf = self.n_features;
        let window = &self.frames[offset * nf..(offset + n_frames) * nf];
        let cfg = &self.model.metadata().features;
        let model_frames = self
            .model
            .fixed_frames()
            .unwrap_or_else(|| n_frames.max(MIN_MODEL_FRAMES));
        let tensor = &mut self.tensor[..nf * model_frames];
        if model_frames == n_frames {
            features::window_tensor(cfg, window, n_frames, tensor);
        } else {
            let packed = &mut self.packed[..nf * n_frames];
            features::window_tensor(cfg, window, n_frames, packed);
            tensor.fill(0.0);
            for (dst, src) in tensor
                .chunks_exact_mut(model_frames)
                .zip(packed.chunks_exact(n_frames))
            {
                dst[..n_frames].copy_from_slice(src);
            }
        }
        self.model
            .logits_into(tensor, 1, model_frames, &mut self.scores)?;
        model::softmax(&mut self.scores);
        on_result(&WindowResult {
            start_frame: start,
            n_frames,
            speech_ratio,
            scores: Some(&self.scores),
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

    pub fn add(&mut self, result: &WindowResult) {
        self.windows += 1;
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
