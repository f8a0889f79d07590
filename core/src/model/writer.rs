//! Writing the seremotion metadata into an ONNX file (the trainer's job, and
//! the tests' for building broken models). Behind the `writer` feature so that
//! the element never carries it.

use super::ModelMetadata;

/// Returns `onnx` (a serialised ONNX `ModelProto`) with `meta` added as
/// `metadata_props`.
///
/// Protobuf merges concatenated messages and appends repeated fields, so the
/// entries are simply appended as field 14 (`metadata_props`) records; no
/// protobuf library is needed. `onnx` must not already carry `seremotion.*` keys.
pub fn embed_metadata(onnx: &[u8], meta: &ModelMetadata) -> Vec<u8> {
    embed_props(onnx, &meta.to_props())
}

/// As [`embed_metadata`], for arbitrary key/value pairs (tests build broken models with it).
pub fn embed_props(onnx: &[u8], props: &[(String, String)]) -> Vec<u8> {
    const METADATA_PROPS_FIELD: u64 = 14;
    const WIRE_LEN: u64 = 2;
    let mut out = onnx.to_vec();
    for (key, value) in props {
        let mut entry = Vec::new();
        put_len_field(&mut entry, 1, key.as_bytes());
        put_len_field(&mut entry, 2, value.as_bytes());
        put_varint(&mut out, (METADATA_PROPS_FIELD << 3) | WIRE_LEN);
        put_varint(&mut out, entry.len() as u64);
        out.extend_from_slice(&entry);
    }
    out
}

fn put_len_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_encoding_matches_protobuf() {
        let mut out = Vec::new();
        put_varint(&mut out, 1);
        put_varint(&mut out, 300);
        put_varint(&mut out, (14 << 3) | 2);
        assert_eq!(out, vec![0x01, 0xAC, 0x02, 0x72]);
    }
}
