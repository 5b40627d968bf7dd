//! The little runtime a `no_std` static init needs (allocator, panic handler,
//! static glibc linkage) and the console print macro used everywhere.

use core::fmt;

/// Writes formatted text to stderr (the console) in one `write(2)` per call.
pub fn print_fmt(args: fmt::Arguments<'_>) {
    let text = alloc::fmt::format(args);
    crate::sys::write_all(2, text.as_bytes());
}

/// Prints one line to the console, prefixed with `d2v-init: `.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::rt::print_fmt(format_args!("d2v-init: {}\n", format_args!($($arg)*)))
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
            libc::memalign(layout.align().max(16), layout.size().max(1)) as *mut u8
        }
        unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
            libc::free(ptr as *mut libc::c_void)
        }
    }

    #[global_allocator]
    static ALLOC: LibcAlloc = LibcAlloc;

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        crate::rt::print_fmt(format_args!("d2v-init: internal error: {info}\n"));
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
