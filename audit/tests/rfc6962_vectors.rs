//! Every root, inclusion proof and consistency proof of the known-answer vectors in
//! tests/data/rfc6962-vectors.json (transparency-dev/merkle's vectors plus larger generated trees, see
//! tests/data/README.md): each proof is both produced by the tree code and accepted by the verifier.

use audit::merkle::{self, Hash, Subtree, TreeHasher};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/rfc6962-vectors.json")).expect("the vectors file is JSON")
}

fn hash(hex: &Value) -> Hash {
    hex::decode(hex.as_str().unwrap()).unwrap().try_into().unwrap()
}

fn hashes(list: &Value) -> Vec<Hash> {
    list.as_array().unwrap().iter().map(hash).collect()
}

/// One of the two leaf sets: the upstream eight, or the generated thousand.
struct Leaves {
    data: Vec<Vec<u8>>,
    hashes: Vec<Hash>,
}

impl Leaves {
    fn of(vectors: &Value, entry: &Value) -> Leaves {
        let data: Vec<Vec<u8>> = if entry["generated"].as_bool() == Some(true) {
            let count = vectors["generated_leaves"]["count"].as_u64().unwrap();
            (0..count).map(|i| i.to_string().into_bytes()).collect()
        } else {
            vectors["leaves_hex"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
                .collect()
        };
        let hashes = data.iter().map(|d| merkle::leaf_hash(d)).collect();
        Leaves { data, hashes }
    }

    fn root(&self, size: u64) -> Hash {
        let mut tree = TreeHasher::new();
        for leaf in &self.hashes[..size as usize] {
            tree.push_leaf_hash(*leaf);
        }
        tree.root()
    }

    fn subtree(&self, subtree: Subtree) -> Hash {
        let mut tree = TreeHasher::new();
        for leaf in &self.hashes[subtree.first_leaf() as usize..subtree.end_leaf() as usize] {
            tree.push_leaf_hash(*leaf);
        }
        tree.root()
    }
}

fn roots(vectors: &Value, generated: bool) -> Vec<(u64, Hash)> {
    vectors["roots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["generated"].as_bool().unwrap_or(false) == generated)
        .map(|r| (r["tree_size"].as_u64().unwrap(), hash(&r["root_hex"])))
        .collect()
}

fn root_of(vectors: &Value, entry: &Value, size: u64) -> Hash {
    let generated = entry["generated"].as_bool().unwrap_or(false);
    let leaves = Leaves::of(vectors, entry);
    let computed = leaves.root(size);
    if let Some((_, expected)) = roots(vectors, generated).into_iter().find(|(s, _)| *s == size) {
        assert_eq!(computed, expected, "root of size {size}");
    }
    computed
}

#[test]
fn leaf_hashes_and_every_root_match() {
    let vectors = vectors();
    let upstream = Leaves::of(&vectors, &Value::Null);
    assert_eq!(upstream.hashes, hashes(&vectors["leaf_hashes_hex"]));
    let entries = vectors["roots"].as_array().unwrap();
    assert!(entries.len() >= 17);
    for entry in entries {
        let size = entry["tree_size"].as_u64().unwrap();
        let leaves = Leaves::of(&vectors, entry);
        assert_eq!(leaves.root(size), hash(&entry["root_hex"]), "root of size {size}");
    }
}

#[test]
fn every_inclusion_proof_is_produced_and_verifies() {
    let vectors = vectors();
    let entries = vectors["inclusion"].as_array().unwrap();
    assert!(!entries.is_empty());
    for entry in entries {
        let (index, size) = (
            entry["leaf_index"].as_u64().unwrap(),
            entry["tree_size"].as_u64().unwrap(),
        );
        let expected = hashes(&entry["proof_hex"]);
        let leaves = Leaves::of(&vectors, entry);
        let produced: Vec<Hash> = merkle::inclusion_spans(size, index)
            .unwrap()
            .into_iter()
            .map(|span| span.hash(|s| leaves.subtree(s)))
            .collect();
        assert_eq!(produced, expected, "inclusion of {index} in {size}");
        let root = root_of(&vectors, entry, size);
        merkle::verify_inclusion(&leaves.data[index as usize], index, size, &root, &expected)
            .unwrap_or_else(|e| panic!("inclusion of {index} in {size}: {e}"));
        if let Some(first) = expected.first() {
            let mut tampered = expected.clone();
            tampered[0] = merkle::node_hash(first, first);
            assert!(merkle::verify_inclusion(&leaves.data[index as usize], index, size, &root, &tampered).is_err());
        }
    }
}

#[test]
fn every_consistency_proof_is_produced_and_verifies() {
    let vectors = vectors();
    let entries = vectors["consistency"].as_array().unwrap();
    assert!(!entries.is_empty());
    for entry in entries {
        let (old, new) = (entry["size1"].as_u64().unwrap(), entry["size2"].as_u64().unwrap());
        let expected = hashes(&entry["proof_hex"]);
        let leaves = Leaves::of(&vectors, entry);
        let produced: Vec<Hash> = merkle::consistency_spans(old, new)
            .unwrap()
            .into_iter()
            .map(|span| span.hash(|s| leaves.subtree(s)))
            .collect();
        assert_eq!(produced, expected, "consistency {old} -> {new}");
        let (old_root, new_root) = (root_of(&vectors, entry, old), root_of(&vectors, entry, new));
        merkle::verify_consistency(old, &old_root, new, &new_root, &expected)
            .unwrap_or_else(|e| panic!("consistency {old} -> {new}: {e}"));
        if old < new {
            assert!(merkle::verify_consistency(old, &new_root, new, &new_root, &expected).is_err());
        }
    }
}
