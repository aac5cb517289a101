//! The one font family of reports and charts, embedded in the binary: PT Sans (ParaType
//! Free Font License, `assets/fonts/PTSans-LICENSE.txt`). Typst's embedded fonts have no
//! sans-serif and Typst ignores generic SVG family names, so templates and charts both name
//! [`FAMILY`]; `render` gives the bytes to Typst, `chart` to plotters (to measure text).

/// The family name templates and chart SVGs use.
pub const FAMILY: &str = "PT Sans";
pub static REGULAR: &[u8] = include_bytes!("../assets/fonts/PTSans-Regular.ttf");
pub static BOLD: &[u8] = include_bytes!("../assets/fonts/PTSans-Bold.ttf");
pub static ITALIC: &[u8] = include_bytes!("../assets/fonts/PTSans-Italic.ttf");

/// Every face of the family, regular first.
pub static ALL: [&[u8]; 3] = [REGULAR, BOLD, ITALIC];
