//! A plain HTTP/1.1 client for tests and benchmarks of `quarry serve`: one request per connection,
//! no dependency that could hide what goes over the wire.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A `quarry serve` child process, killed when dropped.
#[derive(Debug)]
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `quarry serve ARGS` (the binary at `exe`) with the installed model and `env`, and
    /// waits for its `listening on http://ADDR` line.
    pub fn start(exe: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut c = Command::new(exe);
        c.arg("serve")
            .args(args)
            .env("QUARRY_MODEL_DIR", crate::model_dir())
            .env_remove("QUARRY_CONFIG")
            .env_remove("QUARRY_API_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Benchmarks' own settings: Quarry refuses QUARRY_* variables it does not know.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("QUARRY_BENCH_") {
                c.env_remove(k);
            }
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("quarry serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
        let addr =
            line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("got {line:?}")).to_owned();
        Server { child, addr }
    }

    /// One request on its own connection: (status, JSON body, or the body as a string). The body
    /// is JSON unless `headers` name another Content-Type.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let body = body.unwrap_or("");
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(req.as_bytes()).expect("send");
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let payload = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(payload)
        } else {
            payload.to_owned()
        };
        (status, serde_json::from_str(&payload).unwrap_or(Value::String(payload)))
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
