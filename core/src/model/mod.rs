//! The ONNX model contract between the trainer and the element.
//!
//! A seremotion model is an ONNX file that describes itself: input `features`
//! (`[batch, n_features, n_frames]`, float32, channels-first), output `logits`
//! (`[batch, n_labels]`, float32) and `seremotion.*` metadata properties that
//! carry the labels, the sample rate, the window length and the exact feature
//! configuration (see `DESIGN.md`). This module is the only place that loads
//! such a file, so the element, the trainer's evaluation and the tests all see
//! the same checks and the same errors.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::features::FeatureConfig;

mod runtime;
mod session;
#[cfg(feature = "writer")]
pub mod writer;

pub use runtime::{ORT_LIBRARY_FILE, runtime, runtime_candidates};
pub use session::{DEFAULT_MODEL_ORIGIN, MAX_MODEL_BYTES, Model, models_in_use};

pub const KEY_FORMAT: &str = "seremotion.format";
pub const KEY_LABELS: &str = "seremotion.labels";
pub const KEY_SAMPLE_RATE: &str = "seremotion.sample_rate";
pub const KEY_WINDOW: &str = "seremotion.window";
pub const KEY_FEATURES: &str = "seremotion.features";
pub const KEY_TRAINING: &str = "seremotion.training";
/// The contract version this crate reads and writes.
pub const FORMAT_VERSION: &str = "1";
pub const INPUT_NAME: &str = "features";
pub const OUTPUT_NAME: &str = "logits";

/// Most labels a model may have.
pub const MAX_LABELS: usize = 256;
/// Most feature values (frames x features) in one model window: bounds what
/// a window costs before anything is allocated (the default uses 12 800).
pub const MAX_WINDOW_VALUES: usize = 1 << 22;
/// Names the element reports for windows that are not a label's.
pub const RESERVED_LABELS: [&str; 2] = ["silence", "uncertain"];

/// Why `label` cannot name a model output: it becomes a field name of the
/// element's messages and a value applications compare against.
fn check_label(label: &str) -> Result<(), &'static str> {
    if RESERVED_LABELS.contains(&label) {
        return Err("`silence` and `uncertain` are reported by seremotion itself");
    }
    if label.len() > 64 {
        return Err("longer than 64 bytes");
    }
    if label.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains a control character (e.g. NUL) or white space");
    }
    if label.contains(['=', ',', ';', '"', '\\']) {
        return Err("contains one of = , ; \" \\ (not allowed in a message field name)");
    }
    Ok(())
}

/// Everything a model says about itself through its `seremotion.*` properties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub labels: Vec<String>,
    pub sample_rate: u32,
    /// Seconds of audio per inference window.
    pub window: f64,
    pub features: FeatureConfig,
    /// Free-form training summary (corpora, split, metrics, commit).
    pub training: serde_json::Value,
}

impl ModelMetadata {
    /// The metadata as ONNX `metadata_props` key/value pairs.
    pub fn to_props(&self) -> Vec<(String, String)> {
        // Serialising these plain types cannot fail.
        let labels = serde_json::to_string(&self.labels).expect("labels serialise");
        let features = serde_json::to_string(&self.features).expect("features serialise");
        vec![
            (KEY_FORMAT.into(), FORMAT_VERSION.into()),
            (KEY_LABELS.into(), labels),
            (KEY_SAMPLE_RATE.into(), self.sample_rate.to_string()),
            (KEY_WINDOW.into(), self.window.to_string()),
            (KEY_FEATURES.into(), features),
            (KEY_TRAINING.into(), self.training.to_string()),
        ]
    }

    /// Parses and validates the properties; `lookup` returns a property's value.
    pub fn from_props(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |key: &str| lookup(key).ok_or_else(|| format!("metadata key `{key}` is missing"));

        let format = get(KEY_FORMAT)?;
        if format.trim() != FORMAT_VERSION {
            return Err(format!(
                "`{KEY_FORMAT}` is `{format}`, this version of seremotion reads format {FORMAT_VERSION}"
            ));
        }
        let labels: Vec<String> = serde_json::from_str(&get(KEY_LABELS)?)
            .map_err(|e| format!("`{KEY_LABELS}` is not a JSON array of strings: {e}"))?;
        if labels.is_empty() || labels.len() > MAX_LABELS {
            return Err(format!(
                "`{KEY_LABELS}` has {} labels; a model needs 1 to {MAX_LABELS}",
                labels.len()
            ));
        }
        for (i, label) in labels.iter().enumerate() {
            if label.is_empty() || labels[..i].contains(label) {
                return Err(format!(
                    "`{KEY_LABELS}` has an empty or repeated label `{label}`"
                ));
            }
            check_label(label).map_err(|problem| {
                format!("`{KEY_LABELS}` has an unusable label {label:?}: {problem}")
            })?;
        }
        let sample_rate: u32 = get(KEY_SAMPLE_RATE)?
            .trim()
            .parse()
            .map_err(|e| format!("`{KEY_SAMPLE_RATE}` is not a whole number of Hz: {e}"))?;
        if !(4000..=192_000).contains(&sample_rate) {
            return Err(format!(
                "`{KEY_SAMPLE_RATE}` = {sample_rate} Hz is outside 4000..=192000"
            ));
        }
        let window: f64 = get(KEY_WINDOW)?
            .trim()
            .parse()
            .map_err(|e| format!("`{KEY_WINDOW}` is not a number of seconds: {e}"))?;
        if !(window.is_finite() && window > 0.0 && window <= 60.0) {
            return Err(format!("`{KEY_WINDOW}` = {window} s is outside (0, 60]"));
        }
        let features: FeatureConfig = serde_json::from_str(&get(KEY_FEATURES)?)
            .map_err(|e| format!("`{KEY_FEATURES}` is not a valid feature configuration: {e}"))?;
        features
            .validate()
            .map_err(|e| format!("`{KEY_FEATURES}` is invalid: {e}"))?;
        if features.sample_rate != sample_rate {
            return Err(format!(
                "`{KEY_FEATURES}` assumes {} Hz but `{KEY_SAMPLE_RATE}` says {sample_rate} Hz",
                features.sample_rate
            ));
        }
        let window_samples = (window * f64::from(sample_rate)).round() as usize;
        if features.frames_in(window_samples) == 0 {
            return Err(format!(
                "`{KEY_WINDOW}` = {window} s is shorter than one feature frame"
            ));
        }
        let window_values = features.frames_in(window_samples) * features.n_features();
        if window_values > MAX_WINDOW_VALUES {
            return Err(format!(
                "a `{KEY_WINDOW}` = {window} s window holds {window_values} feature values, \
                 more than the {MAX_WINDOW_VALUES} seremotion accepts"
            ));
        }
        let training: serde_json::Value = serde_json::from_str(&get(KEY_TRAINING)?)
            .map_err(|e| format!("`{KEY_TRAINING}` is not JSON: {e}"))?;
        Ok(Self {
            labels,
            sample_rate,
            window,
            features,
            training,
        })
    }
}

/// Why a model could not be loaded or run. Every variant names the model.
#[derive(Debug, Clone)]
pub enum ModelError {
    /// The ONNX Runtime shared library could not be loaded.
    RuntimeNotFound { tried: Vec<String>, cause: String },
    /// An ONNX Runtime library was found but cannot be used (wrong version,
    /// truncated or not a shared library); loading it was not attempted or failed.
    RuntimeUnusable { path: PathBuf, problem: String },
    /// The model file could not be read.
    Io { path: PathBuf, cause: String },
    /// The file is not a seremotion model (ONNX parse error, missing key, wrong shape...).
    Invalid { origin: String, problem: String },
    /// ONNX Runtime failed while running the model.
    Inference { origin: String, cause: String },
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::RuntimeNotFound { tried, cause } => write!(
                f,
                "ONNX Runtime library not found (tried: {}; last error: {cause}). \
                 Run `scripts/setup.sh`, or `pip install onnxruntime==1.32.*` and set \
                 SEREMOTION_ORT_LIB to the path of its capi/{ORT_LIBRARY_FILE}",
                tried.join(", ")
            ),
            ModelError::RuntimeUnusable { path, problem } => write!(
                f,
                "the ONNX Runtime library {} cannot be used: {problem}. seremotion needs \
                 ONNX Runtime 1.32 ({ORT_LIBRARY_FILE} from `pip install onnxruntime==1.32.*`); \
                 run `scripts/setup.sh` or point SEREMOTION_ORT_LIB at a good copy",
                path.display()
            ),
            ModelError::Io { path, cause } => {
                write!(f, "cannot read model file {}: {cause}", path.display())
            }
            ModelError::Invalid { origin, problem } => {
                write!(f, "{origin} is not a valid seremotion model: {problem}")
            }
            ModelError::Inference { origin, cause } => {
                write!(f, "running {origin} failed: {cause}")
            }
        }
    }
}

impl std::error::Error for ModelError {}

/// Softmax in place, numerically stable; non-finite logits give a uniform result.
pub fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() || values.iter().any(|v| !v.is_finite()) {
        let uniform = 1.0 / values.len().max(1) as f32;
        values.iter_mut().for_each(|v| *v = uniform);
        return;
    }
    let mut sum = 0.0;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    values.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// The embedded model was trained with the front end the code names as
    /// the default model's, so the benches and fuzz target that use
    /// `FeatureConfig::default_model()` exercise what the element runs.
    #[test]
    fn the_embedded_model_uses_the_default_models_front_end() {
        let model = Model::default_model().expect("the embedded model loads");
        let mut embedded = model.metadata().features.clone();
        assert_eq!(embedded.mean.len(), embedded.n_features(), "fitted mean");
        assert_eq!(embedded.std.len(), embedded.n_features(), "fitted std");
        embedded.mean.clear();
        embedded.std.clear();
        assert_eq!(embedded, crate::features::FeatureConfig::default_model());
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut v = [1.0, 3.0, 2.0, -1.0];
        softmax(&mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[1] > v[2] && v[2] > v[0] && v[0] > v[3]);
        let mut nan = [f32::NAN, 1.0];
        softmax(&mut nan);
        assert_eq!(nan, [0.5, 0.5]);
    }

    #[test]
    fn metadata_round_trips_through_props() {
        let meta = ModelMetadata {
            labels: vec!["neutral".into(), "angry".into()],
            sample_rate: 16000,
            window: 2.0,
            features: FeatureConfig::default(),
            training: serde_json::json!({"corpora": ["tess"]}),
        };
        let props: HashMap<String, String> = meta.to_props().into_iter().collect();
        let parsed = ModelMetadata::from_props(|k| props.get(k).cloned()).expect("valid");
        assert_eq!(parsed, meta);
    }

    #[test]
    fn metadata_errors_name_the_key() {
        let meta = ModelMetadata {
            labels: vec!["a".into(), "b".into()],
            sample_rate: 16000,
            window: 1.0,
            features: FeatureConfig::default(),
            training: serde_json::Value::Null,
        };
        for key in [
            KEY_FORMAT,
            KEY_LABELS,
            KEY_SAMPLE_RATE,
            KEY_WINDOW,
            KEY_FEATURES,
            KEY_TRAINING,
        ] {
            let props: HashMap<String, String> = meta
                .to_props()
                .into_iter()
                .filter(|(k, _)| k != key)
                .collect();
            let err = ModelMetadata::from_props(|k| props.get(k).cloned()).unwrap_err();
            assert!(err.contains(key), "{err}");
        }
        let mut props: HashMap<String, String> = meta.to_props().into_iter().collect();
        props.insert(KEY_LABELS.into(), "[\"a\",\"a\"]".into());
        let err = ModelMetadata::from_props(|k| props.get(k).cloned()).unwrap_err();
        assert!(err.contains("repeated"), "{err}");
        for bad in ["a\0", "a b", "x=y", "silence", "uncertain", "\t"] {
            let labels = serde_json::to_string(&["ok", bad]).expect("json");
            props.insert(KEY_LABELS.into(), labels);
            let err = ModelMetadata::from_props(|k| props.get(k).cloned()).unwrap_err();
            assert!(err.contains("unusable label"), "{bad:?}: {err}");
        }
        props.insert(KEY_LABELS.into(), "[\"a\",\"b\"]".into());
        props.insert(KEY_SAMPLE_RATE.into(), "8000".into());
        let err = ModelMetadata::from_props(|k| props.get(k).cloned()).unwrap_err();
        assert!(err.contains("16000 Hz"), "{err}");
    }

    #[test]
    fn huge_feature_configs_are_refused_before_allocating() {
        let mut meta = ModelMetadata {
            labels: vec!["a".into(), "b".into()],
            sample_rate: 16000,
            window: 2.0,
            features: FeatureConfig::default(),
            training: serde_json::Value::Null,
        };
        // n_fft = 2^26 once took 17 s to refuse (a 64 x 2^26 filterbank).
        meta.features.n_fft = 1 << 26;
        meta.features.win_length = 1 << 26;
        let props: HashMap<String, String> = meta.to_props().into_iter().collect();
        let err = ModelMetadata::from_props(|k| props.get(k).cloned()).unwrap_err();
        assert!(
            err.contains("n_fft") && err.contains("larger than"),
            "{err}"
        );
        meta.features = FeatureConfig {
            n_mels: 100_000,
            ..FeatureConfig::default()
        };
        let props: HashMap<String, String> = meta.to_props().into_iter().collect();
        let err = ModelMetadata::from_props(|k| props.get(k).cloned()).unwrap_err();
        assert!(err.contains("n_mels"), "{err}");
        // A 60 s window of one-sample hops is refused by its size.
        meta.features = FeatureConfig {
            hop_length: 1,
            ..FeatureConfig::default()
        };
        meta.window = 60.0;
        let props: HashMap<String, String> = meta.to_props().into_iter().collect();
        let err = ModelMetadata::from_props(|k| props.get(k).cloned()).unwrap_err();
        assert!(err.contains("feature values"), "{err}");
    }
}
