//! Shared helpers of the integration tests.

pub mod fixtures;
pub mod pdf;
pub mod smtp;
