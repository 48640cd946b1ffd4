//! `{{name}}`: a standard `wasi:http/incoming-handler` component.
//!
//! `GET /greet?name=NAME` answers `GREETING, NAME` (GREETING from the
//! environment: Sluice gives an HTTP function its deploy config there);
//! any other path is a 404.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Greeter;

impl Guest for Greeter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (status, text) = match path.strip_prefix("/greet?name=") {
            Some(name) => {
                let greeting = std::env::var("GREETING").unwrap_or_else(|_| "hello".into());
                (200, format!("{greeting}, {name}\n"))
            }
            None => (404, format!("no such page: {path}\n")),
        };
        respond(out, status, text.as_bytes());
    }
}

fn respond(out: ResponseOutparam, status: u16, text: &[u8]) {
    let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
        .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = body.write() {
        let _ = stream.blocking_write_and_flush(text);
    }
    let _ = OutgoingBody::finish(body, None);
}

wasip2::http::proxy::export!(Greeter);
