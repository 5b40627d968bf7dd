//! The entrypoint's stdio, as `docker run` wires it: pipes for stdout and
//! stderr (separate streams), stdin a pipe with `-i` or /dev/null; with `-t`
//! one pseudo-terminal for all three. The child's ends are owned by the
//! entrypoint's user, so `/dev/stdout` opens for any uid (runc does the same).

use crate::sys::{self, cstr, Errno};
use alloc::format;
use alloc::string::String;

/// Init's ends of the entrypoint's stdio.
pub struct Stdio {
    /// stdout (or the terminal's master) to read; -1 once closed.
    pub out: i32,
    /// stderr to read; -1 with a terminal or once closed.
    pub err: i32,
    /// Where stdin bytes go; -1 without `-i` or once closed.
    pub input: i32,
    /// Whether `out`/`input` are a terminal master.
    pub tty: bool,
    /// The fds the child makes its 0, 1, 2 (closed in init after the fork).
    pub child: [i32; 3],
}

fn ioctl_ptr<T>(fd: i32, req: libc::c_ulong, arg: *mut T) -> Result<(), Errno> {
    // SAFETY: each caller passes the argument type its request expects.
    if unsafe { libc::ioctl(fd, req, arg) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Sets a terminal's size.
pub fn set_winsize(fd: i32, rows: u16, cols: u16) {
    let mut ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let _ = ioctl_ptr(fd, libc::TIOCSWINSZ, &mut ws);
}

impl Stdio {
    /// Pipes (and /dev/null or a stdin pipe) owned by `uid`/`gid`.
    pub fn pipes(stdin: bool, uid: u32, gid: u32) -> Result<Stdio, String> {
        let e = |what: &str, err: Errno| format!("couldn't create the {what} pipe: {err}");
        let (out_r, out_w) = sys::pipe().map_err(|x| e("stdout", x))?;
        let (err_r, err_w) = sys::pipe().map_err(|x| e("stderr", x))?;
        let (input, child_in) = if stdin {
            let (r, w) = sys::pipe().map_err(|x| e("stdin", x))?;
            (w, r)
        } else {
            let null = sys::open(b"/dev/null", libc::O_RDONLY, 0)
                .map_err(|x| format!("couldn't open /dev/null: {x}"))?;
            (-1, null)
        };
        for fd in [out_w, err_w].into_iter().chain(stdin.then_some(child_in)) {
            // SAFETY: fchown on a pipe we created.
            unsafe { libc::fchown(fd, uid, gid) };
        }
        for fd in [out_r, err_r, input] {
            if fd >= 0 {
                sys::set_nonblocking(fd);
            }
        }
        Ok(Stdio {
            out: out_r,
            err: err_r,
            input,
            tty: false,
            child: [child_in, out_w, err_w],
        })
    }

    /// A pseudo-terminal of `rows`×`cols`; the slave is owned by `uid` and
    /// group tty (5), mode 0620, as runc makes a container's console.
    pub fn terminal(rows: u16, cols: u16, uid: u32) -> Result<Stdio, String> {
        let m = sys::open(b"/dev/pts/ptmx", libc::O_RDWR | libc::O_NOCTTY, 0)
            .map_err(|e| format!("couldn't open /dev/pts/ptmx: {e}"))?;
        let mut unlock: libc::c_int = 0;
        ioctl_ptr(m, libc::TIOCSPTLCK, &mut unlock)
            .map_err(|e| format!("couldn't unlock the terminal: {e}"))?;
        let mut n: libc::c_uint = 0;
        ioctl_ptr(m, libc::TIOCGPTN, &mut n)
            .map_err(|e| format!("couldn't name the terminal: {e}"))?;
        let path = format!("/dev/pts/{n}");
        let p = cstr(path.as_bytes());
        // SAFETY: p is a NUL-terminated path that outlives the call.
        unsafe { libc::chown(p.as_ptr(), uid, 5) };
        // SAFETY: as above.
        unsafe { libc::chmod(p.as_ptr(), 0o620) };
        let s = sys::open(path.as_bytes(), libc::O_RDWR | libc::O_NOCTTY, 0)
            .map_err(|e| format!("couldn't open {path}: {e}"))?;
        set_winsize(m, rows, cols);
        sys::set_nonblocking(m);
        Ok(Stdio {
            out: m,
            err: -1,
            input: m,
            tty: true,
            child: [s, s, s],
        })
    }

    /// Console mode (no host channel): the entrypoint shares init's stdio, the
    /// serial console, as when a VM is booted without d2v.
    pub fn console() -> Stdio {
        Stdio {
            out: -1,
            err: -1,
            input: -1,
            tty: false,
            child: [0, 1, 2],
        }
    }

    /// Closes the child's ends in init.
    pub fn close_child_ends(&mut self) {
        if self.child == [0, 1, 2] {
            return;
        }
        let [a, b, c] = self.child;
        sys::close(a);
        if b != a {
            sys::close(b);
        }
        if c != a && c != b {
            sys::close(c);
        }
        self.child = [-1; 3];
    }
}
