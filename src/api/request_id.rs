//! Request ids: 48 random bits drawn once per process, then a 48-bit
//! counter, as 24 lower-case hex characters held inline. Unique within a
//! process (it would take 2^48 requests to wrap) and, with overwhelming
//! probability, across processes and nodes; an id correlates, it is not a
//! secret. Each thread takes its counter values in blocks, so a request
//! does not contend on a shared counter, and ids are not in arrival order.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counter values a thread takes at once.
const BLOCK: u64 = 1024;

/// A request's id, returned in `X-Request-Id` and recorded in its audit event.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId([u8; 24]);

impl RequestId {
    /// The next id of this process.
    pub fn next() -> Self {
        static PREFIX: OnceLock<[u8; 6]> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            /// The next value of this thread's block, and its end.
            static TAKEN: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
        }
        let prefix = PREFIX.get_or_init(|| {
            let mut bytes = [0u8; 6];
            // The system RNG does not fail on Linux; a zero prefix would
            // still be unique per process.
            let _ = aws_lc_rs::rand::SecureRandom::fill(
                &aws_lc_rs::rand::SystemRandom::new(),
                &mut bytes,
            );
            bytes
        });
        let n = TAKEN.with(|taken| {
            let (next, end) = taken.get();
            let n = if next < end {
                next
            } else {
                COUNTER.fetch_add(BLOCK, Ordering::Relaxed)
            };
            taken.set((n + 1, if next < end { end } else { n + BLOCK }));
            n
        });
        let mut raw = [0u8; 12];
        raw[..6].copy_from_slice(prefix);
        raw[6..].copy_from_slice(&n.to_be_bytes()[2..]);
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut id = [0u8; 24];
        for (i, b) in raw.iter().enumerate() {
            id[2 * i] = DIGITS[usize::from(b >> 4)];
            id[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
        }
        Self(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::RequestId;
    use std::collections::HashSet;

    fn well_formed(id: &str) -> bool {
        id.len() == 24
            && id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    }

    #[test]
    fn request_ids_are_24_hex_characters_and_never_repeat() {
        let ids: HashSet<String> = (0..10_000).map(|_| RequestId::next().to_string()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| well_formed(id)));
        // One process, one prefix.
        let prefixes: HashSet<&str> = ids.iter().map(|id| &id[..12]).collect();
        assert_eq!(prefixes.len(), 1);
    }

    #[test]
    fn threads_taking_ids_at_once_never_share_one() {
        // Each thread crosses several blocks; together they must not meet.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..3_000)
                        .map(|_| RequestId::next().to_string())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = HashSet::new();
        for t in threads {
            for id in t.join().unwrap() {
                assert!(well_formed(&id), "{id}");
                assert!(all.insert(id.clone()), "{id} given twice");
            }
        }
        assert_eq!(all.len(), 12_000);
    }
}
