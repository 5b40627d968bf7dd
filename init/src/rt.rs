//! The little runtime a `no_std` static init needs (allocator, panic handler,
//! static glibc linkage) and the console print macro used everywhere.

use core::fmt;

/// Sends one progress line to the host (shown with `--debug`), or to the
/// console before the channel is open.
pub fn print_fmt(args: fmt::Arguments<'_>) {
    let text = alloc::fmt::format(args);
    crate::channel::log(d2v_runtime::proto::Level::Info, &text);
}

/// One progress line from init (see [`print_fmt`]).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::rt::print_fmt(format_args!($($arg)*))
    };
}

#[cfg(d2v_init_static)]
mod static_rt {
    use core::alloc::{GlobalAlloc, Layout};

    /// glibc's malloc as the global allocator.
    struct LibcAlloc;

    // SAFETY: memalign/free are glibc's thread-safe allocator; memalign returns
    // memory aligned to at least `align` or NULL, which GlobalAlloc allows.
    unsafe impl GlobalAlloc for LibcAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: memalign has no preconditions beyond a power-of-two
            // alignment, which Layout guarantees (raised to malloc's 16).
            unsafe { libc::memalign(layout.align().max(16), layout.size().max(1)) as *mut u8 }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` above,
            // i.e. from memalign, and is freed once.
            unsafe { libc::free(ptr as *mut libc::c_void) }
        }
    }

    #[global_allocator]
    static ALLOC: LibcAlloc = LibcAlloc;

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        let text = alloc::format!("internal error: {info}");
        crate::channel::log(d2v_runtime::proto::Level::Error, &text);
        // SAFETY: abort never returns and is always safe to call.
        unsafe { libc::abort() }
    }

    /// The precompiled `core`/`alloc` reference this symbol; with panic=abort it is
    /// never called.
    #[no_mangle]
    extern "C" fn rust_eh_personality() {}

    // glibc and libgcc, statically (crt-static): the libc crate does not link
    // them itself when std is absent.
    #[link(name = "c", kind = "static", modifiers = "-bundle")]
    extern "C" {}
    #[link(name = "gcc_eh", kind = "static", modifiers = "-bundle")]
    extern "C" {}
    #[link(name = "gcc", kind = "static", modifiers = "-bundle")]
    extern "C" {}
}
