//! Tests of the loadtest domain.
