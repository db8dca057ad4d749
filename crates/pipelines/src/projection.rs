//! What a study would cost on a cluster, from what its runs cost here: the
//! array tasks, each task's time (training scaled by a budget factor, the
//! rest — loading, scoring — kept as measured) and peak memory, and the
//! wall time of the array on N nodes.
use crate::study::{attempt, read_report, run_dir, StudyConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One finished run's measured cost.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Task {
    pub run: String,
    pub model: String,
    /// Seconds of the whole attempt (loading, training, scoring).
    pub seconds: f64,
    /// Of which training (the report's "training time").
    pub training_seconds: f64,
    pub peak_rss_mib: Option<f64>,
    /// libtorch threads it ran with (its `env.json`).
    pub threads: Option<i64>,
}

impl Task {
    /// Its seconds with the training `scale` times longer.
    pub fn scaled(&self, scale: f64) -> f64 {
        self.seconds + (scale - 1.0) * self.training_seconds
    }
}

/// The finished runs of a study with what they cost; runs that have not
/// finished (or whose attempt records no time) are left out.
pub fn tasks(dir: &Path, cfg: &StudyConfig) -> Vec<Task> {
    let mut out = vec![];
    for r in &cfg.runs {
        let Some(a) = attempt(dir, &r.name).filter(|a| a.status == "finished") else {
            continue;
        };
        let d = run_dir(dir, &r.name);
        let training = read_report(&d)
            .as_ref()
            .and_then(|r| r.metrics.iter().find(|m| m.name == "training time"))
            .map(|m| m.value)
            .unwrap_or(a.seconds);
        // The last attempt of a resumed run timed only its remainder: count
        // its whole training beside it (an upper bound).
        let seconds = if a.seconds < training {
            training + a.seconds
        } else {
            a.seconds
        };
        let threads = std::fs::read_to_string(d.join(embedlab_train::run::ENV_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["libtorch_threads"].as_i64());
        out.push(Task {
            run: r.name.clone(),
            model: r.model.clone().unwrap_or_else(|| r.cell.clone()),
            seconds,
            training_seconds: training,
            peak_rss_mib: a.peak_rss_mib,
            threads,
        });
    }
    out
}

/// The time until the last of `times` ends when `slots` of them run at
/// once and each free slot takes the longest one left (the longest-first
/// rule: within 4/3 of the best possible order).
pub fn makespan(times: &[f64], slots: usize) -> f64 {
    let mut t: Vec<f64> = times.to_vec();
    t.sort_by(|a, b| b.total_cmp(a));
    let mut load = vec![0.0f64; slots.max(1)];
    for x in t {
        let i = (0..load.len())
            .min_by(|&a, &b| load[a].total_cmp(&load[b]))
            .expect("at least one slot");
        load[i] += x;
    }
    load.into_iter().fold(0.0, f64::max)
}

/// Per model: tasks, measured seconds (mean, max), seconds at the scale
/// (mean, max), peak MiB (max).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct ModelCost {
    pub model: String,
    pub tasks: usize,
    pub seconds_mean: f64,
    pub seconds_max: f64,
    pub scaled_mean: f64,
    pub scaled_max: f64,
    pub peak_rss_mib: Option<f64>,
}

pub fn by_model(tasks: &[Task], scale: f64) -> Vec<ModelCost> {
    let mut groups: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    let mut order = vec![];
    for t in tasks {
        if !groups.contains_key(t.model.as_str()) {
            order.push(t.model.as_str());
        }
        groups.entry(&t.model).or_default().push(t);
    }
    order
        .into_iter()
        .map(|m| {
            let g = &groups[m];
            let n = g.len() as f64;
            let s: Vec<f64> = g.iter().map(|t| t.seconds).collect();
            let sc: Vec<f64> = g.iter().map(|t| t.scaled(scale)).collect();
            ModelCost {
                model: m.to_string(),
                tasks: g.len(),
                seconds_mean: s.iter().sum::<f64>() / n,
                seconds_max: s.iter().copied().fold(0.0, f64::max),
                scaled_mean: sc.iter().sum::<f64>() / n,
                scaled_max: sc.iter().copied().fold(0.0, f64::max),
                peak_rss_mib: g.iter().filter_map(|t| t.peak_rss_mib).reduce(f64::max),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every assignment of tasks to slots, the best makespan.
    fn best(times: &[f64], slots: usize) -> f64 {
        let n = times.len();
        let mut best = f64::INFINITY;
        for code in 0..slots.pow(n as u32) {
            let mut load = vec![0.0; slots];
            let mut c = code;
            for t in times {
                load[c % slots] += t;
                c /= slots;
            }
            best = best.min(load.into_iter().fold(0.0, f64::max));
        }
        best
    }

    #[test]
    fn the_makespan_is_within_four_thirds_of_the_best_and_exact_in_easy_cases() {
        assert_eq!(makespan(&[5.0, 5.0, 5.0, 5.0], 2), 10.0);
        assert_eq!(makespan(&[9.0, 1.0, 1.0, 1.0], 2), 9.0);
        assert_eq!(makespan(&[3.0; 7], 100), 3.0);
        assert_eq!(makespan(&[2.0, 3.0], 1), 5.0);
        // The longest-first rule's classic worst case: 3 slots, 2·3+1 tasks.
        let worst = [5.0, 5.0, 4.0, 4.0, 3.0, 3.0, 3.0];
        assert_eq!(best(&worst, 3), 9.0);
        assert_eq!(makespan(&worst, 3), 11.0);
        let mut seed = 7u64;
        for _ in 0..50 {
            let times: Vec<f64> = (0..7)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    1.0 + (seed >> 40) as f64 / (1u64 << 24) as f64 * 9.0
                })
                .collect();
            let (m, b) = (makespan(&times, 3), best(&times, 3));
            assert!(m >= b - 1e-9 && m <= b * 4.0 / 3.0 + 1e-9, "{m} vs {b}");
        }
    }

    #[test]
    fn scaling_multiplies_the_training_and_keeps_the_rest() {
        let t = Task {
            run: "a".into(),
            model: "glow".into(),
            seconds: 100.0,
            training_seconds: 80.0,
            peak_rss_mib: Some(500.0),
            threads: Some(1),
        };
        assert_eq!(t.scaled(1.0), 100.0);
        assert_eq!(t.scaled(10.0), 820.0);
        let mut u = t.clone();
        u.seconds = 50.0;
        u.training_seconds = 40.0;
        u.peak_rss_mib = Some(700.0);
        let c = by_model(&[t, u], 10.0);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].tasks, c[0].seconds_mean, c[0].seconds_max),
            (2, 75.0, 100.0)
        );
        assert_eq!((c[0].scaled_mean, c[0].scaled_max), (615.0, 820.0));
        assert_eq!(c[0].peak_rss_mib, Some(700.0));
    }
}
