//! Report language: labels, number and date formats for Russian and English.
//!
//! Formatting lives here so that the PDF (through pre-formatted strings in the report data)
//! and the e-mail bodies (through minijinja filters) print a number the same way.

use serde::{Deserialize, Serialize};

/// The language of labels, numbers and dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Ru,
    En,
}

impl Language {
    pub fn from_code(code: &str) -> Option<Language> {
        match code {
            "ru" => Some(Language::Ru),
            "en" => Some(Language::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Language::Ru => "ru",
            Language::En => "en",
        }
    }
}
