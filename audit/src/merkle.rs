//! RFC 6962 (Certificate Transparency) Merkle trees: a leaf is SHA-256(0x00 || data), an interior
//! node SHA-256(0x01 || left || right), and the tree over n leaves splits at the largest power of two
//! smaller than n.
//!
//! Hashing is done here, in one place, because it is the hot path of appending and verifying. Proof
//! shapes (which nodes a proof holds) and proof verification follow RFC 9162 §2.1.3–2.1.4 through the
//! `ct-merkle` crate; this module only maps its node numbering onto [`Span`]s of leaves, so a proof can
//! be assembled from stored subtree hashes without holding the tree in memory.

use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Largest tree this module handles: ct-merkle numbers nodes with u64 and allows up to 2^63 leaves.
pub const TREE_SIZE_MAX: u64 = 1 << 62;

/// The hash of a leaf holding `data`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// The hash of an interior node over two subtrees.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut block = [0u8; 65];
    block[0] = 0x01;
    block[1..33].copy_from_slice(left);
    block[33..].copy_from_slice(right);
    Sha256::digest(block).into()
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A perfect subtree: the 2^level leaves from `index << level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subtree {
    pub level: u8,
    pub index: u64,
}

impl Subtree {
    pub fn first_leaf(&self) -> u64 {
        self.index << self.level
    }

    pub fn end_leaf(&self) -> u64 {
        (self.index + 1) << self.level
    }

    /// The perfect subtrees that make up the first `size` leaves, largest (leftmost) first: one per
    /// set bit of `size`.
    pub fn frontier(size: u64) -> impl Iterator<Item = Subtree> {
        Span { start: 0, end: size }.subtrees()
    }
}

/// The leaves `[start, end)` under one node of a tree, as proofs name them. `start` is a multiple of
/// the largest power of two not above `end - start`, so the span is a run of perfect subtrees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    /// The perfect subtrees the span consists of, largest (leftmost) first.
    pub fn subtrees(self) -> impl Iterator<Item = Subtree> {
        let mut start = self.start;
        let end = self.end;
        std::iter::from_fn(move || {
            if start >= end {
                return None;
            }
            let remaining = end - start;
            // The largest aligned power of two that fits.
            let mut level = 63 - remaining.leading_zeros();
            if start != 0 {
                level = level.min(start.trailing_zeros());
            }
            let subtree = Subtree {
                level: level as u8,
                index: start >> level,
            };
            start += 1 << level;
            Some(subtree)
        })
    }

    /// The span's hash, from the hashes of its perfect subtrees (smaller ones fold into their left
    /// neighbours, right to left).
    pub fn hash(self, mut subtree_hash: impl FnMut(Subtree) -> Hash) -> Hash {
        let hashes: Vec<Hash> = self.subtrees().map(&mut subtree_hash).collect();
        fold_right(&hashes)
    }

    /// Like [`Span::hash`], when a subtree's hash may be unknown (`None`).
    pub fn try_hash(self, subtree_hash: impl FnMut(Subtree) -> Option<Hash>) -> Option<Hash> {
        let hashes: Option<Vec<Hash>> = self.subtrees().map(subtree_hash).collect();
        hashes.map(|hashes| fold_right(&hashes))
    }

    /// The span of ct-merkle's node `index` (array-based numbering: leaf i is 2i, a node at level l
    /// has l trailing ones) in a tree of `size` leaves.
    fn of_node(index: u64, size: u64) -> Span {
        let level = index.trailing_ones();
        let start = (index >> (level + 1)) << level;
        Span {
            start,
            end: start.saturating_add(1 << level).min(size),
        }
    }
}

/// The root over perfect subtrees given largest first.
fn fold_right(subtrees: &[Hash]) -> Hash {
    let mut hashes = subtrees.iter().rev();
    match hashes.next() {
        None => empty_root(),
        Some(last) => hashes.fold(*last, |right, left| node_hash(left, &right)),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {size} is above the largest supported, {TREE_SIZE_MAX}")]
    TreeTooLarge { size: u64 },
    #[error("the old tree size {old} is above the new tree size {new}")]
    OldTreeLarger { old: u64, new: u64 },
    #[error("a consistency proof needs a non-empty old tree")]
    OldTreeEmpty,
    #[error("the proof holds {actual} hashes; a proof for these sizes holds {expected}")]
    WrongLength { expected: usize, actual: usize },
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("a subtree of 2^{level} leaves cannot follow {size} leaves")]
    Misaligned { size: u64, level: u8 },
}

fn check_size(size: u64) -> Result<(), ProofError> {
    if size > TREE_SIZE_MAX {
        return Err(ProofError::TreeTooLarge { size });
    }
    Ok(())
}

/// The spans whose hashes make up the inclusion proof of leaf `index` in a tree of `size` leaves, in
/// proof order (RFC 9162 §2.1.3.1).
pub fn inclusion_spans(size: u64, index: u64) -> Result<Vec<Span>, ProofError> {
    check_size(size)?;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let nodes = ct_merkle::indices_for_inclusion_proof(size, index);
    Ok(nodes.into_iter().map(|node| Span::of_node(node, size)).collect())
}

/// The spans whose hashes make up the consistency proof from `old` leaves to `new` leaves, in proof
/// order (RFC 9162 §2.1.4.1). Equal sizes have an empty proof.
pub fn consistency_spans(old: u64, new: u64) -> Result<Vec<Span>, ProofError> {
    check_size(new)?;
    if old > new {
        return Err(ProofError::OldTreeLarger { old, new });
    }
    if old == 0 {
        return Err(ProofError::OldTreeEmpty);
    }
    if old == new {
        return Ok(Vec::new());
    }
    let nodes = ct_merkle::indices_for_consistency_proof(old, new - old);
    Ok(nodes.into_iter().map(|node| Span::of_node(node, new)).collect())
}

fn digests(proof: &[Hash]) -> Vec<ct_merkle::digest::Output<Sha256>> {
    proof.iter().map(|hash| (*hash).into()).collect()
}

/// Checks that `leaf` (the leaf's data, hashed here) is leaf `index` of the tree of `size` leaves
/// whose root is `root`.
pub fn verify_inclusion(leaf: &[u8], index: u64, size: u64, root: &Hash, proof: &[Hash]) -> Result<(), ProofError> {
    check_size(size)?;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = ct_merkle::indices_for_inclusion_proof(size, index).len();
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            actual: proof.len(),
        });
    }
    let root = RootHash::<Sha256>::new((*root).into(), size);
    let proof = InclusionProof::<Sha256>::from_digests(digests(proof).iter());
    root.verify_inclusion(&leaf, index, &proof)
        .map_err(|_| ProofError::RootMismatch)
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root`.
pub fn verify_consistency(
    old_size: u64,
    old_root: &Hash,
    new_size: u64,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let expected = consistency_spans(old_size, new_size)?.len();
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            actual: proof.len(),
        });
    }
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let old = RootHash::<Sha256>::new((*old_root).into(), old_size);
    let new = RootHash::<Sha256>::new((*new_root).into(), new_size);
    let proof = ConsistencyProof::<Sha256>::from_digests(digests(proof).iter());
    new.verify_consistency(&old, &proof)
        .map_err(|_| ProofError::RootMismatch)
}

/// Accumulates leaf hashes left to right and yields the RFC 6962 root of those seen so far.
///
/// It keeps the roots of the perfect subtrees that make up the tree (one per set bit of the size):
/// appending a leaf merges equal-sized subtrees, like a binary counter carrying. Every subtree it
/// completes is reported, so a store can keep them and answer proofs with O(log n) reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeHasher {
    /// Roots of perfect subtrees, largest (leftmost) first.
    subtrees: Vec<Hash>,
    size: u64,
}

impl TreeHasher {
    pub fn new() -> TreeHasher {
        TreeHasher::default()
    }

    /// The tree of `size` leaves whose frontier (see [`Subtree::frontier`]) has these hashes.
    pub fn from_frontier(size: u64, subtrees: Vec<Hash>) -> Result<TreeHasher, ProofError> {
        check_size(size)?;
        let expected = size.count_ones() as usize;
        if subtrees.len() != expected {
            return Err(ProofError::WrongLength {
                expected,
                actual: subtrees.len(),
            });
        }
        Ok(TreeHasher { subtrees, size })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The hashes of [`Subtree::frontier`] of the current size.
    pub fn frontier(&self) -> &[Hash] {
        &self.subtrees
    }

    pub fn push_leaf_hash(&mut self, leaf: Hash) {
        self.push_reporting(leaf, |_, _| {});
    }

    /// Appends a whole perfect subtree of 2^`level` leaves, given its hash. The tree's size must be a
    /// multiple of the subtree's, as it is for the parts of a [`Span`] appended in order.
    pub fn push_subtree(&mut self, level: u8, hash: Hash) -> Result<(), ProofError> {
        let leaves = 1u64
            .checked_shl(level.into())
            .filter(|leaves| self.size.is_multiple_of(*leaves));
        let Some(size) = leaves.and_then(|leaves| self.size.checked_add(leaves)) else {
            return Err(ProofError::Misaligned { size: self.size, level });
        };
        check_size(size)?;
        self.merge(level, hash, |_, _| {});
        Ok(())
    }

    /// Appends a leaf and calls `completed` with every perfect subtree of two or more leaves that it
    /// completes, smallest first.
    pub fn push_reporting(&mut self, leaf: Hash, completed: impl FnMut(Subtree, &Hash)) {
        self.merge(0, leaf, completed);
    }

    /// Appends a perfect subtree of 2^`level` leaves (the size is a multiple of it), merging it with
    /// the equal-sized subtrees before it and reporting each subtree that completes.
    fn merge(&mut self, level: u8, hash: Hash, mut completed: impl FnMut(Subtree, &Hash)) {
        let mut node = hash;
        let mut merged = level;
        // Each one bit of the old size from `level` up is a subtree the same size as `node`.
        let mut carry = self.size >> level;
        while carry & 1 == 1 {
            let Some(left) = self.subtrees.pop() else {
                unreachable!("one subtree per set bit of the size")
            };
            node = node_hash(&left, &node);
            carry >>= 1;
            merged += 1;
            completed(
                Subtree {
                    level: merged,
                    index: self.size >> merged,
                },
                &node,
            );
        }
        self.subtrees.push(node);
        self.size += 1 << level;
    }

    /// The root of the tree over every leaf pushed so far.
    pub fn root(&self) -> Hash {
        fold_right(&self.subtrees)
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

    fn leaves(count: u32) -> Vec<Hash> {
        (0..count).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn the_accumulator_matches_the_recursive_definition_for_every_size_up_to_300() {
        let leaves = leaves(300);
        let mut hasher = TreeHasher::new();
        assert_eq!(hasher.root(), reference_root(&[]));
        for (index, leaf) in leaves.iter().enumerate() {
            hasher.push_leaf_hash(*leaf);
            assert_eq!(hasher.root(), reference_root(&leaves[..=index]), "size {}", index + 1);
        }
    }

    #[test]
    fn completed_subtrees_are_reported_with_their_hashes() {
        let leaves = leaves(100);
        let mut hasher = TreeHasher::new();
        let mut reported = Vec::new();
        for leaf in &leaves {
            hasher.push_reporting(*leaf, |subtree, hash| reported.push((subtree, *hash)));
        }
        // A tree of 100 leaves has 50 + 25 + 12 + 6 + 3 + 1 complete subtrees above the leaves.
        assert_eq!(reported.len(), 97);
        for (subtree, hash) in reported {
            let range = subtree.first_leaf() as usize..subtree.end_leaf() as usize;
            assert_eq!(hash, reference_root(&leaves[range]), "{subtree:?}");
        }
    }

    #[test]
    fn spans_decompose_into_aligned_perfect_subtrees() {
        let span = Span { start: 8, end: 15 };
        let parts: Vec<Subtree> = span.subtrees().collect();
        assert_eq!(
            parts,
            vec![
                Subtree { level: 2, index: 2 },
                Subtree { level: 1, index: 6 },
                Subtree { level: 0, index: 14 }
            ]
        );
        assert_eq!(Subtree::frontier(0).count(), 0);
        assert_eq!(Subtree::frontier(13).count(), 3);
    }

    #[test]
    fn a_tree_rebuilt_from_its_frontier_continues_identically() {
        let leaves = leaves(77);
        let mut whole = TreeHasher::new();
        for leaf in &leaves[..50] {
            whole.push_leaf_hash(*leaf);
        }
        let resumed_frontier = whole.frontier().to_vec();
        let mut resumed = TreeHasher::from_frontier(50, resumed_frontier.clone()).unwrap();
        for leaf in &leaves[50..] {
            whole.push_leaf_hash(*leaf);
            resumed.push_leaf_hash(*leaf);
        }
        assert_eq!(whole, resumed);
        let mut by_subtrees = TreeHasher::from_frontier(50, resumed_frontier.clone()).unwrap();
        for subtree in (Span { start: 50, end: 77 }).subtrees() {
            let range = subtree.first_leaf() as usize..subtree.end_leaf() as usize;
            by_subtrees
                .push_subtree(subtree.level, reference_root(&leaves[range]))
                .unwrap();
        }
        assert_eq!(by_subtrees.root(), whole.root());
        assert_eq!(
            by_subtrees.push_subtree(1, [0; 32]),
            Err(ProofError::Misaligned { size: 77, level: 1 })
        );
        assert_eq!(
            TreeHasher::from_frontier(50, vec![[0; 32]]),
            Err(ProofError::WrongLength { expected: 3, actual: 1 })
        );
    }

    #[test]
    fn proofs_built_from_spans_verify_for_every_pair_of_small_sizes() {
        let leaves = leaves(40);
        let subtree_hash = |s: Subtree| reference_root(&leaves[s.first_leaf() as usize..s.end_leaf() as usize]);
        for size in 1..=40u64 {
            let root = reference_root(&leaves[..size as usize]);
            for index in 0..size {
                let proof: Vec<Hash> = inclusion_spans(size, index)
                    .unwrap()
                    .into_iter()
                    .map(|span| span.hash(subtree_hash))
                    .collect();
                verify_inclusion(&(index as u32).to_be_bytes(), index, size, &root, &proof).unwrap();
                let wrong = (index as u32 + 1).to_be_bytes();
                assert!(verify_inclusion(&wrong, index, size, &root, &proof).is_err());
            }
            for old in 1..=size {
                let old_root = reference_root(&leaves[..old as usize]);
                let proof: Vec<Hash> = consistency_spans(old, size)
                    .unwrap()
                    .into_iter()
                    .map(|span| span.hash(subtree_hash))
                    .collect();
                verify_consistency(old, &old_root, size, &root, &proof).unwrap();
                if old < size {
                    let other = reference_root(&leaves[1..=old as usize]);
                    assert!(verify_consistency(old, &other, size, &root, &proof).is_err());
                }
            }
        }
    }

    #[test]
    fn invalid_proof_requests_are_errors_not_panics() {
        assert_eq!(
            inclusion_spans(0, 0),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(
            inclusion_spans(5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(consistency_spans(0, 5), Err(ProofError::OldTreeEmpty));
        assert_eq!(
            consistency_spans(6, 5),
            Err(ProofError::OldTreeLarger { old: 6, new: 5 })
        );
        assert_eq!(
            consistency_spans(1, u64::MAX),
            Err(ProofError::TreeTooLarge { size: u64::MAX })
        );
        let root = empty_root();
        assert!(verify_inclusion(b"x", 0, 0, &root, &[]).is_err());
        assert!(verify_inclusion(b"x", 0, 2, &root, &[]).is_err());
        assert!(verify_consistency(0, &root, 1, &root, &[]).is_err());
        assert!(verify_consistency(3, &root, 2, &root, &[]).is_err());
        assert!(verify_consistency(u64::MAX, &root, u64::MAX, &root, &[]).is_err());
    }
}
