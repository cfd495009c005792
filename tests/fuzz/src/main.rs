//! `quarry-fuzz [TARGET|all] [--runs N] [--seed S] [--crashes DIR]`: runs the stable fuzz harness
//! and prints a table (executions, rate, slowest input, crashes, peak memory). A crash's input is
//! written to DIR (default `target/fuzz-crashes`), and the exit code is 1.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;

use quarry_fuzz::{Harness, Target, peak_rss};

fn main() -> anyhow::Result<std::process::ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let runs: u64 = flag("--runs").map_or(Ok(10_000), |v| v.parse())?;
    let seed: u64 = flag("--seed").map_or(Ok(1), |v| v.parse())?;
    let crashes = PathBuf::from(flag("--crashes").unwrap_or_else(|| "target/fuzz-crashes".into()));
    let targets: Vec<Target> = match args.first().map(String::as_str) {
        None | Some("all") => Target::ALL.to_vec(),
        Some(name) if !name.starts_with("--") => {
            vec![Target::parse(name).ok_or_else(|| anyhow::anyhow!("unknown target {name}"))?]
        }
        Some(_) => Target::ALL.to_vec(),
    };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let harness = Harness::new(&repo)?;
    // A crash's own message is printed by the table; the default hook would print each one too.
    std::panic::set_hook(Box::new(|_| {}));
    println!("| target | executions | accepted | per second | slowest input, ms | crashes |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut crashed = false;
    for target in targets {
        let s = harness.run(target, runs, seed);
        println!(
            "| {} | {} | {:.0} % | {:.0} | {:.1} | {} |",
            target.name(),
            s.execs,
            s.accepted as f64 * 100.0 / s.execs.max(1) as f64,
            s.execs as f64 / s.elapsed.as_secs_f64().max(1e-9),
            s.slowest.as_secs_f64() * 1e3,
            s.crashes.len()
        );
        std::fs::create_dir_all(&crashes)?;
        std::fs::write(crashes.join(format!("{}-slowest", target.name())), &s.slowest_input)?;
        for (i, (input, message)) in s.crashes.iter().enumerate() {
            let path = crashes.join(format!("{}-{i}", target.name()));
            std::fs::write(&path, input)?;
            eprintln!("{}: {message} (input in {})", target.name(), path.display());
            crashed = true;
        }
    }
    if let Some(rss) = peak_rss() {
        println!("\npeak resident memory: {:.0} MB", rss as f64 / 1e6);
    }
    Ok(if crashed { std::process::ExitCode::FAILURE } else { std::process::ExitCode::SUCCESS })
}
