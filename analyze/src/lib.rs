//! Batch analysis of call recordings with the `seremotion` GStreamer element.
//!
//! Each file runs through its own `filesrc ! decodebin ! audioconvert !
//! seremotion ! fakesink` pipeline ([`pipeline`]); its windows and the
//! element's end-of-stream summaries become a [`record::FileResult`], stored
//! atomically as one part file ([`store`]) as soon as the file is done. The
//! aggregate outputs (`results.jsonl`, `calls.csv`, `report.html`) are built
//! from the parts alone, so a batch shared out over many machines and merged
//! gives the same bytes as one run.

pub mod batch;
pub mod inputs;
pub mod pipeline;
pub mod record;
pub mod report;
pub mod store;
pub mod table;
pub mod timeline;
