//! The `eval` subcommand: classify every clip the way the element does and
//! report per-corpus metrics, JSON and confusion-matrix plots.
//!
//! Clips go through the root crate's [`classify_clip`] (same windows, speech
//! gate and score aggregation as the element), so the numbers describe the
//! element, not a trainer-only code path.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde_json::json;
use seremotion_core::analysis::{
    AnalyzerSettings, EmotionAnalyzer, Summary, SummaryAccumulator, WindowResult, classify_clip,
};
use seremotion_core::model::Model;

use crate::augment::telephone;
use crate::corpus::{ASED_COMMON_SENTENCES, Clip, load_audio};
use crate::metrics::{Metrics, plot_confusion};

/// How clips are played to the analyser.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Streams {
    /// Each clip is a stream of its own.
    #[default]
    Clip,
    /// Each speaker's clips, in manifest order with [`STREAM_GAP_SECONDS`] of
    /// silence between them, are one stream (one voice through one call); a
    /// clip is scored by the windows whose centre lies inside it.
    Speaker,
}

/// Silence between two clips of a speaker's stream.
pub const STREAM_GAP_SECONDS: f64 = 0.5;

#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Pass the audio through the 8 kHz G.711 mu-law channel first.
    pub telephony: bool,
    pub streams: Streams,
    pub json_out: PathBuf,
    /// Where the confusion-matrix PNGs go (one per corpus and `overall`).
    pub plot_dir: Option<PathBuf>,
    /// The speech gate's level threshold (the element's `speech-threshold`);
    /// `None`: its default.
    pub speech_threshold_db: Option<f32>,
}

impl EvalOptions {
    /// Clean audio, each clip a stream of its own, no plots, the element's
    /// default speech gate; the report goes to `json_out`.
    pub fn new(json_out: impl Into<PathBuf>) -> Self {
        Self {
            telephony: false,
            streams: Streams::default(),
            json_out: json_out.into(),
            plot_dir: None,
            speech_threshold_db: None,
        }
    }
}

/// What the model said about one clip.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClipPrediction {
    pub path: PathBuf,
    pub corpus: String,
    pub speaker: String,
    /// Index into the model's labels.
    pub truth: usize,
    /// Counts in the scores (false for ASED's emotion-specific sentences).
    pub scored: bool,
    /// `None` when no window of the clip held speech.
    pub predicted: Option<usize>,
    /// Windows that scored the clip, speech or not.
    pub windows: usize,
    /// Mean window scores in the model's label order (zeros without speech).
    pub scores: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct EvalReport {
    pub labels: Vec<String>,
    pub model: String,
    pub telephony: bool,
    pub overall: Metrics,
    /// Held-out speakers only.
    pub per_corpus: BTreeMap<String, Metrics>,
    /// Clips of speakers the model trained on or validated with.
    pub per_corpus_seen: BTreeMap<String, Metrics>,
    pub clips: Vec<ClipPrediction>,
    /// Exactly what was written to `json_out`.
    pub json: serde_json::Value,
}

/// Loads the model (`None` = the embedded default) and evaluates `clips`.
pub fn evaluate(
    model_path: Option<&Path>,
    clips: &[Clip],
    opts: &EvalOptions,
) -> Result<EvalReport, Box<dyn Error>> {
    let model = match model_path {
        Some(p) => Model::from_file(p)?,
        None => Model::default_model()?,
    };
    evaluate_model(&model, clips, opts)
}

/// Evaluates an already loaded model, e.g. the one `train` just exported.
pub fn evaluate_model(
    model: &Arc<Model>,
    clips: &[Clip],
    opts: &EvalOptions,
) -> Result<EvalReport, Box<dyn Error>> {
    if clips.is_empty() {
        return Err("no clips to evaluate".into());
    }
    let labels = model.labels().to_vec();
    let n_labels = labels.len();
    // The model's own label order rules; map each clip's emotion into it by name.
    let truth_index = |clip: &Clip| {
        labels
            .iter()
            .position(|l| l.eq_ignore_ascii_case(clip.emotion.name()))
            .ok_or_else(|| {
                format!(
                    "{}: emotion `{}` is not among the model's labels {labels:?}",
                    clip.path.display(),
                    clip.emotion
                )
            })
    };
    let truths: Vec<usize> = clips.iter().map(truth_index).collect::<Result<_, _>>()?;

    let rate = model.metadata().sample_rate;
    let mut settings = AnalyzerSettings::for_model(model);
    if let Some(db) = opts.speech_threshold_db {
        settings.speech_threshold_db = db;
    }
    let predictions = match opts.streams {
        Streams::Clip => predict_each_clip(model, clips, &truths, opts.telephony, &settings)?,
        Streams::Speaker => {
            predict_speaker_streams(model, clips, &truths, opts.telephony, &settings)?
        }
    };

    // A clip without a single speech window gets no label: it counts as an
    // error (sentinel `n_labels`), so gating cannot flatter the numbers.
    let metrics_of = |filter: &dyn Fn(&ClipPrediction) -> bool| {
        let (t, p): (Vec<usize>, Vec<usize>) = predictions
            .iter()
            .filter(|c| filter(c))
            .map(|c| (c.truth, c.predicted.unwrap_or(n_labels)))
            .unzip();
        Metrics::from_predictions(n_labels, &t, &p)
    };
    // Voices the model was trained on or tuned with are not held out: their
    // clips are reported apart. Unscored clips (ASED's emotion-specific
    // sentences) count nowhere.
    let seen = seen_voices(model);
    let is_seen = |c: &ClipPrediction| seen.contains(&(c.corpus.clone(), c.speaker.clone()));
    let held_out = |c: &ClipPrediction| c.scored && !is_seen(c);
    let overall = metrics_of(&held_out);
    let mut per_corpus = BTreeMap::new();
    let mut per_corpus_seen = BTreeMap::new();
    for clip in clips {
        let corpus = &clip.corpus;
        if !per_corpus.contains_key(corpus) {
            let m = metrics_of(&|c: &ClipPrediction| held_out(c) && &c.corpus == corpus);
            if m.n > 0 {
                per_corpus.insert(corpus.clone(), m);
            }
            let m = metrics_of(&|c: &ClipPrediction| c.scored && is_seen(c) && &c.corpus == corpus);
            if m.n > 0 {
                per_corpus_seen.insert(corpus.clone(), m);
            }
        }
    }
    let unscored = predictions.iter().filter(|c| !c.scored).count();
    let seen_clips = predictions
        .iter()
        .filter(|c| c.scored && is_seen(c))
        .count();

    let channel = if opts.telephony {
        "telephone (8 kHz, G.711 mu-law)"
    } else {
        "clean"
    };
    let json = json!({
        "labels": labels,
        "model": model.origin(),
        "telephony": opts.telephony,
        "channel": channel,
        "streams": opts.streams,
        "streams_rule": match opts.streams {
            Streams::Clip => "each clip is a stream of its own".to_string(),
            Streams::Speaker => format!(
                "each speaker's clips, in manifest order with {STREAM_GAP_SECONDS} s of silence \
                 between them, are one stream; a clip is scored by the windows whose centre \
                 lies inside it"
            ),
        },
        "analysis": {
            "sample_rate": rate,
            "window_frames": settings.window_frames,
            "hop_frames": settings.hop_frames,
            "speech_threshold_db": settings.speech_threshold_db,
            "min_speech_ratio": settings.min_speech_ratio,
        },
        "unclassified_rule": "a clip in which no window passed the speech gate gets no label and \
            counts as an error; `unclassified` gives their number per true label, and they \
            appear in no confusion column",
        "overall": overall,
        "per_corpus": per_corpus,
        "seen_speakers_rule": "`overall` and `per_corpus` hold only clips of speakers the model \
            neither trained on nor validated with (its metadata lists them); clips of those \
            speakers are in `per_corpus_seen_speakers` and are not held-out figures",
        "per_corpus_seen_speakers": per_corpus_seen,
        "seen_speaker_clips": seen_clips,
        "unscored_rule": format!("ASED clips of sentences other than {} are not scored: each is \
            spoken in one emotion only, so its words give the label away",
            ASED_COMMON_SENTENCES.join(" and ")),
        "unscored_clips": unscored,
    });
    write_json(&opts.json_out, &json)?;

    if let Some(dir) = &opts.plot_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("{}: cannot create plot folder: {e}", dir.display()))?;
        let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let suffix = if opts.telephony { "_telephony" } else { "" };
        let channel_short = if opts.telephony { "telephone" } else { "clean" };
        for (name, m) in per_corpus
            .iter()
            .chain([(&"overall".to_string(), &overall)])
        {
            let title = format!(
                "{name} ({channel_short}): n={}, UA {:.1}%",
                m.n,
                100.0 * m.unweighted_accuracy
            );
            let file = dir.join(format!("confusion_{}{suffix}.png", file_stem(name)));
            plot_confusion(&file, &label_refs, &m.confusion, &title)?;
        }
    }

    print_table(&labels, channel, &overall, &per_corpus);
    if !per_corpus_seen.is_empty() {
        println!(
            "{seen_clips} clips of speakers the model trained on or validated with, NOT held out \
             (speaker-dependent figures):"
        );
        print_table(
            &labels,
            channel,
            &metrics_of(&|c| c.scored && is_seen(c)),
            &per_corpus_seen,
        );
    }
    if unscored > 0 {
        println!(
            "{unscored} ASED clips of sentences other than {} not scored",
            ASED_COMMON_SENTENCES.join(", ")
        );
    }
    Ok(EvalReport {
        labels,
        model: model.origin().to_string(),
        telephony: opts.telephony,
        overall,
        per_corpus,
        per_corpus_seen,
        clips: predictions,
        json,
    })
}

fn clip_audio(clip: &Clip, rate: u32, telephony: bool) -> Result<Vec<f32>, String> {
    let audio = load_audio(&clip.path, rate).map_err(|e| e.to_string())?;
    Ok(if telephony {
        telephone(&audio, rate)
    } else {
        audio
    })
}

fn prediction(clip: &Clip, truth: usize, summary: Summary) -> ClipPrediction {
    ClipPrediction {
        path: clip.path.clone(),
        corpus: clip.corpus.clone(),
        speaker: clip.speaker.clone(),
        scored: clip.is_scored(),
        truth,
        predicted: summary.dominant(),
        windows: summary.windows,
        scores: summary.mean_scores,
    }
}

/// Reports progress every 250 clips.
struct Progress {
    done: AtomicUsize,
    total: usize,
}

impl Progress {
    fn new(total: usize) -> Self {
        Progress {
            done: AtomicUsize::new(0),
            total,
        }
    }

    fn add(&self, n: usize) {
        let before = self.done.fetch_add(n, Ordering::Relaxed);
        let now = before + n;
        if now / 250 > before / 250 || now == self.total {
            eprintln!("eval: {now}/{} clips", self.total);
        }
    }
}

fn predict_each_clip(
    model: &Arc<Model>,
    clips: &[Clip],
    truths: &[usize],
    telephony: bool,
    settings: &AnalyzerSettings,
) -> Result<Vec<ClipPrediction>, String> {
    let rate = model.metadata().sample_rate;
    let progress = Progress::new(clips.len());
    clips
        .par_iter()
        .zip(truths)
        .map(|(clip, &truth)| {
            let audio = clip_audio(clip, rate, telephony)?;
            let summary = classify_clip(model, &audio, settings)
                .map_err(|e| format!("{}: {e}", clip.path.display()))?;
            progress.add(1);
            Ok(prediction(clip, truth, summary))
        })
        .collect()
}

/// The clip (index into `spans`, sorted sample ranges) holding sample
/// `centre`, if any: gaps between clips belong to none.
fn clip_at(spans: &[(usize, usize)], centre: usize) -> Option<usize> {
    let k = spans.partition_point(|&(_, end)| end <= centre);
    spans
        .get(k)
        .filter(|&&(start, end)| start <= centre && centre < end)
        .map(|_| k)
}

/// [`Streams::Speaker`]: one analyser per speaker over all its clips.
fn predict_speaker_streams(
    model: &Arc<Model>,
    clips: &[Clip],
    truths: &[usize],
    telephony: bool,
    settings: &AnalyzerSettings,
) -> Result<Vec<ClipPrediction>, String> {
    let rate = model.metadata().sample_rate;
    let cfg = &model.metadata().features;
    let (hop, n_fft) = (cfg.hop_length, cfg.n_fft);
    let gap = vec![0f32; (STREAM_GAP_SECONDS * f64::from(rate)).round() as usize];
    // Speakers in order of first appearance, each with its clips in manifest order.
    let mut order: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut speakers: Vec<Vec<usize>> = Vec::new();
    for (i, clip) in clips.iter().enumerate() {
        let next = speakers.len();
        let k = *order
            .entry((clip.corpus.as_str(), clip.speaker.as_str()))
            .or_insert(next);
        if k == next {
            speakers.push(Vec::new());
        }
        speakers[k].push(i);
    }
    let progress = Progress::new(clips.len());
    let per_speaker: Vec<Vec<(usize, ClipPrediction)>> = speakers
        .par_iter()
        .map(|members| -> Result<_, String> {
            let mut stream = Vec::new();
            let mut spans = Vec::with_capacity(members.len());
            for &i in members {
                let start = stream.len();
                stream.extend(clip_audio(&clips[i], rate, telephony)?);
                spans.push((start, stream.len()));
                stream.extend_from_slice(&gap);
            }
            let n_labels = model.n_labels();
            let mut sums: Vec<SummaryAccumulator> = members
                .iter()
                .map(|_| SummaryAccumulator::new(n_labels))
                .collect();
            let mut assign = |r: &WindowResult| {
                let first = r.start_frame as usize * hop;
                let last = (r.start_frame as usize + r.n_frames.max(1) - 1) * hop + n_fft;
                if let Some(k) = clip_at(&spans, (first + last) / 2) {
                    sums[k].add(r);
                }
            };
            let first = &clips[members[0]];
            let context = |e: seremotion_core::model::ModelError| {
                format!("{} {} stream: {e}", first.corpus, first.speaker)
            };
            let mut analyzer = EmotionAnalyzer::new(model.clone(), *settings).map_err(context)?;
            analyzer.push(&stream, &mut assign).map_err(context)?;
            analyzer.flush(&mut assign).map_err(context)?;
            progress.add(members.len());
            Ok(members
                .iter()
                .zip(sums)
                .map(|(&i, acc)| (i, prediction(&clips[i], truths[i], acc.summary())))
                .collect())
        })
        .collect::<Result<_, String>>()?;
    let mut predictions: Vec<Option<ClipPrediction>> = vec![None; clips.len()];
    for (i, p) in per_speaker.into_iter().flatten() {
        predictions[i] = Some(p);
    }
    // Every clip belongs to exactly one speaker's stream.
    Ok(predictions.into_iter().flatten().collect())
}

/// The (corpus, speaker) pairs the model's `seremotion.training` metadata
/// lists as training or validation speakers (none for models without them).
pub fn seen_voices(model: &Model) -> BTreeSet<(String, String)> {
    let training = &model.metadata().training;
    ["training_speakers", "validation_speakers"]
        .iter()
        .flat_map(|key| training[*key].as_array().into_iter().flatten())
        .filter_map(|pair| {
            let pair = pair.as_array()?;
            Some((
                pair.first()?.as_str()?.to_string(),
                pair.get(1)?.as_str()?.to_string(),
            ))
        })
        .collect()
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), Box<dyn Error>> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("{}: cannot create folder: {e}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n")
        .map_err(|e| format!("{}: cannot write the evaluation: {e}", path.display()))?;
    Ok(())
}

/// Corpus names come from manifests: keep file names to a safe alphabet.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn print_table(
    labels: &[String],
    channel: &str,
    overall: &Metrics,
    per_corpus: &BTreeMap<String, Metrics>,
) {
    println!("evaluation, {channel}");
    let recall_heads: Vec<String> = labels.iter().map(|l| format!("{l:>8.8}")).collect();
    println!(
        "{:<10} {:>6} {:>7} {:>7} {:>7} {} {:>6}",
        "corpus",
        "n",
        "acc",
        "UA",
        "F1",
        recall_heads.join(" "),
        "no-sp"
    );
    for (name, m) in per_corpus.iter().chain([(&"overall".to_string(), overall)]) {
        let recalls: Vec<String> = m
            .recalls()
            .iter()
            .map(|r| match r {
                Some(r) => format!("{:>7.1}%", 100.0 * r),
                None => format!("{:>8}", "-"),
            })
            .collect();
        println!(
            "{:<10} {:>6} {:>6.1}% {:>6.1}% {:>6.1}% {} {:>6}",
            name,
            m.n,
            100.0 * m.accuracy,
            100.0 * m.unweighted_accuracy,
            100.0 * m.macro_f1,
            recalls.join(" "),
            m.unclassified.iter().sum::<usize>()
        );
    }
    println!("(per-label columns are recall; no-sp = clips without speech, counted wrong)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_belongs_to_the_clip_its_centre_is_in() {
        let spans = [(0, 100), (150, 300), (350, 351)];
        assert_eq!(clip_at(&spans, 0), Some(0));
        assert_eq!(clip_at(&spans, 99), Some(0));
        assert_eq!(clip_at(&spans, 100), None, "the gap after a clip");
        assert_eq!(clip_at(&spans, 149), None);
        assert_eq!(clip_at(&spans, 150), Some(1));
        assert_eq!(clip_at(&spans, 350), Some(2));
        assert_eq!(clip_at(&spans, 351), None);
        assert_eq!(clip_at(&[], 5), None);
    }
}
