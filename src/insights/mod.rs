//! Insights (SPEC section 5): see the full module once its parts land.

pub mod segment;
pub mod stats;
pub mod store;
