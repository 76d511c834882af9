//! Tests of the analytics domain.
