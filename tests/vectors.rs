//! Runs the test vectors under `tests/vectors/` (cases from the AWS documentation, each with the
//! decision the page states) through the library and through `iamd simulate`.

use std::path::{Path, PathBuf};
use std::process::Command;

use iamd::simulate::run_case;
use serde_json::Value;

fn vector_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/vectors exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

fn cases(file: &Path) -> Vec<(String, Value)> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| (line.to_string(), serde_json::from_str(line).expect("vector lines are JSON")))
        .collect()
}

#[test]
fn vectors_decide_as_the_aws_documentation_states() {
    let mut failures = Vec::new();
    let mut total = 0;
    for file in vector_files() {
        for (line, case) in cases(&file) {
            total += 1;
            let id = case["id"].as_str().unwrap_or("?").to_string();
            let expected = case["expect"].as_str().expect("every vector has `expect`").to_string();
            let outcome = run_case(&line, false);
            let got = match (outcome.decision, outcome.error) {
                (Some(decision), _) => format!("{decision:?}"),
                (None, error) => format!("error: {}", error.unwrap_or_default()),
            };
            if got != expected {
                let description = case["description"].as_str().unwrap_or("");
                failures.push(format!(
                    "{}: {id}: expected {expected}, got {got} ({description})",
                    file.display()
                ));
            }
        }
    }
    assert!(total >= 150, "expected at least 150 vectors, found {total}");
    assert!(failures.is_empty(), "{} of {total} vectors failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn simulate_command_agrees_with_the_library() {
    for file in vector_files() {
        let output = Command::new(env!("CARGO_BIN_EXE_iamd"))
            .args(["simulate", "--cases"])
            .arg(&file)
            .output()
            .expect("iamd runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let lines: Vec<Value> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let cases = cases(&file);
        assert_eq!(lines.len(), cases.len(), "one output line per case in {}", file.display());
        for ((line, case), out) in cases.iter().zip(&lines) {
            assert_eq!(out["id"], case["id"], "output keeps the order of the cases");
            let library = serde_json::to_value(run_case(line, false)).unwrap();
            assert_eq!(out["decision"], library["decision"]);
            assert!(out.get("error").is_some(), "`error` is always present");
        }
    }
}
