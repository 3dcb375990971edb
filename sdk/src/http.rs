//! A small blocking HTTP client over `wasi:http` (capability `http`).
//!
//! The host only lets requests through to the hosts the tenant allowed for
//! this plugin; everything else fails with [`HttpError::Denied`]. Redirects
//! are not followed.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

use crate::{ErrorKind, PluginError};

/// Largest response body [`send`] reads by default (1 MiB).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// An HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method (`GET`, `POST`, ...).
    pub method: String,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Connect and first-byte timeout in milliseconds (the host caps it).
    pub timeout_ms: u64,
    /// Largest response body to accept.
    pub max_body: usize,
}

impl Request {
    /// A `GET` of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Request {
            method: "GET".to_owned(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: 5_000,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// A `POST` of `body` to `url`.
    pub fn post(url: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Request {
            method: "POST".to_owned(),
            body: body.into(),
            ..Self::get(url)
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Retry-After` in milliseconds, when it is a number of seconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.header("retry-after")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|secs| secs.saturating_mul(1_000))
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, HttpError> {
        serde_json::from_slice(&self.body).map_err(|err| HttpError::Body(err.to_string()))
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpError {
    /// The URL could not be understood.
    Url(String),
    /// The host refused the request (not allow-listed, forbidden address).
    Denied(String),
    /// Connecting, TLS or the exchange failed.
    Transport(String),
    /// The response body was unreadable or over the size limit.
    Body(String),
}

impl core::fmt::Display for HttpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HttpError::Url(msg) => write!(f, "bad url: {msg}"),
            HttpError::Denied(msg) => write!(f, "denied: {msg}"),
            HttpError::Transport(msg) => write!(f, "transport: {msg}"),
            HttpError::Body(msg) => write!(f, "body: {msg}"),
        }
    }
}

impl From<HttpError> for PluginError {
    fn from(err: HttpError) -> Self {
        let kind = match err {
            HttpError::Url(_) => ErrorKind::InvalidInput,
            HttpError::Denied(_) => ErrorKind::Misconfigured,
            HttpError::Transport(_) | HttpError::Body(_) => ErrorKind::Unavailable,
        };
        PluginError::new(kind, err.to_string())
    }
}

/// Characters left as they are in a URL component: RFC 3986's unreserved
/// set (`A-Z a-z 0-9 - _ . ~`); everything else is percent-encoded.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes `text` for use as one path segment, query value or form
/// field (`jdoe@corp.example` → `jdoe%40corp.example`).
pub fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, COMPONENT).to_string()
}

/// Sends a `GET` to `url`.
pub fn get(url: &str) -> Result<Response, HttpError> {
    send(&Request::get(url))
}

/// Sends `request` and reads the whole response.
pub fn send(request: &Request) -> Result<Response, HttpError> {
    let (scheme, authority, path) = split_url(&request.url)?;
    let mut header_list: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.as_bytes().to_vec()))
        .collect();
    // A known length, not chunked encoding: many APIs (and simple servers)
    // do not accept chunked request bodies.
    if !header_list.iter().any(|(name, _)| name == "content-length") {
        header_list.push((
            "content-length".to_owned(),
            request.body.len().to_string().into_bytes(),
        ));
    }
    let headers = Fields::from_list(&header_list)
        .map_err(|err| HttpError::Url(format!("header: {err:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_owned()),
    };
    let refused = |what: &str| HttpError::Url(format!("{what} refused"));
    outgoing
        .set_method(&method)
        .map_err(|()| refused("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| refused("scheme"))?;
    outgoing
        .set_authority(Some(authority))
        .map_err(|()| refused("authority"))?;
    outgoing
        .set_path_with_query(Some(path))
        .map_err(|()| refused("path"))?;
    let body = outgoing.body().map_err(|()| refused("body"))?;

    let options = RequestOptions::new();
    let nanos = request.timeout_ms.saturating_mul(1_000_000);
    // The host caps these; refusing a value is not an error worth failing on.
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));

    let pending = outgoing_handler::handle(outgoing, Some(options)).map_err(map_error_code)?;
    if !request.body.is_empty() {
        let stream = body.write().map_err(|()| refused("body stream"))?;
        for chunk in request.body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|err| HttpError::Transport(format!("writing body: {err:?}")))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(map_error_code)?;

    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(map_error_code(code)),
        Some(Err(())) | None => {
            return Err(HttpError::Transport("response already taken".to_owned()));
        }
    };
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect();
    let incoming = response
        .consume()
        .map_err(|()| HttpError::Body("body already consumed".to_owned()))?;
    let stream = incoming
        .stream()
        .map_err(|()| HttpError::Body("body stream unavailable".to_owned()))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                if bytes.len() + chunk.len() > request.max_body {
                    return Err(HttpError::Body(format!(
                        "response body over {} bytes",
                        request.max_body
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(err)) => {
                return Err(HttpError::Body(err.to_debug_string()));
            }
        }
    }
    drop(stream);
    let _ = IncomingBody::finish(incoming);
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

fn map_error_code(code: ErrorCode) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
            HttpError::Denied(format!("{code:?}"))
        }
        other => HttpError::Transport(format!("{other:?}")),
    }
}

fn split_url(url: &str) -> Result<(Scheme, &str, &str), HttpError> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(HttpError::Url(format!("`{url}` is not an http(s) URL")));
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() {
        return Err(HttpError::Url(format!("`{url}` has no host")));
    }
    let path = if path.is_empty() { "/" } else { path };
    Ok((scheme, authority, path))
}
