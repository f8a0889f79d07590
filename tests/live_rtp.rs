//! Live calls over RTP: a sender pipeline streams a spoken call as G.711
//! (mu-law, A-law) over the loopback interface in real time, and the receiver
//! `udpsrc ! rtpjitterbuffer ! rtppcm?depay ! ?lawdec ! seremotion` must post
//! its results while the call runs, not at its end. Prints the delay from the
//! end of each window's audio to its message (`cargo test --test live_rtp -- --nocapture`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gst::prelude::*;

fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstseremotion::plugin_register_static().unwrap();
    });
}

/// A spoken call of about 9 s (espeak-ng, installed by scripts/setup.sh).
fn speak(path: &Path) {
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(path)
        .arg(
            "Hello, I am calling about my bill. I was charged twice this month and nobody \
             answers my emails. I want this fixed today, please.",
        )
        .status()
        .expect("espeak-ng is missing: scripts/setup.sh installs it");
    assert!(status.success());
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Arrival {
    /// Wall-clock time of the message, from the start of the call.
    at: Duration,
    /// Receiver's running time now minus the end of the window, ns.
    delay_ns: i64,
}

fn stream_call(codec: &str) {
    init();
    let (encoding, payload, enc, pay, depay, dec) = match codec {
        "pcmu" => (
            "PCMU",
            0,
            "mulawenc",
            "rtppcmupay",
            "rtppcmudepay",
            "mulawdec",
        ),
        _ => (
            "PCMA",
            8,
            "alawenc",
            "rtppcmapay",
            "rtppcmadepay",
            "alawdec",
        ),
    };
    let dir = tempfile_dir();
    let wav = dir.join("call.wav");
    speak(&wav);
    let port = free_udp_port();

    let receiver = gst::parse::launch(&format!(
        "udpsrc address=127.0.0.1 port={port} \
           caps=\"application/x-rtp,media=audio,clock-rate=8000,encoding-name={encoding},payload={payload}\" \
         ! rtpjitterbuffer latency=60 ! {depay} ! {dec} ! audioconvert ! seremotion ! fakesink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    // sync=true: the sender plays the call out in real time, as a phone would.
    let sender = gst::parse::launch(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample \
         ! audio/x-raw,rate=8000,channels=1 ! {enc} ! {pay} ! udpsink host=127.0.0.1 port={port} sync=true",
        wav.display()
    ))
    .unwrap();
    let rx_bus = receiver.bus().unwrap();
    let tx_bus = sender.bus().unwrap();
    receiver.set_state(gst::State::Playing).unwrap();
    // The receiver listens before the first packet is sent.
    receiver.state(gst::ClockTime::from_seconds(5)).0.unwrap();
    let started = Instant::now();
    sender.set_state(gst::State::Playing).unwrap();

    let mut arrivals = Vec::new();
    let mut call_ended = None;
    let deadline = started + Duration::from_secs(60);
    while call_ended.is_none_or(|end: Duration| started.elapsed() < end + Duration::from_secs(1)) {
        assert!(Instant::now() < deadline, "the call did not end");
        if let Some(msg) = tx_bus.pop() {
            match msg.view() {
                gst::MessageView::Eos(_) => call_ended = Some(started.elapsed()),
                gst::MessageView::Error(e) => panic!("sender: {} {:?}", e.error(), e.debug()),
                _ => (),
            }
        }
        let Some(msg) = rx_bus.timed_pop(gst::ClockTime::from_mseconds(10)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Element(e) => {
                let s = e.structure().unwrap();
                if s.name() != "seremotion" {
                    continue;
                }
                let now = receiver.current_running_time().unwrap();
                let start = s
                    .get::<Option<gst::ClockTime>>("running-time")
                    .unwrap()
                    .unwrap();
                let duration = s.get::<gst::ClockTime>("duration").unwrap();
                arrivals.push(Arrival {
                    at: started.elapsed(),
                    delay_ns: now.nseconds() as i64 - (start + duration).nseconds() as i64,
                });
            }
            gst::MessageView::Error(e) => panic!("receiver: {} {:?}", e.error(), e.debug()),
            _ => (),
        }
    }
    sender.set_state(gst::State::Null).unwrap();

    // EOS at the end of the call flushes the last window and gives the summary.
    receiver.send_event(gst::event::Eos::new());
    let mut summary = None;
    for msg in rx_bus.iter_timed(gst::ClockTime::from_seconds(10)) {
        match msg.view() {
            gst::MessageView::Element(e)
                if e.structure()
                    .is_some_and(|s| s.name() == "seremotion-summary") =>
            {
                summary = e.structure().map(|s| s.to_owned());
            }
            gst::MessageView::Eos(_) => break,
            _ => (),
        }
    }
    receiver.set_state(gst::State::Null).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let call_ended = call_ended.unwrap();
    let during: Vec<&Arrival> = arrivals.iter().filter(|a| a.at < call_ended).collect();
    // A ~9 s call with 2 s windows every second: results from the third second on.
    assert!(
        during.len() >= 4,
        "{codec}: {} of {} results arrived before the call ended at {call_ended:?}",
        during.len(),
        arrivals.len()
    );
    assert!(
        during[0].at < call_ended / 2,
        "{codec}: first result only at {:?}",
        during[0].at
    );
    let mut delays: Vec<i64> = during.iter().map(|a| a.delay_ns / 1_000_000).collect();
    delays.sort();
    eprintln!(
        "{codec}: {} results during a {:.1} s call; delay from the end of a window to its message: \
         median {} ms, min {} ms, max {} ms",
        during.len(),
        call_ended.as_secs_f64(),
        delays[delays.len() / 2],
        delays[0],
        delays[delays.len() - 1]
    );
    let summary = summary.expect("no seremotion-summary after EOS");
    let analysed = summary.get::<gst::ClockTime>("duration").unwrap();
    assert!(
        (analysed.seconds_f64() - call_ended.as_secs_f64()).abs() < 1.5,
        "{codec}: summary covers {analysed} of a {call_ended:?} call"
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "seremotion-rtp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn mu_law_results_arrive_during_the_call() {
    stream_call("pcmu");
}

#[test]
fn a_law_results_arrive_during_the_call() {
    stream_call("pcma");
}
