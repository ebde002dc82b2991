//! Fills a stopped gateway's token deny-list with synthetic entries, for the
//! benchmark (`bench/run.sh`): `seed_denylist --data DIR --count N`.
//! Nine in ten entries name a token (`jti`), one in ten a subject; none
//! matches a real token.

use std::path::PathBuf;

use tongban::denylist::{Denial, DenyList};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .ok_or_else(|| format!("{name} is needed"))
    };
    let data = PathBuf::from(arg("--data")?);
    let count: usize = arg("--count")?.parse()?;
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let db = sled::open(&data)?;
    let list = DenyList::open(&db, now_ms)?;
    let entries = (0..count).map(|i| Denial {
        jti: (i % 10 != 0).then(|| format!("bench-jti-{i:08x}")),
        sub: (i % 10 == 0).then(|| format!("bench-subject-{i}")),
        issued_before: (i % 10 == 0).then_some(now_ms / 1000),
        expires_ms: now_ms + 7 * 86_400_000,
        reason: "benchmark".into(),
        by: "bench/seed".into(),
        at_ms: now_ms,
    });
    list.add_many(entries, now_ms)?;
    db.flush()?;
    println!(
        "{} deny-list entries in {}",
        list.all().len(),
        data.display()
    );
    Ok(())
}
