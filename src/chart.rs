//! TODO(chart): being written.
