//! Every SQL statement of the monitoring domain, by subject (one file each).

mod alerts;
mod closed;
mod errors;
mod requests;
mod retention;

pub use alerts::*;
pub use closed::*;
pub use errors::*;
pub use requests::*;
pub use retention::*;

#[cfg(test)]
mod tests;
