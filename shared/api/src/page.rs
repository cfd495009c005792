//! The search page: `GET /` and its two assets, compiled into the binary (`assets/`), so that it
//! works offline and from the search Lambda alike; nothing is fetched from anywhere else, which the
//! Content-Security-Policy also enforces. The page calls the same `/v1` routes any client does.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");

/// Only this origin, no inline script or style, no framing. The one exception is where dropped
/// files go when that is elsewhere (`upload_origin`: the bucket's S3 endpoint on AWS, for the
/// presigned PUT that `POST /v1/uploads` grants), and only that origin.
fn csp(upload_origin: Option<&str>) -> HeaderValue {
    let extra = upload_origin
        .filter(|o| o.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b','))
        .map_or(String::new(), |o| format!(" {o}"));
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'{extra}; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

fn asset(body: &'static str, content_type: &'static str, csp: HeaderValue) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small, and changed by an upgrade: revalidated rather than cached stale.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// The page's routes, open like the health probes: the page holds no data, and every call it
/// makes goes through the `/v1` routes' authentication.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(upload_origin: Option<&str>) -> Router<S> {
    let policy = csp(upload_origin);
    let (a, b, c) = (policy.clone(), policy.clone(), policy);
    Router::new()
        .route("/", get(move || std::future::ready(asset(INDEX, "text/html; charset=utf-8", a))))
        .route("/app.js", get(move || std::future::ready(asset(SCRIPT, "text/javascript; charset=utf-8", b))))
        .route("/app.css", get(move || std::future::ready(asset(STYLE, "text/css; charset=utf-8", c))))
}

/// The page's size, uncompressed.
pub const PAGE_BYTES: usize = INDEX.len() + SCRIPT.len() + STYLE.len();
// The page's budget (150 KB uncompressed), checked as it is compiled.
const _: () = assert!(PAGE_BYTES <= 150_000, "the search page is over its 150 KB budget");

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_stays_small_and_loads_nothing_from_elsewhere() {
        for asset in [super::INDEX, super::SCRIPT, super::STYLE] {
            assert!(!asset.contains("http://") && !asset.contains("https://"), "no absolute URL in the assets");
        }
        assert!(super::INDEX.contains(r#"src="app.js""#) && super::INDEX.contains(r#"href="app.css""#));
    }

    #[test]
    fn connections_go_to_this_origin_and_the_upload_origin_only() {
        let policy = |o| super::csp(o).to_str().map(str::to_owned).unwrap_or_default();
        assert!(policy(None).contains("connect-src 'self';"), "{}", policy(None));
        let aws = policy(Some("https://docs.s3.eu-west-1.amazonaws.com"));
        assert!(aws.contains("connect-src 'self' https://docs.s3.eu-west-1.amazonaws.com;"), "{aws}");
        assert!(policy(Some("https://x; script-src *")).contains("connect-src 'self';"), "no policy injection");
    }
}
