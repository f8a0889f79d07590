//! Many files, one pipeline per job.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::pipeline::analyse_file;
use crate::record::{AnalysisSettings, FileResult};
use crate::store::ResultStore;

/// What happened to one file of the batch.
pub enum Outcome {
    /// Analysed (or failed: see the result's `error`) and stored.
    Done { result: FileResult, wall: Duration },
    /// `--resume`: already stored from an earlier run with the same settings.
    Skipped { result: FileResult },
}

impl Outcome {
    pub fn result(&self) -> &FileResult {
        match self {
            Outcome::Done { result, .. } | Outcome::Skipped { result } => result,
        }
    }
}

/// Analyses `files` with `jobs` pipelines at once, storing each result as
/// soon as it is known and handing every outcome to `report` (on the calling
/// thread, in completion order). Returns the results in `files` order.
pub fn run_batch(
    files: &[PathBuf],
    settings: &AnalysisSettings,
    jobs: usize,
    store: &ResultStore,
    resume: bool,
    mut report: impl FnMut(&Outcome),
) -> anyhow::Result<Vec<FileResult>> {
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<FileResult>> = vec![None; files.len()];
    let (sender, receiver) = mpsc::channel::<(usize, anyhow::Result<Outcome>)>();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, files.len().max(1)) {
            let sender = sender.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = files.get(i) else { break };
                    let outcome = analyse_one(path, settings, store, resume);
                    if sender.send((i, outcome)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        for (i, outcome) in receiver {
            let outcome = outcome?;
            report(&outcome);
            results[i] = Some(match outcome {
                Outcome::Done { result, .. } | Outcome::Skipped { result } => result,
            });
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(results.into_iter().flatten().collect())
}

fn analyse_one(
    path: &std::path::Path,
    settings: &AnalysisSettings,
    store: &ResultStore,
    resume: bool,
) -> anyhow::Result<Outcome> {
    let file = path.to_string_lossy();
    if resume
        && let Some(result) = store.load(&file)
        // A failed file is tried again; so is one analysed another way.
        && result.error.is_none()
        && result.settings == *settings
    {
        return Ok(Outcome::Skipped { result });
    }
    let started = Instant::now();
    let result = analyse_file(path, settings);
    store.save(&result)?;
    Ok(Outcome::Done {
        result,
        wall: started.elapsed(),
    })
}
