//! GStreamer plugin `seremotion`: speech emotion recognition for audio pipelines.
//!
//! The crate is also a library: [`features`] (pure DSP) and [`model`] (the ONNX
//! model contract) are shared with the trainer so that training and serving
//! cannot drift apart.

use gst::glib;

pub mod analysis;
pub mod features;
pub mod memory;
pub mod model;
pub mod resample;
mod seremotion;

pub use seremotion::SerEmotion;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    seremotion::register(plugin)
}

gst::plugin_define!(
    seremotion,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
