//! Mutation fuzzing of the request decoders under stable Rust: valid
//! bodies are mutated at random (bytes flipped, JSON tokens spliced in,
//! ranges cut or repeated, tails dropped) and each result must decode to
//! consistent tensors or be refused with a 4xx, never panic.
//!
//! The suite runs `SLUICE_FUZZ_ITERS` mutations per target (default
//! 200,000, under a second); run longer with
//! `SLUICE_FUZZ_ITERS=5000000 cargo test --release -p sluice --lib fuzz`.
//! A failure prints the seed and the input.

/// Tokens spliced into inputs: JSON structure, edge numbers, datatypes.
const TOKENS: &[&[u8]] = &[
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

/// Iterations per target.
pub fn iterations() -> u64 {
    std::env::var("SLUICE_FUZZ_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000)
}

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

/// `input` with one to four random mutations.
pub fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if at < out.len() => out[at] ^= 1 << rng.below(8),
            1 => {
                let token = TOKENS[rng.below(TOKENS.len())];
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
