//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, no
//! network) ranking calls by how negative the customer sounds.

use std::fmt::Write;

use anyhow::Result;

use crate::record::{ANGRY, ChannelSummary, FileResult, SAD};
use crate::table::ANGER_MOMENTS;
use crate::timeline::{channel_name, emotion_color, timeline_svg};

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:1040px}\
table{border-collapse:collapse;margin:1em 0}th,td{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.legend span{display:inline-block;margin-right:1.2em}\
.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}\
section{margin:2em 0}.error{color:#a00}svg{display:block}";

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn percent(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}

fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

fn hex(emotion: &str) -> String {
    let c = emotion_color(emotion);
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// Calls that were analysed, most negative customer first (calls without a
/// customer stream last), ties in file order.
fn ranked<'a>(
    results: &[&'a FileResult],
    customer_channel: i32,
) -> Vec<(&'a FileResult, Option<&'a ChannelSummary>)> {
    let mut calls: Vec<_> = results
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| (*r, r.customer(customer_channel)))
        .collect();
    let key = |c: &Option<&ChannelSummary>| c.map_or(-1.0, |c| c.negativity());
    calls.sort_by(|a, b| {
        key(&b.1)
            .total_cmp(&key(&a.1))
            .then(a.0.file.cmp(&b.0.file))
    });
    calls
}

pub fn render(results: &[&FileResult], customer_channel: i32) -> Result<String> {
    let calls = ranked(results, customer_channel);
    let failed: Vec<&&FileResult> = results.iter().filter(|r| r.error.is_some()).collect();
    let labels = crate::table::labels(results);
    let hours: f64 = calls.iter().map(|(r, _)| r.duration).sum::<f64>() / 3600.0;

    let mut html = String::new();
    let h = &mut html;
    write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>seremotion call report</title><style>{STYLE}</style></head><body>\n\
         <h1>Call report</h1>\n<p>Calls analysed: {} ({hours:.2} h of audio); could not be analysed: {}. \
         Calls are ranked by <b>customer negativity</b>: the share of the customer's speech \
         (channel {customer_channel}, or the call's only stream) that sounds angry or sad.</p>\n",
        calls.len(),
        failed.len()
    )?;
    h.push_str("<p class=\"legend\">");
    for label in labels
        .iter()
        .map(String::as_str)
        .chain(["uncertain", "silence"])
    {
        write!(
            h,
            "<span><i style=\"background:{}\"></i>{}</span>",
            hex(label),
            escape(label)
        )?;
    }
    h.push_str("</p>\n");

    h.push_str(
        "<h2>Calls ranked by customer negativity</h2>\n<table><tr><th>#</th><th>call</th>\
         <th>duration</th><th>customer</th><th>negativity</th><th>angry</th><th>sad</th>\
         <th>dominant</th><th>strongest anger</th></tr>\n",
    );
    for (i, (call, customer)) in calls.iter().enumerate() {
        write!(
            h,
            "<tr><td class=\"n\">{}</td><td><a href=\"#call-{}\">{}</a></td><td class=\"n\">{}</td>",
            i + 1,
            i + 1,
            escape(&call.file),
            clock(call.duration)
        )?;
        match customer {
            Some(c) => {
                let moments: Vec<String> = call
                    .strongest_anger(c.channel, ANGER_MOMENTS)
                    .into_iter()
                    .map(clock)
                    .collect();
                writeln!(
                    h,
                    "<td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                     <td>{}</td><td>{}</td></tr>",
                    channel_name(c.channel, customer_channel),
                    percent(c.negativity()),
                    percent(c.share(ANGRY)),
                    percent(c.share(SAD)),
                    escape(&c.dominant),
                    moments.join(", ")
                )?;
            }
            None => h.push_str("<td colspan=\"6\">no customer channel in this file</td></tr>\n"),
        }
    }
    h.push_str("</table>\n");

    if !failed.is_empty() {
        h.push_str(
            "<h2 class=\"error\">Files that could not be analysed</h2>\n<table><tr><th>file</th><th>problem</th></tr>\n",
        );
        for result in &failed {
            writeln!(
                h,
                "<tr><td>{}</td><td class=\"error\">{}</td></tr>",
                escape(&result.file),
                escape(result.error.as_deref().unwrap_or_default())
            )?;
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>Timelines</h2>\n");
    for (i, (call, _)) in calls.iter().enumerate() {
        write!(
            h,
            "<section id=\"call-{}\"><h3>{}. {}</h3>\n<p>",
            i + 1,
            i + 1,
            escape(&call.file)
        )?;
        for c in &call.channels {
            let shares: Vec<String> = labels
                .iter()
                .map(|l| format!("{} {}", escape(l), percent(c.share(l))))
                .collect();
            write!(
                h,
                "<b>{}</b>: speech {}, {}; dominant {}.<br>",
                channel_name(c.channel, customer_channel),
                percent(c.speech_share()),
                shares.join(", "),
                escape(&c.dominant)
            )?;
        }
        h.push_str("</p>\n");
        h.push_str(&timeline_svg(call, customer_channel)?);
        h.push_str("\n</section>\n");
    }
    h.push_str("</body></html>\n");
    Ok(html)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::record::AnalysisSettings;

    fn call(file: &str, channels: &[(i32, f64, f64)]) -> FileResult {
        let mut result = FileResult::failed(
            file.into(),
            AnalysisSettings {
                per_channel: true,
                model: None,
            },
            String::new(),
        );
        result.error = None;
        result.duration = 60.0;
        result.labels = ["neutral", "happy", "sad", "angry"]
            .map(String::from)
            .to_vec();
        result.channels = channels
            .iter()
            .map(|&(channel, angry, sad)| ChannelSummary {
                channel,
                windows: 60,
                speech_windows: 30,
                dominant: "neutral".into(),
                shares: BTreeMap::from([
                    (ANGRY.to_string(), angry),
                    (SAD.to_string(), sad),
                    ("neutral".to_string(), 1.0 - angry - sad),
                ]),
            })
            .collect();
        result
    }

    #[test]
    fn calls_rank_by_the_customer_channel() {
        let calm = call("calm.wav", &[(0, 0.9, 0.0), (1, 0.1, 0.1)]);
        let upset = call("upset.wav", &[(0, 0.0, 0.0), (1, 0.5, 0.3)]);
        let mono = call("mono.wav", &[(0, 0.4, 0.0)]);
        let no_customer = call("three.wav", &[(0, 0.9, 0.0), (2, 0.9, 0.0)]);
        let failed = FileResult::failed(
            "bad.wav".into(),
            calm.settings.clone(),
            "cannot <decode>".into(),
        );
        let results = [&calm, &failed, &no_customer, &mono, &upset];
        let order: Vec<&str> = ranked(&results, 1)
            .iter()
            .map(|(r, _)| r.file.as_str())
            .collect();
        // The agent's anger on calm.wav does not count; mono.wav has one stream.
        assert_eq!(order, ["upset.wav", "mono.wav", "calm.wav", "three.wav"]);
        // Channel 0 as the customer turns it round.
        let order: Vec<&str> = ranked(&results, 0)
            .iter()
            .map(|(r, _)| r.file.as_str())
            .collect();
        assert_eq!(order, ["calm.wav", "three.wav", "mono.wav", "upset.wav"]);

        let html = render(&results, 1).unwrap();
        assert!(html.contains("cannot &lt;decode&gt;"));
        assert_eq!(html.matches("<svg").count(), 4);
        let first = html.find("<a href=\"#call-1\">upset.wav</a>").unwrap();
        assert!(first < html.find("<a href=\"#call-2\">mono.wav</a>").unwrap());
    }
}
