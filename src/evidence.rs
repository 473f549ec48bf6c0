//! The audit log's files: the checkpoint signing key, evidence bundles (export) and their offline
//! verification.

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use anyhow::Context;
use audit::merkle::{Hash, Span, Subtree};
use audit::note::{Checkpoint, NoteError, NoteSigner, NoteVerifier};
use audit::record;
use audit::verify::{Balances, End, Failure, Report, Start, Verifier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

/// The origin (and key name) of the dev key `serve` creates when no key is configured.
pub const DEV_AUDIT_ORIGIN: &str = "finledger.dev/audit";

/// Reads a signing key file (`PRIVATE+KEY+<name>+<id>+<key>`).
pub fn read_key(path: &Path) -> anyhow::Result<NoteSigner> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the audit key {}", path.display()))?;
    NoteSigner::parse(&text).with_context(|| format!("the audit key {}", path.display()))
}

/// Writes a new signing key for the log `origin` (readable by its owner only). An existing file is
/// replaced only with `force`: a log's key is its identity.
pub fn write_key(path: &Path, origin: &str, force: bool) -> anyhow::Result<NoteSigner> {
    if path.exists() && !force {
        anyhow::bail!(
            "{} exists; pass --force to replace the log's signing key",
            path.display()
        );
    }
    let signer = NoteSigner::generate(origin)?;
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = format!("{}\n", signer.to_key_text());
    crate::pki::write_file(path, text.as_bytes(), 0o600, &mut Vec::new())?;
    Ok(signer)
}

/// The configured key; without one configured, the dev key, created when missing.
pub fn service_key(path: &Path, configured: bool) -> anyhow::Result<NoteSigner> {
    if !configured && !path.exists() {
        let signer = write_key(path, DEV_AUDIT_ORIGIN, false)?;
        tracing::warn!(path = %path.display(), origin = DEV_AUDIT_ORIGIN, "created a dev audit signing key");
        return Ok(signer);
    }
    read_key(path)
}

/// The format tag in an evidence bundle's manifest.
pub const BUNDLE_FORMAT: &str = "finledger-audit-bundle/1";

/// A bundle's table of contents: what range of the log it holds, and the SHA-256 of each file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub origin: String,
    /// The records held are `[from_seq, to_seq)`.
    pub from_seq: u64,
    pub to_seq: u64,
    pub checkpoint_size: u64,
    pub exported_at: String,
    pub files: BTreeMap<String, String>,
}

/// Hashes of the Merkle subtrees around the records, so a range of records can be checked against the
/// whole log's checkpoint: the frontier of the records before `from_seq`, and the subtrees covering
/// the records from `to_seq` to the checkpoint's size.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeEdges {
    pub before: Vec<String>,
    pub after: Vec<String>,
}

/// One account's balances in the database when the bundle was made, in minor units.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceRow {
    pub account_id: Uuid,
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub debits_pending: i64,
    pub credits_pending: i64,
}

const MANIFEST: &str = "manifest.json";
const CHECKPOINT: &str = "checkpoint.note";
const PUBLIC_KEY: &str = "public-key.vkey";
const TREE: &str = "tree.json";
const BALANCES: &str = "balances.json";
const RECORDS: &str = "records.bin";

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    pub from_seq: u64,
    pub to_seq: u64,
    pub checkpoint_size: u64,
    pub balances: bool,
}

/// Writes records `[from, to)` (to: the latest checkpoint's size when absent) with the latest signed
/// checkpoint, the public key, the tree edges, the database's balances (for a whole-log export) and
/// a manifest, as one tar file. Everything comes from one snapshot of the database.
pub async fn export(
    connection: &mut PgConnection,
    out: &Path,
    from: u64,
    to: Option<u64>,
    key: &NoteVerifier,
) -> anyhow::Result<Exported> {
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *connection)
        .await?;
    let result = export_snapshot(connection, out, from, to, key).await;
    sqlx::query("ROLLBACK").execute(&mut *connection).await?;
    result
}

async fn export_snapshot(
    connection: &mut PgConnection,
    out: &Path,
    from: u64,
    to: Option<u64>,
    key: &NoteVerifier,
) -> anyhow::Result<Exported> {
    let latest = crate::store::audit::latest_checkpoint(connection)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the audit log has no signed checkpoint yet"))?;
    let size = latest.size;
    let to = to.unwrap_or(size);
    if from > to || to > size {
        anyhow::bail!(
            "--from-seq {from} and --to-seq {to} must satisfy from <= to <= {size} (the latest checkpoint's size)"
        );
    }
    let head_size = sqlx::query_scalar!("SELECT audit_size FROM ledger_head WHERE id = 1")
        .fetch_one(&mut *connection)
        .await?;
    let before: Vec<Subtree> = Subtree::frontier(from).collect();
    let after: Vec<Subtree> = Span { start: to, end: size }.subtrees().collect();
    let wanted: Vec<Subtree> = before.iter().chain(&after).copied().collect();
    let hashes = crate::store::audit::subtree_hashes(connection, &wanted).await?;
    let edges = TreeEdges {
        before: before.iter().map(|s| hex::encode(hashes[s])).collect(),
        after: after.iter().map(|s| hex::encode(hashes[s])).collect(),
    };
    // Balances match the log only when it is complete up to the database's head.
    let balances = if from == 0 && to == size && head_size as u64 == size {
        let rows = sqlx::query_as!(
            BalanceRow,
            "SELECT account_id, debits_posted, credits_posted, debits_pending, credits_pending
             FROM balances ORDER BY account_id"
        )
        .fetch_all(&mut *connection)
        .await?;
        Some(rows)
    } else {
        None
    };

    let records_path = out.with_extension("records.tmp");
    let written = write_records(connection, &records_path, from, to).await;
    let contents = BundleContents {
        checkpoint_note: latest.note,
        key: key.clone(),
        from_seq: from,
        to_seq: to,
        checkpoint_size: size,
        edges,
        balances,
    };
    let result = written.and_then(|(count, sha256)| {
        if count != to - from {
            tracing::warn!(
                count,
                expected = to - from,
                "the database holds fewer records than the checkpoint covers"
            );
        }
        write_bundle(out, &contents, &records_path, sha256)
    });
    let _ = std::fs::remove_file(&records_path);
    result?;
    Ok(Exported {
        from_seq: from,
        to_seq: to,
        checkpoint_size: size,
        balances: contents.balances.is_some(),
    })
}

/// Everything a bundle holds besides its records.
pub struct BundleContents {
    pub checkpoint_note: String,
    pub key: NoteVerifier,
    pub from_seq: u64,
    pub to_seq: u64,
    pub checkpoint_size: u64,
    pub edges: TreeEdges,
    pub balances: Option<Vec<BalanceRow>>,
}

/// Writes the bundle `out` (a tar file: the manifest first, the records last) from `contents` and a
/// records file made with [`RecordsWriter`].
pub fn write_bundle(
    out: &Path,
    contents: &BundleContents,
    records: &Path,
    records_sha256: String,
) -> anyhow::Result<()> {
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        (CHECKPOINT, contents.checkpoint_note.clone().into_bytes()),
        (PUBLIC_KEY, format!("{}\n", contents.key).into_bytes()),
        (TREE, serde_json::to_vec_pretty(&contents.edges)?),
    ];
    if let Some(balances) = &contents.balances {
        files.push((BALANCES, serde_json::to_vec_pretty(balances)?));
    }
    let mut hashes: BTreeMap<String, String> = files
        .iter()
        .map(|(name, bytes)| (name.to_string(), hex::encode(Sha256::digest(bytes))))
        .collect();
    hashes.insert(RECORDS.to_string(), records_sha256);
    let manifest = Manifest {
        format: BUNDLE_FORMAT.to_string(),
        origin: contents.key.name().to_string(),
        from_seq: contents.from_seq,
        to_seq: contents.to_seq,
        checkpoint_size: contents.checkpoint_size,
        exported_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        files: hashes,
    };
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    append(&mut tar, MANIFEST, &serde_json::to_vec_pretty(&manifest)?)?;
    for (name, bytes) in &files {
        append(&mut tar, name, bytes)?;
    }
    tar.append_path_with_name(records, RECORDS)?;
    tar.into_inner()?.flush()?;
    Ok(())
}

fn append(tar: &mut tar::Builder<impl Write>, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, name, bytes)?;
    Ok(())
}

/// Streams records `[from, to)` to `path`; returns their count and the file's SHA-256.
async fn write_records(
    connection: &mut PgConnection,
    path: &Path,
    from: u64,
    to: u64,
) -> anyhow::Result<(u64, String)> {
    let mut writer = RecordsWriter::create(path)?;
    crate::store::audit::for_each_record(connection, std::slice::from_ref(&(from..to)), |_, bytes| {
        writer.write(bytes)
    })
    .await?;
    writer.finish()
}

/// A bundle's records file: each record as a u32 big-endian length and its bytes.
pub struct RecordsWriter {
    inner: BufWriter<std::fs::File>,
    hasher: Sha256,
    count: u64,
}

impl RecordsWriter {
    pub fn create(path: &Path) -> anyhow::Result<RecordsWriter> {
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(RecordsWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            count: 0,
        })
    }

    pub fn write(&mut self, record: &[u8]) -> anyhow::Result<()> {
        let length = u32::try_from(record.len())
            .context("a record longer than 4 GiB")?
            .to_be_bytes();
        for part in [&length[..], record] {
            self.inner.write_all(part)?;
            self.hasher.update(part);
        }
        self.count += 1;
        Ok(())
    }

    /// The number of records and the file's SHA-256.
    pub fn finish(mut self) -> anyhow::Result<(u64, String)> {
        self.inner.flush()?;
        Ok((self.count, hex::encode(self.hasher.finalize())))
    }
}

/// Why a bundle did not verify.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read the bundle: {0}")]
    Unreadable(String),
    #[error("{0}")]
    Failed(#[from] Failure),
    #[error("the checkpoint: {0}")]
    Checkpoint(NoteError),
    #[error("the trusted checkpoint: {0}")]
    Trusted(NoteError),
    #[error("{file} does not match the SHA-256 in the manifest")]
    FileHash { file: String },
}

fn unreadable(error: impl std::fmt::Display) -> BundleError {
    BundleError::Unreadable(error.to_string())
}

/// Verifies a bundle offline against `key` (and a checkpoint the auditor trusted before): file
/// hashes, the checkpoint's signature, every record (see [`audit::verify`]), the Merkle root, the
/// trusted checkpoint's consistency, and the database's balances against the ones the log derives.
/// `progress` is called with (records checked, records declared) as it goes.
pub fn verify_bundle(
    path: &Path,
    key: &NoteVerifier,
    trusted: Option<&str>,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<(Manifest, Report), BundleError> {
    let trusted = trusted
        .map(|note| Checkpoint::open(note, key).map_err(BundleError::Trusted))
        .transpose()?;
    let file = std::fs::File::open(path).map_err(|e| unreadable(format!("{}: {e}", path.display())))?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
    let mut manifest: Option<Manifest> = None;
    let mut small: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let name = entry.path().map_err(unreadable)?.to_string_lossy().into_owned();
        if name == RECORDS {
            let manifest = manifest
                .take()
                .ok_or_else(|| unreadable("records.bin comes before manifest.json"))?;
            let checkpoint_note = small
                .get(CHECKPOINT)
                .ok_or_else(|| unreadable("the bundle has no checkpoint.note"))?;
            for (file, bytes) in &small {
                let expected = manifest
                    .files
                    .get(file)
                    .ok_or_else(|| unreadable(format!("{file} is not in the manifest")))?;
                if &hex::encode(Sha256::digest(bytes)) != expected {
                    return Err(BundleError::FileHash { file: file.clone() });
                }
            }
            let note = std::str::from_utf8(checkpoint_note).map_err(unreadable)?;
            let checkpoint = Checkpoint::open(note, key).map_err(BundleError::Checkpoint)?;
            if checkpoint.size != manifest.checkpoint_size {
                return Err(unreadable("the manifest's checkpoint size is not the checkpoint's"));
            }
            let edges: TreeEdges = small
                .get(TREE)
                .map(|bytes| serde_json::from_slice(bytes))
                .transpose()
                .map_err(unreadable)?
                .ok_or_else(|| unreadable("the bundle has no tree.json"))?;
            let balances: Option<Vec<BalanceRow>> = small
                .get(BALANCES)
                .map(|bytes| serde_json::from_slice(bytes))
                .transpose()
                .map_err(unreadable)?;
            let report = verify_records(
                &mut entry,
                &manifest,
                &checkpoint,
                trusted.as_ref(),
                &edges,
                balances.as_deref(),
                &mut progress,
            )?;
            return Ok((manifest, report));
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(unreadable)?;
        if name == MANIFEST {
            let parsed: Manifest = serde_json::from_slice(&bytes).map_err(unreadable)?;
            if parsed.format != BUNDLE_FORMAT {
                return Err(unreadable(format!("unknown bundle format {:?}", parsed.format)));
            }
            manifest = Some(parsed);
        } else {
            small.insert(name, bytes);
        }
    }
    Err(unreadable("the bundle has no records.bin"))
}

fn hashes(list: &[String]) -> Result<Vec<Hash>, BundleError> {
    list.iter()
        .map(|text| {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(text, &mut hash)
                .map_err(|_| unreadable("tree.json holds a hash that is not 64 hex digits"))?;
            Ok(hash)
        })
        .collect()
}

fn verify_records(
    records: &mut impl Read,
    manifest: &Manifest,
    checkpoint: &Checkpoint,
    trusted: Option<&Checkpoint>,
    edges: &TreeEdges,
    balances: Option<&[BalanceRow]>,
    progress: &mut (impl FnMut(u64, u64) + Send),
) -> Result<Report, BundleError> {
    let mut verifier = Verifier::new(Start {
        first_seq: manifest.from_seq,
        frontier: hashes(&edges.before)?,
    })?;
    if let Some(trusted) = trusted {
        verifier.want_root_at(trusted.size);
    }
    let declared = manifest.to_seq.saturating_sub(manifest.from_seq);
    let mut reader = BufReader::with_capacity(
        1 << 20,
        HashingReader {
            inner: records,
            hasher: Sha256::new(),
        },
    );
    // Two stages on two threads: this one reads and hashes each record (so every record is hashed
    // from its stored bytes before anything parses it); the other parses and checks, in order.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Chunk>(4);
    let checked = std::thread::scope(|scope| {
        let checker = scope.spawn(move || {
            for chunk in receiver {
                for (range, hash) in chunk.ranges.iter().zip(&chunk.hashes) {
                    verifier.push_hashed(&chunk.bytes[range.clone()], *hash)?;
                }
                progress(verifier.records(), declared);
            }
            Ok::<Verifier, Failure>(verifier)
        });
        let read = read_chunks(&mut reader, &sender);
        drop(sender);
        let verifier = checker.join().map_err(|_| unreadable("the verifying thread failed"))?;
        read?;
        Ok::<Verifier, BundleError>(verifier?)
    });
    let verifier = checked?;
    let digest = hex::encode(reader.into_inner().hasher.finalize());
    if manifest.files.get(RECORDS) != Some(&digest) {
        return Err(BundleError::FileHash {
            file: RECORDS.to_string(),
        });
    }
    let database: Option<Vec<(record::Id, Balances)>> = balances.map(|rows| {
        rows.iter()
            .map(|row| {
                let balances = Balances {
                    debits_posted: row.debits_posted.into(),
                    credits_posted: row.credits_posted.into(),
                    debits_pending: row.debits_pending.into(),
                    credits_pending: row.credits_pending.into(),
                };
                (*row.account_id.as_bytes(), balances)
            })
            .collect()
    });
    let end = End {
        end_seq: manifest.to_seq,
        rest: hashes(&edges.after)?,
    };
    Ok(verifier.finish(end, checkpoint, trusted, database.as_deref())?)
}

/// Records handed from the reading thread to the checking one at a time; also between progress reports.
const CHUNK_RECORDS: usize = 100_000;

/// Records read and hashed: their bytes back to back, each one's range and leaf hash.
struct Chunk {
    bytes: Vec<u8>,
    ranges: Vec<std::ops::Range<usize>>,
    hashes: Vec<Hash>,
}

/// Reads (length, bytes) frames to the end, hashing each record, and sends them in chunks. Stops early
/// when the checking side has stopped (it found a failure).
fn read_chunks(reader: &mut impl Read, sender: &std::sync::mpsc::SyncSender<Chunk>) -> Result<(), BundleError> {
    let new_chunk = || Chunk {
        bytes: Vec::with_capacity(CHUNK_RECORDS * 200),
        ranges: Vec::with_capacity(CHUNK_RECORDS),
        hashes: Vec::with_capacity(CHUNK_RECORDS),
    };
    let mut chunk = new_chunk();
    loop {
        let mut length = [0u8; 4];
        match reader.read_exact(&mut length) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(unreadable(e)),
        }
        let start = chunk.bytes.len();
        let end = start + u32::from_be_bytes(length) as usize;
        chunk.bytes.resize(end, 0);
        reader.read_exact(&mut chunk.bytes[start..end]).map_err(unreadable)?;
        chunk.hashes.push(audit::merkle::leaf_hash(&chunk.bytes[start..end]));
        chunk.ranges.push(start..end);
        if chunk.ranges.len() == CHUNK_RECORDS && sender.send(std::mem::replace(&mut chunk, new_chunk())).is_err() {
            return Ok(());
        }
    }
    if !chunk.ranges.is_empty() {
        let _ = sender.send(chunk);
    }
    Ok(())
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..read]);
        Ok(read)
    }
}
