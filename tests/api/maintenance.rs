//! Tests of the maintenance domain.
