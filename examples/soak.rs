//! Memory under load: many `seremotion` pipelines in one process, or hours of
//! audio through one, with the process's resident memory printed as it goes.
//!
//! ```sh
//! espeak-ng -w speech.wav "Some sentences to loop over, the longer the better."
//! cargo run --release --example soak -- pipelines 200 60 speech.wav   # 200 pipelines, 60 s of audio each
//! cargo run --release --example soak -- hours 10 speech.wav           # 10 h through one pipeline
//! ```
//!
//! The speech is decoded once, resampled to 16 kHz mono, and pushed through
//! `appsrc ! seremotion ! fakesink` as fast as the pipelines take it, with
//! continuous timestamps, looping over the file. Memory is "flat" when the
//! resident size after the first hour (or the first pipelines) stays where
//! it is: the figure per extra pipeline is the slope.

use gst::prelude::*;

const RATE: i32 = 16_000;
const BUFFER_SAMPLES: usize = 1_600;

fn main() {
    if let Err(err) = run() {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    const USAGE: &str = "usage: soak pipelines N SECONDS FILE | soak hours H FILE";
    let args: Vec<String> = std::env::args().skip(1).collect();
    gst::init()?;
    gstseremotion::plugin_register_static()?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["pipelines", n, seconds, file] => {
            let speech = decode(file)?;
            many_pipelines(&speech, n.parse()?, seconds.parse()?)
        }
        ["hours", hours, file] => {
            let speech = decode(file)?;
            long_stream(&speech, hours.parse()?)
        }
        _ => Err(USAGE.into()),
    }
}

/// The file as 16 kHz mono S16 samples.
fn decode(path: &str) -> Result<Vec<i16>, Box<dyn std::error::Error>> {
    let pipeline = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! decodebin ! audioconvert ! audioresample ! \
         audio/x-raw,format=S16LE,rate={RATE},channels=1 ! appsink name=sink sync=false",
        path.replace('"', "\\\"")
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let sink = pipeline
        .by_name("sink")
        .ok_or("no appsink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "not an appsink")?;
    pipeline.set_state(gst::State::Playing)?;
    let mut samples = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer().ok_or("sample without buffer")?;
        let map = buffer.map_readable()?;
        samples.extend(
            map.chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
    }
    pipeline.set_state(gst::State::Null)?;
    if samples.is_empty() {
        return Err(format!("{path} decoded to no audio").into());
    }
    Ok(samples)
}

/// A running `appsrc ! seremotion ! fakesink` pipeline.
struct Stream {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    pushed: u64,
    messages: u64,
}

impl Stream {
    fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let pipeline = gst::parse::launch(&format!(
            "appsrc name=src format=time block=true max-bytes=64000 \
             caps=audio/x-raw,format=S16LE,rate={RATE},channels=1,layout=interleaved ! \
             seremotion ! fakesink sync=false"
        ))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
        let src = pipeline
            .by_name("src")
            .ok_or("no appsrc")?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| "not an appsrc")?;
        pipeline.set_state(gst::State::Playing)?;
        Ok(Self {
            pipeline,
            src,
            pushed: 0,
            messages: 0,
        })
    }

    /// Pushes `seconds` of audio, looping over `speech`.
    fn push(&mut self, speech: &[i16], seconds: u64) -> Result<(), Box<dyn std::error::Error>> {
        let total = seconds * RATE as u64;
        let end = self.pushed + total;
        while self.pushed < end {
            let n = BUFFER_SAMPLES.min((end - self.pushed) as usize);
            let start = (self.pushed % speech.len() as u64) as usize;
            let bytes: Vec<u8> = speech
                .iter()
                .cycle()
                .skip(start)
                .take(n)
                .flat_map(|s| s.to_le_bytes())
                .collect();
            let mut buffer = gst::Buffer::from_mut_slice(bytes);
            {
                let b = buffer.get_mut().ok_or("buffer not writable")?;
                b.set_pts(gst::ClockTime::SECOND.mul_div_floor(self.pushed, RATE as u64));
                b.set_duration(gst::ClockTime::SECOND.mul_div_floor(n as u64, RATE as u64));
            }
            self.src.push_buffer(buffer)?;
            self.pushed += n as u64;
            self.drain_bus()?;
        }
        Ok(())
    }

    fn drain_bus(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let bus = self.pipeline.bus().ok_or("pipeline without bus")?;
        while let Some(msg) = bus.pop() {
            match msg.view() {
                gst::MessageView::Element(_) => self.messages += 1,
                gst::MessageView::Error(err) => return Err(err.error().to_string().into()),
                _ => (),
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<u64, Box<dyn std::error::Error>> {
        self.src.end_of_stream()?;
        let bus = self.pipeline.bus().ok_or("pipeline without bus")?;
        for msg in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
            match msg.view() {
                gst::MessageView::Element(_) => self.messages += 1,
                gst::MessageView::Eos(_) => break,
                gst::MessageView::Error(err) => return Err(err.error().to_string().into()),
                _ => (),
            }
        }
        self.pipeline.set_state(gst::State::Null)?;
        Ok(self.messages)
    }
}

fn many_pipelines(
    speech: &[i16],
    n: usize,
    seconds: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("pipelines\tresident MB\tpeak MB");
    report(0);
    let mut streams = Vec::with_capacity(n);
    for i in 1..=n {
        streams.push(Stream::new()?);
        if i.is_power_of_two() || i == n {
            report(i as u64);
        }
    }
    // One thread per pipeline, as a server with that many calls would have.
    let results: Vec<Result<u64, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = streams
            .into_iter()
            .map(|mut stream| {
                s.spawn(move || {
                    stream.push(speech, seconds).map_err(|e| e.to_string())?;
                    stream.finish().map_err(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    let messages: u64 = results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .sum();
    report(n as u64);
    println!("{n} pipelines, {seconds} s of audio each, {messages} messages");
    Ok(())
}

fn long_stream(speech: &[i16], hours: u64) -> Result<(), Box<dyn std::error::Error>> {
    println!("hours\tresident MB\tpeak MB");
    let mut stream = Stream::new()?;
    report(0);
    for hour in 1..=hours {
        stream.push(speech, 3600)?;
        report(hour);
    }
    let messages = stream.finish()?;
    println!("{hours} h through one pipeline, {messages} messages");
    Ok(())
}

/// Prints the current and peak resident set of this process.
fn report(step: u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    println!("{step}\t{:.1}\t{:.1}", field("VmRSS:"), field("VmHWM:"));
}
