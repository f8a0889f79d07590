#!/usr/bin/env python3
"""Builds the two ONNX models the speed comparison needs, with random weights.

    python3 scripts/make_bench_models.py OUT_DIR

Writes (only what is missing, so repeated runs are free):

OUT_DIR/reference_keras_conv1d.onnx
    The network of the widely copied Keras speech-emotion notebooks, as
    tf2onnx would export it: input `input` [1, 2376, 1] (channels-last: ZCR,
    RMS and 20 MFCC over 108 frames of a 2.5 s window at 22050 Hz, flattened),
    five blocks Conv1D(k, same, relu) + BatchNormalization + MaxPool1D(stride 2,
    same) with 512/512/256/256/128 filters (kernels 5,5,5,3,3; pools 5,5,5,5,3),
    Flatten, Dense(512, relu), BatchNormalization, Dense(7), softmax. About
    2 G multiply-adds per window. Used by scripts/reference_pipeline.py.

OUT_DIR/proxy_seremotion_cnn.onnx
    A seremotion-contract model (64 log-mel, 2 s windows, 4 labels, valid
    metadata) whose size matches the budget of the trained default model:
    three Conv1d+ReLU+MaxPool blocks (64->32->32->64 channels), global mean,
    linear 64->4; about 1.8 M multiply-adds per 2 s window. It lets the
    benchmarks show the cost of a model of the trained model's size while
    models/default.onnx is still a stand-in (SEREMOTION_BENCH_MODEL=... in
    `cargo bench`, MODEL=... in scripts/bench_compare.sh).

Weights are random (seeded): both models are for timing only.
"""
import json
import pathlib
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def keras_reference(rng):
    """The Keras notebook network, NCL inside (tf2onnx inserts the transposes)."""
    length = 2376
    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    nodes.append(helper.make_node("Transpose", ["input"], ["x0"], perm=[0, 2, 1]))
    x, channels = "x0", 1
    blocks = [(512, 5, 5), (512, 5, 5), (256, 5, 5), (256, 3, 5), (128, 3, 3)]
    for i, (filters, kernel, pool) in enumerate(blocks):
        w = const(f"w{i}", rng.normal(0, (2.0 / (channels * kernel)) ** 0.5, (filters, channels, kernel)))
        b = const(f"b{i}", np.zeros(filters))
        pad = kernel - 1
        nodes.append(
            helper.make_node(
                "Conv", [x, w, b], [f"c{i}"], kernel_shape=[kernel], pads=[pad // 2, pad - pad // 2]
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        bn = [const(f"bn{i}_{k}", v) for k, v in
              (("s", np.ones(filters)), ("b", np.zeros(filters)), ("m", np.zeros(filters)), ("v", np.ones(filters)))]
        nodes.append(helper.make_node("BatchNormalization", [f"r{i}"] + bn, [f"n{i}"], epsilon=1e-3))
        # Keras MaxPool1D(padding="same", strides=2): output ceil(L / 2).
        out_len = -(-length // 2)
        total = max((out_len - 1) * 2 + pool - length, 0)
        nodes.append(
            helper.make_node(
                "MaxPool", [f"n{i}"], [f"p{i}"], kernel_shape=[pool], strides=[2],
                pads=[total // 2, total - total // 2],
            )
        )
        x, channels, length = f"p{i}", filters, out_len
    # Keras flattens channels-last.
    nodes.append(helper.make_node("Transpose", [x], ["t_last"], perm=[0, 2, 1]))
    nodes.append(helper.make_node("Flatten", ["t_last"], ["flat"], axis=1))
    flat = channels * length
    w = const("dense1_w", rng.normal(0, (2.0 / flat) ** 0.5, (flat, 512)))
    nodes.append(helper.make_node("Gemm", ["flat", w, const("dense1_b", np.zeros(512))], ["d1"]))
    nodes.append(helper.make_node("Relu", ["d1"], ["d1r"]))
    bn = [const(f"bnd_{k}", v) for k, v in
          (("s", np.ones(512)), ("b", np.zeros(512)), ("m", np.zeros(512)), ("v", np.ones(512)))]
    nodes.append(helper.make_node("BatchNormalization", ["d1r"] + bn, ["d1n"], epsilon=1e-3))
    w = const("dense2_w", rng.normal(0, (1.0 / 512) ** 0.5, (512, 7)))
    nodes.append(helper.make_node("Gemm", ["d1n", w, const("dense2_b", np.zeros(7))], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "keras_conv1d_ser",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2376, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 7])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


FEATURES = {
    "kind": "log_mel", "sample_rate": 16000, "n_fft": 512, "win_length": 400,
    "hop_length": 160, "n_mels": 64, "fmin": 20.0, "fmax": 8000.0, "n_mfcc": 0,
    "append_rms": False, "append_zcr": False, "normalization": "none", "mean": [], "std": [],
}


def proxy_cnn(rng):
    """~1.8 M MACs per 2 s window (198 frames), seremotion contract."""
    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    x, channels = "features", 64
    for i, filters in enumerate([32, 32, 64]):
        w = const(f"w{i}", rng.normal(0, (2.0 / (channels * 3)) ** 0.5, (filters, channels, 3)))
        nodes.append(helper.make_node("Conv", [x, w, const(f"b{i}", np.zeros(filters))], [f"c{i}"],
                                      kernel_shape=[3], pads=[1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        nodes.append(helper.make_node("MaxPool", [f"r{i}"], [f"p{i}"], kernel_shape=[2], strides=[2]))
        x, channels = f"p{i}", filters
    nodes.append(helper.make_node("ReduceMean", [x], ["pooled"], axes=[2], keepdims=0))
    w = const("fc_w", rng.normal(0, 0.1, (channels, 4)))
    nodes.append(helper.make_node("Gemm", ["pooled", w, const("fc_b", np.zeros(4))], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "proxy_seremotion_cnn",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 64, "frames"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    props = {
        "seremotion.format": "1",
        "seremotion.labels": json.dumps(["neutral", "happy", "sad", "angry"]),
        "seremotion.sample_rate": "16000",
        "seremotion.window": "2.0",
        "seremotion.features": json.dumps(FEATURES),
        "seremotion.training": json.dumps({"note": "random weights, for benchmarks only"}),
    }
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, build in (("reference_keras_conv1d.onnx", keras_reference),
                        ("proxy_seremotion_cnn.onnx", proxy_cnn)):
        path = out / name
        if path.exists():
            continue
        model = build(np.random.default_rng(0))
        onnx.checker.check_model(model)
        tmp = path.with_suffix(".tmp")
        onnx.save(model, tmp)
        tmp.rename(path)
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
