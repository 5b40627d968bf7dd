//! `d2v-init`: the guest's PID 1 in a d2v microVM.
//!
//! It turns the image's runtime config (`/etc/d2v/config.json`, written by
//! `d2v pack`) plus per-boot overrides from the kernel command line
//! (`d2v.run=<base64 JSON>`) into what `docker run` would do: mounts, hostname,
//! network, environment, user, rlimits, working directory, then it runs
//! ENTRYPOINT+CMD as its child, forwards signals, reaps zombies, and shuts the VM
//! down with the child's exit code.
//!
//! The same binary is the `/init` of the module initramfs d2v generates for stock
//! kernels (see [`initrd`]).
//!
//! For the guest it is built by d2v's `build.rs` with `--cfg d2v_init_static`:
//! `no_std` + `no_main` over `alloc` and glibc, linked statically, which keeps it
//! well under 1 MiB. Built normally (the workspace build, unit tests) it is an
//! ordinary std binary running the same code.

#![cfg_attr(d2v_init_static, no_std)]
#![cfg_attr(d2v_init_static, no_main)]

extern crate alloc;

#[macro_use]
mod rt;
mod base64;
mod config;
mod initrd;
mod json;
mod net;
mod pid1;
mod supervise;
mod sys;
mod users;

use alloc::vec::Vec;

/// Dispatches on how we were started: initramfs `/init` or the image's PID 1.
fn run(args: Vec<Vec<u8>>) -> i32 {
    let t0 = sys::boottime();
    if initrd::is_initrd_mode(&args) {
        initrd::main(&args)
    } else {
        pid1::main(&args, t0)
    }
}

#[cfg(d2v_init_static)]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const libc::c_char) -> i32 {
    let mut args = Vec::new();
    for i in 0..argc.max(0) as usize {
        // SAFETY: glibc's startup passes argc valid NUL-terminated strings in argv.
        let arg = unsafe { core::ffi::CStr::from_ptr(*argv.add(i)) };
        args.push(arg.to_bytes().to_vec());
    }
    run(args)
}

#[cfg(not(d2v_init_static))]
fn main() {
    use std::os::unix::ffi::OsStringExt;
    let args = std::env::args_os().map(|a| a.into_vec()).collect();
    std::process::exit(run(args));
}
