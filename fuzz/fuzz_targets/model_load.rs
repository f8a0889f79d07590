//! The model loader on mutated model files and metadata: a valid fixture
//! model with its bytes spliced, and valid metadata with one value replaced
//! by arbitrary text. Loading must return a model or an error, never panic,
//! hang or allocate without bound.
#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use seremotion_core::model::writer::embed_props;
use seremotion_core::model::{Model, ModelMetadata};

static BARE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tone_bands_bare.onnx"))
        .expect("fixture model")
});
static GOOD: LazyLock<Vec<u8>> = LazyLock::new(|| {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tone_bands.onnx"))
        .expect("fixture model")
});
static PROPS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    let model = Model::from_bytes(&GOOD, "fixture").expect("fixture loads");
    model.metadata().to_props()
});

#[derive(Arbitrary, Debug)]
enum Input {
    /// Metadata with one key's value replaced (or removed, when `value` is None).
    Metadata { key: u8, value: Option<String> },
    /// The whole file with `bytes` written over it at `at`.
    Splice { at: u32, bytes: Vec<u8> },
    /// Arbitrary bytes as a model file.
    Raw(Vec<u8>),
}

fuzz_target!(|input: Input| {
    match input {
        Input::Metadata { key, value } => {
            let mut props: HashMap<String, String> = PROPS.iter().cloned().collect();
            let key = PROPS[usize::from(key) % PROPS.len()].0.clone();
            // ONNX Runtime hands metadata out as C strings, so it reads a value
            // only up to a NUL: compare with what it will see.
            let value = value.map(|v| v.split('\0').next().unwrap_or_default().to_string());
            match value {
                Some(value) => props.insert(key, value),
                None => props.remove(&key),
            };
            // The contract is checked before ONNX Runtime sees the file...
            let parsed = ModelMetadata::from_props(|k| props.get(k).cloned());
            // ...and the loader gives the same verdict on a file carrying it.
            let pairs: Vec<(String, String)> = props.into_iter().collect();
            let loaded = Model::from_bytes(&embed_props(&BARE, &pairs), "fuzzed metadata");
            assert_eq!(parsed.is_ok(), loaded.is_ok(), "{parsed:?} / {loaded:?}");
        }
        Input::Splice { at, bytes } => {
            let mut file = GOOD.clone();
            let at = at as usize % file.len();
            let end = (at + bytes.len()).min(file.len());
            file[at..end].copy_from_slice(&bytes[..end - at]);
            let _ = Model::from_bytes(&file, "spliced model");
        }
        Input::Raw(bytes) => {
            let _ = Model::from_bytes(&bytes, "arbitrary bytes");
        }
    }
});
