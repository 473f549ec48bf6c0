//! The audit log's own costs, in one run:
//! - append: records/s encoded, hashed, chained and added to the Merkle tree in memory (what the
//!   sequencer does per record before the batch is written);
//! - verify: records/s of `finledger audit verify`'s code path on a bundle of 1,000,000 records
//!   (file hashes, signature, every record parsed and chained, the ledger re-derived, the root).
//!
//! Run: `cargo bench --bench audit_log` (FINLEDGER_BENCH_AUDIT_RECORDS sets the bundle size).
//! Each part runs `REPEATS` times; medians are reported. What audit costs the transfer throughput
//! is measured by `ledger_throughput`, scenario (d).

mod support;

use std::sync::Arc;
use std::time::Instant;

use audit::log::Appender;
use audit::note::{CheckpointSigner, NoteSigner};
use audit::record::{AccountCreated, Actor, Event, TransferCreated};
use finledger::evidence::{self, BundleContents, RecordsWriter, TreeEdges};
use support::{env_or, median, scale};

const ACCOUNTS: u64 = 10_000;

fn account_id(n: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    id
}

/// Account creations, then single-phase transfers between pseudo-random pairs of accounts.
fn events(count: u64) -> impl Iterator<Item = Event> {
    (0..count).map(|i| {
        if i < ACCOUNTS {
            return Event::AccountCreated(AccountCreated {
                id: account_id(i),
                currency: *b"USD",
                code: 1,
                owner: "payments".to_string(),
                debits_must_not_exceed_credits: false,
                credits_must_not_exceed_debits: false,
                overdraft_limit: 0,
                metadata: "{}".to_string(),
            });
        }
        let debit = i.wrapping_mul(2_654_435_761) % ACCOUNTS;
        let credit = (debit + 1 + i % (ACCOUNTS - 1)) % ACCOUNTS;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&i.to_be_bytes());
        id[8] = 0xee;
        Event::TransferCreated(TransferCreated {
            id,
            pending_timeout_s: None,
            linked: false,
            debit_account: account_id(debit),
            credit_account: account_id(credit),
            amount: 100 + i % 10_000,
            currency: *b"USD",
            code: 1,
            metadata: "{}".to_string(),
        })
    })
}

fn actor() -> Actor {
    Actor {
        principal: "payments".to_string(),
        certificate_sha256: Some([7; 32]),
        ..Actor::default()
    }
}

/// Records/s through encode + hash + chain + tree.
fn append_run(records: u64) -> f64 {
    let events: Vec<Event> = events(records).collect();
    let actor = actor();
    let mut appender = Appender::new();
    let mut completed = 0u64;
    let started = Instant::now();
    for (i, event) in events.iter().enumerate() {
        let appended = appender.append(i as i64, &actor, event, |_, _| completed += 1);
        std::hint::black_box(appended);
    }
    let elapsed = started.elapsed();
    assert_eq!(appender.size(), records);
    records as f64 / elapsed.as_secs_f64()
}

/// Writes a bundle of `records` records, as `audit export` would, and returns its path.
fn write_bundle(dir: &std::path::Path, records: u64, signer: &Arc<NoteSigner>) -> std::path::PathBuf {
    let actor = actor();
    let mut appender = Appender::new();
    let records_path = dir.join("records.bin");
    let mut writer = RecordsWriter::create(&records_path).expect("a records file");
    for (i, event) in events(records).enumerate() {
        let appended = appender.append(i as i64, &actor, &event, |_, _| {});
        writer.write(&appended.bytes).expect("writing a record");
    }
    let (_, sha256) = writer.finish().expect("the records file");
    let signed = CheckpointSigner::new(signer.clone(), None)
        .sign(appender.size(), appender.root(), &[])
        .expect("a first checkpoint");
    let contents = BundleContents {
        checkpoint_note: signed.note,
        key: signer.verifier(),
        from_seq: 0,
        to_seq: records,
        checkpoint_size: records,
        edges: TreeEdges::default(),
        balances: None,
    };
    let out = dir.join("bundle.tar");
    evidence::write_bundle(&out, &contents, &records_path, sha256).expect("the bundle");
    out
}

fn main() -> anyhow::Result<()> {
    let records = env_or("FINLEDGER_BENCH_AUDIT_RECORDS", scale(1_000_000, 20_000)) as u64;
    let repeats: usize = env_or("FINLEDGER_BENCH_REPEATS", scale(3, 1));
    let dir = tempfile::tempdir()?;
    let signer = Arc::new(NoteSigner::generate("finledger.bench/audit")?);
    let bundle = write_bundle(dir.path(), records, &signer);
    let bundle_bytes = std::fs::metadata(&bundle)?.len();
    let (mut append, mut verify) = (Vec::new(), Vec::new());
    for repeat in 0..repeats {
        append.push(append_run(records));
        let started = Instant::now();
        let (_, report) = evidence::verify_bundle(&bundle, &signer.verifier(), None, |_, _| {})?;
        verify.push(report.records as f64 / started.elapsed().as_secs_f64());
        assert_eq!(report.records, records);
        eprintln!(
            "repeat {repeat}: append {:.0}/s, verify {:.0}/s",
            append[repeat], verify[repeat]
        );
    }
    println!("records={records} bundle_bytes={bundle_bytes} repeats={repeats}");
    println!("| measure | records/s (median) | target |");
    println!("|---|---:|---:|");
    println!(
        "| append (encode + hash + chain + tree) | {:.0} | 500,000 |",
        median(&mut append)
    );
    println!(
        "| offline verify of a {records}-record bundle | {:.0} | 1,000,000 |",
        median(&mut verify)
    );
    Ok(())
}
