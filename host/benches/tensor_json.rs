//! What decoding tensor JSON costs per request (results in BENCHMARKS.md):
//! `http::message::decode_request` on message JSON bodies of one iris row,
//! 64 digits rows and 16,384 digits rows, against parsing the same body
//! into a generic `serde_json::Value` tree, which is the first step of
//! the decoder this one replaced (it then flattened the tree and copied
//! it into typed vectors), so the baseline is a lower bound of the old
//! cost.
//!
//! Run with `cargo bench -p sluice --bench tensor_json`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::http::message::{MESSAGE_JSON, decode_request};
use std::hint::black_box;

/// A message JSON body of `rows` × `cols` varied FP32 values, as nested
/// rows, the way clients write them: `datatype` before `data` (Python
/// dicts, tritonclient), or after it (`serde_json::json!`, sorted keys),
/// which the decoder reads past once and decodes at the object's end.
fn body(rows: usize, cols: usize, data_first: bool) -> Vec<u8> {
    // A small LCG: varied digits, the same on every run.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 16.0
    };
    let data: Vec<String> = (0..rows)
        .map(|_| {
            let row: Vec<String> = (0..cols).map(|_| next().to_string()).collect();
            format!("[{}]", row.join(","))
        })
        .collect();
    let data = data.join(",");
    let tensor = if data_first {
        format!(r#"{{"data":[{data}],"datatype":"FP32","name":"X","shape":[{rows},{cols}]}}"#)
    } else {
        format!(r#"{{"name":"X","datatype":"FP32","shape":[{rows},{cols}],"data":[{data}]}}"#)
    };
    format!(r#"{{"tensors":[{tensor}]}}"#).into_bytes()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("tensor_json");
    for (label, rows, cols, data_first) in [
        ("1x4", 1, 4, false),
        ("64x64", 64, 64, false),
        ("64x64, data first", 64, 64, true),
        ("16384x64", 16_384, 64, false),
        ("16384x64, data first", 16_384, 64, true),
    ] {
        let bytes = body(rows, cols, data_first);
        let decoded = decode_request(Some(MESSAGE_JSON), bytes.clone()).expect("decodes");
        assert_eq!(decoded.tensors[0].tensor.data.len(), rows * cols);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        if rows > 1000 {
            group.sample_size(20);
        }
        group.bench_with_input(BenchmarkId::new("typed", label), &bytes, |b, bytes| {
            b.iter(|| black_box(decode_request(Some(MESSAGE_JSON), bytes.clone())).expect("typed"))
        });
        group.bench_with_input(
            BenchmarkId::new("generic tree", label),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    let bytes = bytes.clone();
                    black_box(serde_json::from_slice::<serde_json::Value>(&bytes)).expect("tree")
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
