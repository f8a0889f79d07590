//! One file through `filesrc ! decodebin ! audioconvert ! seremotion ! fakesink`.

use std::path::Path;
use std::sync::OnceLock;

use gst::prelude::*;

use crate::record::{AnalysisSettings, ChannelSummary, FileResult, Window, round};

/// Initialises GStreamer and registers the element linked into this crate,
/// so that no installed plugin is needed. Safe to call more than once.
pub fn init() -> Result<(), String> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        gst::init().map_err(|e| format!("cannot initialise GStreamer: {e}"))?;
        gstseremotion::plugin_register_static()
            .map_err(|e| format!("cannot register the seremotion element: {e}"))
    })
    .clone()
}

/// Analyses `path` with its own pipeline; a failure is part of the result.
pub fn analyse_file(path: &Path, settings: &AnalysisSettings) -> FileResult {
    let file = path.to_string_lossy().into_owned();
    match run_pipeline(path, &file, settings) {
        Ok(result) => result,
        Err(error) => FileResult::failed(file, settings.clone(), error),
    }
}

fn run_pipeline(
    path: &Path,
    file: &str,
    settings: &AnalysisSettings,
) -> Result<FileResult, String> {
    // filesrc's own message for this is a bare "Resource not found."
    std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    init()?;
    let pipeline = build_pipeline(path, settings).map_err(|e| e.to_string())?;
    let bus = pipeline.bus().ok_or("pipeline without bus")?;
    let outcome = pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())
        .and_then(|_| collect_messages(&bus, file, settings));
    let _ = pipeline.set_state(gst::State::Null);
    outcome
}

fn build_pipeline(
    path: &Path,
    settings: &AnalysisSettings,
) -> Result<gst::Pipeline, gst::glib::BoolError> {
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path.to_string_lossy().as_ref())
        .build()?;
    let decode = gst::ElementFactory::make("decodebin").build()?;
    let convert = gst::ElementFactory::make("audioconvert").build()?;
    let mut analyser = gst::ElementFactory::make("seremotion").property_from_str(
        "channel-mode",
        if settings.per_channel {
            "per-channel"
        } else {
            "mix"
        },
    );
    if let Some(model) = &settings.model {
        analyser = analyser.property("model-path", model);
    }
    let analyser = analyser.build()?;
    // sync=false: as fast as the CPU allows, not in real time.
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()?;
    pipeline.add_many([&src, &decode, &convert, &analyser, &sink])?;
    src.link(&decode)?;
    gst::Element::link_many([&convert, &analyser, &sink])?;
    let convert = convert.downgrade();
    // The first audio stream is analysed; a file's other streams stay unlinked.
    decode.connect_pad_added(move |_, pad| {
        let Some(convert) = convert.upgrade() else {
            return;
        };
        let is_audio = pad
            .current_caps()
            .and_then(|caps| caps.structure(0).map(|s| s.name().starts_with("audio/")))
            .unwrap_or(false);
        if let Some(sink_pad) = convert.static_pad("sink")
            && is_audio
            && !sink_pad.is_linked()
        {
            let _ = pad.link(&sink_pad);
        }
    });
    Ok(pipeline)
}

fn collect_messages(
    bus: &gst::Bus,
    file: &str,
    settings: &AnalysisSettings,
) -> Result<FileResult, String> {
    let mut result = FileResult {
        file: file.to_string(),
        settings: settings.clone(),
        duration: 0.0,
        labels: Vec::new(),
        channels: Vec::new(),
        windows: Vec::new(),
        error: None,
    };
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Element(e) => match e.structure() {
                Some(s) if s.name() == "seremotion" => result.windows.push(window(s, file)?),
                Some(s) if s.name() == "seremotion-summary" => {
                    let (summary, labels, duration) = summary(s)?;
                    result.channels.push(summary);
                    result.labels = labels;
                    result.duration = result.duration.max(duration);
                }
                _ => (),
            },
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(err) => {
                let source = err
                    .src()
                    .map(|s| format!(" (in {})", s.name()))
                    .unwrap_or_default();
                return Err(format!("{}{source}", err.error()));
            }
            _ => (),
        }
    }
    if result.channels.is_empty() {
        return Err("no audio was decoded from this file".into());
    }
    result.channels.sort_by_key(|c| c.channel);
    result.windows.sort_by(|a, b| {
        (a.channel, a.start)
            .partial_cmp(&(b.channel, b.start))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    result.duration = round(result.duration, 3);
    Ok(result)
}

/// A field of an element message, or an error naming the message and field.
macro_rules! field {
    ($s:expr, $name:literal, $t:ty) => {
        $s.get::<$t>($name).map_err(|e| {
            format!(
                "unexpected {} message from the element ({}): {e}",
                $s.name(),
                $name
            )
        })
    };
}

fn seconds(t: gst::ClockTime) -> f64 {
    round(t.nseconds() as f64 / 1e9, 3)
}

fn window(s: &gst::StructureRef, file: &str) -> Result<Window, String> {
    // Stream time is the position in the file; the buffer timestamp stands in
    // when the segment gives none.
    let start = field!(s, "stream-time", Option<gst::ClockTime>)?
        .or(field!(s, "timestamp", Option<gst::ClockTime>)?)
        .ok_or_else(|| format!("a {} message without a timestamp", s.name()))?;
    let duration = field!(s, "duration", gst::ClockTime)?;
    let scores = field!(s, "scores", gst::Structure)?;
    Ok(Window {
        file: file.to_string(),
        channel: field!(s, "channel", i32)?,
        start: seconds(start),
        end: seconds(start + duration),
        emotion: field!(s, "emotion", String)?,
        confidence: round(field!(s, "confidence", f64)?, 4),
        scores: label_values(&scores)?.into_iter().collect(),
    })
}

/// The fields of a `label=(double)value` structure, in their order.
fn label_values(s: &gst::StructureRef) -> Result<Vec<(String, f64)>, String> {
    s.iter()
        .map(|(label, _)| {
            let value = s.get::<f64>(label).map_err(|e| e.to_string())?;
            Ok((label.to_string(), round(value, 4)))
        })
        .collect()
}

fn summary(s: &gst::StructureRef) -> Result<(ChannelSummary, Vec<String>, f64), String> {
    let shares = field!(s, "shares", gst::Structure)?;
    let shares = label_values(&shares)?;
    let labels = shares.iter().map(|(l, _)| l.clone()).collect();
    let summary = ChannelSummary {
        channel: field!(s, "channel", i32)?,
        windows: field!(s, "windows", u64)?,
        speech_windows: field!(s, "speech-windows", u64)?,
        dominant: field!(s, "dominant", String)?,
        shares: shares.into_iter().collect(),
    };
    let duration =
        field!(s, "duration", Option<gst::ClockTime>)?.map_or(0.0, |d| d.nseconds() as f64 / 1e9);
    Ok((summary, labels, duration))
}
