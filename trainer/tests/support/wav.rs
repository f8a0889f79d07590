//! Scratch folders and WAV files for trainer tests (included with `#[path]`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// An empty folder under the system temp dir, unique to this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("seremotion-trainer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Mono 16-bit PCM WAV at 16 kHz.
pub fn write_wav(path: &Path, samples: &[i16]) {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    for v in [16u32, 1 | (1 << 16), 16000, 32000, 2 | (16 << 16)] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    samples
        .iter()
        .for_each(|s| b.extend_from_slice(&s.to_le_bytes()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, b).unwrap();
}

/// RAVDESS emotion codes in label order (neutral, happy, sad, angry).
pub const RAVDESS_CODES: [&str; 4] = ["01", "03", "04", "05"];

/// A RAVDESS-named folder `data` of actors `1..=actors`, one clip per label
/// each, `signal(label, actor)` its samples in [-1, 1].
pub fn write_ravdess_actors(data: &Path, actors: usize, signal: impl Fn(usize, usize) -> Vec<f32>) {
    for actor in 1..=actors {
        for (label, code) in RAVDESS_CODES.iter().enumerate() {
            let pcm: Vec<i16> = signal(label, actor)
                .iter()
                .map(|&x| (x * 32767.0) as i16)
                .collect();
            let name = format!("Actor_{actor:02}/03-01-{code}-01-01-01-{actor:02}.wav");
            write_wav(&data.join(name), &pcm);
        }
    }
}
