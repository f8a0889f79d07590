// The `seremotion` element: a passthrough BaseTransform that posts the emotion
// heard in each window of audio as an element message.
//
// Audio flows: interleaved input -> f32 (non-finite samples become silence)
// -> mix or split channels -> resample to the model's rate -> EmotionAnalyzer
// (features once per frame, windows, speech gate, ONNX model) -> messages.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use byte_slice_cast::*;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
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

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSerEmotionChannelMode")]
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
const MIN_WINDOW: gst::ClockTime = gst::ClockTime::from_mseconds(100);
const MAX_WINDOW: gst::ClockTime = gst::ClockTime::from_seconds(60);
const MIN_INTERVAL: gst::ClockTime = gst::ClockTime::from_mseconds(10);
const MAX_INTERVAL: gst::ClockTime = gst::ClockTime::from_seconds(3600);
/// Timestamps further than this from where the sample count says the buffer
/// should start are treated as a discontinuity.
const DISCONT_TOLERANCE: gst::ClockTime = gst::ClockTime::from_mseconds(40);

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
    summary: SummaryAccumulator,
    /// This channel's input samples of the current buffer, and their resampled form.
    input: Vec<f32>,
    resampled: Vec<f32>,
}

/// Built in `set_caps`, dropped in `stop`.
struct State {
    info: gst_audio::AudioInfo,
    model: Arc<Model>,
    settings: Settings,
    channels: Vec<Channel>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// Time of the first sample since the last reset, and input samples per channel since then.
    anchor: Option<gst::ClockTime>,
    samples_since_anchor: u64,
    /// Total time analysed since start, for the summary.
    analysed: gst::ClockTime,
}

#[derive(Default)]
pub struct SerEmotion {
    settings: Mutex<Settings>,
    model_path: Mutex<Option<PathBuf>>,
    /// Loaded in `start`; kept across caps changes.
    model: Mutex<Option<Arc<Model>>>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for SerEmotion {
    const NAME: &'static str = "GstSerEmotion";
    type Type = super::SerEmotion;
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

    fn error_message(err: &ModelError) -> gst::ErrorMessage {
        match err {
            ModelError::RuntimeNotFound { .. } | ModelError::RuntimeUnusable { .. } => {
                gst::error_msg!(gst::LibraryError::Init, ["{}", err])
            }
            ModelError::Io { .. } => gst::error_msg!(gst::ResourceError::NotFound, ["{}", err]),
            ModelError::Invalid { .. } => {
                gst::error_msg!(gst::LibraryError::Settings, ["{}", err])
            }
            ModelError::Inference { .. } => gst::error_msg!(gst::LibraryError::Failed, ["{}", err]),
        }
    }

    fn analyzer_settings(model: &Model, settings: &Settings) -> AnalyzerSettings {
        let frame_rate = model.metadata().features.frame_rate();
        let window_frames = if settings.window.is_zero() {
            model.window_frames()
        } else {
            let cfg = &model.metadata().features;
            let samples = settings
                .window
                .nseconds()
                .mul_div_round(
                    u64::from(cfg.sample_rate),
                    gst::ClockTime::SECOND.nseconds(),
                )
                .unwrap_or(0) as usize;
            cfg.frames_in(samples).max(1)
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
        segment: gst::FormattedSegment<gst::ClockTime>,
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
            channels.push(Channel {
                index: match settings.channel_mode {
                    ChannelMode::Mix => -1,
                    ChannelMode::PerChannel => i as i32,
                },
                resampler,
                analyzer,
                summary: SummaryAccumulator::new(model.n_labels()),
                input: Vec::new(),
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
            segment,
            anchor: None,
            samples_since_anchor: 0,
            analysed: gst::ClockTime::ZERO,
        })
    }

    /// Builds the `seremotion` message for one window of one channel.
    fn window_message(
        &self,
        state: &State,
        channel: i32,
        result: &WindowResult,
    ) -> Option<gst::Message> {
        let anchor = state.anchor?;
        let cfg = &state.model.metadata().features;
        let rate = u64::from(cfg.sample_rate);
        let start_sample = result.start_frame * cfg.hop_length as u64;
        let span = (result.n_frames.saturating_sub(1) * cfg.hop_length + cfg.n_fft) as u64;
        let timestamp = anchor
            + gst::ClockTime::from_nseconds(
                start_sample.mul_div_floor(gst::ClockTime::SECOND.nseconds(), rate)?,
            );
        let duration = gst::ClockTime::from_nseconds(
            span.mul_div_floor(gst::ClockTime::SECOND.nseconds(), rate)?,
        );
        let labels = state.model.labels();
        let (emotion, confidence) = match result.top() {
            None => (SILENCE, 0.0),
            Some((_, score)) if f64::from(score) < state.settings.min_confidence => {
                (UNCERTAIN, f64::from(score))
            }
            Some((i, score)) => (labels[i].as_str(), f64::from(score)),
        };
        let mut scores = gst::Structure::builder("scores");
        for (i, label) in labels.iter().enumerate() {
            let score = result.scores.map_or(0.0, |s| f64::from(s[i]));
            scores = scores.field(label.as_str(), score);
        }
        let s = gst::Structure::builder("seremotion")
            .field("timestamp", timestamp)
            .field("stream-time", state.segment.to_stream_time(timestamp))
            .field("running-time", state.segment.to_running_time(timestamp))
            .field("duration", duration)
            .field("channel", channel)
            .field("emotion", emotion)
            .field("confidence", confidence)
            .field("speech-ratio", f64::from(result.speech_ratio))
            .field("scores", scores.build())
            .build();
        Some(gst::message::Element::builder(s).src(&*self.obj()).build())
    }

    fn summary_messages(&self, state: &State) -> Vec<gst::Message> {
        let labels = state.model.labels();
        state
            .channels
            .iter()
            .map(|channel| {
                let summary = channel.summary.summary();
                let mut shares = gst::Structure::builder("shares");
                let mut means = gst::Structure::builder("mean-scores");
                for (i, label) in labels.iter().enumerate() {
                    shares = shares.field(label.as_str(), f64::from(summary.shares[i]));
                    means = means.field(label.as_str(), f64::from(summary.mean_scores[i]));
                }
                let dominant = summary.dominant().map_or(SILENCE, |i| labels[i].as_str());
                let s = gst::Structure::builder("seremotion-summary")
                    .field("channel", channel.index)
                    .field("duration", state.analysed)
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

    /// Runs every channel's analyzer over its freshly resampled audio (or
    /// flushes it at the end of a stretch of audio) and collects the messages.
    fn analyse(
        &self,
        state: &mut State,
        flush: bool,
        messages: &mut Vec<gst::Message>,
    ) -> Result<(), ModelError> {
        let post = state.settings.post_messages;
        let mut channels = std::mem::take(&mut state.channels);
        let mut outcome = Ok(());
        for channel in channels.iter_mut() {
            if flush {
                channel.resampler.flush(&mut channel.resampled);
            }
            let Channel {
                index,
                analyzer,
                summary,
                resampled,
                ..
            } = channel;
            let mut on_result = |r: &WindowResult| {
                summary.add(r);
                if post && let Some(m) = self.window_message(state, *index, r) {
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
        outcome
    }

    /// Ends the current stretch of audio: analyses what is buffered, then starts afresh.
    fn drain(&self, state: &mut State, messages: &mut Vec<gst::Message>) -> Result<(), ModelError> {
        let result = self.analyse(state, true, messages);
        state.anchor = None;
        state.samples_since_anchor = 0;
        result
    }

    /// Splits (or mixes) the buffer into each channel's f32 input.
    fn deinterleave(state: &mut State, data: &[u8]) -> Result<(), gst::FlowError> {
        let n_channels = state.info.channels() as usize;
        let format = state.info.format();
        let mix = state.settings.channel_mode == ChannelMode::Mix;
        let frames = data.len() / state.info.bpf() as usize;
        for channel in state.channels.iter_mut() {
            channel.input.clear();
            channel.input.resize(frames, 0.0);
        }
        macro_rules! convert {
            ($ty:ty, $to_f32:expr) => {{
                let samples = data
                    .as_slice_of::<$ty>()
                    .map_err(|_| gst::FlowError::Error)?;
                for (f, frame) in samples.chunks_exact(n_channels).enumerate() {
                    if mix {
                        let sum: f32 = frame.iter().map(|&s| finite($to_f32(s))).sum();
                        state.channels[0].input[f] = sum / n_channels as f32;
                    } else {
                        for (c, &s) in frame.iter().enumerate() {
                            state.channels[c].input[f] = finite($to_f32(s));
                        }
                    }
                }
            }};
        }
        match format {
            gst_audio::AudioFormat::S16le => convert!(i16, |s: i16| f32::from(s) / 32768.0),
            gst_audio::AudioFormat::S32le => convert!(i32, |s: i32| s as f32 / 2_147_483_648.0),
            gst_audio::AudioFormat::F32le => convert!(f32, |s: f32| s),
            gst_audio::AudioFormat::F64le => convert!(f64, |s: f64| s as f32),
            _ => return Err(gst::FlowError::NotNegotiated),
        }
        Ok(())
    }

    fn post_all(&self, messages: Vec<gst::Message>) {
        let obj = self.obj();
        for message in messages {
            // Fails only without a bus (e.g. not in a pipeline); nothing to do then.
            let _ = obj.post_message(message);
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
                    .blurb("seremotion ONNX model file; unset = the embedded default model (4 labels: neutral, happy, sad, angry)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("window")
                    .nick("Window")
                    .blurb("Audio analysed per result, in nanoseconds; 0 = the model's own window (most accurate)")
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
                    .blurb("Frames quieter than this RMS level (dBFS) count as silence")
                    .minimum(-120.0)
                    .maximum(0.0)
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
                gst::info!(CAT, imp = self, "Model path set to {:?}", path);
                *lock(&self.model_path) = path;
                *lock(&self.model) = None;
            }
            "window" => {
                let ns: u64 = value.get().expect("type checked upstream");
                let window = gst::ClockTime::from_nseconds(ns);
                settings.window = if window.is_zero() {
                    window
                } else {
                    window.max(MIN_WINDOW)
                };
            }
            "interval" => {
                settings.interval =
                    gst::ClockTime::from_nseconds(value.get().expect("type checked upstream"));
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
            let caps = gst_audio::AudioCapsBuilder::new_interleaved()
                .format_list([
                    gst_audio::AudioFormat::S16le,
                    gst_audio::AudioFormat::S32le,
                    gst_audio::AudioFormat::F32le,
                    gst_audio::AudioFormat::F64le,
                ])
                .rate_range(8000..=192_000)
                .channels_range(1..=8)
                .build();
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
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = None;
        gst::info!(CAT, imp = self, "Stopped");
        Ok(())
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

        // A caps change mid-stream ends the audio analysed with the old caps.
        let mut messages = Vec::new();
        let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
        if let Some(mut old) = lock(&self.state).take() {
            if old.info == info {
                *lock(&self.state) = Some(old);
                return Ok(());
            }
            if let Err(err) = self.drain(&mut old, &mut messages) {
                gst::warning!(CAT, imp = self, "Draining on caps change failed: {}", err);
            }
            segment = old.segment.clone();
        }
        let state = self.build_state(info, model, settings, segment)?;
        *lock(&self.state) = Some(state);
        self.post_all(messages);
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        use gst::EventView;
        let mut messages = Vec::new();
        match event.view() {
            EventView::Segment(e) => {
                if let Some(segment) = e.segment().downcast_ref::<gst::ClockTime>()
                    && let Some(state) = lock(&self.state).as_mut()
                {
                    state.segment = segment.clone();
                }
            }
            EventView::FlushStop(_) => {
                if let Some(state) = lock(&self.state).as_mut() {
                    for channel in state.channels.iter_mut() {
                        channel.analyzer.reset();
                        channel.resampler.reset();
                        channel.summary.reset();
                        channel.resampled.clear();
                    }
                    state.anchor = None;
                    state.samples_since_anchor = 0;
                    state.analysed = gst::ClockTime::ZERO;
                }
            }
            EventView::Eos(_) => {
                let mut failure = None;
                if let Some(state) = lock(&self.state).as_mut() {
                    if let Err(err) = self.drain(state, &mut messages) {
                        failure = Some(err);
                    }
                    messages.extend(self.summary_messages(state));
                }
                self.post_all(messages);
                if let Some(err) = failure {
                    self.post_error_message(Self::error_message(&err));
                }
                return self.parent_sink_event(event);
            }
            _ => (),
        }
        self.post_all(messages);
        self.parent_sink_event(event)
    }

    fn transform_ip_passthrough(
        &self,
        buf: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut messages = Vec::new();
        let result = {
            let mut guard = lock(&self.state);
            let state = guard.as_mut().ok_or_else(|| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ["No caps set before the first buffer"]
                );
                gst::FlowError::NotNegotiated
            })?;
            let map = buf.map_readable().map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ["Failed to map buffer readable"]
                );
                gst::FlowError::Error
            })?;
            let rate = u64::from(state.info.rate());
            let frames = (map.len() / state.info.bpf() as usize) as u64;
            if frames == 0 {
                return Ok(gst::FlowSuccess::Ok);
            }

            // Keep results on the buffer timeline: restart the window grid at
            // a discontinuity, after draining what was heard before it.
            let mut outcome = Ok(());
            if let (Some(anchor), Some(pts)) = (state.anchor, buf.pts()) {
                let expected = anchor
                    + gst::ClockTime::from_nseconds(
                        state
                            .samples_since_anchor
                            .mul_div_floor(gst::ClockTime::SECOND.nseconds(), rate)
                            .unwrap_or(0),
                    );
                let jump = if pts > expected {
                    pts - expected
                } else {
                    expected - pts
                };
                if jump > DISCONT_TOLERANCE || buf.flags().contains(gst::BufferFlags::DISCONT) {
                    gst::debug!(
                        CAT,
                        imp = self,
                        "Discontinuity: expected {}, got {}",
                        expected,
                        pts
                    );
                    outcome = self.drain(state, &mut messages);
                }
            }
            if state.anchor.is_none() {
                let start = state.segment.start().unwrap_or(gst::ClockTime::ZERO);
                state.anchor = Some(buf.pts().unwrap_or(start));
                state.samples_since_anchor = 0;
            }

            Self::deinterleave(state, &map)?;
            for channel in state.channels.iter_mut() {
                channel
                    .resampler
                    .process(&channel.input, &mut channel.resampled);
            }
            state.samples_since_anchor += frames;
            state.analysed += gst::ClockTime::from_nseconds(
                frames
                    .mul_div_floor(gst::ClockTime::SECOND.nseconds(), rate)
                    .unwrap_or(0),
            );
            let analysed = self.analyse(state, false, &mut messages);
            outcome.and(analysed)
        };
        self.post_all(messages);
        match result {
            Ok(()) => Ok(gst::FlowSuccess::Ok),
            Err(err) => {
                self.post_error_message(Self::error_message(&err));
                Err(gst::FlowError::Error)
            }
        }
    }
}
