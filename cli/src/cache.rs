//! `quarry cache stats|clear`: what the embedding cache of an index holds, per model, and clearing
//! it, all of it or by model or by last use. The cache's own rules (key, encoding, TTL, cap) are
//! `quarry_core::cache`'s; this only reports and asks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use quarry_core::Config;
use quarry_core::cache::{CacheAdmin, CacheFilter, CacheStats};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    /// The folder (or .jsonl file) indexed with `quarry ingest`.
    #[arg(long, default_value = ".", global = true)]
    dir: PathBuf,
    /// Where its index is kept, if `quarry ingest --state` put it elsewhere.
    #[arg(long, global = true)]
    state: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Entries and size per model, and the cache's limits.
    Stats,
    /// Remove cached vectors: all of them, or those of one model, or those unused for a while.
    /// Documents already indexed keep their vectors; only re-embedding costs again.
    Clear {
        /// Only entries not used for this long: 30d, 12h, 45m (a bare number is days).
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Option<Duration>,
        /// Only this model's entries (as `quarry cache stats` names it).
        #[arg(long, value_name = "MODEL")]
        model: Option<String>,
    },
}

/// `30d`, `12h`, `45m`, `90s`, or a number of days.
fn parse_age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: expected an age such as 30d, 12h or 45m"))?;
    let secs = match unit.trim() {
        "" | "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        other => return Err(format!("{other:?}: the unit is d, h, m or s")),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let (mut v, mut unit) = (bytes as f64, 0);
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

fn when(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| "?".to_owned(), |t| t.strftime("%Y-%m-%d %H:%M").to_string())
}

fn print_stats(config: &Config, stats: &[CacheStats]) {
    let policy = &config.cache;
    for s in stats {
        println!(
            "{}  {}-d  {} entries  {}  used {} .. {}",
            s.model,
            s.dimension,
            s.entries,
            size(s.bytes),
            when(s.oldest_ms),
            when(s.newest_ms)
        );
    }
    let (entries, bytes) = stats.iter().fold((0, 0), |(e, b), s| (e + s.entries, b + s.bytes));
    println!(
        "total: {entries} entries, {} of {}; new vectors stored as {}, kept {}",
        size(bytes),
        policy.max_bytes().map_or_else(|| "no cap".to_owned(), |b| format!("a {} cap", size(b))),
        format!("{:?}", policy.encoding).to_lowercase(),
        if policy.ttl_days == 0 {
            "until cleared".to_owned()
        } else {
            format!("{} days after last use", policy.ttl_days)
        },
    );
}

pub async fn run(config_file: Option<&Path>, args: &Args) -> anyhow::Result<()> {
    let config = Config::from_env(config_file).map_err(crate::SetupError::Config)?;
    let target = crate::engine::Target::resolve(&args.dir, args.state.as_deref())?;
    match &args.action {
        Action::Stats => {
            let store = target.open_existing()?.with_cache_policy(config.cache.clone());
            print_stats(&config, &store.cache_stats().await?);
        }
        Action::Clear { older_than, model } => {
            // Clearing writes: under the index's lock, as ingest and serve take it.
            let Some((_lock, store)) = target.open_for_writing()? else {
                anyhow::bail!("`quarry ingest` or `quarry serve` is using {}: stop it first", args.dir.display())
            };
            let now = jiff::Timestamp::now().as_millisecond();
            let filter = CacheFilter {
                model: model.clone(),
                unused_since_ms: older_than.map(|d| now - i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            };
            let removed = store.clear_cache(&filter).await?;
            println!("removed {removed} cached vectors");
            print_stats(&config, &store.cache_stats().await?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_write_them() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("7"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_age("45m"), Ok(Duration::from_secs(45 * 60)));
        assert!(parse_age("soon").is_err());
        assert!(parse_age("3w").is_err());
    }
}
