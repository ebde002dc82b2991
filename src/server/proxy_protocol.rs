//! The PROXY protocol (v2), from load balancers the operator trusts
//! (`limits.trusted_proxies`): behind a TLS-passthrough balancer every
//! connection comes from the balancer's address, so the header it sends
//! before TLS carries the client's, and that address is what every
//! per-source rule and the audit `source` use. A trusted peer must send the
//! header; nobody else's is read (it would be the client's own claim).

use std::net::{IpAddr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// An address range (`10.0.0.0/8`, `::1/128`, or one address); read from
/// the configuration as text, checked as it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

/// Why an address range does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not an IP address.
    #[error("\"{0}\" is not an address or address/prefix")]
    NotAnAddress(String),
    /// A prefix longer than the address.
    #[error("\"{given}\": the prefix must be 0 to {max}")]
    Prefix {
        /// What was given.
        given: String,
        /// The address's length in bits.
        max: u8,
    },
}

impl std::str::FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, bits) = s.split_once('/').unwrap_or((s, ""));
        let net: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| CidrError::NotAnAddress(s.to_owned()))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = if bits.is_empty() {
            max
        } else {
            bits.trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| CidrError::Prefix {
                    given: s.to_owned(),
                    max,
                })?
        };
        Ok(Self { net, bits })
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;

    fn try_from(s: String) -> Result<Self, CidrError> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> Self {
        c.to_string()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

impl Cidr {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The PROXY v2 signature.
const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Why a trusted balancer's connection is refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The connection ended or failed before a header.
    #[error("no PROXY header: {0}")]
    Missing(std::io::Error),
    /// Something else comes first.
    #[error("the connection does not start with a PROXY protocol v2 header")]
    NotProxy,
    /// The header ends early.
    #[error("a cut PROXY header: {0}")]
    Cut(std::io::Error),
    /// The header does not parse.
    #[error("a PROXY header that does not parse: {0}")]
    Invalid(String),
    /// A PROXY command without an IP address.
    #[error("a PROXY header without an IP address")]
    NoAddress,
}

/// Reads the PROXY v2 header a trusted balancer sends first on `tcp`, and
/// returns the client's address (`LOCAL`, the balancer's own health check:
/// `peer` itself). Nothing past the header is read.
pub async fn read_client_address(
    tcp: &mut TcpStream,
    peer: SocketAddr,
) -> Result<SocketAddr, ProxyHeaderError> {
    let mut head = [0u8; 16];
    tcp.read_exact(&mut head)
        .await
        .map_err(ProxyHeaderError::Missing)?;
    if &head[..12] != SIGNATURE {
        return Err(ProxyHeaderError::NotProxy);
    }
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    let mut header = Vec::with_capacity(16 + len);
    header.extend_from_slice(&head);
    header.resize(16 + len, 0);
    tcp.read_exact(&mut header[16..])
        .await
        .map_err(ProxyHeaderError::Cut)?;
    let parsed = ppp::v2::Header::try_from(header.as_slice())
        .map_err(|e| ProxyHeaderError::Invalid(e.to_string()))?;
    match (parsed.command, parsed.addresses) {
        (ppp::v2::Command::Local, _) => Ok(peer),
        (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
            Ok(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
            Ok(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        (ppp::v2::Command::Proxy, _) => Err(ProxyHeaderError::NoAddress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_contain_what_they_name() {
        let r: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(r.contains("10.1.200.3".parse().unwrap()));
        assert!(!r.contains("10.2.0.1".parse().unwrap()));
        assert!(!r.contains("::1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nonsense", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
