//! The root crate's integration tests, one binary with a module per area
//! (ripgrep's layout): one link instead of one per file, and process-wide
//! locks (such as [`run_support::one_boot`]) hold across every module.
//! Shared helpers: `harness` (the d2v binary, throwaway stores, fixtures),
//! `run_support` (boot images), `build_common` (sandbox rootfs); facility
//! checks and tree comparison come from the `d2v-testkit` crate.

#[macro_use]
mod run_support;
mod build_common;
mod harness;

mod build_cli;
mod build_confine;
mod build_copy;
mod build_layer;
mod build_oracle;
mod build_sandbox;
mod cache_share;
mod daemon;
mod example_hello;
mod frontend_build;
mod frontend_buildah;
mod frontend_cases;
mod frontend_cli;
mod frontend_fuzz;
mod frontend_parity;
mod mount;
mod mount_oracle;
mod pack_image;
mod registry;
mod registry_limits;
mod run_boot;
mod run_init_static;
mod run_probe;
mod run_signals;
mod run_stdio;
mod run_system;
mod store_import;
mod store_integrity;
