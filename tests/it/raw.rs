//! A raw one-request-per-connection HTTP/1.1 server on loopback, for
//! replies the test host never gives (redirects, stalls, odd shapes).

use std::sync::Arc;
use std::time::Duration;

pub type RawHandler = Arc<dyn Fn(u16, &str) -> RawReply + Send + Sync>;

/// What the raw server sends: a head and body, optionally trickled.
pub struct RawReply {
    pub status: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the body one byte at a time with this pause.
    pub trickle: Option<Duration>,
}

pub fn raw(status: &'static str, body: impl Into<Vec<u8>>) -> RawReply {
    RawReply {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.into(),
        trickle: None,
    }
}

/// A one-request-per-connection HTTP/1.1 server on loopback; records each
/// request line. Returns its port and the log.
pub async fn raw_server(handler: RawHandler) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind raw server");
    let port = listener.local_addr().expect("addr").port();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log2 = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let log = log2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 8192];
                // Head.
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let line = head.lines().next().unwrap_or("").to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                // Body (whole, so the client is never cut off mid-send).
                while buf.len() < head_end + len {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                log.lock().expect("log").push(line.clone());
                let reply = handler(port, &line);
                let mut out = format!(
                    "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                    reply.status,
                    reply.body.len()
                );
                for (k, v) in &reply.headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                if sock.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
                match reply.trickle {
                    None => {
                        let _ = sock.write_all(&reply.body).await;
                    }
                    Some(pause) => {
                        for b in &reply.body {
                            if sock.write_all(std::slice::from_ref(b)).await.is_err() {
                                return;
                            }
                            let _ = sock.flush().await;
                            tokio::time::sleep(pause).await;
                        }
                    }
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    (port, log)
}
