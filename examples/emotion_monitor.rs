//! The smallest useful application: play a file through `seremotion` and print
//! one line per result read from the bus.
//!
//! ```sh
//! cargo run --release --example emotion_monitor -- call.wav [per-channel]
//! ```

use gst::prelude::*;

fn main() {
    if let Err(err) = run() {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: emotion_monitor FILE [mix|per-channel]")?;
    let mode = args.next().unwrap_or_else(|| "mix".into());

    gst::init()?;
    // Register the plugin from this crate, so the example runs without installing it.
    gstseremotion::plugin_register_static()?;

    let pipeline = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! decodebin ! audioconvert ! seremotion channel-mode={mode} ! fakesink",
        path.replace('"', "\\\"")
    ))?;
    let bus = pipeline.bus().ok_or("pipeline without bus")?;
    pipeline.set_state(gst::State::Playing)?;

    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Element(e) => match e.structure() {
                Some(s) if s.name() == "seremotion" => println!("{}", describe_window(s)),
                Some(s) if s.name() == "seremotion-summary" => println!("{}", describe_summary(s)),
                _ => (),
            },
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(err) => {
                pipeline.set_state(gst::State::Null)?;
                return Err(format!(
                    "{} ({})",
                    err.error(),
                    err.debug().map(|d| d.to_string()).unwrap_or_default()
                )
                .into());
            }
            _ => (),
        }
    }
    pipeline.set_state(gst::State::Null)?;
    Ok(())
}

fn describe_window(s: &gst::StructureRef) -> String {
    let ts = s.get::<gst::ClockTime>("timestamp").unwrap_or_default();
    let duration = s.get::<gst::ClockTime>("duration").unwrap_or_default();
    let channel = s.get::<i32>("channel").unwrap_or(-1);
    let emotion = s.get::<&str>("emotion").unwrap_or("?");
    let confidence = s.get::<f64>("confidence").unwrap_or(0.0);
    let scores = per_label(s, "scores", |v| format!("{v:.2}"));
    let channel = channel_name(channel);
    format!(
        "{} +{:.2}s  {channel:<4} {emotion:<9} {confidence:>5.2}   [{scores}]",
        ts.display(),
        duration.seconds_f64()
    )
}

fn describe_summary(s: &gst::StructureRef) -> String {
    let channel = s.get::<i32>("channel").unwrap_or(-1);
    let dominant = s.get::<&str>("dominant").unwrap_or("?");
    let speech = s.get::<u64>("speech-windows").unwrap_or(0);
    let windows = s.get::<u64>("windows").unwrap_or(0);
    let shares = per_label(s, "shares", |v| format!("{:.0}%", 100.0 * v));
    let channel = channel_name(channel);
    format!(
        "summary {channel}: dominant {dominant} ({speech}/{windows} windows with speech; {shares})"
    )
}

/// "mix" for the downmix (-1), else "chN".
fn channel_name(channel: i32) -> String {
    if channel < 0 {
        "mix".to_string()
    } else {
        format!("ch{channel}")
    }
}

/// "label value  label value ..." from a nested per-label structure field.
fn per_label(s: &gst::StructureRef, field: &str, value: impl Fn(f64) -> String) -> String {
    s.get::<gst::Structure>(field)
        .map(|inner| {
            inner
                .iter()
                .map(|(label, v)| format!("{label} {}", value(v.get::<f64>().unwrap_or(0.0))))
                .collect::<Vec<_>>()
                .join("  ")
        })
        .unwrap_or_default()
}
