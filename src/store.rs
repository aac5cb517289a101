//! TODO(store): being written.
