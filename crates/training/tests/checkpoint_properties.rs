//! Properties of the checkpoint reader on damaged files: it never panics,
//! and damage to the tensors or a cut anywhere is always found.

use proptest::prelude::*;
use vl_training::runner::Position;
use vl_training::runner::checkpoint::{Checkpoint, JobKind, RunState};

/// A checkpoint with sections of these sizes, as bytes, and where its
/// sections start.
fn written(sections: &[Vec<u8>]) -> (Vec<u8>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.ckpt");
    let mut checkpoint = Checkpoint::new(RunState {
        kind: JobKind::AlbefPretrain,
        position: Position {
            step: 3,
            epoch: 0,
            step_in_epoch: 3,
        },
        seed: 1,
        config: &serde_json::json!({"batch_size": 8}),
    })
    .unwrap();
    checkpoint.set_tokenizer(Some("vocab9-0123456789abcdef".into()));
    for (i, bytes) in sections.iter().enumerate() {
        checkpoint.push(&format!("s{i}"), bytes.clone());
    }
    checkpoint.write(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let total: usize = sections.iter().map(Vec::len).sum();
    (bytes.clone(), bytes.len() - total)
}

fn read(bytes: &[u8]) -> Result<Checkpoint, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.ckpt");
    std::fs::write(&path, bytes).unwrap();
    Checkpoint::read(&path).map_err(|e| {
        let message = e.to_string();
        assert!(message.contains("c.ckpt"), "{message}");
        message
    })
}

fn sections() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..4)
}

proptest! {
    #[test]
    fn a_cut_anywhere_is_found(sections in sections(), cut in any::<prop::sample::Index>()) {
        let (bytes, _) = written(&sections);
        let cut = cut.index(bytes.len());
        prop_assert!(read(&bytes[..cut]).is_err());
        prop_assert!(read(&bytes).is_ok());
    }

    #[test]
    fn a_changed_tensor_byte_is_found(
        sections in sections().prop_filter("some tensor bytes", |s| s.iter().any(|b| !b.is_empty())),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let (mut bytes, start) = written(&sections);
        let at = start + at.index(bytes.len() - start);
        bytes[at] ^= xor;
        let err = read(&bytes).unwrap_err();
        prop_assert!(err.contains("is damaged (its CRC-32 does not match)"), "{err}");
    }

    #[test]
    fn any_change_reads_or_is_refused_without_panic(
        sections in sections(),
        changes in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let (mut bytes, _) = written(&sections);
        for (at, value) in changes {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        let _ = read(&bytes);
    }

    #[test]
    fn any_header_length_is_refused_without_panic(sections in sections(), length in any::<u64>()) {
        let (mut bytes, _) = written(&sections);
        let own = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        prop_assume!(length != own);
        bytes[8..16].copy_from_slice(&length.to_le_bytes());
        prop_assert!(read(&bytes).is_err());
    }

    #[test]
    fn any_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        prop_assert!(read(&bytes).is_err());
    }
}
