//! The font the project's plots (the trainer's confusion matrices, the call
//! analyser's timelines) are laid out with: compiled in, because plotters
//! finds no system font without fontconfig.

use std::fmt;
use std::sync::OnceLock;

/// The compiled-in font could not be parsed: a broken build, not bad input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FontError;

impl fmt::Display for FontError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the embedded plot font could not be parsed")
    }
}

impl std::error::Error for FontError {}

/// Registers the compiled-in font as plotters' "sans-serif" (once per process;
/// later calls return the first call's outcome).
pub fn register_font() -> Result<(), FontError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = REGISTERED.get_or_init(|| {
        plotters::style::register_font(
            "sans-serif",
            plotters::style::FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        )
        .is_ok()
    });
    if *ok { Ok(()) } else { Err(FontError) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_font_registers_and_lays_out_text() {
        register_font().expect("font");
        register_font().expect("second call");
        let font = plotters::style::FontDesc::new(
            plotters::style::FontFamily::SansSerif,
            12.0,
            plotters::style::FontStyle::Normal,
        );
        let (w, h) = font.box_size("angry").expect("layout");
        assert!(w > 10 && h > 5, "{w}x{h}");
    }
}
