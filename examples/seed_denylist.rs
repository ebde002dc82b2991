//! Fills a stopped gateway's token deny-list with synthetic entries, for the
//! benchmark (`bench/run.sh`): `seed_denylist --data DIR --count N`.
//! Nine in ten entries name a token (`jti`), one in ten a subject; none
//! matches a real token.

use std::path::PathBuf;

use tongban::stops::revocation::{Revocation, RevocationTarget, Revocations};

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
    let db = tongban::datadir::open_path(&data)?;
    let list = Revocations::open(&db, &data, now_ms)?;
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let target = if i % 10 == 0 {
            RevocationTarget::new(
                None,
                Some(&format!("bench-subject-{i}")),
                Some(now_ms / 1000),
            )
        } else {
            RevocationTarget::new(Some(&format!("bench-jti-{i:08x}")), None, None)
        }?;
        entries.push(Revocation {
            target,
            expires_ms: now_ms + 7 * 86_400_000,
            reason: "benchmark".into(),
            by: "bench/seed".into(),
            at_ms: now_ms,
        });
    }
    list.add_many(entries, now_ms)?;
    db.flush()?;
    // What the check costs a request whose token is not listed (the common
    // case): one lookup by jti, one by subject.
    let rounds = 1_000_000u32;
    let probes: Vec<String> = (0..rounds).map(|i| format!("live-{i:08x}")).collect();
    let started = std::time::Instant::now();
    let mut hits = 0u32;
    for jti in &probes {
        if list
            .refuses(Some(jti), "clerk-007", Some(now_ms / 1000), now_ms)
            .is_some()
        {
            hits += 1;
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / f64::from(rounds);
    assert_eq!(hits, 0);
    println!(
        "{} deny-list entries in {}; a check of an unlisted token costs {ns:.0} ns",
        list.all().len(),
        data.display()
    );
    Ok(())
}
