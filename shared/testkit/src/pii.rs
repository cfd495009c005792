//! Personal data and secrets for log-hygiene tests: documents and queries carry them, and no log
//! line may ([`assert_clean`]).

pub const EMAIL: &str = "jane.doe@example.com";
pub const CARD: &str = "4111 1111 1111 1111";
pub const PHONE: &str = "+1 415 555 0134";
pub const SSN: &str = "078-05-1120";
pub const AWS_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub const JWT: &str =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
pub const TOKEN: &str = "ghp_Z8rL4cV2nQ9wE1tY6uI3oP5aS7dF0gH2jK4l";
/// The deployment's own secrets, as the tests set them.
pub const API_KEY: &str = "a log-hygiene API key that must never be logged";
pub const CURSOR_SECRET: &str = "a log-hygiene cursor secret that must never be logged";

/// A paragraph holding one of each.
pub fn text() -> String {
    format!(
        "Contact {EMAIL} or {PHONE}. Card {CARD}, SSN {SSN}. Keys: {AWS_ID} {AWS_SECRET}. \
         Session {JWT}. Deploy token {TOKEN}."
    )
}

/// What no line may hold, each with its name; `extra` adds secrets of the test's own.
fn needles(extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut all = vec![
        ("email", EMAIL.to_owned()),
        ("card", CARD.to_owned()),
        ("card digits", CARD.replace(' ', "")),
        ("phone", PHONE.to_owned()),
        ("ssn", SSN.to_owned()),
        ("aws access key", AWS_ID.to_owned()),
        ("aws secret key", AWS_SECRET.to_owned()),
        ("jwt", JWT.to_owned()),
        ("token", TOKEN.to_owned()),
        ("api key", API_KEY.to_owned()),
        ("cursor secret", CURSOR_SECRET.to_owned()),
    ];
    all.extend(extra.iter().map(|(n, v)| (*n, (*v).to_owned())));
    all
}

/// Panics, naming the kind and showing the line, if `logs` hold any needle. `proof` must appear
/// (a line only debug logging writes), so that an empty capture cannot pass.
#[allow(clippy::panic)]
pub fn assert_clean(what: &str, logs: &str, proof: &str, extra: &[(&'static str, &str)]) {
    assert!(logs.contains(proof), "{what}: the capture lacks {proof:?}, so this check would prove nothing:\n{logs}");
    for (name, value) in needles(extra) {
        if let Some(at) = logs.find(&value) {
            let start = logs[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = logs[at..].find('\n').map_or(logs.len(), |i| at + i);
            panic!("{what}: a {name} was logged:\n{}", &logs[start..end]);
        }
    }
}
