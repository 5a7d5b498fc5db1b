//! Dependency order (pure): mozilla/build-runner's algorithm, made
//! deterministic.
//!
//! Tasks arrive sorted by file name, so a task's index is its rank. The
//! reference ran Kahn's algorithm over the reversed graph (edges from a task
//! to what it depends on): it starts from the tasks no other task depends
//! on, sorted by name, as a stack popped from the end; a popped task frees
//! the dependencies no remaining task needs any more, pushed in name order;
//! the list is reversed at the end. So each dependency runs just before the
//! first task that needs it, and with no dependencies the order is plain
//! name order, as run-parts. O(n + e log e): 10,000 tasks plan in
//! milliseconds.

/// `deps[i]` lists the tasks that must run before task `i`.
/// Returns the run order, or the tasks of one cycle (in dependency order:
/// each needs the next, the last needs the first).
pub fn order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = deps.len();
    // Each task's dependencies once, in name order (the reference kept them
    // in a set).
    let deps: Vec<Vec<usize>> = deps
        .iter()
        .map(|ds| {
            let mut ds = ds.clone();
            ds.sort_unstable();
            ds.dedup();
            ds
        })
        .collect();
    let mut needed_by = vec![0usize; n];
    for ds in &deps {
        for &d in ds {
            needed_by[d] += 1;
        }
    }
    let mut stack: Vec<usize> = (0..n).filter(|&i| needed_by[i] == 0).collect();
    let mut out = Vec::with_capacity(n);
    while let Some(i) = stack.pop() {
        out.push(i);
        for &d in &deps[i] {
            needed_by[d] -= 1;
            if needed_by[d] == 0 {
                stack.push(d);
            }
        }
    }
    if out.len() == n {
        out.reverse();
        return Ok(out);
    }
    Err(find_cycle(&deps, &needed_by))
}

/// Every task never reached is still needed by another task never
/// reached: on a cycle or behind one. Walk from one such task to a task
/// that needs it, among them, until one repeats.
fn find_cycle(deps: &[Vec<usize>], needed_by: &[usize]) -> Vec<usize> {
    let n = deps.len();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let Some(start) = (0..n).find(|&i| needed_by[i] > 0) else {
        return Vec::new();
    };
    let mut seen_at = vec![usize::MAX; n];
    let mut path = Vec::new();
    let mut cur = start;
    loop {
        if seen_at[cur] != usize::MAX {
            // path runs from a dependency to the tasks that need it.
            let mut cycle = path[seen_at[cur]..].to_vec();
            cycle.reverse();
            return cycle;
        }
        seen_at[cur] = path.len();
        path.push(cur);
        match dependents[cur].iter().copied().find(|&j| needed_by[j] > 0) {
            Some(next) => cur = next,
            None => return path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names sorted, dependencies by name: the order as names.
    fn plan(names: &[&str], deps: &[(&str, &[&str])]) -> Result<Vec<String>, Vec<String>> {
        let mut sorted: Vec<&str> = names.to_vec();
        sorted.sort();
        let idx = |n: &str| sorted.iter().position(|s| *s == n).unwrap_or(usize::MAX);
        let mut d = vec![Vec::new(); sorted.len()];
        for (task, on) in deps {
            d[idx(task)] = on.iter().map(|n| idx(n)).collect();
        }
        let names = |v: Vec<usize>| v.into_iter().map(|i| sorted[i].to_string()).collect();
        order(&d).map(names).map_err(names)
    }

    #[test]
    fn no_dependencies_is_name_order() {
        assert_eq!(
            plan(&["z", "0", "y", "9", "a"], &[]),
            Ok(vec!["0".into(), "9".into(), "a".into(), "y".into(), "z".into()])
        );
    }

    #[test]
    fn chain() {
        let got = plan(
            &["final", "bees", "birds", "oranges", "apples"],
            &[("oranges", &["apples"]), ("birds", &["oranges"]), ("bees", &["birds"]), ("final", &["bees"])],
        );
        assert_eq!(got, Ok(["apples", "oranges", "birds", "bees", "final"].map(String::from).to_vec()));
    }

    fn names(v: &[&str]) -> Result<Vec<String>, Vec<String>> {
        Ok(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn the_reference_order() {
        assert_eq!(plan(&["1-x", "2-y", "3-z"], &[("1-x", &["3-z"])]), names(&["3-z", "1-x", "2-y"]));
        assert_eq!(
            plan(&["1-setup", "5-app", "9-net"], &[("1-setup", &["9-net"])]),
            names(&["9-net", "1-setup", "5-app"])
        );
        assert_eq!(
            plan(&["1-a", "2-b", "3-c", "4-d", "5-z"], &[("5-z", &["3-c", "1-a", "2-b", "1-a"])]),
            names(&["4-d", "1-a", "2-b", "3-c", "5-z"])
        );
        let got = plan(&["a", "b", "c", "d"], &[("a", &["c", "d"]), ("b", &["d"])]);
        assert_eq!(got, names(&["c", "d", "a", "b"]));
    }

    #[test]
    fn cycle_names_its_tasks() {
        let got = plan(&["a", "b", "c", "d"], &[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &["a"])]);
        let mut cycle = got.unwrap_err();
        cycle.sort();
        assert_eq!(cycle, ["a", "b", "c"]);
    }

    #[test]
    fn ten_thousand_tasks() {
        let n = 10_000;
        let deps: Vec<Vec<usize>> = (0..n).map(|i| if i + 1 < n { vec![i + 1] } else { vec![] }).collect();
        let got = order(&deps);
        assert_eq!(got.as_ref().ok().and_then(|o| o.first()), Some(&(n - 1)));
        assert_eq!(got.as_ref().ok().and_then(|o| o.last()), Some(&0));
    }
}
