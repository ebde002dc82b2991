//! The web console's pages: served from the binary with a strict
//! Content-Security-Policy, never audited (they hold no data). The pages
//! themselves are driven in Chromium by `checks/console/e2e.mjs`.

use hyper::StatusCode;

use crate::helpers::TestGateway;

#[tokio::test]
async fn the_console_is_served_from_the_binary_with_a_strict_policy() {
    let gw = TestGateway::start().await;
    let client = gw.client();
    let before = gw.store().await.len();
    for (path, kind) in [
        ("/console/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let r = client.request("GET", path, &[]).await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
    }
    let page = client.request("GET", "/console/", &[]).await.unwrap();
    // Nothing from elsewhere, nothing inline.
    assert!(!page.text.contains("http://") && !page.text.contains("https://"));
    assert!(!page.text.contains("<style") && !page.text.contains("onclick"));
    assert!(!page.text.contains("<script>"));
    let script = client.request("GET", "/console/app.js", &[]).await.unwrap();
    assert!(!script.text.contains("localStorage.setItem('tongban.token'"));
    assert!(!script.text.contains("innerHTML"));
    let r = client.request("GET", "/console", &[]).await.unwrap();
    assert!(r.status.is_redirection());
    assert_eq!(r.headers["location"], "/console/");
    assert_eq!(
        gw.store().await.len(),
        before,
        "static pages are not audit events"
    );
}
