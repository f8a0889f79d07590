//! Turning the command line's inputs (files, folders, `@lists`) into files to analyse.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Extensions of the files a folder contributes. A file named on the command
/// line or in a list is analysed whatever its name: decodebin decides.
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "aac", "aif", "aiff", "amr", "au", "caf", "flac", "gsm", "m4a", "mka", "mp3", "mp4", "oga",
    "ogg", "opus", "spx", "wav", "webm", "wma",
];

fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Expands `inputs` into a sorted list of files without duplicates.
///
/// An input is a file, a folder (searched recursively for audio files) or
/// `@LIST`, a text file naming one input per line (blank lines and lines
/// starting with `#` are skipped; relative paths are relative to the current
/// directory). A path that does not exist is kept: analysing it fails and is
/// reported with the other failures, and the batch goes on.
pub fn collect_files(inputs: &[String]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if let Some(list) = input.strip_prefix('@') {
            let text = std::fs::read_to_string(list)
                .with_context(|| format!("cannot read the list of inputs {list}"))?;
            for line in text.lines().map(str::trim) {
                if !line.is_empty() && !line.starts_with('#') {
                    add_path(Path::new(line), &mut files)?;
                }
            }
        } else {
            add_path(Path::new(input), &mut files)?;
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn add_path(path: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    if !path.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    // follow_links finds recordings behind symlinked folders and reports loops.
    for entry in walkdir::WalkDir::new(path).follow_links(true) {
        let entry = entry.with_context(|| format!("cannot search folder {}", path.display()))?;
        if entry.file_type().is_file() && is_audio(entry.path()) {
            files.push(entry.into_path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_lists_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("calls/2026")).unwrap();
        for name in [
            "calls/a.wav",
            "calls/2026/b.FLAC",
            "calls/notes.txt",
            "c.raw",
        ] {
            std::fs::write(root.join(name), b"x").unwrap();
        }
        let list = root.join("list.txt");
        std::fs::write(
            &list,
            format!(
                "# calls of today\n\n{}\n{}\n",
                root.join("c.raw").display(),
                root.join("calls/a.wav").display()
            ),
        )
        .unwrap();
        let inputs = vec![
            root.join("calls").display().to_string(),
            format!("@{}", list.display()),
            root.join("missing.wav").display().to_string(),
        ];
        let files = collect_files(&inputs).unwrap();
        let expected: Vec<PathBuf> = ["c.raw", "calls/2026/b.FLAC", "calls/a.wav", "missing.wav"]
            .iter()
            .map(|n| root.join(n))
            .collect();
        assert_eq!(files, expected);
        let err = collect_files(&[format!("@{}", root.join("nope.txt").display())]).unwrap_err();
        assert!(err.to_string().contains("nope.txt"), "{err}");
    }
}
