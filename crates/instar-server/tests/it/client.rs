//! A small HTTP/1.1 client for the tests (one request per connection).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    // chromedriver answers only requests addressed to its own host.
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

/// One request, the whole answer (bounded by a 30 s timeout). The body ends
/// at its Content-Length, the last chunk, or the end of the connection
/// (some servers keep it open whatever `Connection: close` says).
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let work = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request(addr, method, path, headers, body).as_bytes())
            .await
            .unwrap();
        let mut raw = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            if complete(&raw) {
                break;
            }
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        Reply { status, body }
    };
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .expect("answered in time")
}

/// Whether `raw` holds a whole answer.
fn complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    if let Some(len) = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
    }) {
        return body.len() >= len;
    }
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// An open event stream: reads SSE events one at a time (the body is
/// chunked: chunks are taken apart exactly, then events split at blank lines).
pub struct Events {
    s: TcpStream,
    raw: Vec<u8>,
    headers_done: bool,
    /// Bytes left in the current chunk, and whether its CRLF is still to skip.
    left: usize,
    crlf: bool,
    sse: String,
}

impl Events {
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Events {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request(addr, "GET", path, headers, "").as_bytes())
            .await
            .unwrap();
        Events {
            s,
            raw: Vec::new(),
            headers_done: false,
            left: 0,
            crlf: false,
            sse: String::new(),
        }
    }

    /// Moves what the raw bytes hold of the body into `sse`.
    fn dechunk(&mut self) {
        if !self.headers_done {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            self.raw.drain(..end + 4);
            self.headers_done = true;
        }
        loop {
            if self.left > 0 {
                let n = self.left.min(self.raw.len());
                if n == 0 {
                    return;
                }
                let bytes: Vec<u8> = self.raw.drain(..n).collect();
                self.sse.push_str(&String::from_utf8_lossy(&bytes));
                self.left -= n;
                if self.left == 0 {
                    self.crlf = true;
                }
                continue;
            }
            if self.crlf {
                if self.raw.len() < 2 {
                    return;
                }
                self.raw.drain(..2);
                self.crlf = false;
            }
            let Some(end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let line: Vec<u8> = self.raw.drain(..end + 2).collect();
            let size = String::from_utf8_lossy(&line[..end]);
            self.left = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if self.left == 0 {
                return;
            }
        }
    }

    /// The next event's (id, data), or None when the stream ends (within 30 s).
    pub async fn next(&mut self) -> Option<(u64, serde_json::Value)> {
        let work = async {
            loop {
                if let Some(end) = self.sse.find("\n\n") {
                    let block: String = self.sse.drain(..end + 2).collect();
                    let id = block
                        .lines()
                        .find_map(|l| l.strip_prefix("id: ")?.trim().parse().ok());
                    let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                    if let (Some(id), Some(data)) = (id, data) {
                        return Some((id, serde_json::from_str(data).unwrap()));
                    }
                    continue;
                }
                let mut chunk = [0u8; 4096];
                let n = self.s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                self.raw.extend_from_slice(&chunk[..n]);
                self.dechunk();
            }
        };
        tokio::time::timeout(Duration::from_secs(30), work)
            .await
            .expect("event in time")
    }
}
