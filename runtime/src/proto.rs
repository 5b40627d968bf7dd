//! The host–guest channel: one byte stream between d2v and init, carried by a
//! virtio-console port under QEMU ([`VIRTIO_PORT_NAME`]) or a vsock
//! connection under Firecracker ([`VSOCK_PORT`] on the host, CID 2), cut into
//! frames: a kind byte, a little-endian `u32` payload length, the payload.
//!
//! The conversation: init sends [`Kind::Hello`]; the host answers with
//! [`Kind::Start`] (a [`crate::config::RunRequest`] as JSON) and
//! [`Kind::Clock`]; then stdin, resizes and stop requests flow in, the
//! entrypoint's stdout and stderr (separate, byte-exact) and init's own
//! messages flow out, and [`Kind::Exit`] carries the exit code, which the host
//! acknowledges with [`Kind::Done`] before init powers the VM off. The entrypoint
//! never touches the channel, so it cannot forge any of it.

use alloc::string::String;
use alloc::vec::Vec;

/// The name of the virtio-console port (QEMU `virtserialport,name=`).
pub const VIRTIO_PORT_NAME: &str = "org.d2v.channel";
/// The vsock port init connects to on the host (CID 2); Firecracker forwards
/// it to the Unix socket `<uds_path>_10240`.
pub const VSOCK_PORT: u32 = 10_240;
/// Protocol version sent in [`Kind::Hello`].
pub const VERSION: u8 = 1;
/// Largest payload either side accepts.
pub const MAX_PAYLOAD: usize = 64 << 20;
/// Largest stdio payload a sender puts in one frame.
pub const MAX_DATA: usize = 64 << 10;
/// Frame header length: kind + length.
pub const HEADER: usize = 5;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Guest → host: init is up; payload: [`VERSION`].
    Hello = 1,
    /// Guest → host: the entrypoint's stdout bytes (its terminal with `-t`).
    Stdout = 2,
    /// Guest → host: the entrypoint's stderr bytes.
    Stderr = 3,
    /// Guest → host: an init message, [`Level`] byte then UTF-8 text.
    Log = 4,
    /// Guest → host: the exit code, `i32` little-endian; the last frame.
    Exit = 5,
    /// Host → guest: the run request (JSON).
    Start = 16,
    /// Host → guest: wall-clock time, `i64` seconds + `u32` nanoseconds.
    Clock = 17,
    /// Host → guest: bytes for the entrypoint's stdin.
    Stdin = 18,
    /// Host → guest: stdin is closed.
    StdinEof = 19,
    /// Host → guest: terminal size, `u16` rows + `u16` columns.
    Resize = 20,
    /// Host → guest: stop: send the image's STOPSIGNAL.
    Stop = 21,
    /// Host → guest: the stop timeout passed: SIGKILL.
    Kill = 22,
    /// Host → guest: the exit code arrived (and so did everything before it):
    /// init may power off. Without it a VMM can exit with output unread.
    Done = 23,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Stdout,
            3 => Kind::Stderr,
            4 => Kind::Log,
            5 => Kind::Exit,
            16 => Kind::Start,
            17 => Kind::Clock,
            18 => Kind::Stdin,
            19 => Kind::StdinEof,
            20 => Kind::Resize,
            21 => Kind::Stop,
            22 => Kind::Kill,
            23 => Kind::Done,
            _ => return None,
        })
    }
}

/// How loud an init message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Level {
    /// Why the run failed: always shown.
    Error = 1,
    /// Progress: shown with `--debug`.
    Info = 2,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it is.
    pub kind: Kind,
    /// Its bytes.
    pub payload: Vec<u8>,
}

/// A malformed stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// An unknown kind byte.
    UnknownKind(u8),
    /// A payload longer than the receiver accepts.
    TooLong(usize),
    /// A payload of the wrong size for its kind.
    BadPayload(Kind),
}

impl core::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProtoError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            ProtoError::TooLong(n) => write!(f, "frame of {n} bytes is too long"),
            ProtoError::BadPayload(k) => write!(f, "malformed {k:?} frame"),
        }
    }
}

/// Appends one frame to `out`.
pub fn encode(kind: Kind, payload: &[u8], out: &mut Vec<u8>) {
    out.push(kind as u8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// One frame as bytes.
pub fn frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    encode(kind, payload, &mut out);
    out
}

/// Cuts a byte stream into frames.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    max: usize,
}

impl Decoder {
    /// A decoder accepting payloads up to `max` bytes.
    pub fn new(max: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            start: 0,
            max,
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > (1 << 16) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtoError> {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER {
            return Ok(None);
        }
        let kind = Kind::from_u8(avail[0]).ok_or(ProtoError::UnknownKind(avail[0]))?;
        let len = u32::from_le_bytes([avail[1], avail[2], avail[3], avail[4]]) as usize;
        if len > self.max {
            return Err(ProtoError::TooLong(len));
        }
        if avail.len() < HEADER + len {
            return Ok(None);
        }
        let payload = avail[HEADER..HEADER + len].to_vec();
        self.start += HEADER + len;
        Ok(Some(Frame { kind, payload }))
    }

    /// Bytes received but not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// The payload of [`Kind::Exit`].
pub fn exit_payload(code: i32) -> [u8; 4] {
    code.to_le_bytes()
}

/// The payload of [`Kind::Clock`].
pub fn clock_payload(secs: i64, nanos: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&secs.to_le_bytes());
    b[8..].copy_from_slice(&nanos.to_le_bytes());
    b
}

/// The payload of [`Kind::Resize`].
pub fn resize_payload(rows: u16, cols: u16) -> [u8; 4] {
    let mut b = [0u8; 4];
    b[..2].copy_from_slice(&rows.to_le_bytes());
    b[2..].copy_from_slice(&cols.to_le_bytes());
    b
}

/// The payload of [`Kind::Log`].
pub fn log_payload(level: Level, text: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(1 + text.len());
    b.push(level as u8);
    b.extend_from_slice(text.as_bytes());
    b
}

impl Frame {
    fn fixed<const N: usize>(&self) -> Result<[u8; N], ProtoError> {
        self.payload
            .as_slice()
            .try_into()
            .map_err(|_| ProtoError::BadPayload(self.kind))
    }

    /// An [`Kind::Exit`] frame's code.
    pub fn exit_code(&self) -> Result<i32, ProtoError> {
        Ok(i32::from_le_bytes(self.fixed::<4>()?))
    }

    /// A [`Kind::Clock`] frame's time.
    pub fn clock(&self) -> Result<(i64, u32), ProtoError> {
        let b = self.fixed::<12>()?;
        let secs = i64::from_le_bytes(b[..8].try_into().unwrap_or_default());
        let nanos = u32::from_le_bytes(b[8..].try_into().unwrap_or_default());
        if nanos >= 1_000_000_000 {
            return Err(ProtoError::BadPayload(self.kind));
        }
        Ok((secs, nanos))
    }

    /// A [`Kind::Resize`] frame's (rows, columns).
    pub fn resize(&self) -> Result<(u16, u16), ProtoError> {
        let b = self.fixed::<4>()?;
        Ok((
            u16::from_le_bytes([b[0], b[1]]),
            u16::from_le_bytes([b[2], b[3]]),
        ))
    }

    /// A [`Kind::Log`] frame's level and text.
    pub fn log(&self) -> Result<(Level, String), ProtoError> {
        let (&lvl, text) = self
            .payload
            .split_first()
            .ok_or(ProtoError::BadPayload(self.kind))?;
        let level = match lvl {
            1 => Level::Error,
            2 => Level::Info,
            _ => return Err(ProtoError::BadPayload(self.kind)),
        };
        Ok((level, String::from_utf8_lossy(text).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn frames_survive_any_split_of_the_stream() {
        let mut stream = Vec::new();
        encode(Kind::Hello, &[VERSION], &mut stream);
        encode(Kind::Stdout, b"a\nb", &mut stream);
        encode(Kind::Stderr, &[], &mut stream);
        encode(Kind::Exit, &exit_payload(-3), &mut stream);
        for step in [1, 2, 3, 7, stream.len()] {
            let mut d = Decoder::new(1024);
            let mut got = Vec::new();
            for chunk in stream.chunks(step) {
                d.push(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 4, "step {step}");
            assert_eq!(got[1].payload, b"a\nb");
            assert_eq!(got[3].exit_code(), Ok(-3));
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn payload_helpers_round_trip() {
        let f = |k, p: &[u8]| Frame {
            kind: k,
            payload: p.to_vec(),
        };
        assert_eq!(
            f(Kind::Clock, &clock_payload(1_700_000_000, 5)).clock(),
            Ok((1_700_000_000, 5))
        );
        assert_eq!(
            f(Kind::Resize, &resize_payload(40, 120)).resize(),
            Ok((40, 120))
        );
        assert_eq!(
            f(Kind::Log, &log_payload(Level::Error, "no user")).log(),
            Ok((Level::Error, "no user".into()))
        );
        assert!(f(Kind::Exit, &[1, 2]).exit_code().is_err());
        assert!(f(Kind::Clock, &clock_payload(0, 2_000_000_000))
            .clock()
            .is_err());
    }

    #[test]
    fn hostile_streams_are_errors_not_allocations() {
        let mut d = Decoder::new(16);
        d.push(&[2, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(d.next_frame(), Err(ProtoError::TooLong(0x7fff_ffff)));
        let mut d = Decoder::new(16);
        d.push(&[99, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(ProtoError::UnknownKind(99)));
        let _ = vec![0u8; 0];
    }
}
