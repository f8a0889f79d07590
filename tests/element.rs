//! The `seremotion` element in gst_check harnesses and real pipelines.
//!
//! Most tests use `tests/fixtures/tone_bands.onnx`, a model with a known
//! answer: logit j is the mean of log-mel band `BANDS[j]` over the window, so a
//! pure tone in band `BANDS[j]` is classified as label j. That proves that
//! features reach the model channels-first and that labels map correctly,
//! independently of whatever the trained default model has learnt.

#[path = "support/signals.rs"]
mod signals;

use std::path::PathBuf;
use std::sync::Once;

use gst::prelude::*;
use seremotion_core::features::{self, FeatureConfig};

const LABELS: [&str; 4] = ["neutral", "happy", "sad", "angry"];
/// The caps most tests push.
const MONO_16K: &str = "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved";
/// Mel bands the fixture model reads, one per label (see scripts/make_fixture_models.py).
const BANDS: [usize; 4] = [8, 20, 32, 44];

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initialises");
        gstseremotion::plugin_register_static().expect("plugin registers");
    });
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn hz_to_mel(f: f64) -> f64 {
    // Slaney's mel scale, as librosa uses by default.
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let logstep = (6.4f64).ln() / 27.0;
    if f < min_log_hz {
        f / f_sp
    } else {
        min_log_hz / f_sp + (f / min_log_hz).ln() / logstep
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if m < min_log_mel {
        m * f_sp
    } else {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    }
}

/// Centre frequency of mel band `band` of the default feature configuration.
fn band_centre(band: usize) -> f64 {
    let cfg = FeatureConfig::default();
    let (lo, hi) = (
        hz_to_mel(f64::from(cfg.fmin)),
        hz_to_mel(f64::from(cfg.fmax)),
    );
    mel_to_hz(lo + (band + 1) as f64 * (hi - lo) / (cfg.n_mels + 1) as f64)
}

/// The frequency the fixture model classifies as `label`, checked against the
/// feature extractor itself so a test failure points at the element, not at this helper.
fn tone_for(label: usize) -> f64 {
    let freq = band_centre(BANDS[label]);
    let cfg = FeatureConfig::default();
    let tone = sine(freq, 16000, 0.5, 16000);
    let m = features::extract(&cfg, &tone).expect("features");
    let mean = |band: usize| (0..m.n_frames).map(|t| m.frame(t)[band]).sum::<f32>();
    let best = (0..4)
        .max_by(|&a, &b| mean(BANDS[a]).total_cmp(&mean(BANDS[b])))
        .expect("four bands");
    assert_eq!(
        best, label,
        "{freq} Hz should fall in band {}",
        BANDS[label]
    );
    freq
}

/// A tone under a syllable-rate envelope (4 Hz, dips of 20 dB): the element's
/// speech decision takes it for speech, as it would not a steady tone (hum).
fn sine(freq: f64, rate: u32, amplitude: f64, n: usize) -> Vec<f32> {
    let tau = 2.0 * std::f64::consts::PI;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let envelope = 0.55 + 0.45 * (tau * 4.0 * t).sin();
            (amplitude * envelope * (tau * freq * t).sin()) as f32
        })
        .collect()
}

/// A steady tone: no syllables, so never speech.
fn steady_sine(freq: f64, rate: u32, amplitude: f64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                as f32
        })
        .collect()
}

fn make_element(model: Option<&str>, props: &[(&str, &str)]) -> gst::Element {
    init();
    let mut builder = gst::ElementFactory::make("seremotion");
    if let Some(model) = model {
        let path = fixture(model).to_str().expect("utf-8 path").to_string();
        builder = builder.property("model-path", path);
    }
    let element = builder.build().expect("seremotion element");
    for (name, value) in props {
        element.set_property_from_str(name, value);
    }
    element
}

/// A harness around `element` whose messages land on the returned bus.
fn harness(element: &gst::Element, caps: &str) -> (gst_check::Harness, gst::Bus) {
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut h = gst_check::Harness::with_element(element, Some("sink"), Some("src"));
    h.set_src_caps_str(caps);
    (h, bus)
}

fn f32_buffer(
    samples: &[f32],
    pts: Option<gst::ClockTime>,
    rate: u32,
    channels: usize,
) -> gst::Buffer {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut buffer = gst::Buffer::from_mut_slice(bytes);
    {
        let b = buffer.get_mut().expect("fresh buffer is writable");
        b.set_pts(pts);
        let frames = (samples.len() / channels) as u64;
        b.set_duration(gst::ClockTime::from_nseconds(
            frames * 1_000_000_000 / u64::from(rate),
        ));
    }
    buffer
}

/// Pushes `samples` (interleaved F32) in 20 ms buffers with running timestamps.
fn push_f32(
    h: &mut gst_check::Harness,
    samples: &[f32],
    rate: u32,
    channels: usize,
    start: gst::ClockTime,
) {
    let chunk = (rate as usize / 50) * channels;
    let mut frames_done = 0u64;
    for piece in samples.chunks(chunk) {
        let pts =
            start + gst::ClockTime::from_nseconds(frames_done * 1_000_000_000 / u64::from(rate));
        h.push(f32_buffer(piece, Some(pts), rate, channels))
            .expect("push accepted");
        frames_done += (piece.len() / channels) as u64;
    }
}

/// Pushes `n` samples of the mono 16 kHz tone that the fixture model labels
/// `band`, timestamped from `start`.
fn push_tone(h: &mut gst_check::Harness, band: usize, n: usize, start: gst::ClockTime) {
    push_tone_at(h, band, 16000, n, start);
}

/// `n` samples of mono tone `band` at `rate`, which the caller's caps announce.
fn push_tone_at(
    h: &mut gst_check::Harness,
    band: usize,
    rate: u32,
    n: usize,
    start: gst::ClockTime,
) {
    push_f32(h, &sine(tone_for(band), rate, 0.5, n), rate, 1, start);
}

/// Switches the harness to mono F32 at `rate`.
fn switch_to_mono(h: &mut gst_check::Harness, rate: u32) {
    h.set_src_caps_str(&format!(
        "audio/x-raw,format=F32LE,rate={rate},channels=1,layout=interleaved"
    ));
}

struct Window {
    timestamp: gst::ClockTime,
    duration: gst::ClockTime,
    channel: i32,
    emotion: String,
    scores: Vec<f64>,
}

fn windows(bus: &gst::Bus) -> (Vec<Window>, Vec<gst::Structure>) {
    let mut windows = Vec::new();
    let mut summaries = Vec::new();
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Element(e) = msg.view() {
            let s = e.structure().expect("element messages carry a structure");
            match s.name().as_str() {
                "seremotion" => {
                    let scores = s.get::<gst::Structure>("scores").expect("scores");
                    windows.push(Window {
                        timestamp: s.get("timestamp").expect("timestamp"),
                        duration: s.get("duration").expect("duration"),
                        channel: s.get("channel").expect("channel"),
                        emotion: s.get::<String>("emotion").expect("emotion"),
                        scores: LABELS
                            .iter()
                            .map(|l| scores.get::<f64>(*l).expect("score"))
                            .collect(),
                    });
                    assert!(s.has_field("stream-time") && s.has_field("running-time"));
                    assert!(s.get::<f64>("confidence").is_ok());
                }
                "seremotion-summary" => summaries.push(s.to_owned()),
                _ => (),
            }
        }
    }
    (windows, summaries)
}

#[test]
fn passthrough_is_bit_identical() {
    for (caps, bytes_per_sample) in [
        (
            "audio/x-raw,format=S16LE,rate=44100,channels=2,layout=interleaved",
            2,
        ),
        (MONO_16K, 4),
    ] {
        let element = make_element(Some("tone_bands.onnx"), &[]);
        let (mut h, _bus) = harness(&element, caps);
        // Arbitrary bytes, including NaN bit patterns for F32: they must come out as they went in.
        let data: Vec<u8> = (0..(4410 * bytes_per_sample * 2))
            .map(|i| (i * 7919 % 251) as u8)
            .collect();
        let mut buffer = gst::Buffer::from_slice(data.clone());
        buffer
            .get_mut()
            .expect("writable")
            .set_pts(gst::ClockTime::ZERO);
        let out = h.push_and_pull(buffer).expect("buffer comes out");
        assert_eq!(
            out.map_readable().expect("readable").as_slice(),
            data.as_slice(),
            "{caps}"
        );
    }
}

#[test]
fn messages_follow_window_and_interval() {
    let rate = 16000;
    let audio = sine(tone_for(2), rate, 0.5, rate as usize * 11 / 2); // 5.5 s
    for (interval, expected_starts) in [
        ("1000000000", vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
        // Windows overlap by half; the tail after the last full window is flushed at EOS.
        // here the last full window reaches the end of the audio, so nothing is left at EOS.
        (
            "500000000",
            vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5],
        ),
    ] {
        let element = make_element(Some("tone_bands.onnx"), &[("interval", interval)]);
        let (mut h, bus) = harness(&element, MONO_16K);
        push_f32(&mut h, &audio, rate, 1, gst::ClockTime::from_seconds(10));
        assert!(h.push_event(gst::event::Eos::new()));
        let (windows, summaries) = windows(&bus);
        let starts: Vec<f64> = windows
            .iter()
            .map(|w| w.timestamp.seconds_f64() - 10.0)
            .collect();
        assert_eq!(
            starts.len(),
            expected_starts.len(),
            "interval {interval}: {starts:?}"
        );
        for (got, want) in starts.iter().zip(&expected_starts) {
            assert!((got - want).abs() < 1e-3, "interval {interval}: {starts:?}");
        }
        // Full windows last the model's 1 s window (97 frames of 10 ms + the 32 ms FFT frame).
        assert!((windows[0].duration.seconds_f64() - 0.992).abs() < 1e-3);
        // The last window, partial or not, ends at the end of the audio.
        let last = windows.last().expect("windows");
        let end = last.timestamp.seconds_f64() - 10.0 + last.duration.seconds_f64();
        assert!((end - 5.5).abs() < 0.02, "last window ends at {end}");
        assert!(
            windows
                .iter()
                .all(|w| w.emotion == "sad" && w.channel == -1)
        );
        assert_eq!(summaries.len(), 1);
        assert_eq!(
            summaries[0].get::<&str>("dominant").expect("dominant"),
            "sad"
        );
    }
}

#[test]
fn tone_layout_reaches_the_model_at_common_rates() {
    for rate in [8000u32, 16000, 44100, 48000] {
        for label in [0usize, 1, 3] {
            let freq = tone_for(label);
            if freq >= f64::from(rate) / 2.0 * 0.9 {
                continue; // above what this rate can carry
            }
            let element = make_element(Some("tone_bands.onnx"), &[]);
            let caps =
                format!("audio/x-raw,format=F32LE,rate={rate},channels=1,layout=interleaved");
            let (mut h, bus) = harness(&element, &caps);
            push_f32(
                &mut h,
                &sine(freq, rate, 0.5, rate as usize * 2),
                rate,
                1,
                gst::ClockTime::ZERO,
            );
            assert!(h.push_event(gst::event::Eos::new()));
            let (windows, _) = windows(&bus);
            assert!(windows.len() >= 2, "{rate} Hz: {} windows", windows.len());
            for w in &windows {
                assert_eq!(
                    w.emotion, LABELS[label],
                    "{rate} Hz, {freq:.0} Hz tone: scores {:?}",
                    w.scores
                );
            }
        }
    }
}

#[test]
fn per_channel_results_are_independent() {
    let rate = 16000;
    let (left, right) = (
        sine(tone_for(1), rate, 0.5, 32000),
        sine(tone_for(3), rate, 0.5, 32000),
    );
    let stereo: Vec<f32> = left
        .iter()
        .zip(&right)
        .flat_map(|(l, r)| [*l, *r])
        .collect();
    let element = make_element(Some("tone_bands.onnx"), &[("channel-mode", "per-channel")]);
    let (mut h, bus) = harness(
        &element,
        "audio/x-raw,format=F32LE,rate=16000,channels=2,layout=interleaved",
    );
    push_f32(&mut h, &stereo, rate, 2, gst::ClockTime::ZERO);
    assert!(h.push_event(gst::event::Eos::new()));
    let (windows, summaries) = windows(&bus);
    let left: Vec<_> = windows.iter().filter(|w| w.channel == 0).collect();
    let right: Vec<_> = windows.iter().filter(|w| w.channel == 1).collect();
    assert_eq!(left.len(), right.len());
    assert!(!left.is_empty());
    assert!(left.iter().all(|w| w.emotion == "happy"));
    assert!(right.iter().all(|w| w.emotion == "angry"));
    for (l, r) in left.iter().zip(&right) {
        assert_eq!(l.timestamp, r.timestamp);
    }
    let dominant: Vec<(i32, String)> = summaries
        .iter()
        .map(|s| {
            (
                s.get("channel").expect("channel"),
                s.get::<String>("dominant").expect("dominant"),
            )
        })
        .collect();
    assert_eq!(dominant, vec![(0, "happy".into()), (1, "angry".into())]);
}

#[test]
fn silence_is_never_an_emotion() {
    let rate = 16000;
    let mut audio = vec![0.0f32; rate as usize * 2];
    audio.extend(sine(tone_for(3), rate, 0.5, rate as usize * 2));
    let element = make_element(Some("tone_bands.onnx"), &[]);
    let (mut h, bus) = harness(&element, MONO_16K);
    push_f32(&mut h, &audio, rate, 1, gst::ClockTime::ZERO);
    assert!(h.push_event(gst::event::Eos::new()));
    let (windows, summaries) = windows(&bus);
    let emotions: Vec<&str> = windows.iter().map(|w| w.emotion.as_str()).collect();
    assert_eq!(emotions, ["silence", "silence", "angry", "angry"]);
    // The timeline keeps running through the silence.
    let starts: Vec<u64> = windows.iter().map(|w| w.timestamp.seconds()).collect();
    assert_eq!(starts, [0, 1, 2, 3]);
    assert_eq!(summaries[0].get::<u64>("speech-windows").expect("count"), 2);
}

#[test]
fn flush_resets_buffered_audio() {
    let element = make_element(Some("tone_bands.onnx"), &[]);
    let (mut h, bus) = harness(&element, MONO_16K);
    // 0.8 s of "happy", then a flushing seek to 100 s and 1 s of "angry": no window may mix them.
    push_tone(&mut h, 1, 12800, gst::ClockTime::ZERO);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(gst::ClockTime::from_seconds(100));
    segment.set_time(gst::ClockTime::from_seconds(100));
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    push_tone(&mut h, 3, 16000, gst::ClockTime::from_seconds(100));
    assert!(h.push_event(gst::event::Eos::new()));
    let (windows, summaries) = windows(&bus);
    assert_eq!(windows.len(), 1, "only the post-seek audio is analysed");
    assert_eq!(windows[0].timestamp, gst::ClockTime::from_seconds(100));
    assert_eq!(windows[0].emotion, "angry");
    assert_eq!(summaries[0].get::<u64>("windows").expect("count"), 1);
}

#[test]
fn bad_samples_and_odd_buffers_are_handled() {
    let rate = 16000;
    let element = make_element(Some("tone_bands.onnx"), &[]);
    let (mut h, bus) = harness(&element, MONO_16K);
    let mut tone = sine(tone_for(2), rate, 0.5, 16000);
    for i in (0..tone.len()).step_by(97) {
        tone[i] = if i % 2 == 0 { f32::NAN } else { f32::INFINITY };
    }
    // Empty buffer, buffers without timestamps, then a jump in time (discontinuity).
    h.push(gst::Buffer::new()).expect("empty buffer accepted");
    for piece in tone.chunks(320) {
        h.push(f32_buffer(piece, None, rate, 1))
            .expect("untimestamped buffer accepted");
    }
    push_tone(&mut h, 2, 16000, gst::ClockTime::from_seconds(30));
    assert!(h.push_event(gst::event::Eos::new()));
    let (windows, _) = windows(&bus);
    let starts: Vec<u64> = windows.iter().map(|w| w.timestamp.seconds()).collect();
    assert_eq!(starts, [0, 30], "one window before the jump, one after");
    assert!(
        windows
            .iter()
            .all(|w| w.emotion == "sad" && w.scores.iter().all(|s| s.is_finite()))
    );
}

#[test]
fn caps_change_reconfigures() {
    let element = make_element(Some("tone_bands.onnx"), &[]);
    let (mut h, bus) = harness(&element, MONO_16K);
    push_f32(
        &mut h,
        &sine(tone_for(1), 16000, 0.5, 16000),
        16000,
        1,
        gst::ClockTime::ZERO,
    );
    h.set_src_caps_str("audio/x-raw,format=F32LE,rate=48000,channels=2,layout=interleaved");
    let stereo: Vec<f32> = sine(tone_for(3), 48000, 0.5, 48000)
        .into_iter()
        .flat_map(|s| [s, s])
        .collect();
    push_f32(&mut h, &stereo, 48000, 2, gst::ClockTime::from_seconds(1));
    assert!(h.push_event(gst::event::Eos::new()));
    let (windows, _) = windows(&bus);
    let emotions: Vec<&str> = windows.iter().map(|w| w.emotion.as_str()).collect();
    assert_eq!(emotions, ["happy", "angry"]);
}

/// The element's `labels` property.
fn labels_of(element: &gst::Element) -> Vec<String> {
    element
        .property::<glib::StrV>("labels")
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn labels_property_comes_from_the_model() {
    let element = make_element(Some("tone_bands.onnx"), &[]);
    assert_eq!(labels_of(&element), LABELS);
    let element = make_element(None, &[]);
    assert!(
        !element.property::<glib::StrV>("labels").is_empty(),
        "embedded default model loads"
    );
}

/// The bus errors of a `seremotion` whose `model-path` is `path` when started.
fn start_errors_with_model(path: &str) -> Vec<String> {
    let element = gst::ElementFactory::make("seremotion")
        .property("model-path", path)
        .build()
        .expect("element");
    start_errors(&element)
}

/// Starts `element` in a pipeline and returns the error messages on its bus:
/// the GError texts applications show, not the debug strings.
fn start_errors(element: &gst::Element) -> Vec<String> {
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("audiotestsrc")
        .property("num-buffers", 10)
        .build()
        .expect("audiotestsrc");
    let sink = gst::ElementFactory::make("fakesink")
        .build()
        .expect("fakesink");
    pipeline.add_many([&src, element, &sink]).expect("add");
    gst::Element::link_many([&src, element, &sink]).expect("link");
    let _ = pipeline.set_state(gst::State::Playing);
    let bus = pipeline.bus().expect("bus");
    let mut errors = Vec::new();
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(10)) {
        match msg.view() {
            gst::MessageView::Error(e) => errors.push(e.error().to_string()),
            gst::MessageView::Eos(_) => break,
            _ => (),
        }
        if !errors.is_empty() {
            break;
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    errors
}

#[test]
fn missing_model_file_is_a_bus_error_naming_the_path() {
    init();
    let errors = start_errors_with_model("/nonexistent/emotions.onnx");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("/nonexistent/emotions.onnx")),
        "{errors:?}"
    );
}

#[test]
fn invalid_models_are_refused_with_the_reason() {
    init();
    let bare = std::fs::read(fixture("tone_bands_bare.onnx")).expect("fixture");
    let good = seremotion_core::model::ModelMetadata {
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        sample_rate: 16000,
        window: 1.0,
        features: FeatureConfig::default(),
        training: serde_json::json!({}),
    };
    let dir = std::env::temp_dir().join(format!("seremotion-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let props = good.to_props();
    let without_labels: Vec<_> = props
        .iter()
        .filter(|(k, _)| k != "seremotion.labels")
        .cloned()
        .collect();
    let three_labels = seremotion_core::model::ModelMetadata {
        labels: vec!["a".into(), "b".into(), "c".into()],
        ..good.clone()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not-onnx.onnx",
            b"this is not a model".to_vec(),
            "ONNX Runtime cannot load it",
        ),
        (
            "no-labels.onnx",
            seremotion_core::model::writer::embed_props(&bare, &without_labels),
            "seremotion.labels",
        ),
        (
            "wrong-shape.onnx",
            seremotion_core::model::writer::embed_metadata(&bare, &three_labels),
            "logits",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write model");
        let errors = start_errors_with_model(path.to_str().expect("utf-8"));
        assert!(
            errors
                .iter()
                .any(|e| e.contains(expected) && e.contains(name)),
            "{name}: expected `{expected}` in {errors:?}"
        );
    }
    // The same bare graph with good metadata loads and classifies.
    let path = dir.join("good.onnx");
    std::fs::write(
        &path,
        seremotion_core::model::writer::embed_metadata(&bare, &good),
    )
    .expect("write");
    let model = seremotion_core::model::Model::from_file(&path).expect("valid model");
    assert_eq!(model.labels(), LABELS);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unsupported_caps_fail_negotiation() {
    for caps in [
        "audio/x-raw,format=U8,rate=16000,channels=1,layout=interleaved",
        "audio/x-raw,format=S16LE,rate=4000,channels=1,layout=interleaved",
        "audio/x-raw,format=S16LE,rate=16000,channels=9,layout=interleaved",
        "audio/x-raw,format=S16LE,rate=16000,channels=2,layout=non-interleaved",
    ] {
        let element = make_element(Some("tone_bands.onnx"), &[]);
        let (mut h, _bus) = harness(&element, caps);
        let result = h.push(gst::Buffer::from_slice(vec![0u8; 3200]));
        assert_eq!(result, Err(gst::FlowError::NotNegotiated), "{caps}");
    }
    // gst-launch users see the refusal when the pipeline is built.
    init();
    let err = gst::parse::launch("audiotestsrc ! audio/x-raw,format=U8 ! seremotion ! fakesink")
        .expect_err("U8 is refused");
    assert!(err.to_string().contains("can't handle caps"), "{err}");
}

/// A truncated ONNX Runtime library (a half-finished copy or download) used to
/// crash the host with SIGBUS inside dlopen; it must be a bus error naming the
/// file, and the next start must find a good library once there is one
/// (a failed load is not remembered). In a child process, since the library
/// is loaded once per process.
#[test]
fn truncated_onnx_runtime_is_refused_and_a_later_good_one_is_used() {
    const GOOD: &str = "SEREMOTION_TEST_GOOD_ORT";
    if std::env::var_os("SEREMOTION_TEST_CHILD").is_some() {
        let element = make_element(Some("tone_bands.onnx"), &[]);
        let errors = start_errors(&element);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("truncated") && e.contains("cannot be used")),
            "{errors:?}"
        );
        let good = std::env::var_os(GOOD).expect("parent passes the good library");
        // SAFETY: this child runs a single test on a single thread.
        unsafe { std::env::set_var("SEREMOTION_ORT_LIB", good) };
        let element = make_element(Some("tone_bands.onnx"), &[]);
        let errors = start_errors(&element);
        assert!(errors.is_empty(), "{errors:?}");
        return;
    }
    let good = seremotion_core::model::runtime_candidates()
        .into_iter()
        .find(|p| p.is_absolute() && p.exists())
        .expect("scripts/setup.sh installed ONNX Runtime");
    let bytes = std::fs::read(&good).expect("read ONNX Runtime");
    let truncated = std::env::temp_dir().join(format!(
        "seremotion-truncated-{}-{}",
        std::process::id(),
        seremotion_core::model::ORT_LIBRARY_FILE
    ));
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).expect("write truncated copy");
    let status = child_test("truncated_onnx_runtime_is_refused_and_a_later_good_one_is_used")
        .env("SEREMOTION_ORT_LIB", &truncated)
        .env(GOOD, &good)
        .status()
        .expect("child runs");
    let _ = std::fs::remove_file(&truncated);
    assert!(
        status.success(),
        "child test failed (a signal means the host crashed)"
    );
}

/// ONNX Runtime is loaded once per process, so the missing-library case runs
/// in a child process of this test binary.
#[test]
fn missing_onnx_runtime_is_a_clear_bus_error() {
    if std::env::var_os("SEREMOTION_TEST_CHILD").is_some() {
        let element = make_element(None, &[]);
        let errors = start_errors(&element);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("ONNX Runtime library not found") && e.contains("setup.sh")),
            "{errors:?}"
        );
        return;
    }
    let status = child_test("missing_onnx_runtime_is_a_clear_bus_error")
        .env(
            "SEREMOTION_ORT_LIB",
            "/nonexistent/libonnxruntime.so.1.32.0",
        )
        .status()
        .expect("child runs");
    assert!(status.success(), "child test failed");
}

/// The element lives in someone else's process: it switches ONNX Runtime's
/// telemetry off through the API and never touches the environment. With
/// `ORT_DISABLE_TELEMETRY=1`, the variable the README tells users to set,
/// ONNX Runtime writes nothing under the home directory either. Each run is a
/// child process with a fresh home.
#[test]
fn onnx_runtime_telemetry_and_environment() {
    if std::env::var_os("SEREMOTION_TEST_CHILD").is_some() {
        let before: Vec<_> = std::env::vars_os().collect();
        let element = make_element(Some("tone_bands.onnx"), &[]);
        let errors = start_errors(&element);
        assert!(errors.is_empty(), "{errors:?}");
        let after: Vec<_> = std::env::vars_os().collect();
        assert_eq!(before, after, "the element changed the process environment");
        return;
    }
    for user_opt_out in [false, true] {
        let home = std::env::temp_dir().join(format!(
            "seremotion-home-{}-{user_opt_out}",
            std::process::id()
        ));
        std::fs::create_dir_all(&home).expect("temp home");
        let mut child = child_test("onnx_runtime_telemetry_and_environment");
        // The library found under the real home, since the child's home is empty.
        if let Some(lib) = seremotion_core::model::runtime_candidates()
            .into_iter()
            .find(|p| p.is_absolute() && p.exists())
        {
            child.env("SEREMOTION_ORT_LIB", lib);
        }
        child
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env_remove("ORT_DISABLE_TELEMETRY");
        if user_opt_out {
            child.env("ORT_DISABLE_TELEMETRY", "1");
        }
        let status = child.status().expect("child runs");
        // GStreamer's own plugin registry cache is the one expected file.
        let left: Vec<_> = walk(&home)
            .into_iter()
            .filter(|p| !p.starts_with(home.join(".cache/gstreamer-1.0")))
            .collect();
        let _ = std::fs::remove_dir_all(&home);
        assert!(status.success(), "child test failed");
        if user_opt_out {
            assert!(left.is_empty(), "ONNX Runtime wrote {left:?}");
        }
    }
}

/// A command that runs just the test `name` of this binary, marked as the
/// child so that the test takes its in-process branch.
fn child_test(name: &str) -> std::process::Command {
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"));
    child
        .args(["--exact", name, "--nocapture"])
        .env("SEREMOTION_TEST_CHILD", "1");
    child
}

/// In the parent test process: runs test `name` in a child process, asserts
/// that it passed and returns true. In that child: returns false, so the test
/// goes on with its own process to itself.
fn reran_in_child(name: &str) -> bool {
    if std::env::var_os("SEREMOTION_TEST_CHILD").is_some() {
        return false;
    }
    let status = child_test(name).status().expect("child runs");
    assert!(status.success(), "child test {name} failed");
    true
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn gst_launch_pipeline_posts_messages() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc num-buffers=150 samplesperbuffer=1024 freq={:.1} ! audio/x-raw,rate=44100,channels=2 ! audioconvert ! seremotion model-path=\"{}\" ! fakesink",
        tone_for(3),
        fixture("tone_bands.onnx").display()
    ))
    .expect("pipeline parses");
    let bus = pipeline.bus().expect("bus");
    pipeline.set_state(gst::State::Playing).expect("starts");
    let mut emotions = Vec::new();
    let mut summary = None;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(30)) {
        match msg.view() {
            gst::MessageView::Element(e) => {
                let s = e.structure().expect("structure");
                if s.name() == "seremotion" {
                    emotions.push(s.get::<String>("emotion").expect("emotion"));
                } else if s.name() == "seremotion-summary" {
                    summary = Some(s.get::<String>("dominant").expect("dominant"));
                }
            }
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => (),
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    // 150 x 1024 samples at 44.1 kHz = 3.48 s: three full windows and the tail.
    // A steady tone is no speech (hum is one): every window is silence.
    assert_eq!(emotions.len(), 4, "{emotions:?}");
    assert!(emotions.iter().all(|e| e == "silence"), "{emotions:?}");
    assert_eq!(summary.as_deref(), Some("silence"));
}

/// The committed ensemble model for call recordings follows the model
/// contract: the element loads it by path and posts normalised scores with it.
#[test]
fn committed_ensemble_model_runs_in_the_element() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/ensemble/ensemble.onnx");
    let element = make_element(None, &[("model-path", path)]);
    assert_eq!(labels_of(&element), LABELS);
    let (mut h, bus) = harness(&element, MONO_16K);
    push_tone(&mut h, 2, 48000, gst::ClockTime::ZERO);
    assert!(h.push_event(gst::event::Eos::new()));
    let (windows, summaries) = windows(&bus);
    // 2 s windows a second apart cover 3 s with two: 0–2 s and 1–3 s.
    let starts: Vec<u64> = windows.iter().map(|w| w.timestamp.seconds()).collect();
    assert_eq!(starts, [0, 1]);
    for w in &windows {
        let sum: f64 = w.scores.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "scores sum to {sum}");
        assert!(
            LABELS.contains(&w.emotion.as_str()) || w.emotion == "uncertain",
            "{}",
            w.emotion
        );
    }
    assert_eq!(summaries.len(), 1);
}

// ---------------------------------------------------------------------------
// Regression tests for issue 11's defects
// ---------------------------------------------------------------------------

/// Harvests every buffer the harness has passed downstream, as bytes.
fn pulled_bytes(h: &mut gst_check::Harness) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(buffer) = h.try_pull() {
        out.extend_from_slice(&buffer.map_readable().expect("readable"));
    }
    out
}

fn emotions_and_starts(windows: &[Window]) -> Vec<(String, gst::ClockTime)> {
    windows
        .iter()
        .map(|w| (w.emotion.clone(), w.timestamp))
        .collect()
}

/// Buffers cut at any byte (sub-buffers at odd offsets, partial samples) are
/// analysed exactly like aligned ones and pass through bit-identically.
#[test]
fn unaligned_and_partial_buffers_work_and_pass_through() {
    let tone = sine(tone_for(3), 16000, 0.5, 40000);
    let bytes: Vec<u8> = tone.iter().flat_map(|s| s.to_le_bytes()).collect();

    let aligned = {
        let element = make_element(Some("tone_bands.onnx"), &[]);
        let (mut h, bus) = harness(&element, MONO_16K);
        push_f32(&mut h, &tone, 16000, 1, gst::ClockTime::ZERO);
        assert!(h.push_event(gst::event::Eos::new()));
        emotions_and_starts(&windows(&bus).0)
    };
    assert_eq!(aligned.len(), 3, "{aligned:?}");

    let element = make_element(Some("tone_bands.onnx"), &[]);
    let (mut h, bus) = harness(&element, MONO_16K);
    // One big buffer, pushed as sub-buffers of odd sizes at odd offsets.
    let whole = gst::Buffer::from_slice(bytes.clone());
    let mut offset = 0;
    for size in [1usize, 3, 5, 6, 4097, 1001, 2, 7].iter().cycle() {
        if offset >= bytes.len() {
            break;
        }
        let size = (*size).min(bytes.len() - offset);
        let mut piece = whole
            .copy_region(gst::BufferCopyFlags::MEMORY, offset..offset + size)
            .expect("sub-buffer");
        piece.get_mut().expect("writable").set_pts(if offset == 0 {
            Some(gst::ClockTime::ZERO)
        } else {
            None
        });
        h.push(piece).expect("unaligned buffer accepted");
        offset += size;
    }
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(emotions_and_starts(&windows(&bus).0), aligned);
    assert_eq!(pulled_bytes(&mut h), bytes, "passthrough is bit-identical");
}

/// A float WAV whose data starts 2 bytes off a 4-byte boundary.
fn odd_float_wav(samples: &[f32], rate: u32, channels: u16) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut wav = Vec::new();
    let riff_len = 4 + (8 + 16) + (8 + 2) + (8 + data.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(riff_len as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
    wav.extend_from_slice(&channels.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 4 * u32::from(channels)).to_le_bytes());
    wav.extend_from_slice(&(4 * channels).to_le_bytes());
    wav.extend_from_slice(&32u16.to_le_bytes());
    // A 2-byte chunk before the data: the samples start at byte 54.
    wav.extend_from_slice(b"pad ");
    wav.extend_from_slice(&2u32.to_le_bytes());
    wav.extend_from_slice(&[0, 0]);
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    wav
}

/// Runs `description` (with `{}` for the element) to EOS; returns the window
/// emotions, the summary and every warning text.
fn run_pipeline(description: &str) -> (Vec<String>, Option<gst::Structure>, Vec<String>) {
    init();
    let pipeline = gst::parse::launch(description).expect("pipeline parses");
    let bus = pipeline.bus().expect("bus");
    pipeline.set_state(gst::State::Playing).expect("starts");
    let mut emotions = Vec::new();
    let mut summary = None;
    let mut warnings = Vec::new();
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
        match msg.view() {
            gst::MessageView::Element(e) => {
                let s = e.structure().expect("structure");
                if s.name() == "seremotion" {
                    emotions.push(s.get::<String>("emotion").expect("emotion"));
                } else if s.name() == "seremotion-summary" {
                    summary = Some(s.to_owned());
                }
            }
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                let _ = pipeline.set_state(gst::State::Null);
                panic!("{description}: {} ({:?})", e.error(), e.debug())
            }
            _ => (),
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    (emotions, summary, warnings)
}

#[test]
fn float_wav_at_odd_offsets_through_real_pipelines() {
    let rate = 44100;
    let mono = sine(tone_for(3), rate, 0.5, rate as usize * 7 / 2);
    let stereo: Vec<f32> = mono.iter().flat_map(|&s| [s, s]).collect();
    let path = std::env::temp_dir().join(format!("seremotion-odd-{}.wav", std::process::id()));
    std::fs::write(&path, odd_float_wav(&stereo, rate, 2)).expect("write wav");
    let model = fixture("tone_bands.onnx");
    for front in [
        "filesrc location=\"{wav}\" ! wavparse ! audioconvert",
        "filesrc location=\"{wav}\" blocksize=1001 ! queue ! wavparse",
        "filesrc location=\"{wav}\" blocksize=777 ! decodebin ! audioconvert",
    ] {
        let front = front.replace("{wav}", &path.display().to_string());
        let description = format!(
            "{front} ! seremotion model-path=\"{}\" ! fakesink",
            model.display()
        );
        let (emotions, summary, _) = run_pipeline(&description);
        // 3.5 s: three full windows a second apart, and the tail.
        assert_eq!(emotions.len(), 4, "{front}: {emotions:?}");
        assert!(
            emotions.iter().all(|e| e == "angry"),
            "{front}: {emotions:?}"
        );
        let summary = summary.expect("summary");
        assert_eq!(summary.get::<&str>("dominant").expect("dominant"), "angry");
    }
    // fdsrc, as a shell pipeline would read the file.
    let file = std::fs::File::open(&path).expect("open wav");
    use std::os::fd::AsRawFd;
    let description = format!(
        "fdsrc fd={} blocksize=999 ! decodebin ! audioconvert ! seremotion model-path=\"{}\" ! fakesink",
        file.as_raw_fd(),
        model.display()
    );
    let (emotions, _, _) = run_pipeline(&description);
    assert_eq!(emotions.len(), 4, "fdsrc: {emotions:?}");
    drop(file);
    let _ = std::fs::remove_file(&path);
}

/// Pushes `samples` in 20 ms buffers whose timestamps are off by `jitter(i)`
/// (never before zero), with `flags` on every buffer.
fn push_jittered(
    h: &mut gst_check::Harness,
    samples: &[f32],
    jitter: impl Fn(usize) -> i64,
    flags: gst::BufferFlags,
) {
    let rate = 16000u64;
    for (i, piece) in samples.chunks(320).enumerate() {
        let exact = (i as u64 * 320 * 1_000_000_000 / rate) as i64;
        let pts = gst::ClockTime::from_nseconds((exact + jitter(i)).max(0) as u64);
        let mut buffer = f32_buffer(piece, Some(pts), 16000, 1);
        buffer.get_mut().expect("writable").set_flags(flags);
        h.push(buffer).expect("push");
    }
}

#[test]
fn timestamp_jitter_and_discont_flags_keep_full_windows() {
    let tone = sine(tone_for(1), 16000, 0.5, 16000 * 4);
    // A 1 s window of the fixture: 97 frames of 512 samples, 160 apart.
    let full = gst::ClockTime::from_mseconds(992);
    // Jitter of 20-50 ms either way, as bursty network audio gets from do-timestamp.
    let jitter = |i: usize| {
        let ms = 20 + (i * 37 % 31) as i64;
        if i.is_multiple_of(3) { -ms } else { ms }
    };
    for (what, flags) in [
        ("jitter", gst::BufferFlags::empty()),
        (
            "jitter + DISCONT on every buffer",
            gst::BufferFlags::DISCONT,
        ),
    ] {
        let element = make_element(Some("tone_bands.onnx"), &[]);
        let (mut h, bus) = harness(&element, MONO_16K);
        push_jittered(&mut h, &tone, jitter, flags);
        let exact_discont = what.contains("DISCONT");
        assert!(h.push_event(gst::event::Eos::new()));
        let (ws, _) = windows(&bus);
        let starts: Vec<u64> = ws.iter().map(|w| w.timestamp.mseconds()).collect();
        // The grid follows the sample count: one full window a second, then the tail.
        assert_eq!(ws.len(), 4, "{what}: {starts:?}");
        assert!(
            ws[..3]
                .iter()
                .all(|w| w.duration >= full && w.emotion == "happy"),
            "{what} (exact DISCONT {exact_discont}): {starts:?}"
        );
        assert_eq!(&starts[..3], [0, 1000, 2000], "{what}");
    }
    // Every buffer DISCONT, timestamps exact: still full windows.
    let element = make_element(Some("tone_bands.onnx"), &[]);
    let (mut h, bus) = harness(&element, MONO_16K);
    push_jittered(&mut h, &tone, |_| 0, gst::BufferFlags::DISCONT);
    assert!(h.push_event(gst::event::Eos::new()));
    let (ws, _) = windows(&bus);
    assert_eq!(ws.len(), 4);
    assert!(ws[..3].iter().all(|w| w.duration >= full));
    // A DISCONT buffer that really jumps restarts the grid at its timestamp.
    let element = make_element(Some("tone_bands.onnx"), &[]);
    let (mut h, bus) = harness(&element, MONO_16K);
    push_f32(&mut h, &tone[..16000], 16000, 1, gst::ClockTime::ZERO);
    let mut jumped = f32_buffer(
        &tone[..320],
        Some(gst::ClockTime::from_seconds(10)),
        16000,
        1,
    );
    jumped
        .get_mut()
        .expect("writable")
        .set_flags(gst::BufferFlags::DISCONT);
    h.push(jumped).expect("push");
    push_f32(
        &mut h,
        &tone[320..16000],
        16000,
        1,
        gst::ClockTime::from_nseconds(10_020_000_000),
    );
    assert!(h.push_event(gst::event::Eos::new()));
    let (ws, _) = windows(&bus);
    let starts: Vec<u64> = ws.iter().map(|w| w.timestamp.mseconds()).collect();
    assert_eq!(starts, [0, 10_000]);
}

fn time_segment(start: u64, base: u64) -> gst::FormattedSegment<gst::ClockTime> {
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(gst::ClockTime::from_seconds(start));
    segment.set_time(gst::ClockTime::from_seconds(start));
    segment.set_base(gst::ClockTime::from_seconds(base));
    segment
}

fn running_times(bus: &gst::Bus) -> (Vec<Option<gst::ClockTime>>, Vec<gst::Structure>) {
    let mut times = Vec::new();
    let mut summaries = Vec::new();
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Element(e) = msg.view() {
            let s = e.structure().expect("structure");
            if s.name() == "seremotion" {
                times.push(
                    s.get::<Option<gst::ClockTime>>("running-time")
                        .expect("running-time"),
                );
                assert!(
                    s.get::<Option<gst::ClockTime>>("stream-time")
                        .expect("stream-time")
                        .is_some(),
                    "stream-time is never NONE: {s}"
                );
            } else if s.name() == "seremotion-summary" {
                summaries.push(s.to_owned());
            }
        }
    }
    (times, summaries)
}

#[test]
fn summary_covers_caps_changes_and_segments_keep_running_time_in_order() {
    // 2 s at 16 kHz, then 2 s at 48 kHz: the summary covers all 4 s.
    let element = make_element(Some("tone_bands.onnx"), &[]);
    let (mut h, bus) = harness(&element, MONO_16K);
    push_tone(&mut h, 2, 32000, gst::ClockTime::ZERO);
    switch_to_mono(&mut h, 48000);
    push_tone_at(&mut h, 2, 48000, 96000, gst::ClockTime::from_seconds(2));
    assert!(h.push_event(gst::event::Eos::new()));
    let (windows, summaries) = windows(&bus);
    let summary = &summaries[0];
    assert_eq!(
        summary.get::<gst::ClockTime>("duration").expect("duration"),
        gst::ClockTime::from_seconds(4)
    );
    assert_eq!(
        summary.get::<u64>("windows").expect("windows"),
        windows.len() as u64
    );
    assert!(windows.len() >= 4, "{}", windows.len());

    // A new segment (non-flushing) cuts the stretch: its window keeps the old
    // segment's running time, and running times never go back.
    let element = make_element(Some("tone_bands.onnx"), &[]);
    let (mut h, bus) = harness(&element, MONO_16K);
    push_tone(&mut h, 1, 24000, gst::ClockTime::ZERO);
    assert!(h.push_event(gst::event::Segment::new(&time_segment(100, 5))));
    push_tone(&mut h, 1, 24000, gst::ClockTime::from_seconds(100));
    assert!(h.push_event(gst::event::Eos::new()));
    let (times, _) = running_times(&bus);
    let times: Vec<u64> = times
        .iter()
        .map(|t| t.expect("running time").mseconds())
        .collect();
    // 0-1 s; the 1-1.5 s tail drained at the new segment, in the old one's
    // running time (1 s, not the new base of 5 s); then the new segment's.
    assert_eq!(times, [0, 1000, 5000, 6000], "{times:?}");

    // After a seek, the first buffer starts before the segment: times clamp.
    let element = make_element(Some("tone_bands.onnx"), &[]);
    let (mut h, bus) = harness(&element, MONO_16K);
    assert!(h.push_event(gst::event::Segment::new(&time_segment(10, 0))));
    push_tone(&mut h, 1, 32000, gst::ClockTime::from_mseconds(9_800));
    assert!(h.push_event(gst::event::Eos::new()));
    let (times, _) = running_times(&bus);
    assert_eq!(times[0], Some(gst::ClockTime::ZERO), "{times:?}");
    assert_eq!(times[1], Some(gst::ClockTime::from_mseconds(800)));
}

/// `n` samples of hum: 50 Hz and its harmonics, as a bad ground adds.
fn hum(n: usize, rate: u32) -> Vec<f32> {
    let tau = 2.0 * std::f64::consts::PI;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (1..=6)
                .map(|h| 0.2 / h as f64 * (tau * 50.0 * h as f64 * t).sin())
                .sum::<f64>() as f32
        })
        .collect()
}

fn white_noise(n: usize, amplitude: f32) -> Vec<f32> {
    let mut z = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            amplitude * ((z >> 11) as f32 / (1u64 << 52) as f32 - 1.0)
        })
        .collect()
}

#[test]
fn dc_hum_noise_steady_tones_gaps_and_digital_zero_are_never_an_emotion() {
    let n = 16000 * 3;
    let dc: Vec<f32> = white_noise(n, 1e-4).iter().map(|w| 0.3 + w).collect();
    type Props = &'static [(&'static str, &'static str)];
    let cases: Vec<(&str, Vec<f32>, Props)> = vec![
        ("DC offset", dc, &[]),
        ("mains hum", hum(n, 16000), &[]),
        ("white noise", white_noise(n, 0.1), &[]),
        ("steady tone", steady_sine(tone_for(3), 16000, 0.5, n), &[]),
        (
            "digital zero, lowest threshold",
            vec![0.0; n],
            &[("speech-threshold", "-120"), ("min-speech", "0")],
        ),
    ];
    for model in [Some("tone_bands.onnx"), None] {
        for (what, audio, props) in &cases {
            let element = make_element(model, props);
            let (mut h, bus) = harness(&element, MONO_16K);
            push_f32(&mut h, audio, 16000, 1, gst::ClockTime::ZERO);
            assert!(h.push_event(gst::event::Eos::new()));
            let (windows, summaries) = windows(&bus);
            assert!(!windows.is_empty());
            assert!(
                windows.iter().all(|w| w.emotion == "silence"),
                "{what} ({model:?}): {:?}",
                windows.iter().map(|w| &w.emotion).collect::<Vec<_>>()
            );
            assert_eq!(
                summaries[0].get::<&str>("dominant").expect("dominant"),
                "silence"
            );
        }
    }
    // GAP buffers are silence, whatever bytes they carry.
    let element = make_element(Some("tone_bands.onnx"), &[]);
    let (mut h, bus) = harness(&element, MONO_16K);
    let tone = sine(tone_for(3), 16000, 0.5, 32000);
    for (i, piece) in tone.chunks(320).enumerate() {
        let pts = gst::ClockTime::from_mseconds(20 * i as u64);
        let mut buffer = f32_buffer(piece, Some(pts), 16000, 1);
        buffer
            .get_mut()
            .expect("writable")
            .set_flags(gst::BufferFlags::GAP);
        h.push(buffer).expect("push");
    }
    // An empty GAP buffer with a duration, then a GAP event: 2 more silent seconds.
    let mut empty = gst::Buffer::new();
    {
        let b = empty.get_mut().expect("writable");
        b.set_pts(gst::ClockTime::from_seconds(2));
        b.set_duration(gst::ClockTime::from_seconds(1));
        b.set_flags(gst::BufferFlags::GAP);
    }
    h.push(empty).expect("push");
    assert!(
        h.push_event(
            gst::event::Gap::builder(gst::ClockTime::from_seconds(3))
                .duration(gst::ClockTime::from_seconds(1))
                .build()
        )
    );
    assert!(h.push_event(gst::event::Eos::new()));
    let (windows, summaries) = windows(&bus);
    assert!(windows.iter().all(|w| w.emotion == "silence"));
    assert_eq!(
        summaries[0]
            .get::<gst::ClockTime>("duration")
            .expect("duration"),
        gst::ClockTime::from_seconds(4)
    );
}

/// `text` spoken by espeak-ng (installed by scripts/setup.sh), 16 kHz mono.
fn espeak_16k(text: &str) -> Vec<f32> {
    let out = std::process::Command::new("espeak-ng")
        .args(["--stdout", "-v", "en-us", text])
        .output()
        .expect("espeak-ng runs (scripts/setup.sh installs it)");
    assert!(out.status.success());
    // 16-bit mono WAV with a 44-byte header, at espeak-ng's 22050 Hz.
    let rate = u32::from_le_bytes(out.stdout[24..28].try_into().expect("4 bytes"));
    let samples: Vec<f32> = out.stdout[44..]
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    seremotion_core::resample::resample(&samples, rate, 16000).expect("resample")
}

#[test]
fn speech_at_10_db_snr_is_still_analysed() {
    let mut voice = espeak_16k(
        "Kids are talking by the door. Dogs are sitting by the door. \
         I can't believe you did that. This is wonderful, thank you so much.",
    );
    let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
    let gain = 0.03 / rms(&voice);
    voice.iter_mut().for_each(|v| *v *= gain);
    let noise = white_noise(voice.len(), 1.0);
    let noise_gain = rms(&voice) / rms(&noise) / 10f32.powf(0.5);
    let noisy: Vec<f32> = voice
        .iter()
        .zip(&noise)
        .map(|(v, w)| v + noise_gain * w)
        .collect();
    let noise_alone: Vec<f32> = noise.iter().map(|w| noise_gain * w).collect();
    let analysed = |audio: &[f32]| {
        let element = make_element(None, &[]);
        let (mut h, bus) = harness(&element, MONO_16K);
        push_f32(&mut h, audio, 16000, 1, gst::ClockTime::ZERO);
        assert!(h.push_event(gst::event::Eos::new()));
        let (windows, _) = windows(&bus);
        let speech = windows.iter().filter(|w| w.emotion != "silence").count();
        (speech, windows.len())
    };
    let (speech, total) = analysed(&noisy);
    eprintln!("espeak-ng speech at 10 dB SNR: {speech} of {total} windows analysed");
    assert!(
        speech * 2 >= total,
        "10 dB SNR: {speech} of {total} windows analysed"
    );
    let (speech, total) = analysed(&noise_alone);
    assert_eq!(
        speech, 0,
        "the noise alone: {speech} of {total} windows analysed"
    );
}

#[test]
fn model_path_set_while_playing_applies_at_next_start_and_models_are_released() {
    init();
    let dir = std::env::temp_dir().join(format!("seremotion-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("model.onnx");
    std::fs::copy(fixture("tone_bands.onnx"), &path).expect("copy");
    let element = make_element(None, &[("model-path", path.to_str().expect("utf-8"))]);
    let (mut h, bus) = harness(&element, MONO_16K);
    push_tone(&mut h, 1, 16000, gst::ClockTime::ZERO);
    // Changed while PLAYING: the running stream keeps its model, through caps changes too.
    element.set_property("model-path", fixture("tone_bands_fixed.onnx").to_str());
    switch_to_mono(&mut h, 32000);
    push_tone_at(&mut h, 1, 32000, 32000, gst::ClockTime::from_seconds(1));
    assert!(h.push_event(gst::event::Eos::new()));
    let (windows, _) = windows(&bus);
    assert!(windows.len() >= 2 && windows.iter().all(|w| w.emotion == "happy"));
    drop(h);

    let _ = std::fs::remove_dir_all(&dir);
}

/// Rewriting a model file and restarting does not keep the old model alive.
/// In a child process: other tests load models concurrently.
#[test]
fn rewritten_model_files_are_released() {
    if reran_in_child("rewritten_model_files_are_released") {
        return;
    }
    init();
    let dir = std::env::temp_dir().join(format!("seremotion-rewrite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("model.onnx");
    let bytes = std::fs::read(fixture("tone_bands.onnx")).expect("fixture");
    let element = make_element(None, &[("model-path", path.to_str().expect("utf-8"))]);
    assert_eq!(seremotion_core::model::models_in_use(), 0);
    for round in 0..5u8 {
        // The same graph plus an unknown protobuf field: a new file to the cache.
        let mut rewritten = bytes.clone();
        rewritten.extend_from_slice(&[0xfa, 0x0f, 0x01, b'0' + round]);
        std::fs::write(&path, &rewritten).expect("rewrite");
        element.set_state(gst::State::Paused).expect("starts");
        assert_eq!(seremotion_core::model::models_in_use(), 1, "round {round}");
        element.set_state(gst::State::Null).expect("stops");
        assert_eq!(seremotion_core::model::models_in_use(), 0, "round {round}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn caps_outside_the_rate_range_get_a_warning_saying_what_helps() {
    init();
    // A 4 kHz WAV: wavparse offers caps the element refuses, at run time.
    let tone = sine(500.0, 4000, 0.5, 8000);
    let path = std::env::temp_dir().join(format!("seremotion-4k-{}.wav", std::process::id()));
    std::fs::write(&path, odd_float_wav(&tone, 4000, 1)).expect("write wav");
    let pipeline = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! wavparse ! seremotion model-path=\"{}\" ! fakesink",
        path.display(),
        fixture("tone_bands.onnx").display()
    ))
    .expect("parses");
    let bus = pipeline.bus().expect("bus");
    let _ = pipeline.set_state(gst::State::Playing);
    let mut warnings = Vec::new();
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(10)) {
        match msg.view() {
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Error(_) | gst::MessageView::Eos(_) => break,
            _ => (),
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    let _ = std::fs::remove_file(&path);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("audioresample") && w.contains("8000") && w.contains("4000")),
        "{warnings:?}"
    );
}

/// `bare` with `meta` embedded, written to a temporary file named after `tag`.
fn write_model(bare: &[u8], meta: &seremotion_core::model::ModelMetadata, tag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("seremotion-{tag}-{}.onnx", std::process::id()));
    std::fs::write(
        &path,
        seremotion_core::model::writer::embed_metadata(bare, meta),
    )
    .expect("write");
    path
}

#[test]
fn nan_logits_are_uncertain_with_a_warning() {
    init();
    // The fixture's logit scale 0.1 becomes NaN: every logit is NaN.
    let mut bare = std::fs::read(fixture("tone_bands_bare.onnx")).expect("fixture");
    let scale = 0.1f32.to_le_bytes();
    let at: Vec<usize> = (0..bare.len() - 3)
        .filter(|&i| bare[i..i + 4] == scale)
        .collect();
    assert_eq!(at.len(), 1, "the scale appears once in the fixture");
    bare[at[0]..at[0] + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let meta = seremotion_core::model::ModelMetadata {
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        sample_rate: 16000,
        window: 1.0,
        features: FeatureConfig::default(),
        training: serde_json::json!({}),
    };
    let path = write_model(&bare, &meta, "nan");
    let element = make_element(None, &[("model-path", path.to_str().expect("utf-8"))]);
    let (mut h, bus) = harness(&element, MONO_16K);
    push_tone(&mut h, 3, 32000, gst::ClockTime::ZERO);
    assert!(h.push_event(gst::event::Eos::new()));
    let mut warnings = Vec::new();
    let mut emotions = Vec::new();
    while let Some(msg) = bus.pop() {
        match msg.view() {
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Element(e) => {
                let s = e.structure().expect("structure");
                if s.name() == "seremotion" {
                    emotions.push(s.get::<String>("emotion").expect("emotion"));
                    let scores = s.get::<gst::Structure>("scores").expect("scores");
                    for label in LABELS {
                        assert!(scores.get::<f64>(label).expect("score").is_finite());
                    }
                }
            }
            _ => (),
        }
    }
    assert!(
        !emotions.is_empty() && emotions.iter().all(|e| e == "uncertain"),
        "{emotions:?}"
    );
    assert_eq!(warnings.len(), 1, "one warning per stream: {warnings:?}");
    assert!(warnings[0].contains("NaN") && warnings[0].contains("seremotion-nan"));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn short_windows_and_extreme_timestamps() {
    // A 50 ms window is a 50 ms window (rounded to whole frames), not 100 ms.
    let element = make_element(
        Some("tone_bands.onnx"),
        &[("window", "50000000"), ("interval", "50000000")],
    );
    let pspec = element.find_property("window").expect("window");
    let pspec = pspec
        .downcast_ref::<glib::ParamSpecUInt64>()
        .expect("uint64");
    assert_eq!(pspec.minimum(), 0);
    assert_eq!(element.property::<u64>("window"), 50_000_000);
    let (mut h, bus) = harness(&element, MONO_16K);
    push_tone(&mut h, 3, 16000, gst::ClockTime::ZERO);
    assert!(h.push_event(gst::event::Eos::new()));
    let (ws, _) = windows(&bus);
    // 50 ms = 800 samples = 2 frames of 512 samples, 160 apart: 35.2 ms each.
    assert!(ws.len() >= 19, "{}", ws.len());
    assert_eq!(ws[0].duration, gst::ClockTime::from_nseconds(42_000_000));

    // Timestamps at the end of the clock's range neither panic nor wrap.
    let element = make_element(Some("tone_bands.onnx"), &[]);
    let (mut h, bus) = harness(&element, MONO_16K);
    let near_end = gst::ClockTime::MAX - gst::ClockTime::from_mseconds(500);
    // Only the first buffer is timestamped: the element counts on past the clock's end.
    let tone = sine(tone_for(3), 16000, 0.5, 32000);
    for (i, piece) in tone.chunks(320).enumerate() {
        let pts = (i == 0).then_some(near_end);
        h.push(f32_buffer(piece, pts, 16000, 1)).expect("push");
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let (ws, _) = windows(&bus);
    assert!(!ws.is_empty());
    assert!(ws.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    assert!(ws.iter().all(|w| w.timestamp >= near_end));
}

#[test]
fn odd_rates_give_timely_results_on_eight_channels() {
    // 8 channels at 44101 Hz; 191999 Hz on 2 (its filter is long, and debug builds are slow).
    for (rate, n) in [(44101u32, 8usize), (191999, 2)] {
        let element = make_element(Some("tone_bands.onnx"), &[("channel-mode", "per-channel")]);
        let caps = format!(
            "audio/x-raw,format=F32LE,rate={rate},channels={n},channel-mask=(bitmask)0,layout=interleaved"
        );
        let (mut h, bus) = harness(&element, &caps);
        let mono = sine(tone_for(2), rate, 0.5, rate as usize * 5 / 2);
        let interleaved: Vec<f32> = mono
            .iter()
            .flat_map(|&s| std::iter::repeat_n(s, n))
            .collect();
        push_f32(&mut h, &interleaved, rate, n, gst::ClockTime::ZERO);
        // 2.5 s in, no EOS yet: the windows at 0 s and 1 s (ending at 1.99 s)
        // are out on every channel; a resampler holding back a second would not have them.
        let (ws, _) = windows(&bus);
        for channel in 0..n as i32 {
            let starts: Vec<u64> = ws
                .iter()
                .filter(|w| w.channel == channel)
                .map(|w| w.timestamp.seconds())
                .collect();
            assert_eq!(starts, [0, 1], "{rate} Hz, channel {channel}");
        }
        assert!(ws.iter().all(|w| w.emotion == "sad"), "{rate} Hz");
    }
}

#[test]
fn a_gap_event_elsewhere_on_the_timeline_restarts_the_windows_there() {
    let element = make_element(Some("tone_bands.onnx"), &[]);
    let (mut h, bus) = harness(&element, MONO_16K);
    push_tone(&mut h, 3, 16000, gst::ClockTime::ZERO);
    assert!(
        h.push_event(
            gst::event::Gap::builder(gst::ClockTime::from_seconds(5))
                .duration(gst::ClockTime::from_seconds(2))
                .build()
        )
    );
    assert!(h.push_event(gst::event::Eos::new()));
    let (ws, _) = windows(&bus);
    let got: Vec<(u64, &str)> = ws
        .iter()
        .map(|w| (w.timestamp.seconds(), w.emotion.as_str()))
        .collect();
    assert_eq!(got, [(0, "angry"), (5, "silence"), (6, "silence")]);
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// An element torn down after a stream is freed with everything it held. The
/// element fuzzer once ran out of file descriptors: its bus, set on the element
/// by hand, kept the teardown's messages, which hold the element, which holds
/// the bus (a pipeline flushes its bus at NULL; a harness does not). In a
/// child process: other tests open files concurrently.
#[test]
fn torn_down_elements_are_freed_with_their_bus() {
    if reran_in_child("torn_down_elements_are_freed_with_their_bus") {
        return;
    }
    let run = |n_samples: usize| {
        let element = make_element(Some("tone_bands.onnx"), &[]);
        let weak = element.downgrade();
        let (mut h, bus) = harness(&element, MONO_16K);
        h.play();
        if n_samples > 0 {
            push_tone(&mut h, 1, n_samples, gst::ClockTime::ZERO);
        }
        h.push_event(gst::event::Eos::new());
        drop(h);
        bus.set_flushing(true);
        element.set_bus(None);
        drop((bus, element));
        weak.upgrade().is_none()
    };
    for n in [0, 100, 40000] {
        assert!(run(n), "the element outlived its harness ({n} samples)");
    }
    let before = open_fds();
    for _ in 0..50 {
        run(40000);
    }
    let after = open_fds();
    assert!(
        after <= before + 2,
        "{before} open files before 50 streams, {after} after"
    );
}

/// A model with a voice baseline tells in every message how much of the
/// voice it has heard; the baseline keeps growing through a call and starts
/// again with a new stream (another call or file).
#[test]
fn the_voice_baseline_grows_through_a_call_and_restarts_with_a_new_stream() {
    init();
    let reference = seremotion_core::model::Model::from_file(&fixture("tone_bands.onnx"))
        .expect("fixture loads");
    let mut meta = reference.metadata().clone();
    meta.features.normalization = features::WindowNormalization::SubtractStreamMean;
    meta.features.stream_prior = vec![-40.0; meta.features.n_features()];
    meta.features.stream_prior_frames = 100.0;
    let bare = std::fs::read(fixture("tone_bands_bare.onnx")).expect("fixture");
    let path = write_model(&bare, &meta, "voice");
    let element = make_element(None, &[("model-path", path.to_str().expect("utf-8"))]);
    let (mut h, bus) = harness(&element, MONO_16K);
    let voice_seconds = |bus: &gst::Bus| -> Vec<f64> {
        std::iter::from_fn(|| bus.pop())
            .filter_map(|msg| match msg.view() {
                gst::MessageView::Element(e) => e
                    .structure()
                    .filter(|s| s.name() == "seremotion")
                    .map(|s| s.get::<f64>("voice-seconds").expect("voice-seconds")),
                _ => None,
            })
            .collect()
    };
    let speech = signals::speechy(16000, 1, 16000 * 8);
    push_f32(&mut h, &speech, 16000, 1, gst::ClockTime::ZERO);
    let first_call = voice_seconds(&bus);
    assert!(first_call.len() >= 6, "{first_call:?}");
    assert!(
        first_call.windows(2).all(|w| w[0] < w[1]),
        "grows with speech: {first_call:?}"
    );
    let heard = *first_call.last().expect("windows");
    assert!(
        heard > 3.0 && heard < 8.0,
        "{heard} s of 8 s of speech-like audio"
    );

    assert!(h.push_event(gst::event::StreamStart::new("second-call")));
    push_f32(
        &mut h,
        &speech[..16000 * 3],
        16000,
        1,
        gst::ClockTime::from_seconds(8),
    );
    // The same audio again: the same growth from nothing.
    let second_call = voice_seconds(&bus);
    assert!(!second_call.is_empty());
    assert_eq!(
        second_call,
        first_call[..second_call.len()],
        "a new stream starts from the prior"
    );
    let _ = std::fs::remove_file(&path);
}
