use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct SerEmotion(ObjectSubclass<imp::SerEmotion>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Documents the enum of the `channel-mode` property with the plugin.
    imp::ChannelMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "seremotion",
        gst::Rank::NONE,
        SerEmotion::static_type(),
    )
}
