//! Shared helpers of the integration tests.

pub mod bin;
pub mod crm;
pub mod fixtures;
pub mod pdf;
pub mod proxy;
pub mod smtp;
