//! The error taxonomy shared by every crate: each failure is classified as retryable (try again
//! later, it may pass), permanent (the system cannot do this; retrying will not help) or bad input
//! (the document or request itself is at fault: tell the user why, record it, move on).

use std::time::Duration;

/// A boxed source error, so ports keep the adapter's full chain without naming its types.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a failure should be handled by whoever sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Transient: throttling, timeouts, a service hiccup. Retry with back-off.
    Retryable,
    /// The system cannot do this (misconfiguration, a bug, a missing model). Do not retry blindly.
    Permanent,
    /// The input is at fault. Record the reason for the user; never retry.
    BadInput,
}

impl ErrorClass {
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Retryable)
    }
}

/// Implemented by every library error enum so that callers (the SQS batch helper, the batch
/// runner, the HTTP layer) can decide what to do without matching on adapter-specific types.
pub trait Classify {
    fn class(&self) -> ErrorClass;
    /// A stable, machine-readable code (`encrypted_pdf`, `zip_bomb`, ...) recorded with failures
    /// and returned by the API. Codes never change meaning once shipped.
    fn code(&self) -> &'static str;
}

/// The error every port returns. Adapters map their SDK or database errors into one of these
/// variants, keeping the original as the source.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("{operation} was throttled")]
    Throttled {
        operation: &'static str,
        retry_after: Option<Duration>,
        #[source]
        source: Option<BoxError>,
    },
    #[error("{operation} failed transiently")]
    Transient {
        operation: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("{operation} failed")]
    Permanent {
        operation: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("{what} was not found")]
    NotFound { what: String },
    /// A conditional write lost a race; the caller decides whether that is success (someone
    /// else did the work) or a retry.
    #[error("{operation} conflicted with a concurrent writer")]
    Conflict { operation: &'static str },
    #[error("{operation} rejected its input: {reason}")]
    InvalidInput { operation: &'static str, reason: String },
}

impl Classify for PortError {
    fn class(&self) -> ErrorClass {
        match self {
            PortError::Throttled { .. } | PortError::Transient { .. } | PortError::Conflict { .. } => {
                ErrorClass::Retryable
            }
            PortError::Permanent { .. } => ErrorClass::Permanent,
            PortError::NotFound { .. } | PortError::InvalidInput { .. } => ErrorClass::BadInput,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            PortError::Throttled { .. } => "throttled",
            PortError::Transient { .. } => "transient",
            PortError::Permanent { .. } => "internal",
            PortError::NotFound { .. } => "not_found",
            PortError::Conflict { .. } => "conflict",
            PortError::InvalidInput { .. } => "invalid_input",
        }
    }
}

/// An error and all its sources on one line (`outer: inner: root`): what logs and recorded
/// failures show, so that no cause is lost.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_errors_classify_and_keep_their_source() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "socket timed out");
        let e = PortError::Transient { operation: "s3.get_object", source: Box::new(io) };
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert_eq!(e.code(), "transient");
        let src = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(src.as_deref(), Some("socket timed out"));

        let nf = PortError::NotFound { what: "document docs/a.pdf".into() };
        assert_eq!(nf.class(), ErrorClass::BadInput);
        assert!(!nf.class().is_retryable());
        assert_eq!(nf.to_string(), "document docs/a.pdf was not found");
    }

    /// The class decides what a runner does (retry, reject the document, or mark it failed and
    /// keep its last version), the code what a user and the metrics see.
    #[test]
    fn every_port_error_has_its_class_and_code() {
        let io = || Box::new(std::io::Error::other("disk on fire")) as BoxError;
        let cases = [
            (
                PortError::Throttled { operation: "x", retry_after: None, source: None },
                ErrorClass::Retryable,
                "throttled",
            ),
            (PortError::Transient { operation: "x", source: io() }, ErrorClass::Retryable, "transient"),
            (PortError::Conflict { operation: "x" }, ErrorClass::Retryable, "conflict"),
            (PortError::Permanent { operation: "x", source: io() }, ErrorClass::Permanent, "internal"),
            (PortError::NotFound { what: "x".into() }, ErrorClass::BadInput, "not_found"),
            (PortError::InvalidInput { operation: "x", reason: "y".into() }, ErrorClass::BadInput, "invalid_input"),
        ];
        for (e, class, code) in cases {
            assert_eq!((e.class(), e.code()), (class, code), "{e}");
        }
    }

    #[test]
    fn a_recorded_failure_keeps_the_whole_chain_and_whether_to_retry() {
        let e =
            PortError::Transient { operation: "sqlite.write", source: Box::new(std::io::Error::other("disk is full")) };
        assert_eq!(chain(&e), "sqlite.write failed transiently: disk is full");
        let f = crate::Failure::from_error(&e);
        assert_eq!(
            (f.code.as_str(), f.message.as_str(), f.retryable),
            ("transient", "sqlite.write failed transiently: disk is full", true)
        );
        let f = crate::Failure::from_error(&PortError::NotFound { what: "object a.txt".into() });
        assert_eq!((f.code.as_str(), f.retryable), ("not_found", false));
    }
}
