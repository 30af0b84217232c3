//! The disk writer of one broadcast's recording, on its own thread: it receives what the broadcast saw
//! (FLV tags as received, closed TS segments) through a bounded channel and writes them, so disk I/O
//! never runs on an RTMP session or a tokio worker. A write error stops that format's recording (logged,
//! counted) and the broadcast goes on.
//!
//! Crash safety: a segment file is written and `sync_data`ed before the playlist lists it, the playlist
//! is replaced atomically (temp file, `sync_data`, rename), and the directory is synced after each
//! rename. A crash of the process or the machine therefore loses at most the segment being written;
//! [`super::recover`] finishes such playlists on the next start. The FLV file is flushed to the kernel
//! every second (so a crash of media loses at most a second; the kernel keeps what was flushed) and
//! `sync_data`ed at each segment boundary and at the end.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{error, info, warn};

use super::flv::{self, Timeline};
use super::vod::{Entry, VodPlaylist};
use super::{Formats, RecordStats};

/// Something the broadcast hands to its recording.
pub enum Job {
    /// An `onMetaData` script tag body ([`flv::on_metadata`]).
    Metadata(Vec<u8>),
    /// An audio or video message as received: FLV tag type, RTMP timestamp, body.
    Tag {
        kind: u8,
        timestamp: u32,
        data: Bytes,
    },
    /// A closed MPEG-TS segment, the very bytes the live path produced.
    Segment {
        data: Bytes,
        duration: f64,
        discontinuity: bool,
    },
}

/// A finished, intact recording file, for `on_record_done`.
#[derive(Debug, Clone)]
pub struct Done {
    /// nginx-rtmp's recorder name: `hls` or `flv`.
    pub recorder: &'static str,
    pub path: PathBuf,
}

/// What one writer records, and where.
pub struct Plan {
    /// `<record-dir>/<stream>/<start>`.
    pub dir: PathBuf,
    pub stream: String,
    pub formats: Formats,
    /// The configured segment duration, the playlist's least target duration.
    pub min_target: u32,
}

/// The playlist's file name in a recording directory.
pub const PLAYLIST: &str = "index.m3u8";
const FLV_FLUSH: Duration = Duration::from_secs(1);

/// Runs one recording until the broadcast drops its sender; returns the files finished intact. When
/// `abandoned` is set (the broadcast found the channel full), it stops at once and returns nothing.
pub fn run(
    plan: Plan,
    rx: Receiver<Job>,
    abandoned: &AtomicBool,
    stats: &RecordStats,
) -> Vec<Done> {
    // The leaf must be new: an existing one would mean two writers (say two media processes sharing the
    // directory) mixing their files.
    let created = match plan.dir.parent() {
        Some(parent) => fs::create_dir_all(parent).and_then(|()| fs::create_dir(&plan.dir)),
        None => fs::create_dir(&plan.dir),
    };
    if let Err(e) = created {
        let n = u64::from(plan.formats.hls) + u64::from(plan.formats.flv);
        stats.write_errors.inc();
        stats.failed.add(n);
        error!(dir = %plan.dir.display(), error = %e, "recording not started: cannot create its directory");
        return Vec::new();
    }
    let mut hls = plan
        .formats
        .hls
        .then(|| Hls::new(&plan.dir, plan.min_target));
    let mut flv = plan
        .formats
        .flv
        .then(|| FlvFile::new(plan.dir.join(format!("{}.flv", plan.stream))));
    stats
        .started
        .add(u64::from(hls.is_some()) + u64::from(flv.is_some()));
    info!(dir = %plan.dir.display(), hls = hls.is_some(), flv = flv.is_some(), "recording started");

    while let Ok(job) = rx.recv() {
        if abandoned.load(Ordering::Relaxed) {
            break;
        }
        match job {
            Job::Segment {
                data,
                duration,
                discontinuity,
            } => {
                fail_on_error(&mut hls, stats, "hls", |h| {
                    h.segment(&data, duration, discontinuity, stats)
                });
                // A segment boundary is a good moment to make the FLV durable too.
                fail_on_error(&mut flv, stats, "flv", |f| f.sync());
            }
            Job::Tag {
                kind,
                timestamp,
                data,
            } => fail_on_error(&mut flv, stats, "flv", |f| {
                f.tag(kind, timestamp, &data, stats)
            }),
            Job::Metadata(body) => {
                fail_on_error(&mut flv, stats, "flv", |f| f.metadata(&body, stats))
            }
        }
        if hls.is_none() && flv.is_none() {
            // Both formats failed: dropping the receiver tells the broadcast to stop sending.
            return Vec::new();
        }
    }
    if abandoned.load(Ordering::Relaxed) {
        let n = u64::from(hls.is_some()) + u64::from(flv.is_some());
        stats.failed.add(n);
        error!(dir = %plan.dir.display(), "recording abandoned: the disk did not keep up with the broadcast");
        return Vec::new();
    }

    let mut done = Vec::new();
    if let Some(h) = hls.take() {
        match h.finish() {
            Ok(Some(path)) => done.push(Done {
                recorder: "hls",
                path,
            }),
            Ok(None) => info!("no segment was recorded: no HLS recording"),
            Err(e) => {
                stats.write_errors.inc();
                stats.failed.inc();
                error!(error = %e, "HLS recording could not be finished");
            }
        }
    }
    if let Some(f) = flv.take() {
        match f.finish() {
            Ok(Some(path)) => done.push(Done {
                recorder: "flv",
                path,
            }),
            Ok(None) => info!("nothing was recorded: no FLV recording"),
            Err(e) => {
                stats.write_errors.inc();
                stats.failed.inc();
                error!(error = %e, "FLV recording could not be finished");
            }
        }
    }
    stats.finished.add(done.len() as u64);
    if done.is_empty() {
        // Nothing was recorded (a publisher that sent no media): leave no empty directory behind.
        let _ = fs::remove_dir(&plan.dir);
    } else {
        // The final playlist's rename, durable against power loss.
        let _ = sync_dir(&plan.dir);
    }
    done
}

/// Runs `f` on a format still recording; on error, stops that format for good.
fn fail_on_error<T>(
    slot: &mut Option<T>,
    stats: &RecordStats,
    format: &str,
    f: impl FnOnce(&mut T) -> io::Result<()>,
) {
    let Some(w) = slot.as_mut() else {
        return;
    };
    if let Err(e) = f(w) {
        stats.write_errors.inc();
        stats.failed.inc();
        error!(format, error = %e, "recording write failed; this recording stops, the live stream goes on");
        *slot = None;
    }
}

struct Hls {
    dir: PathBuf,
    playlist: VodPlaylist,
}

impl Hls {
    fn new(dir: &Path, min_target: u32) -> Self {
        Self {
            dir: dir.to_owned(),
            playlist: VodPlaylist::new(min_target),
        }
    }

    fn segment(
        &mut self,
        data: &[u8],
        duration: f64,
        discontinuity: bool,
        stats: &RecordStats,
    ) -> io::Result<()> {
        let uri = format!("{}.ts", self.playlist.entries().len());
        let path = self.dir.join(&uri);
        if let Err(e) = write_durably(&path, data) {
            // Not listed, so never served; recovery would delete it too.
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        stats.bytes.add(data.len() as u64);
        self.playlist.push(Entry {
            uri,
            duration,
            discontinuity,
        });
        self.write_playlist()?;
        // The new segment's directory entry and the rename reach the disk too: a power loss then costs
        // at most the open segment, like a crash of the process.
        sync_dir(&self.dir)
    }

    fn write_playlist(&self) -> io::Result<()> {
        replace_atomically(&self.dir.join(PLAYLIST), self.playlist.render().as_bytes())
    }

    fn finish(mut self) -> io::Result<Option<PathBuf>> {
        if self.playlist.entries().is_empty() {
            return Ok(None);
        }
        self.playlist.end();
        self.write_playlist()?;
        Ok(Some(self.dir.join(PLAYLIST)))
    }
}

struct FlvFile {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    timeline: Timeline,
    tags: u64,
    flushed: Instant,
}

impl FlvFile {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: None,
            timeline: Timeline::default(),
            tags: 0,
            flushed: Instant::now(),
        }
    }

    /// The open file, created with its header on first use.
    fn file(&mut self, stats: &RecordStats) -> io::Result<&mut BufWriter<File>> {
        if self.file.is_none() {
            let mut f = BufWriter::with_capacity(256 * 1024, File::create(&self.path)?);
            if let Some(dir) = self.path.parent() {
                // Once, so the file itself survives a power loss, not only its synced content.
                sync_dir(dir)?;
            }
            f.write_all(&flv::file_header())?;
            stats.bytes.add(13);
            self.file = Some(f);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("FLV file not open"))
    }

    fn write_tag(&mut self, kind: u8, ts: u32, body: &[u8], stats: &RecordStats) -> io::Result<()> {
        if body.len() > flv::MAX_BODY {
            warn!(bytes = body.len(), "tag too large for FLV; not recorded");
            return Ok(());
        }
        let f = self.file(stats)?;
        f.write_all(&flv::tag_header(kind, ts, body.len()))?;
        f.write_all(body)?;
        f.write_all(&flv::previous_tag_size(body.len()))?;
        stats.bytes.add(15 + body.len() as u64);
        if self.flushed.elapsed() >= FLV_FLUSH {
            self.flushed = Instant::now();
            self.file(stats)?.flush()?;
        }
        Ok(())
    }

    fn metadata(&mut self, body: &[u8], stats: &RecordStats) -> io::Result<()> {
        let ts = self.timeline.now();
        self.write_tag(flv::SCRIPT, ts, body, stats)
    }

    fn tag(&mut self, kind: u8, rtmp_ts: u32, body: &[u8], stats: &RecordStats) -> io::Result<()> {
        let ts = self.timeline.rebase(rtmp_ts);
        self.tags += 1;
        self.write_tag(kind, ts, body, stats)
    }

    fn sync(&mut self) -> io::Result<()> {
        if let Some(f) = self.file.as_mut() {
            f.flush()?;
            f.get_ref().sync_data()?;
            self.flushed = Instant::now();
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<Option<PathBuf>> {
        self.sync()?;
        if self.tags == 0 {
            if self.file.take().is_some() {
                let _ = fs::remove_file(&self.path);
            }
            return Ok(None);
        }
        Ok(Some(self.path))
    }
}

/// Makes a directory's entries (new files, renames) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `path` with `data`, on disk before it returns.
fn write_durably(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    f.sync_data()
}

/// Replaces `path` with `data` so a reader (or a crash) sees the old or the new content, never a mix.
pub fn replace_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write_durably(&tmp, data)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("media-writer-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn plan(dir: PathBuf) -> Plan {
        Plan {
            dir,
            stream: "cam".into(),
            formats: Formats {
                hls: true,
                flv: true,
            },
            min_target: 2,
        }
    }

    #[test]
    fn writes_segments_playlist_and_flv_then_reports_them() {
        let root = temp("ok");
        let dir = root.join("cam").join("20261124T044012.345Z");
        let (tx, rx) = sync_channel(16);
        tx.send(Job::Tag {
            kind: flv::VIDEO,
            timestamp: 1000,
            data: Bytes::from_static(&[0x17, 0, 0, 0, 0]),
        })
        .expect("send");
        tx.send(Job::Tag {
            kind: flv::AUDIO,
            timestamp: 1040,
            data: Bytes::from_static(&[0xaf, 1, 2]),
        })
        .expect("send");
        for i in 0..2u8 {
            tx.send(Job::Segment {
                data: Bytes::from(vec![i; 188]),
                duration: 2.0,
                discontinuity: i == 0,
            })
            .expect("send");
        }
        drop(tx);
        let stats = RecordStats::default();
        let done = run(plan(dir.clone()), rx, &AtomicBool::new(false), &stats);
        let names: Vec<_> = done.iter().map(|d| d.recorder).collect();
        assert_eq!(names, ["hls", "flv"]);
        assert_eq!(done[0].path, dir.join(PLAYLIST));
        let p = VodPlaylist::parse(&fs::read_to_string(dir.join(PLAYLIST)).expect("read"))
            .expect("parse");
        assert!(p.ended());
        assert_eq!(p.entries().len(), 2);
        assert_eq!(fs::read(dir.join("1.ts")).expect("read"), vec![1u8; 188]);
        let f = fs::read(dir.join("cam.flv")).expect("read");
        // Header, then the video tag at 0 ms, then the audio tag at 40 ms (rebased on the first tag).
        assert_eq!(&f[..13], &flv::file_header());
        assert_eq!(&f[13..24], &flv::tag_header(flv::VIDEO, 0, 5));
        assert_eq!(&f[33..44], &flv::tag_header(flv::AUDIO, 40, 3));
        assert_eq!(f.len(), 13 + (15 + 5) + (15 + 3));
        assert_eq!(stats.started.get(), 2);
        assert_eq!(stats.finished.get(), 2);
        assert_eq!(stats.failed.get(), 0);
        assert_eq!(stats.bytes.get(), 2 * 188 + f.len() as u64);
        fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn an_unusable_directory_fails_the_recording_without_a_result() {
        let root = temp("enotdir");
        fs::create_dir_all(&root).expect("mkdir");
        let file = root.join("not-a-dir");
        fs::write(&file, b"x").expect("write");
        let (tx, rx) = sync_channel(4);
        let stats = RecordStats::default();
        let done = run(plan(file.join("cam")), rx, &AtomicBool::new(false), &stats);
        assert!(done.is_empty());
        // The broadcast's next send sees the writer gone and stops sending.
        assert!(tx
            .try_send(Job::Metadata(Vec::new()))
            .is_err_and(|e| matches!(e, std::sync::mpsc::TrySendError::Disconnected(_))));
        assert_eq!(stats.failed.get(), 2);
        assert_eq!(stats.write_errors.get(), 1);
        assert_eq!(stats.started.get(), 0);
        fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn a_write_error_stops_one_format_and_the_other_goes_on() {
        let root = temp("midway");
        let dir = root.join("cam").join("20261124T044012.345Z");
        fs::create_dir_all(dir.join("1.ts")).expect("a directory where segment 1 goes");
        let (tx, rx) = sync_channel(16);
        let stats = RecordStats::default();
        let seg = |i: u8| Job::Segment {
            data: Bytes::from(vec![i; 188]),
            duration: 2.0,
            discontinuity: false,
        };
        let tag = |ts| Job::Tag {
            kind: flv::VIDEO,
            timestamp: ts,
            data: Bytes::from_static(&[0x17, 1, 0, 0, 0]),
        };
        // The directory exists already (it holds `1.ts/`): that alone must refuse the recording.
        tx.send(seg(0)).expect("send");
        let done = run(plan(dir.clone()), rx, &AtomicBool::new(false), &stats);
        assert!(done.is_empty());
        assert_eq!(stats.failed.get(), 2);

        fs::remove_dir_all(&root).ok();
        let stats = RecordStats::default();
        let (tx, rx) = sync_channel(16);
        let writer = {
            let dir = dir.clone();
            std::thread::spawn(move || run(plan(dir), rx, &AtomicBool::new(false), &stats))
        };
        tx.send(tag(0)).expect("send");
        tx.send(seg(0)).expect("send");
        // Segment 1 cannot be created once the writer made the directory: EISDIR.
        while !dir.join(PLAYLIST).exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        fs::create_dir(dir.join("1.ts")).expect("mkdir");
        tx.send(tag(40)).expect("send");
        tx.send(seg(1)).expect("send");
        tx.send(tag(80)).expect("send");
        drop(tx);
        let done = writer.join().expect("writer");
        let names: Vec<_> = done.iter().map(|d| d.recorder).collect();
        assert_eq!(names, ["flv"], "only the FLV recording is intact");
        let p = VodPlaylist::parse(&fs::read_to_string(dir.join(PLAYLIST)).expect("read"))
            .expect("parse");
        assert_eq!(p.entries().len(), 1);
        assert!(!p.ended(), "a failed recording is not marked complete");
        assert_eq!(
            fs::read(dir.join("cam.flv")).expect("read").len(),
            13 + 3 * 20
        );
        fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn an_abandoned_recording_reports_nothing() {
        let root = temp("abandoned");
        let (tx, rx) = sync_channel(4);
        tx.send(Job::Segment {
            data: Bytes::from_static(&[0; 188]),
            duration: 2.0,
            discontinuity: true,
        })
        .expect("send");
        drop(tx);
        let stats = RecordStats::default();
        let done = run(plan(root.join("x")), rx, &AtomicBool::new(true), &stats);
        assert!(done.is_empty());
        assert_eq!(stats.failed.get(), 2);
        assert_eq!(stats.finished.get(), 0);
        fs::remove_dir_all(&root).ok();
    }
}
