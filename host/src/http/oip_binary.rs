//! The Open Inference Protocol's binary tensor extension: a JSON header of
//! `Inference-Header-Content-Length` bytes followed by raw tensors, each
//! announced by `"parameters": {"binary_data_size": N}`. Elements are
//! little-endian, row-major; BOOL is one byte; BYTES elements carry a
//! 4-byte little-endian length prefix. `tritonclient` uses it by default.

use super::ApiError;
use crate::tensor::{Datatype, NamedTensor, Tensor, TensorData};
use bytes::{BufMut, Bytes, BytesMut};

/// The header naming the JSON part's length.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Decode `raw` bytes as a tensor of `datatype` and `shape`. Values are
/// carried exactly or refused: a UINT64 beyond what INT64 holds, or BYTES
/// that are not UTF-8 text, are errors, never clamped or replaced.
pub fn decode(
    name: &str,
    datatype: Datatype,
    shape: Vec<u64>,
    raw: &[u8],
) -> Result<NamedTensor, ApiError> {
    let bad = |m: String| ApiError::bad_request(format!("input `{name}`: {m}"));
    if let Some(width) = datatype.width()
        && !raw.len().is_multiple_of(width)
    {
        return Err(bad(format!(
            "{} bytes is not a whole number of {width}-byte {datatype} elements",
            raw.len()
        )));
    }
    let data = elements(datatype, raw).map_err(bad)?;
    let tensor = Tensor { shape, data };
    tensor.check(name).map_err(ApiError::bad_request)?;
    Ok(NamedTensor {
        name: name.to_string(),
        tensor,
    })
}

/// The elements in `raw`: little-endian values of a fixed-width datatype
/// (`raw` holds a whole number of them), or length-prefixed BYTES.
fn elements(datatype: Datatype, raw: &[u8]) -> Result<TensorData, String> {
    fn each<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        raw.chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunks of N bytes")))
            .collect()
    }
    Ok(match datatype {
        Datatype::Fp16 => TensorData::F32(each(raw, |b| half_to_f32(u16::from_le_bytes(b)))),
        Datatype::Fp32 => TensorData::F32(each(raw, f32::from_le_bytes)),
        Datatype::Fp64 => TensorData::F64(each(raw, f64::from_le_bytes)),
        Datatype::Int8 => TensorData::I32(each(raw, |b: [u8; 1]| i32::from(b[0] as i8))),
        Datatype::Int16 => TensorData::I32(each(raw, |b| i32::from(i16::from_le_bytes(b)))),
        Datatype::Int32 => TensorData::I32(each(raw, i32::from_le_bytes)),
        Datatype::Int64 => TensorData::I64(each(raw, i64::from_le_bytes)),
        Datatype::Uint8 => TensorData::U8(raw.to_vec()),
        Datatype::Uint16 => TensorData::I64(each(raw, |b| i64::from(u16::from_le_bytes(b)))),
        Datatype::Uint32 => TensorData::I64(each(raw, |b| i64::from(u32::from_le_bytes(b)))),
        Datatype::Uint64 => TensorData::I64(
            each(raw, u64::from_le_bytes)
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    i64::try_from(v).map_err(|_| {
                        format!(
                            "element {i} = {v} does not fit: UINT64 values travel as INT64, up to {}",
                            i64::MAX
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        Datatype::Bool => TensorData::Bool(raw.iter().map(|b| *b != 0).collect()),
        Datatype::Bytes => TensorData::String(strings(raw)?),
    })
}

/// BYTES elements: each a 4-byte little-endian length, then that many
/// bytes of UTF-8 text.
fn strings(mut raw: &[u8]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let cut_off = || format!("BYTES element {} is cut off", out.len());
        let (len, tail) = raw.split_first_chunk::<4>().ok_or_else(cut_off)?;
        let len = u32::from_le_bytes(*len) as usize;
        let element = tail.get(..len).ok_or_else(cut_off)?;
        let text = std::str::from_utf8(element).map_err(|e| {
            format!(
                "BYTES element {} is not UTF-8 text ({e}); Sluice carries BYTES as strings",
                out.len()
            )
        })?;
        out.push(text.to_string());
        raw = &tail[len..];
    }
    Ok(out)
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
            let raw = encode(&data);
            let back = decode("t", data.element_type().datatype(), vec![2], &raw).unwrap();
            assert_eq!(back.tensor.data, data);
        }
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert!(decode("t", Datatype::Fp32, vec![2], &[0; 7]).is_err());
    }

    #[test]
    fn values_that_cannot_be_carried_exactly_are_refused() {
        let big = u64::MAX.to_le_bytes();
        let error = decode("t", Datatype::Uint64, vec![1], &big).unwrap_err();
        assert!(
            format!("{error:?}").contains("element 0 = 18446744073709551615 does not fit"),
            "{error:?}"
        );
        let fits = (i64::MAX as u64).to_le_bytes();
        let carried = decode("t", Datatype::Uint64, vec![1], &fits).unwrap();
        assert_eq!(carried.tensor.data, TensorData::I64(vec![i64::MAX]));
        let mut not_text = 2u32.to_le_bytes().to_vec();
        not_text.extend_from_slice(&[0xff, 0xfe]);
        let error = decode("t", Datatype::Bytes, vec![1], &not_text).unwrap_err();
        assert!(
            format!("{error:?}").contains("BYTES element 0 is not UTF-8"),
            "{error:?}"
        );
    }
}
