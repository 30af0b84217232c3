//! ffmpeg/ffprobe for the tests that judge our output with them (`remux_ffprobe`, `parts_ffprobe`).

use std::process::Command;

/// Whether ffprobe and ffmpeg are on PATH. Without them `test` is skipped with a note, unless
/// REQUIRE_FFMPEG=1 (CI), where that is a failure.
pub fn available(test: &str) -> bool {
    let ok = |tool: &str| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok("ffprobe") && ok("ffmpeg") {
        return true;
    }
    assert!(
        std::env::var("REQUIRE_FFMPEG").as_deref() != Ok("1"),
        "ffprobe/ffmpeg not on PATH but REQUIRE_FFMPEG=1"
    );
    // Straight to the process's stderr: libtest would swallow eprintln! output of a passing test.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "NOTE: ffprobe/ffmpeg not on PATH: skipping {test} (REQUIRE_FFMPEG=1 makes this fail)\n"
        )
        .as_bytes(),
    );
    false
}
