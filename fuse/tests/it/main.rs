//! d2v-fuse's integration tests, one binary with a module per area: the layer
//! index, the merged tree against an OCI reference extraction and a model, and
//! the mounted FUSE view. Facility checks come from `d2v-testkit`.

mod common;

mod index;
mod model;
mod mount;
mod tree;
