//! Recording every broadcast (nginx-rtmp's `record all`): a VOD HLS recording made of the very segments
//! the live path produced, and/or an FLV file of the tags as received, per broadcast under
//! `<record-dir>/<stream>/<UTC start>/`.
//!
//! It runs inside media because only media sees the tags as received (Kafka carries TS segments). Each
//! recording has its own writer thread fed by a bounded channel ([`writer`]); the broadcast never waits
//! for the disk: when the channel is full the recording is abandoned (logged, counted) and the live
//! stream goes on. Pure parts: [`name`] (directory names), [`vod`] (playlists), [`flv`] (FLV framing);
//! [`recover`] finishes recordings a crash interrupted; [`serve`] lists and serves them over HTTP.

pub mod flv;
pub mod name;
pub mod recover;
pub mod serve;
pub mod vod;
pub mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use media::flv::Metadata;
use tokio_util::task::TaskTracker;
use tracing::{error, Instrument};

use crate::hooks::{ClientInfo, Hooks};
use writer::{Job, Plan};

/// Jobs a recording may have queued for its writer: about ten seconds of a typical stream's messages
/// (~100 a second). A writer further behind than that is failing, not slow.
const QUEUE: usize = 1024;

/// Which formats are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Formats {
    pub hls: bool,
    pub flv: bool,
}

impl Formats {
    /// Parses `--record-format`: `hls`, `flv` or both, comma-separated.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut f = Self::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "hls" => f.hls = true,
                "flv" => f.flv = true,
                other => {
                    return Err(format!(
                        "unknown recording format `{other}` (use hls, flv or hls,flv)"
                    ))
                }
            }
        }
        if !f.hls && !f.flv {
            return Err("--record-format names no format (use hls, flv or hls,flv)".into());
        }
        Ok(f)
    }
}

/// A counter for /metrics.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Recording counters (one recording = one format of one broadcast).
#[derive(Debug, Default)]
pub struct RecordStats {
    pub started: Counter,
    pub finished: Counter,
    pub failed: Counter,
    pub recovered: Counter,
    pub bytes: Counter,
    pub write_errors: Counter,
}

impl RecordStats {
    /// Adds the recording metrics to a `/metrics` scrape.
    pub fn render(&self, x: &service::Scrape) {
        let rows: [(&str, &str, &Counter); 6] = [
            (
                "media_recordings_started_total",
                "Recordings started (one per format and broadcast).",
                &self.started,
            ),
            (
                "media_recordings_finished_total",
                "Recordings finished intact (on_record_done is sent for each).",
                &self.finished,
            ),
            (
                "media_recordings_failed_total",
                "Recordings stopped by a write error or a writer that fell behind.",
                &self.failed,
            ),
            (
                "media_recordings_recovered_total",
                "Recordings a crash interrupted, finished at start.",
                &self.recovered,
            ),
            (
                "media_recording_bytes_total",
                "Bytes written to recordings.",
                &self.bytes,
            ),
            (
                "media_recording_write_errors_total",
                "Failed writes, directory creations and renames of recordings.",
                &self.write_errors,
            ),
        ];
        for (name, help, c) in rows {
            x.counter(name, help, c.get());
        }
    }
}

/// Starts recordings and tracks their writers so shutdown can wait for them (and their hooks).
#[derive(Clone)]
pub struct Recorder {
    root: PathBuf,
    formats: Formats,
    min_target: u32,
    stats: Arc<RecordStats>,
    hooks: Hooks,
    tasks: TaskTracker,
}

impl Recorder {
    /// A recorder writing `formats` under `root`.
    pub fn new(
        root: PathBuf,
        formats: Formats,
        segment: Duration,
        stats: Arc<RecordStats>,
        hooks: Hooks,
    ) -> Self {
        Self {
            root,
            formats,
            min_target: (segment.as_secs_f64().round() as u32).max(1),
            stats,
            hooks,
            tasks: TaskTracker::new(),
        }
    }

    /// Starts recording a broadcast of `stream` that started at `started_at_ms`. `client` and `args` are
    /// the publisher's, for `on_record_done`. `None` if no writer thread could be started (logged).
    pub fn start(
        &self,
        stream: &str,
        started_at_ms: u64,
        client: &ClientInfo,
        args: &[(String, String)],
    ) -> Option<Recording> {
        let dir = self.root.join(stream).join(name::dir_name(started_at_ms));
        let (tx, rx) = sync_channel(QUEUE);
        let abandoned = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let plan = Plan {
            dir,
            stream: stream.to_owned(),
            formats: self.formats,
            min_target: self.min_target,
        };
        let span = tracing::info_span!("record", stream = %stream);
        let (stats, flag) = (self.stats.clone(), abandoned.clone());
        let thread_span = span.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("rec-{stream}"))
            .spawn(move || {
                let _enter = thread_span.enter();
                let done = writer::run(plan, rx, &flag, &stats);
                let _ = done_tx.send(done);
            });
        if let Err(e) = spawned {
            self.stats
                .failed
                .add(u64::from(self.formats.hls) + u64::from(self.formats.flv));
            error!(%stream, error = %e, "recording not started: no writer thread");
            return None;
        }
        let (hooks, client, args, name) = (
            self.hooks.clone(),
            client.clone(),
            args.to_vec(),
            stream.to_owned(),
        );
        self.tasks.spawn(
            async move {
                // The writer's answer comes when the broadcast ended and the files are finished.
                if let Ok(done) = done_rx.await {
                    for d in done {
                        hooks.record_done(&client, &name, d.recorder, &d.path, &args);
                    }
                }
            }
            .instrument(span),
        );
        Some(Recording {
            tx: Some(tx),
            abandoned,
            formats: self.formats,
            stream: stream.to_owned(),
        })
    }

    /// Waits (bounded) for writers still finishing their files, at shutdown; their `on_record_done`
    /// calls are then in flight in [`Hooks`], whose own drain waits for them.
    pub async fn drain(&self, timeout: Duration) {
        crate::shutdown::drain(&self.tasks, timeout, "recording writers").await;
    }
}

/// A broadcast's side of its recording; dropping it ends the recording (the writer then finishes the
/// files and `on_record_done` fires).
pub struct Recording {
    tx: Option<SyncSender<Job>>,
    abandoned: Arc<AtomicBool>,
    formats: Formats,
    stream: String,
}

impl Recording {
    /// onMetaData from the publisher.
    pub fn metadata(&mut self, m: &Metadata) {
        if self.formats.flv {
            self.send(Job::Metadata(flv::on_metadata(m)));
        }
    }

    /// An audio ([`flv::AUDIO`]) or video ([`flv::VIDEO`]) message as received.
    pub fn tag(&mut self, kind: u8, timestamp: u32, data: &Bytes) {
        if self.formats.flv {
            self.send(Job::Tag {
                kind,
                timestamp,
                data: data.clone(),
            });
        }
    }

    /// A closed segment of the live path.
    pub fn segment(&mut self, data: &Bytes, duration: f64, discontinuity: bool) {
        if self.formats.hls {
            self.send(Job::Segment {
                data: data.clone(),
                duration,
                discontinuity,
            });
        }
    }

    fn send(&mut self, job: Job) {
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                // The writer is more than QUEUE messages behind: waiting would stall the broadcast.
                self.abandoned.store(true, Ordering::Relaxed);
                self.tx = None;
                error!(stream = %self.stream, "recording writer fell behind; abandoning the recording");
            }
            // The writer stopped after a write error it logged and counted.
            Err(TrySendError::Disconnected(_)) => self.tx = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!(
            Formats::parse("hls"),
            Ok(Formats {
                hls: true,
                flv: false
            })
        );
        assert_eq!(
            Formats::parse("hls, flv"),
            Ok(Formats {
                hls: true,
                flv: true
            })
        );
        assert!(Formats::parse("mp4").is_err());
        assert!(Formats::parse(",").is_err());
    }
}
