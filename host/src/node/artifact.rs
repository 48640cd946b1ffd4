//! The stored form of a precompiled component: a one-line header naming the
//! sha256 of the wasmtime artifact that follows. wasmtime trusts the bytes
//! it deserializes, so a truncated or corrupted artifact must be caught
//! before it gets there; a bad one is simply recompiled.

use crate::store::Digest;
use bytes::{Bytes, BytesMut};

const MAGIC: &[u8] = b"SLUICE-CWASM ";

/// The stored bytes of `cwasm`.
pub fn encode(cwasm: &[u8]) -> Bytes {
    let header = format!("{}\n", Digest::of(cwasm));
    let mut out = BytesMut::with_capacity(MAGIC.len() + header.len() + cwasm.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(cwasm);
    out.freeze()
}

/// The artifact inside `stored`, if its digest checks out.
pub fn decode(stored: &Bytes) -> Result<Bytes, String> {
    let rest = stored
        .strip_prefix(MAGIC)
        .ok_or("it has no Sluice artifact header")?;
    let newline = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("its header is cut off")?;
    let declared = std::str::from_utf8(&rest[..newline])
        .ok()
        .and_then(|s| Digest::try_from(s.to_string()).ok())
        .ok_or("its header names no valid digest")?;
    let start = MAGIC.len() + newline + 1;
    let cwasm = stored.slice(start..);
    let actual = Digest::of(&cwasm);
    if actual != declared {
        return Err(format!("its bytes hash to {actual}, not {declared}"));
    }
    Ok(cwasm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_round_trip_and_damage_is_detected() {
        let stored = encode(b"machine code");
        assert_eq!(decode(&stored).unwrap(), Bytes::from("machine code"));
        let truncated = stored.slice(..stored.len() - 1);
        assert!(decode(&truncated).unwrap_err().contains("hash to"));
        assert!(decode(&Bytes::from("raw cwasm")).is_err());
    }
}
