// The `seremotion` element: a passthrough BaseTransform that posts the emotion
// heard in each window of audio as an element message.
//
// Audio flows: interleaved little-endian input, at any byte alignment (partial
// samples carry over to the next buffer) -> f32 (non-finite samples become
// silence, GAP buffers are silence) -> mix or split channels -> resample to the
// model's rate -> EmotionAnalyzer (features once per frame, windows, speech
// decision, ONNX model) -> messages.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use once_cell::sync::Lazy;

use seremotion_core::analysis::{
    self, AnalyzerSettings, EmotionAnalyzer, SummaryAccumulator, WindowResult,
};
use seremotion_core::model::{Model, ModelError};
use seremotion_core::resample::StreamResampler;

static CAT: Lazy<gst::DebugCategory> = Lazy::new(|| {
    gst::DebugCategory::new(
        "seremotion",
        gst::DebugColorFlags::empty(),
        Some("Speech emotion recognition"),
    )
});

/// Which audio a stream of results is computed from.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSerEmotionChannelMode")]
#[non_exhaustive]
pub enum ChannelMode {
    #[enum_value(
        name = "Mix: downmix all channels into one stream of results",
        nick = "mix"
    )]
    Mix = 0,
    #[enum_value(
        name = "Per channel: one stream of results per channel (e.g. agent and customer)",
        nick = "per-channel"
    )]
    PerChannel = 1,
}

const DEFAULT_WINDOW: gst::ClockTime = gst::ClockTime::ZERO;
const DEFAULT_INTERVAL: gst::ClockTime = gst::ClockTime::SECOND;
const DEFAULT_CHANNEL_MODE: ChannelMode = ChannelMode::Mix;
const DEFAULT_MIN_CONFIDENCE: f64 = 0.0;
const DEFAULT_POST_MESSAGES: bool = true;
const DEFAULT_SPEECH_THRESHOLD: f64 = analysis::DEFAULT_SPEECH_THRESHOLD_DB as f64;
const DEFAULT_MIN_SPEECH: f64 = analysis::DEFAULT_MIN_SPEECH_RATIO as f64;
const MAX_WINDOW: gst::ClockTime = gst::ClockTime::from_seconds(60);
const MIN_INTERVAL: gst::ClockTime = gst::ClockTime::from_mseconds(10);
const MAX_INTERVAL: gst::ClockTime = gst::ClockTime::from_seconds(3600);
/// A DISCONT buffer this close to where the sample count says it should start
/// continues the window grid (every buffer of some sources is DISCONT).
const DISCONT_TOLERANCE: gst::ClockTime = gst::ClockTime::from_mseconds(60);
/// Without DISCONT, timestamps are trusted over the sample count only when
/// they jump this far, on two buffers in a row: live sources jitter by tens of ms.
const LASTING_JUMP: gst::ClockTime = gst::ClockTime::from_seconds(1);
/// Input frames converted and analysed at a time, bounding memory for huge buffers.
const CHUNK_FRAMES: usize = 8192;

/// Emotion reported for windows that were gated as silence.
pub const SILENCE: &str = "silence";
/// Emotion reported when the best score is below `min-confidence`.
pub const UNCERTAIN: &str = "uncertain";

#[derive(Debug, Clone, Copy)]
struct Settings {
    window: gst::ClockTime,
    interval: gst::ClockTime,
    channel_mode: ChannelMode,
    min_confidence: f64,
    post_messages: bool,
    speech_threshold: f64,
    min_speech: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window: DEFAULT_WINDOW,
            interval: DEFAULT_INTERVAL,
            channel_mode: DEFAULT_CHANNEL_MODE,
            min_confidence: DEFAULT_MIN_CONFIDENCE,
            post_messages: DEFAULT_POST_MESSAGES,
            speech_threshold: DEFAULT_SPEECH_THRESHOLD,
            min_speech: DEFAULT_MIN_SPEECH,
        }
    }
}

/// One stream of results: the mix, or one input channel.
struct Channel {
    /// -1 for the mix, else the input channel index.
    index: i32,
    resampler: StreamResampler,
    analyzer: EmotionAnalyzer,
    /// This channel's input samples of the current buffer, and their resampled form.
    input: Vec<f32>,
    resampled: Vec<f32>,
}

/// What the EOS summary covers: all audio since start (or the last flush),
/// across caps changes.
struct Totals {
    /// Per result stream, by channel index (-1 = the mix).
    summaries: Vec<(i32, SummaryAccumulator)>,
    analysed: gst::ClockTime,
}

/// Built in `set_caps`, dropped in `stop`.
struct State {
    info: gst_audio::AudioInfo,
    model: Arc<Model>,
    settings: Settings,
    channels: Vec<Channel>,
    totals: Totals,
    /// Time of the first sample since the last reset, and input samples per channel since then.
    anchor: Option<gst::ClockTime>,
    samples_since_anchor: u64,
    /// Bytes of an incomplete sample frame left by the last buffer.
    partial: Vec<u8>,
    /// Offset (ns, signed) of the last buffer that jumped by LASTING_JUMP without DISCONT.
    suspect_jump: Option<i128>,
    /// A warning about NaN/Inf model output was posted for this stream.
    warned_non_finite: bool,
}

/// A stretch of input: bytes to decode, or silence (GAP).
enum Audio<'a> {
    Bytes(&'a [u8]),
    Silence(u64),
}

#[derive(Default)]
pub struct SerEmotion {
    settings: Mutex<Settings>,
    model_path: Mutex<Option<PathBuf>>,
    /// Loaded in `start`; kept across caps changes (a new `model-path` applies at the next start).
    model: Mutex<Option<Arc<Model>>>,
    state: Mutex<Option<State>>,
    /// The unsupported-caps warning was posted (once per start).
    warned_caps: AtomicBool,
}

#[glib::object_subclass]
impl ObjectSubclass for SerEmotion {
    const NAME: &'static str = "GstSerEmotion";
    type Type = super::SerEmotion;
    // Not `gst_audio::AudioFilter`, though it would parse the caps for us: on
    // GStreamer 1.22 it clips input buffers to the segment before the element
    // sees them, so the audio leaving would no longer be the audio that came
    // in, and the clipped part would never be analysed (tried 2026-12-05).
    type ParentType = gst_base::BaseTransform;
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning only follows a panic elsewhere; the data is still consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl SerEmotion {
    fn load_model(&self) -> Result<Arc<Model>, ModelError> {
        match lock(&self.model_path).clone() {
            Some(path) => Model::from_file(&path),
            None => Model::default_model(),
        }
    }

    /// The error applications show: its message (not only the debug text) says
    /// which file and what is wrong with it.
    fn error_message(err: &ModelError) -> gst::ErrorMessage {
        match err {
            ModelError::RuntimeNotFound { .. } | ModelError::RuntimeUnusable { .. } => {
                gst::error_msg!(gst::LibraryError::Init, ("{}", err), ["{:?}", err])
            }
            ModelError::Io { .. } => {
                gst::error_msg!(gst::ResourceError::NotFound, ("{}", err), ["{:?}", err])
            }
            ModelError::Invalid { .. } => {
                gst::error_msg!(gst::LibraryError::Settings, ("{}", err), ["{:?}", err])
            }
            ModelError::Inference { .. } => {
                gst::error_msg!(gst::LibraryError::Failed, ("{}", err), ["{:?}", err])
            }
        }
    }

    fn analyzer_settings(model: &Model, settings: &Settings) -> AnalyzerSettings {
        let frame_rate = model.metadata().features.frame_rate();
        let window_frames = if settings.window.is_zero() {
            model.window_frames()
        } else {
            let cfg = &model.metadata().features;
            let samples = analysis::ns_to_samples(settings.window.nseconds(), cfg.sample_rate);
            cfg.frames_in(usize::try_from(samples).unwrap_or(usize::MAX))
                .max(1)
        };
        AnalyzerSettings {
            window_frames,
            hop_frames: analysis::seconds_to_frames(settings.interval.seconds_f64(), frame_rate),
            speech_threshold_db: settings.speech_threshold as f32,
            min_speech_ratio: settings.min_speech as f32,
        }
    }

    fn build_state(
        &self,
        info: gst_audio::AudioInfo,
        model: Arc<Model>,
        settings: Settings,
        mut totals: Totals,
    ) -> Result<State, gst::LoggableError> {
        let analyzer_settings = Self::analyzer_settings(&model, &settings);
        let n_streams = match settings.channel_mode {
            ChannelMode::Mix => 1,
            ChannelMode::PerChannel => info.channels() as usize,
        };
        let model_rate = model.metadata().sample_rate;
        let mut channels = Vec::with_capacity(n_streams);
        for i in 0..n_streams {
            let resampler = StreamResampler::new(info.rate(), model_rate).map_err(|e| {
                gst::loggable_error!(
                    CAT,
                    "Cannot resample {} Hz to {} Hz: {}",
                    info.rate(),
                    model_rate,
                    e
                )
            })?;
            let analyzer = EmotionAnalyzer::new(model.clone(), analyzer_settings)
                .map_err(|e| gst::loggable_error!(CAT, "{}", e))?;
            let index = match settings.channel_mode {
                ChannelMode::PerChannel => i as i32,
                _ => -1,
            };
            if !totals.summaries.iter().any(|(i, _)| *i == index) {
                totals
                    .summaries
                    .push((index, SummaryAccumulator::new(model.n_labels())));
            }
            channels.push(Channel {
                index,
                resampler,
                analyzer,
                input: Vec::with_capacity(CHUNK_FRAMES),
                resampled: Vec::new(),
            });
        }
        gst::debug!(
            CAT,
            imp = self,
            "Configured for {} Hz x {} channels, {} result stream(s), analyzer {:?}",
            info.rate(),
            info.channels(),
            n_streams,
            analyzer_settings
        );
        Ok(State {
            info,
            model,
            settings,
            channels,
            totals,
            anchor: None,
            samples_since_anchor: 0,
            partial: Vec::new(),
            suspect_jump: None,
            warned_non_finite: false,
        })
    }

    /// Builds the `seremotion` message for one window of one channel.
    fn window_message(
        &self,
        state: &State,
        segment: &gst::FormattedSegment<gst::ClockTime>,
        channel: i32,
        result: &WindowResult,
    ) -> Option<gst::Message> {
        let anchor = state.anchor?;
        let cfg = &state.model.metadata().features;
        let hop = cfg.hop_length as u64;
        let start_sample = result.start_frame.saturating_mul(hop);
        let span = (result.n_frames.saturating_sub(1) as u64)
            .saturating_mul(hop)
            .saturating_add(cfg.n_fft as u64);
        let timestamp = gst::ClockTime::from_nseconds(analysis::time_after(
            anchor.nseconds(),
            start_sample,
            cfg.sample_rate,
        ));
        let duration =
            gst::ClockTime::from_nseconds(analysis::samples_to_ns(span, cfg.sample_rate));
        let labels = state.model.labels();
        let (emotion, confidence) = match result.top() {
            None if result.non_finite => (UNCERTAIN, 0.0),
            None => (SILENCE, 0.0),
            Some((_, score)) if f64::from(score) < state.settings.min_confidence => {
                (UNCERTAIN, f64::from(score))
            }
            Some((i, score)) => (labels[i].as_str(), f64::from(score)),
        };
        gst::debug!(
            CAT,
            imp = self,
            "Channel {} window {} + {}: {} ({:.3}), speech {:.2}",
            channel,
            timestamp,
            duration,
            emotion,
            confidence,
            result.speech_ratio
        );
        let mut scores = gst::Structure::builder("scores");
        for (i, label) in labels.iter().enumerate() {
            let score = result
                .scores
                .filter(|_| !result.non_finite)
                .map_or(0.0, |s| f64::from(s[i]));
            scores = scores.field(label.as_str(), score);
        }
        // A window that starts before the segment (first buffer after a seek)
        // is given the segment's start, not "none".
        let position = clamp_to_segment(segment, timestamp);
        let mut s = gst::Structure::builder("seremotion")
            .field("timestamp", timestamp)
            .field("stream-time", segment.to_stream_time(position))
            .field("running-time", segment.to_running_time(position))
            .field("duration", duration)
            .field("channel", channel)
            .field("emotion", emotion)
            .field("confidence", confidence)
            .field("speech-ratio", f64::from(result.speech_ratio))
            .field("scores", scores.build());
        if let Some(frames) = result.voice_frames {
            // How much of this voice the baseline has heard: early windows
            // of a call are judged mostly against the training voices.
            s = s.field("voice-seconds", frames / cfg.frame_rate());
        }
        Some(
            gst::message::Element::builder(s.build())
                .src(&*self.obj())
                .build(),
        )
    }

    fn summary_messages(&self, state: &State) -> Vec<gst::Message> {
        let labels = state.model.labels();
        state
            .totals
            .summaries
            .iter()
            .map(|(index, acc)| {
                let summary = acc.summary();
                let mut shares = gst::Structure::builder("shares");
                let mut means = gst::Structure::builder("mean-scores");
                for (i, label) in labels.iter().enumerate() {
                    let share = summary.shares.get(i).copied().unwrap_or(0.0);
                    let mean = summary.mean_scores.get(i).copied().unwrap_or(0.0);
                    shares = shares.field(label.as_str(), f64::from(share));
                    means = means.field(label.as_str(), f64::from(mean));
                }
                let dominant = summary
                    .dominant()
                    .and_then(|i| labels.get(i))
                    .map_or(SILENCE, |l| l.as_str());
                let s = gst::Structure::builder("seremotion-summary")
                    .field("channel", *index)
                    .field("duration", state.totals.analysed)
                    .field("windows", summary.windows as u64)
                    .field("speech-windows", summary.speech_windows as u64)
                    .field("dominant", dominant)
                    .field("shares", shares.build())
                    .field("mean-scores", means.build())
                    .build();
                gst::message::Element::builder(s).src(&*self.obj()).build()
            })
            .collect()
    }

    /// The segment of the buffers being analysed (BaseTransform keeps it).
    fn segment(&self) -> gst::FormattedSegment<gst::ClockTime> {
        self.obj()
            .segment()
            .downcast::<gst::ClockTime>()
            .unwrap_or_else(|_| gst::FormattedSegment::new())
    }

    /// Runs every channel's analyzer over its freshly resampled audio (or
    /// flushes it at the end of a stretch of audio) and collects the messages.
    fn analyse(
        &self,
        state: &mut State,
        segment: &gst::FormattedSegment<gst::ClockTime>,
        flush: bool,
        messages: &mut Vec<gst::Message>,
    ) -> Result<(), ModelError> {
        let post = state.settings.post_messages;
        let mut channels = std::mem::take(&mut state.channels);
        let mut totals = std::mem::replace(
            &mut state.totals,
            Totals {
                summaries: Vec::new(),
                analysed: gst::ClockTime::ZERO,
            },
        );
        let mut non_finite = false;
        let mut outcome = Ok(());
        for channel in channels.iter_mut() {
            if flush {
                channel.resampler.flush(&mut channel.resampled);
            }
            let Channel {
                index,
                analyzer,
                resampled,
                ..
            } = channel;
            let summary = totals
                .summaries
                .iter_mut()
                .find(|(i, _)| i == index)
                .map(|(_, acc)| acc);
            let mut summary = summary;
            let mut on_result = |r: &WindowResult| {
                non_finite |= r.non_finite;
                if let Some(acc) = summary.as_deref_mut() {
                    acc.add(r);
                }
                if post && let Some(m) = self.window_message(state, segment, *index, r) {
                    messages.push(m);
                }
            };
            let mut result = analyzer.push(resampled, &mut on_result);
            if flush && result.is_ok() {
                result = analyzer.flush(&mut on_result);
                analyzer.reset();
                channel.resampler.reset();
            }
            channel.resampled.clear();
            if outcome.is_ok() {
                outcome = result;
            }
        }
        state.channels = channels;
        state.totals = totals;
        if non_finite && !state.warned_non_finite {
            state.warned_non_finite = true;
            let text = format!(
                "{} gave NaN or infinite scores; such windows are reported as \"{}\"",
                state.model.origin(),
                UNCERTAIN
            );
            gst::warning!(CAT, imp = self, "{}", text);
            // Posted with the other messages, once the state lock is released.
            messages.push(
                gst::message::Warning::builder(gst::StreamError::Decode, &text)
                    .src(&*self.obj())
                    .build(),
            );
        }
        outcome
    }

    /// Ends the current stretch of audio: analyses what is buffered, then starts afresh.
    fn drain(
        &self,
        state: &mut State,
        segment: &gst::FormattedSegment<gst::ClockTime>,
        messages: &mut Vec<gst::Message>,
    ) -> Result<(), ModelError> {
        let result = self.analyse(state, segment, true, messages);
        state.anchor = None;
        state.samples_since_anchor = 0;
        state.suspect_jump = None;
        result
    }

    /// Restarts the window grid when the buffer's timestamp says the audio
    /// does not continue where the sample count says: after a DISCONT buffer
    /// that does not line up, or a jump of LASTING_JUMP that lasts two buffers.
    fn follow_timeline(
        &self,
        state: &mut State,
        segment: &gst::FormattedSegment<gst::ClockTime>,
        pts: Option<gst::ClockTime>,
        discont: bool,
        messages: &mut Vec<gst::Message>,
    ) -> Result<(), ModelError> {
        let mut outcome = Ok(());
        if let (Some(anchor), Some(pts)) = (state.anchor, pts) {
            let expected = analysis::time_after(
                anchor.nseconds(),
                state.samples_since_anchor,
                state.info.rate(),
            );
            let offset = i128::from(pts.nseconds()) - i128::from(expected);
            let tolerance = i128::from(DISCONT_TOLERANCE.nseconds());
            let restart = if offset.abs() <= tolerance {
                state.suspect_jump = None;
                false
            } else if discont {
                true
            } else if offset.abs() >= i128::from(LASTING_JUMP.nseconds()) {
                let lasting = state
                    .suspect_jump
                    .is_some_and(|prev| (prev - offset).abs() <= tolerance);
                state.suspect_jump = Some(offset);
                lasting
            } else {
                // Jitter: the sample count keeps the timeline.
                false
            };
            if restart {
                gst::debug!(
                    CAT,
                    imp = self,
                    "Discontinuity (DISCONT flag: {}): expected {}, got {}; restarting windows",
                    discont,
                    gst::ClockTime::from_nseconds(expected),
                    pts
                );
                outcome = self.drain(state, segment, messages);
            }
        }
        if state.anchor.is_none() {
            let start = segment.start().unwrap_or(gst::ClockTime::ZERO);
            state.anchor = Some(pts.unwrap_or(start));
            state.samples_since_anchor = 0;
            state.suspect_jump = None;
        }
        outcome
    }

    /// Decodes, resamples and analyses a stretch of input, `CHUNK_FRAMES` at
    /// a time. A model failure is returned for the caller to post once the
    /// state lock is released.
    fn process(
        &self,
        state: &mut State,
        segment: &gst::FormattedSegment<gst::ClockTime>,
        audio: Audio,
        messages: &mut Vec<gst::Message>,
    ) -> Result<Option<ModelError>, gst::FlowError> {
        let bpf = state.info.bpf() as usize;
        let mut outcome = Ok(());
        let mut feed = |state: &mut State, chunk: Audio| -> Result<(), gst::FlowError> {
            let frames = match chunk {
                Audio::Bytes(bytes) => self.decode(state, bytes)?,
                Audio::Silence(n) => {
                    for channel in state.channels.iter_mut() {
                        channel.input.clear();
                        channel.input.resize(n as usize, 0.0);
                    }
                    n
                }
            };
            for channel in state.channels.iter_mut() {
                channel
                    .resampler
                    .process(&channel.input, &mut channel.resampled);
            }
            state.samples_since_anchor = state.samples_since_anchor.saturating_add(frames);
            state.totals.analysed = gst::ClockTime::from_nseconds(analysis::time_after(
                state.totals.analysed.nseconds(),
                frames,
                state.info.rate(),
            ));
            if let Err(err) = self.analyse(state, segment, false, messages)
                && outcome.is_ok()
            {
                outcome = Err(err);
            }
            Ok(())
        };
        match audio {
            Audio::Bytes(mut data) => {
                // Complete the sample frame the last buffer left unfinished.
                if !state.partial.is_empty() {
                    let take = (bpf - state.partial.len()).min(data.len());
                    state.partial.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if state.partial.len() == bpf {
                        let frame = std::mem::take(&mut state.partial);
                        feed(state, Audio::Bytes(&frame))?;
                        state.partial = frame;
                        state.partial.clear();
                    }
                }
                let whole = data.len() / bpf * bpf;
                for chunk in data[..whole].chunks(CHUNK_FRAMES * bpf) {
                    feed(state, Audio::Bytes(chunk))?;
                }
                state.partial.extend_from_slice(&data[whole..]);
            }
            Audio::Silence(mut frames) => {
                state.partial.clear();
                while frames > 0 {
                    let n = frames.min(CHUNK_FRAMES as u64);
                    feed(state, Audio::Silence(n))?;
                    frames -= n;
                }
            }
        }
        Ok(outcome.err())
    }

    /// Splits (or mixes) whole sample frames of little-endian `data`, at any
    /// alignment, into each channel's f32 input; returns the frame count.
    fn decode(&self, state: &mut State, data: &[u8]) -> Result<u64, gst::FlowError> {
        let mix = state.settings.channel_mode == ChannelMode::Mix;
        let n_channels = state.info.channels() as usize;
        let bpf = state.info.bpf() as usize;
        let frames = data.len() / bpf;
        for channel in state.channels.iter_mut() {
            channel.input.clear();
            channel.input.resize(frames, 0.0);
        }
        let channels = &mut state.channels;
        match state.info.format() {
            gst_audio::AudioFormat::S16le => {
                deinterleave::<2>(data, n_channels, mix, channels, |b| {
                    f32::from(i16::from_le_bytes(b)) / 32768.0
                })
            }
            gst_audio::AudioFormat::S32le => {
                deinterleave::<4>(data, n_channels, mix, channels, |b| {
                    i32::from_le_bytes(b) as f32 / 2_147_483_648.0
                })
            }
            gst_audio::AudioFormat::F32le => {
                deinterleave::<4>(data, n_channels, mix, channels, f32::from_le_bytes)
            }
            gst_audio::AudioFormat::F64le => {
                deinterleave::<8>(data, n_channels, mix, channels, |b| {
                    f64::from_le_bytes(b) as f32
                })
            }
            other => {
                // The pad template only lets the formats above through.
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    (
                        "seremotion cannot read {} audio; it reads S16LE, S32LE, F32LE and F64LE \
                         (put audioconvert before it)",
                        other.to_str()
                    )
                );
                return Err(gst::FlowError::NotNegotiated);
            }
        }
        Ok(frames as u64)
    }

    fn post_all(&self, messages: Vec<gst::Message>) {
        let obj = self.obj();
        for message in messages {
            // Fails only without a bus (e.g. not in a pipeline); nothing to do then.
            let _ = obj.post_message(message);
        }
    }

    /// Posts, once per start, what the element accepts when upstream offers caps it cannot take.
    fn warn_unsupported_caps(&self, offered: &gst::CapsRef) {
        if self.warned_caps.swap(true, Ordering::Relaxed) {
            return;
        }
        let template = Self::template_caps();
        gst::element_imp_warning!(
            self,
            gst::CoreError::Negotiation,
            (
                "seremotion cannot take {}: it accepts {}. Put `audioconvert ! audioresample` \
                 before seremotion to convert the format and the rate.",
                offered,
                template
            )
        );
    }

    fn template_caps() -> gst::Caps {
        gst_audio::AudioCapsBuilder::new_interleaved()
            .format_list([
                gst_audio::AudioFormat::S16le,
                gst_audio::AudioFormat::S32le,
                gst_audio::AudioFormat::F32le,
                gst_audio::AudioFormat::F64le,
            ])
            .rate_range(8000..=192_000)
            .channels_range(1..=8)
            .build()
    }
}

/// `timestamp` moved into `segment`'s [start, stop].
fn clamp_to_segment(
    segment: &gst::FormattedSegment<gst::ClockTime>,
    timestamp: gst::ClockTime,
) -> gst::ClockTime {
    let mut t = timestamp;
    if let Some(start) = segment.start() {
        t = t.max(start);
    }
    if let Some(stop) = segment.stop() {
        t = t.min(stop);
    }
    t
}

/// Reads interleaved `N`-byte samples with `read` (from little-endian bytes,
/// so any host and any alignment work) into the channels' inputs.
fn deinterleave<const N: usize>(
    data: &[u8],
    n_channels: usize,
    mix: bool,
    channels: &mut [Channel],
    read: impl Fn([u8; N]) -> f32,
) {
    let sample = |bytes: &[u8]| {
        let mut b = [0u8; N];
        b.copy_from_slice(bytes);
        finite(read(b))
    };
    let frames = data.chunks_exact(N * n_channels);
    if n_channels == 1 {
        // Mono (or a mono mix): one straight pass that the compiler vectorises.
        for (out, bytes) in channels[0].input.iter_mut().zip(frames) {
            *out = sample(bytes);
        }
    } else if mix {
        for (out, frame) in channels[0].input.iter_mut().zip(frames) {
            let sum: f32 = frame.chunks_exact(N).map(sample).sum();
            *out = sum / n_channels as f32;
        }
    } else {
        // One pass per channel, so that each writes its input in order.
        for (c, channel) in channels.iter_mut().enumerate() {
            for (out, frame) in channel.input.iter_mut().zip(frames.clone()) {
                *out = sample(&frame[c * N..(c + 1) * N]);
            }
        }
    }
}

/// NaN and infinite samples carry no sound; treat them as silence.
#[inline]
fn finite(sample: f32) -> f32 {
    if sample.is_finite() {
        sample.clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

impl ObjectImpl for SerEmotion {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(|| {
            vec![
                glib::ParamSpecString::builder("model-path")
                    .nick("Model path")
                    .blurb("seremotion ONNX model file; unset = the embedded default model (4 labels: neutral, happy, sad, angry). A change applies at the next start (READY -> PAUSED)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("window")
                    .nick("Window")
                    .blurb("Audio analysed per result, in nanoseconds; 0 = the model's own window (most accurate). Other values are rounded to whole feature frames, at least one (32 ms with the default model)")
                    .minimum(0)
                    .maximum(MAX_WINDOW.nseconds())
                    .default_value(DEFAULT_WINDOW.nseconds())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("interval")
                    .nick("Interval")
                    .blurb("Time between the starts of consecutive windows, in nanoseconds (windows overlap when shorter than the window)")
                    .minimum(MIN_INTERVAL.nseconds())
                    .maximum(MAX_INTERVAL.nseconds())
                    .default_value(DEFAULT_INTERVAL.nseconds())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("channel-mode", DEFAULT_CHANNEL_MODE)
                    .nick("Channel mode")
                    .blurb("Analyse the downmix, or each channel on its own (e.g. agent and customer of a stereo call)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("min-confidence")
                    .nick("Minimum confidence")
                    .blurb("Windows whose best score is below this are reported as emotion \"uncertain\" (scores still included)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_MIN_CONFIDENCE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb("Post a \"seremotion\" element message per window and channel (the summary at EOS is always posted)")
                    .default_value(DEFAULT_POST_MESSAGES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("speech-threshold")
                    .nick("Speech threshold")
                    .blurb("Frames whose voice-band level (RMS, dBFS) is at or below this are never speech; louder frames count as speech when they also rise above the noise floor (steady hum, noise and DC never do)")
                    .minimum(f64::from(*analysis::SPEECH_THRESHOLD_RANGE_DB.start()))
                    .maximum(f64::from(*analysis::SPEECH_THRESHOLD_RANGE_DB.end()))
                    .default_value(DEFAULT_SPEECH_THRESHOLD)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("min-speech")
                    .nick("Minimum speech")
                    .blurb("Fraction of a window's frames that must be speech for it to be classified; other windows are reported as \"silence\"")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_MIN_SPEECH)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<glib::StrV>("labels")
                    .nick("Labels")
                    .blurb("The labels the model can report, in score order (empty if the model cannot be loaded)")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        match pspec.name() {
            "model-path" => {
                let path: Option<String> = value.get().expect("type checked upstream");
                let path = path.filter(|p| !p.is_empty()).map(PathBuf::from);
                // The running stream keeps its model; the new one is loaded at the next start.
                gst::info!(
                    CAT,
                    imp = self,
                    "Model path set to {:?} (applies at the next start)",
                    path
                );
                *lock(&self.model_path) = path;
            }
            "window" => {
                settings.window =
                    gst::ClockTime::from_nseconds(value.get().expect("type checked upstream"));
                gst::debug!(CAT, imp = self, "Window set to {}", settings.window);
            }
            "interval" => {
                settings.interval =
                    gst::ClockTime::from_nseconds(value.get().expect("type checked upstream"));
                gst::debug!(CAT, imp = self, "Interval set to {}", settings.interval);
            }
            "channel-mode" => settings.channel_mode = value.get().expect("type checked upstream"),
            "min-confidence" => {
                settings.min_confidence = value.get().expect("type checked upstream");
                if let Some(state) = lock(&self.state).as_mut() {
                    state.settings.min_confidence = settings.min_confidence;
                }
            }
            "post-messages" => {
                settings.post_messages = value.get().expect("type checked upstream");
                if let Some(state) = lock(&self.state).as_mut() {
                    state.settings.post_messages = settings.post_messages;
                }
            }
            "speech-threshold" => {
                settings.speech_threshold = value.get().expect("type checked upstream")
            }
            "min-speech" => settings.min_speech = value.get().expect("type checked upstream"),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
        gst::debug!(
            CAT,
            imp = self,
            "Property {} set: {:?}",
            pspec.name(),
            *settings
        );
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "model-path" => lock(&self.model_path)
                .as_ref()
                .map(|p| p.display().to_string())
                .to_value(),
            "window" => settings.window.nseconds().to_value(),
            "interval" => settings.interval.nseconds().to_value(),
            "channel-mode" => settings.channel_mode.to_value(),
            "min-confidence" => settings.min_confidence.to_value(),
            "post-messages" => settings.post_messages.to_value(),
            "speech-threshold" => settings.speech_threshold.to_value(),
            "min-speech" => settings.min_speech.to_value(),
            "labels" => {
                drop(settings);
                let labels = match self.load_model() {
                    Ok(model) => model.labels().to_vec(),
                    Err(err) => {
                        gst::warning!(CAT, imp = self, "No labels: {}", err);
                        Vec::new()
                    }
                };
                glib::StrV::from(labels).to_value()
            }
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }
}

impl GstObjectImpl for SerEmotion {}

impl ElementImpl for SerEmotion {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: Lazy<gst::subclass::ElementMetadata> = Lazy::new(|| {
            gst::subclass::ElementMetadata::new(
                "Speech emotion recognition",
                "Filter/Analyzer/Audio",
                "Passes audio through untouched and posts the emotion heard in each window \
                 (\"seremotion\" element messages: timestamp, stream-time, running-time, duration, \
                 channel, emotion, confidence, scores) and a \"seremotion-summary\" message at EOS",
                "seremotion developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: Lazy<Vec<gst::PadTemplate>> = Lazy::new(|| {
            let caps = SerEmotion::template_caps();
            // Building templates from static caps cannot fail.
            let src = gst::PadTemplate::new(
                "src",
                gst::PadDirection::Src,
                gst::PadPresence::Always,
                &caps,
            )
            .expect("valid src template");
            let sink = gst::PadTemplate::new(
                "sink",
                gst::PadDirection::Sink,
                gst::PadPresence::Always,
                &caps,
            )
            .expect("valid sink template");
            vec![src, sink]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for SerEmotion {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let model = self.load_model().map_err(|e| Self::error_message(&e))?;
        gst::info!(
            CAT,
            imp = self,
            "Using {} (labels {:?}, {} Hz, {} frames per window)",
            model.origin(),
            model.labels(),
            model.metadata().sample_rate,
            model.window_frames()
        );
        *lock(&self.model) = Some(model);
        self.warned_caps.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = None;
        // Lets the cache drop the model once no element uses it.
        *lock(&self.model) = None;
        gst::info!(CAT, imp = self, "Stopped");
        Ok(())
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Sink {
            // Where GStreamer lets the element speak before a bare
            // not-negotiated: say what it accepts.
            let offered = match query.view() {
                gst::QueryView::Caps(q) => q.filter().map(|c| c.to_owned()),
                gst::QueryView::AcceptCaps(q) => Some(q.caps().to_owned()),
                _ => None,
            };
            if let Some(offered) = offered
                && !offered.is_empty()
                && !offered.is_any()
                && offered.iter().all(|s| s.name() == "audio/x-raw")
                && !offered.can_intersect(&Self::template_caps())
            {
                self.warn_unsupported_caps(&offered);
            }
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_audio::AudioInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "Failed to parse input caps {}", incaps))?;
        if info.layout() != gst_audio::AudioLayout::Interleaved {
            return Err(gst::loggable_error!(
                CAT,
                "Only interleaved audio is supported"
            ));
        }
        let model = lock(&self.model)
            .clone()
            .ok_or_else(|| gst::loggable_error!(CAT, "No model loaded"))?;
        let settings = *lock(&self.settings);

        // A caps change mid-stream ends the audio analysed with the old caps;
        // the summary goes on counting.
        let mut messages = Vec::new();
        let mut totals = Totals {
            summaries: Vec::new(),
            analysed: gst::ClockTime::ZERO,
        };
        if let Some(mut old) = lock(&self.state).take() {
            if old.info == info {
                *lock(&self.state) = Some(old);
                return Ok(());
            }
            gst::debug!(CAT, imp = self, "Caps change to {}: draining", incaps);
            if let Err(err) = self.drain(&mut old, &self.segment(), &mut messages) {
                gst::warning!(CAT, imp = self, "Draining on caps change failed: {}", err);
            }
            totals = old.totals;
        }
        let state = self.build_state(info, model, settings, totals)?;
        *lock(&self.state) = Some(state);
        self.post_all(messages);
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        use gst::EventView;
        let mut messages = Vec::new();
        let mut failure = None;
        match event.view() {
            EventView::Segment(e) => {
                // The window cut at a new segment belongs to the old one: drain
                // before BaseTransform takes the new segment.
                let old = self.segment();
                let changed = e
                    .segment()
                    .downcast_ref::<gst::ClockTime>()
                    .is_none_or(|new| *new != old);
                if changed && let Some(state) = lock(&self.state).as_mut() {
                    gst::debug!(CAT, imp = self, "New segment: draining the old one's audio");
                    failure = self.drain(state, &old, &mut messages).err();
                }
            }
            EventView::Gap(e) => {
                // A gap is silence on the timeline.
                let (ts, duration) = e.get();
                if let Some(state) = lock(&self.state).as_mut() {
                    let segment = self.segment();
                    let frames = duration.map_or(0, |d| {
                        analysis::ns_to_samples(d.nseconds(), state.info.rate())
                    });
                    // A gap says where it is: trust it like a DISCONT buffer.
                    failure = self
                        .follow_timeline(state, &segment, Some(ts), true, &mut messages)
                        .err();
                    if frames > 0 && failure.is_none() {
                        failure = self
                            .process(state, &segment, Audio::Silence(frames), &mut messages)
                            .ok()
                            .flatten();
                    }
                }
            }
            EventView::StreamStart(_) => {
                // Another call or file: a voice baseline (models that keep
                // one) starts again from the model's prior.
                if let Some(state) = lock(&self.state).as_mut() {
                    gst::debug!(
                        CAT,
                        imp = self,
                        "New stream: forgetting the voice baselines"
                    );
                    for channel in state.channels.iter_mut() {
                        channel.analyzer.forget_voice();
                    }
                }
            }
            EventView::FlushStop(_) => {
                if let Some(state) = lock(&self.state).as_mut() {
                    gst::debug!(CAT, imp = self, "Flush: forgetting buffered audio");
                    for channel in state.channels.iter_mut() {
                        channel.analyzer.reset();
                        channel.resampler.reset();
                        channel.resampled.clear();
                    }
                    for (_, acc) in state.totals.summaries.iter_mut() {
                        acc.reset();
                    }
                    state.totals.analysed = gst::ClockTime::ZERO;
                    state.anchor = None;
                    state.samples_since_anchor = 0;
                    state.partial.clear();
                    state.suspect_jump = None;
                }
            }
            EventView::Eos(_) => {
                if let Some(state) = lock(&self.state).as_mut() {
                    failure = self.drain(state, &self.segment(), &mut messages).err();
                    messages.extend(self.summary_messages(state));
                }
            }
            _ => (),
        }
        self.post_all(messages);
        if let Some(err) = failure {
            self.post_error_message(Self::error_message(&err));
        }
        self.parent_sink_event(event)
    }

    fn transform_ip_passthrough(
        &self,
        buf: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let segment = self.segment();
        let mut messages = Vec::new();
        let result = {
            let mut guard = lock(&self.state);
            let state = guard.as_mut().ok_or_else(|| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ("No caps were set before the first buffer")
                );
                gst::FlowError::NotNegotiated
            })?;
            let map = buf.map_readable().map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ("Failed to map an input buffer readable")
                );
                gst::FlowError::Error
            })?;
            let flags = buf.flags();
            let rate = state.info.rate();
            let bpf = state.info.bpf() as u64;
            let audio = if flags.contains(gst::BufferFlags::GAP) {
                // GAP buffers are silence whatever their bytes; an empty one lasts its duration.
                let frames = if map.is_empty() {
                    buf.duration()
                        .map_or(0, |d| analysis::ns_to_samples(d.nseconds(), rate))
                } else {
                    map.len() as u64 / bpf
                };
                Audio::Silence(frames)
            } else {
                Audio::Bytes(&map)
            };
            if matches!(audio, Audio::Bytes(b) if b.is_empty())
                || matches!(audio, Audio::Silence(0))
            {
                return Ok(gst::FlowSuccess::Ok);
            }
            let discont = flags.contains(gst::BufferFlags::DISCONT);
            // Keep results on the buffer timeline: restart the window grid at
            // a discontinuity, after draining what was heard before it.
            match self.follow_timeline(state, &segment, buf.pts(), discont, &mut messages) {
                Err(err) => Ok(Some(err)),
                Ok(()) => self.process(state, &segment, audio, &mut messages),
            }
        };
        self.post_all(messages);
        match result? {
            None => Ok(gst::FlowSuccess::Ok),
            Some(err) => {
                self.post_error_message(Self::error_message(&err));
                Err(gst::FlowError::Error)
            }
        }
    }
}
