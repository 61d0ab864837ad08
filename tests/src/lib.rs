//! Shared pieces of the cross-crate integration and adversarial suites:
//! a [`canary`] directory outside every root, whose state is compared before
//! and after an attack, and the [`race`] campaign used by the race suite and
//! by `cargo xtask race`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure here is a test failure

pub mod canary;
pub mod race;
pub mod race_mover;
pub mod race_reads;

/// The workspace README's examples, compiled and run as doctests (this crate
/// depends on every crate the README shows).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
