#!/usr/bin/env python3
"""Golden reference values for src/features.rs, computed with librosa.

The Rust unit tests in src/features.rs regenerate the same four signals from
the formulas below and compare their features with the values this script
writes to core/tests/fixtures/features_golden.json.

Requirements:   pip install librosa numpy
Usage:          python3 scripts/golden_features.py > core/tests/fixtures/features_golden.json

Everything is computed in float64 from float32 samples (the samples the Rust
side sees), so the reference is limited by librosa's definitions only, not by
single-precision rounding. Signals (sr = 16000, N = 4800 samples = 0.3 s, n =
0..N-1, t = n / sr; each value is computed in float64, then rounded to float32):

  sine     0.5 * sin(2*pi*1000*t)
  chirp    0.5 * sin(2*pi*(f0*t + (f1 - f0) / (2*T) * t^2)),  f0 = 100, f1 = 7000, T = N / sr
  noise    0.1 * (2*u - 1), u = (splitmix64(seed = 42 + n) >> 11) / 2^53 (uniform in [0, 1))
  silence  0.0

splitmix64(x): z = x + 0x9E3779B97F4A7C15; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)   (all mod 2^64)
"""

import json
import sys

import librosa
import numpy as np

SR = 16000
N = 4800
N_FFT = 512
WIN = 400
HOP = 160
N_MELS = 64
FMIN = 20.0
FMAX = 8000.0
N_MFCC = 20
# Frames stored per signal (center = False framing: frame t covers [t*HOP, t*HOP + N_FFT)).
FRAMES = [0, 7, 13, 26]

M64 = (1 << 64) - 1


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def signals():
    n = np.arange(N, dtype=np.float64)
    t = n / SR
    f0, f1, dur = 100.0, 7000.0, N / SR
    noise = np.array(
        [0.1 * (2.0 * ((splitmix64(42 + i) >> 11) / float(1 << 53)) - 1.0) for i in range(N)]
    )
    return {
        "sine": 0.5 * np.sin(2 * np.pi * 1000.0 * t),
        "chirp": 0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) / (2 * dur) * t * t)),
        "noise": noise,
        "silence": np.zeros(N),
    }


def features(y32):
    y = y32.astype(np.float64)
    mel = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, win_length=WIN, window="hann",
        center=False, power=2.0, n_mels=N_MELS, fmin=FMIN, fmax=FMAX, htk=False, norm="slaney",
    )
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=N_MFCC, dct_type=2, norm="ortho")
    # RMS over the win_length region that the Hann window covers inside each n_fft frame.
    lpad = (N_FFT - WIN) // 2
    rms = librosa.feature.rms(y=y[lpad:], frame_length=WIN, hop_length=HOP, center=False)[0]
    rms_db = 20.0 * np.log10(np.maximum(rms, 1e-5))
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP, center=False)[0]
    return log_mel, mfcc, rms_db, zcr


def main():
    out = {
        "librosa_version": librosa.__version__,
        "numpy_version": np.__version__,
        "config": {
            "kind": "log_mel", "sample_rate": SR, "n_fft": N_FFT, "win_length": WIN,
            "hop_length": HOP, "n_mels": N_MELS, "fmin": FMIN, "fmax": FMAX,
        },
        "n_mfcc": N_MFCC,
        "n_samples": N,
        "frames": FRAMES,
        "signals": {},
    }
    for name, y in signals().items():
        y32 = y.astype(np.float32)
        log_mel, mfcc, rms_db, zcr = features(y32)
        n_frames = log_mel.shape[1]
        assert n_frames == (N - N_FFT) // HOP + 1, n_frames
        assert len(rms_db) >= n_frames and len(zcr) == n_frames
        out["signals"][name] = {
            "n_frames": n_frames,
            "first_samples": [float(v) for v in y32[:4]],
            "log_mel": [[float(v) for v in log_mel[:, t]] for t in FRAMES],
            "mfcc": [[float(v) for v in mfcc[:, t]] for t in FRAMES],
            "rms_db": [float(rms_db[t]) for t in FRAMES],
            "zcr": [float(zcr[t]) for t in FRAMES],
        }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
