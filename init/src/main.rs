//! `d2v-init`: the guest's PID 1 in a d2v microVM.
//!
//! It opens the channel to the host (a virtio-console port, or vsock under
//! Firecracker), receives the run request (the `docker run` flags, the clock,
//! the terminal), and turns the image's runtime config
//! (`/etc/d2v/config.json`, written by `d2v pack`) plus those overrides into
//! what `docker run` would do: Docker's /dev, hostname, network, /etc files,
//! volumes, environment, user, rlimits, working directory. Then it runs
//! ENTRYPOINT+CMD as its child with pipes (or a terminal) for stdio relayed
//! over the channel, forwards signals and stop requests, reaps zombies, and
//! shuts the VM down after sending the exit code.
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
mod channel;
mod config;
mod initrd;
mod net;
mod pid1;
mod setup;
mod stdio;
mod supervise;
mod sys;

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
    // SAFETY: glibc's startup passes an array of argc pointers in argv.
    let argv = unsafe { core::slice::from_raw_parts(argv, argc.max(0) as usize) };
    let mut args = Vec::new();
    for &ptr in argv {
        // SAFETY: each of those pointers is a valid NUL-terminated string that
        // lives as long as the process.
        let arg = unsafe { core::ffi::CStr::from_ptr(ptr) };
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
