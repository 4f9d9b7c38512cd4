//! insikt: where the demand for new courses is, by city (and nearby airport),
//! age group and advertising channel.
//!
//! `startup` wires the pieces; `http` is the only module that knows about
//! warp; the domain modules know PostgreSQL through `db`; `kafka` wraps rdkafka.

pub mod citizens;
pub mod config;
pub mod db;
pub mod http;
pub mod kafka;
pub mod startup;
pub mod telemetry;
