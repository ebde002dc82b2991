//! Anomaly flags on the working-day calendar: holidays and make-up working
//! days, the rules file, stable flag identities.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::Value;

use crate::audit_review::officer_get;
use crate::helpers::TestGateway;

const HUKOU: &str = "/v1/datasets/gongan.hukou/records";

/// One authorized lookup by minzheng's clerk-007, at the gateway's time.
async fn one_lookup(gw: &TestGateway) {
    let id = &gw.sample_ids("gongan.hukou", 1)[0];
    let mz = gw.token("minzheng", "clerk-007", &["dibao_reviewer"]);
    let r = gw
        .get(
            &format!("{HUKOU}/{id}"),
            Some(&mz),
            Some("dibao_review"),
            Some("MZ-2026-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

fn off_hours(body: &Value) -> Vec<(String, String, String)> {
    body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "off_hours")
        .map(|f| {
            (
                f["day"].as_str().unwrap().to_owned(),
                f["detail"].as_str().unwrap().to_owned(),
                f["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_holiday_and_a_makeup_saturday_are_classified_on_the_calendar() {
    // 10:00 on Friday 2 October 2026, a day of the 国庆 holiday.
    let start = time::macros::datetime!(2026-10-02 10:00 +08:00);
    let clock = tongban::clock::Clock::manual(start);
    let gw = TestGateway::start_at(|_, _| {}, clock.clone()).await;
    one_lookup(&gw).await;
    // 10:00 on Saturday 10 October, worked instead of a holiday (调休).
    clock.advance(Duration::from_secs(8 * 86_400));
    one_lookup(&gw).await;
    // 10:00 on Sunday 11 October, an ordinary weekend day.
    clock.advance(Duration::from_secs(86_400));
    one_lookup(&gw).await;
    // 10:00 on Monday 12 October, an ordinary working day.
    clock.advance(Duration::from_secs(86_400));
    one_lookup(&gw).await;

    let r = officer_get(&gw, "/v1/audit/stats?from=2026-10-01&to=2026-10-12").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let flagged = off_hours(&r.body);
    let days: Vec<&str> = flagged.iter().map(|(d, _, _)| d.as_str()).collect();
    assert_eq!(days, ["2026-10-02", "2026-10-11"], "{flagged:?}");
    assert!(flagged[0].1.contains("holiday (国庆节)"), "{flagged:?}");
    assert!(flagged[1].1.contains("weekend"), "{flagged:?}");
    // The identity names kind, department and day, and not the clerk.
    let id = &flagged[0].2;
    assert!(id.starts_with("off_hours:minzheng:2026-10-02:"), "{id}");
    assert!(!id.contains("clerk"), "{id}");
    // The same flag found again, in a wider window, has the same identity.
    let again = officer_get(&gw, "/v1/audit/stats?from=2026-09-01&to=2026-10-31").await;
    assert_eq!(off_hours(&again.body), flagged);
}
