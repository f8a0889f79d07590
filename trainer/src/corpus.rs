//! Emotional-speech corpora: the four labels, clip lists from a manifest or from
//! a folder in a corpus's original file-name convention, and audio decoding.
//!
//! Every clip carries a `group`, the unit the split keeps together: the speaker,
//! except for TESS, whose two speakers are too few to hold out, so its clips are
//! grouped by the spoken word instead.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Label names in model-output order; also the manifest's `emotion` values.
pub const LABELS: [&str; 4] = ["neutral", "happy", "sad", "angry"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emotion {
    Neutral,
    Happy,
    Sad,
    Angry,
}

impl Emotion {
    pub const ALL: [Emotion; 4] = [
        Emotion::Neutral,
        Emotion::Happy,
        Emotion::Sad,
        Emotion::Angry,
    ];

    /// Position in [`LABELS`], i.e. the model's output index.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Option<Self> {
        Self::ALL.get(i).copied()
    }

    /// Parses a label name as written in [`LABELS`] (case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim();
        LABELS
            .iter()
            .position(|l| l.eq_ignore_ascii_case(name))
            .and_then(Self::from_index)
    }

    pub fn name(self) -> &'static str {
        LABELS[self.index()]
    }
}

impl fmt::Display for Emotion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One labelled recording.
#[derive(Clone, Debug, PartialEq)]
pub struct Clip {
    /// Where the audio is; manifest paths are already joined to the manifest's folder.
    pub path: PathBuf,
    /// Lower-case corpus name: `ravdess`, `tess`, `savee`, `crema-d`, or whatever a manifest says.
    pub corpus: String,
    pub speaker: String,
    pub emotion: Emotion,
    /// The unit a split must not cut through: the speaker, or the word for TESS.
    pub group: String,
}

/// ASED sentences spoken in every emotion. The others are each spoken in
/// one emotion only, so their words give the label away: they may be trained
/// on but are never scored.
pub const ASED_COMMON_SENTENCES: [&str; 2] = ["01", "02"];

impl Clip {
    /// The sentence number of an ASED clip, from its file name
    /// `<x><n>-<ss>-<rr>-<gg>-<bb>` (e.g. `a5-03-01-02-50` is sentence `03`);
    /// `None` for other corpora and names that do not follow it.
    pub fn ased_sentence(&self) -> Option<&str> {
        if self.corpus != "ased" {
            return None;
        }
        let stem = self.path.file_stem()?.to_str()?;
        let fields: Vec<&str> = stem.split('-').collect();
        if fields.len() == 5 && all_digits(fields[1], 2) {
            Some(fields[1])
        } else {
            None
        }
    }

    /// Whether the clip counts in validation and test scores: every clip but
    /// ASED's emotion-specific sentences (and ASED names without a sentence).
    pub fn is_scored(&self) -> bool {
        self.corpus != "ased"
            || self
                .ased_sentence()
                .is_some_and(|s| ASED_COMMON_SENTENCES.contains(&s))
    }
}

#[derive(Debug)]
pub enum CorpusError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A manifest row (or its header, line 1) that cannot be used.
    Manifest {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A folder scan that found no usable clip.
    NothingFound {
        dir: PathBuf,
        audio_files: usize,
        dropped_emotions: usize,
        unrecognised: usize,
    },
    Decode {
        path: PathBuf,
        message: String,
    },
    Resample {
        path: PathBuf,
        message: String,
    },
}

impl fmt::Display for CorpusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorpusError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            CorpusError::Manifest {
                path,
                line,
                message,
            } => write!(f, "{}, line {line}: {message}", path.display()),
            CorpusError::NothingFound {
                dir,
                audio_files,
                dropped_emotions,
                unrecognised,
            } => write!(
                f,
                "{}: no usable clip among {audio_files} .wav/.flac files ({dropped_emotions} with \
                 emotions outside {LABELS:?}, {unrecognised} with unrecognised names); expected \
                 file names in a corpus convention: CREMA-D `1001_DFA_ANG_XX`, RAVDESS \
                 `03-01-05-01-01-01-12`, SAVEE `DC_a01` or `DC/a01`, TESS `OAF_back_angry`",
                dir.display()
            ),
            CorpusError::Decode { path, message } => {
                write!(f, "{}: cannot decode audio: {message}", path.display())
            }
            CorpusError::Resample { path, message } => {
                write!(f, "{}: cannot resample: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for CorpusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CorpusError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Manifest

const REQUIRED_COLUMNS: [&str; 4] = ["path", "corpus", "speaker", "emotion"];

/// Reads a `path,corpus,speaker,emotion,duration_s,sha256` manifest. Columns are
/// found by header name (`duration_s` and `sha256` are optional and not checked
/// here); paths are relative to the manifest's folder. Any unusable row is an
/// error naming its line, rather than a silently smaller data set.
pub fn load_manifest(path: &Path) -> Result<Vec<Clip>, CorpusError> {
    let text = std::fs::read_to_string(path).map_err(|source| CorpusError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    let err = |line: usize, message: String| CorpusError::Manifest {
        path: path.to_path_buf(),
        line,
        message,
    };

    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        // Row lengths are checked below, with a message naming the line.
        .flexible(true)
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let mut records = reader.records().map(|r| {
        r.map_err(|e| {
            let line = e.position().map_or(1, |p| p.line() as usize);
            err(line, format!("not valid CSV: {e}"))
        })
    });
    let header = records
        .next()
        .ok_or_else(|| err(1, "the manifest is empty; expected a header line".into()))??;
    let header: Vec<&str> = header.iter().map(str::trim).collect();
    let column = |name: &str| header.iter().position(|&h| h == name);
    let mut idx = [0usize; 4];
    for (slot, name) in idx.iter_mut().zip(REQUIRED_COLUMNS) {
        *slot = column(name).ok_or_else(|| {
            err(
                1,
                format!(
                    "header lacks the `{name}` column (found {header:?}; expected \
                     path,corpus,speaker,emotion,duration_s,sha256)"
                ),
            )
        })?;
    }
    let [i_path, i_corpus, i_speaker, i_emotion] = idx;

    let mut clips = Vec::new();
    for record in records {
        let fields = record?;
        let line_no = fields.position().map_or(0, |p| p.line() as usize);
        if fields.len() != header.len() {
            // An unterminated quote swallows the lines after it into one field.
            let hint = if fields.iter().any(|f| f.contains('\n')) {
                " (a quoted field runs past its line: an unterminated quote?)"
            } else {
                ""
            };
            return Err(err(
                line_no,
                format!(
                    "{} fields, but the header has {}{hint}",
                    fields.len(),
                    header.len()
                ),
            ));
        }
        let field = |i: usize, name: &str| -> Result<&str, CorpusError> {
            let v = fields[i].trim();
            if v.is_empty() {
                Err(err(line_no, format!("empty `{name}`")))
            } else {
                Ok(v)
            }
        };
        let rel = field(i_path, "path")?;
        let corpus = field(i_corpus, "corpus")?.to_ascii_lowercase();
        let speaker = field(i_speaker, "speaker")?.to_string();
        let emotion_name = field(i_emotion, "emotion")?;
        let emotion = Emotion::parse(emotion_name).ok_or_else(|| {
            err(
                line_no,
                format!("unknown emotion `{emotion_name}` (expected one of {LABELS:?})"),
            )
        })?;
        let group = if corpus == "tess" {
            tess_word(Path::new(rel)).ok_or_else(|| {
                err(
                    line_no,
                    format!(
                        "TESS file name `{rel}` does not follow <speaker>_<word>_<emotion>, \
                         so its word (the TESS split unit) is unknown"
                    ),
                )
            })?
        } else {
            speaker.clone()
        };
        clips.push(Clip {
            path: base.join(rel),
            corpus,
            speaker,
            emotion,
            group,
        });
    }
    if clips.is_empty() {
        return Err(err(1, "the manifest has a header but no rows".into()));
    }
    Ok(clips)
}

// ---------------------------------------------------------------------------
// File-name conventions

/// What a file name says under one corpus's convention.
#[derive(Debug, PartialEq)]
enum NameInfo {
    Clip {
        corpus: &'static str,
        speaker: String,
        emotion: Emotion,
        group: String,
    },
    /// A file of a known corpus whose emotion is not one of the four.
    OtherEmotion,
}

/// Recognises `path` by its file name (and, for per-speaker SAVEE folders, its
/// parent folder). `None` when no convention matches.
fn parse_name(path: &Path) -> Option<NameInfo> {
    let stem = path.file_stem()?.to_str()?;
    parse_ravdess(stem)
        .or_else(|| parse_crema_d(stem))
        .or_else(|| parse_tess(stem))
        .or_else(|| parse_savee(stem, path))
}

fn all_digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

/// `MM-VV-EE-II-SS-RR-AA`: modality, vocal channel, emotion, intensity,
/// statement, repetition, actor.
fn parse_ravdess(stem: &str) -> Option<NameInfo> {
    let f: Vec<&str> = stem.split('-').collect();
    if f.len() != 7 || !f.iter().all(|x| all_digits(x, 2)) {
        return None;
    }
    // 02 is video-only (no audio track); song (vocal channel 02) is not speech.
    if !matches!(f[0], "01" | "03") || f[1] != "01" {
        return Some(NameInfo::OtherEmotion);
    }
    let emotion = match f[2] {
        "01" => Emotion::Neutral,
        "03" => Emotion::Happy,
        "04" => Emotion::Sad,
        "05" => Emotion::Angry,
        _ => return Some(NameInfo::OtherEmotion),
    };
    let speaker = format!("Actor_{}", f[6]);
    Some(NameInfo::Clip {
        corpus: "ravdess",
        group: speaker.clone(),
        speaker,
        emotion,
    })
}

/// `1001_DFA_ANG_XX`: actor, sentence, emotion, level.
fn parse_crema_d(stem: &str) -> Option<NameInfo> {
    let f: Vec<&str> = stem.split('_').collect();
    let is_code = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_alphabetic());
    if f.len() != 4 || !all_digits(f[0], 4) || !is_code(f[1], 3) || !is_code(f[3], 2) {
        return None;
    }
    let emotion = match f[2].to_ascii_uppercase().as_str() {
        "NEU" => Emotion::Neutral,
        "HAP" => Emotion::Happy,
        "SAD" => Emotion::Sad,
        "ANG" => Emotion::Angry,
        "DIS" | "FEA" => return Some(NameInfo::OtherEmotion),
        _ => return None,
    };
    Some(NameInfo::Clip {
        corpus: "crema-d",
        speaker: f[0].to_string(),
        group: f[0].to_string(),
        emotion,
    })
}

/// `OAF_back_angry`. Lenient about case, the corpus's own `OA_` misspelling,
/// and the spellings of pleasant surprise (`ps`, `pleasant_surprise(d)`).
fn parse_tess(stem: &str) -> Option<NameInfo> {
    let f: Vec<&str> = stem.split('_').collect();
    if f.len() < 3 {
        return None;
    }
    let speaker = match f[0].to_ascii_uppercase().as_str() {
        "OAF" | "OA" => "OAF",
        "YAF" | "YA" => "YAF",
        _ => return None,
    };
    let last = f[f.len() - 1].to_ascii_lowercase();
    let before = f[f.len() - 2].to_ascii_lowercase();
    let (emotion, word_end) = match last.as_str() {
        "neutral" => (Some(Emotion::Neutral), f.len() - 1),
        "happy" => (Some(Emotion::Happy), f.len() - 1),
        "sad" => (Some(Emotion::Sad), f.len() - 1),
        "angry" => (Some(Emotion::Angry), f.len() - 1),
        "surprise" | "surprised" if before == "pleasant" => (None, f.len() - 2),
        "ps" | "disgust" | "fear" | "surprise" | "surprised" => (None, f.len() - 1),
        _ => return None,
    };
    if word_end <= 1 {
        return None;
    }
    let word = f[1..word_end].join("_").to_ascii_lowercase();
    Some(match emotion {
        Some(emotion) => NameInfo::Clip {
            corpus: "tess",
            speaker: speaker.to_string(),
            emotion,
            group: word,
        },
        None => NameInfo::OtherEmotion,
    })
}

/// The word of a TESS clip, for manifests (which give the speaker but not the word).
fn tess_word(path: &Path) -> Option<String> {
    match parse_tess(path.file_stem()?.to_str()?)? {
        NameInfo::Clip { group, .. } => Some(group),
        NameInfo::OtherEmotion => None,
    }
}

/// `DC_a01`, or `a01` inside a per-speaker folder `DC/` (the corpus's own layout).
fn parse_savee(stem: &str, path: &Path) -> Option<NameInfo> {
    let is_speaker = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase());
    let (speaker, code) = match stem.split_once('_') {
        Some((spk, code)) if is_speaker(spk) => (spk.to_string(), code),
        Some(_) => return None,
        None => {
            let parent = path.parent()?.file_name()?.to_str()?;
            if !is_speaker(parent) {
                return None;
            }
            (parent.to_string(), stem)
        }
    };
    let letters = code.trim_end_matches(|c: char| c.is_ascii_digit());
    let digits = &code[letters.len()..];
    if digits.is_empty() || digits.len() > 2 {
        return None;
    }
    let emotion = match letters {
        "n" => Emotion::Neutral,
        "h" => Emotion::Happy,
        "sa" => Emotion::Sad,
        "a" => Emotion::Angry,
        "d" | "f" | "su" => return Some(NameInfo::OtherEmotion),
        _ => return None,
    };
    Some(NameInfo::Clip {
        corpus: "savee",
        group: speaker.clone(),
        speaker,
        emotion,
    })
}

// ---------------------------------------------------------------------------
// Folder scan

/// What a folder scan found, including what it left out and why.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Usable clips, sorted by path so that everything downstream is deterministic.
    pub clips: Vec<Clip>,
    /// Files of a known corpus with an emotion outside the four (disgust, fear, calm, ...).
    pub dropped_emotions: usize,
    /// Audio files whose names match no known convention.
    pub unrecognised: Vec<PathBuf>,
}

/// Walks `dir` recursively for `.wav`/`.flac` files named in the CREMA-D,
/// RAVDESS, SAVEE or TESS convention. Unrecognised names are skipped and
/// counted on stderr; see [`scan_folder_report`] for the details.
pub fn scan_folder(dir: &Path) -> Result<Vec<Clip>, CorpusError> {
    let report = scan_folder_report(dir)?;
    if !report.unrecognised.is_empty() {
        eprintln!(
            "{}: skipped {} audio files whose names match no corpus convention (first: {})",
            dir.display(),
            report.unrecognised.len(),
            report.unrecognised[0].display()
        );
    }
    Ok(report.clips)
}

pub fn scan_folder_report(dir: &Path) -> Result<ScanReport, CorpusError> {
    let mut files = Vec::new();
    collect_audio_files(dir, &mut files)?;
    files.sort();
    let mut report = ScanReport::default();
    for path in &files {
        match parse_name(path) {
            Some(NameInfo::Clip {
                corpus,
                speaker,
                emotion,
                group,
            }) => report.clips.push(Clip {
                path: path.clone(),
                corpus: corpus.to_string(),
                speaker,
                emotion,
                group,
            }),
            Some(NameInfo::OtherEmotion) => report.dropped_emotions += 1,
            None => report.unrecognised.push(path.clone()),
        }
    }
    if report.clips.is_empty() {
        return Err(CorpusError::NothingFound {
            dir: dir.to_path_buf(),
            audio_files: files.len(),
            dropped_emotions: report.dropped_emotions,
            unrecognised: report.unrecognised.len(),
        });
    }
    Ok(report)
}

fn collect_audio_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CorpusError> {
    let io_err = |source| CorpusError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        // `metadata` follows symlinks, so linked corpus folders are scanned too.
        let meta = std::fs::metadata(&path).map_err(|source| CorpusError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            collect_audio_files(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("wav") || e.eq_ignore_ascii_case("flac"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Clip counts per corpus and emotion, for logs and reports.
pub fn summarize(clips: &[Clip]) -> serde_json::Value {
    let mut per: HashMap<&str, [usize; 4]> = HashMap::new();
    for c in clips {
        per.entry(&c.corpus).or_default()[c.emotion.index()] += 1;
    }
    let mut corpora: Vec<_> = per.into_iter().collect();
    corpora.sort();
    let map: serde_json::Map<String, serde_json::Value> = corpora
        .into_iter()
        .map(|(corpus, counts)| {
            let obj: serde_json::Map<_, _> = LABELS
                .iter()
                .zip(counts)
                .map(|(l, n)| (l.to_string(), n.into()))
                .collect();
            (corpus.to_string(), obj.into())
        })
        .collect();
    map.into()
}

// ---------------------------------------------------------------------------
// Audio

/// Decodes a WAV/FLAC/MP3/OGG file to mono f32 in [-1, 1] at `target_rate`.
/// Channels are averaged; the shared resampler does the rate change, so the
/// trainer hears exactly what the element's resampling produces.
pub fn load_audio(path: &Path, target_rate: u32) -> Result<Vec<f32>, CorpusError> {
    let (samples, rate) = decode_mono(path)?;
    if rate == target_rate {
        return Ok(samples);
    }
    seremotion_core::resample::resample(&samples, rate, target_rate).map_err(|e| {
        CorpusError::Resample {
            path: path.to_path_buf(),
            message: format!("{rate} Hz -> {target_rate} Hz: {e}"),
        }
    })
}

/// Decodes to mono at the file's own rate.
pub fn decode_mono(path: &Path) -> Result<(Vec<f32>, u32), CorpusError> {
    let decode_err = |message: String| CorpusError::Decode {
        path: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(|source| CorpusError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| decode_err(format!("unsupported or corrupt container ({e})")))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| decode_err("no audio track".into()))?;
    let track_id = track.id;
    let mut rate = track.codec_params.sample_rate;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| decode_err(format!("unsupported codec ({e})")))?;

    let mut mono = Vec::new();
    let mut buf: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            // Symphonia reports the end of a stream as an unexpected EOF.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(e) => return Err(decode_err(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged packet loses a few ms; the rest of the clip is still good.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => return Err(decode_err(e.to_string())),
        };
        let spec = *decoded.spec();
        rate.get_or_insert(spec.rate);
        let channels = spec.channels.count().max(1);
        let needed = decoded.capacity() as u64;
        let sb = match &mut buf {
            Some(b) if b.capacity() as u64 >= needed * channels as u64 => b,
            _ => buf.insert(SampleBuffer::new(needed, spec)),
        };
        sb.copy_interleaved_ref(decoded);
        let scale = 1.0 / channels as f32;
        mono.extend(
            sb.samples()
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() * scale),
        );
    }
    let rate =
        rate.ok_or_else(|| decode_err("the stream does not state its sample rate".into()))?;
    if mono.is_empty() {
        return Err(decode_err("no audio samples".into()));
    }
    Ok((mono, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(path: &str) -> Option<NameInfo> {
        parse_name(Path::new(path))
    }

    fn clip_info(path: &str) -> (&'static str, String, Emotion, String) {
        match info(path) {
            Some(NameInfo::Clip {
                corpus,
                speaker,
                emotion,
                group,
            }) => (corpus, speaker, emotion, group),
            other => panic!("{path}: expected a clip, got {other:?}"),
        }
    }

    #[test]
    fn ased_sentence_from_the_file_name_decides_scoring() {
        let clip = |corpus: &str, path: &str| Clip {
            path: PathBuf::from(path),
            corpus: corpus.into(),
            speaker: "50".into(),
            emotion: Emotion::Angry,
            group: "50".into(),
        };
        let common = clip("ased", "ased/05Angry/a5-02-01-02-50.flac");
        assert_eq!(common.ased_sentence(), Some("02"));
        assert!(common.is_scored());
        let specific = clip("ased", "ased/05Angry/a5-03-01-02-50.flac");
        assert_eq!(specific.ased_sentence(), Some("03"));
        assert!(!specific.is_scored());
        // The corpus's capital-S quirk keeps its sentence.
        assert_eq!(
            clip("ased", "ased/04Sad/S4-01-02-01-29.flac").ased_sentence(),
            Some("01")
        );
        assert!(!clip("ased", "ased/odd.flac").is_scored());
        let other = clip("ravdess", "ravdess/Actor_01/03-01-05-01-01-01-01.flac");
        assert_eq!(other.ased_sentence(), None);
        assert!(other.is_scored());
    }

    #[test]
    fn emotion_index_roundtrip() {
        for (i, name) in LABELS.iter().enumerate() {
            let e = Emotion::from_index(i).unwrap();
            assert_eq!(e.index(), i);
            assert_eq!(Emotion::parse(name), Some(e));
            assert_eq!(e.to_string(), *name);
        }
        assert_eq!(Emotion::parse("Angry"), Some(Emotion::Angry));
        assert_eq!(Emotion::parse("calm"), None);
        assert_eq!(Emotion::from_index(4), None);
        assert_eq!(serde_json::to_string(&Emotion::Sad).unwrap(), "\"sad\"");
    }

    #[test]
    fn ravdess_names() {
        assert_eq!(
            clip_info("x/Actor_12/03-01-05-02-01-01-12.wav"),
            (
                "ravdess",
                "Actor_12".into(),
                Emotion::Angry,
                "Actor_12".into()
            )
        );
        assert_eq!(clip_info("03-01-01-01-01-01-01.flac").2, Emotion::Neutral);
        assert_eq!(clip_info("03-01-03-01-01-01-01.flac").2, Emotion::Happy);
        assert_eq!(clip_info("03-01-04-01-01-01-01.flac").2, Emotion::Sad);
        // Full audio-visual files carry the same speech.
        assert_eq!(clip_info("01-01-04-01-01-01-07.wav").1, "Actor_07");
        // calm, fearful, disgust, surprised; song; video-only.
        for name in [
            "03-01-02-01-01-01-01",
            "03-01-06-01-01-01-01",
            "03-01-07-01-01-01-01",
            "03-01-08-01-01-01-01",
            "03-02-05-01-01-01-01",
            "02-01-05-01-01-01-01",
        ] {
            assert_eq!(info(&format!("{name}.wav")), Some(NameInfo::OtherEmotion));
        }
        assert_eq!(info("03-01-05-01-01-01.wav"), None);
    }

    #[test]
    fn crema_d_names() {
        assert_eq!(
            clip_info("AudioWAV/1001_DFA_ANG_XX.wav"),
            ("crema-d", "1001".into(), Emotion::Angry, "1001".into())
        );
        assert_eq!(clip_info("1091_IEO_HAP_HI.wav").2, Emotion::Happy);
        assert_eq!(clip_info("1091_IEO_NEU_XX.wav").2, Emotion::Neutral);
        assert_eq!(clip_info("1091_IEO_SAD_LO.wav").2, Emotion::Sad);
        assert_eq!(info("1001_DFA_DIS_XX.wav"), Some(NameInfo::OtherEmotion));
        assert_eq!(info("1001_DFA_FEA_XX.wav"), Some(NameInfo::OtherEmotion));
    }

    #[test]
    fn savee_names() {
        assert_eq!(
            clip_info("savee/DC_a01.flac"),
            ("savee", "DC".into(), Emotion::Angry, "DC".into())
        );
        assert_eq!(clip_info("JE_sa15.wav").2, Emotion::Sad);
        assert_eq!(clip_info("JK_h03.wav").2, Emotion::Happy);
        assert_eq!(clip_info("KL_n30.wav").2, Emotion::Neutral);
        // Per-speaker folders, as the corpus ships.
        assert_eq!(
            clip_info("AudioData/KL/sa02.wav"),
            ("savee", "KL".into(), Emotion::Sad, "KL".into())
        );
        for name in ["DC_d01.wav", "DC_f01.wav", "DC_su01.wav", "JE/su07.wav"] {
            assert_eq!(info(name), Some(NameInfo::OtherEmotion), "{name}");
        }
        assert_eq!(info("misc/a01.wav"), None);
        assert_eq!(info("DC_x01.wav"), None);
    }

    #[test]
    fn tess_names_and_quirks() {
        assert_eq!(
            clip_info("tess/OAF_back_angry.flac"),
            ("tess", "OAF".into(), Emotion::Angry, "back".into())
        );
        // The corpus's own misspelt prefix belongs to OAF.
        assert_eq!(
            clip_info("OA_bite_neutral.wav"),
            ("tess", "OAF".into(), Emotion::Neutral, "bite".into())
        );
        assert_eq!(
            clip_info("YAF_Germ_Sad.wav"),
            ("tess", "YAF".into(), Emotion::Sad, "germ".into())
        );
        assert_eq!(clip_info("yaf_mode_happy.wav").1, "YAF");
        for name in [
            "OAF_back_ps.wav",
            "YAF_back_disgust.wav",
            "OAF_back_fear.wav",
            "YAF_back_pleasant_surprised.wav",
            "OAF_back_pleasant_surprise.wav",
        ] {
            assert_eq!(info(name), Some(NameInfo::OtherEmotion), "{name}");
        }
        assert_eq!(info("XYZ_back_angry.wav"), None);
        assert_eq!(info("OAF_angry.wav"), None);
    }

    #[test]
    fn unrelated_names_are_not_recognised() {
        for name in ["readme.wav", "a_b.wav", "12-34.wav", "take_1.flac"] {
            assert_eq!(info(name), None, "{name}");
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("seremotion-corpus-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const HEADER: &str = "path,corpus,speaker,emotion,duration_s,sha256\n";

    #[test]
    fn manifest_rows_resolve_relative_to_the_manifest() {
        let dir = temp_dir("manifest-ok");
        let m = dir.join("MANIFEST.csv");
        write(
            &m,
            &format!(
                "{HEADER}ravdess/Actor_01/03-01-05-01-01-01-01.flac,ravdess,Actor_01,angry,3.1,ab\n\
                 \n\
                 tess/OA_bite_neutral.flac,tess,OAF,neutral,2.0,cd\r\n\
                 \"savee/DC_sa01.flac\",savee,DC,sad,1.0,ef\n"
            ),
        );
        let clips = load_manifest(&m).unwrap();
        assert_eq!(clips.len(), 3);
        assert_eq!(
            clips[0].path,
            dir.join("ravdess/Actor_01/03-01-05-01-01-01-01.flac")
        );
        assert_eq!(clips[0].emotion, Emotion::Angry);
        assert_eq!(clips[0].group, "Actor_01");
        assert_eq!(clips[1].corpus, "tess");
        assert_eq!(clips[1].speaker, "OAF");
        assert_eq!(clips[1].group, "bite");
        assert_eq!(clips[2].path, dir.join("savee/DC_sa01.flac"));
        assert_eq!(clips[2].emotion, Emotion::Sad);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn manifest_error(name: &str, body: &str) -> String {
        let dir = temp_dir(name);
        let m = dir.join("m.csv");
        write(&m, body);
        let e = load_manifest(&m).expect_err("manifest should be refused");
        std::fs::remove_dir_all(dir).unwrap();
        e.to_string()
    }

    #[test]
    fn malformed_manifest_rows_name_file_and_line() {
        let ok = "a.flac,ravdess,Actor_01,happy,1.0,x\n";
        let e = manifest_error(
            "unknown-emotion",
            &format!("{HEADER}{ok}b.flac,ravdess,Actor_01,calm,1.0,x\n"),
        );
        assert!(
            e.contains("m.csv, line 3") && e.contains("unknown emotion `calm`"),
            "{e}"
        );

        let e = manifest_error("short-row", &format!("{HEADER}{ok}{ok}c.flac,ravdess\n"));
        assert!(e.contains("line 4") && e.contains("2 fields"), "{e}");

        let e = manifest_error("empty-field", &format!("{HEADER}d.flac,ravdess,,sad,1,x\n"));
        assert!(e.contains("line 2") && e.contains("empty `speaker`"), "{e}");

        let e = manifest_error("no-header", "path,corpus,speaker,duration_s\n");
        assert!(
            e.contains("line 1") && e.contains("`emotion` column"),
            "{e}"
        );

        let e = manifest_error("quote", &format!("{HEADER}\"e.flac,tess,OAF,sad,1,x\n{ok}"));
        assert!(e.contains("line 2") && e.contains("unterminated"), "{e}");

        let e = manifest_error(
            "tess-word",
            &format!("{HEADER}tess/x.flac,tess,OAF,sad,1,x\n"),
        );
        assert!(e.contains("line 2") && e.contains("word"), "{e}");

        let e = manifest_error("only-header", HEADER);
        assert!(e.contains("no rows"), "{e}");
    }

    #[test]
    fn missing_manifest_names_the_file() {
        let e = load_manifest(Path::new("/nonexistent/MANIFEST.csv")).unwrap_err();
        assert!(
            e.to_string().starts_with("/nonexistent/MANIFEST.csv"),
            "{e}"
        );
    }

    #[test]
    fn scan_finds_every_convention_and_counts_the_rest() {
        let dir = temp_dir("scan");
        for f in [
            "ravdess/Actor_02/03-01-04-01-01-01-02.wav",
            "ravdess/Actor_02/03-01-02-01-01-01-02.wav", // calm: dropped
            "crema/1001_DFA_ANG_XX.wav",
            "crema/1001_DFA_DIS_XX.wav", // disgust: dropped
            "savee/AudioData/JK/n01.wav",
            "savee/flat/DC_h02.FLAC",
            "tess/YAF_happy/YAF_dog_happy.wav",
            "tess/OAF_ps/OAF_dog_ps.wav", // pleasant surprise: dropped
            "other/notes.wav",            // unrecognised
            "other/readme.txt",           // not audio: ignored
        ] {
            write(&dir.join(f), "");
        }
        let r = scan_folder_report(&dir).unwrap();
        let got: Vec<(&str, &str, Emotion, &str)> = r
            .clips
            .iter()
            .map(|c| {
                (
                    c.corpus.as_str(),
                    c.speaker.as_str(),
                    c.emotion,
                    c.group.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("crema-d", "1001", Emotion::Angry, "1001"),
                ("ravdess", "Actor_02", Emotion::Sad, "Actor_02"),
                ("savee", "JK", Emotion::Neutral, "JK"),
                ("savee", "DC", Emotion::Happy, "DC"),
                ("tess", "YAF", Emotion::Happy, "dog"),
            ]
        );
        assert_eq!(r.dropped_emotions, 3);
        assert_eq!(r.unrecognised, vec![dir.join("other/notes.wav")]);
        assert_eq!(scan_folder(&dir).unwrap(), r.clips);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn empty_scan_says_what_was_expected() {
        let dir = temp_dir("scan-empty");
        write(&dir.join("x/notes.wav"), "");
        let e = scan_folder(&dir).unwrap_err().to_string();
        assert!(
            e.contains("no usable clip among 1") && e.contains("OAF_back_angry"),
            "{e}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A 16-bit PCM WAV, written by hand so the test needs no encoder crate.
    fn write_wav(path: &Path, rate: u32, channels: u16, frames: &[Vec<i16>]) {
        let data_len = (frames.len() * channels as usize * 2) as u32;
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + data_len).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * channels as u32 * 2).to_le_bytes());
        b.extend_from_slice(&(channels * 2).to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&data_len.to_le_bytes());
        for f in frames {
            for s in f {
                b.extend_from_slice(&s.to_le_bytes());
            }
        }
        std::fs::write(path, b).unwrap();
    }

    #[test]
    fn load_audio_downmixes_scales_and_resamples() {
        let dir = temp_dir("audio");
        let p = dir.join("stereo.wav");
        // Left +0.5, right -0.25 full scale: the mono mix is +0.125.
        let frames: Vec<Vec<i16>> = (0..4800).map(|_| vec![16384, -8192]).collect();
        write_wav(&p, 48000, 2, &frames);
        let (mono, rate) = decode_mono(&p).unwrap();
        assert_eq!(rate, 48000);
        assert_eq!(mono.len(), 4800);
        assert!(mono.iter().all(|&s| (s - 0.125).abs() < 1e-6));

        let same = load_audio(&p, 48000).unwrap();
        assert_eq!(same, mono);
        let down = load_audio(&p, 16000).unwrap();
        assert!((down.len() as i64 - 1600).abs() <= 2, "{}", down.len());
        // Away from the edges a constant stays constant through the resampler.
        let mid = &down[400..1200];
        assert!(
            mid.iter().all(|&s| (s - 0.125).abs() < 1e-2),
            "{:?}",
            &mid[..4]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn undecodable_audio_names_the_file() {
        let dir = temp_dir("bad-audio");
        let p = dir.join("broken.wav");
        std::fs::write(&p, b"not audio at all").unwrap();
        let e = load_audio(&p, 16000).unwrap_err().to_string();
        assert!(
            e.contains("broken.wav") && e.contains("cannot decode"),
            "{e}"
        );
        let e = load_audio(&dir.join("missing.flac"), 16000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.flac"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
