//! Headless Chromium for the browser tests: the playwright-core scripts in `e2e/browser/`, Debian's
//! Chromium, and the rule that a missing browser skips a test with a note unless REQUIRE_BROWSER=1 (CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

/// `e2e/browser/`: the scripts and their own `node_modules`.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The Chromium binary (`CHROMIUM`, default Debian's `/usr/bin/chromium`).
pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Why a browser test cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not on PATH".into());
    }
    if !dir().join("node_modules/playwright-core").exists() {
        return Some(format!(
            "playwright-core is not installed (run `npm ci` in {})",
            dir().display()
        ));
    }
    if !chromium().exists() {
        return Some(format!("no Chromium at {}", chromium().display()));
    }
    None
}

/// Whether `test` must be skipped for want of a browser (said on stderr); an error instead when
/// REQUIRE_BROWSER=1.
pub fn skip(test: &str) -> Result<bool> {
    let Some(why) = missing() else {
        return Ok(false);
    };
    if std::env::var("REQUIRE_BROWSER").as_deref() == Ok("1") {
        bail!("{why}, but REQUIRE_BROWSER=1");
    }
    eprintln!("NOTE: skipping {test}: {why} (REQUIRE_BROWSER=1 makes this fail)");
    Ok(true)
}

/// `node <script>` run in `e2e/browser/` with `CHROMIUM` set.
pub fn node(script: &str) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(dir().join(script))
        .env("CHROMIUM", chromium())
        .current_dir(dir());
    cmd
}

/// Reads every playlist at `urls` with the independent validators of `e2e/browser/validate.mjs`
/// (`hls-parser` in strict mode and video.js's `m3u8-parser`, neither written here, so a misreading
/// of the spec this project's own readers share with the server cannot pass), failing with their
/// complaints. Without node or those packages it is skipped with a note, unless REQUIRE_BROWSER=1.
pub fn validate_playlists(urls: &[String]) -> Result<()> {
    let missing = if Command::new("node").arg("--version").output().is_err() {
        Some("node is not on PATH".to_owned())
    } else {
        ["hls-parser", "m3u8-parser"]
            .iter()
            .find(|p| !dir().join("node_modules").join(p).exists())
            .map(|p| format!("{p} is not installed (run `npm ci` in {})", dir().display()))
    };
    if let Some(why) = missing {
        if std::env::var("REQUIRE_BROWSER").as_deref() == Ok("1") {
            bail!("{why}, but REQUIRE_BROWSER=1");
        }
        eprintln!("NOTE: not validating playlists with hls-parser/m3u8-parser: {why}");
        return Ok(());
    }
    let out = Command::new("node")
        .arg(dir().join("validate.mjs"))
        .args(urls)
        .current_dir(dir())
        .output()?;
    let report = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "independent playlist validators refused ({}):\n{report}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprint!("hls-parser (strict) and m3u8-parser accept:\n{report}");
    Ok(())
}
