//! The `train` and `eval` commands: corpora -> split -> features (augmented
//! for training) -> network -> ONNX with metadata -> held-out evaluation ->
//! report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use seremotion_core::features::{FeatureConfig, WindowNormalization};
use seremotion_core::model::ModelMetadata;
use seremotion_core::model::writer::embed_metadata;

use crate::corpus::{self, Clip, LABELS};
use crate::net::{
    DROPOUT, EmotionCnn, Ensemble, FREQUENCY_STEM_POOL, FREQUENCY_STEM_STRIDE, NetConfig, Pooling,
};
use crate::split::{self, SplitConfig};
use crate::train::{
    self, ClipFeatures, CorpusShares, Distillation, SpecMasks, Teacher, TrainConfig, TrainOutcome,
    Utterance,
};
use crate::{augment, calibrate, eval, export};

/// What the shipped model's training data allows.
pub const LICENCE: &str = "trained on TESS (CC BY-NC-ND 4.0), RAVDESS (CC BY-NC-SA 4.0), \
    SAVEE (research use), ASED (research use, no licence stated) and nEMO (CC BY-NC-SA 4.0): \
    non-commercial research use only";

/// Where clips come from.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    Manifest(PathBuf),
    Folder(PathBuf),
}

/// Serialised, it is the recipe record `cv` resumes by: everything that
/// decides what a partition trains, not where it is written.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainOptions {
    pub sources: Vec<DataSource>,
    #[serde(skip)]
    pub out: PathBuf,
    #[serde(skip)]
    pub name: String,
    pub seed: u64,
    pub epochs: usize,
    pub copies: usize,
    pub samples_per_epoch: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub window_seconds: f64,
    pub channels: Vec<usize>,
    /// How the network pools the last block over time.
    pub pooling: Pooling,
    /// Channels of the network's frequency stem (`NetConfig::frequency_stem`; 0 = none).
    pub frequency_stem: usize,
    /// Stem channels of each ensemble member in turn, for an ensemble of
    /// unlike networks (empty: every member has `frequency_stem`).
    pub member_stems: Vec<usize>,
    /// Rows each of the stem's max pooling spans covers (`NetConfig::stem_pool`).
    pub stem_pool: usize,
    /// Time dilation of each block's convolution (`NetConfig::dilations`).
    pub dilations: Vec<usize>,
    /// Upper edge of the mel filterbank in Hz (default: the trainer's
    /// feature configuration).
    pub fmax: Option<f32>,
    /// Lower edge of the mel filterbank in Hz.
    pub fmin: Option<f32>,
    /// See `TrainConfig::weight_average_decay`.
    pub weight_average_decay: f64,
    /// See `TrainConfig::first_checkpoint_epoch`. Left out of the recipe
    /// record at 1, so records written before it existed still resume.
    #[serde(skip_serializing_if = "is_first_epoch")]
    pub first_checkpoint: usize,
    /// See `TrainConfig::mixup_alpha`.
    pub mixup_alpha: f64,
    /// AdamW's decoupled weight decay. Left out of the recipe record at
    /// [`WEIGHT_DECAY`], so records written before it existed still resume.
    #[serde(skip_serializing_if = "is_default_weight_decay")]
    pub weight_decay: f64,
    /// Dropout before the classifier (`NetConfig::dropout`). Left out of the
    /// recipe record at [`DROPOUT`], so older records still resume.
    #[serde(skip_serializing_if = "is_default_dropout")]
    pub dropout: f64,
    /// Probability mass the targets spread evenly over all emotions. Left
    /// out of the recipe record at [`LABEL_SMOOTHING`], so older records
    /// still resume.
    #[serde(skip_serializing_if = "is_default_label_smoothing")]
    pub label_smoothing: f64,
    /// See `TrainConfig::speaker_adversary`.
    pub speaker_adversary: f64,
    /// See `TrainConfig::spec_masks`.
    pub spec_masks: SpecMasks,
    /// See `TrainConfig::corpus_shares`.
    pub corpus_shares: CorpusShares,
    /// After choosing the epoch count on validation, train again on training
    /// and validation speakers together for that many epochs.
    pub refit: bool,
    /// Networks trained from different seeds and exported as one averaged
    /// graph (1 = a single network).
    pub ensemble: usize,
    /// Train one more network taught by the `ensemble` networks and export
    /// it alone.
    pub distill: Option<Distillation>,
    /// Validate on the validation speakers through the telephone channel as
    /// well as clean, so early stopping and the learning-rate schedule look
    /// at calls too.
    pub validate_telephone: bool,
    /// Telephone renditions through lines of either G.711 law and varied
    /// pass bands instead of the standard mu-law 300-3400 Hz line.
    pub varied_phone_lines: bool,
    /// Half the training renditions get their formants moved by a factor
    /// of 0.9-1.1 (`augment::warp_formants`): other vocal tracts for the same
    /// voice.
    pub formant_warp: bool,
    /// 30 % of the training renditions are heard in a synthetic room
    /// (`augment::reverberate`).
    pub room_reverb: bool,
    /// Add to the exported model's logits the offsets that maximise the
    /// validation UA (`calibrate::fit_offsets`).
    pub calibrate: bool,
    /// Append the pitch and harmonicity rows to every frame.
    pub append_pitch: bool,
    /// With a voice baseline, choose checkpoints on validation speakers'
    /// clips heard as speaker streams too.
    pub validate_streams: bool,
    /// Corpora whose validation speakers are moved into training (none by
    /// default: a corpus without validation speakers cannot choose the
    /// checkpoint honestly).
    pub val_into_train: Vec<String>,
    /// Fraction of each corpus's groups held out as test speakers (0 trains
    /// the shipped model on every voice but the validation ones; its
    /// figures then come from `cv`).
    pub test_fraction: f64,
    /// Per-window normalisation of the features (travels in the model).
    pub normalization: WindowNormalization,
    /// With `SubtractStreamMean`: seconds of speech after which a stream's
    /// own voice counts as much as the training voices' mean.
    pub stream_prior_seconds: f64,
    #[serde(skip)]
    pub evaluate: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            sources: Vec::new(),
            out: PathBuf::from("models"),
            name: "default".into(),
            seed: 7,
            epochs: 60,
            copies: 8,
            samples_per_epoch: 8192,
            batch_size: 32,
            learning_rate: 2e-3,
            window_seconds: 2.0,
            channels: vec![48, 64, 80, 96],
            pooling: Pooling::Mean,
            // One network with a frequency stem: +3.2 clean and +3.5 on the
            // phone over the same network without it (two seeds), +1.3 / +0.7
            // over two networks without it (one seed), on the mean of the
            // four target corpora, 4-fold by speaker (models/EXPERIMENTS.md),
            // for three quarters of their multiply-adds.
            frequency_stem: 8,
            member_stems: Vec::new(),
            stem_pool: FREQUENCY_STEM_POOL,
            dilations: Vec::new(),
            fmax: None,
            fmin: None,
            // Chosen over three speaker splits: +4.5 points UA on RAVDESS
            // (models/EXPERIMENTS.md).
            weight_average_decay: 0.998,
            first_checkpoint: 1,
            mixup_alpha: 0.0,
            weight_decay: WEIGHT_DECAY,
            dropout: DROPOUT,
            label_smoothing: LABEL_SMOOTHING,
            speaker_adversary: 0.0,
            spec_masks: SpecMasks::default(),
            corpus_shares: CorpusShares::SqrtSpeakers,
            refit: false,
            // Two networks from the run's seed and its member seed, their
            // logits averaged in one graph: +1.4 clean and +2.2 on the phone
            // over one stem network on the mean of the four target corpora,
            // 4-fold by speaker over seeds 7 and 8 (models/EXPERIMENTS.md), for
            // twice the network's multiply-adds (1.3 times the element's CPU,
            // at the edge of the mono speed budget; README, speed).
            ensemble: 2,
            distill: None,
            validate_telephone: false,
            varied_phone_lines: false,
            formant_warp: false,
            room_reverb: false,
            calibrate: false,
            append_pitch: FeatureConfig::default_model().append_pitch,
            validate_streams: false,
            val_into_train: Vec::new(),
            test_fraction: 0.15,
            normalization: FeatureConfig::default_model().normalization,
            stream_prior_seconds: 4.0,
            evaluate: true,
        }
    }
}

impl TrainOptions {
    /// The recipe's front end with these options' band edges and rows, and
    /// `normalization` (not yet fitted: no statistics, no prior).
    pub fn feature_config(&self, normalization: WindowNormalization) -> FeatureConfig {
        let base = FeatureConfig::default_model();
        FeatureConfig {
            fmin: self.fmin.unwrap_or(base.fmin),
            fmax: self.fmax.unwrap_or(base.fmax),
            append_pitch: self.append_pitch,
            normalization,
            ..base
        }
    }

    /// The network these options describe, for `n_features` input rows.
    pub fn net_config(&self, n_features: usize) -> NetConfig {
        NetConfig {
            channels: self.channels.clone(),
            pooling: self.pooling,
            frequency_stem: self.frequency_stem,
            stem_pool: self.stem_pool,
            dilations: self.dilations.clone(),
            dropout: self.dropout,
            ..NetConfig::new(n_features, LABELS.len())
        }
    }

    /// The network of ensemble member `k` (0-based).
    pub fn member_net(&self, k: usize, n_features: usize) -> NetConfig {
        NetConfig {
            frequency_stem: self
                .member_stems
                .get(k)
                .copied()
                .unwrap_or(self.frequency_stem),
            ..self.net_config(n_features)
        }
    }

    /// Options that cannot go together, refused before any work.
    pub fn check(&self) -> Result<()> {
        if !self.member_stems.is_empty() && self.member_stems.len() != self.ensemble {
            bail!(
                "--member-stems gives {} stem widths for {} ensemble member(s): give one a \
                 member (e.g. --ensemble 2 --member-stems 8,0)",
                self.member_stems.len(),
                self.ensemble
            );
        }
        if self.stem_pool < FREQUENCY_STEM_STRIDE {
            bail!(
                "--stem-pool {} is narrower than the {FREQUENCY_STEM_STRIDE} rows between the \
                 starts of the stem's pooling spans: rows between them would never be seen; \
                 give {FREQUENCY_STEM_STRIDE} or more",
                self.stem_pool
            );
        }
        if self.first_checkpoint == 0 || self.first_checkpoint > self.epochs {
            bail!(
                "--first-checkpoint {}: give an epoch from 1 to --epochs ({})",
                self.first_checkpoint,
                self.epochs
            );
        }
        below_one("--weight-decay", self.weight_decay, "a decay", 0.05)?;
        below_one("--dropout", self.dropout, "a probability", 0.5)?;
        below_one("--label-smoothing", self.label_smoothing, "a share", 0.1)?;
        if self.dilations.len() > self.channels.len() || self.dilations.contains(&0) {
            bail!(
                "--dilations {:?}: give at most one dilation of 1 or more a block ({} blocks)",
                self.dilations,
                self.channels.len()
            );
        }
        Ok(())
    }
}

/// Refuses an option's `value` outside [0, 1) (NaN too), naming its flag.
fn below_one(flag: &str, value: f64, what: &str, example: f64) -> Result<()> {
    if !(0.0..1.0).contains(&value) {
        bail!("{flag} {value}: give {what} from 0 up to (not including) 1, e.g. {example}");
    }
    Ok(())
}

pub fn load_clips(sources: &[DataSource]) -> Result<Vec<Clip>> {
    let mut clips = Vec::new();
    for s in sources {
        match s {
            DataSource::Manifest(p) => {
                clips.extend(corpus::load_manifest(p).map_err(|e| anyhow::anyhow!("{e}"))?)
            }
            DataSource::Folder(p) => {
                clips.extend(corpus::scan_folder(p).map_err(|e| anyhow::anyhow!("{e}"))?)
            }
        }
    }
    if clips.is_empty() {
        bail!("no clips found in the given sources");
    }
    Ok(clips)
}

/// Samples needed for `frames` frames.
fn samples_for(cfg: &FeatureConfig, frames: usize) -> usize {
    cfg.n_fft + frames.saturating_sub(1) * cfg.hop_length
}

/// Pads `audio` to `min_len` samples with low-level noise (−70 dBFS, below
/// the element's speech gate), split randomly between both ends: short clips
/// then look like speech in a quiet room, not like digital silence.
pub fn pad_with_noise(audio: &mut Vec<f32>, min_len: usize, rng: &mut StdRng) {
    if audio.len() >= min_len {
        return;
    }
    let missing = min_len - audio.len();
    let left = rng.random_range(0..=missing);
    let amp = 10f32.powf(-70.0 / 20.0) * 3f32.sqrt();
    let mut noise = |n: usize| {
        (0..n)
            .map(|_| rng.random_range(-amp..amp))
            .collect::<Vec<f32>>()
    };
    let mut out = noise(left);
    out.extend_from_slice(audio);
    out.extend(noise(missing - left));
    *audio = out;
}

/// Share of the training renditions heard in a room with `room_reverb`.
const ROOM_REVERB_PROB: f32 = 0.3;

fn is_first_epoch(epoch: &usize) -> bool {
    *epoch == 1
}

/// AdamW's decoupled weight decay unless `--weight-decay` says otherwise
/// (every run before the option trained with it).
pub const WEIGHT_DECAY: f64 = 1e-3;

fn is_default_weight_decay(decay: &f64) -> bool {
    *decay == WEIGHT_DECAY
}

fn is_default_dropout(p: &f64) -> bool {
    *p == DROPOUT
}

/// Label smoothing unless `--label-smoothing` says otherwise.
pub const LABEL_SMOOTHING: f64 = 0.05;

fn is_default_label_smoothing(share: &f64) -> bool {
    *share == LABEL_SMOOTHING
}

/// The training options a report names when they differ from the default,
/// one sentence each, in the same order in `train`'s REPORT and `cv`'s table.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RecipeNotes {
    pub corpus_shares: CorpusShares,
    pub formant_warp: bool,
    pub room_reverb: bool,
    pub mixup_alpha: f64,
    pub spec_masks: SpecMasks,
    pub speaker_adversary: f64,
    pub first_checkpoint: usize,
    pub weight_decay: f64,
    pub dropout: f64,
    /// As the training configuration holds it.
    pub label_smoothing: f32,
}

impl RecipeNotes {
    pub fn of(o: &TrainOptions) -> Self {
        RecipeNotes {
            corpus_shares: o.corpus_shares,
            formant_warp: o.formant_warp,
            room_reverb: o.room_reverb,
            mixup_alpha: o.mixup_alpha,
            spec_masks: o.spec_masks,
            speaker_adversary: o.speaker_adversary,
            first_checkpoint: o.first_checkpoint,
            weight_decay: o.weight_decay,
            dropout: o.dropout,
            label_smoothing: o.label_smoothing as f32,
        }
    }

    /// From a model's `seremotion.training` record; a key an older record
    /// lacks reads as the default (what those runs trained with).
    pub fn from_record(t: &Value) -> Self {
        let c = &t["train_config"];
        RecipeNotes {
            corpus_shares: serde_json::from_value(c["corpus_shares"].clone()).unwrap_or_default(),
            formant_warp: t["formant_warp"].as_bool() == Some(true),
            room_reverb: t["room_reverb"].as_bool() == Some(true),
            mixup_alpha: c["mixup_alpha"].as_f64().unwrap_or(0.0),
            spec_masks: serde_json::from_value(c.clone()).unwrap_or_default(),
            speaker_adversary: c["speaker_adversary"].as_f64().unwrap_or(0.0),
            first_checkpoint: c["first_checkpoint_epoch"]
                .as_u64()
                .map_or(1, |e| e as usize),
            weight_decay: c["weight_decay"].as_f64().unwrap_or(WEIGHT_DECAY),
            dropout: c["net"]["dropout"].as_f64().unwrap_or(DROPOUT),
            label_smoothing: c["label_smoothing"]
                .as_f64()
                .map_or(LABEL_SMOOTHING as f32, |s| s as f32),
        }
    }

    pub fn sentences(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .corpus_shares
            .note()
            .map(str::to_owned)
            .into_iter()
            .collect();
        if self.formant_warp {
            out.push(formant_warp_note());
        }
        if self.room_reverb {
            out.push(room_reverb_note());
        }
        if self.mixup_alpha > 0.0 {
            out.push(mixup_note(self.mixup_alpha));
        }
        out.extend(self.spec_masks.note());
        if self.speaker_adversary > 0.0 {
            out.push(speaker_adversary_note(self.speaker_adversary));
        }
        if self.first_checkpoint > 1 {
            out.push(format!(
                "No checkpoint before epoch {}: training ran at least that long and kept the \
                 best validation epoch from it on.",
                self.first_checkpoint
            ));
        }
        if self.weight_decay != WEIGHT_DECAY {
            out.push(format!(
                "AdamW weight decay {} (the default is {WEIGHT_DECAY}).",
                self.weight_decay
            ));
        }
        if self.dropout != DROPOUT {
            out.push(format!(
                "Dropout {} before the classifier and {} after each block (the default is \
                 {DROPOUT}).",
                self.dropout,
                self.dropout / 5.0
            ));
        }
        if self.label_smoothing != LABEL_SMOOTHING as f32 {
            out.push(format!(
                "Label smoothing {} (the default is {LABEL_SMOOTHING}).",
                self.label_smoothing
            ));
        }
        out
    }
}

/// How reports describe `--mixup ALPHA`.
pub fn mixup_note(alpha: f64) -> String {
    format!(
        "Trained with mixup: each batch blended with a shuffled copy of itself, \
         weight ~ Beta({alpha}, {alpha}), labels blended alike."
    )
}

/// How reports describe `formant_warp`: read from the chain it trains with.
pub fn formant_warp_note() -> String {
    let d = augment_config(&TrainOptions {
        formant_warp: true,
        ..TrainOptions::default()
    });
    format!(
        "{:.0} % of the training renditions had their formants moved by a factor of \
         {}-{} (the log-mel rows warped in frequency; pitch and level rows kept).",
        d.formant_warp_prob * 100.0,
        d.formant_warp.0,
        d.formant_warp.1
    )
}

/// How reports describe `--speaker-adversary STRENGTH`.
pub fn speaker_adversary_note(strength: f64) -> String {
    format!(
        "Trained against a speaker adversary (gradient reversal, strength ramping up to \
         {strength}): a linear classifier guessed each window's training speaker from the \
         pooled vector, and the network learnt to defeat it."
    )
}

/// How reports describe `room_reverb`: read from the chain it trains with.
pub fn room_reverb_note() -> String {
    let d = augment_config(&TrainOptions {
        room_reverb: true,
        ..TrainOptions::default()
    });
    format!(
        "{:.0} % of the training renditions were heard in a synthetic room (reverberation \
         time {}-{} s, direct sound {}-{} dB above the reverberation).",
        d.reverb_prob * 100.0,
        d.reverb_rt60_s.0,
        d.reverb_rt60_s.1,
        d.reverb_drr_db.0,
        d.reverb_drr_db.1
    )
}

/// The augmentation chain: gain on every rendition (loudness must not be a
/// corpus fingerprint; kept above the speech gate for the quietest corpus),
/// telephone a little more often than the library default (phone calls are a
/// main use).
pub fn augment_config(o: &TrainOptions) -> augment::AugmentConfig {
    augment::AugmentConfig {
        gain_prob: 1.0,
        gain_db: (-12.0, 12.0),
        telephone_prob: 0.35,
        varied_lines: o.varied_phone_lines,
        formant_warp_prob: if o.formant_warp { 0.5 } else { 0.0 },
        reverb_prob: if o.room_reverb { ROOM_REVERB_PROB } else { 0.0 },
        ..Default::default()
    }
}

/// Features of every clip. Clips to score (`copies` `None`) stay as they
/// are; training clips (`Some(n)`) are padded to at least `window_frames`
/// frames, since training crops whole windows, and get `n` renditions
/// augmented as `aug` says besides.
pub fn prepare(
    clips: &[Clip],
    cfg: &FeatureConfig,
    copies: Option<usize>,
    window_frames: usize,
    seed: u64,
    aug: &augment::AugmentConfig,
) -> Result<Vec<ClipFeatures>> {
    let min_len = samples_for(cfg, window_frames);
    train::par_map(clips, |i, clip| {
        let mut rng = StdRng::seed_from_u64(derived_seed(seed, i));
        let audio =
            corpus::load_audio(&clip.path, cfg.sample_rate).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut versions = Vec::with_capacity(copies.unwrap_or(0) + 1);
        let mut clean = audio.clone();
        if copies.is_some() {
            pad_with_noise(&mut clean, min_len, &mut rng);
        }
        versions.push(Arc::new(
            Utterance::from_audio(cfg, &clean, window_frames)
                .with_context(|| clip.path.display().to_string())?,
        ));
        for _ in 0..copies.unwrap_or(0) {
            let mut x = audio.clone();
            // Room for time-stretching to shorten the clip.
            pad_with_noise(&mut x, min_len * 5 / 4, &mut rng);
            let mut x = augment::augment_random(&x, cfg.sample_rate, aug, &mut rng);
            pad_with_noise(&mut x, min_len, &mut rng);
            let mut rendition = Utterance::from_audio(cfg, &x, window_frames)
                .with_context(|| clip.path.display().to_string())?;
            if let Some(alpha) = augment::draw_formant_warp(aug, &mut rng) {
                augment::warp_formants(cfg, &mut rendition.frames, alpha);
            }
            versions.push(Arc::new(rendition));
        }
        Ok(clip_features(clip, clip.corpus.clone(), versions))
    })
}

/// Features of `clips` heard through the telephone channel, each tagged as
/// corpus "`<corpus>` phone": validated alongside the clean clips, they make
/// the validation UA (a mean over corpora) weigh calls as much as clean audio.
pub fn prepare_telephone(
    clips: &[Clip],
    cfg: &FeatureConfig,
    window_frames: usize,
) -> Result<Vec<ClipFeatures>> {
    train::par_map(clips, |_, clip| {
        let audio =
            corpus::load_audio(&clip.path, cfg.sample_rate).map_err(|e| anyhow::anyhow!("{e}"))?;
        let phone = augment::telephone(&audio, cfg.sample_rate);
        let utterance = Utterance::from_audio(cfg, &phone, window_frames)
            .with_context(|| clip.path.display().to_string())?;
        Ok(clip_features(
            clip,
            format!("{} phone", clip.corpus),
            vec![Arc::new(utterance)],
        ))
    })
}

fn clip_features(clip: &Clip, corpus: String, versions: Vec<Arc<Utterance>>) -> ClipFeatures {
    ClipFeatures {
        label: clip.emotion.index(),
        corpus,
        speaker: clip.speaker.clone(),
        scored: clip.is_scored(),
        versions,
    }
}

/// The (corpus, speaker) pairs of `clips`, sorted and unique: what the model
/// metadata records so that `eval` can keep those voices apart.
/// What the element reads beside the graph: labels, window, the features
/// (with their normalisation statistics) and the `training` record.
pub fn model_metadata(
    features: &FeatureConfig,
    window_seconds: f64,
    training: Value,
) -> ModelMetadata {
    ModelMetadata {
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        sample_rate: features.sample_rate,
        window: window_seconds,
        features: features.clone(),
        training,
    }
}

pub fn speaker_pairs(clips: &[Clip]) -> Vec<(String, String)> {
    let set: std::collections::BTreeSet<(String, String)> = clips
        .iter()
        .map(|c| (c.corpus.clone(), c.speaker.clone()))
        .collect();
    set.into_iter().collect()
}

/// The checkout's commit when training started (a run takes minutes, and the
/// tree may move on meanwhile).
pub fn git_commit() -> String {
    static AT_START: std::sync::LazyLock<String> = std::sync::LazyLock::new(read_git_commit);
    AT_START.clone()
}

fn read_git_commit() -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let dirty = std::process::Command::new("git")
                .args(["status", "--porcelain", "--untracked-files=no"])
                .output()
                .map(|o| !o.stdout.is_empty())
                .unwrap_or(false);
            let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if dirty { format!("{id}-dirty") } else { id }
        }
        _ => "unknown".into(),
    }
}

/// Moves the validation clips of `corpora` into training and records it.
fn val_into_train(split: &mut split::Split, corpora: &[String]) {
    if corpora.is_empty() {
        return;
    }
    let (moved, kept): (Vec<Clip>, Vec<Clip>) = split
        .val
        .drain(..)
        .partition(|c| corpora.contains(&c.corpus));
    split.val = kept;
    for corpus in corpora {
        let groups: std::collections::BTreeSet<&str> = moved
            .iter()
            .filter(|c| &c.corpus == corpus)
            .map(|c| c.group.as_str())
            .collect();
        if let Some(entry) = split.description.pointer_mut(&format!("/corpora/{corpus}")) {
            entry["val_moved_to_train"] = json!(groups);
            // Keep the per-part records true to what was trained on.
            let val = entry["val"].take();
            let train = &mut entry["train"];
            for key in ["clips", "groups"] {
                train[key] = match (train[key].take(), &val[key]) {
                    (Value::Number(a), Value::Number(b)) => {
                        json!(a.as_u64().unwrap_or(0) + b.as_u64().unwrap_or(0))
                    }
                    (Value::Array(mut a), Value::Array(b)) => {
                        a.extend(b.iter().cloned());
                        Value::Array(a)
                    }
                    (a, _) => a,
                };
            }
            if let (Some(t), Some(v)) = (
                train["emotions"].as_object_mut(),
                val["emotions"].as_object(),
            ) {
                for (label, n) in v {
                    let sum =
                        t.get(label).and_then(Value::as_u64).unwrap_or(0) + n.as_u64().unwrap_or(0);
                    t.insert(label.clone(), json!(sum));
                }
            }
            entry["val"] = json!({ "groups": [], "clips": 0, "emotions": {} });
        }
    }
    split.train.extend(moved);
    if let Some(counts) = split.description.pointer_mut("/counts") {
        counts["train"] = json!(split.train.len());
        counts["val"] = json!(split.val.len());
    }
}

/// The `i`-th seed drawn from `seed` (per clip, per ensemble member): index 0
/// is `seed` itself, others are spread by the golden-ratio constant.
fn derived_seed(seed: u64, i: usize) -> u64 {
    seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Training seed of ensemble member `k`; member 0 keeps the run's seed, so a
/// one-member ensemble is exactly the single model that seed trains.
pub fn member_seed(seed: u64, k: usize) -> u64 {
    derived_seed(seed, k)
}

/// A student of the networks of `teachers`, trained on `cfg` but from seed
/// `member_seed(cfg.seed, n)` for `n` teachers, which no member had: one place
/// for `train --distill` and `cv --distill`, so cross-validation scores the
/// student `train` exports.
pub fn train_student(
    cfg: &TrainConfig,
    teachers: &Ensemble,
    how: Distillation,
    features: &FeatureConfig,
    train_set: &[ClipFeatures],
    val_set: &[ClipFeatures],
    progress: impl FnMut(&train::EpochLog, usize),
) -> Result<TrainOutcome> {
    let n = teachers.n_members();
    let seed = member_seed(cfg.seed, n);
    eprintln!("student of {n} (seed {seed})");
    let teacher = Teacher {
        model: teachers,
        how,
    };
    train::train_with_teacher(
        &TrainConfig {
            seed,
            ..cfg.clone()
        },
        features,
        train_set,
        val_set,
        Some(&teacher),
        progress,
    )
}

/// The training loop's settings for options `o`: one place for both `train`
/// and `cv`.
pub fn train_config(
    o: &TrainOptions,
    net: NetConfig,
    window_frames: usize,
    hop_frames: usize,
) -> TrainConfig {
    TrainConfig {
        seed: o.seed,
        max_epochs: o.epochs,
        batch_size: o.batch_size,
        samples_per_epoch: o.samples_per_epoch,
        learning_rate: o.learning_rate,
        weight_decay: o.weight_decay,
        label_smoothing: o.label_smoothing as f32,
        early_stop_patience: 15,
        first_checkpoint_epoch: o.first_checkpoint,
        lr_patience: 5,
        lr_factor: 0.5,
        min_lr: 1e-5,
        window_frames,
        hop_frames,
        short_window_fraction: 0.25,
        spec_masks: o.spec_masks,
        weight_average_decay: o.weight_average_decay,
        mixup_alpha: o.mixup_alpha,
        fixed_schedule: None,
        validate_streams: o.validate_streams,
        speaker_adversary: o.speaker_adversary,
        corpus_shares: o.corpus_shares,
        net,
    }
}

/// Trains one network with early stopping on `val` and, given `refit_set`,
/// trains it again on that set for the chosen number of epochs. Returns the
/// network to export and its record for the report.
fn train_member(
    cfg: &TrainConfig,
    features: &FeatureConfig,
    train_set: &[ClipFeatures],
    val_set: &[ClipFeatures],
    refit_set: Option<&[ClipFeatures]>,
) -> Result<(EmotionCnn, Value)> {
    let t = Instant::now();
    let outcome = train::train(cfg, features, train_set, val_set, progress_printer(t))?;
    let mut seconds = t.elapsed().as_secs_f64();
    eprintln!(
        "best epoch {} (val UA {:.3}); training took {seconds:.0} s",
        outcome.best_epoch, outcome.best_val_ua
    );
    let mut record = json!({
        "seed": cfg.seed,
        "best_epoch": outcome.best_epoch,
        "best_val_ua": outcome.best_val_ua,
        "refit": Value::Null,
        "history": outcome.history,
    });
    let Some(combined) = refit_set else {
        record["seconds"] = json!(seconds.round());
        return Ok((outcome.model, record));
    };
    let schedule: Vec<f64> = outcome.history[..outcome.best_epoch]
        .iter()
        .map(|log| log.lr)
        .collect();
    eprintln!(
        "refit on {} clips (training + validation speakers) for {} epochs",
        combined.len(),
        schedule.len()
    );
    let refit_cfg = TrainConfig {
        fixed_schedule: Some(schedule),
        ..cfg.clone()
    };
    let t = Instant::now();
    let refitted = train::train(&refit_cfg, features, combined, &[], progress_printer(t))?;
    let refit_seconds = t.elapsed().as_secs_f64();
    seconds += refit_seconds;
    record["refit"] = json!({
        "epochs": refitted.best_epoch,
        "clips": combined.len(),
        "seconds": refit_seconds.round(),
        "history": refitted.history,
    });
    record["seconds"] = json!(seconds.round());
    Ok((refitted.model, record))
}

pub fn train_command(o: &TrainOptions) -> Result<()> {
    o.check()?;
    if let Some(d) = o.distill {
        d.validate()?;
        if o.refit {
            bail!("--distill and --refit cannot be combined: the student has no refit schedule");
        }
    }
    let started = Instant::now();
    git_commit();
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let clips = load_clips(&o.sources)?;
    eprintln!("{} clips: {}", clips.len(), corpus::summarize(&clips));
    let mut split = split::split(
        &clips,
        &SplitConfig {
            seed: o.seed,
            test_fraction: o.test_fraction,
            ..Default::default()
        },
    );
    val_into_train(&mut split, &o.val_into_train);
    eprintln!(
        "split: {} train, {} val, {} test clips",
        split.train.len(),
        split.val.len(),
        split.test.len()
    );

    let mut features = o.feature_config(o.normalization);
    let nyquist = features.sample_rate as f32 / 2.0;
    if !(features.fmin >= 0.0 && features.fmin < features.fmax && features.fmax <= nyquist) {
        bail!(
            "mel band {}–{} Hz: need 0 <= --fmin < --fmax <= {nyquist} Hz",
            features.fmin,
            features.fmax
        );
    }
    let window_frames =
        features.frames_in((o.window_seconds * f64::from(features.sample_rate)).round() as usize);
    let hop_frames = seremotion_core::analysis::seconds_to_frames(
        seremotion_core::analysis::DEFAULT_INTERVAL,
        features.frame_rate(),
    );
    let t = Instant::now();
    let train_set = prepare(
        &split.train,
        &features,
        Some(o.copies),
        window_frames,
        o.seed,
        &augment_config(o),
    )?;
    let mut val_set = prepare(
        &split.val,
        &features,
        None,
        window_frames,
        o.seed,
        &augment_config(o),
    )?;
    if o.validate_telephone {
        val_set.extend(prepare_telephone(&split.val, &features, window_frames)?);
    }
    let prep_seconds = t.elapsed().as_secs_f64();
    eprintln!(
        "features: {} training clips x {} renditions, {} validation clips in {prep_seconds:.0} s",
        train_set.len(),
        o.copies + 1,
        val_set.len()
    );
    let plain_features = features.clone();
    train::fit_normalisation(
        &mut features,
        &train_set,
        window_frames,
        o.stream_prior_seconds,
    );

    let net = o.net_config(features.n_features());
    let cfg = train_config(o, net.clone(), window_frames, hop_frames);
    // Refit: the validation speakers only chose the number of epochs; train
    // again on them too, with the same learning-rate schedule up to the best
    // epoch, so the model has heard as many voices as possible. The test
    // speakers stay unheard.
    let refit_set = if o.refit && !split.val.is_empty() {
        let mut combined = prepare(
            &split.val,
            &plain_features,
            Some(o.copies),
            window_frames,
            !o.seed,
            &augment_config(o),
        )?;
        combined.extend(train_set.iter().cloned());
        Some(combined)
    } else {
        None
    };
    let mut members = Vec::with_capacity(o.ensemble);
    let mut member_records = Vec::with_capacity(o.ensemble);
    let mut train_seconds = 0.0;
    // Every member runs on every window.
    let mut macs_per_window = 0;
    for k in 0..o.ensemble {
        let seed = member_seed(o.seed, k);
        if o.ensemble > 1 {
            eprintln!("ensemble member {}/{} (seed {seed})", k + 1, o.ensemble);
        }
        let member_cfg = TrainConfig {
            seed,
            net: o.member_net(k, features.n_features()),
            ..cfg.clone()
        };
        let (model, mut record) = train_member(
            &member_cfg,
            &features,
            &train_set,
            &val_set,
            refit_set.as_deref(),
        )?;
        train_seconds += record["seconds"].as_f64().unwrap_or(0.0);
        record["net"] = json!(member_cfg.net);
        macs_per_window += member_cfg.net.macs(window_frames);
        members.push(model);
        member_records.push(record);
    }
    let mut model = Ensemble::new(members);
    // A student learns from the whole ensemble and is exported alone.
    let mut teacher_records = Vec::new();
    if let Some(how) = o.distill {
        let t = Instant::now();
        let outcome = train_student(
            &cfg,
            &model,
            how,
            &features,
            &train_set,
            &val_set,
            progress_printer(t),
        )?;
        let seconds = t.elapsed().as_secs_f64();
        eprintln!(
            "best epoch {} (val UA {:.3}); training took {seconds:.0} s",
            outcome.best_epoch, outcome.best_val_ua
        );
        train_seconds += seconds;
        teacher_records = std::mem::replace(
            &mut member_records,
            vec![json!({
                "seed": member_seed(o.seed, o.ensemble),
                "best_epoch": outcome.best_epoch,
                "best_val_ua": outcome.best_val_ua,
                "refit": Value::Null,
                "history": outcome.history,
                "seconds": seconds.round(),
                "net": net,
            })],
        );
        model = Ensemble::new(vec![outcome.model]);
        macs_per_window = net.macs(window_frames);
    }
    let calibration = if o.calibrate {
        let c = calibrate::fit_model(&model, &features, &val_set, window_frames, hop_frames);
        eprintln!("{c}");
        model = model.with_logit_offsets(&c.offsets);
        Some(c)
    } else {
        None
    };

    // Export, then embed the metadata the element needs.
    let graph = export::export_graph(&model, features.n_features(), window_frames)?;
    let command: Vec<String> = std::env::args().collect();
    let mut training = json!({
        "corpora": corpus::summarize(&clips),
        "split": split.description,
        "seed": o.seed,
        "git_commit": git_commit(),
        "command": command.join(" "),
        // The first exported network's; `members` has each one's.
        "net": member_records[0]["net"],
        "macs_per_window": macs_per_window,
        "members": member_records,
        // With a distilled student: the networks it learnt from, and how.
        "teachers": teacher_records,
        "distillation": o.distill,
        "train_seconds": train_seconds.round(),
        "feature_seconds": prep_seconds.round(),
        "augmented_copies": o.copies,
        "window_seconds": o.window_seconds,
        "validate_telephone": o.validate_telephone,
        "varied_phone_lines": o.varied_phone_lines,
        "formant_warp": o.formant_warp,
        "room_reverb": o.room_reverb,
        // Offsets added to the logits, chosen on the validation speakers.
        "calibration": calibration,
        "validate_streams": o.validate_streams,
        // Voices the model heard (trained on) and that chose its checkpoint:
        // `eval` reports clips of either apart from held-out figures.
        "training_speakers": speaker_pairs(&split.train),
        "validation_speakers": speaker_pairs(&split.val),
        "licence": LICENCE,
    });
    let model_path = o.out.join(format!("{}.onnx", o.name));
    let write_model = |training: &Value| -> Result<()> {
        let meta = model_metadata(&features, o.window_seconds, training.clone());
        std::fs::write(&model_path, embed_metadata(&graph, &meta))
            .with_context(|| format!("writing {}", model_path.display()))
    };
    write_model(&training)?;
    eprintln!("wrote {}", model_path.display());

    let mut results = json!({});
    if o.evaluate && !split.test.is_empty() {
        let eval_dir = o.out.join("eval");
        std::fs::create_dir_all(&eval_dir)
            .with_context(|| format!("creating {}", eval_dir.display()))?;
        for (name, telephony) in [("test-clean", false), ("test-telephone", true)] {
            let json_path = eval_dir.join(format!("{name}.json"));
            let t = Instant::now();
            let opts = eval::EvalOptions {
                telephony,
                plot_dir: Some(eval_dir.join(name)),
                ..eval::EvalOptions::new(json_path)
            };
            let value = eval::evaluate(Some(&model_path), &split.test, &opts)
                .map_err(|e| anyhow::anyhow!("evaluating {}: {e}", model_path.display()))?
                .json;
            eprintln!(
                "{name}: {} in {:.0} s",
                summary_line(&value),
                t.elapsed().as_secs_f64()
            );
            results[name] = value;
        }
        // The summary in the model metadata carries the held-out results too.
        training["test_results"] = compact_results(&results);
        write_model(&training)?;
    }
    training["total_seconds"] = json!(started.elapsed().as_secs_f64().round());
    training["train_config"] = serde_json::to_value(&cfg)?;
    training["features"] = serde_json::to_value(&features)?;
    training["results"] = results;
    let model_bytes = std::fs::metadata(&model_path).map(|m| m.len()).unwrap_or(0);
    training["onnx_bytes"] = json!(model_bytes);
    let report_json = o.out.join("training.json");
    std::fs::write(&report_json, serde_json::to_string_pretty(&training)?)
        .with_context(|| format!("writing {}", report_json.display()))?;
    let report_md = o.out.join("REPORT.md");
    std::fs::write(&report_md, render_report(&training, &o.name))
        .with_context(|| format!("writing {}", report_md.display()))?;
    eprintln!(
        "wrote {} and {}",
        report_json.display(),
        report_md.display()
    );
    Ok(())
}

/// One progress line per epoch: loss, validation metrics, learning rate, ETA.
fn progress_printer(started: Instant) -> impl FnMut(&train::EpochLog, usize) {
    move |log, max| {
        let elapsed = started.elapsed().as_secs_f64();
        let eta = elapsed / log.epoch as f64 * (max - log.epoch) as f64;
        let val = if log.val_ua.is_nan() {
            "no validation (refit)".to_string()
        } else {
            let per: Vec<String> = log
                .val_ua_per_corpus
                .iter()
                .map(|(c, ua)| format!("{c} {ua:.3}"))
                .collect();
            format!("val UA {:.3} ({})", log.val_ua, per.join(", "))
        };
        let speaker = log
            .speaker_loss
            .map(|l| format!("  speaker loss {l:.3}"))
            .unwrap_or_default();
        eprintln!(
            "epoch {:>3}/{max}  loss {:.4}{speaker}  train acc {:.3}  {val}  lr {:.1e}  {:.0} s  ETA <= {eta:.0} s",
            log.epoch, log.loss, log.train_accuracy, log.lr, log.seconds,
        );
    }
}

pub fn eval_command(
    sources: &[DataSource],
    model: &Path,
    json_out: &Path,
    telephony: bool,
    streams: eval::Streams,
    plots: Option<&Path>,
    speech_threshold_db: Option<f32>,
) -> Result<()> {
    let clips = load_clips(sources)?;
    let plots = plots.map(Path::to_path_buf).unwrap_or_else(|| {
        let stem = json_out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        json_out.with_file_name(stem)
    });
    let opts = eval::EvalOptions {
        telephony,
        streams,
        json_out: json_out.to_path_buf(),
        plot_dir: Some(plots),
        speech_threshold_db,
    };
    let value = eval::evaluate(Some(model), &clips, &opts)
        .map_err(|e| anyhow::anyhow!("evaluating {}: {e}", model.display()))?
        .json;
    println!("{}", summary_line(&value));
    Ok(())
}

fn metric(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

fn summary_line(v: &Value) -> String {
    let mut s = format!(
        "overall UA {:.3}",
        metric(&v["overall"], "unweighted_accuracy")
    );
    if let Some(per) = v["per_corpus"].as_object() {
        for (c, m) in per {
            let _ = write!(s, ", {c} UA {:.3}", metric(m, "unweighted_accuracy"));
        }
    }
    s
}

fn compact_results(results: &Value) -> Value {
    let mut out = json!({});
    if let Some(map) = results.as_object() {
        for (name, v) in map {
            let mut per = json!({});
            for (scope, m) in std::iter::once(("overall", &v["overall"])).chain(
                v["per_corpus"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, m)| (k.as_str(), m)),
            ) {
                per[scope] = json!({
                    "n": m["n"],
                    "accuracy": m["accuracy"],
                    "unweighted_accuracy": m["unweighted_accuracy"],
                    "macro_f1": m["macro_f1"],
                });
            }
            out[name] = per;
        }
    }
    out
}

fn pct(v: &Value, key: &str) -> String {
    let x = metric(v, key);
    if x.is_nan() {
        "–".into()
    } else {
        format!("{:.1}", 100.0 * x)
    }
}

/// REPORT.md: command, time, data and split, held-out results clean and
/// through the telephone channel, confusion matrices, licences.
pub fn render_report(t: &Value, name: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# seremotion model `{name}.onnx`: training and evaluation report\n"
    );
    let _ = writeln!(
        s,
        "4-class speech emotion model (neutral, happy, sad, angry) for the `seremotion` element, \
         trained by `seremotion-trainer`. Accuracies below are on the split's test clips, \
         classified exactly the way the element does ({} s windows every {} s, speech gating, \
         mean of window probabilities). Test speakers were neither trained on nor used for \
         model selection, except TESS: it is split by word, so both of its voices are in \
         training and its figures are **speaker-dependent**. ASED is scored on its common \
         sentences 01 and 02 only. For speaker-independent figures use `seremotion-trainer cv`.\n",
        // Reports written before the window was recorded were all 2 s.
        t["window_seconds"].as_f64().unwrap_or(2.0),
        seremotion_core::analysis::DEFAULT_INTERVAL,
    );
    let _ = writeln!(
        s,
        "## Command\n\n```\n{}\n```\n",
        t["command"].as_str().unwrap_or("")
    );
    let members = t["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "Git commit `{}`, seed {}. Feature extraction {} s, training {} s, total {} s \
         on 2 CPU cores (burn 0.22 Flex backend).\n",
        t["git_commit"].as_str().unwrap_or("?"),
        t["seed"],
        t["feature_seconds"],
        t["train_seconds"],
        t["total_seconds"],
    );
    // Reports older than `--member-stems` have no network per member.
    let stems: Vec<&Value> = members
        .iter()
        .map(|m| &m["net"]["frequency_stem"])
        .collect();
    let unlike = stems.iter().any(|&c| c != stems[0]);
    if members.len() > 1 && unlike {
        let _ = writeln!(
            s,
            "The model is an ensemble of {} networks, alike but for their frequency stems \
             ({} channels), trained on the same split from different seeds; the exported \
             graph averages their logits.\n",
            members.len(),
            stems
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else if members.len() > 1 {
        let _ = writeln!(
            s,
            "The model is an ensemble of {} networks trained alike on the same split from \
             different seeds; the exported graph averages their logits.\n",
            members.len()
        );
    }
    if let Some(teachers) = t["teachers"].as_array().filter(|t| !t.is_empty()) {
        let _ = writeln!(
            s,
            "The model is one network distilled from {} networks trained alike on the same \
             split from other seeds (temperature {}, teacher weight {}); only it is exported. \
             Teachers' best validation UA: {}.\n",
            teachers.len(),
            t["distillation"]["temperature"],
            t["distillation"]["weight"],
            teachers
                .iter()
                .map(|m| format!("{:.3}", metric(m, "best_val_ua")))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (k, m) in members.iter().enumerate() {
        let who = if members.len() > 1 {
            format!("Member {} (seed {}): best", k + 1, m["seed"])
        } else {
            "Best".to_string()
        };
        let _ = write!(
            s,
            "{who} epoch {} of {} (validation UA {:.3}).",
            m["best_epoch"],
            m["history"].as_array().map_or(0, Vec::len),
            metric(m, "best_val_ua"),
        );
        if let Some(epochs) = m["refit"]["epochs"].as_u64() {
            let _ = write!(
                s,
                " Exported as a refit: after the validation speakers chose the number of \
                 epochs, training restarted on training and validation speakers together \
                 ({} clips) for those {epochs} epochs with the same learning-rate schedule; \
                 the test speakers were never trained on.",
                m["refit"]["clips"],
            );
        }
        let _ = writeln!(s, "\n");
    }
    if let Some(decay) = t["train_config"]["weight_average_decay"]
        .as_f64()
        .filter(|&d| d > 0.0)
    {
        let _ = writeln!(
            s,
            "Validated and exported weights are an exponential moving average \
             (decay {decay} per batch).\n"
        );
    }
    if t["validate_telephone"].as_bool() == Some(true) {
        let _ = writeln!(
            s,
            "Validation (early stopping, learning-rate steps) scored the validation \
             speakers clean and through the telephone channel, as separate corpora.\n"
        );
    }
    for note in RecipeNotes::from_record(t).sentences() {
        let _ = writeln!(s, "{note}\n");
    }
    if let Some(c) = t["calibration"].as_object() {
        let _ = writeln!(
            s,
            "Logit offsets {} (labels in order) were added to the classifier's bias: \
             they raise the validation speakers' UA from {} to {}.\n",
            c["offsets"],
            pct(&t["calibration"], "val_ua_before"),
            pct(&t["calibration"], "val_ua_after")
        );
    }
    let _ = writeln!(s, "## Held-out results\n");
    let held_out = ["test-clean", "test-telephone"]
        .iter()
        .any(|k| t["results"][*k]["overall"]["n"].as_u64().unwrap_or(0) > 0);
    if held_out {
        let _ = writeln!(s, "| set | corpus | clips | accuracy | UA | macro-F1 |");
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|");
    } else {
        let _ = writeln!(
            s,
            "None: every speaker but the validation ones was trained on (`--test-fraction 0`). \
             This recipe's speaker-independent figures come from `seremotion-trainer cv`.\n"
        );
    }
    for (label, key) in [("clean", "test-clean"), ("telephone", "test-telephone")] {
        if !held_out {
            break;
        }
        let r = &t["results"][key];
        if r.is_null() {
            continue;
        }
        let mut rows: Vec<(&str, &Value)> = r["per_corpus"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
            .unwrap_or_default();
        rows.push(("**all**", &r["overall"]));
        for (corpus, m) in rows {
            let _ = writeln!(
                s,
                "| {label} | {corpus} | {} | {} | {} | {} |",
                m["n"],
                pct(m, "accuracy"),
                pct(m, "unweighted_accuracy"),
                pct(m, "macro_f1")
            );
        }
    }
    // Without held-out clips there are no figures to explain or plot.
    if held_out {
        let _ = writeln!(
            s,
            "\nUA = unweighted accuracy (mean per-class recall). Telephone = 8 kHz band-limit + \
         G.711 mu-law before the element's resampling. Targets (issue 13): UA >= 70 % on each of \
         RAVDESS, SAVEE, ASED and nEMO on unheard speakers, <= 4 points lost through the \
         telephone channel.\n"
        );
        let _ = writeln!(
            s,
            "### Confusion matrices (rows = true, columns = predicted)\n"
        );
        for key in ["test-clean", "test-telephone"] {
            let r = &t["results"][key];
            let Some(per) = r["per_corpus"].as_object() else {
                continue;
            };
            for (corpus, m) in per {
                let _ = writeln!(s, "**{key}, {corpus}**\n");
                let _ = writeln!(s, "| true \\ predicted | {} |", LABELS.join(" | "));
                let _ = writeln!(s, "|---|{}", "---:|".repeat(LABELS.len()));
                for (i, row) in m["confusion"].as_array().into_iter().flatten().enumerate() {
                    let cells: Vec<String> = row
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|v| v.to_string())
                        .collect();
                    let _ = writeln!(
                        s,
                        "| {} | {} |",
                        LABELS.get(i).unwrap_or(&"?"),
                        cells.join(" | ")
                    );
                }
                let _ = writeln!(s);
            }
        }
        let _ = writeln!(
            s,
            "Images: `eval/test-clean/` and `eval/test-telephone/` (one PNG per corpus).\n"
        );
    }
    let _ = writeln!(s, "## Data and split\n");
    let _ = writeln!(
        s,
        "Corpora (clips per emotion): `{}`\n\nSplit (speaker-independent; TESS by word; \
         augmentation only on the training part, after the split):\n\n```json\n{}\n```\n",
        t["corpora"],
        serde_json::to_string_pretty(&t["split"]).unwrap_or_default()
    );
    let _ = writeln!(s, "## Model\n");
    let _ = writeln!(
        s,
        "Input `features` [batch, {} , frames] (batch and frames dynamic), output `logits` [batch, 4]. \
         Network `{}`{}: {} multiply-adds per 2 s window; ONNX file {} bytes. Features: `{}` \
         (global mean/std from the training split are in the model metadata).\n",
        t["net"]["n_features"],
        t["net"],
        if members.len() > 1 && unlike {
            format!(" (the first member's) x {} members", members.len())
        } else if members.len() > 1 {
            format!(" x {} members", members.len())
        } else {
            String::new()
        },
        t["macs_per_window"],
        t["onnx_bytes"],
        serde_json::to_string(&{
            let mut f = t["features"].clone();
            if let Some(o) = f.as_object_mut() {
                o.remove("mean");
                o.remove("std");
            }
            f
        })
        .unwrap_or_default()
    );
    let _ = writeln!(s, "## Training curve");
    for (k, m) in members.iter().enumerate() {
        if members.len() > 1 {
            let _ = writeln!(s, "\nMember {} (seed {}):", k + 1, m["seed"]);
        }
        let _ = writeln!(
            s,
            "\n| epoch | loss | train acc | val UA | lr |\n|---:|---:|---:|---:|---:|"
        );
        for e in m["history"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "| {} | {:.4} | {:.3} | {:.3} | {:.1e} |",
                e["epoch"],
                metric(e, "loss"),
                metric(e, "train_accuracy"),
                metric(e, "val_ua"),
                metric(e, "lr")
            );
        }
    }
    let _ = writeln!(
        s,
        "\n## Licence of the model\n\nThe weights are derived from the corpora trained on (see \
         the data section): TESS (CC BY-NC-ND 4.0), RAVDESS (CC BY-NC-SA 4.0), SAVEE (free for \
         research use), ASED (research use with citation, no licence stated), nEMO \
         (CC BY-NC-SA 4.0). Use the default model for **non-commercial research** purposes only; \
         train your own model on data you may use commercially for anything else."
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pooling spans narrower than their stride would leave rows unseen.
    #[test]
    fn stem_pools_narrower_than_their_stride_are_refused() {
        let pooled = |stem_pool| TrainOptions {
            stem_pool,
            ..TrainOptions::default()
        };
        let refused = pooled(2).check().expect_err("2 rows every 4 skip rows");
        assert!(refused.to_string().contains("--stem-pool 2"), "{refused}");
        assert!(pooled(FREQUENCY_STEM_POOL).check().is_ok());
        assert!(pooled(8).check().is_ok());
    }

    #[test]
    fn first_checkpoints_outside_the_epochs_are_refused() {
        let from = |first_checkpoint| TrainOptions {
            first_checkpoint,
            epochs: 60,
            ..TrainOptions::default()
        };
        for bad in [0, 61] {
            let refused = from(bad).check().expect_err("refused");
            assert!(
                refused.to_string().contains("--first-checkpoint"),
                "{bad}: {refused}"
            );
        }
        assert!(from(60).check().is_ok());
        // At its default it is not part of the recipe `cv --resume` compares,
        // so records written before it existed still resume.
        let record = serde_json::to_value(from(1)).unwrap();
        assert!(record.get("first_checkpoint").is_none(), "{record}");
        assert_eq!(
            serde_json::to_value(from(20)).unwrap()["first_checkpoint"],
            20
        );
    }

    #[test]
    fn weight_decays_outside_zero_to_one_are_refused() {
        let decayed = |weight_decay| TrainOptions {
            weight_decay,
            ..TrainOptions::default()
        };
        for bad in [-0.01, 1.0, f64::NAN] {
            let refused = decayed(bad).check().expect_err("refused");
            assert!(
                refused.to_string().contains("--weight-decay"),
                "{bad}: {refused}"
            );
        }
        assert!(decayed(0.0).check().is_ok());
        assert!(decayed(0.05).check().is_ok());
        // At its default it is not part of the recipe `cv --resume` compares.
        let record = serde_json::to_value(decayed(WEIGHT_DECAY)).unwrap();
        assert!(record.get("weight_decay").is_none(), "{record}");
        assert_eq!(
            serde_json::to_value(decayed(0.05)).unwrap()["weight_decay"],
            0.05
        );
        assert_eq!(
            train_config(&decayed(0.05), decayed(0.05).net_config(67), 99, 50).weight_decay,
            0.05
        );
    }

    #[test]
    fn dropout_and_label_smoothing_reach_the_network_and_loss() {
        let o = TrainOptions {
            dropout: 0.5,
            label_smoothing: 0.1,
            ..TrainOptions::default()
        };
        let cfg = train_config(&o, o.net_config(67), 99, 50);
        assert_eq!(cfg.net.dropout, 0.5);
        assert_eq!(cfg.label_smoothing, 0.1);
        assert_eq!(o.member_net(1, 67).dropout, 0.5);
        let record = serde_json::to_value(&o).unwrap();
        assert_eq!(record["dropout"], 0.5);
        assert_eq!(record["label_smoothing"], 0.1);
        // At their defaults they are not part of the recipe `cv --resume`
        // compares, and the network is today's.
        let plain = TrainOptions::default();
        let record = serde_json::to_value(&plain).unwrap();
        assert!(record.get("dropout").is_none(), "{record}");
        assert!(record.get("label_smoothing").is_none(), "{record}");
        assert_eq!(plain.net_config(67).dropout, DROPOUT);
        for bad in [-0.1, 1.0, f64::NAN] {
            for (o, flag) in [
                (
                    TrainOptions {
                        dropout: bad,
                        ..TrainOptions::default()
                    },
                    "--dropout",
                ),
                (
                    TrainOptions {
                        label_smoothing: bad,
                        ..TrainOptions::default()
                    },
                    "--label-smoothing",
                ),
            ] {
                let refused = o.check().expect_err("refused");
                assert!(refused.to_string().contains(flag), "{bad}: {refused}");
            }
        }
    }

    #[test]
    fn dilations_of_zero_or_beyond_the_blocks_are_refused() {
        let dilated = |dilations: Vec<usize>| TrainOptions {
            dilations,
            ..TrainOptions::default()
        };
        for bad in [vec![1, 0], vec![1, 1, 2, 2, 2]] {
            let refused = dilated(bad.clone()).check().expect_err("refused");
            assert!(
                refused.to_string().contains("--dilations"),
                "{bad:?}: {refused}"
            );
        }
        assert!(dilated(vec![1, 1, 2, 2]).check().is_ok());
    }

    /// Training clips shorter than a window are padded whether or not
    /// augmented copies are asked for (`--copies 0` trains), clips to score
    /// are not.
    #[test]
    fn training_clips_are_padded_to_a_window_even_without_copies() {
        let dir = std::env::temp_dir().join(format!("seremotion-prepare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("short.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..8000 {
            w.write_sample((3000.0 * (i as f32 * 0.07).sin()) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
        let clip = Clip {
            path,
            corpus: "synthetic".into(),
            speaker: "one".into(),
            emotion: crate::corpus::Emotion::Neutral,
            group: "one".into(),
        };
        let cfg = FeatureConfig::default_model();
        let window = 99;
        let frames = |copies| {
            let aug = augment_config(&TrainOptions::default());
            let prepared = prepare(std::slice::from_ref(&clip), &cfg, copies, window, 1, &aug)
                .expect("features");
            prepared[0]
                .versions
                .iter()
                .map(|u| u.n_frames)
                .collect::<Vec<_>>()
        };
        let scored = frames(None);
        assert_eq!(scored.len(), 1);
        assert!(scored[0] < window, "0.5 s stays 0.5 s: {scored:?}");
        let plain = frames(Some(0));
        assert_eq!(plain.len(), 1);
        assert!(plain[0] >= window, "{plain:?}");
        let augmented = frames(Some(2));
        assert_eq!(augmented.len(), 3);
        assert!(augmented.iter().all(|&n| n >= window), "{augmented:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_report_names_the_options_its_record_holds() {
        let o = TrainOptions {
            corpus_shares: CorpusShares::Equal,
            formant_warp: true,
            room_reverb: true,
            mixup_alpha: 0.2,
            spec_masks: SpecMasks {
                count: 2,
                ..SpecMasks::default()
            },
            speaker_adversary: 0.3,
            first_checkpoint: 20,
            weight_decay: 0.05,
            dropout: 0.5,
            label_smoothing: 0.1,
            ..TrainOptions::default()
        };
        // The keys `train` writes into the model's training record.
        let record = |o: &TrainOptions| {
            serde_json::json!({
                "results": {},
                "formant_warp": o.formant_warp,
                "room_reverb": o.room_reverb,
                "train_config": train_config(o, o.net_config(67), 99, 50),
            })
        };
        let notes = RecipeNotes::from_record(&record(&o));
        assert_eq!(notes, RecipeNotes::of(&o));
        let sentences = notes.sentences();
        assert_eq!(sentences.len(), 10, "{sentences:?}");
        let report = render_report(&record(&o), "default");
        for sentence in &sentences {
            assert!(report.contains(sentence.as_str()), "{sentence}: {report}");
        }
        let plain = RecipeNotes::from_record(&record(&TrainOptions::default()));
        assert!(plain.sentences().is_empty(), "{:?}", plain.sentences());
        // A record from before these options existed names none of them.
        assert!(
            RecipeNotes::from_record(&serde_json::json!({}))
                .sentences()
                .is_empty()
        );
    }

    #[test]
    fn a_report_without_held_out_clips_points_to_cv_and_plots_nothing() {
        let none = render_report(&serde_json::json!({ "results": {} }), "default");
        assert!(none.contains("seremotion-trainer cv"), "{none}");
        assert!(!none.contains("Confusion matrices"), "{none}");

        let m = serde_json::json!({
            "n": 4, "accuracy": 0.5, "unweighted_accuracy": 0.5, "macro_f1": 0.4,
            "confusion": [[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]]
        });
        let t = serde_json::json!({
            "results": { "test-clean": { "overall": m, "per_corpus": { "savee": m } } }
        });
        let held = render_report(&t, "default");
        assert!(held.contains("| clean | savee | 4 |"), "{held}");
        assert!(held.contains("Confusion matrices"), "{held}");
        assert!(!held.contains("None: every speaker"), "{held}");
    }
}
