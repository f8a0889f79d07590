//! ONNX export following the model contract in DESIGN.md: input `features`
//! `[batch, n_features, n_frames]` (batch and frames dynamic), output `logits`
//! `[batch, n_labels]`, metadata embedded by the root crate's
//! `model::embed_metadata`.

use anyhow::{Context, Result, bail, ensure};
use burn::module::Module;
use burn::prelude::*;
use burn_onnx::export::{AxisSpec, InputSpec, OnnxExporter};
use onnx_ir::{Message, ModelProto};

use crate::net::{EmotionCnn, Ensemble};

pub const INPUT_NAME: &str = "features";
pub const OUTPUT_NAME: &str = "logits";

/// Traces `model` (in inference mode; one member or several) and returns the serialized ONNX graph
/// with the contract's tensor names and symbolic `batch`/`frames` axes; no
/// metadata yet.
pub fn export_graph(model: &Ensemble, n_features: usize, n_frames: usize) -> Result<Vec<u8>> {
    let device = Device::flex();
    // Inference mode: BN uses running statistics, dropout is the identity.
    let model = model.valid().to_device(&device);
    // Two traces with different batch and frame counts let the exporter tell
    // symbolic axes from constants.
    let other_frames = n_frames / 2 + 3;
    let sample = Tensor::<3>::zeros([1, n_features, n_frames], &device);
    let validation = Tensor::<3>::zeros([3, n_features, other_frames], &device);
    let specs = [InputSpec::new([
        AxisSpec::dynamic("batch"),
        AxisSpec::Static,
        AxisSpec::dynamic("frames"),
    ])];
    // Members of one shape run as one network with grouped layers (the same
    // logits, fewer and wider operators); others member by member.
    let onnx = match model.fused() {
        Some(fused) => OnnxExporter::new().export_dynamic(
            &fused,
            sample,
            validation,
            &specs,
            EmotionCnn::forward,
        ),
        None => OnnxExporter::new().export_dynamic(
            &model,
            sample,
            validation,
            &specs,
            Ensemble::forward,
        ),
    }
    .map_err(|e| anyhow::anyhow!("burn-onnx export failed: {e:?}"))?;
    rename_io(onnx.as_bytes())
}

/// The exporter names graph inputs and outputs after tensor ids (`t12`); the
/// element looks them up by the contract's names, so rename them everywhere
/// they are referenced.
fn rename_io(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut proto = ModelProto::parse_from_bytes(bytes).context("re-reading exported ONNX")?;
    let graph = proto.graph.as_mut().context("exported ONNX has no graph")?;
    ensure!(
        graph.input.len() == 1 && graph.output.len() == 1,
        "expected one graph input and one output, got {} and {}",
        graph.input.len(),
        graph.output.len()
    );
    let old_in = std::mem::replace(&mut graph.input[0].name, INPUT_NAME.to_owned());
    let old_out = std::mem::replace(&mut graph.output[0].name, OUTPUT_NAME.to_owned());
    if old_in == old_out {
        bail!("graph output is its input: nothing was computed");
    }
    for node in &mut graph.node {
        for name in node.input.iter_mut().chain(node.output.iter_mut()) {
            if *name == old_in {
                *name = INPUT_NAME.to_owned();
            } else if *name == old_out {
                *name = OUTPUT_NAME.to_owned();
            }
        }
    }
    for info in &mut graph.value_info {
        if info.name == old_in {
            info.name = INPUT_NAME.to_owned();
        } else if info.name == old_out {
            info.name = OUTPUT_NAME.to_owned();
        }
    }
    proto.producer_name = "seremotion-trainer".to_owned();
    proto.producer_version = env!("CARGO_PKG_VERSION").to_owned();
    proto
        .write_to_bytes()
        .context("serializing renamed ONNX graph")
}
