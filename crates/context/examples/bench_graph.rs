//! The graph's cost: render the largest chart aiops draws (10 alerting and 20 other series of 300
//! points each, a threshold, the start) and the e2e test's small one, N times each, and print the
//! time per PNG (p50, p95, max) and its size. Run by scripts/bench/graph.sh; figures in
//! docs/BENCHMARKS.md.

use std::time::Instant;

use aiops_context::graph::{Chart, render};
use aiops_context::series::{Comparison, Series, Threshold};

fn series(n: usize, scale: f64) -> Series {
    let from = 1_700_000_000.0;
    Series {
        labels: [("instance".to_owned(), format!("node-{n}:9100"))].into(),
        points: (0..300)
            .map(|i| {
                let t = from + f64::from(i) * 18.0;
                let wave = (f64::from(i) / 9.0 + n as f64).sin() * 0.05;
                let step = if i > 200 { 0.5 } else { 0.1 };
                (t, (step + wave) * scale)
            })
            .collect(),
    }
}

fn chart(firing: usize, others: usize) -> Chart {
    let from = 1_700_000_000.0;
    Chart {
        title: "NodeCPUSaturated: instance:node_cpu_utilisation:rate5m".into(),
        firing: (0..firing).map(|n| series(n, 1.0)).collect(),
        others: (0..others).map(|n| series(n + 100, 0.4)).collect(),
        threshold: Some(Threshold {
            op: Comparison::Greater,
            value: 0.3,
        }),
        started: from + 3600.0,
        from,
        to: from + 5400.0,
    }
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    println!("| chart | runs | p50 ms | p95 ms | max ms | PNG bytes |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, chart) in [
        ("1 alerting series", chart(1, 0)),
        (
            "10 alerting + 20 other series (the most drawn)",
            chart(10, 20),
        ),
    ] {
        let mut times = Vec::with_capacity(runs);
        let mut size = 0;
        for _ in 0..runs {
            let started = Instant::now();
            let png = render(&chart).expect("renders");
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            size = png.len();
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!(
            "| {name} | {runs} | {:.1} | {:.1} | {:.1} | {size} |",
            at(0.5),
            at(0.95),
            at(1.0)
        );
    }
}
