//! A headless Chromium for the tests that need a real browser (GraphiQL, CORS
//! from another origin).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Chromium driven through chromedriver (Debian's `chromium` and `chromium-driver`;
/// `.ci/run` installs them). Headless, no sandbox (root), and no background
/// networking: the machine has no internet, and the page must not need it.
pub(crate) struct Browser {
    driver: Child,
    pub(crate) client: fantoccini::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// `None` when chromedriver is missing outside CI; in CI its absence fails the test.
    pub(crate) async fn start() -> Option<Self> {
        let chromedriver = super::tools::installed(
            "chromedriver",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
            "chromium chromium-driver",
        )?;
        let port = super::tools::free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match fantoccini::ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver did not start a session: {e}"),
            }
        };
        Some(Self {
            driver,
            client,
            _profile: profile,
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
