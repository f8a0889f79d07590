//! GStreamer plugin `seremotion`: speech emotion recognition for audio pipelines.
//!
//! The element is GStreamer glue around [`seremotion_core`], which holds the
//! features, windowing, speech decision and model contract that the trainer
//! and the call analyser share, so that training and serving cannot drift apart.

use gst::glib;

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
