//! Sessions: a validated model ready to run, shared by every user of the same file.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};

use crossbeam_queue::SegQueue;

use once_cell::sync::Lazy;
use ort::session::Session;
use ort::value::TensorRef;

use super::runtime::runtime;
use super::{INPUT_NAME, ModelError, ModelMetadata, OUTPUT_NAME};

/// The default model, trained by `seremotion-trainer` (see `models/REPORT.md`).
static DEFAULT_MODEL_BYTES: &[u8] = include_bytes!("../../../models/default.onnx");

/// Origin string used in messages for the embedded model.
pub const DEFAULT_MODEL_ORIGIN: &str = "<embedded default model>";

/// Model files larger than this are refused before they are read: seremotion
/// models are a few MB, and reading a wrong multi-GB path whole would stall
/// the pipeline.
pub const MAX_MODEL_BYTES: u64 = 64 << 20;

/// A loaded, validated seremotion model. Cheap to share: one per process per
/// file, for as long as someone uses it.
pub struct Model {
    origin: String,
    metadata: ModelMetadata,
    /// `Some(n)` when the model only accepts windows of exactly `n` frames.
    fixed_frames: Option<usize>,
    /// Frames in one full window at the model's frame rate.
    window_frames: usize,
    /// The ONNX bytes, to build another session when every idle one is busy.
    bytes: Arc<[u8]>,
    /// Idle sessions. `Session::run` needs `&mut`, so each inference takes one
    /// out and puts it back: concurrent pipelines do not wait on each other.
    idle: SegQueue<Session>,
    /// Sessions built so far, at most `max_sessions`.
    sessions: AtomicUsize,
    /// More sessions than cores cannot run at once; past that, a caller waits
    /// for one to come back instead of building another (each costs memory).
    max_sessions: usize,
    /// Wakes a caller waiting for a session; used only when all are busy.
    returned: (Mutex<()>, Condvar),
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

/// Models in use, by where they came from. Entries are weak so that a model no
/// element uses any more is dropped; the lock is held for look-ups only, never
/// while a model loads.
static CACHE: Lazy<Mutex<HashMap<CacheKey, Weak<Model>>>> = Lazy::new(Default::default);

fn cache() -> std::sync::MutexGuard<'static, HashMap<CacheKey, Weak<Model>>> {
    // A poisoned cache only means another thread panicked mid-insert; the map is still usable.
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

fn cached(
    key: CacheKey,
    load: impl FnOnce() -> Result<Model, ModelError>,
) -> Result<Arc<Model>, ModelError> {
    if let Some(model) = cache().get(&key).and_then(Weak::upgrade) {
        return Ok(model);
    }
    let loaded = Arc::new(load()?);
    let mut cache = cache();
    cache.retain(|_, model| model.strong_count() > 0);
    // Another thread may have loaded the same model meanwhile: share theirs.
    if let Some(model) = cache.get(&key).and_then(Weak::upgrade) {
        return Ok(model);
    }
    cache.insert(key, Arc::downgrade(&loaded));
    Ok(loaded)
}

/// How many models the process holds for its users (for tests of the cache).
pub fn models_in_use() -> usize {
    cache().values().filter(|m| m.strong_count() > 0).count()
}

impl Model {
    /// The model embedded in the plugin, shared while anyone uses it.
    pub fn default_model() -> Result<Arc<Model>, ModelError> {
        cached(CacheKey::Embedded, || {
            Model::load(
                Arc::from(DEFAULT_MODEL_BYTES),
                DEFAULT_MODEL_ORIGIN.to_string(),
            )
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
        if meta.len() > MAX_MODEL_BYTES {
            return Err(ModelError::Io {
                path: path.to_path_buf(),
                cause: format!(
                    "{} bytes is larger than any seremotion model (at most {MAX_MODEL_BYTES})",
                    meta.len()
                ),
            });
        }
        let key = CacheKey::File {
            path: canonical.clone(),
            len: meta.len(),
            modified: meta.modified().ok(),
        };
        cached(key, || {
            let bytes = std::fs::read(&canonical).map_err(io_error)?;
            Model::load(Arc::from(bytes), format!("model file {}", path.display()))
        })
    }

    /// Loads a model from bytes without caching; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Arc<Model>, ModelError> {
        Model::load(Arc::from(bytes), origin.to_string()).map(Arc::new)
    }

    fn new_session(bytes: &[u8]) -> Result<Session, String> {
        let env = runtime().map_err(|e| e.to_string())?;
        Session::builder(env)
            .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
            .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
            .and_then(|mut b| b.commit_from_memory(bytes))
            .map_err(|e| format!("ONNX Runtime cannot load it: {e}"))
    }

    fn load(bytes: Arc<[u8]>, origin: String) -> Result<Model, ModelError> {
        // A missing runtime is its own error, not a problem of the model.
        runtime()?;
        let invalid = |problem: String| ModelError::Invalid {
            origin: origin.clone(),
            problem,
        };
        let session = Self::new_session(&bytes).map_err(invalid)?;

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

        let idle = SegQueue::new();
        idle.push(session);
        Ok(Model {
            origin,
            metadata,
            fixed_frames,
            window_frames,
            bytes,
            idle,
            sessions: AtomicUsize::new(1),
            max_sessions: std::thread::available_parallelism().map_or(1, |n| n.get()) * 2,
            returned: (Mutex::new(()), Condvar::new()),
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
        let mut session = self.take_session().map_err(bad_call)?;
        let result = run_into(&mut session, tensor, logits);
        self.idle.push(session);
        self.returned.1.notify_one();
        result.map_err(bad_call)
    }

    /// An idle session, a new one while there are fewer than `max_sessions`,
    /// or the next one handed back.
    fn take_session(&self) -> Result<Session, String> {
        loop {
            if let Some(session) = self.idle.pop() {
                return Ok(session);
            }
            let built = self.sessions.load(Ordering::Relaxed);
            if built < self.max_sessions {
                if self
                    .sessions
                    .compare_exchange(built, built + 1, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Self::new_session(&self.bytes).inspect_err(|_| {
                        self.sessions.fetch_sub(1, Ordering::AcqRel);
                    });
                }
                continue;
            }
            let guard = self.returned.0.lock().unwrap_or_else(|e| e.into_inner());
            // The timeout covers a hand-back between the pop above and this wait.
            let _ = self
                .returned
                .1
                .wait_timeout(guard, std::time::Duration::from_millis(1));
        }
    }

    /// Sessions this model has built: at most twice the cores, however many
    /// pipelines share it.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
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

fn run_into(
    session: &mut Session,
    input: TensorRef<'_, f32>,
    logits: &mut [f32],
) -> Result<(), String> {
    let outputs = session
        .run(ort::inputs![INPUT_NAME => input])
        .map_err(|e| e.to_string())?;
    let (_, values) = outputs[OUTPUT_NAME]
        .try_extract_tensor::<f32>()
        .map_err(|e| e.to_string())?;
    if values.len() != logits.len() {
        return Err(format!(
            "`{OUTPUT_NAME}` has {} values, expected {}",
            values.len(),
            logits.len()
        ));
    }
    logits.copy_from_slice(values);
    Ok(())
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
