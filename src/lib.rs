//! amiprobe smoke-tests freshly built machine images where they will really run.
//!
//! The pipeline, one module a step: [`spec`] (what was written) -> [`plan`] (what it means, checked)
//! -> [`engine`] (runs the cells on a provider, with [`capture`] and [`probe`]) -> [`results`] ->
//! [`report`]. [`cli`] is a thin layer over it. [`provider`] is the contract every provider
//! implements; [`providers`] holds them and the registry that lists them. The layers are in README's
//! Layout, and `tests/architecture.rs` keeps them.

// A function a newcomer can hold in their head: at most 80 lines (clippy.toml).
#![deny(clippy::too_many_lines)]

pub mod capture;
pub mod cell;
pub mod cli;
pub mod console;
pub mod engine;
pub mod exit;
pub mod plan;
pub mod probe;
pub mod provider;
pub mod providers;
pub mod report;
pub mod results;
pub mod spec;
pub mod text;
