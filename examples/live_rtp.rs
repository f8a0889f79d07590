//! Live calls: analyses RTP G.711 (mu-law or A-law, as telephony sends it)
//! arriving on a UDP port and prints each result as it comes, with its delay
//! (from the end of the window's audio to its message).
//!
//! ```sh
//! cargo run --release --example live_rtp -- [pcmu|pcma] [PORT]    # default: pcmu 5004
//! # a sender to try it with (another terminal):
//! gst-launch-1.0 filesrc location=call.wav ! decodebin ! audioconvert ! audioresample \
//!   ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay ! udpsink host=127.0.0.1 port=5004 sync=true
//! ```
//!
//! Stop it with Ctrl-C; a real application sends EOS when the call ends to
//! get the `seremotion-summary` message.

use gst::prelude::*;

/// The receiving pipeline for one G.711 stream.
fn receiver_description(codec: &str, port: u16) -> Result<String, String> {
    let (encoding, payload, depay, decoder) = match codec {
        "pcmu" => ("PCMU", 0, "rtppcmudepay", "mulawdec"),
        "pcma" => ("PCMA", 8, "rtppcmadepay", "alawdec"),
        other => {
            return Err(format!(
                "unknown codec {other}: pcmu (mu-law) or pcma (A-law)"
            ));
        }
    };
    // The jitter buffer reorders late packets and absorbs network jitter; its
    // latency is most of the delay of each result.
    Ok(format!(
        "udpsrc address=127.0.0.1 port={port} \
           caps=\"application/x-rtp,media=audio,clock-rate=8000,encoding-name={encoding},payload={payload}\" \
         ! rtpjitterbuffer latency=60 ! {depay} ! {decoder} ! audioconvert \
         ! seremotion name=analyser ! fakesink sync=false"
    ))
}

fn main() {
    if let Err(err) = run() {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let codec = args.next().unwrap_or_else(|| "pcmu".into());
    let port: u16 = match args.next() {
        Some(p) => p.parse().map_err(|_| format!("`{p}` is not a UDP port"))?,
        None => 5004,
    };
    gst::init()?;
    gstseremotion::plugin_register_static()?;
    let pipeline = gst::parse::launch(&receiver_description(&codec, port)?)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let bus = pipeline.bus().ok_or("pipeline without bus")?;
    pipeline.set_state(gst::State::Playing)?;
    eprintln!("listening for RTP {codec} on 127.0.0.1:{port}");
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Element(e) => match e.structure() {
                Some(s) if s.name() == "seremotion" => {
                    let start = s.get::<Option<gst::ClockTime>>("running-time")?;
                    let duration = s.get::<gst::ClockTime>("duration")?;
                    // Now, on the pipeline's clock, against the end of the window's audio.
                    let delay = pipeline
                        .current_running_time()
                        .zip(start)
                        .map(|(now, start)| {
                            now.nseconds() as i64 - (start + duration).nseconds() as i64
                        });
                    println!(
                        "{:>8.1} s  {:<9} {:.2}  (delay {})",
                        start.map_or(0.0, |t| t.seconds_f64()),
                        s.get::<&str>("emotion")?,
                        s.get::<f64>("confidence")?,
                        delay.map_or("?".into(), |d| format!("{} ms", d / 1_000_000)),
                    );
                }
                Some(s) if s.name() == "seremotion-summary" => println!("{s}"),
                _ => (),
            },
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(err) => {
                pipeline.set_state(gst::State::Null)?;
                return Err(format!("{} ({:?})", err.error(), err.debug()).into());
            }
            _ => (),
        }
    }
    pipeline.set_state(gst::State::Null)?;
    Ok(())
}
