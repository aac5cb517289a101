//! TODO(daemon helper): ledger-driven delivery.
