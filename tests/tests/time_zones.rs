//! Schedules in a time zone (issue 17): `execute_at = "02:30 Europe/Berlin"` is due at the next 02:30 on Berlin's
//! clock (the rule across daylight-saving changes is unit-tested in sequencer-core's `zone.rs`), the
//! `execute_at = fn` form computes the same with `sequencer::next_time_of_day`, and the `scheduled` command prints
//! the zone beside the UTC time.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{backends, prefix};
use sequencer::ledger::Status;

#[sequencer::operations]
mod ops {
    use std::time::SystemTime;

    use sequencer::prelude::*;

    #[operation(timestamp = "2024_12_01_000000", execute_at = "02:30 Europe/Berlin")]
    pub async fn nightly_berlin(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    /// The `fn` form: the zone from configuration, say; here New York's 23:00.
    fn new_york_evening() -> SystemTime {
        sequencer::next_time_of_day("23:00 America/New_York", SystemTime::now())
            .unwrap_or_else(|_| SystemTime::now())
    }

    #[operation(timestamp = "2024_12_01_000001", execute_at = new_york_evening)]
    pub async fn evening_new_york(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The next `spec` after `t`, Unix milliseconds.
fn next(spec: &str, t: SystemTime) -> i64 {
    ms(sequencer::next_time_of_day(spec, t).expect("a time of day"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zoned_time_of_day_and_its_fn_form_are_due_on_that_zones_clock() {
    for b in backends().await {
        let p = prefix();
        let seq = common::build(&b, common::builder(&b, &p, ops::registry())).await;
        let before = SystemTime::now();
        let report = seq.execute_all().await.expect("process");
        let after = SystemTime::now();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        let rows = common::rows(&seq).await;
        for (op, spec) in [
            ("nightly_berlin", "02:30 Europe/Berlin"),
            ("evening_new_york", "23:00 America/New_York"),
        ] {
            let row = &rows[op];
            assert_eq!(row.status, Status::Scheduled, "{}: {op}", b.name);
            let due = row.due_at.expect("due_at");
            // The next occurrence computed just before and just after the run bracket the recorded one (they
            // differ only if the run straddled that very time).
            let (lo, hi) = (next(spec, before), next(spec, after));
            assert!(
                (lo..=hi).contains(&due),
                "{}: {op} due {due}, expected within {lo}..={hi}",
                b.name
            );
            assert!(due > ms(before) && due <= ms(after) + 86_400_000 + 3_600_000);
        }
        // Berlin's 02:30 is 00:30 or 01:30 UTC (summer, winter), never 02:30 UTC.
        let berlin = rows["nightly_berlin"].due_at.unwrap_or(0);
        let utc_minute = berlin.rem_euclid(86_400_000) / 60_000;
        assert!([30, 60, 90].contains(&utc_minute), "{}: {berlin}", b.name);
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_command_prints_the_zone() {
    let b = backends().await.remove(0);
    let p = prefix();
    let out = common::command(env!("CARGO_BIN_EXE_seqzone"), &b.url, &p, &["scheduled"])
        .output()
        .expect("run scheduled");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("scheduled: 2024_12_01_000000_nightly_berlin, due "),
        "{stdout}"
    );
    assert!(
        stdout.contains("(2024_12_01_000000_nightly_berlin runs at 02:30 Europe/Berlin: "),
        "{stdout}"
    );
    // The due time on Berlin's clock: 02:30 with its offset.
    assert!(
        stdout.contains("T02:30:00+01:00[Europe/Berlin])")
            || stdout.contains("T02:30:00+02:00[Europe/Berlin])")
            || stdout.contains("T03:00:00+02:00[Europe/Berlin])"),
        "{stdout}"
    );
}
