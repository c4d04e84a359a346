//! A take reads the queue in its order and stops after the jobs it takes, however long the queue: on every
//! backend its plan reads the queue's index (due jobs, oldest first, then by id) with no sort of the queued jobs.
//! PostgreSQL's index ended at `available_at` and its clock is volatile: each take filtered and sorted every queued
//! job (3 ms a take with 10,000 queued, the queue bench's main cost) until schema 17.

mod common;

use std::time::Duration;

use common::{backends, prefix};
use sequencer::Registry;

/// Queued jobs in the test's queue: enough that a planner which sorts them would rather sort than not.
const QUEUED: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_reads_the_queue_by_its_index_without_sorting_it() {
    for b in backends().await {
        let p = prefix();
        let seq = common::build(&b, common::builder(&b, &p, Registry::default())).await;
        let pool = seq.ledger().pool();
        let jobs = format!("{p}seq_jobs");
        // Jobs due at one of four instants (many share one), inserted in a shuffled order of ids.
        let mut ids: Vec<usize> = (1..=QUEUED).collect();
        fastrand::shuffle(&mut ids);
        for chunk in ids.chunks(500) {
            let values = vec!["(?, ?, 0, 'q', 'queued', ?, 0, 0)"; chunk.len()].join(", ");
            let mut sql = format!(
                "INSERT INTO {jobs} (id, name, run, queue, status, available_at, attempts, created_at) VALUES {values}"
            );
            if b.name == "PostgreSQL" {
                sql = sequencer::ledger::number_placeholders(&sql);
            }
            let mut insert = sqlx::query(&sql);
            for &id in chunk {
                insert = insert
                    .bind(id as i64)
                    .bind(format!("job_{id:05}"))
                    .bind((id % 4) as i64);
            }
            insert
                .execute(pool)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        }
        let analyze = match b.name {
            "PostgreSQL" => format!("ANALYZE {jobs}"),
            "MariaDB" => format!("ANALYZE TABLE {jobs}"),
            _ => "ANALYZE".to_owned(),
        };
        sqlx::query(&analyze)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));

        let plan = seq
            .ledger()
            .explain_take("q", 8)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        let text = plan.join("\n");
        // PostgreSQL says `Sort`, SQLite `USE TEMP B-TREE FOR ORDER BY`, MySQL `Using filesort`.
        for sorts in ["Sort", "TEMP B-TREE", "filesort"] {
            assert!(
                !text.contains(sorts),
                "{}: a take sorts the queue:\n{text}",
                b.name
            );
        }
        // The due time bounds the index scan (PostgreSQL filtered each queued job by its volatile clock).
        if b.name == "PostgreSQL" {
            assert!(
                plan.iter()
                    .any(|l| l.contains("Index Cond") && l.contains("available_at")),
                "{}: the due time is not the index scan's bound:\n{text}",
                b.name
            );
        }

        // The order it promises: due first (available_at), then id.
        let taken = seq
            .ledger()
            .take_jobs("q", "w", Duration::from_secs(30), 8)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        let mut got: Vec<i64> = taken.iter().map(|j| j.id).collect();
        got.sort_unstable();
        assert_eq!(got, vec![4, 8, 12, 16, 20, 24, 28, 32], "{}", b.name);
        common::cleanup(&seq, &p, &[]).await;
    }
}

/// PostgreSQL: a worker's claims of the runs it took, and its acknowledgements, find each run by its key, even before the ledger's
/// statistics know its rows (a table filled by `process` and not yet analysed): the planner guessed that few runs
/// are pending, read every pending run by its status, then kept the eight it wanted (1.3 ms a claim with 10,000
/// pending, the most expensive statement of the queue bench).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_acknowledgements_find_each_run_by_its_key() {
    for b in backends()
        .await
        .into_iter()
        .filter(|b| b.name == "PostgreSQL")
    {
        let p = prefix();
        let seq = common::build(&b, common::builder(&b, &p, Registry::default())).await;
        let pool = seq.ledger().pool();
        let ops = format!("{p}seq_operations");
        // Filled since the table was made, never analysed (as `process` leaves a new ledger).
        sqlx::query(&sequencer::ledger::number_placeholders(&format!(
            "INSERT INTO {ops} (name, run, op_timestamp, status, attempts) \
             SELECT 'op_' || g, 0, g, ?, 0 FROM generate_series(1, ?) g"
        )))
        .bind("pending")
        .bind(QUEUED as i64)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        let names: Vec<String> = (1..=8).map(|i| format!("op_{}", i * 100)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let plan = seq
            .ledger()
            .explain_claims(&names)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        // Nothing read by a whole-table or bitmap scan, anywhere in the plan.
        finds_runs_by_key(
            b.name,
            "the claims",
            &plan,
            &ops,
            &["Seq Scan", "Bitmap Heap Scan"],
        );

        // An acknowledgement too, with every run `running` (the status index also holds an entry for each run
        // completed since the last vacuum: an acknowledgement of 100 read 13,000).
        sqlx::query(&format!("UPDATE {ops} SET status = 'running'"))
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        let plan = seq
            .ledger()
            .explain_ack(&names)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        // The runs by their key (its plan also updates jobs: only the runs' table is named).
        let scans = [
            format!("Seq Scan on {ops}"),
            format!("Bitmap Heap Scan on {ops}"),
        ];
        let scans: Vec<&str> = scans.iter().map(String::as_str).collect();
        finds_runs_by_key(b.name, "the acknowledgement", &plan, &ops, &scans);
        common::cleanup(&seq, &p, &[]).await;
    }
}

/// Asserts that `plan` (one line per step) reads the runs of `ops` through their primary key, and by none of
/// `scans`.
fn finds_runs_by_key(backend: &str, what: &str, plan: &[String], ops: &str, scans: &[&str]) {
    let text = plan.join("\n");
    assert!(
        text.contains(&format!("Index Scan using {ops}_pkey")),
        "{backend}: {what}: the runs are not found by their key:\n{text}"
    );
    for scan in scans {
        assert!(
            !text.contains(scan),
            "{backend}: {what}: the runs are read by a {scan}:\n{text}"
        );
    }
}
