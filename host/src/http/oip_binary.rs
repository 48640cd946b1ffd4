//! The Open Inference Protocol's binary tensor extension: a JSON header of
//! `Inference-Header-Content-Length` bytes followed by raw tensors, each
//! announced by `"parameters": {"binary_data_size": N}`. Elements are
//! little-endian, row-major; BOOL is one byte; BYTES elements carry a
//! 4-byte little-endian length prefix. `tritonclient` uses it by default.

use super::ApiError;
use crate::engine::wit::{NamedTensor, Tensor, TensorData};
use bytes::{BufMut, Bytes, BytesMut};

/// The header naming the JSON part's length.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Decode `size` raw bytes as a tensor of `datatype` and `shape`.
pub fn decode(
    name: &str,
    datatype: &str,
    shape: Vec<u64>,
    raw: &[u8],
) -> Result<NamedTensor, ApiError> {
    let bad = |m: String| ApiError::bad_request(format!("input `{name}`: {m}"));
    fn fixed<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Result<Vec<T>, String> {
        if !raw.len().is_multiple_of(N) {
            return Err(format!(
                "{} bytes is not a whole number of {N}-byte elements",
                raw.len()
            ));
        }
        Ok(raw
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunk of N bytes")))
            .collect())
    }
    let data = match datatype {
        "FP32" => TensorData::F32(fixed(raw, f32::from_le_bytes).map_err(bad)?),
        "FP64" => TensorData::F64(fixed(raw, f64::from_le_bytes).map_err(bad)?),
        "FP16" => TensorData::F32(
            fixed(raw, |b: [u8; 2]| half_to_f32(u16::from_le_bytes(b))).map_err(bad)?,
        ),
        "INT8" => TensorData::I32(fixed(raw, |b: [u8; 1]| i32::from(b[0] as i8)).map_err(bad)?),
        "INT16" => TensorData::I32(fixed(raw, |b| i32::from(i16::from_le_bytes(b))).map_err(bad)?),
        "INT32" => TensorData::I32(fixed(raw, i32::from_le_bytes).map_err(bad)?),
        "INT64" => TensorData::I64(fixed(raw, i64::from_le_bytes).map_err(bad)?),
        "UINT8" => TensorData::U8(raw.to_vec()),
        "UINT16" => TensorData::I64(fixed(raw, |b| i64::from(u16::from_le_bytes(b))).map_err(bad)?),
        "UINT32" => TensorData::I64(fixed(raw, |b| i64::from(u32::from_le_bytes(b))).map_err(bad)?),
        "UINT64" => TensorData::I64(
            fixed(raw, |b| {
                i64::try_from(u64::from_le_bytes(b)).unwrap_or(i64::MAX)
            })
            .map_err(bad)?,
        ),
        "BOOL" => TensorData::Bool(raw.iter().map(|b| *b != 0).collect()),
        "BYTES" => {
            let mut out = Vec::new();
            let mut rest = raw;
            while !rest.is_empty() {
                let (len, tail) = rest
                    .split_first_chunk::<4>()
                    .ok_or_else(|| bad("a BYTES element is cut off".into()))?;
                let len = u32::from_le_bytes(*len) as usize;
                if tail.len() < len {
                    return Err(bad("a BYTES element is cut off".into()));
                }
                out.push(String::from_utf8_lossy(&tail[..len]).into_owned());
                rest = &tail[len..];
            }
            TensorData::String(out)
        }
        other => return Err(bad(format!("unsupported datatype `{other}`"))),
    };
    let tensor = Tensor { shape, data };
    super::codec::check_shape(name, &tensor).map_err(ApiError::bad_request)?;
    Ok(NamedTensor {
        name: name.to_string(),
        tensor,
    })
}

/// The raw bytes of a tensor.
pub fn encode(data: &TensorData) -> Bytes {
    let mut out = BytesMut::new();
    match data {
        TensorData::F32(v) => v.iter().for_each(|x| out.put_f32_le(*x)),
        TensorData::F64(v) => v.iter().for_each(|x| out.put_f64_le(*x)),
        TensorData::I32(v) => v.iter().for_each(|x| out.put_i32_le(*x)),
        TensorData::I64(v) => v.iter().for_each(|x| out.put_i64_le(*x)),
        TensorData::U8(v) => out.put_slice(v),
        TensorData::Bool(v) => v.iter().for_each(|x| out.put_u8(u8::from(*x))),
        TensorData::String(v) => v.iter().for_each(|s| {
            out.put_u32_le(s.len() as u32);
            out.put_slice(s.as_bytes());
        }),
    }
    out.freeze()
}

/// IEEE half to single precision.
fn half_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exponent = u32::from((h >> 10) & 0x1f);
    let mantissa = u32::from(h & 0x3ff);
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: m × 2^-24.
            let value = m as f32 * f32::powi(2.0, -24);
            return if sign == 0 { value } else { -value };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_round_trip_through_the_binary_encoding() {
        for data in [
            TensorData::F32(vec![1.5, -2.0]),
            TensorData::I64(vec![7, -9]),
            TensorData::Bool(vec![true, false]),
            TensorData::String(vec!["ab".into(), "".into()]),
        ] {
            let datatype = match &data {
                TensorData::F32(_) => "FP32",
                TensorData::I64(_) => "INT64",
                TensorData::Bool(_) => "BOOL",
                _ => "BYTES",
            };
            let raw = encode(&data);
            let back = decode("t", datatype, vec![2], &raw).unwrap();
            assert_eq!(format!("{:?}", back.tensor.data), format!("{data:?}"));
        }
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert!(decode("t", "FP32", vec![2], &[0; 7]).is_err());
    }
}
