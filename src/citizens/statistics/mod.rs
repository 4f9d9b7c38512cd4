//! The statistics of an import (birthdays by month or channel, age
//! percentiles by town) and the answers kept about imports.
//!
//! `answers` holds what they answer; `queries` computes them in SQL from the
//! stored rows, `computed` from the citizens `POST /imports` has just
//! written, with the same results; `kept` holds the answers per import
//! version (each kind a [`versioned::PerVersion`]), so that a first ask
//! after an import, or a second ask, is a version check.

mod answers;
mod computed;
mod kept;
mod queries;
mod versioned;

pub use answers::{AgePercentiles, Birthdays, GroupBy, Presents, UNKNOWN_CHANNEL};
pub(super) use kept::current_version;
pub use kept::{ImportAnswers, KeptAnswers};
pub use queries::{
    age_percentiles, birthdays, AGE_PERCENTILES, BIRTHDAYS_BY_CHANNEL, BIRTHDAYS_BY_MONTH,
};
pub(super) use versioned::Key;
