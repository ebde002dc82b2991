//! Where log lines go: a buffer in memory that a thread of its own writes
//! out, so that no request waits on the terminal or the journal and a busy
//! gateway does not pay a system call and a thread wake-up per line.
//!
//! Lines of level `info` and below are written at least every
//! [`FLUSH_EVERY`] (like nginx's `access_log … buffer= flush=`); a warning or
//! an error wakes the writer at once. Lines are never dropped: when the
//! buffer is full (standard error blocked), the threads that log wait until
//! it drains. [`LogSink::close`] writes what is left.
//!
//! The access line of every request is also recorded, durably, as an audit
//! event: what a crash loses of this buffer (at most [`FLUSH_EVERY`] of lines)
//! is operators' diagnostics, never the record of a disclosure.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Most time a line of level `info` waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Past this many bytes the writer is woken.
const HIGH_WATER: usize = 64 * 1024;
/// Past this many bytes loggers wait for the writer.
const FULL: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    urgent: bool,
    closed: bool,
}

struct Shared {
    buffer: Mutex<Buffer>,
    /// The writer waits here for lines.
    ready: Condvar,
    /// Loggers wait here while the buffer is full.
    drained: Condvar,
}

/// A buffered line sink for `tracing_subscriber` (a `MakeWriter`).
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSink").finish_non_exhaustive()
    }
}

impl LogSink {
    /// Starts the writer thread over `out` (standard error, in the binary).
    pub fn start(out: impl Write + Send + 'static) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer::default()),
            ready: Condvar::new(),
            drained: Condvar::new(),
        });
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tongban-log".into())
            .spawn(move || write_out(&writer, out))?;
        Ok(Self {
            shared,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Writes what is buffered and stops the writer; later lines are
    /// written directly by the thread that logs them.
    pub fn close(&self) {
        if let Ok(mut b) = self.shared.buffer.lock() {
            b.closed = true;
        }
        self.shared.ready.notify_all();
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    fn append(&self, line: &[u8], urgent: bool) {
        let Ok(mut b) = self.shared.buffer.lock() else {
            return;
        };
        if b.closed {
            drop(b);
            let _ = std::io::stderr().write_all(line);
            return;
        }
        while b.bytes.len() >= FULL && !b.closed {
            self.shared.ready.notify_one();
            b = match self.shared.drained.wait(b) {
                Ok(b) => b,
                Err(_) => return,
            };
        }
        b.bytes.extend_from_slice(line);
        b.urgent |= urgent;
        let wake = b.urgent || b.bytes.len() >= HIGH_WATER;
        drop(b);
        if wake {
            self.shared.ready.notify_one();
        }
    }
}

fn write_out(shared: &Shared, mut out: impl Write) {
    let mut spare = Vec::new();
    loop {
        let (bytes, closed) = {
            let Ok(mut b) = shared.buffer.lock() else {
                return;
            };
            if !b.urgent && !b.closed && b.bytes.len() < HIGH_WATER {
                b = match shared.ready.wait_timeout(b, FLUSH_EVERY) {
                    Ok((b, _)) => b,
                    Err(_) => return,
                };
            }
            b.urgent = false;
            spare.clear();
            (std::mem::replace(&mut b.bytes, spare), b.closed)
        };
        shared.drained.notify_all();
        if !bytes.is_empty() {
            let _ = out.write_all(&bytes);
            let _ = out.flush();
        }
        spare = bytes;
        if closed {
            return;
        }
    }
}

/// One log line being written (the formatter writes a whole line at once).
#[derive(Debug)]
pub struct LineWriter<'a> {
    sink: &'a LogSink,
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sink.append(buf, self.urgent);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            sink: self,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter {
            sink: self,
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Captures what a sink writes.
    #[derive(Clone, Default)]
    pub(super) struct Capture(pub(super) Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text(c: &Capture) -> String {
        String::from_utf8(c.0.lock().unwrap().clone()).unwrap()
    }

    fn wait_for(c: &Capture, needle: &str, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if text(c).contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn lines_arrive_whole_in_order_and_close_writes_the_rest() {
        let out = Capture::default();
        let sink = LogSink::start(out.clone()).unwrap();
        for i in 0..1000 {
            sink.append(format!("line {i}\n").as_bytes(), false);
        }
        sink.close();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text(&out), expected);
        // After close, lines still go somewhere (standard error), not nowhere.
        sink.append(b"", false);
    }

    #[test]
    fn info_lines_are_written_within_the_flush_interval_and_warnings_at_once() {
        let out = Capture::default();
        let sink = LogSink::start(out.clone()).unwrap();
        sink.append(b"info\n", false);
        assert!(wait_for(&out, "info\n", FLUSH_EVERY * 20));
        let w = tracing::Level::WARN;
        let mut line = LineWriter {
            sink: &sink,
            urgent: w <= tracing::Level::WARN,
        };
        line.write_all(b"warning\n").unwrap();
        assert!(wait_for(&out, "warning\n", FLUSH_EVERY * 20));
        sink.close();
    }

    #[test]
    fn many_threads_never_interleave_within_a_line() {
        let out = Capture::default();
        let sink = LogSink::start(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        sink.append(
                            format!("thread {t} line {i} {}\n", "x".repeat(100)).as_bytes(),
                            false,
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        sink.close();
        let all = text(&out);
        assert_eq!(all.lines().count(), 8000);
        assert!(
            all.lines()
                .all(|l| l.starts_with("thread ") && l.ends_with(&"x".repeat(100)))
        );
    }
}

/// The access line's sink and shape, when it is written without tracing's
/// formatter (set once by the binary; colours off).
static DIRECT: std::sync::OnceLock<(LogSink, bool)> = std::sync::OnceLock::new();

/// Writes the access line of every request straight into `sink`, in the
/// same text (`json = false`) or JSON shape that tracing's formatter gives
/// it, at about a tenth of the cost. Only for output without colour codes.
pub fn write_access_directly(sink: LogSink, json: bool) {
    let _ = DIRECT.set((sink, json));
}

/// The one line per request under `/v1` (target `tongban::access`): never
/// a token, a resident ID or a field value.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// The W3C trace id, or empty.
    pub trace_id: &'a str,
    /// The operation.
    pub operation: &'a str,
    /// The calling department, or `-`.
    pub dept: &'a str,
    /// `allow`, `deny` or `error`.
    pub decision: &'a str,
    /// The problem type's slug, or `-`.
    pub reason: &'a str,
    /// The status answered.
    pub status: u16,
    /// The status recorded in the audit event.
    pub recorded_status: u16,
    /// Events appended.
    pub events: u64,
    /// Time from arrival to answer.
    pub latency_us: u64,
}

impl Access<'_> {
    /// Logs the line, if `tongban::access` is enabled at `info`.
    pub fn log(&self) {
        if !tracing::enabled!(target: "tongban::access", tracing::Level::INFO) {
            return;
        }
        match DIRECT.get() {
            Some((sink, json)) => {
                let line = self.format(*json, time::OffsetDateTime::now_utc());
                sink.append(line.as_bytes(), false);
            }
            None => self.log_with_tracing(),
        }
    }

    /// The line through tracing's formatter (colours on, or no direct sink).
    fn log_with_tracing(&self) {
        tracing::info!(
            target: "tongban::access",
            request_id = %self.request_id,
            trace_id = self.trace_id,
            operation = %self.operation,
            dept = self.dept,
            decision = self.decision,
            reason = self.reason,
            status = self.status,
            recorded_status = self.recorded_status,
            events = self.events,
            latency_us = self.latency_us,
        );
    }

    /// The line as tracing's formatter writes it, at `now`: written piece
    /// by piece (no formatting machinery but for the rare value that needs
    /// escaping), the timestamp's seconds formatted once per second.
    pub fn format(&self, json: bool, now: time::OffsetDateTime) -> String {
        let mut out = String::with_capacity(320);
        let mut n = itoa::Buffer::new();
        if json {
            out.push_str("{\"timestamp\":\"");
            timestamp(&mut out, now);
            out.push_str("\",\"level\":\"INFO\",\"fields\":{\"request_id\":");
            json_str(&mut out, self.request_id);
            out.push_str(",\"trace_id\":");
            json_str(&mut out, self.trace_id);
            out.push_str(",\"operation\":");
            json_str(&mut out, self.operation);
            out.push_str(",\"dept\":");
            json_str(&mut out, self.dept);
            out.push_str(",\"decision\":");
            json_str(&mut out, self.decision);
            out.push_str(",\"reason\":");
            json_str(&mut out, self.reason);
            out.push_str(",\"status\":");
            out.push_str(n.format(self.status));
            out.push_str(",\"recorded_status\":");
            out.push_str(n.format(self.recorded_status));
            out.push_str(",\"events\":");
            out.push_str(n.format(self.events));
            out.push_str(",\"latency_us\":");
            out.push_str(n.format(self.latency_us));
            out.push_str("},\"target\":\"tongban::access\"}");
        } else {
            timestamp(&mut out, now);
            out.push_str("  INFO tongban::access: request_id=");
            out.push_str(self.request_id);
            out.push_str(" trace_id=");
            debug_str(&mut out, self.trace_id);
            out.push_str(" operation=");
            out.push_str(self.operation);
            out.push_str(" dept=");
            debug_str(&mut out, self.dept);
            out.push_str(" decision=");
            debug_str(&mut out, self.decision);
            out.push_str(" reason=");
            debug_str(&mut out, self.reason);
            out.push_str(" status=");
            out.push_str(n.format(self.status));
            out.push_str(" recorded_status=");
            out.push_str(n.format(self.recorded_status));
            out.push_str(" events=");
            out.push_str(n.format(self.events));
            out.push_str(" latency_us=");
            out.push_str(n.format(self.latency_us));
        }
        out.push('\n');
        out
    }
}

/// Whether `s` needs no escaping, in JSON or Rust's `Debug`: printable
/// ASCII without quotes or backslashes.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// `s` as a JSON string.
fn json_str(out: &mut String, s: &str) {
    if plain(s) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
    }
}

/// `s` as tracing writes a `&str` field (its `Debug`).
fn debug_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    if plain(s) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the seconds formatted once per second
/// per thread.
fn timestamp(out: &mut String, now: time::OffsetDateTime) {
    use std::cell::RefCell;
    use std::fmt::Write as _;
    thread_local! {
        static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    let second = now.unix_timestamp();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            cached.1.clear();
            let _ = write!(
                cached.1,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute(),
                now.second()
            );
            cached.0 = second;
        }
        out.push_str(&cached.1);
    });
    let micros = now.microsecond();
    out.push('.');
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.push_str(std::str::from_utf8(&digits).unwrap_or("000000"));
    out.push('Z');
}

#[cfg(test)]
mod access_tests {
    use super::tests::Capture;
    use super::*;

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// What tracing's own formatter writes for the same line.
    fn by_tracing(a: &Access<'_>, json: bool) -> String {
        let out = Capture::default();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(out.clone());
        let dispatch = if json {
            tracing::Dispatch::new(builder.json().finish())
        } else {
            tracing::Dispatch::new(builder.finish())
        };
        tracing::dispatcher::with_default(&dispatch, || a.log_with_tracing());
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    /// The line with its timestamp cut off (the two were written at different times).
    fn after_time(line: &str, json: bool) -> String {
        if json {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut v = v.as_object().unwrap().clone();
            let stamp = v.remove("timestamp").unwrap();
            assert!(stamp.as_str().unwrap().ends_with('Z'));
            serde_json::to_string(&v).unwrap() + &format!(" keys {:?}", line.split("\":").next())
        } else {
            line.split_once(' ').unwrap().1.to_owned()
        }
    }

    /// The timestamp, its seconds formatted once per second, is the full
    /// formatting of each moment: within a second, across seconds, back.
    #[test]
    fn the_cached_seconds_never_stand_for_another_second() {
        let at = |unix: i64, micros: u32| {
            time::OffsetDateTime::from_unix_timestamp(unix)
                .unwrap()
                .replace_microsecond(micros)
                .unwrap()
        };
        for now in [
            at(1_800_000_000, 0),
            at(1_800_000_000, 999_999),
            at(1_800_000_001, 7),
            at(1_800_000_000, 123_456),
            at(951_782_399, 500_000),
            at(951_782_400, 1),
        ] {
            let mut ours = String::new();
            timestamp(&mut ours, now);
            let full = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute(),
                now.second(),
                now.microsecond()
            );
            assert_eq!(ours, full);
        }
    }

    #[test]
    fn the_direct_line_is_the_line_tracing_writes() {
        let lines = [
            Access {
                request_id: "a91ce9c182d7000000014903",
                trace_id: "",
                operation: "lookup",
                dept: "minzheng",
                decision: "allow",
                reason: "-",
                status: 200,
                recorded_status: 200,
                events: 1,
                latency_us: 8040,
            },
            Access {
                request_id: "x",
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
                operation: "no-route",
                dept: "-",
                decision: "deny",
                reason: "token-invalid \"quoted\" 中文",
                status: 401,
                recorded_status: 401,
                events: 1,
                latency_us: 0,
            },
            // Plain ASCII but for a quote, a backslash, a tab.
            Access {
                request_id: "y",
                trace_id: "say \"no\"",
                operation: "lookup",
                dept: "back\\slash",
                decision: "deny",
                reason: "tab\there",
                status: 400,
                recorded_status: 400,
                events: 18_446_744_073_709_551_615,
                latency_us: 18_446_744_073_709_551_615,
            },
        ];
        for a in &lines {
            for json in [false, true] {
                let theirs = by_tracing(a, json);
                let ours = a.format(json, time::OffsetDateTime::now_utc());
                assert_eq!(
                    after_time(&ours, json),
                    after_time(&theirs, json),
                    "json={json}\nours:   {ours}theirs: {theirs}"
                );
                assert!(ours.ends_with('\n') && theirs.ends_with('\n'));
                // The timestamps have the same shape: RFC 3339, microseconds, UTC.
                let stamp = |l: &str| {
                    if json {
                        l[14..41].to_owned()
                    } else {
                        l[..27].to_owned()
                    }
                };
                let (s1, s2) = (stamp(&ours), stamp(&theirs));
                assert_eq!(s1.len(), s2.len(), "{s1} / {s2}");
                for s in [&s1, &s2] {
                    let rfc3339 = &time::format_description::well_known::Rfc3339;
                    assert!(time::OffsetDateTime::parse(s, rfc3339).is_ok(), "{s}");
                }
            }
        }
    }
}
