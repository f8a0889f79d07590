//! `seremotion-trainer`: train the emotion model, cross-validate recipes by
//! speaker, or evaluate a model the way the element runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use seremotion_core::analysis::SPEECH_THRESHOLD_RANGE_DB;
use seremotion_core::features::WindowNormalization;
use seremotion_trainer::cv::{self, CvOptions};
use seremotion_trainer::eval::Streams;
use seremotion_trainer::net::Pooling;
use seremotion_trainer::run::{self, DataSource, TrainOptions};
use seremotion_trainer::train::{CorpusShares, Distillation, SpecMasks};

#[derive(Parser)]
#[command(
    name = "seremotion-trainer",
    version,
    about = "Speech-emotion model training, speaker cross-validation and evaluation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model and export it to ONNX with the seremotion metadata.
    Train(TrainArgs),
    /// Cross-validate recipes by speaker (k folds) and by corpus.
    Cv(CvArgs),
    /// Classify clips the way the element does and report per-corpus metrics.
    Eval(EvalArgs),
}

#[derive(Args)]
struct Data {
    /// CSV manifest (path,corpus,speaker,emotion,...); repeatable.
    #[arg(long, value_name = "FILE")]
    manifest: Vec<PathBuf>,
    /// Folder of CREMA-D/RAVDESS/SAVEE/TESS files under their original names
    /// (WAV or FLAC); repeatable.
    #[arg(long, value_name = "DIR")]
    data_dir: Vec<PathBuf>,
}

impl Data {
    fn sources(&self) -> Result<Vec<DataSource>> {
        let sources: Vec<DataSource> = self
            .manifest
            .iter()
            .cloned()
            .map(DataSource::Manifest)
            .chain(self.data_dir.iter().cloned().map(DataSource::Folder))
            .collect();
        if sources.is_empty() {
            bail!("give at least one --manifest FILE or --data-dir DIR");
        }
        Ok(sources)
    }
}

/// Per-window feature normalisation (travels in the model's metadata).
#[derive(Clone, Copy, ValueEnum)]
enum Normalization {
    /// Nothing per window; gain augmentation makes the model robust to level.
    None,
    /// Each band's mean over the window removed (gain and spectral tilt go).
    SubtractMean,
    /// The window's mean level removed from every band (gain goes, tilt stays).
    SubtractGain,
    /// Each band's mean over the stream's speech so far (the voice, its
    /// microphone and line) removed, starting from the training voices' mean.
    SubtractStreamMean,
    /// Each band's mean over the window's speech frames removed (pauses, at
    /// the room's or line's noise floor, left out of the mean).
    SubtractSpeechMean,
}

impl From<WindowNormalization> for Normalization {
    fn from(n: WindowNormalization) -> Self {
        match n {
            WindowNormalization::None => Normalization::None,
            WindowNormalization::SubtractMean => Normalization::SubtractMean,
            WindowNormalization::SubtractGain => Normalization::SubtractGain,
            WindowNormalization::SubtractStreamMean => Normalization::SubtractStreamMean,
            WindowNormalization::SubtractSpeechMean => Normalization::SubtractSpeechMean,
        }
    }
}

/// Shown as the default in `--help`.
impl std::fmt::Display for Normalization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_possible_value() {
            Some(v) => f.write_str(v.get_name()),
            None => Ok(()),
        }
    }
}

impl From<Normalization> for WindowNormalization {
    fn from(n: Normalization) -> Self {
        match n {
            Normalization::None => WindowNormalization::None,
            Normalization::SubtractMean => WindowNormalization::SubtractMean,
            Normalization::SubtractGain => WindowNormalization::SubtractGain,
            Normalization::SubtractStreamMean => WindowNormalization::SubtractStreamMean,
            Normalization::SubtractSpeechMean => WindowNormalization::SubtractSpeechMean,
        }
    }
}

/// The recipe's defaults, written once (in `TrainOptions::default`).
static DEFAULTS: std::sync::LazyLock<TrainOptions> =
    std::sync::LazyLock::new(TrainOptions::default);

/// As `--channels` takes it (clap would show a list default space-separated).
static DEFAULT_CHANNELS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let widths: Vec<String> = DEFAULTS.channels.iter().map(usize::to_string).collect();
    widths.join(",")
});

/// The training recipe, shared by `train` and `cv`.
#[derive(Args)]
struct Recipe {
    #[command(flatten)]
    data: Data,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Seeds split, augmentation, sampling and initialisation.
    #[arg(long, default_value_t = DEFAULTS.seed)]
    seed: u64,
    /// Maximum epochs (early stopping may end sooner).
    #[arg(long, default_value_t = DEFAULTS.epochs)]
    epochs: usize,
    /// Augmented renditions per training clip.
    #[arg(long, default_value_t = DEFAULTS.copies)]
    copies: usize,
    /// Training windows per epoch.
    #[arg(long = "samples", default_value_t = DEFAULTS.samples_per_epoch)]
    samples_per_epoch: usize,
    /// Batch size.
    #[arg(long = "batch", default_value_t = DEFAULTS.batch_size)]
    batch_size: usize,
    /// Initial learning rate (AdamW).
    #[arg(long = "lr", default_value_t = DEFAULTS.learning_rate)]
    learning_rate: f64,
    /// Model window in seconds.
    #[arg(long = "window", default_value_t = DEFAULTS.window_seconds)]
    window_seconds: f64,
    /// Conv block widths.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_CHANNELS.as_str())]
    channels: Vec<usize>,
    /// How the network pools its last block over time.
    #[arg(long, value_enum, default_value_t = DEFAULTS.pooling)]
    pooling: Pooling,
    /// Channels of a frequency-aware stem beside the first block: 3x3
    /// convolutions over the frame rows, max-pooled over 4 rows (--stem-pool; the same
    /// detector for every band, so a voice's formants moved a few bands
    /// still match); 0 = none. About 1.35 k multiply-adds a frame per
    /// channel at the default rows and widths (the network without it: 10 k).
    #[arg(long, default_value_t = DEFAULTS.frequency_stem)]
    frequency_stem: usize,
    /// Stem channels of each --ensemble member in turn (e.g. 8,0: an 8-channel
    /// stem on the first, none on the second), for an ensemble of unlike
    /// networks; default: every member has --frequency-stem.
    #[arg(long, value_delimiter = ',', value_name = "C")]
    member_stems: Vec<usize>,
    /// Rows each of the frequency stem's max pooling spans covers; spans
    /// start every 4 rows, so wider ones overlap and let a pattern move
    /// further and still meet the same span.
    #[arg(long, value_name = "ROWS", default_value_t = DEFAULTS.stem_pool)]
    stem_pool: usize,
    /// Time dilation of each block's convolution in turn (e.g. 1,1,2,2: the
    /// last two blocks hear twice as far for the same cost); default all 1.
    #[arg(long, value_delimiter = ',', value_name = "D")]
    dilations: Vec<usize>,
    /// Pitch and harmonicity rows (subharmonic summation) on every frame.
    #[arg(long, value_name = "BOOL", default_value_t = DEFAULTS.append_pitch, action = clap::ArgAction::Set)]
    pitch: bool,
    /// Lower edge of the mel filterbank in Hz (e.g. 300 for a telephone-band model).
    #[arg(long)]
    fmin: Option<f32>,
    /// Upper edge of the mel filterbank in Hz (e.g. 3400).
    #[arg(long)]
    fmax: Option<f32>,
    /// Per-batch decay of an exponential weight average that is validated and
    /// exported; 0 = raw weights.
    #[arg(long, default_value_t = DEFAULTS.weight_average_decay)]
    weight_average: f64,
    /// First epoch whose weights may be exported (1 = any): training runs at
    /// least this long, and the best validation epoch from it on is kept.
    #[arg(long, value_name = "EPOCH", default_value_t = DEFAULTS.first_checkpoint)]
    first_checkpoint: usize,
    /// Blend each batch with a shuffled copy of itself, weight ~ Beta(A, A),
    /// e.g. 0.2; 0 = off.
    #[arg(long = "mixup", default_value_t = DEFAULTS.mixup_alpha)]
    mixup_alpha: f64,
    /// AdamW's decoupled weight decay (e.g. 0.05 for a stronger pull of the
    /// weights towards zero).
    #[arg(long, default_value_t = DEFAULTS.weight_decay)]
    weight_decay: f64,
    /// Dropout before the classifier (a fifth of it after each conv block),
    /// e.g. 0.5 for a stronger guard against learning the training voices.
    #[arg(long, default_value_t = DEFAULTS.dropout)]
    dropout: f64,
    /// Probability mass the training targets spread evenly over the four
    /// emotions (acted labels are not certain), e.g. 0.1.
    #[arg(long, default_value_t = DEFAULTS.label_smoothing)]
    label_smoothing: f64,
    /// Train against a speaker adversary of this strength (gradient
    /// reversal, ramped up over training), e.g. 0.3, so that windows keep as
    /// little of the voice as they can; 0 = off. Not with --mixup.
    #[arg(long, default_value_t = DEFAULTS.speaker_adversary)]
    speaker_adversary: f64,
    /// Widest band of feature rows each SpecAugment mask zeroes in a
    /// training window (0 = no band masks).
    #[arg(long, default_value_t = DEFAULTS.spec_masks.max_rows)]
    freq_mask: usize,
    /// Longest span of frames each SpecAugment mask zeroes (capped at a
    /// quarter of the window; 0 = no span masks).
    #[arg(long, default_value_t = DEFAULTS.spec_masks.max_frames)]
    time_mask: usize,
    /// SpecAugment masks of each kind (band, span) per training window.
    #[arg(long, default_value_t = DEFAULTS.spec_masks.count)]
    masks: usize,
    /// Each corpus's share of the training windows (within a corpus, every
    /// speaker and emotion weighs the same).
    #[arg(long, value_enum, default_value_t = DEFAULTS.corpus_shares)]
    corpus_shares: CorpusShares,
    /// Validate on the validation speakers through the telephone channel too.
    #[arg(long)]
    validate_telephone: bool,
    /// With --normalization subtract-stream-mean: choose the checkpoint on
    /// the mean of clip-by-clip UA and UA with each validation speaker's
    /// clips heard as one stream.
    #[arg(long)]
    validate_streams: bool,
    /// Train through telephone lines of either G.711 law (mu and A) with
    /// pass bands from 200-400 Hz up to 3000-3700 Hz, instead of the one
    /// mu-law 300-3400 Hz line (which validation and the phone figures use).
    #[arg(long)]
    varied_phone_lines: bool,
    /// Move the formants of half the training renditions by a factor drawn
    /// from 0.9-1.1 (vocal tract length perturbation on the log-mel rows;
    /// pitch and level rows stay): other vocal tracts for every voice.
    #[arg(long)]
    formant_warp: bool,
    /// Play 30 % of the training renditions in a synthetic room (reverberation
    /// time 0.2-0.8 s, direct sound 0-12 dB above the reverberation), before
    /// the level, noise and line steps.
    #[arg(long)]
    room_reverb: bool,
    /// Add one offset per emotion to the logits, chosen on the validation
    /// speakers to maximise their UA (a new voice's lean towards neutral,
    /// corrected at no cost in the element). `cv` scores the exported
    /// networks with and without.
    #[arg(long)]
    calibrate: bool,
    /// With --normalization subtract-stream-mean: seconds of speech after
    /// which a stream's own voice counts as much as the training voices' mean.
    #[arg(long, default_value_t = DEFAULTS.stream_prior_seconds)]
    stream_prior_seconds: f64,
    /// Train one more network taught by the --ensemble networks (knowledge
    /// distillation): `train` exports it alone, `cv` scores it beside them.
    /// An ensemble's accuracy at one network's cost, if it carries over.
    #[arg(long)]
    distill: bool,
    /// Softmax temperature of the distillation.
    #[arg(long, default_value_t = 2.0, requires = "distill")]
    distill_temperature: f32,
    /// Share of the teachers in the student's loss (the labels take the rest).
    #[arg(long, default_value_t = 0.5, requires = "distill")]
    distill_weight: f32,
}

impl Recipe {
    fn options(&self) -> Result<TrainOptions> {
        if self.channels.is_empty() || self.channels.contains(&0) {
            bail!("--channels needs one or more widths above 0");
        }
        if !(self.speaker_adversary >= 0.0 && self.speaker_adversary.is_finite()) {
            bail!("--speaker-adversary must be 0 (off) or above");
        }
        if self.speaker_adversary > 0.0 && self.mixup_alpha > 0.0 {
            bail!(
                "--speaker-adversary and --mixup cannot be combined: a blended window has two voices"
            );
        }
        if !(self.stream_prior_seconds > 0.0 && self.stream_prior_seconds <= 3600.0) {
            bail!("--stream-prior-seconds must be above 0 and at most 3600");
        }
        Ok(TrainOptions {
            sources: self.data.sources()?,
            out: self.out.clone(),
            seed: self.seed,
            epochs: self.epochs,
            copies: self.copies,
            samples_per_epoch: self.samples_per_epoch,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            window_seconds: self.window_seconds,
            channels: self.channels.clone(),
            pooling: self.pooling,
            frequency_stem: self.frequency_stem,
            stem_pool: self.stem_pool,
            dilations: self.dilations.clone(),
            member_stems: self.member_stems.clone(),
            fmin: self.fmin,
            fmax: self.fmax,
            weight_average_decay: self.weight_average,
            first_checkpoint: self.first_checkpoint,
            mixup_alpha: self.mixup_alpha,
            weight_decay: self.weight_decay,
            dropout: self.dropout,
            label_smoothing: self.label_smoothing,
            speaker_adversary: self.speaker_adversary,
            spec_masks: SpecMasks {
                max_rows: self.freq_mask,
                max_frames: self.time_mask,
                count: self.masks,
            },
            corpus_shares: self.corpus_shares,
            validate_telephone: self.validate_telephone,
            varied_phone_lines: self.varied_phone_lines,
            formant_warp: self.formant_warp,
            room_reverb: self.room_reverb,
            calibrate: self.calibrate,
            append_pitch: self.pitch,
            validate_streams: self.validate_streams,
            stream_prior_seconds: self.stream_prior_seconds,
            distill: self.distill.then_some(Distillation {
                temperature: self.distill_temperature,
                weight: self.distill_weight,
            }),
            ..TrainOptions::default()
        })
    }
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    recipe: Recipe,
    /// Model file name without .onnx.
    #[arg(long, default_value_t = DEFAULTS.name.clone())]
    name: String,
    /// Window normalisation the model is trained with.
    #[arg(long, value_enum, default_value_t = DEFAULTS.normalization.into())]
    normalization: Normalization,
    /// Fraction of each corpus's speakers held out as test speakers; 0 trains
    /// on every voice but the validation ones (take the figures from `cv`).
    #[arg(long, default_value_t = DEFAULTS.test_fraction)]
    test_fraction: f64,
    /// After choosing the epoch count on validation, train again on training +
    /// validation speakers for that many epochs and export that model.
    #[arg(long)]
    refit: bool,
    /// Train N networks from different seeds on the same split and export
    /// their averaged logits as one model.
    #[arg(long, default_value_t = DEFAULTS.ensemble as u64, value_parser = clap::value_parser!(u64).range(1..))]
    ensemble: u64,
    /// Skip the held-out test evaluation.
    #[arg(long)]
    no_eval: bool,
}

#[derive(Args)]
struct CvArgs {
    #[command(flatten)]
    recipe: Recipe,
    /// Speaker folds (0 = none, only --leave-one-corpus-out).
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Run only the first N folds of each protocol (a quick smoke run).
    #[arg(long, value_name = "N")]
    max_folds: Option<usize>,
    /// Run only these speaker folds, counted from 1 (comma-separated): the
    /// partitions a full run makes, e.g. to re-run the folds an option changes.
    #[arg(long, value_delimiter = ',', value_name = "K")]
    only_folds: Vec<usize>,
    /// Also train on all corpora but one and test on that one, for each corpus.
    #[arg(long)]
    leave_one_corpus_out: bool,
    /// With --leave-one-corpus-out, hold out only these corpora
    /// (comma-separated, e.g. ravdess,savee,tess): the same partitions a full
    /// run makes for them.
    #[arg(long, value_delimiter = ',', value_name = "CORPUS")]
    held_out: Vec<String>,
    /// Recipes to compare, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_values_t = [Normalization::from(DEFAULTS.normalization)]
    )]
    normalization: Vec<Normalization>,
    /// Fraction of each corpus's training speakers used for validation.
    #[arg(long, default_value_t = 0.15)]
    val_fraction: f64,
    /// Train N networks a partition from different seeds and score each, and
    /// the ensembles of the first 2..=N, on the same test speakers.
    #[arg(long, default_value_t = DEFAULTS.ensemble as u64, value_parser = clap::value_parser!(u64).range(1..))]
    ensemble: u64,
    /// Keep the rows of OUT/cv.json and train only the partitions it lacks
    /// (after an interruption or a --max-folds run). It must have been written
    /// with the same recipe options; --max-folds, --only-folds, --held-out
    /// and --leave-one-corpus-out may differ.
    #[arg(long)]
    resume: bool,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    data: Data,
    /// ONNX model following the seremotion contract.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Metrics JSON (labels, overall, per_corpus).
    #[arg(long, value_name = "OUT")]
    json: PathBuf,
    /// Pass the audio through the 8 kHz G.711 mu-law channel first.
    #[arg(long)]
    telephony: bool,
    /// `clip`: each clip is a stream of its own; `speaker`: each speaker's
    /// clips, in manifest order with 0.5 s of silence between them, are one
    /// stream (one voice through one call), and a clip is scored by the
    /// windows centred inside it.
    #[arg(long, value_enum, default_value = "clip")]
    streams: Streams,
    /// Folder for the confusion-matrix PNGs [default: beside OUT].
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// The speech gate's level threshold in dBFS, as the element's
    /// `speech-threshold` property [default: the element's default].
    #[arg(long, value_name = "DB", allow_negative_numbers = true,
          value_parser = parse_threshold)]
    speech_threshold: Option<f32>,
}

/// A level the element's `speech-threshold` accepts.
fn parse_threshold(s: &str) -> Result<f32, String> {
    let db: f32 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    let range = SPEECH_THRESHOLD_RANGE_DB;
    if range.contains(&db) {
        Ok(db)
    } else {
        Err(format!(
            "{db} dBFS is outside {}..={}, the element's range",
            range.start(),
            range.end()
        ))
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().command {
        Command::Train(a) => {
            let o = TrainOptions {
                name: a.name,
                normalization: a.normalization.into(),
                test_fraction: a.test_fraction,
                refit: a.refit,
                ensemble: a.ensemble as usize,
                evaluate: !a.no_eval,
                ..a.recipe.options()?
            };
            run::train_command(&o)
        }
        Command::Cv(a) => cv::cv_command(&CvOptions {
            train: TrainOptions {
                ensemble: a.ensemble as usize,
                ..a.recipe.options()?
            },
            folds: a.folds,
            max_folds: a.max_folds,
            only_folds: a.only_folds,
            leave_one_corpus_out: a.leave_one_corpus_out,
            held_out: a.held_out,
            normalizations: a.normalization.into_iter().map(Into::into).collect(),
            val_fraction: a.val_fraction,
            resume: a.resume,
        }),
        Command::Eval(a) => run::eval_command(
            &a.data.sources()?,
            &a.model,
            &a.json,
            a.telephony,
            a.streams,
            a.plots.as_deref(),
            a.speech_threshold,
        ),
    }
}
