//! A stage that misbehaves on request, for testing the sandbox. The request
//! body names the behaviour: `loop`, `alloc`, `panic`, `log`, or anything
//! else to echo it back with a per-instance call count.

use sluice_sdk::{Message, Scalar, Stage, StageError, export_stage, log};
use std::sync::atomic::{AtomicI64, Ordering};

/// Counts calls in this instance: always 1 when instances are fresh.
static CALLS: AtomicI64 = AtomicI64::new(0);

struct Misbehave;

impl Stage for Misbehave {
    fn run(input: Message) -> Result<Message, StageError> {
        let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        let body = input.body_bytes()?.to_vec();
        match body.as_slice() {
            b"loop" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            b"alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            b"panic" => panic!("deliberate panic for testing"),
            b"log" => {
                log::info("hello from the guest", &[("answer", "42")]);
                println!("printed to stdout");
                eprintln!("printed to stderr");
                Ok(Message::from_body("text/plain", "logged"))
            }
            _ => Ok(Message::from_body("application/octet-stream", body)
                .with_field("calls", Scalar::Int(calls))),
        }
    }
}

export_stage!(Misbehave);
