//! The embedded store's engine on trial: redb (a copy-on-write B-tree, what the
//! server uses) against fjall (an LSM tree with a write-ahead journal, made for
//! write-heavy loads), both driven exactly the way the store's writer thread
//! drives its engine: one thread, batches of writes, and per write a read of the
//! key's cell, the last-write-wins comparison and an insert, then one durable
//! commit (fsync) per batch.
//!
//! The figure that matters is CPU per write at the batch size the server
//! really sees (writes per commit in scenario 6), and the commit latency that
//! sets the `saved` delay. CPU is the whole process's, so fjall's background
//! flush and compaction threads are billed to it. Keys cycle through the same
//! set of viewers, as in a plateau, so both engines overwrite the same cells.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::hist::Histogram;
use crate::procfs;

/// The server's table shape: `(user_id, movie_id)` → `(position_ms, written_at_micros, is_tombstone)`.
const POSITIONS: TableDefinition<(&str, &str), (u64, i64, bool)> =
    TableDefinition::new("playback_position");

/// How an engine trial is shaped.
#[derive(Debug, Clone)]
pub struct EnginePlan {
    /// Directory for both databases (each in its own subdirectory).
    pub data_dir: PathBuf,
    /// Distinct viewers whose cells are overwritten in turn.
    pub keys: usize,
    /// Writes per commit.
    pub batch: usize,
    /// How long each engine runs.
    pub duration: Duration,
}

/// One engine's result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineReport {
    /// `redb` or `fjall`.
    pub engine: String,
    /// Writes per commit.
    pub batch: usize,
    /// Seconds run.
    pub seconds: f64,
    /// Durable writes.
    pub writes: u64,
    /// Durable commits.
    pub commits: u64,
    /// Writes per second.
    pub writes_per_second: f64,
    /// Process CPU µs per write (background threads included).
    pub cpu_us_per_write: f64,
    /// Process CPU µs per commit.
    pub cpu_us_per_commit: f64,
    /// Commit latency (the batch's reads, inserts and fsync), ms.
    pub commit_p50_ms: f64,
    /// See `commit_p50_ms`.
    pub commit_p99_ms: f64,
    /// Bytes on disk at the end.
    pub disk_bytes: u64,
}

/// Both engines' results, redb first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EnginesReport {
    /// Distinct viewers.
    pub keys: usize,
    /// One report per engine.
    pub engines: Vec<EngineReport>,
}

/// One engine behind the writer thread's three steps.
trait Engine {
    /// Applies a batch (read, compare, insert per write) and commits it durably.
    fn commit(&mut self, batch: &[Write]) -> Result<(), String>;
}

/// One position write of the trial.
struct Write {
    user_id: String,
    position_ms: u64,
    written_at_micros: i64,
}

const MOVIE_ID: &str = "inception";

struct Redb(redb::Database);

impl Engine for Redb {
    fn commit(&mut self, batch: &[Write]) -> Result<(), String> {
        let txn = self.0.begin_write().map_err(|e| e.to_string())?;
        {
            let mut table = txn.open_table(POSITIONS).map_err(|e| e.to_string())?;
            for write in batch {
                let key = (write.user_id.as_str(), MOVIE_ID);
                let newer = match table.get(key).map_err(|e| e.to_string())? {
                    Some(cell) => write.written_at_micros > cell.value().1,
                    None => true,
                };
                if newer {
                    table
                        .insert(key, (write.position_ms, write.written_at_micros, false))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        txn.commit().map_err(|e| e.to_string())
    }
}

struct Fjall {
    db: Database,
    positions: fjall::Keyspace,
    key: Vec<u8>,
}

impl Fjall {
    /// `user_id`, a 0 byte, `movie_id`: ordered by user like the redb key.
    fn key(&mut self, user_id: &str) -> &[u8] {
        self.key.clear();
        self.key.extend_from_slice(user_id.as_bytes());
        self.key.push(0);
        self.key.extend_from_slice(MOVIE_ID.as_bytes());
        &self.key
    }
}

/// `position_ms`, `written_at_micros` (big-endian), tombstone flag.
fn encode(position_ms: u64, written_at_micros: i64) -> [u8; 17] {
    let mut value = [0u8; 17];
    value[..8].copy_from_slice(&position_ms.to_be_bytes());
    value[8..16].copy_from_slice(&written_at_micros.to_be_bytes());
    value
}

impl Engine for Fjall {
    fn commit(&mut self, batch: &[Write]) -> Result<(), String> {
        let mut txn = self.db.batch().durability(Some(PersistMode::SyncAll));
        for write in batch {
            let key = self.key(&write.user_id).to_vec();
            let newer = match self.positions.get(&key).map_err(|e| e.to_string())? {
                Some(cell) if cell.len() == 17 => {
                    let stored = i64::from_be_bytes(cell[8..16].try_into().expect("8 bytes"));
                    write.written_at_micros > stored
                }
                _ => true,
            };
            if newer {
                txn.insert(
                    &self.positions,
                    key,
                    encode(write.position_ms, write.written_at_micros).to_vec(),
                );
            }
        }
        txn.commit().map_err(|e| e.to_string())
    }
}

/// Runs redb then fjall on the same load and reports both.
pub fn run(plan: &EnginePlan) -> Result<EnginesReport, String> {
    let redb_dir = plan.data_dir.join("redb");
    std::fs::create_dir_all(&redb_dir).map_err(|e| e.to_string())?;
    let db = redb::Database::create(redb_dir.join("positions.redb")).map_err(|e| e.to_string())?;
    let redb = trial("redb", &mut Redb(db), plan, &redb_dir)?;

    let fjall_dir = plan.data_dir.join("fjall");
    let db = Database::builder(&fjall_dir)
        .open()
        .map_err(|e| e.to_string())?;
    let positions = db
        .keyspace("playback_position", KeyspaceCreateOptions::default)
        .map_err(|e| e.to_string())?;
    let mut engine = Fjall {
        db,
        positions,
        key: Vec::new(),
    };
    let fjall = trial("fjall", &mut engine, plan, &fjall_dir)?;
    Ok(EnginesReport {
        keys: plan.keys,
        engines: vec![redb, fjall],
    })
}

fn trial(
    name: &str,
    engine: &mut dyn Engine,
    plan: &EnginePlan,
    dir: &Path,
) -> Result<EngineReport, String> {
    let keys = plan.keys.max(1);
    let users: Vec<String> = (0..keys).map(|i| format!("viewer-{i}")).collect();
    // Every cell exists before the clock starts, as on a plateau.
    let mut next_user = 0;
    let mut position_ms = 0;
    let mut batch = Vec::with_capacity(plan.batch);
    let mut fill = |batch: &mut Vec<Write>, size: usize| {
        batch.clear();
        for _ in 0..size {
            batch.push(Write {
                user_id: users[next_user].clone(),
                position_ms,
                written_at_micros: resume_server::clock::now_micros(),
            });
            next_user = (next_user + 1) % keys;
            if next_user == 0 {
                position_ms += 4000;
            }
        }
    };
    for _ in 0..keys.div_ceil(1024) {
        fill(&mut batch, 1024);
        engine.commit(&batch)?;
    }
    let me = std::process::id();
    let cpu_before = procfs::sample(me).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut commits = 0u64;
    let mut latency = Histogram::default();
    while started.elapsed() < plan.duration {
        fill(&mut batch, plan.batch.max(1));
        let commit_started = Instant::now();
        engine.commit(&batch)?;
        latency.record(commit_started.elapsed());
        commits += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = procfs::sample(me).map_err(|e| e.to_string())?.cpu_seconds - cpu_before.cpu_seconds;
    let writes = commits * plan.batch.max(1) as u64;
    Ok(EngineReport {
        engine: name.into(),
        batch: plan.batch.max(1),
        seconds,
        writes,
        commits,
        writes_per_second: writes as f64 / seconds,
        cpu_us_per_write: cpu * 1e6 / writes.max(1) as f64,
        cpu_us_per_commit: cpu * 1e6 / commits.max(1) as f64,
        commit_p50_ms: latency.quantile_ms(0.5),
        commit_p99_ms: latency.quantile_ms(0.99),
        disk_bytes: crate::drift::dir_bytes(dir).map_err(|e| e.to_string())?,
    })
}
