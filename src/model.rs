//! The ONNX model contract between the trainer and the element.
//!
//! A seremotion model is an ONNX file that describes itself: input `features`
//! (`[batch, n_features, n_frames]`, float32, channels-first), output `logits`
//! (`[batch, n_labels]`, float32) and `seremotion.*` metadata properties that
//! carry the labels, the sample rate, the window length and the exact feature
//! configuration (see `DESIGN.md`). This module is the only place that loads
//! such a file, so the element, the trainer's evaluation and the tests all see
//! the same checks and the same errors.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use once_cell::sync::{Lazy, OnceCell};
use ort::session::Session;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

use crate::features::FeatureConfig;

/// The default model, trained by `seremotion-trainer` (see `models/REPORT.md`).
static DEFAULT_MODEL_BYTES: &[u8] = include_bytes!("../models/default.onnx");

/// Origin string used in messages for the embedded model.
pub const DEFAULT_MODEL_ORIGIN: &str = "<embedded default model>";

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

/// File name of the ONNX Runtime shared library inside the `onnxruntime` 1.32 wheel.
pub const ORT_LIBRARY_FILE: &str = "libonnxruntime.so.1.32.0";

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
        if labels.is_empty() {
            return Err(format!("`{KEY_LABELS}` is empty"));
        }
        for (i, label) in labels.iter().enumerate() {
            if label.is_empty() || labels[..i].contains(label) {
                return Err(format!(
                    "`{KEY_LABELS}` has an empty or repeated label `{label}`"
                ));
            }
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

/// Places to look for the ONNX Runtime library, most specific first.
pub fn runtime_candidates() -> Vec<PathBuf> {
    // An explicit choice is the only candidate: falling back elsewhere would hide a typo.
    if let Some(path) = std::env::var_os("SEREMOTION_ORT_LIB").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(path)];
    }
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(path));
    }
    // Baked in by scripts/setup.sh (the project's virtualenv), so that an
    // installed plugin finds the library without any variable exported.
    if let Some(path) = option_env!("SEREMOTION_ORT_LIB_DEFAULT").filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(path));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(
            Path::new(&home)
                .join(".local/lib/seremotion")
                .join(ORT_LIBRARY_FILE),
        );
    }
    // Let the dynamic loader search its usual paths last.
    candidates.push(PathBuf::from(ORT_LIBRARY_FILE));
    candidates.push(PathBuf::from("libonnxruntime.so.1"));
    candidates.push(PathBuf::from("libonnxruntime.so"));
    candidates
}

/// Environment variable that turns off ONNX Runtime's own telemetry.
pub const ORT_TELEMETRY_VAR: &str = "ORT_DISABLE_TELEMETRY";

/// ONNX Runtime 1.32 on Linux starts a telemetry uploader, keeps a device id
/// and an event cache under `~/.cache/Microsoft`, and spends a thread and
/// about 2 MB on it, unless `ORT_DISABLE_TELEMETRY=1` is set before the
/// library initialises (the API switch only mutes events). A media element must
/// not phone home on its user's behalf, so it is set here unless the user has
/// chosen a value.
fn opt_out_of_telemetry() {
    if std::env::var_os(ORT_TELEMETRY_VAR).is_none() {
        // SAFETY: runs once per process, before ONNX Runtime is loaded. The
        // remaining hazard is another thread reading the environment through
        // libc at this very instant (the one-time risk of any `setenv` in a
        // threaded program); Rust's own readers are serialised with it.
        unsafe { std::env::set_var(ORT_TELEMETRY_VAR, "1") };
    }
}

/// The process-wide ONNX Runtime environment, loaded once.
///
/// `ort` panics if a session is built before a library was loaded, so every
/// path into ONNX Runtime goes through here first.
pub fn runtime() -> Result<&'static ort::environment::Environment, ModelError> {
    static RUNTIME: OnceCell<Result<ort::environment::Environment, ModelError>> = OnceCell::new();
    RUNTIME
        .get_or_init(|| {
            opt_out_of_telemetry();
            let mut tried = Vec::new();
            let mut cause = String::from("no candidate");
            for candidate in runtime_candidates() {
                let absolute = candidate.is_absolute();
                if absolute && !candidate.exists() {
                    tried.push(format!("{} (absent)", candidate.display()));
                    continue;
                }
                tried.push(candidate.display().to_string());
                match ort::init_from(&candidate) {
                    Ok(builder) => {
                        let builder = builder.with_name("seremotion").with_telemetry(false);
                        let environment = builder.build();
                        crate::memory::release_runtime_start_up_pages();
                        return environment.map_err(|e| ModelError::RuntimeNotFound {
                            tried: tried.clone(),
                            cause: format!("{e:?}"),
                        });
                    }
                    // The Display of this error hides the loader's message.
                    Err(e) => cause = format!("{e:?}"),
                }
            }
            Err(ModelError::RuntimeNotFound { tried, cause })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A loaded, validated seremotion model. Cheap to share: one per process per file.
pub struct Model {
    origin: String,
    metadata: ModelMetadata,
    /// `Some(n)` when the model only accepts windows of exactly `n` frames.
    fixed_frames: Option<usize>,
    /// Frames in one full window at the model's frame rate.
    window_frames: usize,
    /// `Session::run` needs `&mut`; inference is tens of microseconds, so a
    /// mutex shared by all element instances costs less than a session each.
    session: Mutex<Session>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("origin", &self.origin)
            .field("labels", &self.metadata.labels)
            .field("window_frames", &self.window_frames)
            .field("fixed_frames", &self.fixed_frames)
            .finish()
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum CacheKey {
    Embedded,
    File {
        path: PathBuf,
        len: u64,
        modified: Option<std::time::SystemTime>,
    },
}

static CACHE: Lazy<Mutex<HashMap<CacheKey, Arc<Model>>>> = Lazy::new(Default::default);

fn cached(
    key: CacheKey,
    load: impl FnOnce() -> Result<Model, ModelError>,
) -> Result<Arc<Model>, ModelError> {
    // A poisoned cache only means another thread panicked mid-insert; the map is still usable.
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(model) = cache.get(&key) {
        return Ok(model.clone());
    }
    let model = Arc::new(load()?);
    cache.insert(key, model.clone());
    Ok(model)
}

impl Model {
    /// The model embedded in the plugin, loaded once per process.
    pub fn default_model() -> Result<Arc<Model>, ModelError> {
        cached(CacheKey::Embedded, || {
            Model::load(DEFAULT_MODEL_BYTES, DEFAULT_MODEL_ORIGIN.to_string())
        })
    }

    /// Loads a model file, shared with every other user of the same unchanged file.
    pub fn from_file(path: &Path) -> Result<Arc<Model>, ModelError> {
        let io_error = |e: std::io::Error| ModelError::Io {
            path: path.to_path_buf(),
            cause: e.to_string(),
        };
        let canonical = path.canonicalize().map_err(io_error)?;
        let meta = std::fs::metadata(&canonical).map_err(io_error)?;
        if !meta.is_file() {
            return Err(ModelError::Io {
                path: path.to_path_buf(),
                cause: "not a regular file".into(),
            });
        }
        let key = CacheKey::File {
            path: canonical.clone(),
            len: meta.len(),
            modified: meta.modified().ok(),
        };
        cached(key, || {
            let bytes = std::fs::read(&canonical).map_err(io_error)?;
            Model::load(&bytes, format!("model file {}", path.display()))
        })
    }

    /// Loads a model from bytes without caching; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Arc<Model>, ModelError> {
        Model::load(bytes, origin.to_string()).map(Arc::new)
    }

    fn load(bytes: &[u8], origin: String) -> Result<Model, ModelError> {
        let env = runtime()?;
        let invalid = |problem: String| ModelError::Invalid {
            origin: origin.clone(),
            problem,
        };
        let session = Session::builder(env)
            .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
            .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
            .and_then(|mut b| b.commit_from_memory(bytes))
            .map_err(|e| invalid(format!("ONNX Runtime cannot load it: {e}")))?;

        let metadata = {
            let props = session
                .metadata()
                .map_err(|e| invalid(format!("cannot read its metadata: {e}")))?;
            ModelMetadata::from_props(|key| props.custom(key)).map_err(invalid)?
        };
        let n_features = metadata.features.n_features();
        let n_labels = metadata.labels.len();

        let input = find_outlet(session.inputs(), INPUT_NAME, "input").map_err(invalid)?;
        let input_shape = tensor_f32_shape(input.dtype()).map_err(invalid)?;
        if input_shape.len() != 3 {
            return Err(invalid(format!(
                "input `{INPUT_NAME}` has rank {}, expected [batch, n_features, n_frames]",
                input_shape.len()
            )));
        }
        if input_shape[1] != n_features as i64 {
            return Err(invalid(format!(
                "input `{INPUT_NAME}` has {} feature channels, its feature configuration gives {n_features}",
                input_shape[1]
            )));
        }
        let fixed_frames = match input_shape[2] {
            n if n > 0 => Some(n as usize),
            _ => None,
        };

        let output = find_outlet(session.outputs(), OUTPUT_NAME, "output").map_err(invalid)?;
        let output_shape = tensor_f32_shape(output.dtype()).map_err(invalid)?;
        if output_shape.len() != 2 || output_shape[1] != n_labels as i64 {
            return Err(invalid(format!(
                "output `{OUTPUT_NAME}` has shape {output_shape:?}, expected [batch, {n_labels}] for labels {:?}",
                metadata.labels
            )));
        }

        let window_samples = (metadata.window * f64::from(metadata.sample_rate)).round() as usize;
        let window_frames =
            fixed_frames.unwrap_or_else(|| metadata.features.frames_in(window_samples));

        crate::memory::release_runtime_start_up_pages();
        Ok(Model {
            origin,
            metadata,
            fixed_frames,
            window_frames,
            session: Mutex::new(session),
        })
    }

    /// Names the model in messages: the file path, or the embedded default.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    pub fn labels(&self) -> &[String] {
        &self.metadata.labels
    }

    pub fn n_labels(&self) -> usize {
        self.metadata.labels.len()
    }

    pub fn n_features(&self) -> usize {
        self.metadata.features.n_features()
    }

    /// Frames in one full window.
    pub fn window_frames(&self) -> usize {
        self.window_frames
    }

    /// `Some(n)` when the model accepts exactly `n` frames per window.
    pub fn fixed_frames(&self) -> Option<usize> {
        self.fixed_frames
    }

    /// Runs the network on `batch` windows laid out `[batch, n_features, n_frames]`
    /// and writes `[batch, n_labels]` logits into `logits`.
    pub fn logits_into(
        &self,
        input: &[f32],
        batch: usize,
        n_frames: usize,
        logits: &mut [f32],
    ) -> Result<(), ModelError> {
        let n_features = self.n_features();
        let n_labels = self.n_labels();
        let bad_call = |cause: String| ModelError::Inference {
            origin: self.origin.clone(),
            cause,
        };
        if input.len() != batch * n_features * n_frames || logits.len() != batch * n_labels {
            return Err(bad_call(format!(
                "input of {} values / output of {} values do not match batch {batch} x {n_features} features x {n_frames} frames -> {n_labels} labels",
                input.len(),
                logits.len()
            )));
        }
        if let Some(fixed) = self.fixed_frames.filter(|&f| f != n_frames) {
            return Err(bad_call(format!(
                "the model takes exactly {fixed} frames, got {n_frames}"
            )));
        }
        let tensor = TensorRef::from_array_view(([batch, n_features, n_frames], input))
            .map_err(|e| bad_call(e.to_string()))?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session
            .run(ort::inputs![INPUT_NAME => tensor])
            .map_err(|e| bad_call(e.to_string()))?;
        let (_, values) = outputs[OUTPUT_NAME]
            .try_extract_tensor::<f32>()
            .map_err(|e| bad_call(e.to_string()))?;
        if values.len() != logits.len() {
            return Err(bad_call(format!(
                "`{OUTPUT_NAME}` has {} values, expected {}",
                values.len(),
                logits.len()
            )));
        }
        logits.copy_from_slice(values);
        Ok(())
    }

    /// Convenience wrapper around [`Model::logits_into`] that allocates the output.
    pub fn logits(
        &self,
        input: &[f32],
        batch: usize,
        n_frames: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let mut logits = vec![0.0; batch * self.n_labels()];
        self.logits_into(input, batch, n_frames, &mut logits)?;
        Ok(logits)
    }
}

fn find_outlet<'a>(
    outlets: &'a [ort::value::Outlet],
    name: &str,
    kind: &str,
) -> Result<&'a ort::value::Outlet, String> {
    outlets.iter().find(|o| o.name() == name).ok_or_else(|| {
        let names: Vec<&str> = outlets.iter().map(|o| o.name()).collect();
        format!("it has no {kind} named `{name}` (it has {names:?})")
    })
}

fn tensor_f32_shape(dtype: &ort::value::ValueType) -> Result<Vec<i64>, String> {
    match dtype {
        ort::value::ValueType::Tensor { ty, shape, .. } => {
            if *ty != ort::value::TensorElementType::Float32 {
                return Err(format!("tensor type is {ty:?}, expected float32"));
            }
            Ok(shape.iter().copied().collect())
        }
        other => Err(format!("expected a float32 tensor, found {other:?}")),
    }
}

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

/// Returns `onnx` (a serialised ONNX `ModelProto`) with `meta` added as
/// `metadata_props`.
///
/// Protobuf merges concatenated messages and appends repeated fields, so the
/// entries are simply appended as field 14 (`metadata_props`) records; no
/// protobuf library is needed. `onnx` must not already carry `seremotion.*` keys.
pub fn embed_metadata(onnx: &[u8], meta: &ModelMetadata) -> Vec<u8> {
    embed_props(onnx, &meta.to_props())
}

/// As [`embed_metadata`], for arbitrary key/value pairs (tests build broken models with it).
pub fn embed_props(onnx: &[u8], props: &[(String, String)]) -> Vec<u8> {
    const METADATA_PROPS_FIELD: u64 = 14;
    const WIRE_LEN: u64 = 2;
    let mut out = onnx.to_vec();
    for (key, value) in props {
        let mut entry = Vec::new();
        put_len_field(&mut entry, 1, key.as_bytes());
        put_len_field(&mut entry, 2, value.as_bytes());
        put_varint(&mut out, (METADATA_PROPS_FIELD << 3) | WIRE_LEN);
        put_varint(&mut out, entry.len() as u64);
        out.extend_from_slice(&entry);
    }
    out
}

fn put_len_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_encoding_matches_protobuf() {
        let mut out = Vec::new();
        put_varint(&mut out, 1);
        put_varint(&mut out, 300);
        put_varint(&mut out, (14 << 3) | 2);
        assert_eq!(out, vec![0x01, 0xAC, 0x02, 0x72]);
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
        props.insert(KEY_LABELS.into(), "[\"a\",\"b\"]".into());
        props.insert(KEY_SAMPLE_RATE.into(), "8000".into());
        let err = ModelMetadata::from_props(|k| props.get(k).cloned()).unwrap_err();
        assert!(err.contains("16000 Hz"), "{err}");
    }
}
