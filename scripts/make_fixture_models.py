#!/usr/bin/env python3
"""Builds the tiny ONNX fixture models the tests use (and the stand-in default
model until a trained one is committed).

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install onnx numpy
    /tmp/venv/bin/python scripts/make_fixture_models.py

The "tone bands" model has a known answer: logit j is the mean over time of
log-mel band BANDS[j], so a pure tone that falls in band BANDS[j] is classified
as label j. Feeding it real audio through the element proves that features
reach the model channels-first ([batch, n_features, n_frames]) and that the
element reads the labels the model declares.
"""
import json
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parent.parent
LABELS = ["neutral", "happy", "sad", "angry"]
BANDS = [8, 20, 32, 44]
N_MELS = 64

FEATURES = {
    "kind": "log_mel",
    "sample_rate": 16000,
    "n_fft": 512,
    "win_length": 400,
    "hop_length": 160,
    "n_mels": N_MELS,
    "fmin": 20.0,
    "fmax": 8000.0,
    "n_mfcc": 0,
    "append_rms": False,
    "append_zcr": False,
    "normalization": "none",
    "mean": [],
    "std": [],
}


def tone_bands_graph(n_frames):
    """features [N, 64, T] -> 1x1 Conv selecting BANDS -> mean over T -> logits [N, 4]."""
    weight = np.zeros((len(BANDS), N_MELS, 1), dtype=np.float32)
    for j, band in enumerate(BANDS):
        weight[j, band, 0] = 1.0
    # Scale the logits down so that softmax scores stay informative (not 0/1).
    scale = np.array([0.1], dtype=np.float32)
    nodes = [
        helper.make_node("Conv", ["features", "w"], ["selected"], kernel_shape=[1]),
        helper.make_node("ReduceMean", ["selected", "axes"], ["pooled"], keepdims=0),
        helper.make_node("Mul", ["pooled", "scale"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tone_bands",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", N_MELS, n_frames])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(BANDS)])],
        initializer=[
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "axes"),
            numpy_helper.from_array(scale, "scale"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="seremotion-fixtures")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def with_metadata(model, window, training):
    props = {
        "seremotion.format": "1",
        "seremotion.labels": json.dumps(LABELS),
        "seremotion.sample_rate": "16000",
        "seremotion.window": str(window),
        "seremotion.features": json.dumps(FEATURES),
        "seremotion.training": json.dumps(training),
    }
    helper.set_model_props(model, props)
    return model


def main():
    fixtures = ROOT / "tests" / "fixtures"
    fixtures.mkdir(parents=True, exist_ok=True)
    # Bare graph: the Rust tests attach (good and broken) metadata themselves.
    onnx.save(tone_bands_graph("frames"), fixtures / "tone_bands_bare.onnx")
    training = {"fixture": "tone_bands", "note": "not trained; logit j = mean log-mel band %s" % BANDS}
    onnx.save(with_metadata(tone_bands_graph("frames"), 1.0, training), fixtures / "tone_bands.onnx")
    # Fixed frame count (1 s window = 97 frames) to exercise padding of short windows.
    onnx.save(with_metadata(tone_bands_graph(97), 1.0, training), fixtures / "tone_bands_fixed.onnx")


if __name__ == "__main__":
    main()
