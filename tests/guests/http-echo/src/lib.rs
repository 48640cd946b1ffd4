//! A standard `wasi:http/incoming-handler` component, written against the
//! plain WASI 0.2 bindings with nothing Sluice-specific.
//!
//! - Any request is echoed: `METHOD PATH?QUERY`, the `x-echo` header, the
//!   `GREETING` environment variable and the body, as `text/plain`.
//! - `GET /fetch?url=URL` fetches URL and answers with its status and body,
//!   or 502 and the error code when the host refuses or fails the request.
//! - `/spin` loops forever and `/hog` takes 64 MiB, for the sandbox's
//!   deadline and memory cap.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, ResponseOutparam, Scheme,
};
use wasip2::io::streams::StreamError;

struct Echo;

impl Guest for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        match path.as_str() {
            "/spin" => spin(),
            "/hog" => hog(),
            _ => {}
        }
        let (status, text) = match path.strip_prefix("/fetch?url=") {
            Some(url) => match fetch(url) {
                Ok((status, body)) => (status, body),
                Err(e) => (
                    502,
                    format!("outbound request failed: {e:?}\n").into_bytes(),
                ),
            },
            None => (200, echo(&request, &path)),
        };
        respond(out, status, &text);
    }
}

fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn hog() {
    let block = vec![1u8; 64 << 20];
    std::hint::black_box(&block);
}

fn echo(request: &IncomingRequest, path: &str) -> Vec<u8> {
    let method = match request.method() {
        Method::Get => "GET".to_string(),
        Method::Post => "POST".to_string(),
        Method::Put => "PUT".to_string(),
        Method::Delete => "DELETE".to_string(),
        other => format!("{other:?}"),
    };
    let header = request
        .headers()
        .get("x-echo")
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let greeting = std::env::var("GREETING").unwrap_or_default();
    let body = request.consume().ok().map(read_all).unwrap_or_default();
    let mut text =
        format!("{method} {path}\nx-echo: {header}\ngreeting: {greeting}\nbody: ").into_bytes();
    text.extend_from_slice(&body);
    text.push(b'\n');
    text
}

fn read_all(body: IncomingBody) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Ok(stream) = body.stream() {
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(_)) => break,
            }
        }
    }
    bytes
}

/// GET `url` (`http://host:port/path`) and return its status and body.
fn fetch(url: &str) -> Result<(u16, Vec<u8>), ErrorCode> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", rest)) => (Scheme::Https, rest),
        Some((_, rest)) => (Scheme::Http, rest),
        None => (Scheme::Http, url),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let invalid = |_| ErrorCode::HttpRequestUriInvalid;
    request.set_scheme(Some(&scheme)).map_err(invalid)?;
    request.set_authority(Some(authority)).map_err(invalid)?;
    request.set_path_with_query(Some(path)).map_err(invalid)?;
    let pending = outgoing_handler::handle(request, None)?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(code),
        _ => return Err(ErrorCode::InternalError(Some("no response".into()))),
    };
    let status = response.status();
    let body = response.consume().ok().map(read_all).unwrap_or_default();
    Ok((status, body))
}

fn respond(out: ResponseOutparam, status: u16, text: &[u8]) {
    let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
        .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = body.write() {
        for chunk in text.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(body, None);
}

wasip2::http::proxy::export!(Echo);
