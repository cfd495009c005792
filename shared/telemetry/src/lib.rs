//! Where Quarry's metrics go. Code everywhere records through the `metrics` facade with the names
//! of [`quarry_core::metric`]; one recorder per process is installed here, at start-up:
//!
//! - `quarry serve` ([`local`], feature `local`): Prometheus text for `/metrics` and a windowed
//!   snapshot ([`window::Window`]) for `/metrics.json` and the local alert rules;
//! - the Lambda functions ([`emf`], feature `emf`): CloudWatch Embedded Metric Format on stdout,
//!   flushed once per invocation.
//!
//! Without an installed recorder the facade's calls cost a load and a branch: library code and
//! tests record freely.

#[cfg(feature = "emf")]
pub mod emf;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "local")]
pub mod window;

use quarry_core::metric::{CATALOGUE, Kind, Unit};

/// The facade's unit for a catalogue unit.
pub fn unit(u: Unit) -> metrics::Unit {
    match u {
        Unit::Count => metrics::Unit::Count,
        Unit::Milliseconds => metrics::Unit::Milliseconds,
        Unit::Bytes => metrics::Unit::Bytes,
        Unit::Nanodollars => metrics::Unit::Count,
    }
}

/// Tells the installed recorder every metric's unit and help text (Prometheus `# HELP`, EMF
/// `Unit`). Call once, after installing it.
pub fn describe() {
    for d in CATALOGUE {
        let (name, u, help) = (d.name, unit(d.unit), d.help);
        match d.kind {
            Kind::Counter => metrics::describe_counter!(name, u, help),
            Kind::Gauge => metrics::describe_gauge!(name, u, help),
            Kind::Histogram => metrics::describe_histogram!(name, u, help),
        }
    }
}
