//! The benchmark, run small: every job it measures works and is reported.
//! (Figures come from `cargo run --release --bin lodestone-bench`; this test
//! checks behaviour, never timings.)

mod common;

use std::process::Command;

/// Runs the benchmark small with `extra` arguments; its JSON results.
fn bench(extra: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let output = Command::new(env!("CARGO_BIN_EXE_lodestone-bench"))
        .args(["--scale", "medium", "--seconds", "1", "--connections", "4"])
        .args(["--subscribers", "20", "--samples", "10", "--json"])
        .arg(&json)
        .args(extra)
        .output()
        .expect("the benchmark runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (stdout, results)
}

/// The row of `results` whose job starts with `prefix`.
fn job<'a>(results: &'a serde_json::Value, prefix: &str) -> &'a serde_json::Value {
    results["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"].as_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} row in {results}"))
}

#[test]
fn the_benchmark_measures_every_job() {
    let (stdout, results) = bench(&[]);
    assert!(stdout.contains("| Health/Check (ceiling) |"), "{stdout}");
    assert_eq!(results["scale"], "medium");
    assert_eq!(results["store"], "sled");
    assert!(results["server_peak_rss_mib"].as_f64().unwrap() > 0.0);
    assert!(results["store_mib"].as_f64().unwrap() > 0.0);
    let jobs = results["jobs"].as_array().unwrap();
    let job = |prefix: &str| job(&results, prefix);
    for prefix in [
        "ImportRecords",
        "Health/Check",
        "GetLicense",
        "ListLicenses",
        "GetExposure warm, random supplier",
        "GetExposure warm, random component",
        "GetExposure warm, random line",
        "GetExposure warm, random plant",
        "GetExposure warm, random material",
        "GetExposure warm, random plant, basic view, the client decoding the totals only",
        "GetExposure warm, random material, basic view, the client decoding the totals only",
        "ListAtRiskLines first page, warm",
        "ListSupplierImpacts first and later pages, warm",
        "ListLicenseStakes first and later pages, warm",
        "ListLineForecasts first and later pages, warm",
        "UpdateLicenseStatus",
    ] {
        let rate = job(prefix)["rate_per_s"].as_f64().unwrap();
        assert!(rate > 0.0, "{prefix}: {rate}");
    }
    for prefix in [
        "GetExposure",
        "ListAtRiskLines first page, cold",
        "ListSupplierImpacts first page, cold",
        "ListLicenseStakes first page, cold",
        "ListLineForecasts first page, cold (10 samples)",
        "licence update to 20",
    ] {
        assert!(job(prefix)["p99_ms"].as_f64().unwrap() > 0.0, "{prefix}");
    }
    for questions in ["1 question(s)", "50 question(s)"] {
        let row = job(&format!(
            "licence update → change at 20 watchers of {questions}"
        ));
        assert!(row["note"].as_str().unwrap().contains("decisions"), "{row}");
    }
    for j in jobs
        .iter()
        .filter(|j| j["job"].as_str().unwrap().starts_with("GetExposure"))
    {
        assert!(j["note"].as_str().unwrap().ends_with(" 0 failed"), "{j}");
    }
}

/// `--only` runs the jobs it names, besides the import, the ceiling and the
/// first risk query that the others stand on.
#[test]
fn the_benchmark_runs_only_the_jobs_asked() {
    let (_, results) = bench(&["--only", "getexposure"]);
    let jobs: Vec<&str> = results["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(
        jobs[..3],
        [
            "ImportRecords",
            "Health/Check (ceiling)",
            "ListAtRiskLines first ever (structure + evaluation)"
        ]
    );
    assert_eq!(jobs.len(), 3 + 11, "{jobs:?}");
    assert!(
        jobs[3..].iter().all(|j| j.starts_with("GetExposure")),
        "{jobs:?}"
    );
}

/// On PostgreSQL with two replicas, the benchmark starts its own cluster
/// and adds the replication lag, to the other replica and to a subscriber
/// of it.
#[test]
fn the_benchmark_measures_replicas_on_postgres() {
    if common::outside_tool(
        "initdb",
        &["--version"],
        "PostgreSQL (initdb, pg_ctl, postgres)",
    )
    .is_none()
    {
        return;
    }
    let (stdout, results) = bench(&["--store", "postgres", "--replicas", "2"]);
    assert!(stdout.contains("Postgres store, 2 replica(s)"), "{stdout}");
    assert_eq!(results["store"], "postgres");
    assert_eq!(results["replicas"], 2);
    assert!(
        results["store_mib"].as_f64().unwrap() > 0.0,
        "the database's size"
    );
    for prefix in [
        "replication lag: acknowledged by A, served by B",
        "replication lag: acknowledged by A, received by a subscriber of B",
    ] {
        assert!(
            job(&results, prefix)["p99_ms"].as_f64().unwrap() > 0.0,
            "{prefix}"
        );
    }
    assert!(
        job(&results, "UpdateLicenseStatus")["rate_per_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}
