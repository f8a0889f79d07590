//! One loaded model serves many concurrent callers: the cache shares it while
//! it is used and drops it after, and inference never runs two callers on one
//! session nor builds more sessions than can run at once.

use std::path::PathBuf;
use std::sync::Arc;

use seremotion_core::model::{Model, models_in_use};

/// `models_in_use` counts the whole process: tests that load models take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn test_input(model: &Model) -> (Vec<f32>, usize) {
    let frames = model.fixed_frames().unwrap_or(model.window_frames());
    let input = (0..model.n_features() * frames)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
        .collect();
    (input, frames)
}

#[test]
fn concurrent_callers_get_the_same_answers_from_a_bounded_pool() {
    let _serial = serial();
    let model = Model::default_model().expect("the default model loads");
    let (input, frames) = test_input(&model);
    let expected = model.logits(&input, 1, frames).expect("inference");
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                for _ in 0..20 {
                    assert_eq!(
                        model.logits(&input, 1, frames).expect("inference"),
                        expected
                    );
                }
            });
        }
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        (1..=2 * cores).contains(&model.sessions()),
        "{} sessions for {cores} cores",
        model.sessions()
    );
}

#[test]
fn a_file_is_shared_while_used_and_dropped_after() {
    let _serial = serial();
    // A copy of its own, so that no other test holds the same file.
    let path = std::env::temp_dir().join(format!("seremotion-sharing-{}.onnx", std::process::id()));
    std::fs::copy(fixture("tone_bands.onnx"), &path).expect("copy fixture");
    let before = models_in_use();
    let first = Model::from_file(&path).expect("fixture loads");
    let second = Model::from_file(&path).expect("fixture loads");
    assert!(
        Arc::ptr_eq(&first, &second),
        "the same unchanged file is loaded once"
    );
    assert_eq!(models_in_use(), before + 1);
    drop((first, second));
    assert_eq!(models_in_use(), before, "a model nobody uses is dropped");

    // Rewriting the file many times must not keep every version alive.
    let bytes = std::fs::read(&path).expect("read");
    for i in 0..5u64 {
        std::fs::write(&path, &bytes).expect("rewrite");
        // A distinct mtime per rewrite, as a real edit would have.
        let mtime = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + i);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(mtime))
            .expect("set mtime");
        let model = Model::from_file(&path).expect("rewritten file loads");
        assert_eq!(model.n_labels(), 4);
    }
    let _ = std::fs::remove_file(&path);
    assert_eq!(models_in_use(), before, "reloads leaked models");
}

#[test]
fn a_huge_file_is_refused_before_it_is_read() {
    let path = std::env::temp_dir().join(format!("seremotion-huge-{}.onnx", std::process::id()));
    let file = std::fs::File::create(&path).expect("create");
    // Sparse: no disk space used, but a length past the limit.
    file.set_len(seremotion_core::model::MAX_MODEL_BYTES + 1)
        .expect("set length");
    let err = Model::from_file(&path).unwrap_err().to_string();
    let _ = std::fs::remove_file(&path);
    assert!(
        err.contains(&path.display().to_string()) && err.contains("larger"),
        "{err}"
    );
}
