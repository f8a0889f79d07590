//! A call's timeline of emotion per channel, drawn as SVG with plotters.

use anyhow::{Result, anyhow};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::record::{FileResult, MIX_CHANNEL, Window};

const WIDTH: u32 = 960;
const ROW_HEIGHT: u32 = 34;
const AXES_HEIGHT: u32 = 34;

/// The colour of each emotion, in the plots and their legend.
pub fn emotion_color(emotion: &str) -> RGBColor {
    match emotion {
        "neutral" => RGBColor(0x8c, 0x9f, 0xb5),
        "happy" => RGBColor(0xf2, 0xb1, 0x34),
        "sad" => RGBColor(0x3a, 0x6f, 0xc4),
        "angry" => RGBColor(0xd7, 0x26, 0x3d),
        "uncertain" => RGBColor(0xb5, 0x9a, 0xd6),
        "silence" => RGBColor(0xec, 0xec, 0xec),
        _ => RGBColor(0x6b, 0x6b, 0x6b),
    }
}

/// What a channel is called on the plot.
pub fn channel_name(channel: i32, customer_channel: i32) -> String {
    if channel == MIX_CHANNEL {
        "mix".into()
    } else if channel == customer_channel {
        format!("ch {channel} (customer)")
    } else {
        format!("ch {channel}")
    }
}

/// Runs of one emotion on one channel: each window stands for the time until
/// the next window starts (windows overlap), the last one until its end.
fn segments<'a>(windows: impl Iterator<Item = &'a Window>) -> Vec<(f64, f64, &'a str)> {
    let windows: Vec<&Window> = windows.collect();
    let mut runs: Vec<(f64, f64, &str)> = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let end = windows
            .get(i + 1)
            .map_or(w.end, |next| next.start.min(w.end));
        match runs.last_mut() {
            Some(last) if last.2 == w.emotion && last.1 >= w.start => last.1 = end,
            _ => runs.push((w.start, end, &w.emotion)),
        }
    }
    runs
}

fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// The SVG of `result`'s timeline: one row per channel, top to bottom in channel order.
pub fn timeline_svg(result: &FileResult, customer_channel: i32) -> Result<String> {
    seremotion_core::plot::register_font()?;
    let channels: Vec<i32> = result.channels.iter().map(|c| c.channel).collect();
    let rows = channels.len().max(1) as i32;
    let end = result
        .windows
        .iter()
        .map(|w| w.end)
        .fold(result.duration, f64::max)
        .max(1.0);
    let mut svg = String::new();
    {
        let height = AXES_HEIGHT + ROW_HEIGHT * rows as u32;
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin_right(12)
            .margin_top(4)
            .x_label_area_size(26)
            .y_label_area_size(110)
            // A segmented range a..b has b - a + 1 segments, one per channel.
            .build_cartesian_2d(0f64..end, (0..rows - 1).into_segmented())
            .map_err(plot_error)?;
        let row_of = |i: usize| rows - 1 - i as i32;
        let names: Vec<String> = channels
            .iter()
            .map(|&c| channel_name(c, customer_channel))
            .collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(10)
            .x_label_formatter(&|s| clock(*s))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(row) => (0..names.len())
                    .find(|&i| row_of(i) == *row)
                    .map(|i| names[i].clone())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .label_style(("sans-serif", 13))
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_error)?;
        for (i, &channel) in channels.iter().enumerate() {
            let row = row_of(i);
            let bars = segments(result.windows_of(channel))
                .into_iter()
                .map(|(a, b, e)| {
                    let mut bar = Rectangle::new(
                        [
                            (a, SegmentValue::Exact(row)),
                            (b, SegmentValue::Exact(row + 1)),
                        ],
                        emotion_color(e).filled(),
                    );
                    bar.set_margin(3, 3, 0, 0);
                    bar
                });
            chart.draw_series(bars).map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("cannot draw a timeline: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn window(start: f64, emotion: &str) -> Window {
        Window {
            file: "a.wav".into(),
            channel: 0,
            start,
            end: start + 2.0,
            emotion: emotion.into(),
            confidence: 1.0,
            scores: BTreeMap::new(),
        }
    }

    #[test]
    fn runs_of_one_emotion_merge() {
        let windows = [
            window(0.0, "angry"),
            window(1.0, "angry"),
            window(2.0, "sad"),
            window(3.0, "angry"),
        ];
        assert_eq!(
            segments(windows.iter()),
            vec![(0.0, 2.0, "angry"), (2.0, 3.0, "sad"), (3.0, 5.0, "angry")]
        );
    }
}
