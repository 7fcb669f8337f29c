//! Turns the JSON reports of `bench/run.sh` into one Markdown table: the median
//! of each figure over the runs, next to its target (docs/BENCHMARKS.md).
//!
//! Reports are found by file name: `<kind>-<target>-<run>.json`, e.g.
//! `sessions-server-1.json`, `lookup-bare-2.json`, `store-paced-1.json`,
//! `sessions-cassandra-1.json`, `ticking-server-1.json` (scenario 8: sessions
//! with lookups through the window), `soak-server-1.json` (bench/soak.sh). A scenario whose reports are missing (see
//! `SCENARIOS` in bench/run.sh) is left out of the table.

use std::fmt::Write as _;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::coordinator::RunReport;
use crate::engines::EnginesReport;
use crate::lookup::LookupReport;
use crate::store_bench::StoreReport;

fn load<T: DeserializeOwned>(dir: &Path, prefix: &str) -> Result<Vec<T>, String> {
    let mut reports = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        if !rest.ends_with(".json") || !rest[..rest.len() - 5].chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        reports.push(serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?);
    }
    Ok(reports)
}

/// Median of `field` over `reports` (NaN when there are none).
fn median<T>(reports: &[T], field: impl Fn(&T) -> f64) -> f64 {
    let mut values: Vec<f64> = reports.iter().map(field).collect();
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "",
    }
}

struct Table {
    out: String,
    /// Whether the current scenario's reports are there; rows are dropped when not.
    has_reports: bool,
}

impl Table {
    /// Starts a scenario: its rows are printed only when `has_reports`.
    fn scenario(&mut self, has_reports: bool) {
        self.has_reports = has_reports;
    }

    fn row(
        &mut self,
        scenario: &str,
        figure: &str,
        value: String,
        target: &str,
        met: Option<bool>,
    ) {
        if !self.has_reports {
            return;
        }
        let _ = writeln!(
            self.out,
            "| {scenario} | {figure} | {value} | {target} | {} |",
            verdict(met)
        );
    }
}

/// A paced store run's figures, medians over runs.
fn paced_store(runs: &[StoreReport]) -> String {
    format!(
        "{:.0} /s, {:.0} per commit (p99 {:.1} ms; {:.1} µs CPU per write, commit delay {:.0} ms)",
        median(runs, |r| r.writes_per_second),
        median(runs, |r| r.writes_per_commit),
        median(runs, |r| r.p99_ms),
        median(runs, |r| r.cpu_us_per_write),
        median(runs, |r| r.commit_delay_ms)
    )
}

/// The table for the reports in `dir`.
pub fn render(dir: &Path) -> Result<String, String> {
    let ws: Vec<RunReport> = load(dir, "sessions-server-")?;
    let bare: Vec<RunReport> = load(dir, "sessions-bare-")?;
    let http: Vec<RunReport> = load(dir, "http-server-")?;
    let lookups: Vec<LookupReport> = load(dir, "lookup-server-")?;
    let constant: Vec<LookupReport> = load(dir, "lookup-bare-")?;
    let store_max: Vec<StoreReport> = load(dir, "store-max-")?;
    let store_paced: Vec<StoreReport> = load(dir, "store-paced-")?;
    let store_short_delay: Vec<StoreReport> = load(dir, "store-delay5-")?;
    let engines_paced: Vec<EnginesReport> = load(dir, "engines-paced-")?;
    let engines_max: Vec<EnginesReport> = load(dir, "engines-max-")?;
    let cassandra: Vec<RunReport> = load(dir, "sessions-cassandra-")?;
    let embedded: Vec<RunReport> = load(dir, "sessions-embedded-")?;
    let no_writes: Vec<RunReport> = load(dir, "sessions-nowrites-")?;
    let ticking: Vec<RunReport> = load(dir, "ticking-server-")?;
    let ticking_bare: Vec<RunReport> = load(dir, "ticking-bare-")?;
    let soak: Vec<RunReport> = load(dir, "soak-server-")?;
    let mut t = Table {
        out: String::new(),
        has_reports: true,
    };
    let runs = ws
        .len()
        .max(bare.len())
        .max(http.len())
        .max(lookups.len())
        .max(store_max.len())
        .max(cassandra.len())
        .max(ticking.len())
        .max(soak.len());
    let _ = writeln!(t.out, "Medians of {runs} run(s).\n");
    let _ = writeln!(t.out, "| Scenario | Figure | Value | Target | |");
    let _ = writeln!(t.out, "|---|---|---|---|---|");

    let sessions = median(&ws, |r| r.connected as f64);
    let planned = median(&ws, |r| r.viewers as f64);
    let rss = median(&ws, |r| r.rss_per_viewer_bytes) / 1024.0;
    let cpu = median(&ws, |r| r.cpu_us_per_message);
    let connects = median(&ws, |r| r.connects_per_second);
    let errors = median(&ws, |r| (r.errors + r.unexpected_closes) as f64);
    let wrong = median(&ws, |r| r.check_wrong as f64);
    let s = "1 sessions";
    t.scenario(!ws.is_empty());
    t.row(
        s,
        "sessions connected",
        format!("{sessions:.0} of {planned:.0}"),
        "19,000",
        Some(sessions >= 19_000.0),
    );
    t.row(
        s,
        "plateau window",
        format!("{:.0} s", median(&ws, |r| r.window_seconds)),
        "≥ 60 s",
        Some(median(&ws, |r| r.window_seconds) >= 60.0),
    );
    t.row(
        s,
        "authenticated upgrades/s",
        format!("{connects:.0}"),
        "≥ 5,000",
        Some(connects >= 5000.0),
    );
    t.row(
        s,
        "hello latency p50 / p99 / max",
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            median(&ws, |r| r.hello_p50_ms),
            median(&ws, |r| r.hello_p99_ms),
            median(&ws, |r| r.hello_max_ms)
        ),
        "",
        None,
    );
    t.row(
        s,
        "server RSS per session",
        format!("{rss:.2} KiB"),
        "≤ 8 KiB",
        Some(rss <= 8.0),
    );
    t.row(
        s,
        "server CPU per tick",
        format!("{cpu:.1} µs"),
        "a few µs",
        None,
    );
    t.row(
        s,
        "ticks accepted in window",
        format!("{:.0}", median(&ws, |r| r.window_ticks)),
        "",
        None,
    );
    t.row(
        s,
        "`saved` acks / delay beyond flush p50 / p99 / max",
        format!(
            "{:.0} / {:.1} / {:.1} / {:.1} ms",
            median(&ws, |r| r.acks as f64),
            median(&ws, |r| r.ack_delay_p50_ms),
            median(&ws, |r| r.ack_delay_p99_ms),
            median(&ws, |r| r.ack_delay_max_ms)
        ),
        "",
        None,
    );
    t.row(
        s,
        "store writes/s at plateau",
        format!(
            "{:.0}",
            median(&ws, |r| r.window_writes / r.window_seconds.max(1e-9))
        ),
        "",
        None,
    );
    t.row(
        s,
        "store write latency p50 / p99 in the plateau (server histogram)",
        format!(
            "{:.2} / {:.2} ms",
            median(&ws, |r| r.write_p50_ms),
            median(&ws, |r| r.write_p99_ms)
        ),
        "",
        None,
    );
    t.row(
        s,
        "store writes in flight, mean over the plateau",
        format!("{:.1}", median(&ws, |r| r.writes_in_flight_mean)),
        "",
        None,
    );
    t.row(
        s,
        "`saved` delay beyond flush in the plateau p50 / p99 / max",
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            median(&ws, |r| r.window_ack_delay_p50_ms),
            median(&ws, |r| r.window_ack_delay_p99_ms),
            median(&ws, |r| r.window_ack_delay_max_ms)
        ),
        "",
        None,
    );
    t.row(
        s,
        "errors + unexpected closes",
        format!("{errors:.0}"),
        "0",
        Some(errors == 0.0),
    );
    t.row(
        s,
        "final positions wrong (sampled)",
        format!("{wrong:.0} of {:.0}", median(&ws, |r| r.checked as f64)),
        "0",
        Some(wrong == 0.0),
    );

    let s = "2 bare sink";
    t.scenario(!bare.is_empty());
    let bare_rss = median(&bare, |r| r.rss_per_viewer_bytes) / 1024.0;
    let bare_cpu = median(&bare, |r| r.cpu_us_per_message);
    let rss_ratio = rss / bare_rss;
    let cpu_ratio = cpu / bare_cpu;
    t.row(
        s,
        "bare sink RSS per session",
        format!("{bare_rss:.2} KiB"),
        "",
        None,
    );
    t.row(
        s,
        "bare sink CPU per tick",
        format!("{bare_cpu:.1} µs"),
        "",
        None,
    );
    t.row(
        s,
        "bare sink upgrades/s",
        format!("{:.0}", median(&bare, |r| r.connects_per_second)),
        "",
        None,
    );
    t.row(
        s,
        "memory per session, server ÷ bare",
        format!("{rss_ratio:.2}×"),
        "≤ 1.5×",
        Some(rss_ratio <= 1.5),
    );
    t.row(
        s,
        "CPU per tick, server ÷ bare",
        format!("{cpu_ratio:.2}×"),
        "≤ 1.3×",
        Some(cpu_ratio <= 1.3),
    );

    let s = "3 HTTP vs WS";
    t.scenario(!http.is_empty());
    let ws_vs = median(&ws, |r| r.cpu_us_per_viewer_second);
    let http_vs = median(&http, |r| r.cpu_us_per_viewer_second);
    t.row(
        s,
        "CPU per viewer-second: WS ticking 1/s",
        format!("{ws_vs:.1} µs"),
        "",
        None,
    );
    t.row(
        s,
        "CPU per viewer-second: HTTP POST every 4 s",
        format!("{http_vs:.1} µs"),
        "",
        None,
    );
    t.row(
        s,
        "store writes per viewer-minute: WS / HTTP",
        format!(
            "{:.1} / {:.1}",
            median(&ws, |r| r.writes_per_viewer_minute),
            median(&http, |r| r.writes_per_viewer_minute)
        ),
        "",
        None,
    );
    t.row(
        s,
        "server RSS per viewer: HTTP keep-alive",
        format!(
            "{:.2} KiB",
            median(&http, |r| r.rss_per_viewer_bytes) / 1024.0
        ),
        "",
        None,
    );
    t.row(
        s,
        "HTTP POST latency p50 / p99",
        format!(
            "{:.1} / {:.1} ms",
            median(&http, |r| r.request_p50_ms),
            median(&http, |r| r.request_p99_ms)
        ),
        "",
        None,
    );
    t.row(
        s,
        "HTTP errors; final positions wrong",
        format!(
            "{:.0}; {:.0} of {:.0}",
            median(&http, |r| (r.errors + r.unexpected_closes) as f64),
            median(&http, |r| r.check_wrong as f64),
            median(&http, |r| r.checked as f64)
        ),
        "0",
        Some(median(&http, |r| (r.errors + r.check_wrong as u64) as f64) == 0.0),
    );

    let s = "4 lookups";
    t.scenario(!lookups.is_empty());
    let per_s = median(&lookups, |r| r.per_second);
    let constant_per_s = median(&constant, |r| r.per_second);
    let p99 = median(&lookups, |r| r.p99_ms);
    let ratio = per_s / constant_per_s;
    let concurrency = median(&lookups, |r| r.concurrency as f64);
    t.row(
        s,
        &format!("GET /api/v1/stream at concurrency {concurrency:.0}"),
        format!(
            "{per_s:.0} /s, p50 {:.2} ms, p99 {p99:.2} ms",
            median(&lookups, |r| r.p50_ms)
        ),
        "p99 < 2 ms",
        Some(p99 < 2.0),
    );
    t.row(
        s,
        "constant-body handler with the same JWT check",
        format!(
            "{constant_per_s:.0} /s, p50 {:.2} ms, p99 {:.2} ms",
            median(&constant, |r| r.p50_ms),
            median(&constant, |r| r.p99_ms)
        ),
        "",
        None,
    );
    t.row(
        s,
        "throughput, lookup ÷ constant",
        format!("{ratio:.2}×"),
        "≥ 0.7×",
        Some(ratio >= 0.7),
    );
    t.row(
        s,
        "lookup errors",
        format!("{:.0}", median(&lookups, |r| r.errors as f64)),
        "0",
        Some(median(&lookups, |r| r.errors as f64) == 0.0),
    );

    let s = "5 storm";
    t.scenario(ws.iter().any(|r| r.storm.is_some()));
    let storm = |f: fn(&crate::coordinator::StormReport) -> f64| {
        median(&ws, |r| r.storm.as_ref().map_or(f64::NAN, f))
    };
    t.row(
        s,
        "all sessions back after a simultaneous drop",
        format!(
            "{:.1} s ({:.0} of {:.0})",
            storm(|s| s.seconds),
            storm(|s| s.reconnected as f64),
            storm(|s| s.expected as f64)
        ),
        "",
        None,
    );
    t.row(
        s,
        "reconnect latency p50 / p99",
        format!(
            "{:.0} / {:.0} ms",
            storm(|s| s.hello_p50_ms),
            storm(|s| s.hello_p99_ms)
        ),
        "",
        None,
    );
    t.row(
        s,
        "refused and retried attempts",
        format!("{:.0}", storm(|s| s.retries as f64)),
        "",
        None,
    );
    t.row(
        s,
        "hellos behind the last tick sent",
        format!("{:.0}", storm(|s| s.hello_behind as f64)),
        "",
        None,
    );

    let s = "6 store";
    let store_errors = [&store_max, &store_paced, &store_short_delay]
        .iter()
        .map(|runs| median(runs, |r| r.errors as f64))
        .filter(|errors| !errors.is_nan())
        .sum::<f64>();
    t.scenario(!store_max.is_empty() || !store_paced.is_empty());
    t.row(
        s,
        "closed loop: writes/s, writes per fsync",
        format!(
            "{:.0} /s, {:.0} per commit ({:.0} writers, p99 {:.1} ms)",
            median(&store_max, |r| r.writes_per_second),
            median(&store_max, |r| r.writes_per_commit),
            median(&store_max, |r| r.writers as f64),
            median(&store_max, |r| r.p99_ms)
        ),
        "",
        None,
    );
    t.row(
        s,
        "paced like the sessions: writes/s, writes per fsync",
        paced_store(&store_paced),
        "",
        None,
    );
    if !store_short_delay.is_empty() {
        t.row(
            s,
            "the same with a shorter commit delay",
            paced_store(&store_short_delay),
            "",
            None,
        );
    }
    t.row(
        s,
        "store errors",
        format!("{:.0}", store_errors),
        "0",
        Some(store_errors == 0.0),
    );
    t.scenario(!engines_paced.is_empty() || !engines_max.is_empty());
    engine_rows(&mut t, &engines_paced);
    engine_rows(&mut t, &engines_max);
    t.scenario(!cassandra.is_empty());
    cassandra_rows(&mut t, &cassandra, &embedded, &no_writes);
    t.scenario(!ticking.is_empty());
    ticking_rows(&mut t, &ticking, &ticking_bare);
    t.scenario(!soak.is_empty());
    soak_rows(&mut t, &soak);
    Ok(t.out)
}

/// Scenario 6's engine trial: redb against fjall at one batch size.
fn engine_rows(t: &mut Table, reports: &[EnginesReport]) {
    if reports.is_empty() {
        return;
    }
    let s = "6 engines";
    let of = |name: &str, field: fn(&crate::engines::EngineReport) -> f64| {
        median(reports, |r| {
            r.engines
                .iter()
                .find(|e| e.engine == name)
                .map_or(f64::NAN, field)
        })
    };
    let batch = of("redb", |e| e.batch as f64);
    let line = |name: &str| {
        format!(
            "{:.1} µs CPU/write, {:.0} writes/s, commit p99 {:.2} ms, {:.1} MiB on disk",
            of(name, |e| e.cpu_us_per_write),
            of(name, |e| e.writes_per_second),
            of(name, |e| e.commit_p99_ms),
            of(name, |e| e.disk_bytes as f64) / (1 << 20) as f64
        )
    };
    t.row(
        s,
        &format!("redb, {batch:.0} writes per commit"),
        line("redb"),
        "",
        None,
    );
    t.row(
        s,
        &format!("fjall, {batch:.0} writes per commit"),
        line("fjall"),
        "",
        None,
    );
}

/// Scenario 8: lookups while sessions tick, on the server and on the bare sink.
fn ticking_rows(t: &mut Table, server: &[RunReport], bare: &[RunReport]) {
    let s = "8 lookups while ticking";
    let lookups = |reports: &[RunReport], field: fn(&LookupReport) -> f64| {
        median(reports, |r| {
            r.window_lookups.as_ref().map_or(f64::NAN, field)
        })
    };
    let line = |reports: &[RunReport]| {
        format!(
            "{:.0} /s, p50 {:.2} ms, p99 {:.2} ms (concurrency {:.0}, {:.0} sessions)",
            lookups(reports, |l| l.per_second),
            lookups(reports, |l| l.p50_ms),
            lookups(reports, |l| l.p99_ms),
            lookups(reports, |l| l.concurrency as f64),
            median(reports, |r| r.connected as f64),
        )
    };
    let p99 = lookups(server, |l| l.p99_ms);
    t.row(
        s,
        "GET /api/v1/stream while the sessions tick",
        line(server),
        "p99 < 2 ms",
        Some(p99 < 2.0),
    );
    t.row(
        s,
        "constant-body handler while its sessions tick",
        line(bare),
        "",
        None,
    );
    let ratio = lookups(server, |l| l.per_second) / lookups(bare, |l| l.per_second);
    t.row(
        s,
        "throughput, lookup ÷ constant",
        format!("{ratio:.2}×"),
        "≥ 0.8×",
        Some(ratio >= 0.8),
    );
    let errors = lookups(server, |l| l.errors as f64) + median(server, |r| r.errors as f64);
    t.row(
        s,
        "lookup and session errors",
        format!("{errors:.0}"),
        "0",
        Some(errors == 0.0),
    );
}

/// bench/soak.sh: the window's start against its end.
fn soak_rows(t: &mut Table, soak: &[RunReport]) {
    let s = "soak";
    // From the samples, so that a report written before a figure existed
    // gets it too.
    let drift = |field: fn(&crate::drift::Drift) -> f64| {
        median(soak, |r| {
            crate::drift::summarize(&r.samples)
                .as_ref()
                .map_or(f64::NAN, field)
        })
    };
    const MIB: f64 = (1 << 20) as f64;
    t.row(
        s,
        "sessions, window",
        format!(
            "{:.0}, {:.0} s",
            median(soak, |r| r.connected as f64),
            drift(|d| d.seconds)
        ),
        "19,000, 30 min",
        None,
    );
    t.row(
        s,
        "server RSS start → end (growth per hour: whole window; after its first fifth)",
        format!(
            "{:.1} → {:.1} MiB ({:+.1}; {:+.1} MiB/h)",
            drift(|d| d.rss_start_bytes as f64) / MIB,
            drift(|d| d.rss_end_bytes as f64) / MIB,
            drift(|d| d.rss_growth_bytes_per_hour) / MIB,
            drift(|d| d.rss_settled_growth_bytes_per_hour) / MIB
        ),
        "",
        None,
    );
    t.row(
        s,
        "server CPU per tick, first → last fifth",
        format!(
            "{:.1} → {:.1} µs",
            drift(|d| d.cpu_us_per_tick_start),
            drift(|d| d.cpu_us_per_tick_end)
        ),
        "",
        None,
    );
    t.row(
        s,
        "store on disk start → end (growth per hour: whole window; after its first fifth)",
        format!(
            "{:.1} → {:.1} MiB ({:+.1}; {:+.1} MiB/h)",
            drift(|d| d.store_start_bytes.map_or(f64::NAN, |b| b as f64)) / MIB,
            drift(|d| d.store_end_bytes.map_or(f64::NAN, |b| b as f64)) / MIB,
            drift(|d| d.store_growth_bytes_per_hour.unwrap_or(f64::NAN)) / MIB,
            drift(|d| d.store_settled_growth_bytes_per_hour.unwrap_or(f64::NAN)) / MIB
        ),
        "",
        None,
    );
    t.row(
        s,
        "store writes/s, first → last fifth",
        format!(
            "{:.0} → {:.0}",
            drift(|d| d.writes_per_second_start),
            drift(|d| d.writes_per_second_end)
        ),
        "",
        None,
    );
    let errors = median(soak, |r| {
        (r.errors + r.unexpected_closes + r.check_wrong as u64) as f64
    });
    t.row(
        s,
        "errors, unexpected closes, wrong final positions",
        format!("{errors:.0}"),
        "0",
        Some(errors == 0.0),
    );
}

/// Scenario 7: scenario 1's sessions with the Cassandra store against the CQL
/// test node, each figure next to the embedded store's under the same load,
/// and the same load with no store writes (the session path alone).
fn cassandra_rows(
    t: &mut Table,
    cassandra: &[RunReport],
    embedded: &[RunReport],
    no_writes: &[RunReport],
) {
    let s = "7 Cassandra";
    // A figure of both stores: "Cassandra / embedded".
    let both = |field: &dyn Fn(&RunReport) -> f64, decimals: usize, unit: &str| {
        format!(
            "{:.decimals$} / {:.decimals$}{unit}",
            median(cassandra, field),
            median(embedded, field)
        )
    };
    // The same with the no-writes run: "Cassandra / embedded / no writes".
    let three = |field: &dyn Fn(&RunReport) -> f64, decimals: usize, unit: &str| {
        format!(
            "{:.decimals$} / {:.decimals$} / {:.decimals$}{unit}",
            median(cassandra, field),
            median(embedded, field),
            median(no_writes, field)
        )
    };
    let connected = median(cassandra, |r| r.connected as f64);
    let planned = median(cassandra, |r| r.viewers as f64);
    t.row(
        s,
        "sessions connected (Cassandra)",
        format!("{connected:.0} of {planned:.0}"),
        "all",
        Some(connected == planned),
    );
    t.row(
        s,
        "server CPU per tick: Cassandra / embedded / no store writes",
        three(&|r| r.cpu_us_per_message, 1, " µs"),
        "",
        None,
    );
    // What a write adds to the session path: the CPU per tick beyond the
    // no-writes run's, times the ticks per write.
    let per_write = |reports: &[RunReport]| {
        let extra =
            median(reports, |r| r.cpu_us_per_message) - median(no_writes, |r| r.cpu_us_per_message);
        extra * median(reports, |r| r.window_ticks / r.window_writes.max(1.0))
    };
    t.row(
        s,
        "server CPU per store write beyond the session path: Cassandra / embedded",
        format!(
            "{:.0} / {:.0} µs",
            per_write(cassandra),
            per_write(embedded)
        ),
        "",
        None,
    );
    t.row(
        s,
        "server RSS per session: Cassandra / embedded / no store writes",
        three(&|r| r.rss_per_viewer_bytes / 1024.0, 2, " KiB"),
        "",
        None,
    );
    t.row(
        s,
        "authenticated upgrades/s: Cassandra / embedded",
        both(&|r| r.connects_per_second, 0, ""),
        "",
        None,
    );
    t.row(
        s,
        "store writes/s at plateau: Cassandra / embedded",
        both(&|r| r.window_writes / r.window_seconds.max(1e-9), 0, ""),
        "",
        None,
    );
    let latency = |reports: &[RunReport]| {
        format!(
            "{:.2} / {:.2} ms",
            median(reports, |r| r.write_p50_ms),
            median(reports, |r| r.write_p99_ms)
        )
    };
    t.row(
        s,
        "store write latency p50 / p99 (server histogram): Cassandra; embedded",
        format!("{}; {}", latency(cassandra), latency(embedded)),
        "",
        None,
    );
    t.row(
        s,
        "store writes in flight, mean over the plateau: Cassandra / embedded",
        both(&|r| r.writes_in_flight_mean, 2, ""),
        "",
        None,
    );
    let ack_delay = |reports: &[RunReport]| {
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            median(reports, |r| r.window_ack_delay_p50_ms),
            median(reports, |r| r.window_ack_delay_p99_ms),
            median(reports, |r| r.window_ack_delay_max_ms)
        )
    };
    t.row(
        s,
        "`saved` delay beyond flush in the plateau p50 / p99 / max: Cassandra; embedded",
        format!("{}; {}", ack_delay(cassandra), ack_delay(embedded)),
        "",
        None,
    );
    let node = |f: fn(&crate::store_node::StoreNodeReport, f64) -> f64| {
        median(cassandra, |r| {
            r.store_node
                .as_ref()
                .map_or(f64::NAN, |n| f(n, r.window_seconds.max(1e-9)))
        })
    };
    t.row(
        s,
        "CPU busy in the plateau, cores: server with Cassandra / embedded / no writes; CQL test node",
        format!(
            "{}; {:.3}",
            three(
                &|r| r.window_cpu_seconds / r.window_seconds.max(1e-9),
                3,
                ""
            ),
            node(|n, seconds| n.window_cpu_seconds / seconds)
        ),
        "",
        None,
    );
    t.row(
        s,
        "CQL test node: INSERTs/s; peak writes in hand at once; RSS",
        format!(
            "{:.0}; {:.0}; {:.0} MiB",
            node(|n, seconds| n.window_write_requests / seconds),
            node(|n, _| n.peak_writes_in_flight),
            node(|n, _| n.rss_bytes as f64) / f64::from(1 << 20)
        ),
        "",
        None,
    );
    let errors = median(cassandra, |r| (r.errors + r.unexpected_closes) as f64);
    t.row(
        s,
        "errors + unexpected closes (Cassandra)",
        format!("{errors:.0}"),
        "0",
        Some(errors == 0.0),
    );
    let wrong = median(cassandra, |r| r.check_wrong as f64);
    t.row(
        s,
        "final positions wrong, sampled (Cassandra)",
        format!(
            "{wrong:.0} of {:.0}",
            median(cassandra, |r| r.checked as f64)
        ),
        "0",
        Some(wrong == 0.0),
    );
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0], |v| *v), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0], |v| *v), 2.5);
        assert!(median::<f64>(&[], |v| *v).is_nan());
    }
}
