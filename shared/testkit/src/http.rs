//! A plain HTTP/1.1 client for tests and benchmarks of `quarry serve`: one request per connection,
//! no dependency that could hide what goes over the wire.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `quarry serve` child process, stopped when dropped.
#[derive(Debug)]
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// Everything it wrote after its first line, stdout and stderr, where started by
    /// [`Server::start_logged`].
    pub logs: Option<std::sync::Arc<std::sync::Mutex<String>>>,
}

/// Waits up to `within` for `child` to exit: its exit status, or `None` if it is still running.
pub fn exited_within(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if started.elapsed() >= within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Stopped as a service manager stops it, so that it exits through its own shutdown (and an
        // instrumented build writes its coverage); killed if it has not within a few seconds.
        let _ = self.terminate(Duration::from_secs(10));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `quarry serve ARGS` (the binary at `exe`) with the installed model and `env`, and
    /// waits for its `listening on http://ADDR` line.
    pub fn start(exe: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn(exe, args, env, false)
    }

    /// [`Server::start`], keeping every line it writes (its logs) in [`Server::logs`].
    pub fn start_logged(exe: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn(exe, args, env, true)
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit: its exit status, or `None`
    /// if it is still running.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let pid = rustix::process::Pid::from_child(&self.child);
        if rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_err() {
            return None;
        }
        exited_within(&mut self.child, within)
    }

    /// Everything logged so far.
    pub fn logs(&self) -> String {
        self.logs
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
            .unwrap_or_default()
    }

    fn spawn(exe: &str, args: &[&str], env: &[(&str, &str)], logged: bool) -> Server {
        let mut c = Command::new(exe);
        c.arg("serve")
            .args(args)
            .env("QUARRY_MODEL_DIR", crate::model_dir())
            .env_remove("QUARRY_CONFIG")
            .env_remove("QUARRY_API_KEY")
            .stdout(Stdio::piped())
            .stderr(if logged { Stdio::piped() } else { Stdio::inherit() });
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
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        stdout.read_line(&mut line).expect("first line");
        let addr =
            line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("got {line:?}")).to_owned();
        let logs = logged.then(|| {
            let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let keep = |mut from: Box<dyn Read + Send>, into: std::sync::Arc<std::sync::Mutex<String>>| {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        into.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_str(&text);
                    }
                });
            };
            keep(Box::new(stdout), logs.clone());
            if let Some(stderr) = child.stderr.take() {
                keep(Box::new(stderr), logs.clone());
            }
            logs
        });
        Server { child, addr, logs }
    }

    /// One request on its own connection: (status, JSON body, or the body as a string). The body
    /// is JSON unless `headers` name another Content-Type.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> (u16, Value) {
        let r = self.exchange(method, path, body, headers);
        (r.status, r.body)
    }

    /// [`Server::call`], keeping the response's headers too.
    pub fn exchange(&self, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Reply {
        let started = Instant::now();
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
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&raw);
        let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = status_of(lines.next().unwrap_or(""));
        let headers: Vec<(String, String)> = lines.filter_map(header_of).collect();
        let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let payload = if chunked { dechunk(payload) } else { payload.to_owned() };
        Reply::new(status, headers, took, payload)
    }
}

/// One kept-alive connection to a server, as an HTTP client's pool holds one: requests after the
/// first pay no connection setup. Responses must carry a Content-Length (Quarry's JSON ones do).
#[derive(Debug)]
pub struct Connection {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Server {
    /// A kept-alive connection to this server.
    pub fn connect(&self) -> Connection {
        let stream = TcpStream::connect(&self.addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Connection { stream: BufReader::new(stream), host: self.addr.clone() }
    }
}

impl Connection {
    /// One JSON request on this connection.
    pub fn exchange(&mut self, method: &str, path: &str, body: &str) -> Reply {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        let started = Instant::now();
        self.stream.get_mut().write_all(req.as_bytes()).expect("send");
        let mut status_line = String::new();
        self.stream.read_line(&mut status_line).expect("status line");
        let status = status_of(&status_line);
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            headers.extend(header_of(line));
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("a kept-alive response needs a Content-Length: {headers:?}"));
        let mut payload = vec![0u8; length];
        self.stream.read_exact(&mut payload).expect("body");
        Reply::new(status, headers, started.elapsed(), String::from_utf8_lossy(&payload).into_owned())
    }
}

/// A response: its status, its headers (names in lower case), how long it took and its body (JSON,
/// or a string).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// From the request's first byte sent to the response's last byte received (parsing excluded).
    pub took: Duration,
    pub body: Value,
}

impl Reply {
    fn new(status: u16, headers: Vec<(String, String)>, took: Duration, payload: String) -> Self {
        Reply { status, headers, took, body: serde_json::from_str(&payload).unwrap_or(Value::String(payload)) }
    }

    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The status code of a status line (`HTTP/1.1 200 OK`), 0 when there is none.
fn status_of(line: &str) -> u16 {
    line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A header line as (name in lower case, value).
fn header_of(line: &str) -> Option<(String, String)> {
    line.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
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
