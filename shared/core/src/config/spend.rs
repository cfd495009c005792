//! What embedding may spend: dollars as people write them, and the budgets (docs/COSTS.md).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of US dollars, held in billionths so that sums are exact and comparable. Written
/// `5`, `0.02`, `"$5"` or `"5.00"` in the file and the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Usd(pub u64);

impl Usd {
    pub fn nanodollars(self) -> u64 {
        self.0
    }

    pub fn parse(value: &str) -> Option<Usd> {
        let v = value.trim().trim_start_matches('$').replace('_', "");
        let n: f64 = v.parse().ok()?;
        (n.is_finite() && (0.0..1e9).contains(&n)).then(|| Usd((n * 1e9).round() as u64))
    }

    pub fn dollars(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

impl std::fmt::Display for Usd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${}", self.dollars())
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.dollars())
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(t) => t,
        };
        Usd::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("expected dollars such as 5 or \"$0.50\", got {text:?}")))
    }
}

/// Hard limits on embedding spend, enforced before a request is sent (reserved, then settled).
/// Unset, nothing is limited, but spend is still counted per batch and per day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Most one UTC day's embedding may cost, over every batch, worker and search.
    pub daily_usd: Option<Usd>,
    /// Most one batch's documents may cost.
    pub batch_usd: Option<Usd>,
    /// Percent of a budget at which a warning is raised (the critical alert is at 100).
    pub warn_percent: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { daily_usd: None, batch_usd: None, warn_percent: 80 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_read_as_people_write_them() {
        assert_eq!(Usd::parse("5"), Some(Usd(5_000_000_000)));
        assert_eq!(Usd::parse("$0.02"), Some(Usd(20_000_000)));
        assert_eq!(Usd::parse(" 1_000.5 "), Some(Usd(1_000_500_000_000)));
        assert_eq!(Usd::parse("-1"), None);
        assert_eq!(Usd::parse("five"), None);
        #[derive(Deserialize)]
        struct T {
            a: Usd,
            b: Usd,
        }
        let t: T = toml::from_str("a = 0.5\nb = \"$2\"").expect("toml");
        assert_eq!((t.a, t.b), (Usd(500_000_000), Usd(2_000_000_000)));
        assert_eq!(Usd(20_000_000).to_string(), "$0.02");
    }
}
