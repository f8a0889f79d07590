//! The `seremotion` element in gst_check harnesses and real pipelines.
//!
//! Most tests use `tests/fixtures/tone_bands.onnx`, a model with a known
//! answer: logit j is the mean of log-mel band `BANDS[j]` over the window, so a
//! pure tone in band `BANDS[j]` is classified as label j. That proves that
//! features reach the model channels-first and that labels map correctly,
//! independently of whatever the trained default model has learnt.

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

fn sine(freq: f64, rate: u32, amplitude: f64, n: usize) -> Vec<f32> {
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
    push_f32(h, &sine(tone_for(band), 16000, 0.5, n), 16000, 1, start);
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

/// Starts `element` in a pipeline and returns the error messages on its bus.
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
            gst::MessageView::Error(e) => errors.push(format!("{} {:?}", e.error(), e.debug())),
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
    assert_eq!(emotions.len(), 4, "{emotions:?}");
    assert!(emotions.iter().all(|e| e == "angry"));
    assert_eq!(summary.as_deref(), Some("angry"));
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
