//! Mutation fuzzing under stable Rust, for every parser that reads what a
//! client sends: valid inputs are mutated at random (bytes flipped, tokens
//! of the input's format spliced in, ranges cut or repeated, tails dropped)
//! and each result must be parsed into something consistent or refused
//! with a clear error, never panic.
//!
//! Targets: the message JSON decoder (`http/message.rs`), OIP JSON and
//! binary (`http/oip.rs`), pipeline manifests (`pipeline/manifest.rs`),
//! feature table schemas (`features/schema.rs`) and the component world
//! check (`engine/worlds.rs`). The suite runs `SLUICE_FUZZ_ITERS`
//! mutations per target (default 200,000; a tenth of that for the world
//! check, which compiles what it accepts); run longer with
//! `SLUICE_FUZZ_ITERS=5000000 cargo test --release -p sluice --lib fuzz`.
//! A failure prints the iteration and the input.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Tokens spliced into JSON: structure, edge numbers, datatypes.
pub const JSON_TOKENS: &[&[u8]] = &[
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b",",
    b":",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e309",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"1.5",
    b"\"\\u0000\"",
    b"[[[[",
    b"]]]]",
    b"\"datatype\":\"INT8\"",
    b"\"datatype\":\"BYTES\"",
    b"\"datatype\":\"BOOL\"",
    b"\"shape\":[4294967296,4294967296]",
    b"\"data\":",
    b"\"name\":\"x\"",
    b"\"parameters\":{\"binary_data_size\":3}",
    b"\xff\xfe",
];

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// Seeded; never zero.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Tokens spliced into TOML manifests and schemas: structure, edge
/// values, the keys Sluice reads.
pub const TOML_TOKENS: &[&[u8]] = &[
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"=",
    b"\"",
    b"'",
    b"\n",
    b",",
    b"{",
    b"}",
    b"-1",
    b"0",
    b"18446744073709551616",
    b"1e309",
    b"nan",
    b"true",
    b"\"\"",
    b"\"\\u0000\"",
    b"\n[[pipeline.step]]\nname = \"a\"\n",
    b"after = [\"a\"]",
    b"fallback = \"a\"",
    b"model = \"m@2\"",
    b"function = \"f@stable\"",
    b"when = { field = \"k\", equals = 1 }",
    b"on_error = \"skip\"",
    b"retries = 11",
    b"\nf = \"f32\"\n",
    b"x = \"bool\"",
    b"entity = [\"a\", \"a\"]",
    b"partitions = 0",
    b"ttl = \"1s\"",
    b"entity = []",
    b"\xff\xfe",
];

/// Iterations per target: `SLUICE_FUZZ_ITERS`, or 200,000.
pub fn iterations() -> u64 {
    std::env::var("SLUICE_FUZZ_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000)
}

/// Mutate `seeds` in turn `iterations` times and hand each input to
/// `check`, which asserts what it must and says whether the input was
/// accepted. A panic, in the parser or in `check`, fails with the
/// iteration and the input. Both sides must be reached: some inputs
/// accepted, not all.
pub fn run(
    seed: u64,
    iterations: u64,
    seeds: &[&[u8]],
    tokens: &[&[u8]],
    mut check: impl FnMut(&mut Rng, &[u8]) -> bool,
) {
    let mut rng = Rng::new(seed);
    let mut accepted = 0;
    for i in 0..iterations {
        let input = mutate(&mut rng, seeds[i as usize % seeds.len()], tokens);
        let ok = catch_unwind(AssertUnwindSafe(|| check(&mut rng, &input))).unwrap_or_else(|_| {
            panic!(
                "iteration {i} panicked on {}",
                String::from_utf8_lossy(&input)
            )
        });
        accepted += u64::from(ok);
    }
    eprintln!("fuzz seed {seed}: {accepted} of {iterations} inputs accepted");
    assert!(
        accepted > iterations / 500 && accepted < iterations,
        "{accepted} of {iterations} accepted: the mutations should reach both sides"
    );
}

/// `input` with one to four random mutations.
pub fn mutate(rng: &mut Rng, input: &[u8], tokens: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if at < out.len() => out[at] ^= 1 << rng.below(8),
            1 => {
                let token = tokens[rng.below(tokens.len())];
                out.splice(at..at, token.iter().copied());
            }
            2 if at < out.len() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 if at < out.len() => {
                let end = (at + 1 + rng.below(32)).min(out.len());
                let piece = out[at..end].to_vec();
                out.splice(at..at, piece);
            }
            _ => out.truncate(at),
        }
    }
    out
}
