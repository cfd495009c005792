//! Redactor properties: a seeded email, card, SSN or key never survives, whatever surrounds it, and
//! redacting twice changes nothing.

use proptest::prelude::*;
use quarry_core::PiiKind;
use quarry_text::Redactor;

fn luhn_complete(prefix: &[u32], len: usize, body: &[u32]) -> String {
    let mut d: Vec<u32> = prefix.to_vec();
    d.extend(body.iter().take(len - 1 - prefix.len()));
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| if i % 2 == 0 { if x * 2 > 9 { x * 2 - 9 } else { x * 2 } } else { x })
        .sum();
    d.push((10 - sum % 10) % 10);
    d.iter().map(|x| char::from_digit(*x, 10).unwrap_or('0')).collect()
}

fn card() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            (vec![4u32], 16usize),
            (vec![5, 1], 16),
            (vec![3, 7], 15),
            (vec![6, 0, 1, 1], 16),
            (vec![4], 19),
        ]),
        prop::collection::vec(0u32..10, 19),
        prop::sample::select(vec!["", " ", "-"]),
    )
        .prop_map(|((prefix, len), body, sep)| {
            let digits = luhn_complete(&prefix, len, &body);
            if sep.is_empty() || len != 16 {
                digits
            } else {
                digits.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap_or("")).collect::<Vec<_>>().join(sep)
            }
        })
}

fn ssn() -> impl Strategy<Value = String> {
    (1u32..900, 1u32..100, 1u32..10000)
        .prop_filter("never-issued area", |(a, _, _)| *a != 666)
        .prop_map(|(a, g, s)| format!("{a:03}-{g:02}-{s:04}"))
}

fn email() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9._+-]{0,20}[a-z0-9]",
        "[a-z][a-z0-9-]{0,15}[a-z0-9]",
        prop::sample::select(vec!["com", "org", "io", "co.uk", "museum"]),
    )
        .prop_map(|(l, d, t)| format!("{l}@{d}.{t}"))
}

fn aws_secret() -> impl Strategy<Value = String> {
    ("[A-Za-z0-9/+]{37}", "[A-Z]", "[a-z]", "[0-9]", any::<prop::sample::Index>()).prop_map(|(body, u, l, d, at)| {
        // A real secret key has all three classes; place them somewhere random.
        let mut s = format!("{body}{u}{l}{d}").into_bytes();
        let i = at.index(s.len());
        s.rotate_left(i);
        if s[0] == b'/' {
            s[0] = b'Q';
        }
        String::from_utf8(s).unwrap_or_default()
    })
}

fn secret() -> impl Strategy<Value = (PiiKind, String)> {
    prop_oneof![
        email().prop_map(|v| (PiiKind::Email, v)),
        card().prop_map(|v| (PiiKind::Card, v)),
        ssn().prop_map(|v| (PiiKind::Ssn, v)),
        "(AKIA|ASIA)[A-Z0-9]{16}".prop_map(|v| (PiiKind::AwsAccessKey, v)),
        aws_secret().prop_map(|v| (PiiKind::AwsSecretKey, v)),
        "ghp_[A-Za-z0-9]{36}".prop_map(|v| (PiiKind::ApiKey, v)),
        "sk-proj-[A-Za-z0-9_]{24,48}".prop_map(|v| (PiiKind::ApiKey, v)),
        "eyJ[A-Za-z0-9_-]{10,30}\\.eyJ[A-Za-z0-9_-]{10,40}\\.[A-Za-z0-9_-]{10,43}".prop_map(|v| (PiiKind::Jwt, v)),
    ]
}

fn filler() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-zA-Z]{1,12}",
            "[0-9]{1,5}",
            Just("order".to_owned()),
            Just("Résumé".to_owned()),
            Just("東京".to_owned()),
            Just("1.2.3".to_owned()),
            Just("(see below)".to_owned()),
        ],
        0..12,
    )
    .prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn seeded_secrets_never_survive(
        parts in prop::collection::vec((filler(), secret()), 1..6),
        tail in filler(),
        sep in prop::sample::select(vec![" ", "\n", ": ", " (", "\t", ", "]),
    ) {
        let mut text = String::new();
        for (f, (_, s)) in &parts {
            text.push_str(f);
            text.push_str(sep);
            text.push_str(s);
            text.push_str(if sep == " (" { ") " } else { " " });
        }
        text.push_str(&tail);
        let red = Redactor::all();
        let out = red.redact(&text);
        for (_, (kind, s)) in &parts {
            prop_assert!(!out.text.contains(s.as_str()), "{} {:?} survived in {:?}", kind, s, out.text);
        }
        let seeded = parts.len() as u32;
        let counted: u32 = out.counts.values().sum();
        prop_assert!(counted >= 1 && counted <= seeded * 2, "counted {} for {} seeded", counted, seeded);
        let again = red.redact(&out.text);
        prop_assert_eq!(&again.text, &out.text, "redaction is idempotent");
        prop_assert!(again.counts.is_empty());
    }

    #[test]
    fn idempotent_on_arbitrary_text(text in "\\PC{0,300}") {
        let red = Redactor::all();
        let once = red.redact(&text).text.into_owned();
        let twice = red.redact(&once).text.into_owned();
        prop_assert_eq!(once, twice);
    }
}
