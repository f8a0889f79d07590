//! `calls.csv`: one row per file and channel.

use std::io::Write;

use anyhow::Result;

use crate::record::FileResult;

/// Moments of strongest anger listed per row.
pub const ANGER_MOMENTS: usize = 3;

/// Labels of all results, in the first model's order, then any others.
pub fn labels(results: &[&FileResult]) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for label in results.iter().flat_map(|r| &r.labels) {
        if !labels.contains(label) {
            labels.push(label.clone());
        }
    }
    labels
}

/// Columns: `file, channel, duration, speech_share, share_<label>...,
/// negativity, dominant, anger_moments, error`. `channel` is -1 for the
/// downmix; shares are of speech windows; `negativity` is angry + sad;
/// `anger_moments` are start times in seconds, strongest first, separated by
/// `;`. A file that failed has one row with only `file` and `error`.
pub fn write_calls(out: impl Write, results: &[&FileResult]) -> Result<()> {
    let labels = labels(results);
    let mut csv = csv::Writer::from_writer(out);
    let mut header = vec!["file".to_string(), "channel".into(), "duration".into()];
    header.push("speech_share".into());
    header.extend(labels.iter().map(|l| format!("share_{l}")));
    header.extend(["negativity", "dominant", "anger_moments", "error"].map(String::from));
    csv.write_record(&header)?;
    for result in results {
        if let Some(error) = &result.error {
            let mut row = vec![String::new(); header.len()];
            row[0] = result.file.clone();
            row[header.len() - 1] = error.clone();
            csv.write_record(&row)?;
            continue;
        }
        for channel in &result.channels {
            let mut row = vec![
                result.file.clone(),
                channel.channel.to_string(),
                format!("{:.3}", result.duration),
                format!("{:.4}", channel.speech_share()),
            ];
            row.extend(labels.iter().map(|l| format!("{:.4}", channel.share(l))));
            let moments: Vec<String> = result
                .strongest_anger(channel.channel, ANGER_MOMENTS)
                .iter()
                .map(|t| format!("{t:.3}"))
                .collect();
            row.extend([
                format!("{:.4}", channel.negativity()),
                channel.dominant.clone(),
                moments.join(";"),
                String::new(),
            ]);
            csv.write_record(&row)?;
        }
    }
    csv.flush()?;
    Ok(())
}
