//! TODO(pipeline): being written.
