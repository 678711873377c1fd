// SPDX-License-Identifier: GPL-2.0

//! A small KTAP (version 1) harness: runs cases in order and reports each as `ok` / `not ok`,
//! with the reason of a failure as `#` diagnostic lines, as `kunit.py parse` expects.

use std::io::Write;

/// One test case.
pub struct Case {
    /// The KTAP name of the case (no spaces).
    pub name: &'static str,
    /// The case itself: an error is a failure, its chain of causes the diagnostic.
    pub run: fn() -> anyhow::Result<()>,
}

/// Runs `cases` (only those named in `filter`, unless it is empty) and prints KTAP to stdout.
/// `after` runs after each case (e.g. a leak check); its failure fails the case.
///
/// Returns the number of failed cases.
pub fn run(cases: &[Case], filter: &[String], after: fn() -> anyhow::Result<()>) -> usize {
    let selected: Vec<&Case> = cases
        .iter()
        .filter(|case| filter.is_empty() || filter.iter().any(|f| f == case.name))
        .collect();
    // A name that matches no case is a mistake of the caller, reported as a failed case of its
    // own: a typo must not turn a run into one that passes by testing less.
    let unknown: Vec<&String> = filter
        .iter()
        .filter(|f| !cases.iter().any(|case| case.name == f.as_str()))
        .collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "KTAP version 1\n1..{}", selected.len() + unknown.len());
    let mut failed = 0;
    for (i, case) in selected.iter().enumerate() {
        let _ = out.flush();
        let start = std::time::Instant::now();
        let res = (case.run)().and_then(|()| after());
        // A diagnostic line, for finding where a run's time goes.
        let _ = writeln!(
            out,
            "# {}: {:.1} s",
            case.name,
            start.elapsed().as_secs_f64()
        );
        match res {
            Ok(()) => {
                let _ = writeln!(out, "ok {} {}", i + 1, case.name);
            }
            Err(err) => {
                failed += 1;
                for line in format!("{err:#}").lines() {
                    let _ = writeln!(out, "# {}: {line}", case.name);
                }
                let _ = writeln!(out, "not ok {} {}", i + 1, case.name);
            }
        }
    }
    for (i, name) in unknown.iter().enumerate() {
        failed += 1;
        let _ = writeln!(out, "# unknown_case: no test case is named {name:?}");
        let _ = writeln!(out, "not ok {} unknown_case", selected.len() + i + 1);
    }
    let _ = out.flush();
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass() -> anyhow::Result<()> {
        Ok(())
    }

    const CASES: &[Case] = &[Case {
        name: "a",
        run: pass,
    }];

    #[test]
    fn an_unknown_case_name_fails_the_run() {
        assert_eq!(run(CASES, &["a".into()], pass), 0);
        assert_eq!(run(CASES, &["a".into(), "b".into()], pass), 1);
        assert_eq!(run(CASES, &["b".into()], pass), 1);
    }
}
