//! Tests of the ai domain.
