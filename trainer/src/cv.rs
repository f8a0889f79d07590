//! The `cv` command: cross-validation by speaker, so recipes are compared on
//! voices no training or checkpoint choice has heard.
//!
//! Speakers (never clips) are dealt into `k` folds within each corpus; each
//! speaker is in exactly one test fold. The validation speakers that choose
//! the checkpoint come from the training folds. Leave-one-corpus-out trains on
//! four corpora and tests on the fifth (the cross-language figure). Features
//! are computed once for all folds and recipes (the window normalisation is
//! applied when windows are cut, so it is free to vary); test clips are
//! scored clean and through the telephone channel, ASED on its common
//! sentences only.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use seremotion_core::analysis::{DEFAULT_INTERVAL, seconds_to_frames};
use seremotion_core::features::{FeatureConfig, WindowNormalization};
use seremotion_core::model::writer::embed_metadata;

use crate::corpus::{self, ASED_COMMON_SENTENCES, Clip, LABELS};
use crate::metrics::Metrics;
use crate::net::{Classifier, Ensemble, FREQUENCY_STEM_POOL, FREQUENCY_STEM_STRIDE};
use crate::run::{self, TrainOptions};
use crate::train::{self, ClipFeatures, EpochLog, TrainConfig, TrainOutcome};
use crate::{calibrate, export};

/// What to cross-validate and how.
#[derive(Clone, Debug)]
pub struct CvOptions {
    /// Data, training recipe and the output folder (`out`).
    pub train: TrainOptions,
    /// Folds of the speaker cross-validation (0 = none, only
    /// leave-one-corpus-out).
    pub folds: usize,
    /// Run only the first this many folds of each protocol (a smoke run).
    pub max_folds: Option<usize>,
    /// Speaker folds to run, counted from 1 (empty = all): the partitions a
    /// full run makes, for re-running the folds an option can change.
    pub only_folds: Vec<usize>,
    /// Also train on all corpora but one and test on that one.
    pub leave_one_corpus_out: bool,
    /// Corpora leave-one-corpus-out holds out (empty = every corpus); the
    /// partitions are the ones a full run makes for those corpora.
    pub held_out: Vec<String>,
    /// Recipes compared: one run per window normalisation.
    pub normalizations: Vec<WindowNormalization>,
    /// Fraction of each corpus's training speakers used for validation.
    pub val_fraction: f64,
    /// Keep the rows of `out/cv.json`, if the same recipe wrote it, and train
    /// only the partitions it lacks: a long run split over several sittings
    /// gives the rows one uninterrupted run gives.
    pub resume: bool,
}

/// A (corpus, speaker) pair: the unit folds keep together.
pub type Voice = (String, String);

/// Test fold of every clip: each corpus's speakers are shuffled (by `seed`
/// and the corpus name) and dealt round-robin into `k` folds, starting at a
/// corpus-specific fold so corpora with fewer speakers than folds do not all
/// land in the first ones.
pub fn speaker_folds(clips: &[Clip], k: usize, seed: u64) -> Vec<usize> {
    let k = k.max(1);
    let mut speakers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in clips {
        speakers.entry(&c.corpus).or_default().insert(&c.speaker);
    }
    let mut fold_of: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (corpus, set) in &speakers {
        let mut rng = corpus_rng(seed, corpus);
        let mut list: Vec<&str> = set.iter().copied().collect();
        list.shuffle(&mut rng);
        let offset = rand::Rng::random_range(&mut rng, 0..k);
        for (i, s) in list.into_iter().enumerate() {
            fold_of.insert((corpus, s), (offset + i) % k);
        }
    }
    clips
        .iter()
        .map(|c| fold_of[&(c.corpus.as_str(), c.speaker.as_str())])
        .collect()
}

/// Validation voices among `train` clips: per corpus, `fraction` of its
/// speakers (rounded, at least one), but only in corpora with at least three
/// speakers to train on, so that no corpus is left with a single voice.
pub fn validation_voices(train: &[&Clip], fraction: f64, seed: u64) -> BTreeSet<Voice> {
    let mut speakers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in train {
        speakers.entry(&c.corpus).or_default().insert(&c.speaker);
    }
    let mut out = BTreeSet::new();
    for (corpus, set) in speakers {
        let n = set.len();
        if n < 3 {
            continue;
        }
        let n_val = ((fraction * n as f64).round() as usize).clamp(1, n - 2);
        let mut list: Vec<&str> = set.into_iter().collect();
        list.shuffle(&mut corpus_rng(seed ^ 0x5A17, corpus));
        for s in list.into_iter().take(n_val) {
            out.insert((corpus.to_string(), s.to_string()));
        }
    }
    out
}

fn corpus_rng(seed: u64, corpus: &str) -> ChaCha8Rng {
    let h = corpus.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    ChaCha8Rng::seed_from_u64(seed ^ h)
}

/// The voices of clips `idx`, each once, sorted (as rows record them).
fn voices(clips: &[Clip], idx: &[usize]) -> Vec<Voice> {
    let set: BTreeSet<Voice> = idx.iter().map(|&i| voice(&clips[i])).collect();
    set.into_iter().collect()
}

fn voice(c: &Clip) -> Voice {
    (c.corpus.clone(), c.speaker.clone())
}

/// One train/validation/test partition of the clips (indices).
#[derive(Clone, Debug)]
pub struct Partition {
    pub protocol: &'static str,
    /// `fold k` or `test <corpus>`.
    pub name: String,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
}

/// The folds `only` names, counted from 1 (all when it is empty).
fn pick_folds(folds: Vec<Partition>, only: &[usize]) -> Result<Vec<Partition>> {
    if let Some(&k) = only.iter().find(|&&k| k == 0 || k > folds.len()) {
        bail!(
            "--only-folds {k}: folds are counted from 1 to --folds ({})",
            folds.len()
        );
    }
    Ok(folds
        .into_iter()
        .enumerate()
        .filter(|(i, _)| only.is_empty() || only.contains(&(i + 1)))
        .map(|(_, p)| p)
        .collect())
}

const KFOLD: &str = "speaker k-fold";

/// Where a row stands in an uninterrupted run's table: speaker folds in fold
/// order, then held-out corpora by name. Sorting by it (stably: a
/// partition's rows keep their order) lets a run resumed in another order,
/// e.g. `--only-folds 3` before fold 2, write the same table.
fn row_order(r: &FoldResult) -> (bool, usize, &str) {
    let fold = r.fold.strip_prefix("fold ").and_then(|k| k.parse().ok());
    (r.protocol != KFOLD, fold.unwrap_or(0), &r.fold)
}

/// The speaker k-fold partitions.
pub fn kfold_partitions(clips: &[Clip], k: usize, val_fraction: f64, seed: u64) -> Vec<Partition> {
    let folds = speaker_folds(clips, k, seed);
    (0..k)
        .map(|f| {
            split_validation(
                KFOLD,
                format!("fold {}", f + 1),
                clips,
                |i| folds[i] == f,
                val_fraction,
                seed,
            )
        })
        .collect()
}

/// Leave-one-corpus-out partitions, one per corpus of `held_out` in that
/// order (every corpus if it is empty). Each is the same whichever others
/// are asked for; a name that is not a corpus of `clips` is an error naming
/// those there are.
pub fn corpus_partitions(
    clips: &[Clip],
    val_fraction: f64,
    seed: u64,
    held_out: &[String],
) -> Result<Vec<Partition>> {
    let corpora: BTreeSet<&str> = clips.iter().map(|c| c.corpus.as_str()).collect();
    let tested: Vec<&str> = if held_out.is_empty() {
        corpora.iter().copied().collect()
    } else {
        held_out
            .iter()
            .map(|name| {
                corpora.get(name.as_str()).copied().with_context(|| {
                    let known: Vec<&str> = corpora.iter().copied().collect();
                    format!(
                        "--held-out {name}: no such corpus in the manifest (it has {})",
                        known.join(", ")
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    Ok(tested
        .into_iter()
        .map(|corpus| {
            split_validation(
                "leave one corpus out",
                format!("test {corpus}"),
                clips,
                |i| clips[i].corpus == corpus,
                val_fraction,
                seed,
            )
        })
        .collect())
}

/// Clips `is_test` picks are the test set; validation voices are drawn from
/// the others, and the rest train.
fn split_validation(
    protocol: &'static str,
    name: String,
    clips: &[Clip],
    is_test: impl Fn(usize) -> bool,
    val_fraction: f64,
    seed: u64,
) -> Partition {
    let (test, rest): (Vec<usize>, Vec<usize>) = (0..clips.len()).partition(|&i| is_test(i));
    let rest_clips: Vec<&Clip> = rest.iter().map(|&i| &clips[i]).collect();
    let val_voices = validation_voices(&rest_clips, val_fraction, seed ^ name.len() as u64);
    let (val, train): (Vec<usize>, Vec<usize>) = rest
        .into_iter()
        .partition(|&i| val_voices.contains(&voice(&clips[i])));
    Partition {
        protocol,
        name,
        train,
        val,
        test,
    }
}

/// Scores of one corpus in one fold.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CorpusScore {
    /// Scored test clips (ASED: common sentences only).
    pub clips: usize,
    pub speakers: usize,
    pub clean_ua: f64,
    pub phone_ua: f64,
    /// The same clips with each speaker's clips heard in manifest order as
    /// one stream (the voice baseline carries over; equal to the clip-by-clip
    /// figures for recipes without one).
    pub stream_clean_ua: f64,
    pub stream_phone_ua: f64,
    /// Clip by clip, `confusion[true][predicted]` in `LABELS` order (clips
    /// with no speech window, counted as errors in the UA, appear in no
    /// column): which emotions a new voice's are heard as.
    pub clean_confusion: Vec<Vec<usize>>,
    pub phone_confusion: Vec<Vec<usize>>,
}

/// One recipe on one partition.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FoldResult {
    pub recipe: String,
    pub protocol: String,
    pub fold: String,
    pub train_clips: usize,
    pub val_clips: usize,
    pub test_voices: Vec<Voice>,
    /// Best epoch and validation UA of each network in the row (one, or an
    /// ensemble's members).
    pub best_epoch: Vec<usize>,
    pub best_val_ua: Vec<f32>,
    /// With `--calibrate`: the logit offsets added to the row's networks,
    /// chosen on the fold's validation speakers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<calibrate::Calibration>,
    pub seconds: f64,
    pub per_corpus: BTreeMap<String, CorpusScore>,
}

/// Features of every clip, computed once: training renditions (padded clean
/// plus augmented copies), the clean clip and its telephone copy.
struct FeatureSet {
    train: Vec<ClipFeatures>,
    clean: Vec<ClipFeatures>,
    phone: Vec<ClipFeatures>,
}

/// Recipe name as written in the tables.
pub fn recipe_name(n: WindowNormalization) -> &'static str {
    match n {
        WindowNormalization::None => "none (gain augmentation only)",
        WindowNormalization::SubtractMean => "per-band window mean removed",
        WindowNormalization::SubtractGain => "window gain removed",
        WindowNormalization::SubtractStreamMean => "voice baseline removed (per stream)",
        WindowNormalization::SubtractSpeechMean => "per-band mean of the window's speech removed",
    }
}

pub fn cv_command(o: &CvOptions) -> Result<()> {
    if o.folds == 1 {
        bail!("--folds must be 0 (none) or at least 2");
    }
    if o.folds == 0 && !o.leave_one_corpus_out {
        bail!("nothing to do: give --folds K (K >= 2) and/or --leave-one-corpus-out");
    }
    if !o.held_out.is_empty() && !o.leave_one_corpus_out {
        bail!("--held-out names corpora for --leave-one-corpus-out; give that too");
    }
    if o.normalizations.is_empty() {
        bail!("give at least one --normalization");
    }
    o.train.check()?;
    if let Some(d) = o.train.distill {
        d.validate()?;
    }
    let t = &o.train;
    std::fs::create_dir_all(&t.out).with_context(|| format!("creating {}", t.out.display()))?;
    let clips = run::load_clips(&t.sources)?;
    eprintln!("{} clips: {}", clips.len(), corpus::summarize(&clips));

    let mut partitions = Vec::new();
    if o.folds >= 2 {
        let mut p = pick_folds(
            kfold_partitions(&clips, o.folds, o.val_fraction, t.seed),
            &o.only_folds,
        )?;
        p.truncate(o.max_folds.unwrap_or(usize::MAX));
        partitions.extend(p);
    }
    if o.leave_one_corpus_out {
        let mut p = corpus_partitions(&clips, o.val_fraction, t.seed, &o.held_out)?;
        p.truncate(o.max_folds.unwrap_or(usize::MAX));
        partitions.extend(p);
    }

    let recipe = recipe_record(o)?;
    let json_path = t.out.join("cv.json");
    let earlier = if o.resume {
        earlier_run(&json_path, &recipe)?.unwrap_or_default()
    } else {
        Earlier::default()
    };
    check_test_voices(&earlier.runs, &partitions, &clips, &json_path)?;
    let todo: Vec<(&Partition, WindowNormalization)> = partitions
        .iter()
        .flat_map(|p| o.normalizations.iter().map(move |&n| (p, n)))
        .filter(|&(p, n)| !has_rows(&earlier.runs, p, n))
        .collect();
    if o.resume {
        let all = partitions.len() * o.normalizations.len();
        eprintln!(
            "resuming {}: {} of {all} partition runs done, {} to go",
            json_path.display(),
            all - todo.len(),
            todo.len(),
        );
    }
    let mut results = earlier.runs;
    let report = |results: &[FoldResult], seconds: f64| {
        let run = Run {
            recipe: &recipe,
            earlier_commands: &earlier.commands,
            seconds: earlier.seconds + seconds,
        };
        write_outputs(o, &clips, results, &run)
    };
    if todo.is_empty() {
        return report(&results, 0.0);
    }

    // Features before any normalisation: `window_tensor` applies it later.
    let base = t.feature_config(WindowNormalization::None);
    let window_frames =
        base.frames_in((t.window_seconds * f64::from(base.sample_rate)).round() as usize);
    let hop_frames = seconds_to_frames(DEFAULT_INTERVAL, base.frame_rate());

    let started = Instant::now();
    let set = FeatureSet {
        train: run::prepare(
            &clips,
            &base,
            Some(t.copies),
            window_frames,
            t.seed,
            &run::augment_config(t),
        )?,
        clean: run::prepare(
            &clips,
            &base,
            None,
            window_frames,
            t.seed,
            &run::augment_config(t),
        )?,
        phone: run::prepare_telephone(&clips, &base, window_frames)?
            .into_iter()
            .map(|mut c| {
                // Scored by corpus, clean and phone apart.
                c.corpus = c.corpus.trim_end_matches(" phone").to_string();
                c
            })
            .collect(),
    };
    eprintln!(
        "features of {} clips x {} renditions + clean + phone in {:.0} s",
        clips.len(),
        t.copies + 1,
        started.elapsed().as_secs_f64()
    );

    // Fold-major: an interrupted run still compares every recipe on the
    // folds it finished, and `--resume` goes on from there.
    for (p, norm) in todo {
        let t0 = Instant::now();
        eprintln!(
            "== {} {} | {}: {} train, {} val, {} test clips",
            p.protocol,
            p.name,
            recipe_name(norm),
            p.train.len(),
            p.val.len(),
            p.test.len()
        );
        let rows = run_partition(o, &clips, &set, p, norm, window_frames, hop_frames)?;
        for r in &rows {
            eprintln!(
                "   {}: {} in {:.0} s",
                r.recipe,
                r.per_corpus
                    .iter()
                    .map(|(c, s)| format!(
                        "{c} {:.1}/{:.1}",
                        100.0 * s.clean_ua,
                        100.0 * s.phone_ua
                    ))
                    .collect::<Vec<_>>()
                    .join(", "),
                t0.elapsed().as_secs_f64()
            );
        }
        results.extend(rows);
        results.sort_by(|a, b| row_order(a).cmp(&row_order(b)));
        report(&results, started.elapsed().as_secs_f64())?;
    }
    eprintln!(
        "cross-validation done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Trains the recipe's networks on one partition and scores its test
/// speakers: one row, or with `--ensemble N` one row per member and per
/// ensemble of the first 2..=N members.
fn run_partition(
    o: &CvOptions,
    clips: &[Clip],
    set: &FeatureSet,
    p: &Partition,
    norm: WindowNormalization,
    window_frames: usize,
    hop_frames: usize,
) -> Result<Vec<FoldResult>> {
    let t = &o.train;
    let pick = |v: &[ClipFeatures], idx: &[usize]| -> Vec<ClipFeatures> {
        idx.iter().map(|&i| v[i].clone()).collect()
    };
    let train_set = pick(&set.train, &p.train);
    let mut val_set = pick(&set.clean, &p.val);
    if t.validate_telephone {
        val_set.extend(p.val.iter().map(|&i| {
            let mut c = set.phone[i].clone();
            c.corpus.push_str(" phone");
            c
        }));
    }
    if val_set.is_empty() {
        bail!("{} {}: no validation speakers", p.protocol, p.name);
    }
    let mut features = t.feature_config(norm);
    train::fit_normalisation(
        &mut features,
        &train_set,
        window_frames,
        t.stream_prior_seconds,
    );
    let cfg = run::train_config(
        t,
        t.net_config(features.n_features()),
        window_frames,
        hop_frames,
    );
    let print_epoch = |log: &EpochLog, max: usize| {
        eprintln!(
            "   epoch {:>3}/{max}  loss {:.4}  val UA {:.3}  {:.0} s",
            log.epoch, log.loss, log.val_ua, log.seconds
        );
    };
    let t0 = Instant::now();
    let mut members = Vec::with_capacity(t.ensemble);
    for k in 0..t.ensemble {
        let seed = run::member_seed(t.seed, k);
        if t.ensemble > 1 {
            eprintln!("   member {}/{} (seed {seed})", k + 1, t.ensemble);
        }
        let member_cfg = TrainConfig {
            seed,
            net: t.member_net(k, features.n_features()),
            ..cfg.clone()
        };
        let outcome = train::train(&member_cfg, &features, &train_set, &val_set, print_epoch)?;
        members.push(outcome);
    }

    // Manifest order: the order `--streams speaker` plays a speaker's clips in.
    let mut test = p.test.clone();
    test.sort_unstable();
    let test_clean = pick(&set.clean, &test);
    let test_phone = pick(&set.phone, &test);
    let test_set = TestSet {
        clips,
        test: &test,
        clean: &test_clean,
        phone: &test_phone,
        features: &features,
        window_frames,
        hop_frames,
    };
    let test_voices = voices(clips, &p.test);
    let result = |recipe: String, of: &[TrainOutcome], per_corpus| FoldResult {
        recipe,
        protocol: p.protocol.to_string(),
        fold: p.name.clone(),
        train_clips: p.train.len(),
        val_clips: p.val.len(),
        test_voices: test_voices.clone(),
        best_epoch: of.iter().map(|m| m.best_epoch).collect(),
        best_val_ua: of.iter().map(|m| m.best_val_ua).collect(),
        calibration: None,
        seconds: t0.elapsed().as_secs_f64().round(),
        per_corpus,
    };
    let recipe = recipe_name(norm);
    let mut results = Vec::new();
    if let [single] = members.as_slice() {
        let per_corpus = test_set.score(&single.model);
        results.push(result(recipe.to_string(), &members, per_corpus));
    } else {
        // Each member alone (member 1 is the network a one-member run
        // trains), then the ensembles of the first 2, 3, ... members, so one
        // run tells how much seeds scatter on the same folds and what
        // averaging them gains.
        for (k, m) in members.iter().enumerate() {
            let per_corpus = test_set.score(&m.model);
            let name = format!("{recipe}, member {}", k + 1);
            results.push(result(name, std::slice::from_ref(m), per_corpus));
        }
        for n in 2..=members.len() {
            let ensemble = Ensemble::new(members[..n].iter().map(|m| m.model.clone()).collect());
            let per_corpus = test_set.score(&ensemble);
            let name = format!("{recipe}, ensemble of {n}");
            results.push(result(name, &members[..n], per_corpus));
        }
    }
    let all_members = || Ensemble::new(members.iter().map(|m| m.model.clone()).collect());
    let mut student = None;
    if let Some(how) = t.distill {
        // One more network of the element's size, taught by all members.
        let outcome = run::train_student(
            &cfg,
            &all_members(),
            how,
            &features,
            &train_set,
            &val_set,
            print_epoch,
        )?;
        let per_corpus = test_set.score(&outcome.model);
        let name = format!("{recipe}, distilled from {}", members.len());
        results.push(result(name, std::slice::from_ref(&outcome), per_corpus));
        student = Some(outcome);
    }
    // What `train` would export, named as its row above: the student, or
    // every member averaged.
    let (mut exported, of) = match &student {
        Some(s) => (
            Ensemble::new(vec![s.model.clone()]),
            std::slice::from_ref(s),
        ),
        None => (all_members(), members.as_slice()),
    };
    if t.calibrate {
        let exported_row = results.last().map_or(recipe, |r| r.recipe.as_str());
        let name = format!("{exported_row}, calibrated");
        let c = calibrate::fit_model(&exported, &features, &val_set, window_frames, hop_frames);
        eprintln!("   {c}");
        exported = exported.with_logit_offsets(&c.offsets);
        let per_corpus = test_set.score(&exported);
        results.push(FoldResult {
            calibration: Some(c),
            ..result(name, of, per_corpus)
        });
    }
    let row = results.last().expect("a partition scores at least one row");
    write_partition_model(o, clips, p, norm, &exported, &features, window_frames, row)?;
    Ok(results)
}

/// The partition's exported model as `train` would write it, with the
/// partition's training and validation speakers in its metadata, so `eval`
/// on the whole manifest scores the test speakers apart from those it
/// heard: `OUT/models/<protocol>-<partition>[-<normalisation>].onnx`.
#[allow(clippy::too_many_arguments)]
fn write_partition_model(
    o: &CvOptions,
    clips: &[Clip],
    p: &Partition,
    norm: WindowNormalization,
    model: &Ensemble,
    features: &FeatureConfig,
    window_frames: usize,
    row: &FoldResult,
) -> Result<()> {
    let dir = o.train.out.join("models");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut name = format!("{}-{}", slug(p.protocol), slug(&p.name));
    if o.normalizations.len() > 1 {
        name = format!("{name}-{}", slug(recipe_name(norm)));
    }
    let path = dir.join(format!("{name}.onnx"));
    let command: Vec<String> = std::env::args().collect();
    let training = json!({
        "cv": {"protocol": p.protocol, "partition": p.name, "row": row.recipe},
        "command": command.join(" "),
        "git_commit": run::git_commit(),
        "seed": o.train.seed,
        "best_epoch": row.best_epoch,
        "best_val_ua": row.best_val_ua,
        "calibration": row.calibration,
        "training_speakers": voices(clips, &p.train),
        "validation_speakers": voices(clips, &p.val),
        "licence": run::LICENCE,
    });
    let graph = export::export_graph(model, features.n_features(), window_frames)?;
    let meta = run::model_metadata(features, o.train.window_seconds, training);
    std::fs::write(&path, embed_metadata(&graph, &meta))
        .with_context(|| format!("writing {}", path.display()))
}

/// `speaker k-fold` -> `speaker-k-fold`: a file-name part.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// A partition's test clips, sorted into manifest order (the order `--streams
/// speaker` plays a speaker's clips in), clean and through the phone.
struct TestSet<'a> {
    clips: &'a [Clip],
    test: &'a [usize],
    clean: &'a [ClipFeatures],
    phone: &'a [ClipFeatures],
    features: &'a FeatureConfig,
    window_frames: usize,
    hop_frames: usize,
}

impl TestSet<'_> {
    /// UA per corpus of the scored clips: clean and phone, clip by clip and
    /// as speaker streams.
    fn score(&self, model: &impl Classifier) -> BTreeMap<String, CorpusScore> {
        let n_labels = LABELS.len();
        let predict = |v: &[ClipFeatures], voice_streams: bool| {
            train::predict_clips(
                model,
                self.features,
                v,
                self.window_frames,
                self.hop_frames,
                n_labels,
                voice_streams,
            )
        };
        let (clean, phone) = (predict(self.clean, false), predict(self.phone, false));
        let (stream_clean, stream_phone) = (predict(self.clean, true), predict(self.phone, true));
        let mut per_corpus = BTreeMap::new();
        let corpora: BTreeSet<&str> = self
            .test
            .iter()
            .map(|&i| self.clips[i].corpus.as_str())
            .collect();
        for corpus in corpora {
            let idx: Vec<usize> = (0..self.test.len())
                .filter(|&j| self.clean[j].corpus == corpus && self.clean[j].scored)
                .collect();
            if idx.is_empty() {
                continue;
            }
            let truth: Vec<usize> = idx.iter().map(|&j| self.clean[j].label).collect();
            let metrics = |pred: &[usize]| {
                let pred: Vec<usize> = idx.iter().map(|&j| pred[j]).collect();
                Metrics::from_predictions(n_labels, &truth, &pred)
            };
            let ua = |pred: &[usize]| metrics(pred).unweighted_accuracy;
            let (clean_metrics, phone_metrics) = (metrics(&clean), metrics(&phone));
            let speakers: BTreeSet<&str> = idx
                .iter()
                .map(|&j| self.clean[j].speaker.as_str())
                .collect();
            per_corpus.insert(
                corpus.to_string(),
                CorpusScore {
                    clips: idx.len(),
                    speakers: speakers.len(),
                    clean_ua: clean_metrics.unweighted_accuracy,
                    phone_ua: phone_metrics.unweighted_accuracy,
                    stream_clean_ua: ua(&stream_clean),
                    stream_phone_ua: ua(&stream_phone),
                    clean_confusion: clean_metrics.confusion,
                    phone_confusion: phone_metrics.confusion,
                },
            );
        }
        per_corpus
    }
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_spread(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// One (protocol, recipe, corpus) over the folds.
#[derive(Default)]
struct Cell {
    /// Clean, phone, stream clean and stream phone UA, one per fold.
    scores: [Vec<f64>; 4],
    clips: usize,
    /// Clean and phone confusions, summed over the folds.
    confusion: [Vec<Vec<usize>>; 2],
}

/// Adds confusion `b` into `a` (empty `a` takes `b`'s shape).
fn add_confusion(a: &mut Vec<Vec<usize>>, b: &[Vec<usize>]) {
    if a.is_empty() {
        *a = b.to_vec();
        return;
    }
    for (row, other) in a.iter_mut().zip(b) {
        row.iter_mut().zip(other).for_each(|(x, y)| *x += y);
    }
}

/// Per (protocol, recipe, corpus): clean and phone UA over the folds, and
/// the confusions summed over them.
fn summarize(results: &[FoldResult]) -> serde_json::Value {
    let mut cells: BTreeMap<(String, String, String), Cell> = BTreeMap::new();
    for r in results {
        for (corpus, s) in &r.per_corpus {
            let e = cells
                .entry((r.protocol.clone(), r.recipe.clone(), corpus.clone()))
                .or_default();
            let scores = [s.clean_ua, s.phone_ua, s.stream_clean_ua, s.stream_phone_ua];
            e.scores.iter_mut().zip(scores).for_each(|(v, x)| v.push(x));
            e.clips += s.clips;
            add_confusion(&mut e.confusion[0], &s.clean_confusion);
            add_confusion(&mut e.confusion[1], &s.phone_confusion);
        }
    }
    let rows: Vec<serde_json::Value> = cells
        .into_iter()
        .map(|((protocol, recipe, corpus), cell)| {
            let [clean, phone, sclean, sphone] = cell.scores;
            let [clean_confusion, phone_confusion] = cell.confusion;
            let clips = cell.clips;
            let (cm, cs) = mean_spread(&clean);
            let (pm, ps) = mean_spread(&phone);
            let (scm, scs) = mean_spread(&sclean);
            let (spm, sps) = mean_spread(&sphone);
            json!({
                "protocol": protocol, "recipe": recipe, "corpus": corpus,
                "folds": clean.len(), "clips": clips,
                "clean_ua_mean": cm, "clean_ua_sd": cs,
                "phone_ua_mean": pm, "phone_ua_sd": ps,
                "stream_clean_ua_mean": scm, "stream_clean_ua_sd": scs,
                "stream_phone_ua_mean": spm, "stream_phone_ua_sd": sps,
                "clean_confusion": clean_confusion, "phone_confusion": phone_confusion,
            })
        })
        .collect();
    json!(rows)
}

fn corpus_note(corpus: &str) -> String {
    match corpus {
        "ased" => format!("ased (sentences {} only)", ASED_COMMON_SENTENCES.join(", ")),
        other => other.to_string(),
    }
}

/// The Markdown table: one row per protocol, recipe and corpus.
pub fn render_markdown(summary: &serde_json::Value, o: &CvOptions, seconds: f64) -> String {
    let t = &o.train;
    let front = t.feature_config(t.normalization);
    let mut s = String::new();
    let _ = writeln!(s, "# Cross-validation by speaker\n");
    let _ = writeln!(
        s,
        "Unweighted accuracy (UA, %) on test speakers, mean ± sample standard deviation over \
         the folds in which the corpus had test speakers; clean / through the telephone channel \
         (8 kHz, G.711 mu-law). Each speaker is a test speaker in exactly one fold; checkpoints \
         were chosen on validation speakers from the training folds. ASED is scored on its \
         common sentences {} only (the others are trained on but never scored). TESS has two \
         voices: a fold tests one of them with the other in training. Clips classified the \
         element's way ({} s windows every {} s, speech gate, mean of window probabilities) by \
         the trainer's forward pass, each clip as a stream of its own; the speaker-stream \
         columns hear each test speaker's clips in manifest order as one stream, as `eval \
         --streams speaker` does (they differ only for a recipe with a voice baseline).\n",
        ASED_COMMON_SENTENCES.join(" and "),
        t.window_seconds,
        DEFAULT_INTERVAL,
    );
    let stem = format!(
        "{}{}",
        if t.member_stems.is_empty() {
            t.frequency_stem.to_string()
        } else {
            format!("{:?} (member by member)", t.member_stems)
        },
        if t.stem_pool == FREQUENCY_STEM_POOL {
            String::new()
        } else {
            format!(
                " (max over {} rows every {FREQUENCY_STEM_STRIDE})",
                t.stem_pool
            )
        }
    );
    let widths = if t.dilations.is_empty() {
        format!("{:?}", t.channels)
    } else {
        format!("{:?} (time dilations {:?})", t.channels, t.dilations)
    };
    let _ = writeln!(
        s,
        "Settings: seed {}, at most {} epochs, {} windows an epoch, {} augmented copies, \
         validation through the phone too: {}, on speaker streams too: {}, training lines {}; \
         mel bands {:.0}-{:.0} Hz, pitch rows: {}; convolution widths {}, frequency stem channels {}, {} \
         pooling over time; {} network(s) a partition{}{}. {:.0} s in all.\n",
        t.seed,
        t.epochs,
        t.samples_per_epoch,
        t.copies,
        t.validate_telephone,
        t.validate_streams,
        if t.varied_phone_lines {
            "of either G.711 law and varied pass bands"
        } else {
            "mu-law 300-3400 Hz"
        },
        front.fmin,
        front.fmax,
        t.append_pitch,
        widths,
        stem,
        t.pooling.describe(),
        t.ensemble,
        if t.ensemble > 1 {
            " (each from its own seed on the same folds and augmented features; the \
             ensemble rows average the first members' logits, as the exported graph does)"
        } else {
            ""
        },
        t.distill.map_or(String::new(), |d| format!(
            "; a student network distilled from all of them (temperature {}, teacher weight {})",
            d.temperature, d.weight
        )),
        seconds
    );
    for note in crate::run::RecipeNotes::of(t).sentences() {
        let _ = writeln!(s, "{note}\n");
    }
    if t.calibrate {
        let _ = writeln!(
            s,
            "Rows marked calibrated: the exported networks with one offset per emotion added \
             to their logits, chosen on each fold's validation speakers (cv.json gives them).\n"
        );
    }
    let _ = writeln!(
        s,
        "| protocol | recipe | corpus | folds | clean UA | phone UA | lost on the phone \
         | clean UA, speaker stream | phone UA, speaker stream |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|---:|");
    let pct = |m: &serde_json::Value, k: &str| m[k].as_f64().unwrap_or(f64::NAN) * 100.0;
    for row in summary.as_array().into_iter().flatten() {
        let (cm, cs) = (pct(row, "clean_ua_mean"), pct(row, "clean_ua_sd"));
        let (pm, ps) = (pct(row, "phone_ua_mean"), pct(row, "phone_ua_sd"));
        let (scm, scs) = (
            pct(row, "stream_clean_ua_mean"),
            pct(row, "stream_clean_ua_sd"),
        );
        let (spm, sps) = (
            pct(row, "stream_phone_ua_mean"),
            pct(row, "stream_phone_ua_sd"),
        );
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {cm:.1} ± {cs:.1} | {pm:.1} ± {ps:.1} | {:.1} \
             | {scm:.1} ± {scs:.1} | {spm:.1} ± {sps:.1} |",
            row["protocol"].as_str().unwrap_or(""),
            row["recipe"].as_str().unwrap_or(""),
            corpus_note(row["corpus"].as_str().unwrap_or("")),
            row["folds"],
            cm - pm
        );
    }
    render_recalls(&mut s, summary);
    let means = target_means(summary);
    if !means.is_empty() {
        let _ = writeln!(
            s,
            "\nMean of the {} corpora with accuracy targets, per protocol and recipe (the \
             per-corpus means above, averaged):\n",
            TARGET_CORPORA.join(", ")
        );
        let _ = writeln!(
            s,
            "| protocol | recipe | clean UA | phone UA | lost on the phone |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|");
        for ((protocol, recipe), (clean, phone)) in means {
            let _ = writeln!(
                s,
                "| {protocol} | {recipe} | {:.1} | {:.1} | {:.1} |",
                100.0 * clean,
                100.0 * phone,
                100.0 * (clean - phone)
            );
        }
    }
    s
}

/// A table of each emotion's recall, clean / phone, from the confusions
/// summed over the folds: whether a new voice's anger and joy are heard as
/// such or fall to sad and neutral.
fn render_recalls(s: &mut String, summary: &serde_json::Value) {
    let rows: Vec<&serde_json::Value> = summary
        .as_array()
        .into_iter()
        .flatten()
        .filter(|row| row["clean_confusion"].is_array())
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nRecall of each emotion (%), clean / phone: the share of its test clips (all \
         folds together, clip by clip, of those with a speech window) heard as that emotion:\n"
    );
    let _ = writeln!(s, "| protocol | recipe | corpus | {} |", LABELS.join(" | "));
    let _ = writeln!(s, "|---|---|---|{}", "---:|".repeat(LABELS.len()));
    let recall = |confusion: &serde_json::Value, label: usize| {
        let row: Vec<f64> = confusion[label]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| x.as_f64().unwrap_or(0.0))
            .collect();
        let total: f64 = row.iter().sum();
        if total > 0.0 {
            100.0 * row.get(label).copied().unwrap_or(0.0) / total
        } else {
            f64::NAN
        }
    };
    for row in rows {
        let cells: Vec<String> = (0..LABELS.len())
            .map(|l| {
                format!(
                    "{:.0} / {:.0}",
                    recall(&row["clean_confusion"], l),
                    recall(&row["phone_confusion"], l)
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            row["protocol"].as_str().unwrap_or(""),
            row["recipe"].as_str().unwrap_or(""),
            corpus_note(row["corpus"].as_str().unwrap_or("")),
            cells.join(" | ")
        );
    }
}

/// Corpora the issue sets UA targets for; TESS (two voices) has none.
pub const TARGET_CORPORA: [&str; 4] = ["ased", "nemo", "ravdess", "savee"];

/// Per (protocol, recipe) with a row for every target corpus: the mean of
/// their clean and phone UA means.
fn target_means(summary: &serde_json::Value) -> BTreeMap<(String, String), (f64, f64)> {
    let mut cells: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for row in summary.as_array().into_iter().flatten() {
        let corpus = row["corpus"].as_str().unwrap_or("");
        if !TARGET_CORPORA.contains(&corpus) {
            continue;
        }
        let key = (
            row["protocol"].as_str().unwrap_or("").to_string(),
            row["recipe"].as_str().unwrap_or("").to_string(),
        );
        let ua = |k: &str| row[k].as_f64().unwrap_or(f64::NAN);
        cells
            .entry(key)
            .or_default()
            .push((ua("clean_ua_mean"), ua("phone_ua_mean")));
    }
    cells
        .into_iter()
        .filter(|(_, v)| v.len() == TARGET_CORPORA.len())
        .map(|(k, v)| {
            let n = v.len() as f64;
            let clean = v.iter().map(|x| x.0).sum::<f64>() / n;
            let phone = v.iter().map(|x| x.1).sum::<f64>() / n;
            (k, (clean, phone))
        })
        .collect()
}

/// Everything that decides what a partition trains: options resumed rows
/// must have been made with. Not the partitions chosen (`--max-folds`,
/// `--held-out`, `--leave-one-corpus-out`) nor the output folder.
fn recipe_record(o: &CvOptions) -> Result<Value> {
    Ok(json!({
        "train": serde_json::to_value(&o.train)?,
        "folds": o.folds,
        "normalizations": o.normalizations,
        "val_fraction": o.val_fraction,
    }))
}

/// What an earlier run of the same recipe left in `cv.json`.
#[derive(Default)]
struct Earlier {
    runs: Vec<FoldResult>,
    seconds: f64,
    /// The commands that wrote those rows, oldest first.
    commands: Vec<String>,
}

/// The rows of `path` if it exists and `recipe` wrote it; an error naming
/// the options that differ if another recipe did.
fn earlier_run(path: &Path, recipe: &Value) -> Result<Option<Earlier>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("{} does not exist yet: nothing to resume", path.display());
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let Some(theirs) = v.get("recipe") else {
        bail!(
            "{} has no recipe record (an older trainer wrote it), so it cannot be resumed",
            path.display()
        );
    };
    let differ = differences("", theirs, recipe);
    if !differ.is_empty() {
        bail!(
            "{} was written by another recipe ({}); resuming would mix two in one table: \
             give the options it was made with, or another --out",
            path.display(),
            differ.join("; ")
        );
    }
    let runs = serde_json::from_value(v["runs"].clone())
        .with_context(|| format!("reading the rows of {}", path.display()))?;
    let mut commands: Vec<String> = v["earlier_commands"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    commands.extend(v["command"].as_str().map(str::to_string));
    Ok(Some(Earlier {
        runs,
        seconds: v["seconds"].as_f64().unwrap_or(0.0),
        commands,
    }))
}

/// Where two JSON records differ, as `path was X, now Y`.
fn differences(at: &str, theirs: &Value, ours: &Value) -> Vec<String> {
    match (theirs, ours) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter()
                .flat_map(|k| {
                    let path = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    let get = |m: &serde_json::Map<String, Value>| m.get(k).cloned();
                    differences(
                        &path,
                        &get(a).unwrap_or(Value::Null),
                        &get(b).unwrap_or(Value::Null),
                    )
                })
                .collect()
        }
        _ if theirs == ours => Vec::new(),
        // A switch added to the trainer since, and off now, was off before
        // it existed (new switches keep older recipes bit for bit); so was a
        // setting added since at the value it had before it existed.
        (Value::Null, Value::Bool(false)) => Vec::new(),
        (Value::Null, Value::Array(list)) if list.is_empty() => Vec::new(),
        (Value::Null, _) if at == "train.stem_pool" && *ours == json!(FREQUENCY_STEM_POOL) => {
            Vec::new()
        }
        _ => vec![format!("{at} was {theirs}, now {ours}")],
    }
}

/// Whether `rows` hold `norm`'s rows on partition `p` (a partition's rows
/// are written together, so there are all of them or none).
fn has_rows(rows: &[FoldResult], p: &Partition, norm: WindowNormalization) -> bool {
    let recipe = recipe_name(norm);
    rows.iter().any(|r| {
        r.protocol == p.protocol
            && r.fold == p.name
            && r.recipe
                .strip_prefix(recipe)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(", "))
    })
}

/// Kept rows must have tested the speakers today's partition of the same
/// name tests: the same options on another manifest deal other folds.
fn check_test_voices(
    rows: &[FoldResult],
    partitions: &[Partition],
    clips: &[Clip],
    path: &Path,
) -> Result<()> {
    for p in partitions {
        let tested = voices(clips, &p.test);
        for r in rows
            .iter()
            .filter(|r| r.protocol == p.protocol && r.fold == p.name)
        {
            if r.test_voices != tested {
                bail!(
                    "{}: {} {} tested other speakers than it does now (has the manifest \
                     changed?); resume into another --out",
                    path.display(),
                    p.protocol,
                    p.name
                );
            }
        }
    }
    Ok(())
}

/// How the rows written were made.
struct Run<'a> {
    recipe: &'a Value,
    /// Commands of the sittings before this one (`--resume`).
    earlier_commands: &'a [String],
    /// All sittings' seconds.
    seconds: f64,
}

fn write_outputs(o: &CvOptions, clips: &[Clip], results: &[FoldResult], run: &Run) -> Result<()> {
    let summary = summarize(results);
    let front = o.train.feature_config(o.train.normalization);
    let command: Vec<String> = std::env::args().collect();
    let seconds = run.seconds;
    let value = json!({
        "command": command.join(" "),
        "earlier_commands": run.earlier_commands,
        "corpora": corpus::summarize(clips),
        "folds": o.folds,
        "leave_one_corpus_out": o.leave_one_corpus_out,
        "held_out": o.held_out,
        "seed": o.train.seed,
        "channels": o.train.channels,
        "pooling": o.train.pooling,
        "frequency_stem": o.train.frequency_stem,
        "member_stems": o.train.member_stems,
        "stem_pool": o.train.stem_pool,
        "dilations": o.train.dilations,
        "varied_phone_lines": o.train.varied_phone_lines,
        "formant_warp": o.train.formant_warp,
        "room_reverb": o.train.room_reverb,
        "speaker_adversary": o.train.speaker_adversary,
        "freq_mask": o.train.spec_masks.max_rows,
        "time_mask": o.train.spec_masks.max_frames,
        "masks": o.train.spec_masks.count,
        "corpus_shares": o.train.corpus_shares,
        "calibrate": o.train.calibrate,
        "append_pitch": o.train.append_pitch,
        "ensemble": o.train.ensemble,
        "distill": o.train.distill,
        "mel_band_hz": [front.fmin, front.fmax],
        "validate_streams": o.train.validate_streams,
        "ased_scored_sentences": ASED_COMMON_SENTENCES,
        "seconds": seconds.round(),
        "recipe": run.recipe,
        "summary": summary,
        "runs": results,
    });
    let out: PathBuf = o.train.out.join("cv.json");
    std::fs::write(&out, serde_json::to_string_pretty(&value)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    let md = o.train.out.join("cv.md");
    std::fs::write(&md, render_markdown(&value["summary"], o, seconds))
        .with_context(|| format!("writing {}", md.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Emotion;

    #[test]
    fn a_setting_added_since_at_its_old_value_is_no_difference_but_another_is() {
        let before = json!({"train": {"seed": 7}});
        let off = json!({"train": {"seed": 7, "room_reverb": false}});
        let on = json!({"train": {"seed": 7, "room_reverb": true}});
        assert!(differences("", &before, &off).is_empty());
        assert_eq!(
            differences("", &before, &on),
            vec!["train.room_reverb was null, now true".to_string()]
        );
        assert_eq!(
            differences(
                "",
                &json!({"train": {"seed": 7}}),
                &json!({"train": {"seed": 8}})
            ),
            vec!["train.seed was 7, now 8".to_string()]
        );
        // A setting added since, at the value every earlier run had.
        let pooled = |span: usize| json!({"train": {"seed": 7, "stem_pool": span}});
        assert!(differences("", &before, &pooled(FREQUENCY_STEM_POOL)).is_empty());
        let dilated = json!({"train": {"seed": 7, "dilations": []}});
        assert!(differences("", &before, &dilated).is_empty());
        assert_eq!(
            differences("", &before, &pooled(8)),
            vec!["train.stem_pool was null, now 8".to_string()]
        );
    }

    fn clips() -> Vec<Clip> {
        let mut out = Vec::new();
        for (corpus, n) in [("big", 11), ("pair", 2), ("three", 3)] {
            for s in 0..n {
                for e in 0..4 {
                    for take in 0..2 {
                        let speaker = format!("{corpus}{s}");
                        out.push(Clip {
                            path: PathBuf::from(format!("{corpus}/{speaker}_{e}_{take}.flac")),
                            corpus: corpus.into(),
                            speaker: speaker.clone(),
                            emotion: Emotion::from_index(e).unwrap(),
                            group: speaker,
                        });
                    }
                }
            }
        }
        out
    }

    fn voices(clips: &[Clip], idx: &[usize]) -> BTreeSet<Voice> {
        idx.iter().map(|&i| voice(&clips[i])).collect()
    }

    #[test]
    fn folds_are_speaker_disjoint_and_cover_every_speaker_once() {
        let clips = clips();
        for seed in [0, 1, 7] {
            let parts = kfold_partitions(&clips, 5, 0.15, seed);
            assert_eq!(parts.len(), 5);
            let mut tested: Vec<Voice> = Vec::new();
            for p in &parts {
                let (tr, va, te) = (
                    voices(&clips, &p.train),
                    voices(&clips, &p.val),
                    voices(&clips, &p.test),
                );
                assert!(
                    tr.is_disjoint(&te),
                    "{}: train and test share a voice",
                    p.name
                );
                assert!(
                    va.is_disjoint(&te),
                    "{}: validation and test share a voice",
                    p.name
                );
                assert!(
                    tr.is_disjoint(&va),
                    "{}: train and validation share a voice",
                    p.name
                );
                // Every clip is in exactly one part.
                assert_eq!(p.train.len() + p.val.len() + p.test.len(), clips.len());
                // Validation speakers come from corpora with voices to spare.
                assert!(va.iter().any(|v| v.0 == "big"), "{}: {va:?}", p.name);
                assert!(va.iter().all(|v| v.0 != "pair"), "{}: {va:?}", p.name);
                tested.extend(te);
            }
            let all: BTreeSet<Voice> = clips.iter().map(voice).collect();
            assert_eq!(tested.len(), all.len(), "each voice tested exactly once");
            assert_eq!(tested.into_iter().collect::<BTreeSet<_>>(), all);
            // Both voices of the two-speaker corpus are not in one fold.
            let folds = speaker_folds(&clips, 5, seed);
            let pair: BTreeSet<usize> = clips
                .iter()
                .zip(&folds)
                .filter(|(c, _)| c.corpus == "pair")
                .map(|(_, &f)| f)
                .collect();
            assert_eq!(pair.len(), 2, "seed {seed}");
        }
    }

    #[test]
    fn leave_one_corpus_out_tests_each_corpus_on_the_others() {
        let clips = clips();
        let parts = corpus_partitions(&clips, 0.15, 3, &[]).unwrap();
        assert_eq!(parts.len(), 3);
        for p in &parts {
            let test_corpora: BTreeSet<&str> =
                p.test.iter().map(|&i| clips[i].corpus.as_str()).collect();
            assert_eq!(test_corpora.len(), 1);
            let c = *test_corpora.iter().next().unwrap();
            assert!(p.train.iter().chain(&p.val).all(|&i| clips[i].corpus != c));
            assert_eq!(p.train.len() + p.val.len() + p.test.len(), clips.len());
        }
    }

    #[test]
    fn held_out_corpora_keep_the_full_runs_partitions() {
        let clips = clips();
        let all = corpus_partitions(&clips, 0.15, 3, &[]).unwrap();
        let names: Vec<String> = all
            .iter()
            .map(|p| p.name.trim_start_matches("test ").to_string())
            .collect();
        let last = names.last().unwrap().clone();
        let picked = corpus_partitions(&clips, 0.15, 3, std::slice::from_ref(&last)).unwrap();
        assert_eq!(picked.len(), 1);
        let full = all.last().unwrap();
        assert_eq!(picked[0].name, full.name);
        assert_eq!(
            (&picked[0].train, &picked[0].val, &picked[0].test),
            (&full.train, &full.val, &full.test),
            "the same speakers train, validate and test as in a full run"
        );
        assert_eq!(all.len(), 3, "every corpus when none is named");
        let err = corpus_partitions(&clips, 0.15, 3, &["nosuch".to_string()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nosuch") && names.iter().all(|n| err.contains(n.as_str())),
            "{err}"
        );
    }

    #[test]
    fn only_folds_runs_the_full_runs_folds() {
        let all = kfold_partitions(&clips(), 3, 0.15, 3);
        let picked = pick_folds(all.clone(), &[3, 1]).unwrap();
        let key = |p: &Partition| {
            (
                p.name.clone(),
                p.train.clone(),
                p.val.clone(),
                p.test.clone(),
            )
        };
        assert_eq!(
            picked.iter().map(key).collect::<Vec<_>>(),
            [key(&all[0]), key(&all[2])],
            "the same speakers train, validate and test as in a full run, in fold order"
        );
        assert_eq!(pick_folds(all.clone(), &[]).unwrap().len(), 3);
        for bad in [0, 4] {
            let err = pick_folds(all.clone(), &[bad]).unwrap_err().to_string();
            assert!(err.contains("from 1 to --folds (3)"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_target_mean_needs_all_four_corpora() {
        let row = |recipe: &str, corpus: &str, clean: f64, phone: f64| {
            json!({"protocol": "speaker k-fold", "recipe": recipe, "corpus": corpus,
                   "clean_ua_mean": clean, "phone_ua_mean": phone})
        };
        let mut rows: Vec<_> = TARGET_CORPORA
            .iter()
            .zip([0.6, 0.5, 0.7, 0.8])
            .map(|(c, ua)| row("a", c, ua, ua - 0.1))
            .collect();
        rows.push(row("a", "tess", 0.0, 0.0));
        rows.push(row("b", "ased", 0.9, 0.9));
        let means = target_means(&json!(rows));
        assert_eq!(means.len(), 1, "recipe b lacks three corpora");
        let (clean, phone) = means[&("speaker k-fold".to_string(), "a".to_string())];
        assert!((clean - 0.65).abs() < 1e-12, "TESS does not count: {clean}");
        assert!((phone - 0.55).abs() < 1e-12, "{phone}");
    }

    #[test]
    fn confusions_add_up_over_folds_into_recalls() {
        let fold = |name: &str, clean: Vec<Vec<usize>>| FoldResult {
            recipe: "r".into(),
            protocol: "speaker k-fold".into(),
            fold: name.into(),
            train_clips: 0,
            val_clips: 0,
            test_voices: Vec::new(),
            best_epoch: vec![1],
            best_val_ua: vec![0.5],
            calibration: None,
            seconds: 0.0,
            per_corpus: BTreeMap::from([(
                "nemo".to_string(),
                CorpusScore {
                    clips: clean.iter().flatten().sum(),
                    speakers: 1,
                    clean_ua: 0.5,
                    phone_ua: 0.5,
                    stream_clean_ua: 0.5,
                    stream_phone_ua: 0.5,
                    phone_confusion: clean.clone(),
                    clean_confusion: clean,
                },
            )]),
        };
        // Angry heard as sad in fold 1, as angry in fold 2.
        let one = vec![
            vec![2, 0, 0, 0],
            vec![0, 1, 1, 0],
            vec![0, 0, 2, 0],
            vec![0, 0, 2, 0],
        ];
        let two = vec![
            vec![2, 0, 0, 0],
            vec![0, 2, 0, 0],
            vec![0, 0, 2, 0],
            vec![0, 0, 0, 2],
        ];
        let summary = summarize(&[fold("fold 1", one), fold("fold 2", two)]);
        let row = &summary[0];
        assert_eq!(row["clean_confusion"][3], json!([0, 0, 2, 2]));
        assert_eq!(row["clean_confusion"][1], json!([0, 3, 1, 0]));
        let mut md = String::new();
        render_recalls(&mut md, &summary);
        assert!(
            md.contains(
                "| speaker k-fold | r | nemo | 100 / 100 | 75 / 75 | 100 / 100 | 50 / 50 |"
            ),
            "{md}"
        );
    }

    /// The settings say what the recipe trained with, in the words train's
    /// REPORT uses: mixup, formant warping and a speaker adversary included.
    #[test]
    fn the_table_names_the_training_only_options_it_trained_with() {
        let options = |train| CvOptions {
            train,
            folds: 4,
            max_folds: None,
            only_folds: Vec::new(),
            leave_one_corpus_out: false,
            held_out: Vec::new(),
            normalizations: vec![WindowNormalization::default()],
            val_fraction: 0.15,
            resume: false,
        };
        let on = TrainOptions {
            mixup_alpha: 0.2,
            formant_warp: true,
            stem_pool: 8,
            dilations: vec![1, 1, 2, 2],
            window_seconds: 2.5,
            ..TrainOptions::default()
        };
        let with = render_markdown(&json!([]), &options(on), 1.0);
        assert!(with.contains("(2.5 s windows every 1 s,"), "{with}");
        assert!(with.contains("weight ~ Beta(0.2, 0.2)"), "{with}");
        assert!(
            with.contains("frequency stem channels 8 (max over 8 rows every 4)"),
            "{with}"
        );
        assert!(
            with.contains("[48, 64, 80, 96] (time dilations [1, 1, 2, 2])"),
            "{with}"
        );
        assert!(
            with.contains(
                "50 % of the training renditions had their formants moved by a factor of 0.9-1.1"
            ),
            "{with}"
        );
        let adversary = TrainOptions {
            speaker_adversary: 0.3,
            ..TrainOptions::default()
        };
        let with = render_markdown(&json!([]), &options(adversary), 1.0);
        assert!(with.contains("strength ramping up to 0.3)"), "{with}");
        let without = render_markdown(&json!([]), &options(TrainOptions::default()), 1.0);
        assert!(without.contains("(2 s windows every 1 s,"), "{without}");
        for absent in ["mixup", "formants", "adversary", "max over", "dilations"] {
            assert!(!without.contains(absent), "{absent}: {without}");
        }
    }

    #[test]
    fn spread_is_the_sample_standard_deviation() {
        let (m, s) = mean_spread(&[0.5, 0.7]);
        assert!((m - 0.6).abs() < 1e-12);
        assert!((s - 0.02f64.sqrt()).abs() < 1e-12);
        assert_eq!(mean_spread(&[0.3]), (0.3, 0.0));
    }
}
