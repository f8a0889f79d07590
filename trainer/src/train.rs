//! Feature windows and the training loop.
//!
//! Every clip is turned into features once (training clips also as several
//! augmented copies), so an epoch only crops windows out of precomputed
//! frame matrices: that keeps epochs to seconds on two cores. Crops and the
//! validation windows go through `features::window_tensor`, the transform the
//! element applies, and validation classifies clips the way the element does
//! (windows every second, speech gating, mean of window probabilities).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use burn::module::Module;
use burn::nn::LinearConfig;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::{log_softmax, softmax};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_distr::Distribution;
use rand_distr::weighted::WeightedAliasIndex;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use seremotion_core::analysis::{
    self, DEFAULT_MIN_SPEECH_RATIO, DEFAULT_SPEECH_THRESHOLD_DB, MIN_MODEL_FRAMES, WindowContext,
};
use seremotion_core::features::{self, FeatureConfig, StreamBaseline, WindowNormalization};
use seremotion_core::model;
use seremotion_core::speech;

use crate::metrics::Metrics;
use crate::net::{Classifier, EmotionCnn, Ensemble, NetConfig};

/// Features of one rendition (clean or augmented) of a clip.
#[derive(Clone, Debug)]
pub struct Utterance {
    /// Frame-major, `n_frames * n_features`.
    pub frames: Vec<f32>,
    pub n_frames: usize,
    /// Per frame: the speech detector's band level (dB), from which windows
    /// are judged exactly as the element judges them.
    pub levels: Vec<f32>,
    /// Per frame: speech, judged with the window that starts there (chooses
    /// training crops).
    pub speech: Vec<bool>,
}

impl Utterance {
    /// `window_frames`: the model window, the span the element judges a
    /// frame's speech in (with the seconds before it).
    pub fn from_audio(cfg: &FeatureConfig, audio: &[f32], window_frames: usize) -> Result<Self> {
        let m = features::extract(cfg, audio).map_err(|e| anyhow::anyhow!("features: {e}"))?;
        let mut levels =
            speech::band_levels(cfg, audio).map_err(|e| anyhow::anyhow!("speech decision: {e}"))?;
        // The same framing gives one level per feature frame; guard anyway.
        levels.resize(m.n_frames, speech::SILENT_DB);
        let speech = speech::speech_mask(cfg, &levels, DEFAULT_SPEECH_THRESHOLD_DB, window_frames);
        Ok(Self {
            levels,
            speech,
            frames: m.data,
            n_frames: m.n_frames,
        })
    }
}

/// All renditions of one labelled clip; `versions[0]` is the clean one.
/// Renditions are shared, so cross-validation folds and recipes reuse one
/// feature computation.
#[derive(Clone, Debug)]
pub struct ClipFeatures {
    pub label: usize,
    pub corpus: String,
    pub speaker: String,
    /// Counts in validation and test scores (false for ASED sentences that
    /// are spoken in one emotion only: their words give the label away).
    pub scored: bool,
    pub versions: Vec<Arc<Utterance>>,
}

/// Knobs of one training run; serialised into the report.
#[derive(Clone, Debug, Serialize)]
pub struct TrainConfig {
    pub seed: u64,
    pub max_epochs: usize,
    pub batch_size: usize,
    /// Windows drawn per epoch (weighted sampling with replacement).
    pub samples_per_epoch: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub label_smoothing: f32,
    /// Epochs without a better validation UA before stopping.
    pub early_stop_patience: usize,
    /// First epoch whose weights may be kept (1 = any). Earlier epochs still
    /// drive the learning-rate steps and early stopping, but training runs
    /// until at least this epoch, so a validation peak while the learning
    /// rate is still high cannot end it.
    pub first_checkpoint_epoch: usize,
    /// Epochs without improvement before the learning rate is multiplied by `lr_factor`.
    pub lr_patience: usize,
    pub lr_factor: f64,
    pub min_lr: f64,
    /// Frames in a full window (the model's window).
    pub window_frames: usize,
    /// Frames between validation window starts (the element's 1 s interval).
    pub hop_frames: usize,
    /// Fraction of batches cut shorter than a full window, as the element's
    /// last window at end of stream is.
    pub short_window_fraction: f64,
    /// SpecAugment-style masks of every training window (its fields sit
    /// flat in the report, as they always have).
    #[serde(flatten)]
    pub spec_masks: SpecMasks,
    /// Per-batch decay of the exponential moving average of the weights that
    /// is validated and exported (0 = the raw weights). The average moves
    /// less between epochs than the raw weights, so the checkpoint chosen on
    /// a handful of validation speakers is less a matter of luck.
    pub weight_average_decay: f64,
    /// Mixup strength: each batch is blended with a shuffled copy of itself
    /// with weight lambda ~ Beta(alpha, alpha), and the loss blends both
    /// labels the same way (0 = off). Training on in-between windows smooths
    /// the decision boundaries, which may help on unheard speakers.
    pub mixup_alpha: f64,
    /// Learning rate of each epoch, for a refit: exactly these epochs run,
    /// with no early stopping, and the last one is the outcome (validation,
    /// if any, is only reported).
    pub fixed_schedule: Option<Vec<f64>>,
    /// With a voice baseline: the validation UA is the mean of the clip by
    /// clip UA and the UA of each validation speaker's clips heard as one
    /// stream, so the checkpoint suits calls as well as lone clips.
    pub validate_streams: bool,
    /// Strength of a speaker adversary (0 = off): a linear classifier learns
    /// which training speaker each window's pooled vector comes from, and the
    /// network is trained against it through a gradient reversal (Ganin and
    /// Lempitsky 2015), so that what it keeps of a window tells the emotion
    /// and as little as it can of whose voice it is. The strength ramps up
    /// from 0 over training; the classifier is never exported.
    pub speaker_adversary: f64,
    /// Each corpus's share of the training windows.
    pub corpus_shares: CorpusShares,
    pub net: NetConfig,
}

/// One epoch's numbers, kept for the report.
#[derive(Clone, Debug, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f32,
    pub train_accuracy: f32,
    pub val_ua: f32,
    pub val_ua_per_corpus: Vec<(String, f32)>,
    /// Mean cross-entropy of the speaker adversary's guesses (absent when it
    /// is off); near the log of the speaker count when the windows' pooled
    /// vectors carry no trace of the voice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speaker_loss: Option<f32>,
    pub lr: f64,
    pub seconds: f64,
}

/// What one epoch's validation UA decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Verdict {
    /// Keep this epoch's weights (the best eligible epoch so far).
    keep: bool,
    /// Lower the learning rate (no better epoch for `lr_patience` epochs).
    lower_lr: bool,
    /// Stop training (no better epoch for `early_stop_patience` epochs, and
    /// some epoch has been kept).
    stop: bool,
}

/// Early stopping, learning-rate steps and the checkpoint, from validation
/// UA epoch by epoch. The steps and the patience follow the best epoch of
/// all; the checkpoint is the best epoch from `first_checkpoint_epoch` on.
struct Selection {
    first_checkpoint_epoch: usize,
    early_stop_patience: usize,
    lr_patience: usize,
    best_seen: f32,
    best_kept: Option<f32>,
    since_best: usize,
    since_lr: usize,
}

impl Selection {
    fn new(first_checkpoint_epoch: usize, early_stop_patience: usize, lr_patience: usize) -> Self {
        Selection {
            first_checkpoint_epoch,
            early_stop_patience,
            lr_patience,
            best_seen: f32::NEG_INFINITY,
            best_kept: None,
            since_best: 0,
            since_lr: 0,
        }
    }

    fn observe(&mut self, epoch: usize, val_ua: f32) -> Verdict {
        let keep =
            epoch >= self.first_checkpoint_epoch && self.best_kept.is_none_or(|b| val_ua > b);
        if keep {
            self.best_kept = Some(val_ua);
        }
        let improved = val_ua > self.best_seen;
        if improved {
            self.best_seen = val_ua;
            self.since_best = 0;
            self.since_lr = 0;
        } else {
            self.since_best += 1;
            self.since_lr += 1;
        }
        // Never stop before a checkpoint could be kept; a stopping epoch
        // does not also lower the rate.
        let stop =
            !improved && self.since_best >= self.early_stop_patience && self.best_kept.is_some();
        let lower_lr = !improved && !stop && self.since_lr >= self.lr_patience;
        if lower_lr {
            self.since_lr = 0;
        }
        Verdict {
            keep,
            lower_lr,
            stop,
        }
    }
}

pub struct TrainOutcome {
    /// Best model on validation UA, in inference mode.
    pub model: EmotionCnn,
    pub best_epoch: usize,
    pub best_val_ua: f32,
    pub history: Vec<EpochLog>,
}

/// Which frames of `u`'s window `start..start + n` are speech, judged as
/// the element judges them (the seconds before the window included), into
/// `mask`; left empty (every frame counts) unless `cfg`'s normalisation
/// asks for it, so other recipes do no extra work.
fn window_speech(
    cfg: &FeatureConfig,
    u: &Utterance,
    start: usize,
    n: usize,
    scratch: &mut Vec<f32>,
    mask: &mut Vec<bool>,
) {
    mask.clear();
    if cfg.normalization == WindowNormalization::SubtractSpeechMean {
        speech::window_speech_mask(
            &u.levels,
            start,
            n,
            speech::history_frames(cfg),
            DEFAULT_SPEECH_THRESHOLD_DB,
            scratch,
            mask,
        );
    }
}

/// Global per-row mean and standard deviation of windows after the window
/// normalisation, over the clean training renditions: these become
/// `FeatureConfig::mean`/`std` so the network sees unit-scale inputs.
pub fn feature_stats(
    cfg: &FeatureConfig,
    clips: &[ClipFeatures],
    window_frames: usize,
) -> (Vec<f32>, Vec<f32>) {
    let nf = cfg.n_features();
    let mut plain = cfg.clone();
    plain.mean.clear();
    plain.std.clear();
    let mut sum = vec![0f64; nf];
    let mut sq = vec![0f64; nf];
    let mut count = 0f64;
    let mut buf = Vec::new();
    // Stream normalisation: every window against its speaker's whole voice,
    // the baseline a call settles on.
    let voices = speaker_voices(clips, nf);
    let mut baseline = vec![0f32; nf];
    let (mut scratch, mut speech) = (Vec::new(), Vec::new());
    for clip in clips {
        let u = &clip.versions[0];
        if cfg.normalization == WindowNormalization::SubtractStreamMean {
            let mut voice = StreamBaseline::new(cfg);
            let (s, n) = &voices[&(clip.corpus.as_str(), clip.speaker.as_str())];
            voice.add_sums(s, *n);
            voice.current(&mut baseline);
        }
        let mut start = 0;
        // Non-overlapping windows (whole clip when shorter) like the element cuts them.
        while start < u.n_frames {
            let n = window_frames.min(u.n_frames - start);
            if n < MIN_MODEL_FRAMES && start > 0 {
                break;
            }
            buf.resize(n * nf, 0.0);
            window_speech(&plain, u, start, n, &mut scratch, &mut speech);
            features::window_tensor_masked(
                &plain,
                &u.frames[start * nf..(start + n) * nf],
                n,
                &baseline,
                &speech,
                &mut buf,
            );
            for (f, row) in buf.chunks_exact(n).enumerate() {
                for &x in row {
                    sum[f] += f64::from(x);
                    sq[f] += f64::from(x) * f64::from(x);
                }
            }
            count += n as f64;
            start += window_frames;
        }
    }
    let count = count.max(1.0);
    let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
    let std: Vec<f32> = sum
        .iter()
        .zip(&sq)
        .map(|(s, q)| {
            let m = s / count;
            ((q / count - m * m).max(0.0).sqrt() as f32).max(1e-3)
        })
        .collect();
    (mean, std)
}

/// Per-row sums and count of the speech frames among a rendition's first
/// `upto` frames (its per-frame speech decision).
fn speech_sums(u: &Utterance, nf: usize, upto: usize) -> (Vec<f64>, f64) {
    let mut sum = vec![0f64; nf];
    let mut n = 0f64;
    let upto = upto.min(u.n_frames);
    for (frame, _) in u.frames[..upto * nf]
        .chunks_exact(nf)
        .zip(&u.speech)
        .filter(|(_, s)| **s)
    {
        sum.iter_mut()
            .zip(frame)
            .for_each(|(s, &x)| *s += f64::from(x));
        n += 1.0;
    }
    (sum, n)
}

/// Speech-frame sums of each (corpus, speaker) over its clean renditions.
fn speaker_voices(clips: &[ClipFeatures], nf: usize) -> HashMap<(&str, &str), (Vec<f64>, f64)> {
    let mut voices: HashMap<(&str, &str), (Vec<f64>, f64)> = HashMap::new();
    for c in clips {
        let u = &c.versions[0];
        let (sum, n) = speech_sums(u, nf, u.n_frames);
        let entry = voices
            .entry((c.corpus.as_str(), c.speaker.as_str()))
            .or_insert_with(|| (vec![0.0; nf], 0.0));
        entry.0.iter_mut().zip(&sum).for_each(|(a, b)| *a += b);
        entry.1 += n;
    }
    voices
}

/// The baseline a stream starts from: the mean speech frame of the training
/// voices, each voice weighing the same (not each frame: TESS's two voices
/// would otherwise be a third of it).
pub fn stream_prior(clips: &[ClipFeatures], nf: usize) -> Vec<f32> {
    let voices = speaker_voices(clips, nf);
    let mut prior = vec![0f64; nf];
    let mut n = 0f64;
    for (sum, frames) in voices.values().filter(|v| v.1 > 0.0) {
        prior
            .iter_mut()
            .zip(sum)
            .for_each(|(p, s)| *p += s / frames);
        n += 1.0;
    }
    prior.iter().map(|p| (p / n.max(1.0)) as f32).collect()
}

/// Fits what the model's front end learns from the training clips: the
/// stream prior (with `SubtractStreamMean`, weighing `prior_seconds` of
/// speech), then the global mean/std of the normalised windows.
pub fn fit_normalisation(
    cfg: &mut FeatureConfig,
    clips: &[ClipFeatures],
    window_frames: usize,
    prior_seconds: f64,
) {
    if cfg.normalization == WindowNormalization::SubtractStreamMean {
        cfg.stream_prior = stream_prior(clips, cfg.n_features());
        cfg.stream_prior_frames = (prior_seconds * cfg.frame_rate()) as f32;
    } else {
        cfg.stream_prior.clear();
        cfg.stream_prior_frames = 0.0;
    }
    let (mean, std) = feature_stats(cfg, clips, window_frames);
    cfg.mean = mean;
    cfg.std = std;
}

/// How a stream's voice baseline is simulated for a training crop: with this
/// chance the crop's clip is heard alone (a call's first words, or `eval`
/// clip by clip), else after up to [`MAX_HISTORY_CLIPS`] other clips of the
/// same speaker.
const NO_HISTORY_CHANCE: f64 = 0.3;
const MAX_HISTORY_CLIPS: usize = 24;

/// What a voice baseline needs of the training set, computed once: each
/// clip's clean speech sums, the mean speech frame of each of its renditions
/// (what augmentation did to the whole "call": gain, line, noise), and each
/// speaker's clips.
struct VoiceHistory {
    /// A stream that has heard nothing yet (the model's prior).
    empty: StreamBaseline,
    clean: Vec<(Vec<f64>, f64)>,
    rendition_means: Vec<Vec<Vec<f32>>>,
    speaker_clips: Vec<Arc<Vec<usize>>>,
}

impl VoiceHistory {
    fn new(cfg: &FeatureConfig, clips: &[ClipFeatures]) -> Self {
        let nf = cfg.n_features();
        let clean: Vec<(Vec<f64>, f64)> = clips
            .iter()
            .map(|c| speech_sums(&c.versions[0], nf, c.versions[0].n_frames))
            .collect();
        let rendition_means = clips
            .iter()
            .map(|c| {
                c.versions
                    .iter()
                    .map(|u| {
                        let (sum, n) = speech_sums(u, nf, u.n_frames);
                        let (sum, n) = if n > 0.0 {
                            (sum, n)
                        } else {
                            // No speech frame: the rendition's mean frame.
                            let mut all = vec![0f64; nf];
                            for f in u.frames.chunks_exact(nf) {
                                all.iter_mut().zip(f).for_each(|(a, &x)| *a += f64::from(x));
                            }
                            (all, u.n_frames.max(1) as f64)
                        };
                        sum.iter().map(|s| (s / n) as f32).collect()
                    })
                    .collect()
            })
            .collect();
        let mut by_voice: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for (i, c) in clips.iter().enumerate() {
            by_voice
                .entry((c.corpus.as_str(), c.speaker.as_str()))
                .or_default()
                .push(i);
        }
        let by_voice: HashMap<(&str, &str), Arc<Vec<usize>>> = by_voice
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
        let speaker_clips = clips
            .iter()
            .map(|c| by_voice[&(c.corpus.as_str(), c.speaker.as_str())].clone())
            .collect();
        Self {
            empty: StreamBaseline::new(cfg),
            clean,
            rendition_means,
            speaker_clips,
        }
    }

    /// The baseline of rendition `version` of clip `clip` at frame `end`:
    /// the clip's own speech so far, after (by chance) some of the speaker's
    /// other clips heard through the same channel as this rendition.
    fn baseline(
        &self,
        clips: &[ClipFeatures],
        (clip, version): (usize, usize),
        end: usize,
        rng: &mut StdRng,
        out: &mut [f32],
    ) {
        let nf = out.len();
        let mut voice = self.empty.clone();
        let others = &self.speaker_clips[clip];
        if others.len() > 1 && rng.random::<f64>() >= NO_HISTORY_CHANCE {
            let k = rng.random_range(1..=(others.len() - 1).min(MAX_HISTORY_CLIPS));
            let mut sum = vec![0f64; nf];
            let mut n = 0f64;
            for &j in others
                .choose_multiple(rng, k + 1)
                .filter(|&&j| j != clip)
                .take(k)
            {
                sum.iter_mut()
                    .zip(&self.clean[j].0)
                    .for_each(|(a, b)| *a += b);
                n += self.clean[j].1;
            }
            // The other clips as this rendition's channel would have made
            // them: log-mel rows shift by what it did to this clip's speech.
            let means = &self.rendition_means[clip];
            for ((a, &m), &m0) in sum.iter_mut().zip(&means[version]).zip(&means[0]) {
                *a += n * f64::from(m - m0);
            }
            voice.add_sums(&sum, n);
        }
        let (own, n) = speech_sums(&clips[clip].versions[version], nf, end);
        voice.add_sums(&own, n);
        voice.current(out);
    }
}

/// Clip-level predictions exactly as `eval` and the element make them: the
/// core's windows, speech decision, voice baseline, input padding and
/// softmax, scores averaged over the speech windows. A clip without a speech
/// window gets no label (`n_labels`, counted as an error, as in `eval`).
/// With `voice_streams`, each speaker's clips are heard in the given order as
/// one stream, so the voice baseline carries from clip to clip (as `eval
/// --streams speaker` plays them); otherwise every clip is a stream of its own.
pub fn predict_clips(
    model: &impl Classifier,
    cfg: &FeatureConfig,
    clips: &[ClipFeatures],
    window: usize,
    hop: usize,
    n_labels: usize,
    voice_streams: bool,
) -> Vec<usize> {
    let logits = clip_window_logits(model, cfg, clips, window, hop, n_labels, voice_streams);
    decide_clips(&logits, n_labels, &[])
}

/// Each clip's label from its windows' logits (see [`clip_window_logits`])
/// plus `offsets` (empty: none): the argmax of the mean softmax, `n_labels`
/// (an error) for a clip without a speech window.
pub fn decide_clips(
    window_logits: &[Option<Vec<f32>>],
    n_labels: usize,
    offsets: &[f32],
) -> Vec<usize> {
    window_logits
        .iter()
        .map(|logits| {
            logits.as_ref().map_or(n_labels, |l| {
                mean_softmax(l, n_labels, offsets)
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i)
            })
        })
        .collect()
}

/// Each clip's mean softmax over its speech windows (the element's summary
/// `mean-scores`), `None` for a clip without a speech window; the scores
/// behind [`predict_clips`].
pub fn clip_scores(
    model: &impl Classifier,
    cfg: &FeatureConfig,
    clips: &[ClipFeatures],
    window: usize,
    hop: usize,
    n_labels: usize,
    voice_streams: bool,
) -> Vec<Option<Vec<f32>>> {
    clip_window_logits(model, cfg, clips, window, hop, n_labels, voice_streams)
        .into_iter()
        .map(|logits| logits.map(|l| mean_softmax(&l, n_labels, &[])))
        .collect()
}

/// Mean over windows of the softmax of each window's logits (`n_labels` a
/// window, one after the other) plus `offsets` (empty: none).
pub fn mean_softmax(window_logits: &[f32], n_labels: usize, offsets: &[f32]) -> Vec<f32> {
    let mut sums = vec![0f32; n_labels];
    let mut p = vec![0f32; n_labels];
    let rows = window_logits.chunks_exact(n_labels);
    let n = rows.len().max(1);
    for row in rows {
        p.copy_from_slice(row);
        p.iter_mut().zip(offsets).for_each(|(p, o)| *p += o);
        model::softmax(&mut p);
        sums.iter_mut().zip(&p).for_each(|(s, p)| *s += p);
    }
    sums.iter_mut().for_each(|s| *s /= n as f32);
    sums
}

/// The logits of each clip's speech windows, `n_labels` a window in stream
/// order (`None` for a clip without a speech window): the windows the
/// element would classify, chosen as for [`clip_scores`].
pub fn clip_window_logits(
    model: &impl Classifier,
    cfg: &FeatureConfig,
    clips: &[ClipFeatures],
    window: usize,
    hop: usize,
    n_labels: usize,
    voice_streams: bool,
) -> Vec<Option<Vec<f32>>> {
    let device = Device::flex();
    let model = model.valid().to_device(&device);
    let nf = cfg.n_features();
    let stream_mean = cfg.normalization == WindowNormalization::SubtractStreamMean;
    let speech_mean = cfg.normalization == WindowNormalization::SubtractSpeechMean;
    let mut packed = vec![0f32; nf * window.max(MIN_MODEL_FRAMES)];
    let history = speech::history_frames(cfg);
    let mut scratch = Vec::new();
    let mut mask = Vec::new();
    let mut voices: HashMap<(&str, &str), StreamBaseline> = HashMap::new();
    let mut baseline = vec![0f32; nf];
    let mut preds = Vec::with_capacity(clips.len());
    for clip in clips {
        let u = &clip.versions[0];
        let key = (clip.corpus.as_str(), clip.speaker.as_str());
        let mut voice = match voices.remove(&key) {
            Some(v) if voice_streams => v,
            _ => StreamBaseline::new(cfg),
        };
        // Windows in stream order; the baseline learns each frame once.
        let mut learnt_until = 0;
        // Start, length, baseline and speech mask of each window to score.
        let mut chosen: Vec<(usize, usize, Vec<f32>, Vec<bool>)> = Vec::new();
        for (s, n) in analysis::clip_windows(u.n_frames, window, hop) {
            let speech = speech::window_speech_mask(
                &u.levels,
                s,
                n,
                history,
                DEFAULT_SPEECH_THRESHOLD_DB,
                &mut scratch,
                &mut mask,
            );
            if stream_mean {
                for t in learnt_until.max(s)..s + n {
                    if mask[t - s] {
                        voice.add_frame(&u.frames[t * nf..(t + 1) * nf]);
                    }
                }
                learnt_until = s + n;
                voice.current(&mut baseline);
            }
            if analysis::is_speech_window(speech, n, DEFAULT_MIN_SPEECH_RATIO) {
                chosen.push((
                    s,
                    n,
                    if stream_mean {
                        baseline.clone()
                    } else {
                        Vec::new()
                    },
                    if speech_mean {
                        mask.clone()
                    } else {
                        Vec::new()
                    },
                ));
            }
        }
        voices.insert(key, voice);
        if chosen.is_empty() {
            preds.push(None);
            continue;
        }
        let mut window_logits = vec![0f32; chosen.len() * n_labels];
        // Windows of equal length go through the network as one batch.
        let mut lengths: Vec<usize> = chosen.iter().map(|w| w.1).collect();
        lengths.sort_unstable();
        lengths.dedup();
        for len in lengths {
            let model_frames = len.max(MIN_MODEL_FRAMES);
            let group: Vec<usize> = (0..chosen.len()).filter(|&i| chosen[i].1 == len).collect();
            let mut input = vec![0f32; group.len() * nf * model_frames];
            for (&i, out) in group.iter().zip(input.chunks_exact_mut(nf * model_frames)) {
                let w = &chosen[i];
                let frames = &u.frames[w.0 * nf..(w.0 + w.1) * nf];
                let context = WindowContext {
                    baseline: &w.2,
                    speech: &w.3,
                };
                analysis::window_input(cfg, frames, w.1, model_frames, context, &mut packed, out);
            }
            let x = Tensor::<3>::from_data(
                TensorData::new(input, [group.len(), nf, model_frames]),
                &device,
            );
            let logits: Vec<f32> = model
                .logits(x)
                .into_data()
                .try_into_vec::<f32>()
                .unwrap_or_default();
            for (&i, row) in group.iter().zip(logits.chunks_exact(n_labels)) {
                window_logits[i * n_labels..(i + 1) * n_labels].copy_from_slice(row);
            }
        }
        preds.push(Some(window_logits));
    }
    preds
}

/// Validation UA: mean over corpora of each corpus's UA, so that the large,
/// easy TESS does not hide the harder corpora. Also returns per-corpus UA.
/// Clips that are not `scored` (ASED's emotion-specific sentences) count in
/// neither.
pub fn validation_ua(
    clips: &[ClipFeatures],
    preds: &[usize],
    n_labels: usize,
) -> (f32, Vec<(String, f32)>) {
    let mut corpora: Vec<String> = clips
        .iter()
        .filter(|c| c.scored)
        .map(|c| c.corpus.clone())
        .collect();
    corpora.sort();
    corpora.dedup();
    let per: Vec<(String, f32)> = corpora
        .into_iter()
        .map(|corpus| {
            let (truth, pred): (Vec<usize>, Vec<usize>) = clips
                .iter()
                .zip(preds)
                .filter(|(c, _)| c.scored && c.corpus == corpus)
                .map(|(c, &p)| (c.label, p))
                .unzip();
            let ua = Metrics::from_predictions(n_labels, &truth, &pred).unweighted_accuracy as f32;
            (corpus, ua)
        })
        .collect();
    let mean = if per.is_empty() {
        0.0
    } else {
        per.iter().map(|p| p.1).sum::<f32>() / per.len() as f32
    };
    (mean, per)
}

/// How much of each batch a corpus gets.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum CorpusShares {
    /// In proportion to the square root of its number of speakers: TESS's
    /// 1600 clips of two voices do not drown ASED's 57 voices, nor do 57
    /// voices drown the rest.
    #[default]
    SqrtSpeakers,
    /// The same for every corpus: the few voices of nEMO and SAVEE weigh as
    /// much as ASED's many (each of their voices is seen more often).
    Equal,
}

impl CorpusShares {
    /// The sentence reports give a run that did not use the default shares.
    pub fn note(self) -> Option<&'static str> {
        match self {
            CorpusShares::SqrtSpeakers => None,
            CorpusShares::Equal => Some(
                "Every corpus had the same share of the training windows (not in \
                 proportion to the square root of its speakers).",
            ),
        }
    }
}

/// The `--corpus-shares` value (clap shows the default with it).
impl std::fmt::Display for CorpusShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::fmt_value_enum(self, f)
    }
}

/// Sampling weight per clip, so that voices rather than clips are what a
/// batch is made of: corpora get `shares`, every speaker the same share
/// within its corpus, and every emotion the same share within its speaker.
pub fn sampling_weights(clips: &[ClipFeatures], shares: CorpusShares) -> Vec<f64> {
    let mut cell: HashMap<(&str, &str, usize), usize> = HashMap::new();
    let mut emotions_of: HashMap<(&str, &str), usize> = HashMap::new();
    let mut speakers_of: HashMap<&str, usize> = HashMap::new();
    for c in clips {
        *cell.entry((&c.corpus, &c.speaker, c.label)).or_default() += 1;
    }
    for &(corpus, speaker, _) in cell.keys() {
        *emotions_of.entry((corpus, speaker)).or_default() += 1;
    }
    for &(corpus, _) in emotions_of.keys() {
        *speakers_of.entry(corpus).or_default() += 1;
    }
    clips
        .iter()
        .map(|c| {
            let n_speakers = speakers_of[c.corpus.as_str()] as f64;
            let n_emotions = emotions_of[&(c.corpus.as_str(), c.speaker.as_str())] as f64;
            let n_cell = cell[&(c.corpus.as_str(), c.speaker.as_str(), c.label)] as f64;
            let corpus_share = match shares {
                CorpusShares::SqrtSpeakers => n_speakers.sqrt(),
                CorpusShares::Equal => 1.0,
            };
            corpus_share / (n_speakers * n_emotions * n_cell)
        })
        .collect()
}

/// Random crop start with enough speech to pass the element's gate (the
/// element never classifies the others); the best of a few tries otherwise.
fn crop_start(u: &Utterance, len: usize, rng: &mut StdRng) -> usize {
    let max_start = u.n_frames - len;
    let mut best = (0, 0);
    for _ in 0..8 {
        let s = rng.random_range(0..=max_start);
        let speech = u.speech[s..s + len].iter().filter(|&&x| x).count();
        if speech as f32 >= DEFAULT_MIN_SPEECH_RATIO * len as f32 {
            return s;
        }
        if speech > best.1 {
            best = (s, speech);
        }
    }
    best.0
}

/// How a student network learns from teachers besides the labels (knowledge
/// distillation, Hinton et al. 2015): on every training window the student's
/// softened probabilities are pulled towards the teachers', which carry how
/// alike the emotions sound (a happy that is nearly angry), so one network of
/// the element's size can learn what several learnt apart.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Distillation {
    /// Softmax temperature of both sides (1 = plain probabilities; higher
    /// shows the student more of the teachers' second choices).
    pub temperature: f32,
    /// Share of the teacher term in the loss; the labels take the rest.
    pub weight: f32,
}

impl Distillation {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.temperature > 0.0 && self.temperature <= 100.0,
            "the distillation temperature must be above 0 and at most 100, not {}",
            self.temperature
        );
        ensure!(
            (0.0..=1.0).contains(&self.weight),
            "the distillation weight must be between 0 and 1, not {}",
            self.weight
        );
        Ok(())
    }
}

/// Trained networks whose averaged answers a student learns from.
pub struct Teacher<'a> {
    pub model: &'a Ensemble,
    pub how: Distillation,
}

/// The teachers' softened probabilities `[batch, n_labels]` on a batch of
/// windows, as constants on `device`. `teachers` answer in inference mode on
/// the plain device.
fn teacher_targets(
    teachers: &Ensemble,
    how: Distillation,
    input: &[f32],
    shape: [usize; 3],
    device: &Device,
) -> Tensor<2> {
    let x = Tensor::<3>::from_data(TensorData::new(input.to_vec(), shape), &Device::flex());
    let p = softmax(teachers.logits(x).div_scalar(how.temperature), 1);
    Tensor::<2>::from_data(p.into_data(), device)
}

/// The KL divergence of the student's softened answer from the teachers'
/// `targets`, scaled by T^2 so its gradients stay comparable to the labels'
/// as T grows.
fn distillation_loss(
    targets: Tensor<2>,
    how: Distillation,
    student_logits: Tensor<2>,
) -> Tensor<1> {
    let log_q = log_softmax(student_logits.div_scalar(how.temperature), 1);
    let log_p = targets.clone().clamp_min(1e-12).log();
    (targets * (log_p - log_q))
        .sum_dim(1)
        .mean()
        .mul_scalar(how.temperature * how.temperature)
}

/// Trains `cfg.net` on `train` with early stopping on `val`'s UA.
/// `features` must already carry the global mean/std.
pub fn train(
    cfg: &TrainConfig,
    features: &FeatureConfig,
    train: &[ClipFeatures],
    val: &[ClipFeatures],
    progress: impl FnMut(&EpochLog, usize),
) -> Result<TrainOutcome> {
    train_with_teacher(cfg, features, train, val, None, progress)
}

/// [`train`], learning from `teacher` as well as from the labels when one is
/// given.
pub fn train_with_teacher(
    cfg: &TrainConfig,
    features: &FeatureConfig,
    train: &[ClipFeatures],
    val: &[ClipFeatures],
    teacher: Option<&Teacher<'_>>,
    mut progress: impl FnMut(&EpochLog, usize),
) -> Result<TrainOutcome> {
    ensure!(!train.is_empty(), "no training clips");
    let schedule = cfg.fixed_schedule.as_deref();
    ensure!(!val.is_empty() || schedule.is_some(), "no validation clips");
    let max_epochs = schedule.map_or(cfg.max_epochs, <[f64]>::len);
    let nf = features.n_features();
    ensure!(
        nf == cfg.net.n_features,
        "net expects {} features, config gives {nf}",
        cfg.net.n_features
    );
    let min_frames = train
        .iter()
        .flat_map(|c| c.versions.iter().map(|u| u.n_frames))
        .min()
        .unwrap_or(0);
    ensure!(
        min_frames >= cfg.window_frames,
        "a training rendition has {min_frames} frames, fewer than the {}-frame window (pad clips first)",
        cfg.window_frames
    );
    ensure!(
        cfg.speaker_adversary >= 0.0 && cfg.speaker_adversary.is_finite(),
        "the speaker adversary's strength must be 0 (off) or above, not {}",
        cfg.speaker_adversary
    );
    ensure!(
        cfg.speaker_adversary == 0.0 || cfg.mixup_alpha == 0.0,
        "a speaker adversary and mixup cannot be combined: a blended window has two voices"
    );
    let n_labels = cfg.net.n_labels;
    let device = Device::flex().autodiff();
    device.seed(cfg.seed);
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut model = cfg.net.init(&device);
    // Made after the network so that the network's initial weights do not
    // depend on whether an adversary trains beside it.
    let speaker_ids = (cfg.speaker_adversary > 0.0).then(|| speaker_indices(train));
    let mut adversary = speaker_ids.as_ref().map(|(_, n_speakers)| {
        LinearConfig::new(cfg.net.embedding_width(), *n_speakers).init(&device)
    });
    let mut adversary_optim = AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .init();
    let speaker_loss_fn = CrossEntropyLossConfig::new().init(&device);
    // Teachers answer in inference mode on the plain device.
    let teacher = teacher.map(|t| (t.model.valid().to_device(&Device::flex()), t.how));
    let mut optim = AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .init();
    let loss_fn = CrossEntropyLossConfig::new()
        .with_smoothing((cfg.label_smoothing > 0.0).then_some(cfg.label_smoothing))
        .init(&device);
    let sampler = WeightedAliasIndex::new(sampling_weights(train, cfg.corpus_shares))
        .context("sampling weights (every training clip needs a corpus and speaker)")?;

    let mut average = WeightAverage::new(cfg.weight_average_decay);
    let mut lr = cfg.learning_rate;
    let mut best: Option<(EmotionCnn, usize, f32)> = None;
    let mut selection = Selection::new(
        cfg.first_checkpoint_epoch,
        cfg.early_stop_patience,
        cfg.lr_patience,
    );
    let mut history = Vec::new();
    let n_batches = cfg.samples_per_epoch.div_ceil(cfg.batch_size);
    let stream_mean = features.normalization == WindowNormalization::SubtractStreamMean;
    let voice_history = stream_mean.then(|| VoiceHistory::new(features, train));
    let mut baseline = vec![0f32; nf];
    let (mut scratch, mut speech) = (Vec::new(), Vec::new());
    let min_len = (cfg.window_frames / 3)
        .max(MIN_MODEL_FRAMES)
        .min(cfg.window_frames);

    for epoch in 1..=max_epochs {
        if let Some(schedule) = schedule {
            lr = schedule[epoch - 1];
        }
        let t0 = Instant::now();
        let mut loss_sum = 0f64;
        let mut speaker_loss_sum = 0f64;
        let mut correct = 0usize;
        let mut seen = 0usize;
        for _ in 0..n_batches {
            let len = if rng.random::<f64>() < cfg.short_window_fraction {
                rng.random_range(min_len..=cfg.window_frames)
            } else {
                cfg.window_frames
            };
            let b = cfg.batch_size;
            let mut input = vec![0f32; b * nf * len];
            let mut labels = Vec::with_capacity(b);
            let mut speakers = Vec::new();
            for out in input.chunks_exact_mut(nf * len) {
                let index = sampler.sample(&mut rng);
                let clip = &train[index];
                let version = rng.random_range(0..clip.versions.len());
                let u = &clip.versions[version];
                let start = crop_start(u, len, &mut rng);
                if let Some(history) = &voice_history {
                    let end = start + len;
                    history.baseline(train, (index, version), end, &mut rng, &mut baseline);
                }
                window_speech(features, u, start, len, &mut scratch, &mut speech);
                // Same length in and out: no padding, so no packing scratch.
                analysis::window_input(
                    features,
                    &u.frames[start * nf..(start + len) * nf],
                    len,
                    len,
                    WindowContext {
                        baseline: &baseline,
                        speech: &speech,
                    },
                    &mut [],
                    out,
                );
                spec_augment(out, nf, len, cfg.spec_masks, &mut rng);
                labels.push(clip.label as i64);
                if let Some((ids, _)) = &speaker_ids {
                    speakers.push(ids[index] as i64);
                }
            }
            // Off (alpha 0) draws nothing from `rng`, so the default recipe
            // still reproduces its model bit for bit.
            let mix =
                mixup(&mut input, nf * len, cfg.mixup_alpha, &mut rng).map(|(lambda, partner)| {
                    let partner_labels: Vec<i64> = partner.iter().map(|&j| labels[j]).collect();
                    (lambda, partner_labels)
                });
            let targets = teacher.as_ref().map(|(teachers, how)| {
                let p = teacher_targets(teachers, *how, &input, [b, nf, len], &device);
                (p, *how)
            });
            let x = Tensor::<3>::from_data(TensorData::new(input, [b, nf, len]), &device);
            let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [b]), &device);
            let (embedding, logits) = model.forward_embedded(x);
            let distilled =
                targets.map(|(p, how)| (distillation_loss(p, how, logits.clone()), how.weight));
            let pred: Vec<i64> = logits
                .clone()
                .detach()
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .unwrap_or_default();
            // Under mixup a window counts as right when it gets the label of
            // the larger share.
            let dominant = match &mix {
                Some((lambda, partner_labels)) if *lambda < 0.5 => partner_labels,
                _ => &labels,
            };
            correct += pred.iter().zip(dominant).filter(|(p, l)| p == l).count();
            seen += b;
            let loss = match mix {
                None => loss_fn.forward(logits, y),
                // CE is linear in the target distribution, so blending the
                // two (label-smoothed) losses is CE against the blended labels.
                Some((lambda, partner_labels)) => {
                    let y_b =
                        Tensor::<1, Int>::from_data(TensorData::new(partner_labels, [b]), &device);
                    let lambda = f64::from(lambda);
                    loss_fn.forward(logits.clone(), y).mul_scalar(lambda)
                        + loss_fn.forward(logits, y_b).mul_scalar(1.0 - lambda)
                }
            };
            let loss = match distilled {
                Some((kl, weight)) => loss.mul_scalar(1.0 - weight) + kl.mul_scalar(weight),
                None => loss,
            };
            let loss_value: f32 = loss.clone().detach().into_scalar::<f32>();
            loss_sum += f64::from(loss_value);
            let loss = match &adversary {
                Some(head) => {
                    let strength = cfg.speaker_adversary * adversary_ramp(epoch, max_epochs);
                    let guess = head.forward(reverse_gradient(embedding, strength));
                    let y_speaker =
                        Tensor::<1, Int>::from_data(TensorData::new(speakers, [b]), &device);
                    let speaker_loss = speaker_loss_fn.forward(guess, y_speaker);
                    speaker_loss_sum +=
                        f64::from(speaker_loss.clone().detach().into_scalar::<f32>());
                    loss + speaker_loss
                }
                None => loss,
            };
            let mut grads = loss.backward();
            let model_grads = GradientsParams::from_module(&mut grads, &model);
            model = optim.step(lr, model, model_grads);
            if let Some(head) = adversary.take() {
                let head_grads = GradientsParams::from_module(&mut grads, &head);
                adversary = Some(adversary_optim.step(lr, head, head_grads));
            }
            average.update(&model);
        }

        let inference = average.apply(model.valid());
        let (val_ua, per_corpus) = if val.is_empty() {
            (f32::NAN, Vec::new())
        } else {
            let predict = |voice_streams| {
                let preds = predict_clips(
                    &inference,
                    features,
                    val,
                    cfg.window_frames,
                    cfg.hop_frames,
                    n_labels,
                    voice_streams,
                );
                validation_ua(val, &preds, n_labels)
            };
            let (clip_ua, mut per_corpus) = predict(false);
            // Without a baseline, streams score exactly as lone clips.
            if cfg.validate_streams && stream_mean {
                let (stream_ua, per_stream) = predict(true);
                per_corpus.extend(
                    per_stream
                        .into_iter()
                        .map(|(corpus, ua)| (format!("{corpus} stream"), ua)),
                );
                ((clip_ua + stream_ua) / 2.0, per_corpus)
            } else {
                (clip_ua, per_corpus)
            }
        };
        let log = EpochLog {
            epoch,
            loss: (loss_sum / n_batches as f64) as f32,
            train_accuracy: correct as f32 / seen.max(1) as f32,
            val_ua,
            val_ua_per_corpus: per_corpus,
            speaker_loss: adversary
                .is_some()
                .then(|| (speaker_loss_sum / n_batches as f64) as f32),
            lr,
            seconds: t0.elapsed().as_secs_f64(),
        };
        progress(&log, max_epochs);
        history.push(log);

        if schedule.is_some() {
            best = Some((inference, epoch, val_ua));
            continue;
        }
        let verdict = selection.observe(epoch, val_ua);
        if verdict.keep {
            best = Some((inference, epoch, val_ua));
        }
        if verdict.stop {
            break;
        }
        if verdict.lower_lr && lr > cfg.min_lr {
            lr = (lr * cfg.lr_factor).max(cfg.min_lr);
        }
    }
    let (model, best_epoch, best_val_ua) = best.context("no epoch ran (max_epochs = 0?)")?;
    Ok(TrainOutcome {
        model,
        best_epoch,
        best_val_ua,
        history,
    })
}

/// Each training clip's speaker as an index, and the number of speakers
/// (a speaker is a corpus and a speaker name: corpora reuse names).
fn speaker_indices(clips: &[ClipFeatures]) -> (Vec<usize>, usize) {
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    let ids = clips
        .iter()
        .map(|c| {
            let next = index.len();
            *index.entry((&c.corpus, &c.speaker)).or_insert(next)
        })
        .collect();
    (ids, index.len())
}

/// Share of the speaker adversary's full strength in `epoch` (1-based) of
/// `max_epochs`: Ganin and Lempitsky's 2 / (1 + exp(-10 p)) - 1, so the
/// network first learns the emotions before it is pushed off the voices.
pub fn adversary_ramp(epoch: usize, max_epochs: usize) -> f64 {
    let p = epoch.saturating_sub(1) as f64 / max_epochs.max(1) as f64;
    2.0 / (1.0 + (-10.0 * p).exp()) - 1.0
}

/// The identity going forward; going back, the gradient times `-strength`.
/// Whatever follows learns to read `x`, while what made `x` learns to make
/// it unreadable.
pub fn reverse_gradient<const D: usize>(x: Tensor<D>, strength: f64) -> Tensor<D> {
    // (1 + s) x - s x is x, but only the second term carries a gradient.
    x.clone().detach().mul_scalar(1.0 + strength) - x.mul_scalar(strength)
}

/// Exponential moving average of every float tensor of a module: weights and
/// batch-norm statistics alike, in the module's visiting order.
pub struct WeightAverage {
    decay: f32,
    values: Vec<Vec<f32>>,
}

impl WeightAverage {
    pub fn new(decay: f64) -> Self {
        Self {
            decay: decay.clamp(0.0, 1.0) as f32,
            values: Vec::new(),
        }
    }

    /// Folds the module's current tensors into the average (the first call
    /// starts it at them).
    pub fn update<M: Module>(&mut self, module: &M) {
        if self.decay == 0.0 {
            return;
        }
        let current = float_tensors(module);
        if self.values.is_empty() {
            self.values = current;
            return;
        }
        let d = self.decay;
        for (avg, now) in self.values.iter_mut().zip(&current) {
            for (a, x) in avg.iter_mut().zip(now) {
                *a = d * *a + (1.0 - d) * x;
            }
        }
    }

    /// `module` with its tensors replaced by the average (unchanged before
    /// the first update or with decay 0).
    pub fn apply<M: Module>(&self, module: M) -> M {
        if self.values.is_empty() {
            return module;
        }
        module.map(&mut ReplaceFloats {
            values: &self.values,
            next: 0,
        })
    }
}

/// Every float tensor of `module` (weights and running statistics), flattened,
/// in visiting order.
pub fn float_tensors<M: Module>(module: &M) -> Vec<Vec<f32>> {
    let mut collect = CollectFloats(Vec::new());
    module.visit(&mut collect);
    collect.0
}

struct CollectFloats(Vec<Vec<f32>>);

impl burn::module::ModuleVisitor for CollectFloats {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let data = param.val().into_data().convert::<f32>();
        self.0.push(data.try_into_vec::<f32>().unwrap_or_default());
    }
}

struct ReplaceFloats<'a> {
    values: &'a [Vec<f32>],
    next: usize,
}

impl burn::module::ModuleMapper for ReplaceFloats<'_> {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        let Some(values) = self.values.get(self.next) else {
            return param;
        };
        self.next += 1;
        param.map(|t| {
            let shape = t.shape();
            if values.len() != shape.num_elements() {
                return t;
            }
            Tensor::from_data(TensorData::new(values.clone(), shape), &t.device())
        })
    }
}

/// SpecAugment-style masks of one training window. Reports older than
/// `count` read as one of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpecMasks {
    /// Widest band of feature rows one mask zeroes.
    #[serde(rename = "freq_mask")]
    pub max_rows: usize,
    /// Longest span of frames one mask zeroes (at most a quarter of the window).
    #[serde(rename = "time_mask")]
    pub max_frames: usize,
    /// Masks of each kind.
    #[serde(rename = "masks")]
    pub count: usize,
}

impl Default for SpecMasks {
    /// The recipe every cross-validated figure so far used.
    fn default() -> Self {
        SpecMasks {
            max_rows: 8,
            max_frames: 10,
            count: 1,
        }
    }
}

impl SpecMasks {
    /// No masks at all.
    pub const OFF: SpecMasks = SpecMasks {
        max_rows: 0,
        max_frames: 0,
        count: 0,
    };

    /// The sentence reports give a run that did not use the default masks.
    pub fn note(self) -> Option<String> {
        (self != SpecMasks::default()).then(|| {
            format!(
                "SpecAugment: {count} band(s) of up to {rows} feature rows and {count} span(s) \
                 of up to {frames} frames zeroed in every training window (default: one of up \
                 to 8 and one of up to 10).",
                count = self.count,
                rows = self.max_rows,
                frames = self.max_frames
            )
        })
    }
}

/// SpecAugment-style masking of one channels-first window: `count` bands of
/// up to `max_rows` feature rows and `count` spans of up to `max_frames`
/// frames set to 0 (the normalised mean), so the network cannot lean on any
/// single band or moment (telephone band-limiting removes whole bands). With
/// one mask of each kind it draws exactly what it always drew, so older
/// recipes reproduce.
pub fn spec_augment(x: &mut [f32], nf: usize, len: usize, masks: SpecMasks, rng: &mut StdRng) {
    for _ in 0..masks.count {
        if masks.max_rows > 0 {
            let w = rng.random_range(0..=masks.max_rows.min(nf));
            let f0 = rng.random_range(0..=nf - w);
            x[f0 * len..(f0 + w) * len].fill(0.0);
        }
        if masks.max_frames > 0 {
            let w = rng.random_range(0..=masks.max_frames.min(len / 4));
            let t0 = rng.random_range(0..=len - w);
            for row in x.chunks_exact_mut(len) {
                row[t0..t0 + w].fill(0.0);
            }
        }
    }
}

/// Mixup of a batch of equal-sized windows (`window` values each), in place:
/// window i becomes `lambda * x_i + (1 - lambda) * x_partner[i]` with one
/// lambda ~ Beta(alpha, alpha) per batch and `partner` a random permutation.
/// Returns `(lambda, partner)`, or `None` (batch untouched, no random draws)
/// when `alpha <= 0`.
pub fn mixup(
    batch: &mut [f32],
    window: usize,
    alpha: f64,
    rng: &mut StdRng,
) -> Option<(f32, Vec<usize>)> {
    if alpha <= 0.0 || window == 0 {
        return None;
    }
    let lambda = rand_distr::Beta::new(alpha, alpha)
        .map_or(0.5, |b| b.sample(rng))
        .clamp(0.0, 1.0) as f32;
    let mut partner: Vec<usize> = (0..batch.len() / window).collect();
    partner.shuffle(rng);
    let original = batch.to_vec();
    for (out, &j) in batch.chunks_exact_mut(window).zip(&partner) {
        let other = &original[j * window..(j + 1) * window];
        for (x, y) in out.iter_mut().zip(other) {
            *x = lambda * *x + (1.0 - lambda) * y;
        }
    }
    Some((lambda, partner))
}

/// Runs `f` over `items` on all cores, keeping order; the first error wins.
pub fn par_map<T: Sync, U: Send>(
    items: &[T],
    f: impl Fn(usize, &T) -> Result<U> + Sync,
) -> Result<Vec<U>> {
    items.par_iter().enumerate().map(|(i, t)| f(i, t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (kept, lowered the rate, stopped) epoch by epoch, from epoch 1.
    fn verdicts(mut s: Selection, val_uas: &[f32]) -> Vec<(bool, bool, bool)> {
        let mut out = Vec::new();
        for (i, &ua) in val_uas.iter().enumerate() {
            let v = s.observe(i + 1, ua);
            out.push((v.keep, v.lower_lr, v.stop));
            if v.stop {
                break;
            }
        }
        out
    }

    #[test]
    fn any_epoch_may_be_kept_by_default() {
        // Patience 3, rate steps after 2 epochs without a better one.
        let got = verdicts(Selection::new(1, 3, 2), &[0.5, 0.6, 0.55, 0.55, 0.55, 0.9]);
        let (f, t) = (false, true);
        assert_eq!(got, [(t, f, f), (t, f, f), (f, f, f), (f, t, f), (f, f, t)]);
    }

    #[test]
    fn no_epoch_before_the_first_checkpoint_is_kept_nor_ends_training() {
        let (f, t) = (false, true);
        // The peak at epoch 2 still steps the rate, but epoch 4 is the first
        // that may be kept, then the better epoch 5; patience ends it there.
        let got = verdicts(Selection::new(4, 3, 2), &[0.5, 0.7, 0.6, 0.6, 0.65, 0.9]);
        assert_eq!(got, [(f, f, f), (f, f, f), (f, f, f), (t, t, f), (t, f, t)]);
        // Patience runs out at epoch 3, but nothing may be kept before 5.
        let got = verdicts(Selection::new(5, 2, 10), &[0.9, 0.1, 0.2, 0.3, 0.4, 0.5]);
        assert_eq!(got, [(f, f, f), (f, f, f), (f, f, f), (f, f, f), (t, f, t)]);
    }

    #[test]
    fn weight_average_is_the_exponential_mean_of_every_tensor() {
        let device = Device::flex();
        let mut net = NetConfig::new(6, 4);
        net.channels = vec![4, 4];
        let a = net.init(&device);
        let b = net.init(&device);
        let (fa, fb) = (float_tensors(&a), float_tensors(&b));
        // Weights, biases and both batch-norm statistics of each block.
        assert!(fa.len() >= 2 * 4 + 2, "{} tensors", fa.len());
        assert_ne!(fa, fb, "two initialisations differ");

        let mut average = WeightAverage::new(0.75);
        average.update(&a);
        average.update(&b);
        let applied = float_tensors(&average.apply(a.clone()));
        for ((got, x), y) in applied.iter().zip(&fa).zip(&fb) {
            for ((g, x), y) in got.iter().zip(x).zip(y) {
                assert!((g - (0.75 * x + 0.25 * y)).abs() < 1e-6, "{g} vs {x}, {y}");
            }
        }
        // Decay 0 keeps the raw weights.
        let mut raw = WeightAverage::new(0.0);
        raw.update(&a);
        assert_eq!(float_tensors(&raw.apply(b.clone())), fb);
    }

    #[test]
    fn gradient_reversal_is_the_identity_forward_and_flips_the_gradient() {
        let device = Device::flex().autodiff();
        let x = Tensor::<1>::from_data([1.0f32, -2.0, 3.0], &device).require_grad();
        let y = reverse_gradient(x.clone(), 0.5);
        let values = y.clone().into_data().try_into_vec::<f32>().expect("floats");
        assert_eq!(values, [1.0, -2.0, 3.0]);
        let grads = y.mul_scalar(3.0).sum().backward();
        let grad = x
            .grad(&grads)
            .expect("a gradient")
            .into_data()
            .try_into_vec::<f32>()
            .expect("floats");
        for g in grad {
            assert!((g + 1.5).abs() < 1e-6, "3 * -0.5, got {g}");
        }
    }

    #[test]
    fn the_adversary_ramps_from_zero_towards_full_strength() {
        assert_eq!(adversary_ramp(1, 60), 0.0);
        let ramp: Vec<f64> = (1..=60).map(|e| adversary_ramp(e, 60)).collect();
        assert!(ramp.windows(2).all(|w| w[1] > w[0]), "rises every epoch");
        assert!(
            (0.45..0.5).contains(&ramp[6]),
            "about half by a tenth: {}",
            ramp[6]
        );
        assert!(ramp[59] > 0.99 && ramp[59] < 1.0);
    }

    #[test]
    fn spec_masks_zero_whole_bands_and_spans_count_times() {
        let (nf, len) = (20, 40);
        let (mut widest_bands, mut widest_spans) = (0, 0);
        for seed in 0..200 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut x = vec![1f32; nf * len];
            let bands = SpecMasks {
                max_rows: 5,
                max_frames: 0,
                count: 3,
            };
            spec_augment(&mut x, nf, len, bands, &mut rng);
            // Whole rows or nothing, never more than three bands' worth.
            let zero_rows = x
                .chunks_exact(len)
                .filter(|row| {
                    assert!(row.iter().all(|&v| v == row[0]), "a band mask cut a row");
                    row[0] == 0.0
                })
                .count();
            assert!(zero_rows <= 15, "{zero_rows} rows zeroed by 3 masks of 5");
            widest_bands = widest_bands.max(zero_rows);

            let mut x = vec![1f32; nf * len];
            let spans = SpecMasks {
                max_rows: 0,
                max_frames: 6,
                count: 2,
            };
            spec_augment(&mut x, nf, len, spans, &mut rng);
            let zero_frames = (0..len)
                .filter(|&t| {
                    let column: Vec<f32> = (0..nf).map(|f| x[f * len + t]).collect();
                    assert!(column.iter().all(|&v| v == column[0]), "a span cut a frame");
                    column[0] == 0.0
                })
                .count();
            assert!(
                zero_frames <= 12,
                "{zero_frames} frames zeroed by 2 masks of 6"
            );
            widest_spans = widest_spans.max(zero_frames);
        }
        // More than one mask of each kind lands somewhere.
        assert!(
            widest_bands > 5 && widest_spans > 6,
            "{widest_bands} {widest_spans}"
        );

        // None requested, none drawn.
        let mut x = vec![1f32; nf * len];
        let off = SpecMasks {
            max_rows: 8,
            max_frames: 10,
            count: 0,
        };
        spec_augment(&mut x, nf, len, off, &mut StdRng::seed_from_u64(1));
        assert!(x.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn mixup_blends_each_window_with_a_partner() {
        let (b, window) = (6, 5);
        let batch: Vec<f32> = (0..b * window).map(|i| i as f32 * 0.37 - 3.0).collect();

        // Off: nothing changes and the generator is not advanced.
        let mut rng = StdRng::seed_from_u64(3);
        let mut off = batch.clone();
        assert!(mixup(&mut off, window, 0.0, &mut rng).is_none());
        assert_eq!(off, batch);
        assert_eq!(
            rng.random::<u64>(),
            StdRng::seed_from_u64(3).random::<u64>()
        );

        let mut lambdas = Vec::new();
        for seed in 0..200 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut mixed = batch.clone();
            let (lambda, partner) = mixup(&mut mixed, window, 0.2, &mut rng).expect("mixup on");
            assert!((0.0..=1.0).contains(&lambda), "lambda {lambda}");
            let mut sorted = partner.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..b).collect::<Vec<_>>(), "a permutation");
            for (i, &j) in partner.iter().enumerate() {
                for k in 0..window {
                    let want =
                        lambda * batch[i * window + k] + (1.0 - lambda) * batch[j * window + k];
                    assert!((mixed[i * window + k] - want).abs() < 1e-5);
                }
            }
            lambdas.push(f64::from(lambda));
        }
        // Beta(0.2, 0.2) is U-shaped, symmetric about 1/2: mostly near 0 or 1.
        let mean = lambdas.iter().sum::<f64>() / lambdas.len() as f64;
        assert!((mean - 0.5).abs() < 0.1, "mean lambda {mean}");
        let extreme = lambdas
            .iter()
            .filter(|&&l| !(0.1..=0.9).contains(&l))
            .count();
        assert!(extreme > lambdas.len() / 2, "{extreme} of 200 near 0 or 1");
    }

    #[test]
    fn sampling_balances_cells_within_a_corpus() {
        let clip = |corpus: &str, label| ClipFeatures {
            label,
            corpus: corpus.into(),
            speaker: "s".into(),
            scored: true,
            versions: Vec::new(),
        };
        let clips = vec![
            clip("a", 0),
            clip("a", 0),
            clip("a", 0),
            clip("a", 1),
            clip("b", 0),
        ];
        let w = sampling_weights(&clips, CorpusShares::SqrtSpeakers);
        let label0: f64 = w[..3].iter().sum();
        assert!(
            (label0 - w[3]).abs() < 1e-12,
            "both classes of corpus a weigh the same"
        );
    }

    #[test]
    fn sampling_weighs_speakers_not_clips() {
        let clip = |corpus: &str, speaker: &str, label| ClipFeatures {
            label,
            corpus: corpus.into(),
            speaker: speaker.into(),
            scored: true,
            versions: Vec::new(),
        };
        // Corpus "big": one voice with 100 clips; corpus "wide": four voices
        // with one clip each.
        let mut clips: Vec<ClipFeatures> = (0..100).map(|i| clip("big", "A", i % 4)).collect();
        for s in ["p", "q", "r", "t"] {
            clips.push(clip("wide", s, 0));
        }
        let share = |shares| {
            let w = sampling_weights(&clips, shares);
            // Each voice of "wide" weighs the same.
            assert!(w[100..].iter().all(|&x| (x - w[100]).abs() < 1e-12));
            w[100..].iter().sum::<f64>() / w[..100].iter().sum::<f64>()
        };
        // sqrt(1) : sqrt(4) speakers, or one share each.
        let sqrt = share(CorpusShares::SqrtSpeakers);
        assert!((sqrt - 2.0).abs() < 1e-9, "{sqrt}");
        let equal = share(CorpusShares::Equal);
        assert!((equal - 1.0).abs() < 1e-9, "{equal}");
    }
}
