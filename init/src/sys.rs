//! Thin, checked wrappers over the libc calls init makes. Each returns an
//! [`Errno`] that prints as its symbolic name (`EPERM`), which is what a person
//! reading a serial console wants.

use alloc::ffi::CString;
use alloc::vec::Vec;
use core::fmt;

/// A failed syscall's errno, displayed by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's current errno.
    pub fn last() -> Errno {
        // SAFETY: __errno_location has no preconditions.
        let errno = unsafe { libc::__errno_location() };
        // SAFETY: it points at this thread's errno, valid for the thread's life.
        Errno(unsafe { *errno })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::ESRCH => "ESRCH",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::ENXIO => "ENXIO",
            libc::E2BIG => "E2BIG",
            libc::ENOEXEC => "ENOEXEC",
            libc::EBADF => "EBADF",
            libc::ECHILD => "ECHILD",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::ENOTDIR => "ENOTDIR",
            libc::EISDIR => "EISDIR",
            libc::EINVAL => "EINVAL",
            libc::EMFILE => "EMFILE",
            libc::ENOSPC => "ENOSPC",
            libc::EROFS => "EROFS",
            libc::ERANGE => "ERANGE",
            libc::ENOSYS => "ENOSYS",
            libc::ELOOP => "ELOOP",
            libc::ENAMETOOLONG => "ENAMETOOLONG",
            libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            libc::ENETUNREACH => "ENETUNREACH",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::ETIMEDOUT => "ETIMEDOUT",
            _ => return write!(f, "errno {}", self.0),
        };
        f.write_str(name)
    }
}

/// Result of a syscall wrapper.
pub type SysResult<T> = Result<T, Errno>;

/// `path` as a C string; interior NULs (impossible in paths from our config) are cut.
pub fn cstr(path: &[u8]) -> CString {
    let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
    CString::new(&path[..end]).unwrap_or_default()
}

fn check(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// Writes all of `data` to `fd`, retrying on EINTR and short writes.
pub fn write_all(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: data points to data.len() readable bytes.
        let n = unsafe { libc::write(fd, data.as_ptr() as *const libc::c_void, data.len()) };
        if n < 0 {
            if Errno::last().0 == libc::EINTR {
                continue;
            }
            return;
        }
        data = &data[n as usize..];
    }
}

/// Opens `path` with `flags` (O_CLOEXEC added).
pub fn open(path: &[u8], flags: i32, mode: u32) -> SysResult<i32> {
    let p = cstr(path);
    // SAFETY: p is a valid C string.
    check(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, mode) })
}

/// Closes `fd`, ignoring errors.
pub fn close(fd: i32) {
    // SAFETY: closing an fd we own.
    unsafe { libc::close(fd) };
}

/// Reads a whole file.
pub fn read_file(path: &[u8]) -> SysResult<Vec<u8>> {
    let fd = open(path, libc::O_RDONLY, 0)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: buf is a writable buffer of buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            close(fd);
            return Err(e);
        }
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    close(fd);
    Ok(out)
}

/// Creates or truncates `path` and writes `data` to it.
pub fn write_file(path: &[u8], data: &[u8], mode: u32) -> SysResult<()> {
    let fd = open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, mode)?;
    write_all(fd, data);
    close(fd);
    Ok(())
}

/// Whether `path` exists (without following a final symlink).
pub fn exists(path: &[u8]) -> bool {
    let p = cstr(path);
    // SAFETY: stat is plain old data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: p is a NUL-terminated path and st a writable stat for the kernel to fill.
    unsafe { libc::lstat(p.as_ptr(), &mut st) == 0 }
}

/// `mkdir(path, mode)`; an existing path is fine.
pub fn mkdir(path: &[u8], mode: u32) -> SysResult<()> {
    let p = cstr(path);
    // SAFETY: p is a valid C string.
    match check(unsafe { libc::mkdir(p.as_ptr(), mode) }) {
        Err(Errno(libc::EEXIST)) | Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `mkdir -p`.
pub fn mkdir_all(path: &[u8], mode: u32) -> SysResult<()> {
    for (i, &b) in path.iter().enumerate() {
        if b == b'/' && i > 0 {
            mkdir(&path[..i], mode)?;
        }
    }
    mkdir(path, mode)
}

/// `symlink(target, link)`; an existing link is fine.
pub fn symlink(target: &[u8], link: &[u8]) -> SysResult<()> {
    let (t, l) = (cstr(target), cstr(link));
    // SAFETY: both are valid C strings.
    match check(unsafe { libc::symlink(t.as_ptr(), l.as_ptr()) }) {
        Err(Errno(libc::EEXIST)) | Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `mount(2)`.
pub fn mount(
    src: &[u8],
    target: &[u8],
    fstype: &[u8],
    flags: libc::c_ulong,
    data: &[u8],
) -> SysResult<()> {
    let (s, t, f, d) = (cstr(src), cstr(target), cstr(fstype), cstr(data));
    let fptr = if fstype.is_empty() {
        core::ptr::null()
    } else {
        f.as_ptr()
    };
    let dptr = if data.is_empty() {
        core::ptr::null()
    } else {
        d.as_ptr() as *const libc::c_void
    };
    // SAFETY: all pointers are valid C strings or NULL, as mount(2) accepts.
    check(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), fptr, flags, dptr) }).map(|_| ())
}

/// `chdir(2)`.
pub fn chdir(path: &[u8]) -> SysResult<()> {
    let p = cstr(path);
    // SAFETY: p is a valid C string.
    check(unsafe { libc::chdir(p.as_ptr()) }).map(|_| ())
}

/// Microseconds of CLOCK_BOOTTIME (time since the kernel started, suspend included).
pub fn boottime() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Formats microseconds as `S.UUUUUU`.
pub struct Micros(pub u64);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// Sleeps for `ms` milliseconds.
pub fn sleep_ms(ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: ts is valid; the remaining-time pointer may be NULL.
    unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
}

/// Makes sure fds 0, 1 and 2 are open, on /dev/console when they were not.
pub fn ensure_console_stdio() {
    // SAFETY: F_GETFD only queries the descriptor.
    let missing = (0..3).any(|fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0);
    if !missing {
        return;
    }
    let p = cstr(b"/dev/console");
    // SAFETY: p is a NUL-terminated path that outlives the call.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    if fd >= 0 {
        for target in 0..3 {
            if fd != target {
                // SAFETY: fd is open; replacing 0..2 is the point (they are missing).
                unsafe { libc::dup2(fd, target) };
            }
        }
        if fd > 2 {
            // SAFETY: fd was opened above and is not used again.
            unsafe { libc::close(fd) };
        }
    }
}

/// `read(2)`, retrying on EINTR.
pub fn read(fd: i32, buf: &mut [u8]) -> SysResult<usize> {
    loop {
        // SAFETY: buf is a writable buffer of buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = Errno::last();
        if e.0 != libc::EINTR {
            return Err(e);
        }
    }
}

/// The entry names of a directory, without `.` and `..`.
pub fn read_dir_names(path: &[u8]) -> SysResult<Vec<Vec<u8>>> {
    let p = cstr(path);
    // SAFETY: p is a valid C string; the DIR stream is closed below.
    let dir = unsafe { libc::opendir(p.as_ptr()) };
    if dir.is_null() {
        return Err(Errno::last());
    }
    let mut out = Vec::new();
    loop {
        // SAFETY: dir is an open DIR stream; the entry is copied before the next call.
        let ent = unsafe { libc::readdir(dir) };
        if ent.is_null() {
            break;
        }
        // SAFETY: ent is the non-null entry readdir just returned, valid until
        // the next readdir on this stream.
        let d_name = unsafe { (*ent).d_name.as_ptr() };
        // SAFETY: d_name is a NUL-terminated name inside that entry; it is
        // copied before the next readdir.
        let name = unsafe { core::ffi::CStr::from_ptr(d_name) }.to_bytes();
        if name != b"." && name != b".." {
            out.push(name.to_vec());
        }
    }
    // SAFETY: closing the stream opened above.
    unsafe { libc::closedir(dir) };
    Ok(out)
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub fn pipe() -> SysResult<(i32, i32)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid out-array of two ints.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

/// Adds O_NONBLOCK to `fd`.
pub fn set_nonblocking(fd: i32) {
    // SAFETY: F_GETFL only reads the flags of an fd we own.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: F_SETFL with an int argument on the same fd.
    unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) };
}

/// `mknod(path, mode, makedev(major, minor))`; an existing node is fine.
pub fn mknod(path: &[u8], mode: u32, major: u32, minor: u32) -> SysResult<()> {
    let p = cstr(path);
    // SAFETY: p is a valid C string.
    match check(unsafe { libc::mknod(p.as_ptr(), mode, libc::makedev(major, minor)) }) {
        Err(Errno(libc::EEXIST)) | Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `chmod(2)`: the umask does not apply.
pub fn chmod(path: &[u8], mode: u32) -> SysResult<()> {
    let p = cstr(path);
    // SAFETY: p is a valid C string.
    check(unsafe { libc::chmod(p.as_ptr(), mode) }).map(|_| ())
}
