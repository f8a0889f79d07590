//! The output folder: one part file per analysed file, written atomically as
//! each file finishes, and the aggregate outputs built from the parts.
//!
//! ```text
//! DIR/parts/<name>-<hash>.json   one FileResult per input file
//! DIR/results.jsonl              every window of every file and channel
//! DIR/calls.csv                  one row per file and channel
//! DIR/report.html                calls ranked by customer negativity, with timelines
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::record::FileResult;
use crate::{report, table};

pub const PARTS: &str = "parts";
pub const RESULTS: &str = "results.jsonl";
pub const CALLS: &str = "calls.csv";
pub const REPORT: &str = "report.html";

pub struct ResultStore {
    dir: PathBuf,
}

impl ResultStore {
    /// Opens (and creates) the output folder `dir`.
    pub fn create(dir: &Path) -> Result<Self> {
        let parts = dir.join(PARTS);
        std::fs::create_dir_all(&parts)
            .with_context(|| format!("cannot create output folder {}", parts.display()))?;
        Ok(ResultStore {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the result of `file` is kept: readable name, unique by the path's hash.
    pub fn part_path(&self, file: &str) -> PathBuf {
        let hash = Sha256::digest(file.as_bytes());
        let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        let base: String = Path::new(file)
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        self.dir.join(PARTS).join(format!("{base}-{hex}.json"))
    }

    /// The stored result of `file`, if there is a readable one.
    pub fn load(&self, file: &str) -> Option<FileResult> {
        let text = std::fs::read(self.part_path(file)).ok()?;
        serde_json::from_slice::<FileResult>(&text)
            .ok()
            .filter(|r| r.file == file)
    }

    /// Stores `result`; readers never see a half-written part.
    pub fn save(&self, result: &FileResult) -> Result<()> {
        let path = self.part_path(&result.file);
        let json = serde_json::to_vec(result).context("cannot serialise a result")?;
        write_atomically(&path, |out| Ok(out.write_all(&json)?))
    }

    /// Every part in the folder, in file order.
    pub fn all(&self) -> Result<Vec<FileResult>> {
        let parts = self.dir.join(PARTS);
        let mut results = Vec::new();
        for entry in
            std::fs::read_dir(&parts).with_context(|| format!("cannot read {}", parts.display()))?
        {
            let path = entry
                .with_context(|| format!("cannot read {}", parts.display()))?
                .path();
            if path.extension().is_some_and(|e| e == "json") {
                results.push(read_part(&path)?);
            }
        }
        results.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(results)
    }

    /// Copies the parts of another output folder into this one (merging the
    /// outputs of runs that shared out a batch).
    pub fn import(&self, other: &Path) -> Result<usize> {
        let parts = other.join(PARTS);
        let entries = std::fs::read_dir(&parts).with_context(|| {
            format!(
                "{} is not an output folder of seremotion-analyze (cannot read {})",
                other.display(),
                parts.display()
            )
        })?;
        let mut n = 0;
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                self.save(&read_part(&path)?)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Writes `results.jsonl`, `calls.csv` and `report.html` for `results`
    /// (in file order), each atomically.
    pub fn write_outputs(&self, results: &[FileResult], customer_channel: i32) -> Result<()> {
        let mut sorted: Vec<&FileResult> = results.iter().collect();
        sorted.sort_by(|a, b| a.file.cmp(&b.file));
        write_atomically(&self.dir.join(RESULTS), |out| {
            for result in &sorted {
                for window in &result.windows {
                    serde_json::to_writer(&mut *out, window)?;
                    out.write_all(b"\n")?;
                }
            }
            Ok(())
        })?;
        write_atomically(&self.dir.join(CALLS), |out| {
            table::write_calls(out, &sorted)
        })?;
        let html = report::render(&sorted, customer_channel)?;
        write_atomically(&self.dir.join(REPORT), |out| {
            Ok(out.write_all(html.as_bytes())?)
        })
    }
}

fn read_part(path: &Path) -> Result<FileResult> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a result part of seremotion-analyze",
            path.display()
        )
    })
}

/// Writes `path` through a temporary file beside it and a rename.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<()>,
) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let outcome = (|| -> Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut out = std::io::BufWriter::new(file);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if outcome.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    outcome.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::AnalysisSettings;

    #[test]
    fn parts_round_trip_and_name_files_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultStore::create(dir.path()).unwrap();
        let settings = AnalysisSettings {
            per_channel: true,
            model: None,
        };
        let a = FileResult::failed("x/call 1.wav".into(), settings.clone(), "bad".into());
        let b = FileResult::failed("y/call 1.wav".into(), settings, "worse".into());
        assert_ne!(store.part_path(&a.file), store.part_path(&b.file));
        store.save(&b).unwrap();
        store.save(&a).unwrap();
        assert_eq!(store.load(&a.file), Some(a.clone()));
        assert_eq!(store.load("z.wav"), None);
        assert_eq!(store.all().unwrap(), vec![a, b]);
        // Nothing but the parts is left in the folder.
        assert_eq!(
            std::fs::read_dir(dir.path().join(PARTS)).unwrap().count(),
            2
        );
    }
}
