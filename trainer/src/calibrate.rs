//! Logit offsets chosen on validation speakers.
//!
//! On voices it never heard, the network leans towards some emotions (on the
//! target corpora, happy and sad are heard as neutral far more often than
//! the reverse). One offset per label, added to the logits, moves those
//! decision boundaries back. The offsets are chosen to maximise the
//! validation UA (the checkpoint's own criterion, clips decided as the
//! element decides them), so test speakers play no part, and they go into
//! the classifier's bias, so the element runs them at no cost.

use serde::{Deserialize, Serialize};
use seremotion_core::features::FeatureConfig;

use crate::corpus::LABELS;
use crate::net::Classifier;
use crate::train::{ClipFeatures, clip_window_logits, decide_clips, validation_ua};

/// Offsets tried for each label: -1.0 to 1.0 in steps of 0.1 (a logit of
/// 1 is a factor of e in odds; wider moves would undo what the network
/// learnt rather than correct a lean).
const GRID: std::ops::RangeInclusive<i32> = -10..=10;
const STEP: f32 = 0.1;
/// Passes over the labels; the search stops earlier once a pass changes
/// nothing.
const MAX_PASSES: usize = 4;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Calibration {
    /// One per label, in label order; the first stays 0 (softmax ignores a
    /// shift shared by all labels).
    pub offsets: Vec<f32>,
    /// Validation UA (mean over corpora) without and with the offsets.
    pub val_ua_before: f32,
    pub val_ua_after: f32,
}

/// The progress line `train` and `cv` print.
impl std::fmt::Display for Calibration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "logit offsets {:?}: validation UA {:.3} -> {:.3}",
            self.offsets, self.val_ua_before, self.val_ua_after
        )
    }
}

/// Coordinate ascent over the grid, label by label, from no offsets; a move
/// is taken only if it raises the validation UA, so ties keep the smaller
/// change and a model without a lean keeps zeros.
pub fn fit_offsets(
    val: &[ClipFeatures],
    window_logits: &[Option<Vec<f32>>],
    n_labels: usize,
) -> Calibration {
    let score = |offsets: &[f32]| {
        validation_ua(
            val,
            &decide_clips(window_logits, n_labels, offsets),
            n_labels,
        )
        .0
    };
    let mut offsets = vec![0f32; n_labels];
    let before = score(&offsets);
    let mut best = before;
    for _ in 0..MAX_PASSES {
        let mut moved = false;
        for label in 1..n_labels {
            let current = offsets[label];
            let mut chosen = current;
            // Nearest to the current value first, so equal scores keep it.
            let mut candidates: Vec<f32> = GRID.map(|i| i as f32 * STEP).collect();
            candidates.sort_by(|a, b| (a - current).abs().total_cmp(&(b - current).abs()));
            for value in candidates {
                offsets[label] = value;
                let ua = score(&offsets);
                if ua > best {
                    best = ua;
                    chosen = value;
                }
            }
            offsets[label] = chosen;
            moved |= chosen != current;
        }
        if !moved {
            break;
        }
    }
    Calibration {
        offsets,
        val_ua_before: before,
        val_ua_after: best,
    }
}

/// [`fit_offsets`] for `model` on the validation clips, decided clip by clip
/// as the element decides them.
pub fn fit_model(
    model: &impl Classifier,
    features: &FeatureConfig,
    val: &[ClipFeatures],
    window: usize,
    hop: usize,
) -> Calibration {
    let n_labels = LABELS.len();
    let logits = clip_window_logits(model, features, val, window, hop, n_labels, false);
    fit_offsets(val, &logits, n_labels)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::train::{Utterance, mean_softmax};

    /// A validation clip of `label` in `corpus` (its features are never
    /// read: the tests give the window logits directly).
    fn clip(corpus: &str, label: usize) -> ClipFeatures {
        ClipFeatures {
            versions: vec![Arc::new(Utterance {
                frames: Vec::new(),
                n_frames: 0,
                levels: Vec::new(),
                speech: Vec::new(),
            })],
            label,
            corpus: corpus.into(),
            speaker: "s".into(),
            scored: true,
        }
    }

    /// Two windows a clip, both with these logits.
    fn windows(logits: [f32; 4]) -> Option<Vec<f32>> {
        Some([logits, logits].concat())
    }

    #[test]
    fn a_lean_towards_neutral_is_corrected_and_nothing_else_moves() {
        // Happy clips are heard as neutral by 0.45 in logit; neutral ones
        // beat happy by 1.2. Sad and angry are right by a wide margin.
        let val = vec![clip("a", 0), clip("a", 1), clip("a", 2), clip("a", 3)];
        let logits = vec![
            windows([1.5, 0.3, 0.0, 0.0]),
            windows([1.0, 0.55, 0.0, 0.0]),
            windows([0.0, 0.0, 3.0, 0.0]),
            windows([0.0, 0.0, 0.0, 3.0]),
        ];
        assert_eq!(decide_clips(&logits, 4, &[0.0; 4]), [0, 0, 2, 3]);
        let c = fit_offsets(&val, &logits, 4);
        assert!((c.val_ua_before - 0.75).abs() < 1e-6, "{c:?}");
        assert!((c.val_ua_after - 1.0).abs() < 1e-6, "{c:?}");
        assert_eq!(c.offsets[0], 0.0);
        assert!(c.offsets[1] > 0.45 && c.offsets[1] < 1.2, "{c:?}");
        // The smallest move that does it is the first tried.
        assert!((c.offsets[1] - 0.5).abs() < 1e-6, "{c:?}");
        assert_eq!(&c.offsets[2..], [0.0, 0.0]);
        assert_eq!(decide_clips(&logits, 4, &c.offsets), [0, 1, 2, 3]);
    }

    #[test]
    fn a_model_without_a_lean_keeps_zero_offsets() {
        let val: Vec<ClipFeatures> = (0..4).map(|l| clip("a", l)).collect();
        let logits: Vec<_> = (0..4)
            .map(|l| {
                let mut x = [0.0; 4];
                x[l] = 2.0;
                windows(x)
            })
            .collect();
        let c = fit_offsets(&val, &logits, 4);
        assert_eq!(c.offsets, [0.0; 4]);
        assert_eq!(c.val_ua_before, c.val_ua_after);
    }

    #[test]
    fn every_corpus_counts_alike_and_a_silent_clip_is_an_error() {
        // Corpus "b" leans to neutral on happy, corpus "a" does not; the
        // offset that fixes "b" costs "a" nothing, so it is taken. A clip
        // with no speech window stays an error whatever the offsets.
        let val = vec![
            clip("a", 0),
            clip("a", 1),
            clip("b", 0),
            clip("b", 1),
            clip("b", 2),
        ];
        let logits = vec![
            windows([2.0, 0.0, 0.0, 0.0]),
            windows([0.0, 2.0, 0.0, 0.0]),
            windows([2.0, 0.0, 0.0, 0.0]),
            windows([1.0, 0.2, 0.0, 0.0]),
            None,
        ];
        assert_eq!(decide_clips(&logits, 4, &[0.0; 4])[4], 4);
        let c = fit_offsets(&val, &logits, 4);
        assert_eq!(decide_clips(&logits, 4, &c.offsets), [0, 1, 0, 1, 4]);
        // a: 1.0; b: (1 + 1 + 0) / 3.
        assert!(
            (c.val_ua_after - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-6,
            "{c:?}"
        );
    }

    #[test]
    fn offsets_shift_each_window_before_the_softmax() {
        // One window sure of neutral, one of happy: the mean is even; an
        // offset on happy tips it.
        let logits = [4.0, 0.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0];
        let even = mean_softmax(&logits, 4, &[]);
        assert!((even[0] - even[1]).abs() < 1e-6, "{even:?}");
        let tipped = mean_softmax(&logits, 4, &[0.0, 0.1, 0.0, 0.0]);
        assert!(tipped[1] > tipped[0], "{tipped:?}");
        assert!((tipped.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}
