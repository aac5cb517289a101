//! TODO(schedule): being written.
