//! Embeds the hls.js player into the edge at build time, from the npm package pinned in
//! `web/package.json` (installed with `npm ci` in `web/`). Without it the build still succeeds: the
//! embedded file is empty, the edge answers `/assets/hls.min.js` with a 404 and the watch page says the
//! player is missing. Nothing is downloaded here; builds stay offline and reproducible.

use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").ok_or("no CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("no OUT_DIR")?);
    let web = manifest.join("..").join("web");
    let package = web.join("node_modules").join("hls.js");
    let dist = package.join("dist").join("hls.min.js");

    let (bytes, version) = match std::fs::read(&dist) {
        Ok(bytes) => {
            println!("cargo:rerun-if-changed={}", dist.display());
            println!(
                "cargo:rerun-if-changed={}",
                package.join("package.json").display()
            );
            (bytes, package_version(&package.join("package.json")))
        }
        Err(_) => {
            // Watching the directory (scanned recursively) notices a later `npm ci`.
            println!("cargo:rerun-if-changed={}", web.display());
            println!(
                "cargo:warning=hls.js not found at {}: the watch page will say the player is missing \
                 (run `npm ci` in web/ and rebuild)",
                dist.display()
            );
            (Vec::new(), String::new())
        }
    };
    std::fs::write(out.join("hls.min.js"), bytes)?;
    println!("cargo:rustc-env=HLS_JS_VERSION={version}");
    Ok(())
}

/// The `"version"` of an npm `package.json`, found without a JSON parser (build scripts should not pull
/// dependencies for one string); empty if it cannot be read.
fn package_version(path: &std::path::Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let Some(rest) = text.split("\"version\"").nth(1) else {
        return String::new();
    };
    rest.split('"')
        .nth(1)
        .filter(|v| {
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        })
        .unwrap_or_default()
        .to_owned()
}
