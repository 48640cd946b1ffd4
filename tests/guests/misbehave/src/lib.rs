//! A stage that misbehaves on request, for testing the sandbox. The request
//! body names the behaviour: `loop`, `alloc`, `panic`, `log`, `noisy` (a
//! log record of 100 fields, one of them 1 MiB), `grow` (a 9 MiB answer to
//! a 4-byte request), or anything else to echo it back with a per-instance
//! call count. For echoes the deploy's config can ask for more: `tag=T`
//! adds a field `tag`, `sleep_ms=N` answers N ms late, `work=N` does N
//! thousand rounds of arithmetic first (fixed CPU work, whatever else
//! runs), `fail=1` fails every echo (versions that
//! differ, are slow, busy or broken, for rollouts and load tests).

use sluice_sdk::{Message, Scalar, Stage, StageError, config, export_stage, log};
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
            b"noisy" => {
                let big = "x".repeat(1 << 20);
                let names: Vec<String> = (0..100).map(|i| format!("f{i}")).collect();
                let fields: Vec<(&str, &str)> = names
                    .iter()
                    .map(|n| (n.as_str(), if n == "f0" { big.as_str() } else { "v" }))
                    .collect();
                log::info("a noisy record", &fields);
                Ok(Message::from_body("text/plain", "logged"))
            }
            b"grow" => Ok(Message::from_body(
                "application/octet-stream",
                vec![7u8; 9 << 20],
            )),
            _ => {
                if config::get("fail").is_some() {
                    return Err(StageError::internal("this version fails (config fail=1)"));
                }
                if let Some(ms) = config::get("sleep_ms").and_then(|v| v.parse().ok()) {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
                if let Some(rounds) = config::get("work").and_then(|v| v.parse::<u64>().ok()) {
                    let mut x = 0x9E37_79B9_7F4A_7C15u64;
                    for _ in 0..rounds * 1000 {
                        x = std::hint::black_box(x ^ (x << 13) ^ (x >> 7)).wrapping_mul(31);
                    }
                }
                let echo = Message::from_body("application/octet-stream", body)
                    .with_field("calls", Scalar::Int(calls));
                Ok(match config::get("tag") {
                    Some(tag) => echo.with_field("tag", Scalar::Text(tag)),
                    None => echo,
                })
            }
        }
    }
}

export_stage!(Misbehave);
