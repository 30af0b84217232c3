//! Crash recovery at start: a recording whose playlist lacks `#EXT-X-ENDLIST` was cut short by a crash
//! (or by a write error). Its playlist is rewritten as a finished VOD playlist of the segments it lists,
//! and segment files it does not list (the one being written when the process died) are deleted, as are
//! temp files. The FLV file needs nothing: it plays up to its last whole tag as it is.
//!
//! No `on_record_done` is sent for a recovered recording: the session it belonged to (its client fields
//! and stream-name arguments) died with the process. Recoveries are logged and counted.

use std::fs;
use std::path::Path;

use tracing::{info, warn};

use super::name::parse_dir_name;
use super::vod::VodPlaylist;
use super::writer::{replace_atomically, PLAYLIST};
use super::RecordStats;

/// Finishes every interrupted recording under `root` (`<root>/<stream>/<start>/`). Blocking: run it on
/// a blocking thread, before RTMP publishers are accepted (a new recording must not be taken for an
/// interrupted one).
pub fn recover_all(root: &Path, stats: &RecordStats) {
    let Ok(streams) = fs::read_dir(root) else {
        return;
    };
    for stream in streams.flatten() {
        let name = stream.file_name();
        let Some(name) = name.to_str() else { continue };
        if common::validate_stream_name(name).is_err() {
            continue;
        }
        let Ok(starts) = fs::read_dir(stream.path()) else {
            continue;
        };
        for start in starts.flatten() {
            let ok = start
                .file_name()
                .to_str()
                .and_then(parse_dir_name)
                .is_some();
            if ok {
                recover_one(&start.path(), stats);
            }
        }
    }
}

fn recover_one(dir: &Path, stats: &RecordStats) {
    let path = dir.join(PLAYLIST);
    let Ok(text) = fs::read_to_string(&path) else {
        return;
    };
    let mut playlist = match VodPlaylist::parse(&text) {
        Ok(p) => p,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "recording playlist unreadable; left alone");
            return;
        }
    };
    if playlist.ended() {
        return;
    }
    let listed: std::collections::HashSet<&str> =
        playlist.entries().iter().map(|e| e.uri.as_str()).collect();
    let mut dropped = 0;
    if let Ok(files) = fs::read_dir(dir) {
        for f in files.flatten() {
            let n = f.file_name();
            let Some(n) = n.to_str() else { continue };
            let stray = (n.ends_with(".ts") && !listed.contains(n)) || n.ends_with(".tmp");
            if stray && fs::remove_file(f.path()).is_ok() {
                dropped += 1;
            }
        }
    }
    playlist.end();
    match replace_atomically(&path, playlist.render().as_bytes()) {
        Ok(()) => {
            stats.recovered.inc();
            info!(
                path = %path.display(),
                segments = playlist.entries().len(),
                seconds = playlist.duration(),
                unlisted_files_removed = dropped,
                "interrupted recording finished"
            );
        }
        Err(e) => {
            stats.write_errors.inc();
            warn!(path = %path.display(), error = %e, "interrupted recording could not be finished");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::vod::Entry;

    #[test]
    fn an_interrupted_recording_is_finished_and_strays_removed() {
        let root = std::env::temp_dir().join(format!("media-recover-{}", std::process::id()));
        let dir = root.join("cam").join("20261124T044012.345Z");
        fs::create_dir_all(&dir).expect("mkdir");
        let mut p = VodPlaylist::new(2);
        for i in 0..2 {
            fs::write(dir.join(format!("{i}.ts")), b"x").expect("write");
            p.push(Entry {
                uri: format!("{i}.ts"),
                duration: 2.0,
                discontinuity: i == 0,
            });
        }
        fs::write(dir.join(PLAYLIST), p.render()).expect("write");
        fs::write(dir.join("2.ts"), b"half").expect("write");
        fs::write(dir.join("index.m3u8.tmp"), b"torn").expect("write");
        // Not a recording directory: untouched.
        let other = root.join("cam").join("notes");
        fs::create_dir_all(&other).expect("mkdir");
        fs::write(other.join(PLAYLIST), p.render()).expect("write");

        let stats = RecordStats::default();
        recover_all(&root, &stats);
        let text = fs::read_to_string(dir.join(PLAYLIST)).expect("read");
        let back = VodPlaylist::parse(&text).expect("parse");
        assert!(back.ended(), "{text}");
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{text}");
        assert_eq!(back.entries().len(), 2);
        assert!(!dir.join("2.ts").exists());
        assert!(!dir.join("index.m3u8.tmp").exists());
        assert!(dir.join("1.ts").exists());
        assert!(!fs::read_to_string(other.join(PLAYLIST))
            .expect("read")
            .contains("ENDLIST"));
        assert_eq!(stats.recovered.get(), 1);
        // A second pass finds nothing to do.
        recover_all(&root, &stats);
        assert_eq!(stats.recovered.get(), 1);
        fs::remove_dir_all(&root).ok();
    }
}
