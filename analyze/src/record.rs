//! What the analysis of one file yields, as stored per file and aggregated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The label whose share on the customer channel ranks calls, with [`SAD`].
pub const ANGRY: &str = "angry";
/// See [`ANGRY`].
pub const SAD: &str = "sad";
/// The element's emotion for windows with too little speech.
pub const SILENCE: &str = "silence";
/// The element's channel index for the downmix of all channels.
pub const MIX_CHANNEL: i32 = -1;

/// How files were analysed; `--resume` keeps only results made the same way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisSettings {
    pub per_channel: bool,
    /// `model-path` given to the element; `None` is its embedded model.
    pub model: Option<String>,
}

/// One result window of one channel: a line of `results.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub file: String,
    /// Channel index, [`MIX_CHANNEL`] for the downmix.
    pub channel: i32,
    /// Seconds from the start of the file.
    pub start: f64,
    pub end: f64,
    pub emotion: String,
    pub confidence: f64,
    pub scores: BTreeMap<String, f64>,
}

/// The element's end-of-stream summary of one channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelSummary {
    pub channel: i32,
    pub windows: u64,
    pub speech_windows: u64,
    pub dominant: String,
    /// Share of the speech windows per label.
    pub shares: BTreeMap<String, f64>,
}

impl ChannelSummary {
    /// Share of windows that held speech.
    pub fn speech_share(&self) -> f64 {
        if self.windows == 0 {
            0.0
        } else {
            self.speech_windows as f64 / self.windows as f64
        }
    }

    pub fn share(&self, label: &str) -> f64 {
        self.shares.get(label).copied().unwrap_or(0.0)
    }

    /// Share of speech that sounds angry or sad.
    pub fn negativity(&self) -> f64 {
        self.share(ANGRY) + self.share(SAD)
    }
}

/// Everything known about one file: stored as one part file, written atomically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileResult {
    /// The path as it was given (or found in a given folder or list).
    pub file: String,
    pub settings: AnalysisSettings,
    /// Seconds of audio analysed.
    pub duration: f64,
    /// The model's labels in score order.
    pub labels: Vec<String>,
    pub channels: Vec<ChannelSummary>,
    /// Sorted by channel, then start.
    pub windows: Vec<Window>,
    /// Why the file could not be analysed; the other fields are empty then.
    pub error: Option<String>,
}

impl FileResult {
    pub fn failed(file: String, settings: AnalysisSettings, error: String) -> Self {
        FileResult {
            file,
            settings,
            duration: 0.0,
            labels: Vec::new(),
            channels: Vec::new(),
            windows: Vec::new(),
            error: Some(error),
        }
    }

    pub fn channel(&self, channel: i32) -> Option<&ChannelSummary> {
        self.channels.iter().find(|c| c.channel == channel)
    }

    /// The stream that says how the customer sounds: the customer channel,
    /// or the file's only stream (the downmix, or a mono file's channel 0).
    pub fn customer(&self, customer_channel: i32) -> Option<&ChannelSummary> {
        self.channel(customer_channel)
            .or(match self.channels.as_slice() {
                [only] => Some(only),
                _ => None,
            })
    }

    pub fn windows_of(&self, channel: i32) -> impl Iterator<Item = &Window> {
        self.windows.iter().filter(move |w| w.channel == channel)
    }

    /// Start times of the `n` most strongly angry windows of `channel` that
    /// were classified angry, strongest first, never two overlapping ones.
    pub fn strongest_anger(&self, channel: i32, n: usize) -> Vec<f64> {
        let mut angry: Vec<&Window> = self
            .windows_of(channel)
            .filter(|w| w.emotion == ANGRY)
            .collect();
        let score = |w: &Window| w.scores.get(ANGRY).copied().unwrap_or(0.0);
        // Stable sort: equal scores keep time order, so the output is deterministic.
        angry.sort_by(|a, b| score(b).total_cmp(&score(a)));
        let mut picked: Vec<&Window> = Vec::new();
        for w in angry {
            if picked.len() == n {
                break;
            }
            if picked.iter().all(|p| w.end <= p.start || w.start >= p.end) {
                picked.push(w);
            }
        }
        picked.iter().map(|w| w.start).collect()
    }
}

/// Rounds for output: results stay readable and byte-identical however they were merged.
pub fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(channel: i32, start: f64, emotion: &str, angry: f64) -> Window {
        Window {
            file: "a.wav".into(),
            channel,
            start,
            end: start + 2.0,
            emotion: emotion.into(),
            confidence: angry,
            scores: BTreeMap::from([(ANGRY.to_string(), angry)]),
        }
    }

    #[test]
    fn strongest_anger_skips_overlaps_and_other_emotions() {
        let mut result = FileResult::failed(
            "a.wav".into(),
            AnalysisSettings {
                per_channel: true,
                model: None,
            },
            String::new(),
        );
        result.windows = vec![
            window(1, 0.0, ANGRY, 0.6),
            window(1, 1.0, ANGRY, 0.9),
            window(1, 2.0, ANGRY, 0.8),
            window(1, 3.0, ANGRY, 0.7),
            window(1, 5.0, SAD, 0.95),
            window(0, 6.0, ANGRY, 0.99),
        ];
        // 2.0 overlaps 1.0; 5.0 is sad; 6.0 is another channel.
        assert_eq!(result.strongest_anger(1, 3), vec![1.0, 3.0]);
        assert_eq!(result.strongest_anger(1, 1), vec![1.0]);
    }

    #[test]
    fn customer_falls_back_to_the_only_stream() {
        let summary = |channel| ChannelSummary {
            channel,
            windows: 4,
            speech_windows: 2,
            dominant: ANGRY.into(),
            shares: BTreeMap::from([(ANGRY.to_string(), 0.5), (SAD.to_string(), 0.25)]),
        };
        let mut result = FileResult::failed(
            "a.wav".into(),
            AnalysisSettings {
                per_channel: false,
                model: None,
            },
            String::new(),
        );
        result.channels = vec![summary(MIX_CHANNEL)];
        assert_eq!(result.customer(1).map(|c| c.channel), Some(MIX_CHANNEL));
        result.channels = vec![summary(0), summary(1)];
        assert_eq!(result.customer(1).map(|c| c.channel), Some(1));
        assert_eq!(result.customer(3).map(|c| c.channel), None);
        assert_eq!(summary(0).negativity(), 0.75);
        assert_eq!(summary(0).speech_share(), 0.5);
    }
}
