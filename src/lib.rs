//! insikt: where the demand for new courses is, by city (and nearby airport),
//! age group and advertising channel.
//!
//! `startup` wires the pieces; `http` is the only module that knows about
//! warp; the domain modules know PostgreSQL through `db`; `kafka` wraps rdkafka.

pub mod access;
pub mod airports;
pub mod archive;
pub mod audit;
pub mod citizens;
pub mod cli;
pub mod config;
pub mod db;
pub mod demand;
pub mod demo;
pub mod erasure;
pub mod http;
pub mod ingestion;
pub mod insights;
pub mod jobs;
pub mod kafka;
pub mod limits;
pub mod places;
pub mod privacy;
pub mod startup;
pub mod statements;
pub mod telemetry;
