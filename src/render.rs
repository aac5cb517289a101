//! TODO(render): being written.
