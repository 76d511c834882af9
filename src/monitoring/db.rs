//! Every SQL statement of the monitoring domain, by subject (one file each).

mod alerts;
mod errors;
mod requests;
mod retention;

pub use alerts::*;
pub use errors::*;
pub use requests::*;
pub use retention::*;

#[cfg(test)]
mod tests;
