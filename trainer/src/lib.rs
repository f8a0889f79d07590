//! seremotion-trainer: emotional-speech corpora -> augmented features -> 1D CNN -> ONNX.
//!
//! Data flows `corpus` (manifest or folder of clips) -> `split` (speaker
//! independent) -> `augment` (training clips only) -> `train` (features from
//! the root crate's `features`, the `net` CNN) -> `export` (ONNX following
//! the model contract) -> `eval` (clips classified the way the element does).

pub mod augment;
pub mod calibrate;
pub mod corpus;
pub mod cv;
pub mod eval;
pub mod export;
pub mod metrics;
pub mod net;
pub mod run;
pub mod split;
pub mod train;

/// Writes a clap value's command-line name (`Display` for option enums, so
/// clap shows their defaults as they are typed).
pub(crate) fn fmt_value_enum(
    value: &impl clap::ValueEnum,
    f: &mut std::fmt::Formatter<'_>,
) -> std::fmt::Result {
    match value.to_possible_value() {
        Some(v) => f.write_str(v.get_name()),
        None => Ok(()),
    }
}
