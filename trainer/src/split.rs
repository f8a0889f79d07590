//! Speaker-independent train/validation/test split.
//!
//! Each corpus is split on its own, by `Clip::group` (the speaker; the word for
//! TESS), so no voice the model is tested on was heard in training or used to
//! pick the checkpoint. The split depends only on the seed and on the set of
//! groups, not on the order clips arrive in.

use std::collections::{BTreeMap, BTreeSet};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::corpus::{Clip, LABELS};

#[derive(Clone, Debug)]
pub struct SplitConfig {
    pub seed: u64,
    /// Fraction of each corpus's groups used for validation (rounded, at least one
    /// when the corpus has three or more groups).
    pub val_fraction: f64,
    /// Fraction of each corpus's groups held out for the test.
    pub test_fraction: f64,
    /// Groups forced into the test split, by corpus (e.g. `"savee" => ["JK"]`).
    pub test_groups: BTreeMap<String, Vec<String>>,
    /// Groups forced into the validation split, by corpus.
    pub val_groups: BTreeMap<String, Vec<String>>,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            val_fraction: 0.15,
            test_fraction: 0.15,
            test_groups: BTreeMap::new(),
            val_groups: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Split {
    pub train: Vec<Clip>,
    pub val: Vec<Clip>,
    pub test: Vec<Clip>,
    /// Which groups went where, per corpus, with clip and emotion counts: the
    /// record that goes into the training report.
    pub description: serde_json::Value,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Part {
    Train,
    Val,
    Test,
}

/// Splits `clips` per corpus by group. Clips keep their input order within each
/// part. Explicit groups that no clip has are listed under `"unknown_groups"` in
/// the description rather than silently ignored.
pub fn split(clips: &[Clip], cfg: &SplitConfig) -> Split {
    let mut groups: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in clips {
        groups.entry(&c.corpus).or_default().insert(&c.group);
    }

    let mut assignment: BTreeMap<(&str, &str), Part> = BTreeMap::new();
    let mut unknown = Vec::new();
    let mut notes = Vec::new();
    for (&corpus, set) in &groups {
        let mut fixed: BTreeMap<&str, Part> = BTreeMap::new();
        // Test goes last so it wins if a group is named for both: a test group
        // must never be trained or tuned on.
        for (map, part) in [(&cfg.val_groups, Part::Val), (&cfg.test_groups, Part::Test)] {
            for g in map.get(corpus).into_iter().flatten() {
                if set.contains(g.as_str()) {
                    fixed.insert(g.as_str(), part);
                } else {
                    unknown.push(format!("{corpus}:{g}"));
                }
            }
        }

        let n = set.len();
        let count = |fraction: f64| (fraction.clamp(0.0, 1.0) * n as f64).round() as usize;
        let (mut n_test, mut n_val) = (count(cfg.test_fraction), count(cfg.val_fraction));
        if n >= 3 {
            // A fraction above 0 gets at least one group; 0 means none (`train
            // --test-fraction 0` trains on every voice but the validation ones).
            if cfg.test_fraction > 0.0 {
                n_test = n_test.max(1);
            }
            if cfg.val_fraction > 0.0 {
                n_val = n_val.max(1);
            }
            // Leave at least one group to train on.
            while n_test + n_val > n - 1 {
                if n_val >= n_test {
                    n_val -= 1
                } else {
                    n_test -= 1
                }
            }
        } else {
            // Two groups cannot make three disjoint non-empty parts; keep them for
            // training unless the caller forced them elsewhere.
            n_test = 0;
            n_val = 0;
            notes.push(format!(
                "{corpus}: only {n} group(s), all used for training unless named explicitly"
            ));
        }
        let fixed_test = fixed.values().filter(|&&p| p == Part::Test).count();
        let fixed_val = fixed.values().filter(|&&p| p == Part::Val).count();
        n_test = n_test.saturating_sub(fixed_test);
        n_val = n_val.saturating_sub(fixed_val);

        let free: Vec<&str> = set
            .iter()
            .copied()
            .filter(|g| !fixed.contains_key(g))
            .collect();
        let order = shuffled_strata(corpus, &free, cfg.seed);
        for (&g, &p) in &fixed {
            assignment.insert((corpus, g), p);
        }
        for (i, g) in order.into_iter().enumerate() {
            let part = if i < n_test {
                Part::Test
            } else if i < n_test + n_val {
                Part::Val
            } else {
                Part::Train
            };
            assignment.insert((corpus, g), part);
        }
    }

    let mut out = Split {
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
        description: serde_json::Value::Null,
    };
    for c in clips {
        match assignment[&(c.corpus.as_str(), c.group.as_str())] {
            Part::Train => out.train.push(c.clone()),
            Part::Val => out.val.push(c.clone()),
            Part::Test => out.test.push(c.clone()),
        }
    }
    out.description = describe(&out, cfg, &groups, unknown, notes);
    out
}

/// The group order the parts are cut from: a seeded shuffle, interleaving
/// strata so small test and validation sets stay balanced. For RAVDESS the
/// strata are the actors' sexes (odd actor numbers are male).
fn shuffled_strata<'a>(corpus: &str, groups: &[&'a str], seed: u64) -> Vec<&'a str> {
    // A per-corpus stream, so adding a corpus does not reshuffle the others.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(corpus.as_bytes()));
    let mut strata: BTreeMap<u8, Vec<&str>> = BTreeMap::new();
    for &g in groups {
        strata.entry(stratum(corpus, g)).or_default().push(g);
    }
    let mut lists: Vec<Vec<&str>> = strata.into_values().collect();
    for l in &mut lists {
        l.shuffle(&mut rng);
    }
    // Which stratum leads alternates with the seed, so neither sex always gets
    // the odd extra test speaker.
    lists.shuffle(&mut rng);
    let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| lists.iter().filter_map(move |l| l.get(i).copied()))
        .collect()
}

fn stratum(corpus: &str, group: &str) -> u8 {
    if corpus == "ravdess"
        && let Some(n) = group
            .strip_prefix("Actor_")
            .and_then(|n| n.parse::<u32>().ok())
    {
        return (n % 2) as u8;
    }
    0
}

/// FNV-1a: a hash that, unlike `std`'s, is fixed forever, so seeds stay reproducible.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn describe(
    s: &Split,
    cfg: &SplitConfig,
    groups: &BTreeMap<&str, BTreeSet<&str>>,
    unknown: Vec<String>,
    notes: Vec<String>,
) -> serde_json::Value {
    let part_json = |clips: &[Clip], corpus: &str| {
        let mine: Vec<&Clip> = clips.iter().filter(|c| c.corpus == corpus).collect();
        let gs: BTreeSet<&str> = mine.iter().map(|c| c.group.as_str()).collect();
        let mut per_label = [0usize; LABELS.len()];
        for c in &mine {
            per_label[c.emotion.index()] += 1;
        }
        let emotions: serde_json::Map<_, _> = LABELS
            .iter()
            .zip(per_label)
            .map(|(l, n)| (l.to_string(), n.into()))
            .collect();
        json!({ "groups": gs, "clips": mine.len(), "emotions": emotions })
    };
    let corpora: serde_json::Map<_, _> = groups
        .keys()
        .map(|&corpus| {
            let unit = if corpus == "tess" { "word" } else { "speaker" };
            (
                corpus.to_string(),
                json!({
                    "group_by": unit,
                    "train": part_json(&s.train, corpus),
                    "val": part_json(&s.val, corpus),
                    "test": part_json(&s.test, corpus),
                }),
            )
        })
        .collect();
    json!({
        "seed": cfg.seed,
        "val_fraction": cfg.val_fraction,
        "test_fraction": cfg.test_fraction,
        "counts": { "train": s.train.len(), "val": s.val.len(), "test": s.test.len() },
        "corpora": corpora,
        "unknown_groups": unknown,
        "notes": notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Emotion;
    use std::path::PathBuf;

    fn clip(corpus: &str, speaker: &str, group: &str, i: usize) -> Clip {
        Clip {
            path: PathBuf::from(format!("{corpus}/{speaker}/{group}/{i}.flac")),
            corpus: corpus.into(),
            speaker: speaker.into(),
            emotion: Emotion::from_index(i % 4).unwrap(),
            group: group.into(),
        }
    }

    /// The shape of the shipped data: 20 RAVDESS actors, 3 SAVEE speakers,
    /// TESS with 2 speakers saying 200 words.
    fn corpora() -> Vec<Clip> {
        let mut v = Vec::new();
        for a in 1..=20 {
            let s = format!("Actor_{a:02}");
            v.extend((0..8).map(|i| clip("ravdess", &s, &s, i)));
        }
        for s in ["DC", "JE", "JK"] {
            v.extend((0..8).map(|i| clip("savee", s, s, i)));
        }
        for w in 0..200 {
            for s in ["OAF", "YAF"] {
                v.extend((0..4).map(|i| clip("tess", s, &format!("word{w}"), i)));
            }
        }
        v
    }

    fn keys(clips: &[Clip]) -> BTreeSet<(String, String)> {
        clips
            .iter()
            .map(|c| (c.corpus.clone(), c.group.clone()))
            .collect()
    }

    fn split_with_seed(clips: &[Clip], seed: u64) -> Split {
        split(
            clips,
            &SplitConfig {
                seed,
                ..Default::default()
            },
        )
    }

    fn speakers(clips: &[Clip], corpus: &str) -> BTreeSet<String> {
        clips
            .iter()
            .filter(|c| c.corpus == corpus)
            .map(|c| c.speaker.clone())
            .collect()
    }

    #[test]
    fn no_group_is_in_two_parts_and_nothing_is_lost() {
        let clips = corpora();
        for seed in 0..20 {
            let s = split_with_seed(&clips, seed);
            let (tr, va, te) = (keys(&s.train), keys(&s.val), keys(&s.test));
            assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
            assert_eq!(s.train.len() + s.val.len() + s.test.len(), clips.len());
            // Speaker-grouped corpora: no test or validation voice in training.
            for corpus in ["ravdess", "savee"] {
                let train = speakers(&s.train, corpus);
                assert!(train.is_disjoint(&speakers(&s.val, corpus)));
                assert!(train.is_disjoint(&speakers(&s.test, corpus)));
            }
        }
    }

    #[test]
    fn every_part_gets_a_group_of_every_corpus_with_three() {
        let s = split(&corpora(), &SplitConfig::default());
        for part in [&s.train, &s.val, &s.test] {
            for corpus in ["ravdess", "savee", "tess"] {
                assert!(part.iter().any(|c| c.corpus == corpus), "{corpus} missing");
            }
        }
        assert_eq!(speakers(&s.test, "savee").len(), 1);
        assert_eq!(speakers(&s.val, "savee").len(), 1);
        // 15% of 20 actors and of 200 words.
        assert_eq!(speakers(&s.test, "ravdess").len(), 3);
        assert_eq!(keys(&s.test).iter().filter(|k| k.0 == "tess").count(), 30);
        // TESS is split by word, so both its speakers appear everywhere.
        assert_eq!(speakers(&s.test, "tess").len(), 2);
    }

    #[test]
    fn deterministic_and_order_independent() {
        let clips = corpora();
        let cfg = SplitConfig {
            seed: 7,
            ..Default::default()
        };
        let a = split(&clips, &cfg);
        let mut reversed = clips.clone();
        reversed.reverse();
        let b = split(&reversed, &cfg);
        assert_eq!(keys(&a.test), keys(&b.test));
        assert_eq!(keys(&a.val), keys(&b.val));
        assert_eq!(a.description, split(&clips, &cfg).description);
        let other = split_with_seed(&clips, 8);
        assert_ne!(keys(&a.test), keys(&other.test));
    }

    #[test]
    fn ravdess_test_and_val_mix_sexes() {
        let clips = corpora();
        for seed in 0..20 {
            let s = split_with_seed(&clips, seed);
            for part in [&s.val, &s.test] {
                let sexes: BTreeSet<u8> = speakers(part, "ravdess")
                    .iter()
                    .map(|a| stratum("ravdess", a))
                    .collect();
                assert_eq!(sexes.len(), 2, "seed {seed}");
            }
        }
    }

    #[test]
    fn explicit_groups_are_honoured_and_unknown_ones_reported() {
        let mut cfg = SplitConfig::default();
        cfg.test_groups.insert("savee".into(), vec!["JK".into()]);
        cfg.val_groups
            .insert("ravdess".into(), vec!["Actor_01".into(), "Actor_99".into()]);
        let s = split(&corpora(), &cfg);
        assert_eq!(
            speakers(&s.test, "savee"),
            BTreeSet::from(["JK".to_string()])
        );
        assert!(speakers(&s.val, "ravdess").contains("Actor_01"));
        // Still 3 val actors in total: the forced one counts towards the fraction.
        assert_eq!(speakers(&s.val, "ravdess").len(), 3);
        assert_eq!(s.description["unknown_groups"], json!(["ravdess:Actor_99"]));
    }

    #[test]
    fn a_zero_test_fraction_holds_no_speaker_out() {
        let cfg = SplitConfig {
            test_fraction: 0.0,
            ..SplitConfig::default()
        };
        let s = split(&corpora(), &cfg);
        assert!(s.test.is_empty(), "{} test clips", s.test.len());
        assert!(!s.val.is_empty());
    }

    #[test]
    fn small_corpora_train_only() {
        let clips: Vec<Clip> = ["A", "B"]
            .iter()
            .flat_map(|s| (0..4).map(move |i| clip("tiny", s, s, i)))
            .collect();
        let s = split(&clips, &SplitConfig::default());
        assert_eq!(s.train.len(), 8);
        assert!(s.description["notes"][0].as_str().unwrap().contains("tiny"));
    }

    #[test]
    fn description_lists_groups_and_counts() {
        let s = split(&corpora(), &SplitConfig::default());
        let d = &s.description;
        assert_eq!(d["counts"]["test"], json!(s.test.len()));
        assert_eq!(d["corpora"]["tess"]["group_by"], "word");
        assert_eq!(
            d["corpora"]["savee"]["test"]["groups"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let emotions = &d["corpora"]["savee"]["train"]["emotions"];
        let sum: u64 = LABELS.iter().map(|l| emotions[l].as_u64().unwrap()).sum();
        assert_eq!(
            sum,
            d["corpora"]["savee"]["train"]["clips"].as_u64().unwrap()
        );
    }
}
