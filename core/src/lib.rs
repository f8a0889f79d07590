//! seremotion's core: everything between PCM samples and an emotion, with no
//! GStreamer or GLib in it, so that the element, the trainer and the call
//! analyser share one implementation.
//!
//! Data flows one way: PCM -> [`resample`] -> [`features`] -> [`analysis`]
//! (windows, [`speech`] decision, aggregation) -> [`model`] -> scores.

pub mod analysis;
pub mod features;
pub mod model;
#[cfg(feature = "plot")]
pub mod plot;
pub mod resample;
pub mod speech;
