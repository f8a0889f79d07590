//! The emotion network: a small 1D CNN over feature frames.
//!
//! Input `[batch, n_features, n_frames]` (channels first), output logits
//! `[batch, n_labels]`. Each block is convolution over time, batch
//! normalisation, ReLU and max pooling by 2; a pooling over time (see
//! [`Pooling`]) makes the network independent of the number of frames, so the
//! element can run a shorter last window at end of stream. An optional
//! frequency stem (see [`NetConfig::frequency_stem`]) convolves the rows as
//! an image and adds what it finds into the first block.
//!
//! The time convolutions are written as 2D operations over a unit height axis
//! (`[batch, channels, 1, frames]`): burn-onnx 0.22 exports `MaxPool2d` and a
//! global `AdaptiveAvgPool2d`, but neither `MaxPool1d` nor a time mean whose
//! divisor would depend on the (dynamic) number of frames. A `[1, k]` kernel
//! computes exactly what a Conv1d of size `k` would.

use burn::module::{Param, RunningState};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

/// How the last block's frames become one vector per window (also the
/// trainer's `--pooling` values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// Each channel's mean over time.
    #[default]
    Mean,
    /// Each channel's mean and standard deviation over time: how much a cue
    /// varies within the window (pitch and loudness movement) next to its level.
    MeanStd,
    /// Mean and standard deviation weighted by a learnt per-frame attention
    /// (Okabe et al. 2018), so frames that carry the emotion count most.
    Attentive,
}

/// The `--pooling` value (clap shows the default with it).
impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::fmt_value_enum(self, f)
    }
}

impl Pooling {
    /// Values per window the classifier gets from `channels` pooled channels.
    fn width(self, channels: usize) -> usize {
        match self {
            Pooling::Mean => channels,
            Pooling::MeanStd | Pooling::Attentive => 2 * channels,
        }
    }

    /// As reports name it.
    pub fn describe(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::MeanStd => "mean and standard deviation",
            Pooling::Attentive => "attentive mean and standard deviation",
        }
    }
}

/// Width of the attention's hidden layer in [`Pooling::Attentive`].
const ATTENTION_HIDDEN: usize = 32;

/// Feature rows the frequency stem's max pooling merges into one by default:
/// a pattern may move this far up or down the spectrum (a few mel bands,
/// about a vocal tract length's difference between voices) and look the same.
pub const FREQUENCY_STEM_POOL: usize = 4;

/// Rows between the starts of the frequency stem's pooling spans: spans
/// wider than this overlap.
pub const FREQUENCY_STEM_STRIDE: usize = 4;

fn default_stem_pool() -> usize {
    FREQUENCY_STEM_POOL
}

/// Dropout before the classifier unless `--dropout` says otherwise (a fifth
/// of it after each block).
pub const DROPOUT: f64 = 0.3;

/// Shape of the network; travels in the training report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Feature rows per frame (the model input's channel count).
    pub n_features: usize,
    /// Output channels of each convolution block.
    pub channels: Vec<usize>,
    /// Kernel size over time of every convolution (odd, so padding is symmetric).
    pub kernel: usize,
    /// Dropout before the classifier (and, at a fifth of it, after each block).
    pub dropout: f64,
    pub n_labels: usize,
    /// Absent in reports written before it existed: those nets averaged.
    #[serde(default)]
    pub pooling: Pooling,
    /// Channels of a frequency-aware stem beside the first block (0 = none):
    /// 3x3 convolutions over the frame rows as an image, so one detector
    /// serves every band, max-pooled over [`stem_pool`](Self::stem_pool) rows and
    /// added into the first block. The blocks alone treat each band as a
    /// channel of its own and cannot tell a formant pattern moved up a few
    /// bands (a shorter vocal tract) from a different one.
    #[serde(default)]
    pub frequency_stem: usize,
    /// Rows each of the stem's max pooling spans covers (spans start every
    /// [`FREQUENCY_STEM_STRIDE`] rows); absent in reports written before it
    /// existed: those stems pooled [`FREQUENCY_STEM_POOL`].
    #[serde(default = "default_stem_pool")]
    pub stem_pool: usize,
    /// Time dilation of each block's convolution in turn (missing ones: 1):
    /// a dilated block hears a longer stretch of the window (a syllable's
    /// contour rather than a phone's) for the same multiply-adds. Empty in
    /// reports written before it existed.
    #[serde(default)]
    pub dilations: Vec<usize>,
}

impl NetConfig {
    pub fn new(n_features: usize, n_labels: usize) -> Self {
        Self {
            n_features,
            channels: vec![48, 64, 80, 96],
            kernel: 3,
            dropout: DROPOUT,
            n_labels,
            pooling: Pooling::Mean,
            frequency_stem: 0,
            stem_pool: FREQUENCY_STEM_POOL,
            dilations: Vec::new(),
        }
    }

    /// Time dilation of block `i`'s convolution.
    fn dilation(&self, i: usize) -> usize {
        self.dilations.get(i).copied().unwrap_or(1).max(1)
    }

    /// Rows out of the frequency stem's 3x3 convolution: `n_features - 2`
    /// (no padding over frequency).
    fn stem_conv_rows(&self) -> usize {
        self.n_features.saturating_sub(2)
    }

    /// Rows the frequency stem hands its projection: one per pooling span
    /// that fits (a quarter of its convolution's with the default spans).
    fn stem_rows(&self) -> usize {
        let (rows, span) = (self.stem_conv_rows(), self.stem_pool.max(1));
        if rows < span {
            0
        } else {
            (rows - span) / FREQUENCY_STEM_STRIDE + 1
        }
    }

    /// Multiply-adds of one forward pass over `n_frames` frames (convolutions
    /// and the classifier; BN/ReLU/pooling are a few ops per activation).
    pub fn macs(&self, n_frames: usize) -> usize {
        let mut frames = n_frames;
        let mut c_in = self.n_features;
        let mut total = 0;
        for (i, &c_out) in self.channels.iter().enumerate() {
            total += c_in * c_out * self.kernel * frames;
            if i + 1 < self.channels.len() {
                frames /= 2;
            }
            c_in = c_out;
        }
        if self.frequency_stem > 0 {
            let c = self.frequency_stem;
            let first = self.channels.first().copied().unwrap_or(0);
            total += (c * 9 * self.stem_conv_rows() + c * self.stem_rows() * first) * n_frames;
        }
        if self.pooling == Pooling::Attentive {
            total += (c_in * ATTENTION_HIDDEN + ATTENTION_HIDDEN + 2 * c_in) * frames;
        }
        total + self.pooling.width(c_in) * self.n_labels
    }

    /// Width of the pooled vector per window that the classifier reads.
    pub fn embedding_width(&self) -> usize {
        self.pooling
            .width(self.channels.last().copied().unwrap_or(0))
    }

    pub fn init(&self, device: &Device) -> EmotionCnn {
        assert!(self.kernel % 2 == 1, "kernel size must be odd");
        assert!(!self.channels.is_empty(), "at least one block");
        assert!(
            self.frequency_stem == 0 || self.stem_rows() > 0,
            "a frequency stem needs at least {} feature rows",
            2 + self.stem_pool
        );
        let stem = (self.frequency_stem > 0).then(|| FrequencyStem {
            conv: Conv2dConfig::new([1, self.frequency_stem], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(0, 1, 0, 1))
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(self.frequency_stem).init(device),
            pool: MaxPool2dConfig::new([self.stem_pool.max(1), 1])
                .with_strides([FREQUENCY_STEM_STRIDE, 1])
                .init(),
            // Added to the first block's convolution before its BN, so like
            // it without a bias.
            project: Conv2dConfig::new(
                [self.frequency_stem, self.channels[0]],
                [self.stem_rows(), 1],
            )
            .with_bias(false)
            .init(device),
        });
        let mut blocks = Vec::with_capacity(self.channels.len());
        let mut c_in = self.n_features;
        for (i, &c_out) in self.channels.iter().enumerate() {
            let dilation = self.dilation(i);
            // Same length out as in: the kernel's reach on either side.
            let pad = dilation * (self.kernel / 2);
            blocks.push(ConvBlock {
                conv: Conv2dConfig::new([c_in, c_out], [1, self.kernel])
                    .with_dilation([1, dilation])
                    .with_padding(PaddingConfig2d::Explicit(0, pad, 0, pad))
                    // BN follows: a conv bias would be redundant.
                    .with_bias(false)
                    .init(device),
                norm: BatchNormConfig::new(c_out).init(device),
                dropout: DropoutConfig::new(self.dropout / 5.0).init(),
            });
            c_in = c_out;
        }
        let attention = (self.pooling == Pooling::Attentive).then(|| Attention {
            hidden: Conv2dConfig::new([c_in, ATTENTION_HIDDEN], [1, 1]).init(device),
            score: Conv2dConfig::new([ATTENTION_HIDDEN, 1], [1, 1]).init(device),
        });
        EmotionCnn {
            stem,
            blocks,
            pool: MaxPool2dConfig::new([1, 2]).init(),
            global_pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            pooling: self.pooling,
            attention,
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(self.embedding_width(), self.n_labels).init(device),
        }
    }
}

#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    norm: BatchNorm,
    dropout: Dropout,
}

/// Per-frame attention scores `v . tanh(W x + b)`, as 1x1 convolutions.
#[derive(Module, Debug)]
pub struct Attention {
    hidden: Conv2d,
    score: Conv2d,
}

/// See [`NetConfig::frequency_stem`]: `[batch, 1, rows, frames]` ->
/// `[batch, first block's channels, 1, frames]`.
#[derive(Module, Debug)]
pub struct FrequencyStem {
    conv: Conv2d,
    norm: BatchNorm,
    pool: MaxPool2d,
    project: Conv2d,
}

impl FrequencyStem {
    fn forward(&self, image: Tensor<4>) -> Tensor<4> {
        self.project.forward(self.detect(image))
    }

    /// The pooled detector maps `[batch, channels, rows / pool, frames]`.
    fn detect(&self, image: Tensor<4>) -> Tensor<4> {
        self.pool
            .forward(relu(self.norm.forward(self.conv.forward(image))))
    }
}

#[derive(Module, Debug)]
pub struct EmotionCnn {
    stem: Option<FrequencyStem>,
    blocks: Vec<ConvBlock>,
    pool: MaxPool2d,
    global_pool: AdaptiveAvgPool2d,
    #[module(skip)]
    pooling: Pooling,
    attention: Option<Attention>,
    dropout: Dropout,
    head: Linear,
}

/// Keeps the square root's argument and gradient finite where a channel is
/// constant over the window.
const STD_FLOOR: f64 = 1e-5;

impl EmotionCnn {
    /// `[batch, n_features, n_frames]` -> logits `[batch, n_labels]`.
    pub fn forward(&self, features: Tensor<3>) -> Tensor<2> {
        self.forward_embedded(features).1
    }

    /// [`forward`](Self::forward) that also returns the pooled window vector
    /// the classifier reads (`[batch, NetConfig::embedding_width]`), for
    /// training losses on what the network keeps of a window.
    pub fn forward_embedded(&self, features: Tensor<3>) -> (Tensor<2>, Tensor<2>) {
        let mut stem = self
            .stem
            .as_ref()
            .map(|stem| stem.forward(features.clone().unsqueeze_dim(1)));
        let mut x: Tensor<4> = features.unsqueeze_dim(2);
        let last = self.blocks.len() - 1;
        for (i, block) in self.blocks.iter().enumerate() {
            let mut y = block.conv.forward(x);
            if let Some(s) = stem.take() {
                y = y + s;
            }
            x = relu(block.norm.forward(y));
            if i < last {
                x = self.pool.forward(x);
            }
            x = block.dropout.forward(x);
        }
        let pooled = self.pool_time(x);
        let logits = self.head.forward(self.dropout.forward(pooled.clone()));
        (pooled, logits)
    }

    /// The shapes of its weights, layer by layer: networks with equal shapes
    /// can be fused (see [`Ensemble::fused`]).
    fn layer_shapes(&self) -> Vec<Vec<usize>> {
        let mut shapes = Vec::new();
        if let Some(stem) = &self.stem {
            shapes.push(stem.conv.weight.dims().to_vec());
            shapes.push(stem.project.weight.dims().to_vec());
        }
        for block in &self.blocks {
            shapes.push(block.conv.weight.dims().to_vec());
        }
        shapes.push(self.head.weight.dims().to_vec());
        shapes
    }

    /// The same network with `offsets` (one per label) added to its logits,
    /// through the classifier's bias: the exported graph keeps its shape.
    ///
    /// # Panics
    /// If `offsets` does not have one value per label, or the head has no
    /// bias (caller bugs: `NetConfig::init` always gives it one).
    #[must_use]
    pub fn with_logit_offsets(mut self, offsets: &[f32]) -> Self {
        let bias = self
            .head
            .bias
            .take()
            .expect("the head is built with a bias");
        let [n_labels] = bias.dims();
        assert_eq!(offsets.len(), n_labels, "one offset per label");
        let shift = Tensor::<1>::from_floats(offsets, &bias.device());
        self.head.bias = Some(bias.map(|b| b + shift));
        self
    }

    /// `[batch, channels, 1, frames]` -> `[batch, channels]` (mean) or
    /// `[batch, 2 * channels]` (mean, then standard deviation). Written with
    /// global average pooling and sums only: the ONNX graph must not divide
    /// by the (dynamic) frame count.
    fn pool_time(&self, x: Tensor<4>) -> Tensor<2> {
        let (mean, square_mean) = if let Some(attention) = &self.attention {
            // Scores are bounded by the tanh, so exp cannot overflow for any
            // sane score weights, and no running max is needed.
            let scores = attention
                .score
                .forward(attention.hidden.forward(x.clone()).tanh());
            let weights = scores.exp();
            let total = weights.clone().sum_dim(3);
            let weighted = x.clone() * weights;
            let mean = weighted.clone().sum_dim(3) / total.clone();
            let square_mean = (weighted * x).sum_dim(3) / total;
            (mean, square_mean)
        } else if self.pooling == Pooling::Mean {
            return self.global_pool.forward(x).flatten(1, 3);
        } else {
            let mean = self.global_pool.forward(x.clone());
            let square_mean = self.global_pool.forward(x.clone() * x);
            (mean, square_mean)
        };
        let variance = relu(square_mean - mean.clone() * mean.clone());
        let std = variance.add_scalar(STD_FLOOR).sqrt();
        Tensor::cat(vec![mean.flatten(1, 3), std.flatten(1, 3)], 1)
    }
}

/// Something that maps feature windows `[batch, n_features, n_frames]` to
/// logits `[batch, n_labels]`: one network or an ensemble, scored alike.
pub trait Classifier: Module {
    fn logits(&self, features: Tensor<3>) -> Tensor<2>;
}

impl Classifier for EmotionCnn {
    fn logits(&self, features: Tensor<3>) -> Tensor<2> {
        self.forward(features)
    }
}

impl Classifier for Ensemble {
    fn logits(&self, features: Tensor<3>) -> Tensor<2> {
        self.forward(features)
    }
}

/// Networks trained alike from different seeds, exported as one graph whose
/// logits are the members' mean: its softmax is the normalised geometric mean
/// of the members' probabilities. Averaging members that each overfit their
/// own way to a few dozen training voices steadies the answer on new voices.
#[derive(Module, Debug)]
pub struct Ensemble {
    members: Vec<EmotionCnn>,
}

impl Ensemble {
    /// # Panics
    /// If `members` is empty (caller bug).
    pub fn new(members: Vec<EmotionCnn>) -> Self {
        assert!(!members.is_empty(), "an ensemble needs a member");
        Self { members }
    }

    /// How many networks it averages.
    pub fn n_members(&self) -> usize {
        self.members.len()
    }

    /// Every member shifted by `offsets`, so the mean logits are too (see
    /// [`EmotionCnn::with_logit_offsets`]).
    #[must_use]
    pub fn with_logit_offsets(self, offsets: &[f32]) -> Self {
        Self::new(
            self.members
                .into_iter()
                .map(|m| m.with_logit_offsets(offsets))
                .collect(),
        )
    }

    /// One network that computes the members' mean logits in one pass, for
    /// export: each layer holds every member's weights side by side, the
    /// layers that read the shared features (the stem's and the first block's
    /// convolutions) as one wider convolution, the later ones as grouped
    /// convolutions (one group a member), and the classifier as one matrix
    /// over every member's pooled vector. The same multiply-adds in half the
    /// operators for two members, so ONNX Runtime runs wider, better-filled
    /// kernels with less overhead a window.
    ///
    /// `None` for a single member (nothing to fuse), members of unlike shapes
    /// (`--member-stems`) and pooling other than the mean (its statistics and
    /// attention are not laid out per channel); those export member by member.
    pub fn fused(&self) -> Option<EmotionCnn> {
        let [first, rest @ ..] = self.members.as_slice() else {
            return None;
        };
        let alike =
            |m: &EmotionCnn| m.layer_shapes() == first.layer_shapes() && m.pooling == first.pooling;
        if rest.is_empty()
            || first.pooling != Pooling::Mean
            || first.attention.is_some()
            || !rest.iter().all(alike)
        {
            return None;
        }
        let n = self.members.len();
        let stem = first.stem.as_ref().map(|stem| {
            let stems: Vec<&FrequencyStem> = self
                .members
                .iter()
                .filter_map(|m| m.stem.as_ref())
                .collect();
            FrequencyStem {
                conv: side_by_side(stems.iter().map(|s| &s.conv), 1),
                norm: norms_side_by_side(stems.iter().map(|s| &s.norm)),
                pool: stem.pool.clone(),
                project: side_by_side(stems.iter().map(|s| &s.project), n),
            }
        });
        let blocks = (0..first.blocks.len())
            .map(|i| {
                let layer = || self.members.iter().map(move |m| &m.blocks[i]);
                ConvBlock {
                    // The first block reads the features every member shares.
                    conv: side_by_side(layer().map(|b| &b.conv), if i == 0 { 1 } else { n }),
                    norm: norms_side_by_side(layer().map(|b| &b.norm)),
                    dropout: first.blocks[i].dropout.clone(),
                }
            })
            .collect();
        let mut head = first.head.clone();
        let weights = self.members.iter().map(|m| m.head.weight.val()).collect();
        head.weight = Param::from_tensor(Tensor::cat(weights, 0).div_scalar(n as f32));
        head.bias = first.head.bias.as_ref().map(|_| {
            let biases = self
                .members
                .iter()
                .filter_map(|m| m.head.bias.as_ref().map(|b| b.val().unsqueeze_dim::<2>(0)))
                .collect();
            Param::from_tensor(Tensor::cat(biases, 0).mean_dim(0).squeeze_dim(0))
        });
        Some(EmotionCnn {
            stem,
            blocks,
            pool: first.pool.clone(),
            global_pool: first.global_pool.clone(),
            pooling: first.pooling,
            attention: None,
            dropout: first.dropout.clone(),
            head,
        })
    }

    /// `[batch, n_features, n_frames]` -> mean logits `[batch, n_labels]`. A
    /// single member is returned as it is, so its graph has no extra nodes.
    pub fn forward(&self, features: Tensor<3>) -> Tensor<2> {
        let (first, rest) = self
            .members
            .split_first()
            .expect("Ensemble::new rejects an empty ensemble");
        let mut sum = first.forward(features.clone());
        if rest.is_empty() {
            return sum;
        }
        for member in rest {
            sum = sum + member.forward(features.clone());
        }
        sum.div_scalar(self.members.len() as f32)
    }
}

/// The convolutions `convs` (same shape, no groups) as one: their output
/// channels side by side, in `groups` groups (1 when they read the same input,
/// their count when each reads its own member's channels).
fn side_by_side<'a>(convs: impl Iterator<Item = &'a Conv2d>, groups: usize) -> Conv2d {
    let convs: Vec<&Conv2d> = convs.collect();
    let mut conv = convs[0].clone();
    conv.weight = Param::from_tensor(Tensor::cat(
        convs.iter().map(|c| c.weight.val()).collect(),
        0,
    ));
    conv.bias = convs[0].bias.as_ref().map(|_| {
        let biases = convs
            .iter()
            .filter_map(|c| c.bias.as_ref().map(|b| b.val()));
        Param::from_tensor(Tensor::cat(biases.collect(), 0))
    });
    conv.groups = groups;
    conv
}

/// Batch normalisations over channels side by side: per-channel, so each
/// keeps its own statistics and scale.
fn norms_side_by_side<'a>(norms: impl Iterator<Item = &'a BatchNorm>) -> BatchNorm {
    let norms: Vec<&BatchNorm> = norms.collect();
    let cat =
        |part: fn(&BatchNorm) -> Tensor<1>| Tensor::cat(norms.iter().map(|n| part(n)).collect(), 0);
    let mut norm = norms[0].clone();
    norm.gamma = Param::from_tensor(cat(|n| n.gamma.val()));
    norm.beta = Param::from_tensor(cat(|n| n.beta.val()));
    norm.running_mean = RunningState::new(cat(|n| n.running_mean.value()));
    norm.running_var = RunningState::new(cat(|n| n.running_var.value()));
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stem's detectors are the same in every band: a spectral pattern
    /// moved up by one pooling stride gives the same pooled map moved up by
    /// one row (the first block's per-band convolution alone could not do
    /// this), with the default spans and with wider, overlapping ones; and
    /// the stem's cost is counted.
    #[test]
    fn frequency_stem_moves_with_the_spectrum_and_is_counted() {
        let rows = 30;
        // 28 convolved rows: 7 spans of 4, or 6 spans of 8 starting every 4.
        for (span, pooled_rows) in [(FREQUENCY_STEM_POOL, 7), (8, 6)] {
            let config = NetConfig {
                channels: vec![8, 8],
                frequency_stem: 3,
                stem_pool: span,
                ..NetConfig::new(rows, 4)
            };
            check_stem_moves_with_the_spectrum(&config, pooled_rows);
        }
    }

    fn check_stem_moves_with_the_spectrum(config: &NetConfig, pooled_rows: usize) {
        let device = Device::flex();
        device.seed(5);
        let rows = config.n_features;
        let frames = 12;
        let net = config.init(&device).valid();
        let stem = net.stem.as_ref().expect("a stem was asked for");
        let image = |low: usize| {
            let data: Vec<f32> = (0..rows * frames)
                .map(|i| {
                    let (r, t) = (i / frames, i % frames);
                    if (low..low + 3).contains(&r) {
                        1.0 + (t as f32 * 0.7).sin() + (r - low) as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            Tensor::<4>::from_data(TensorData::new(data, [1, 1, rows, frames]), &device)
        };
        let low = stem.detect(image(8));
        let high = stem.detect(image(8 + FREQUENCY_STEM_STRIDE));
        assert_eq!(low.dims(), [1, 3, pooled_rows, frames]);
        assert_eq!(config.stem_rows(), pooled_rows);
        let moved = high.slice([0..1, 0..3, 1..pooled_rows, 0..frames]);
        let kept = low
            .clone()
            .slice([0..1, 0..3, 0..pooled_rows - 1, 0..frames]);
        let gap = (moved - kept).abs().max().into_scalar::<f32>();
        assert!(
            gap < 1e-5,
            "the pooled map did not move with the pattern ({gap})"
        );
        assert!(
            low.abs().max().into_scalar::<f32>() > 1e-3,
            "nothing detected"
        );

        let plain = NetConfig {
            frequency_stem: 0,
            ..config.clone()
        };
        assert_eq!(
            config.macs(frames) - plain.macs(frames),
            3 * (9 * (rows - 2) + pooled_rows * 8) * frames
        );
    }

    /// A dilated block reaches twice as far for the same kernel and keeps the
    /// window's length: an impulse comes out at the frames `dilation` apart.
    #[test]
    fn a_dilated_block_reaches_further_and_keeps_the_length() {
        let device = Device::flex();
        device.seed(3);
        let (rows, frames) = (5, 20);
        let config = NetConfig {
            channels: vec![3, 3],
            dilations: vec![2],
            ..NetConfig::new(rows, 4)
        };
        let net = config.init(&device).valid();
        let mut data = vec![0.0f32; rows * frames];
        for r in 0..rows {
            data[r * frames + 10] = 1.0;
        }
        let impulse = Tensor::<4>::from_data(TensorData::new(data, [1, rows, 1, frames]), &device);
        let out = net.blocks[0].conv.forward(impulse);
        assert_eq!(out.dims(), [1, 3, 1, frames]);
        let energy = out
            .abs()
            .sum_dim(1)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32 data");
        let reached: Vec<usize> = (0..frames).filter(|&t| energy[t] > 1e-6).collect();
        assert_eq!(reached, [8, 10, 12]);
        assert_eq!(config.dilation(1), 1, "blocks not named keep dilation 1");
    }

    /// A network whose batch normalisations carry statistics and scales of
    /// their own (fresh ones are all 0 and 1, which would hide a layer fused
    /// in the wrong order).
    fn trained_looking(config: &NetConfig, seed: u64) -> EmotionCnn {
        let device = Device::flex();
        device.seed(seed);
        let mut net = config.init(&device).valid();
        let scramble = |norm: &mut BatchNorm| {
            let [c] = norm.gamma.dims();
            let random = |low: f64, high: f64| {
                Tensor::<1>::random([c], burn::tensor::Distribution::Uniform(low, high), &device)
            };
            norm.gamma = Param::from_tensor(random(0.5, 1.5));
            norm.beta = Param::from_tensor(random(-0.5, 0.5));
            norm.running_mean = RunningState::new(random(-0.3, 0.3));
            norm.running_var = RunningState::new(random(0.5, 2.0));
        };
        if let Some(stem) = net.stem.as_mut() {
            scramble(&mut stem.norm);
        }
        for block in &mut net.blocks {
            scramble(&mut block.norm);
        }
        net
    }

    /// The fused network is the ensemble: the same mean logits from one pass,
    /// with every member's layers side by side; and members it cannot lay
    /// side by side are left alone.
    #[test]
    fn a_fused_ensemble_computes_its_members_mean() {
        let device = Device::flex();
        let config = NetConfig {
            channels: vec![8, 16, 24],
            frequency_stem: 3,
            ..NetConfig::new(30, 4)
        };
        let members: Vec<EmotionCnn> = (1..=3).map(|s| trained_looking(&config, s)).collect();
        let ensemble = Ensemble::new(members.clone());
        let fused = ensemble.fused().expect("members of one shape fuse");
        let stem = fused.stem.as_ref().expect("the stem is kept");
        assert_eq!(stem.conv.weight.dims(), [9, 1, 3, 3]);
        assert_eq!((stem.project.groups, fused.blocks[0].conv.groups), (3, 1));
        assert_eq!(fused.blocks[1].conv.weight.dims(), [48, 8, 1, 3]);
        assert_eq!(fused.blocks[1].conv.groups, 3);
        assert_eq!(fused.head.weight.dims(), [72, 4]);

        let x = Tensor::<3>::random(
            [2, 30, 23],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let expected = ensemble.forward(x.clone());
        let spread = (members[0].forward(x.clone()) - members[1].forward(x.clone()))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(
            spread > 1e-2,
            "members agree to {spread}: the mean proves nothing"
        );
        let gap = (fused.forward(x) - expected)
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(gap < 1e-5, "fused logits differ from the mean by {gap}");

        let single = Ensemble::new(vec![members[0].clone()]);
        assert!(single.fused().is_none(), "one network has nothing to fuse");
        let stemless = NetConfig {
            frequency_stem: 0,
            ..config.clone()
        };
        let unlike = Ensemble::new(vec![members[0].clone(), trained_looking(&stemless, 4)]);
        assert!(
            unlike.fused().is_none(),
            "a stem beside none cannot be fused"
        );
        let attentive = NetConfig {
            pooling: Pooling::Attentive,
            ..config
        };
        let pair = Ensemble::new(vec![
            trained_looking(&attentive, 5),
            trained_looking(&attentive, 6),
        ]);
        assert!(pair.fused().is_none(), "attentive pooling is not fused");
    }
}
