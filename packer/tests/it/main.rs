//! d2v-packer's integration tests, one binary with a module per area: images
//! judged by `e2fsck -fn`, read back by the kernel (loop mounts) and by
//! `debugfs`, compared with their source tree. Facility checks and e2fsck come
//! from `d2v-testkit`.

mod common;

mod backup_super;
mod big;
mod determinism;
mod generated_trees;
mod inline_data;
mod roundtrip;
mod tar_source;
