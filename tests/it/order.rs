//! Order: name order without dependencies, `depends_on`, and its errors.
//! These are mozilla/build-runner's own graph cases, as black-box tests.

use crate::harness::*;

fn with_tasks(names: &[&str]) -> Test {
    names.iter().fold(Test::new(), |t, n| t.traced(n, 0))
}

#[test]
fn no_dependencies_is_name_order() {
    let ran = with_tasks(&["z", "y", "a", "9", "0"]).status(0);
    assert_eq!(ran.trace(), ["0", "9", "a", "y", "z"]);
}

#[test]
fn chain_of_dependencies() {
    let ran = with_tasks(&["apples", "bees", "birds", "final", "oranges"])
        .config("[oranges]\ndepends_on = apples\n[birds]\ndepends_on = oranges\n[bees]\ndepends_on = birds\n[final]\ndepends_on = bees\n")
        .status(0);
    assert_eq!(ran.trace(), ["apples", "oranges", "birds", "bees", "final"]);
}

#[test]
fn several_dependencies() {
    let ran = with_tasks(&["a", "b", "c", "d"]).config("[a]\ndepends_on = c, d\n[b]\ndepends_on = d\n").status(0);
    assert_eq!(ran.trace(), ["c", "d", "a", "b"]);
}

#[test]
fn dependency_by_name_or_file_name() {
    let ran = with_tasks(&["10-a.sh", "20-b.sh"]).config("[a]\ndepends_on = 20-b.sh\n").status(0);
    assert_eq!(ran.trace(), ["20-b.sh", "10-a.sh"]);
    let ran = with_tasks(&["10-a.sh", "20-b.sh"]).config("[10-a.sh]\ndepends_on = b\n").status(0);
    assert_eq!(ran.trace(), ["20-b.sh", "10-a.sh"]);
}

#[test]
fn missing_dependency_is_78() {
    let ran = with_tasks(&["a", "b"]).config("[a]\ndepends_on = nothere\n").status(78);
    ran.stderr_has("a depends on 'nothere', which is not a task");
    assert!(ran.trace().is_empty());
}

#[test]
fn cycle_is_78_naming_tasks() {
    let ran = with_tasks(&["a", "b", "c", "d"])
        .config("[a]\ndepends_on = b\n[b]\ndepends_on = c\n[c]\ndepends_on = a\n")
        .status(78);
    ran.stderr_has("dependency cycle");
    for t in ["a", "b", "c"] {
        assert!(ran.stderr().contains(&format!("{t} ->")), "{}", ran.describe());
    }
    assert!(ran.trace().is_empty());
}

#[test]
fn dependency_on_shared_name_is_78() {
    with_tasks(&["10-setup", "20-setup", "app"])
        .config("[app]\ndepends_on = setup\n")
        .status(78)
        .stderr_has("ambiguous");
}

#[test]
fn self_dependency_is_ignored_with_warning() {
    let ran = with_tasks(&["a"]).config("[a]\ndepends_on = a\n").status(0);
    ran.stderr_has("depends on itself");
    assert_eq!(ran.trace(), ["a"]);
}
