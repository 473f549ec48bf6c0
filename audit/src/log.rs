//! Appending to the log: numbering, chaining, hashing and the Merkle tree, in memory.
//!
//! The storage layer keeps the bytes, the completed subtree hashes and the signed checkpoints; the
//! [`Appender`] is the one place that decides what the next record's seq and prev_hash are.

use crate::merkle::{self, Hash, ProofError, Subtree, TreeHasher};
use crate::record::{self, Actor, Event, GENESIS_PREV_HASH};

/// One appended record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// Its leaf hash, which the next record carries as prev_hash.
    pub hash: Hash,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Appender {
    prev_hash: Option<Hash>,
    tree: TreeHasher,
}

impl Appender {
    /// An empty log.
    pub fn new() -> Appender {
        Appender::default()
    }

    /// A log of `size` records whose last record hashes to `last_hash` and whose tree has the
    /// frontier `frontier` (see [`Subtree::frontier`]).
    pub fn resume(size: u64, last_hash: Hash, frontier: Vec<Hash>) -> Result<Appender, ProofError> {
        Ok(Appender {
            prev_hash: (size > 0).then_some(last_hash),
            tree: TreeHasher::from_frontier(size, frontier)?,
        })
    }

    /// Records so far; also the next record's seq.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    pub fn tree(&self) -> &TreeHasher {
        &self.tree
    }

    /// Appends a record and calls `completed` with each perfect subtree (of two or more records) it
    /// completes.
    pub fn append(
        &mut self,
        timestamp_micros: i64,
        actor: &Actor,
        event: &Event,
        completed: impl FnMut(Subtree, &Hash),
    ) -> Appended {
        let seq = self.tree.size();
        let prev_hash = self.prev_hash.unwrap_or(GENESIS_PREV_HASH);
        let bytes = record::encode(seq, timestamp_micros, actor, event, &prev_hash);
        let hash = merkle::leaf_hash(&bytes);
        self.tree.push_reporting(hash, completed);
        self.prev_hash = Some(hash);
        Appended { seq, hash, bytes }
    }
}
