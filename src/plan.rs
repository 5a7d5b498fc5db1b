//! Dependency order (pure).
//!
//! Tasks arrive sorted by file name, so a task's index is its rank. The
//! order is the lexicographically smallest topological order: Kahn's
//! algorithm that always takes the smallest ready index (a min-heap), which
//! is plain name order when nothing depends on anything, as run-parts.
//! O((n + e) log n): 10,000 tasks plan in milliseconds.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// `deps[i]` lists the tasks that must run before task `i`.
/// Returns the run order, or the tasks of one cycle (in cycle order).
pub fn order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = deps.len();
    let mut waiting_on = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            waiting_on[i] += 1;
            dependents[d].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n).filter(|&i| waiting_on[i] == 0).map(Reverse).collect();
    let mut out = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        out.push(i);
        for &j in &dependents[i] {
            waiting_on[j] -= 1;
            if waiting_on[j] == 0 {
                ready.push(Reverse(j));
            }
        }
    }
    if out.len() == n {
        return Ok(out);
    }
    Err(find_cycle(deps, &waiting_on))
}

/// Every task still waiting is on a cycle or behind one; walk dependencies
/// among waiting tasks until one repeats.
fn find_cycle(deps: &[Vec<usize>], waiting_on: &[usize]) -> Vec<usize> {
    let Some(start) = (0..deps.len()).find(|&i| waiting_on[i] > 0) else {
        return Vec::new();
    };
    let mut seen_at = vec![usize::MAX; deps.len()];
    let mut path = Vec::new();
    let mut cur = start;
    loop {
        if seen_at[cur] != usize::MAX {
            let mut cycle = path[seen_at[cur]..].to_vec();
            cycle.reverse();
            return cycle;
        }
        seen_at[cur] = path.len();
        path.push(cur);
        match deps[cur].iter().copied().find(|&d| waiting_on[d] > 0) {
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

    #[test]
    fn several_dependencies_smallest_first() {
        let got = plan(&["a", "b", "c", "d"], &[("a", &["c", "d"]), ("b", &["d"])]);
        assert_eq!(got, Ok(["c", "d", "a", "b"].map(String::from).to_vec()));
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
