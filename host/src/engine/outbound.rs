//! Outgoing HTTP: denied, except to the origins a deploy allows
//! (`sluice deploy --allow-outbound https://api.example.com`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// `scheme://host[:port]`: where a component may send requests. The port
/// defaults to the scheme's (80, 443); hosts compare case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    https: bool,
    host: String,
    port: u16,
}

/// Why an `--allow-outbound` value is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{value}` is not an origin: {reason}; write scheme://host[:port], e.g. https://api.example.com or http://10.0.0.5:8080"
)]
pub struct OriginError {
    value: String,
    reason: &'static str,
}

impl FromStr for Origin {
    type Err = OriginError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let refuse = |reason| OriginError {
            value: value.to_string(),
            reason,
        };
        let (https, rest) = match value.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            Some(_) => return Err(refuse("the scheme must be http or https")),
            None => return Err(refuse("it has no scheme")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@', '*']) || authority.is_empty() {
            return Err(refuse(
                "an origin has a host and a port only (no path, query, user or wildcard)",
            ));
        }
        let uri: axum::http::uri::Authority = authority
            .parse()
            .map_err(|_| refuse("the host is invalid"))?;
        Ok(Self {
            https,
            host: uri.host().to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Origin {
    /// Whether `uri` is on this origin.
    fn admits(&self, uri: &axum::http::Uri) -> bool {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return false,
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        https == self.https
            && port == self.port
            && uri
                .host()
                .is_some_and(|host| host.eq_ignore_ascii_case(&self.host))
    }
}

/// The origins one call may reach, and who it is, for the log.
#[derive(Clone, Default)]
pub struct Outbound {
    /// Allowed origins; empty: every request is denied.
    pub allowed: Arc<[Origin]>,
    /// `function@version`, named when a request is denied.
    pub caller: Arc<str>,
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: axum::http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        axum::http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), Error>> + Send>,
                    ),
                    Error,
                >,
            > + Send,
    > {
        if !self.allowed.iter().any(|o| o.admits(request.uri())) {
            tracing::warn!(target: "sluice::guest", function = %self.caller, uri = %request.uri(),
                "outgoing request denied: its origin is not in the deploy's --allow-outbound");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        wasmtime_wasi_http::default_hooks().send_request(request, options, fut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_with_default_ports_and_refuse_the_rest() {
        let origin: Origin = "https://API.example.com/".parse().unwrap();
        assert_eq!(origin.to_string(), "https://api.example.com:443");
        assert_eq!(
            "http://127.0.0.1:8080"
                .parse::<Origin>()
                .unwrap()
                .to_string(),
            "http://127.0.0.1:8080"
        );
        for (bad, why) in [
            ("api.example.com", "no scheme"),
            ("ftp://x", "http or https"),
            ("https://x/path", "no path"),
            ("https://*.example.com", "wildcard"),
            ("https://", "no path"),
        ] {
            let e = bad.parse::<Origin>().unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("scheme://host[:port]"), "{e}");
        }
    }

    #[test]
    fn an_origin_admits_its_scheme_host_and_port_only() {
        let origin: Origin = "http://127.0.0.1:8080".parse().unwrap();
        let admits = |uri: &str| origin.admits(&uri.parse().unwrap());
        assert!(admits("http://127.0.0.1:8080/x?y=1"));
        assert!(!admits("http://127.0.0.1:8081/x"));
        assert!(!admits("https://127.0.0.1:8080/x"));
        assert!(!admits("http://localhost:8080/x"));
        let https: Origin = "https://api.example.com".parse().unwrap();
        assert!(https.admits(&"https://API.example.com/v1".parse().unwrap()));
        assert!(!https.admits(&"https://api.example.com.evil.io/".parse().unwrap()));
    }
}
