//! finledger's tamper-evidence primitives, independent of the ledger's business rules.
//!
//! RFC 6962 (Certificate Transparency) Merkle tree hashing: a leaf is SHA-256(0x00 || data), an
//! interior node SHA-256(0x01 || left || right), and the tree over n leaves splits at the largest
//! power of two smaller than n. [`TreeHasher`] computes a tree's root from its leaves in one pass with
//! O(log n) memory, which is what an offline verifier of millions of audit records needs.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The hash of a leaf holding `data`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// The hash of an interior node over two subtrees.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Accumulates leaf hashes left to right and yields the RFC 6962 root of those seen so far.
///
/// It keeps the roots of the perfect subtrees that make up the tree (one per set bit of the size):
/// appending a leaf merges equal-sized subtrees, like a binary counter carrying.
#[derive(Clone, Debug, Default)]
pub struct TreeHasher {
    /// Roots of perfect subtrees, largest (leftmost) first.
    subtrees: Vec<Hash>,
    size: u64,
}

impl TreeHasher {
    pub fn new() -> TreeHasher {
        TreeHasher::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push_leaf_hash(&mut self, leaf: Hash) {
        let mut node = leaf;
        // Each trailing one bit of the old size is a perfect subtree the same size as `node`.
        let mut carry = self.size;
        while carry & 1 == 1 {
            let left = self.subtrees.pop().expect("one subtree per set bit of the size");
            node = node_hash(&left, &node);
            carry >>= 1;
        }
        self.subtrees.push(node);
        self.size += 1;
        debug_assert_eq!(self.subtrees.len(), self.size.count_ones() as usize);
    }

    /// The root of the tree over every leaf pushed so far.
    pub fn root(&self) -> Hash {
        // The smaller subtrees on the right fold into their left neighbours, right to left.
        let mut subtrees = self.subtrees.iter().rev();
        match subtrees.next() {
            None => empty_root(),
            Some(last) => subtrees.fold(*last, |right, left| node_hash(left, &right)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition of RFC 6962 section 2.1, recursively, to check the accumulator against.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let split = n.next_power_of_two() / 2;
                node_hash(&reference_root(&leaves[..split]), &reference_root(&leaves[split..]))
            }
        }
    }

    #[test]
    fn the_accumulator_matches_the_recursive_definition_for_every_size_up_to_300() {
        let leaves: Vec<Hash> = (0..300u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut hasher = TreeHasher::new();
        assert_eq!(hasher.root(), reference_root(&[]));
        for (index, leaf) in leaves.iter().enumerate() {
            hasher.push_leaf_hash(*leaf);
            assert_eq!(hasher.root(), reference_root(&leaves[..=index]), "size {}", index + 1);
        }
    }
}
