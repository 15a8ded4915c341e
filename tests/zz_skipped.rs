//! Runs last in `cargo test` (integration tests run in name order) and says
//! which tests skipped and why. A test that skips for want of an outside tool
//! passes, and what it printed is captured; this is where a person sees it.
//! The records are written by `common::skips`.

mod common;

fn main() {
    // A test runner listing the tests (cargo nextest) finds none here.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let folder = common::skips::folder();
    let mut skipped: Vec<(String, String)> = std::fs::read_dir(&folder)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let why = std::fs::read_to_string(e.path()).unwrap_or_default();
                    (e.file_name().to_string_lossy().into_owned(), why)
                })
                .collect()
        })
        .unwrap_or_default();
    skipped.sort();
    if skipped.is_empty() {
        println!("\nno test skipped: every outside tool the tests use was here");
        return;
    }
    println!(
        "\n{} test(s) skipped for want of an outside tool (each passed without checking what it is for):",
        skipped.len()
    );
    for (test, why) in &skipped {
        println!("  {test}: {why}");
    }
    println!("`bash .ci/run` installs every tool and runs them all.");
}
