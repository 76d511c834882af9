//! Tests of the monitoring domain.
