//! Outbound HTTP for plugins (`wasi:http/outgoing-handler`), deny by default.
//!
//! Every request goes through [`HttpPolicy`], our own `send_request` hook
//! instead of wasmtime's default:
//!
//! 1. the host and port must be on the plugin's allow-list (`host`,
//!    `host:port`, `*.domain`; without a port 80 and 443);
//! 2. we resolve the name ourselves and drop every address that is loopback,
//!    private, link-local, CGNAT, unique-local, unspecified, multicast,
//!    reserved, or an IPv4-mapped / NAT64 / 6to4 form of those — unless the
//!    grant explicitly allows that range;
//! 3. we connect to an address we checked (so a second DNS answer cannot
//!    rebind the name to an internal address), with TLS to the original name;
//! 4. redirects are not followed; connect, first-byte, between-bytes and
//!    total time and the response size are capped.
//!
//! A refusal is recorded so that the call's error says "capability denied"
//! even if the plugin swallows the HTTP error.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::net::{HostRule, is_internal, tls_config};

/// Caps on every outbound request.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Longest wait for DNS plus TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Longest wait for the response head.
    pub first_byte_timeout: Duration,
    /// Longest gap between body chunks.
    pub between_bytes_timeout: Duration,
    /// Longest whole exchange.
    pub total_timeout: Duration,
    /// Largest response body.
    pub max_response_bytes: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(10),
            between_bytes_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(30),
            max_response_bytes: 16 << 20,
        }
    }
}

struct PolicyInner {
    rules: Vec<HostRule>,
    allow_private: Vec<IpNet>,
    limits: HttpLimits,
    tls: Arc<rustls::ClientConfig>,
}

/// The outbound-HTTP policy of one sandbox. Cloning shares the denial
/// record and the call's connection count.
#[derive(Clone)]
pub struct HttpPolicy {
    inner: Arc<PolicyInner>,
    denial: Arc<Mutex<Option<String>>>,
    /// Requests refused in this call (only the first is logged).
    denials: Arc<std::sync::atomic::AtomicU64>,
    /// The tenant's open outbound connections (shared by all its calls).
    tenant_connections: Option<Arc<tokio::sync::Semaphore>>,
    /// This call's open outbound connections.
    call_connections: Arc<tokio::sync::Semaphore>,
    call_cap: u32,
    /// Dropped with the call's last policy clone: its connections close
    /// then (they never outlive the call, nor hold its permits after it).
    call_alive: Arc<tokio::sync::watch::Sender<()>>,
}

/// Outbound connections one call may hold when no cap is configured.
const DEFAULT_CALL_CONNECTIONS: u32 = 8;

impl HttpPolicy {
    /// A policy from the grant's allow-list and private ranges. Entries that
    /// do not parse are ignored (grants are validated where they are written).
    pub fn new(hosts: &[String], allow_private: &[IpNet], limits: HttpLimits) -> Self {
        HttpPolicy {
            inner: Arc::new(PolicyInner {
                rules: hosts
                    .iter()
                    .filter_map(|entry| HostRule::parse(entry))
                    .collect(),
                allow_private: allow_private.to_vec(),
                limits,
                tls: tls_config(),
            }),
            denial: Arc::new(Mutex::new(None)),
            denials: Arc::default(),
            tenant_connections: None,
            call_connections: Arc::new(tokio::sync::Semaphore::new(
                DEFAULT_CALL_CONNECTIONS as usize,
            )),
            call_cap: DEFAULT_CALL_CONNECTIONS,
            call_alive: Arc::new(tokio::sync::watch::Sender::new(())),
        }
    }

    /// Caps open connections: `tenant` is shared by every call of the
    /// tenant, `per_call` applies to each call on its own.
    pub fn with_connection_caps(
        mut self,
        tenant: Arc<tokio::sync::Semaphore>,
        per_call: u32,
    ) -> Self {
        self.tenant_connections = Some(tenant);
        self.call_cap = per_call.max(1);
        self.call_connections = Arc::new(tokio::sync::Semaphore::new(self.call_cap as usize));
        self
    }

    /// A policy that refuses every request (dry runs and replays).
    pub fn deny_all(limits: HttpLimits) -> Self {
        Self::new(&[], &[], limits)
    }

    /// A policy with the same rules and a fresh denial record: one per call,
    /// so the rules are parsed once per plugin load.
    pub fn for_call(&self) -> Self {
        HttpPolicy {
            inner: self.inner.clone(),
            denial: Arc::new(Mutex::new(None)),
            denials: Arc::default(),
            tenant_connections: self.tenant_connections.clone(),
            call_connections: Arc::new(tokio::sync::Semaphore::new(self.call_cap as usize)),
            call_cap: self.call_cap,
            call_alive: Arc::new(tokio::sync::watch::Sender::new(())),
        }
    }

    /// At the end of a call: one line for the refusals after the first.
    pub fn summarise_denials(&self, tenant: &crate::tenant::TenantId, plugin: &str) {
        let refused = self.denials.load(std::sync::atomic::Ordering::Relaxed);
        if refused > 1 {
            tracing::warn!(
                target: "rampart::http",
                tenant = tenant.as_str(),
                plugin,
                refused,
                "{} more outbound requests of this call refused",
                refused - 1
            );
        }
    }

    /// Why the last request was refused, if one was.
    pub fn denial(&self) -> Option<String> {
        self.denial.lock().ok().and_then(|slot| slot.clone())
    }

    fn deny(&self, reason: String) -> Error {
        // Only the first refusal of a call is logged; the rest are counted
        // and summarised when the call ends (a loop of refused requests
        // must not flood the server log).
        if self
            .denials
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            tracing::warn!(target: "rampart::http", "outbound request refused: {}", crate::caps::log::sanitise(&reason));
        }
        if let Ok(mut slot) = self.denial.lock() {
            *slot = Some(reason);
        }
        Error::HttpRequestDenied
    }

    /// Whether the allow-list lets the plugin reach `host:port`.
    pub fn host_allowed(&self, host: &str, port: u16) -> bool {
        self.inner.rules.iter().any(|rule| rule.allows(host, port))
    }

    /// Whether the plugin may connect to `ip`.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        if !is_internal(ip) {
            return true;
        }
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        self.inner
            .allow_private
            .iter()
            .any(|net| net.contains(&canonical) || net.contains(&ip))
    }

    async fn send(
        self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<
        (
            http::Response<WasiBody>,
            Box<dyn Future<Output = Result<(), Error>> + Send>,
        ),
        Error,
    > {
        let limits = self.inner.limits;
        let cap = |asked: Option<Duration>, ceiling: Duration| {
            asked.map_or(ceiling, |asked| asked.min(ceiling))
        };
        let connect_timeout = cap(
            options.and_then(|o| o.connect_timeout),
            limits.connect_timeout,
        );
        let first_byte_timeout = cap(
            options.and_then(|o| o.first_byte_timeout),
            limits.first_byte_timeout,
        );
        let between_bytes = cap(
            options.and_then(|o| o.between_bytes_timeout),
            limits.between_bytes_timeout,
        );
        let deadline = tokio::time::Instant::now() + limits.total_timeout;

        let uri = request.uri().clone();
        let https = uri.scheme() == Some(&Scheme::HTTPS);
        let Some(raw_host) = uri.host() else {
            return Err(Error::HttpRequestUriInvalid);
        };
        let host = raw_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.host_allowed(&host, port) {
            return Err(self.deny(format!(
                "{host}:{port} is not on the plugin's HTTP allow-list"
            )));
        }

        // Connection caps: the call's own (refused at once: a plugin that
        // opens more than its share at a time is misbehaving), then the
        // tenant's (waited for, up to the connect timeout).
        let Ok(call_permit) = self.call_connections.clone().try_acquire_owned() else {
            return Err(self.deny(format!(
                "more than {} outbound connections open in one call",
                self.call_cap
            )));
        };
        let tenant_permit = match &self.tenant_connections {
            Some(tenant) => {
                match tokio::time::timeout(connect_timeout, tenant.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => Some(permit),
                    _ => {
                        return Err(self
                            .deny("the tenant's outbound connections are all in use".to_owned()));
                    }
                }
            }
            None => None,
        };
        let candidates: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match tokio::time::timeout(
                connect_timeout,
                tokio::net::lookup_host((host.as_str(), port)),
            )
            .await
            {
                Ok(Ok(found)) => found.map(|addr| addr.ip()).collect(),
                Ok(Err(_)) => {
                    return Err(Error::DnsError {
                        rcode: Some("lookup failed".to_owned()),
                        info_code: None,
                    });
                }
                Err(_) => return Err(Error::DnsTimeout),
            },
        };
        let allowed: Vec<IpAddr> = candidates
            .iter()
            .copied()
            .filter(|ip| self.address_allowed(*ip))
            .collect();
        if allowed.is_empty() {
            let listed: Vec<String> = candidates.iter().map(ToString::to_string).collect();
            return Err(self.deny(format!(
                "{host} resolves to internal address(es) {} that the grant does not allow",
                listed.join(", ")
            )));
        }

        let mut stream = None;
        for ip in &allowed {
            match tokio::time::timeout(connect_timeout, TcpStream::connect((*ip, port))).await {
                Ok(Ok(connected)) => {
                    stream = Some(connected);
                    break;
                }
                Ok(Err(err)) => {
                    tracing::debug!(target: "rampart::http", "connect {ip}:{port}: {err}")
                }
                Err(_) => return Err(Error::ConnectionTimeout),
            }
        }
        let Some(stream) = stream else {
            return Err(Error::ConnectionRefused);
        };
        let io: Box<dyn Io> = if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| Error::TlsCertificateError)?;
            let connector = tokio_rustls::TlsConnector::from(self.inner.tls.clone());
            match tokio::time::timeout(connect_timeout, connector.connect(name, stream)).await {
                Ok(Ok(tls)) => Box::new(tls),
                Ok(Err(err)) => return Err(Error::Tls(err)),
                Err(_) => return Err(Error::ConnectionTimeout),
            }
        } else {
            Box::new(stream)
        };
        let (mut sender, connection) = match tokio::time::timeout(
            connect_timeout,
            hyper::client::conn::http1::handshake(TokioIo::new(io)),
        )
        .await
        {
            Ok(Ok(pair)) => pair,
            Ok(Err(err)) => return Err(Error::from(err)),
            Err(_) => return Err(Error::ConnectionTimeout),
        };
        // The connection holds its permits until it closes (the response
        // body is read or dropped), and never outlives the total deadline.
        let mut call_ended = self.call_alive.subscribe();
        let driver = tokio::spawn(async move {
            let _permits = (call_permit, tenant_permit);
            tokio::select! {
                done = tokio::time::timeout_at(deadline, connection) => done.unwrap_or(Ok(())),
                _ = call_ended.changed() => Ok(()),
            }
        });

        // Origin-form request target: scheme and authority stay in Host.
        let path = uri.path_and_query().map_or("/", |path| path.as_str());
        *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;

        let response = match tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + first_byte_timeout),
            sender.send_request(request),
        )
        .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => return Err(Error::from(err)),
            Err(_) => return Err(Error::ConnectionReadTimeout),
        };
        let max = limits.max_response_bytes;
        let response = response.map(|incoming| {
            CappedBody {
                inner: incoming,
                remaining: max,
                max,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                gap: between_bytes,
                gap_timer: Box::pin(tokio::time::sleep(between_bytes)),
            }
            .boxed_unsync()
        });
        let io_done = async move {
            match driver.await {
                Ok(Ok(())) | Err(_) => Ok(()),
                Ok(Err(err)) => Err(Error::from(err)),
            }
        };
        Ok((response, Box::new(io_done)))
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Io for T {}

/// A response body with a size cap, a total deadline and a between-chunks timeout.
struct CappedBody {
    inner: hyper::body::Incoming,
    remaining: u64,
    max: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    gap: Duration,
    gap_timer: Pin<Box<tokio::time::Sleep>>,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let gap = self.gap;
                self.gap_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + gap);
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(self.max)))));
                    }
                    self.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(Error::from(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if self.gap_timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _request_errors: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), Error>> + Send>,
                    ),
                    Error,
                >,
            > + Send,
    > {
        let policy = self.clone();
        Box::new(policy.send(request, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn policy(hosts: &[&str], private: &[&str]) -> HttpPolicy {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let nets: Vec<IpNet> = private.iter().filter_map(|n| n.parse().ok()).collect();
        HttpPolicy::new(&hosts, &nets, HttpLimits::default())
    }

    #[test]
    fn allow_list_matches_exact_port_and_subdomains() {
        let p = policy(
            &[
                "api.example.com",
                "feeds.example.org:8443",
                "*.intel.example",
            ],
            &[],
        );
        assert!(p.host_allowed("api.example.com", 443));
        assert!(p.host_allowed("api.example.com", 80));
        assert!(!p.host_allowed("api.example.com", 8080));
        assert!(!p.host_allowed("evil-api.example.com", 443));
        assert!(p.host_allowed("feeds.example.org", 8443));
        assert!(!p.host_allowed("feeds.example.org", 443));
        assert!(p.host_allowed("a.intel.example", 443));
        assert!(!p.host_allowed("intel.example", 443));
        assert!(!p.host_allowed("notintel.example", 443));
    }

    #[test]
    fn internal_addresses_are_refused_in_every_form() {
        let p = policy(&[], &[]);
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "::127.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert!(!p.address_allowed(ip), "{ip} must be refused");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            let ip: IpAddr = ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert!(p.address_allowed(ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn explicit_grant_opens_only_its_range() {
        let p = policy(&[], &["127.0.0.0/8"]);
        assert!(
            p.address_allowed(
                "127.0.0.1"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            )
        );
        assert!(
            p.address_allowed(
                "::ffff:127.0.0.1"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            )
        );
        assert!(
            !p.address_allowed(
                "10.0.0.1"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            )
        );
    }
}
