//! The benchmark, run small: every job it measures works and is reported.
//! (Figures come from `cargo run --release --bin lodestone-bench`; this test
//! checks behaviour, never timings.)

use std::process::Command;

#[test]
fn the_benchmark_measures_every_job() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let output = Command::new(env!("CARGO_BIN_EXE_lodestone-bench"))
        .args(["--scale", "medium", "--seconds", "1", "--connections", "4"])
        .args(["--subscribers", "20", "--json"])
        .arg(&json)
        .output()
        .expect("the benchmark runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("| Health/Check (ceiling) |"), "{stdout}");

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(results["scale"], "medium");
    assert!(results["server_peak_rss_mib"].as_f64().unwrap() > 0.0);
    assert!(results["data_dir_mib"].as_f64().unwrap() > 0.0);
    let jobs = results["jobs"].as_array().unwrap();
    let job = |prefix: &str| {
        jobs.iter()
            .find(|j| j["job"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} row in {results}"))
    };
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
        "ListAtRiskLines first page, warm",
        "UpdateLicenseStatus",
    ] {
        let rate = job(prefix)["rate_per_s"].as_f64().unwrap();
        assert!(rate > 0.0, "{prefix}: {rate}");
    }
    for prefix in [
        "GetExposure",
        "ListAtRiskLines first page, cold",
        "licence update to 20",
    ] {
        assert!(job(prefix)["p99_ms"].as_f64().unwrap() > 0.0, "{prefix}");
    }
    for j in jobs
        .iter()
        .filter(|j| j["job"].as_str().unwrap().starts_with("GetExposure"))
    {
        assert!(j["note"].as_str().unwrap().ends_with(" 0 failed"), "{j}");
    }
}
