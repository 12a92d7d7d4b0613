//! The load tools, run as separate processes on this machine: wrk for HTTP/1.1, h2load for gRPC
//! (HTTP/2 with a gRPC-framed request body). Every run is bounded by its duration.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

/// The load of one measurement, the same on both sides of a comparison.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub connections: usize,
    /// Concurrent streams per HTTP/2 connection (h2load `-m`).
    pub streams: usize,
    pub duration: Duration,
}

/// What one run measured.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Figure {
    pub requests_per_second: f64,
    pub p99_ms: f64,
    /// Answers that were not successes (HTTP status ≥ 400, gRPC status ≠ 0, socket errors).
    pub failures: u64,
}

/// A target of a run: only this machine's loopback is accepted.
#[derive(Debug, Clone)]
pub enum Target {
    /// `GET url` with `headers`.
    Http { url: String, headers: Vec<String> },
    /// A unary gRPC call: `path` (`/package.Service/Method`) with a prost-encoded `request`.
    Grpc {
        addr: SocketAddr,
        path: String,
        request: Vec<u8>,
        headers: Vec<String>,
    },
}

impl Target {
    pub fn run(&self, load: Load) -> anyhow::Result<Figure> {
        match self {
            Self::Http { url, headers } => wrk(url, headers, load),
            Self::Grpc {
                addr,
                path,
                request,
                headers,
            } => h2load(*addr, path, request, headers, load),
        }
    }
}

fn ensure_local(addr: SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "refusing to load {addr}: the harness only loads targets on this machine"
    );
    Ok(())
}

fn wrk(url: &str, headers: &[String], load: Load) -> anyhow::Result<Figure> {
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("{url} is not http://<ip:port>/…"))?;
    ensure_local(addr)?;
    let mut command = Command::new("wrk");
    command
        .arg("-t2")
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.duration.as_secs().max(1)))
        .arg("--latency");
    for header in headers {
        command.arg("-H").arg(header);
    }
    let output = command.arg(url).output().context("run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed: {text}");
    let rps = field(&text, "Requests/sec:").context("wrk: no Requests/sec")?;
    let p99 = text
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(duration_ms)
        .context("wrk: no 99% latency")?;
    let non_2xx = field(&text, "Non-2xx or 3xx responses:").unwrap_or(0.0) as u64;
    let socket_errors = text
        .lines()
        .find(|l| l.contains("Socket errors:"))
        .map(|l| {
            l.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok(Figure {
        requests_per_second: rps,
        p99_ms: p99,
        failures: non_2xx + socket_errors,
    })
}

fn h2load(addr: SocketAddr, path: &str, request: &[u8], headers: &[String], load: Load) -> anyhow::Result<Figure> {
    ensure_local(addr)?;
    let dir = tempfile::tempdir()?;
    let body = dir.path().join("request.bin");
    // gRPC framing: not compressed, big-endian length, message.
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(request.len() as u32).to_be_bytes());
    framed.extend_from_slice(request);
    std::fs::write(&body, framed)?;
    let log = dir.path().join("requests.log");
    let mut command = Command::new("h2load");
    command
        .arg(format!("-c{}", load.connections))
        .arg(format!("-m{}", load.streams))
        .arg(format!("-D{}", load.duration.as_secs().max(1)))
        .arg("-t1")
        .arg("-d")
        .arg(&body)
        .arg("--log-file")
        .arg(&log)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"]);
    for header in headers {
        command.arg("-H").arg(header);
    }
    let output = command
        .arg(format!("http://{addr}{path}"))
        .output()
        .context("run h2load (apt-get install nghttp2-client)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "h2load failed: {text}");
    let rps = text
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|part| part.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .context("h2load: no req/s")?;
    let failed = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .map(|l| {
            ["failed", "errored", "timeout"]
                .iter()
                .filter_map(|what| count_before(l, what))
                .sum::<u64>()
        })
        .unwrap_or(0);
    // The log: one line per request, "start(µs) status duration(µs)".
    let mut latencies: Vec<u64> = std::fs::read_to_string(&log)?
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    latencies.sort_unstable();
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default() as f64
        / 1000.0;
    Ok(Figure {
        requests_per_second: rps,
        p99_ms: p99,
        failures: failed,
    })
}

fn field(text: &str, label: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `12 failed` in `requests: 10 total, …, 12 failed, …`.
fn count_before(line: &str, what: &str) -> Option<u64> {
    line.split(',')
        .find(|part| part.trim().ends_with(what))
        .and_then(|part| part.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// wrk's `1.23ms`, `456.00us`, `1.50s`.
fn duration_ms(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_durations_and_h2load_counts_parse() {
        assert_eq!(duration_ms("456.00us"), Some(0.456));
        assert_eq!(duration_ms("1.50ms"), Some(1.5));
        assert_eq!(duration_ms("2.00s"), Some(2000.0));
        let line = "requests: 100 total, 100 started, 100 done, 97 succeeded, 3 failed, 0 errored, 0 timeout";
        assert_eq!(count_before(line, "failed"), Some(3));
        assert_eq!(count_before(line, "succeeded"), Some(97));
    }

    #[test]
    fn a_target_elsewhere_is_refused() {
        let target = Target::Http {
            url: "http://10.1.2.3:80/".into(),
            headers: vec![],
        };
        let load = Load {
            connections: 1,
            streams: 1,
            duration: Duration::from_secs(1),
        };
        let error = target.run(load).unwrap_err().to_string();
        assert!(error.contains("only loads targets on this machine"), "{error}");
    }
}
