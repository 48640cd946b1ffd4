//! A stage that tries to open a TCP connection, so its component imports
//! `wasi:sockets`: it deploys, and the host denies the socket at run time.

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
