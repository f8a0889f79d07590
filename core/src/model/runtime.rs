//! Finding and loading the ONNX Runtime shared library.

use std::path::{Path, PathBuf};

use once_cell::sync::OnceCell;

use super::ModelError;

/// File name of the ONNX Runtime shared library inside the `onnxruntime` 1.32 wheel.
pub const ORT_LIBRARY_FILE: &str = "libonnxruntime.so.1.32.0";

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

/// The process-wide ONNX Runtime environment, loaded on first use.
///
/// `ort` panics if a session is built before a library was loaded, so every
/// path into ONNX Runtime goes through here first. Success is kept for the
/// life of the process (ONNX Runtime cannot be unloaded); a failure is not, so
/// a library installed after a first failed attempt is found by the next one.
///
/// Telemetry is switched off through the API only: the library is loaded into
/// someone else's process, whose environment is not ours to change. ONNX
/// Runtime 1.32 on Linux still starts its uploader thread unless
/// `ORT_DISABLE_TELEMETRY=1` is in the environment when it loads; the README
/// tells users to set it.
pub fn runtime() -> Result<&'static ort::environment::Environment, ModelError> {
    static RUNTIME: OnceCell<ort::environment::Environment> = OnceCell::new();
    RUNTIME.get_or_try_init(load_runtime)
}

fn load_runtime() -> Result<ort::environment::Environment, ModelError> {
    let mut tried = Vec::new();
    let mut cause = String::from("no candidate");
    for candidate in runtime_candidates() {
        if candidate.is_absolute() && !candidate.exists() {
            tried.push(format!("{} (absent)", candidate.display()));
            continue;
        }
        tried.push(candidate.display().to_string());
        match ort::init_from(&candidate) {
            Ok(builder) => {
                return builder
                    .with_name("seremotion")
                    .with_telemetry(false)
                    .build()
                    .map_err(|e| ModelError::RuntimeNotFound {
                        tried,
                        cause: format!("{e:?}"),
                    });
            }
            // The Display of this error hides the loader's message.
            Err(e) => cause = format!("{e:?}"),
        }
    }
    Err(ModelError::RuntimeNotFound { tried, cause })
}
