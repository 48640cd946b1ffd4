//! A stage that tries to open a TCP connection, so its component imports
//! `wasi:sockets`: the host must refuse it at upload.

use sluice_sdk::{Message, Stage, StageError, export_stage};

struct NetClient;

impl Stage for NetClient {
    fn run(_input: Message) -> Result<Message, StageError> {
        let stream = std::net::TcpStream::connect("127.0.0.1:9")
            .map_err(|e| StageError::internal(e.to_string()))?;
        drop(stream);
        Ok(Message::new())
    }
}

export_stage!(NetClient);
