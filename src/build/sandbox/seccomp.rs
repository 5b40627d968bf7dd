//! PLACEHOLDER until the seccomp branch lands: an allow-all program with the
//! same API.
/// A compiled classic-BPF seccomp program.
pub struct SeccompProgram {
    filters: Vec<libc::sock_filter>,
}
impl SeccompProgram {
    /// Docker's default profile for `caps`.
    pub fn docker_default(_caps: u64) -> SeccompProgram {
        SeccompProgram {
            filters: vec![libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: 0x7fff_0000,
            }],
        }
    }
    /// The `sock_fprog`.
    pub fn as_fprog(&self) -> libc::sock_fprog {
        libc::sock_fprog {
            len: self.filters.len() as u16,
            filter: self.filters.as_ptr() as *mut _,
        }
    }
}
