//! `-p`/`--publish` and `-P`/`--publish-all`, as `docker run` reads them:
//! `[IP:][HOST:]GUEST[/tcp|/udp]`; no HOST (or an empty one) picks a free
//! port, as does `-P` for every EXPOSEd port; the bindings print like
//! `docker port`.

use super::RunError;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

/// TCP or UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port; `host` 0 means "pick one".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    /// Host address to bind (Docker's default 0.0.0.0).
    pub ip: IpAddr,
    /// Host port; 0 until [`PortMapping::resolve`] picks one.
    pub host: u16,
    /// Guest port.
    pub guest: u16,
    /// Protocol.
    pub proto: Proto,
}

impl std::str::FromStr for PortMapping {
    type Err = RunError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RunError::BadPort(s.to_string());
        let (spec, proto) = match s.rsplit_once('/') {
            Some((p, "tcp")) => (p, Proto::Tcp),
            Some((p, "udp")) => (p, Proto::Udp),
            Some(_) => return Err(bad()),
            None => (s, Proto::Tcp),
        };
        // An IPv6 address comes in brackets: [::1]:8080:80.
        let (ip, rest) = match spec.strip_prefix('[') {
            Some(r) => {
                let (ip, rest) = r.split_once("]:").ok_or_else(bad)?;
                (Some(ip.parse::<IpAddr>().map_err(|_| bad())?), rest)
            }
            None => {
                let parts: Vec<&str> = spec.split(':').collect();
                match parts.len() {
                    1 | 2 => (None, spec),
                    3 => (
                        Some(parts[0].parse::<IpAddr>().map_err(|_| bad())?),
                        &spec[parts[0].len() + 1..],
                    ),
                    _ => return Err(bad()),
                }
            }
        };
        let (host, guest) = match rest.split_once(':') {
            Some((h, g)) => (h, g),
            None => ("", rest),
        };
        let host = if host.is_empty() {
            0
        } else {
            host.parse().map_err(|_| bad())?
        };
        let guest: u16 = guest.parse().map_err(|_| bad())?;
        if guest == 0 {
            return Err(bad());
        }
        Ok(PortMapping {
            ip: ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            host,
            guest,
            proto,
        })
    }
}

impl PortMapping {
    /// `-P`'s mapping of an EXPOSE entry (`8080/tcp`, `53/udp`, `80`).
    pub fn for_exposed(exposed: &str) -> Option<PortMapping> {
        let (port, proto) = match exposed.split_once('/') {
            Some((p, "udp")) => (p, Proto::Udp),
            Some((p, "tcp")) => (p, Proto::Tcp),
            Some(_) => return None,
            None => (exposed, Proto::Tcp),
        };
        Some(PortMapping {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            host: 0,
            guest: port.parse().ok().filter(|&p| p != 0)?,
            proto,
        })
    }

    /// Picks a free host port when none was given (the kernel's choice of an
    /// ephemeral port, as Docker does).
    pub fn resolve(mut self) -> Result<PortMapping, RunError> {
        if self.host == 0 {
            let addr = SocketAddr::new(self.ip, 0);
            let port = match self.proto {
                Proto::Tcp => TcpListener::bind(addr).and_then(|l| l.local_addr()),
                Proto::Udp => UdpSocket::bind(addr).and_then(|l| l.local_addr()),
            };
            self.host = port
                .map_err(|e| RunError::BadPort(format!("no free port on {}: {e}", self.ip)))?
                .port();
        }
        Ok(self)
    }

    /// QEMU user networking's `hostfwd=` value.
    pub fn hostfwd(&self) -> String {
        let ip = match self.ip {
            IpAddr::V4(v4) if v4.is_unspecified() => String::new(),
            ip => ip.to_string(),
        };
        format!(
            "hostfwd={}:{ip}:{}-:{}",
            self.proto.name(),
            self.host,
            self.guest
        )
    }

    /// The line `docker port` prints: `8080/tcp -> 0.0.0.0:32768`.
    pub fn docker_port_line(&self) -> String {
        let host = match self.ip {
            IpAddr::V6(v6) => format!("[{v6}]:{}", self.host),
            IpAddr::V4(v4) => format!("{v4}:{}", self.host),
        };
        format!("{}/{} -> {host}", self.guest, self.proto.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortMapping {
        s.parse().unwrap()
    }

    #[test]
    fn reads_dockers_publish_forms() {
        let m = p("18080:8080");
        assert_eq!(
            (m.ip.to_string().as_str(), m.host, m.guest, m.proto),
            ("0.0.0.0", 18080, 8080, Proto::Tcp)
        );
        let m = p("127.0.0.1:5353:53/udp");
        assert_eq!(
            (m.ip.to_string().as_str(), m.host, m.guest, m.proto),
            ("127.0.0.1", 5353, 53, Proto::Udp)
        );
        assert_eq!(p("8080").host, 0);
        assert_eq!(p("127.0.0.1::8080").host, 0);
        assert_eq!(p("[::1]:80:8080").ip.to_string(), "::1");
        for bad in ["a:b", "1:2:3:4", "80/sctp", "0", "x.y:1:2", ""] {
            assert!(bad.parse::<PortMapping>().is_err(), "{bad}");
        }
    }

    #[test]
    fn free_ports_are_picked_and_printed_like_docker_port() {
        let m = p("127.0.0.1::8080").resolve().unwrap();
        assert_ne!(m.host, 0);
        assert_eq!(
            m.docker_port_line(),
            format!("8080/tcp -> 127.0.0.1:{}", m.host)
        );
        assert_eq!(
            m.hostfwd(),
            format!("hostfwd=tcp:127.0.0.1:{}-:8080", m.host)
        );
        assert_eq!(p("1:2/udp").hostfwd(), "hostfwd=udp::1-:2");
        assert_eq!(
            PortMapping::for_exposed("53/udp").unwrap().proto,
            Proto::Udp
        );
        assert!(PortMapping::for_exposed("x/tcp").is_none());
    }
}
