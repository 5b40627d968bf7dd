//! d2v-tar's integration tests, one binary with a module per area: the
//! shared fixture set read by every front end, and the bounded fuzz target.

mod fixtures;
mod fuzz;
