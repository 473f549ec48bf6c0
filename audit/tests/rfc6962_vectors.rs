//! Known-answer vectors for RFC 6962 tree hashing (transparency-dev/merkle plus generated trees of up
//! to 1,000 leaves; see tests/data).

use audit::{TreeHasher, leaf_hash};

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("data/rfc6962-vectors.json")).expect("the vectors file is JSON")
}

fn leaves(vectors: &serde_json::Value, generated: bool) -> Vec<Vec<u8>> {
    if generated {
        let count = vectors["generated_leaves"]["count"].as_u64().unwrap();
        (0..count).map(|i| i.to_string().into_bytes()).collect()
    } else {
        vectors["leaves_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
            .collect()
    }
}

#[test]
fn leaf_hashes_match_the_vectors() {
    let vectors = vectors();
    let expected = vectors["leaf_hashes_hex"].as_array().unwrap();
    let leaves = leaves(&vectors, false);
    assert_eq!(leaves.len(), expected.len());
    for (leaf, hash) in leaves.iter().zip(expected) {
        assert_eq!(hex::encode(leaf_hash(leaf)), hash.as_str().unwrap());
    }
}

#[test]
fn every_root_in_the_vectors_is_reproduced() {
    let vectors = vectors();
    let roots = vectors["roots"].as_array().unwrap();
    assert!(roots.len() >= 9);
    for entry in roots {
        let generated = entry.get("generated").and_then(|g| g.as_bool()).unwrap_or(false);
        let size = entry["tree_size"].as_u64().unwrap() as usize;
        let mut hasher = TreeHasher::new();
        for leaf in &leaves(&vectors, generated)[..size] {
            hasher.push_leaf_hash(leaf_hash(leaf));
        }
        assert_eq!(
            hex::encode(hasher.root()),
            entry["root_hex"].as_str().unwrap(),
            "tree size {size}"
        );
    }
}
