#!/usr/bin/env python3
"""The reference: speech-emotion analysis as the field commonly writes it in Python.

    python3 scripts/reference_pipeline.py MODEL.onnx RECORDING

What it does is what the widely copied Keras notebooks do, kept as they write
it, applied to every 2.5 s window of a recording in turn:

* `librosa.load(path)`: the whole file, decoded, downmixed and resampled to
  librosa's default 22050 Hz;
* per window (2.5 s, the last one zero-padded), frame-wise features with
  frame_length 2048 and hop 512 (centred, 108 frames): zero-crossing rate,
  RMS and 20 MFCC, flattened into one 2376-value vector;
* the Keras-style Conv1D network (scripts/make_bench_models.py, random
  weights) run by onnxruntime on one thread, one window at a time.

Prints one JSON line on stdout: audio seconds, windows, wall seconds of the
phases and the mean class probabilities (so the work cannot be optimised away).
CPU time and peak memory are measured from outside (scripts/bench_compare.sh).
"""
import json
import os
import sys
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

WINDOW_SECONDS = 2.5
FRAME_LENGTH = 2048
HOP_LENGTH = 512


def extract_features(data, sr):
    """ZCR, RMS and 20 MFCC per frame, flattened (the notebooks' `extract_features`)."""
    zcr = np.squeeze(librosa.feature.zero_crossing_rate(data, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH))
    rms = np.squeeze(librosa.feature.rms(y=data, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH))
    mfcc = np.ravel(librosa.feature.mfcc(y=data, sr=sr, n_mfcc=20).T)
    return np.hstack((zcr, rms, mfcc))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_path, recording = sys.argv[1], sys.argv[2]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    n_inputs = session.get_inputs()[0].shape[1]

    t0 = time.perf_counter()
    y, sr = librosa.load(recording)
    t1 = time.perf_counter()
    window = int(WINDOW_SECONDS * sr)
    windows, sums = 0, None
    feature_time = inference_time = 0.0
    for start in range(0, len(y), window):
        chunk = y[start:start + window]
        if len(chunk) < window:
            chunk = np.pad(chunk, (0, window - len(chunk)))
        a = time.perf_counter()
        features = extract_features(chunk, sr)
        x = features[:n_inputs].reshape(1, n_inputs, 1).astype(np.float32)
        b = time.perf_counter()
        probabilities = session.run(None, {input_name: x})[0][0]
        inference_time += time.perf_counter() - b
        feature_time += b - a
        sums = probabilities if sums is None else sums + probabilities
        windows += 1
    print(json.dumps({
        "audio_seconds": len(y) / sr,
        "windows": windows,
        "load_seconds": t1 - t0,
        "feature_seconds": feature_time,
        "inference_seconds": inference_time,
        "mean_probabilities": [float(v) for v in (sums / max(windows, 1))] if sums is not None else [],
    }))


if __name__ == "__main__":
    main()
