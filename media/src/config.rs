//! Settings: flags, environment variables and an optional TOML file, in that order of precedence.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use serde::Deserialize;

/// Command line of `media`. Every flag can also come from its environment variable or, under the same
/// name in snake_case, from the `--config` TOML file.
/// Default `--publish-read-interval-ms`. Paired runs at 20 publishers (LL-HLS on, both servers on one
/// broker, the same minute): 20 ms cost 0.190-0.194 CPU-s per stream-minute, 50 ms 0.136-0.160, 100 ms
/// 0.149: each read also wakes the runtime, re-arms a timer and (on loopback) sends the publisher an
/// ACK, and at 20 ms those were a fifth of media's CPU. 50 ms is an eighth of a 334 ms LL-HLS part and
/// adds 25 ms to glass-to-glass latency on average; SRS's merged read waits up to 350 ms.
const DEFAULT_PUBLISH_READ_INTERVAL_MS: u64 = 50;

#[derive(Parser, Debug, Default, Deserialize)]
#[command(
    name = "media",
    version,
    about = "RTMP ingest origin: remuxes RTMP (H.264/AAC) into HLS MPEG-TS segments and produces them to Kafka.",
    after_help = "Publish with: ffmpeg -re -i INPUT -c copy -f flv rtmp://HOST:1935/live/STREAM"
)]
#[serde(deny_unknown_fields, default)]
pub struct Args {
    /// TOML file with any of these settings (keys in snake_case, e.g. `rtmp_listen = "0.0.0.0:1935"`).
    #[arg(long, env = "MEDIA_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to accept RTMP publishers on [default: 0.0.0.0:1935].
    #[arg(long, env = "MEDIA_RTMP_LISTEN")]
    pub rtmp_listen: Option<SocketAddr>,
    /// Address of the HTTP endpoint (/healthz) [default: 127.0.0.1:8081].
    #[arg(long, env = "MEDIA_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Kafka bootstrap servers, comma-separated [default: 127.0.0.1:9092].
    #[arg(long, env = "MEDIA_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Topic segments are produced to [default: live-topic].
    #[arg(long, env = "MEDIA_TOPIC")]
    pub topic: Option<String>,
    /// Target segment duration in seconds; segments are cut on the first keyframe after it [default: 2].
    #[arg(long, env = "MEDIA_SEGMENT_SECONDS")]
    pub segment_seconds: Option<f64>,
    /// Part target of the low-latency HLS rendition in milliseconds: segments are also cut into fMP4
    /// parts of at most about this long, produced as soon as each closes; 0 turns the rendition off
    /// (halves the topic's bytes) [default: 334].
    #[arg(long, env = "MEDIA_PART_TARGET_MS")]
    pub part_target_ms: Option<u64>,
    /// Largest Kafka record the producer may send, in bytes; segments are split into chunks below it and
    /// librdkafka's `message.max.bytes` is set to it. Keep it <= the topic's `max.message.bytes`
    /// [default: 1000000].
    #[arg(long, env = "MEDIA_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// LiveDTO schema version of the records' `livedto` header: 1, which every edge reads, or 2
    /// (integer durations, chunk framing apart, a rendition id), which edges read since this release.
    /// Upgrade every edge first, then set 2 on the origins (docs/livedto.md) [default: 1].
    #[arg(long, env = "MEDIA_LIVEDTO_VERSION")]
    pub livedto_version: Option<u32>,
    /// Bytes of segments that may wait for the broker (e.g. while it is down) before new segments are
    /// dropped instead of queued [default: 268435456].
    #[arg(long, env = "MEDIA_MAX_QUEUE_BYTES")]
    pub max_queue_bytes: Option<usize>,
    /// RTMP application name publishers must use (`rtmp://host/APP/stream`) [default: live].
    #[arg(long, env = "MEDIA_APP")]
    pub app: Option<String>,
    /// Most simultaneous RTMP connections; more are closed at once [default: 1000].
    #[arg(long, env = "MEDIA_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a client has to complete the RTMP handshake [default: 10].
    #[arg(long, env = "MEDIA_HANDSHAKE_TIMEOUT_SECONDS")]
    pub handshake_timeout_seconds: Option<u64>,
    /// Seconds without any byte from a client before it is disconnected [default: 30].
    #[arg(long, env = "MEDIA_IDLE_TIMEOUT_SECONDS")]
    pub idle_timeout_seconds: Option<u64>,
    /// Read a publisher's socket at most once per this many milliseconds, on a clock all connections
    /// share (SRS's "merged read"): with many publishers the server then wakes once per tick instead of
    /// once per packet. Adds at most this much to ingest delay; 0 reads bytes as soon as they arrive
    /// [default: 50].
    #[arg(long, env = "MEDIA_PUBLISH_READ_INTERVAL_MS")]
    pub publish_read_interval_ms: Option<u64>,
    /// nginx-rtmp `on_publish`: POSTed before a broadcast starts; 2xx allows, 3xx with `Location: name`
    /// allows under that name, anything else (or no answer in time) refuses.
    #[arg(long, env = "MEDIA_ON_PUBLISH")]
    pub on_publish: Option<String>,
    /// nginx-rtmp `on_publish_done`: POSTed once when an accepted broadcast ends, however it ends.
    #[arg(long, env = "MEDIA_ON_PUBLISH_DONE")]
    pub on_publish_done: Option<String>,
    /// nginx-rtmp `on_play`: POSTed before an RTMP player starts; answered like `on_publish`.
    #[arg(long, env = "MEDIA_ON_PLAY")]
    pub on_play: Option<String>,
    /// nginx-rtmp `on_play_done`: POSTed once when an accepted player leaves.
    #[arg(long, env = "MEDIA_ON_PLAY_DONE")]
    pub on_play_done: Option<String>,
    /// nginx-rtmp `on_update`: POSTed every --update-interval-seconds while a publisher or player is
    /// connected; a non-2xx answer disconnects it.
    #[arg(long, env = "MEDIA_ON_UPDATE")]
    pub on_update: Option<String>,
    /// nginx-rtmp `on_record_done`: POSTed once per finished recording file (`recorder` is `hls` or
    /// `flv`, `path` the playlist or the .flv), only for recordings written intact.
    #[arg(long, env = "MEDIA_ON_RECORD_DONE")]
    pub on_record_done: Option<String>,
    /// Seconds between `on_update` calls (nginx-rtmp `notify_update_timeout`) [default: 30].
    #[arg(long, env = "MEDIA_UPDATE_INTERVAL_SECONDS")]
    pub update_interval_seconds: Option<u64>,
    /// Milliseconds a hook may take to answer; no answer in time refuses the client [default: 3000].
    #[arg(long, env = "MEDIA_HOOK_TIMEOUT_MS")]
    pub hook_timeout_ms: Option<u64>,
    /// Bearer token the control API (/api/...) requires; unset means no token is asked for.
    #[arg(long, env = "MEDIA_API_TOKEN")]
    pub api_token: Option<String>,
    /// Record broadcasts: `off` or `all` (nginx-rtmp `record all`) [default: off].
    #[arg(long, env = "MEDIA_RECORD")]
    pub record: Option<String>,
    /// Directory recordings go to, one directory per broadcast: DIR/STREAM/UTC-START/ [default:
    /// recordings].
    #[arg(long, env = "MEDIA_RECORD_DIR")]
    pub record_dir: Option<PathBuf>,
    /// What to record: `hls` (VOD playlist of the live segments), `flv` (the tags as received, like
    /// nginx-rtmp) or `hls,flv` [default: hls].
    #[arg(long, env = "MEDIA_RECORD_FORMAT")]
    pub record_format: Option<String>,
    /// Extra librdkafka producer setting KEY=VALUE (repeatable), e.g. for TLS/SASL:
    /// `--kafka-option security.protocol=SASL_SSL`. Env: comma-separated.
    #[arg(
        long = "kafka-option",
        env = "MEDIA_KAFKA_OPTIONS",
        value_delimiter = ','
    )]
    pub kafka_options: Vec<String>,
    /// Log format: `text` for people, `json` for log shippers [default: text].
    #[arg(long, env = "MEDIA_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// Resolved settings with defaults applied.
#[derive(Debug, Clone)]
pub struct Config {
    pub rtmp_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub kafka_brokers: String,
    pub topic: String,
    pub segment: Duration,
    pub part_target: Option<Duration>,
    pub max_message_bytes: usize,
    /// Schema version of the records' metadata.
    pub livedto_version: common::SchemaVersion,
    pub max_queue_bytes: usize,
    pub app: String,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    /// `None`: read publishers as soon as bytes arrive.
    pub publish_read_interval: Option<Duration>,
    pub kafka_options: Vec<(String, String)>,
    pub log_json: bool,
    pub hooks: crate::hooks::HookUrls,
    pub update_interval: Duration,
    pub hook_timeout: Duration,
    pub api_token: Option<String>,
    /// `--record all`: record every broadcast (the `on_publish` answer may still say otherwise).
    pub record_all: bool,
    /// Formats a recording is made in.
    pub record_formats: crate::record::Formats,
    /// Where recordings are written and served from (absolute).
    pub record_dir: PathBuf,
}

impl Config {
    /// Merges flags/env over the config file over defaults, and checks the result.
    pub fn load(cli: Args) -> anyhow::Result<Self> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<Args>(&text).map_err(|e| file_error(path, &text, &e))?
            }
            None => Args::default(),
        };
        let kafka_options = if cli.kafka_options.is_empty() {
            file.kafka_options
        } else {
            cli.kafka_options
        };
        let segment_seconds = cli.segment_seconds.or(file.segment_seconds).unwrap_or(2.0);
        if !(0.1..=60.0).contains(&segment_seconds) {
            bail!("--segment-seconds must be between 0.1 and 60, got {segment_seconds}");
        }
        let part_target_ms = cli.part_target_ms.or(file.part_target_ms).unwrap_or(334);
        if part_target_ms != 0 && !(100..=5000).contains(&part_target_ms) {
            bail!("--part-target-ms must be 0 (off) or between 100 and 5000, got {part_target_ms}");
        }
        if part_target_ms as f64 > segment_seconds * 1000.0 {
            bail!(
                "--part-target-ms ({part_target_ms}) must not exceed --segment-seconds ({segment_seconds} s): lower it, or 0 turns low-latency HLS off"
            );
        }
        let max_message_bytes = cli
            .max_message_bytes
            .or(file.max_message_bytes)
            .unwrap_or(1_000_000);
        if max_message_bytes < 64 * 1024 {
            bail!("--max-message-bytes must be at least 65536, got {max_message_bytes}");
        }
        let version = cli.livedto_version.or(file.livedto_version).unwrap_or(1);
        let Some(livedto_version) = common::SchemaVersion::from_number(version) else {
            bail!("--livedto-version must be 1 or 2, got {version}");
        };
        let log_format = cli
            .log_format
            .or(file.log_format)
            .unwrap_or_else(|| "text".into());
        let log_json = match log_format.as_str() {
            "text" => false,
            "json" => true,
            other => bail!("--log-format must be `text` or `json`, got `{other}`"),
        };
        let record_formats = crate::record::Formats::parse(
            &cli.record_format
                .or(file.record_format)
                .unwrap_or_else(|| "hls".into()),
        )
        .map_err(|e| anyhow::anyhow!("--record-format: {e}"))?;
        let record_all = match cli.record.or(file.record).as_deref().unwrap_or("off") {
            "off" => false,
            "all" => true,
            other => bail!("--record must be `off` or `all`, got `{other}`"),
        };
        let record_dir = cli
            .record_dir
            .or(file.record_dir)
            .unwrap_or_else(|| "recordings".into());
        let record_dir = std::path::absolute(&record_dir)
            .with_context(|| format!("--record-dir `{}`", record_dir.display()))?;
        Ok(Self {
            rtmp_listen: cli
                .rtmp_listen
                .or(file.rtmp_listen)
                .unwrap_or_else(|| ([0, 0, 0, 0], 1935).into()),
            http_listen: cli
                .http_listen
                .or(file.http_listen)
                .unwrap_or_else(|| ([127, 0, 0, 1], 8081).into()),
            kafka_brokers: cli
                .kafka_brokers
                .or(file.kafka_brokers)
                .unwrap_or_else(|| "127.0.0.1:9092".into()),
            topic: cli
                .topic
                .or(file.topic)
                .unwrap_or_else(|| "live-topic".into()),
            segment: Duration::from_secs_f64(segment_seconds),
            part_target: (part_target_ms > 0).then(|| Duration::from_millis(part_target_ms)),
            max_message_bytes,
            livedto_version,
            max_queue_bytes: cli
                .max_queue_bytes
                .or(file.max_queue_bytes)
                .unwrap_or(256 << 20),
            app: cli.app.or(file.app).unwrap_or_else(|| "live".into()),
            max_connections: cli.max_connections.or(file.max_connections).unwrap_or(1000),
            handshake_timeout: Duration::from_secs(
                cli.handshake_timeout_seconds
                    .or(file.handshake_timeout_seconds)
                    .unwrap_or(10),
            ),
            idle_timeout: Duration::from_secs(
                cli.idle_timeout_seconds
                    .or(file.idle_timeout_seconds)
                    .unwrap_or(30),
            ),
            publish_read_interval: Some(Duration::from_millis(
                cli.publish_read_interval_ms
                    .or(file.publish_read_interval_ms)
                    .unwrap_or(DEFAULT_PUBLISH_READ_INTERVAL_MS),
            ))
            .filter(|d| !d.is_zero()),
            kafka_options: parse_kafka_options(&kafka_options)?,
            log_json,
            hooks: crate::hooks::HookUrls {
                on_publish: hook_url(cli.on_publish.or(file.on_publish))?,
                on_publish_done: hook_url(cli.on_publish_done.or(file.on_publish_done))?,
                on_play: hook_url(cli.on_play.or(file.on_play))?,
                on_play_done: hook_url(cli.on_play_done.or(file.on_play_done))?,
                on_update: hook_url(cli.on_update.or(file.on_update))?,
                on_record_done: hook_url(cli.on_record_done.or(file.on_record_done))?,
            },
            update_interval: Duration::from_secs(
                cli.update_interval_seconds
                    .or(file.update_interval_seconds)
                    .unwrap_or(30)
                    .max(1),
            ),
            hook_timeout: Duration::from_millis(
                cli.hook_timeout_ms
                    .or(file.hook_timeout_ms)
                    .unwrap_or(3000)
                    .max(1),
            ),
            api_token: cli.api_token.or(file.api_token).filter(|t| !t.is_empty()),
            record_all,
            record_formats,
            record_dir,
        })
    }
}

/// One line naming the file, line and column, instead of toml's multi-line excerpt.
fn file_error(path: &std::path::Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let offset = e.span().map_or(0, |span| span.start).min(text.len());
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    anyhow::anyhow!("{}:{line}:{column}: {message}", path.display())
}

/// Hook URLs are plain HTTP like nginx-rtmp's; anything else is a configuration mistake caught at start.
fn hook_url(url: Option<String>) -> anyhow::Result<Option<String>> {
    match url.filter(|u| !u.is_empty()) {
        Some(u) if u.starts_with("http://") => Ok(Some(u)),
        Some(u) => bail!("hook URL `{u}` must start with http:// (as nginx-rtmp's notify module)"),
        None => Ok(None),
    }
}

fn parse_kafka_options(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => bail!("--kafka-option expects KEY=VALUE, got `{s}`"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The example file loads, sets exactly the defaults, and names every setting the CLI has.
    #[test]
    fn example_config_covers_every_key() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/media.toml");
        let text = std::fs::read_to_string(&path).expect("config/media.toml");
        let table: toml::Table = toml::from_str(&text).expect("valid TOML");
        for arg in Args::command().get_arguments() {
            let key = arg.get_id().as_str();
            if matches!(key, "config" | "help" | "version") {
                continue;
            }
            assert!(table.contains_key(key), "config/media.toml lacks `{key}`");
        }
        let from_file = Config::load(Args {
            config: Some(path),
            ..Args::default()
        })
        .expect("example loads");
        let defaults = Config::load(Args::default()).expect("defaults");
        assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn file_keys_are_checked_and_flags_win() {
        let err = toml::from_str::<Args>("rtmp_listen = \"127.0.0.1:1\"\nbogus = 1\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("bogus"), "{err}");
        let bad = std::env::temp_dir().join(format!("media-bad-config-{}", std::process::id()));
        std::fs::write(&bad, "topic = \"t\"\nbogus = 1\n").expect("write");
        let err = Config::load(Args {
            config: Some(bad.clone()),
            ..Args::default()
        })
        .expect_err("unknown key");
        std::fs::remove_file(&bad).ok();
        let msg = format!("{err:#}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert!(msg.contains(":2:1: unknown field `bogus`"), "{msg}");

        let dir = std::env::temp_dir().join(format!("media-config-test-{}", std::process::id()));
        std::fs::write(&dir, "topic = \"from-file\"\nsegment_seconds = 4.0\n").expect("write");
        let cli = Args::try_parse_from([
            "media",
            "--config",
            dir.to_str().expect("utf8"),
            "--topic",
            "from-flag",
        ])
        .expect("parse");
        let cfg = Config::load(cli).expect("load");
        std::fs::remove_file(&dir).ok();
        assert_eq!(cfg.topic, "from-flag");
        assert_eq!(cfg.segment, Duration::from_secs(4));
        assert_eq!(cfg.kafka_brokers, "127.0.0.1:9092");
    }

    #[test]
    fn part_target_is_bounded_and_zero_turns_it_off() {
        let load = |part: Option<u64>, segment: Option<f64>| {
            Config::load(Args {
                part_target_ms: part,
                segment_seconds: segment,
                ..Args::default()
            })
        };
        let default = load(None, None).expect("defaults");
        assert_eq!(default.part_target, Some(Duration::from_millis(334)));
        assert_eq!(load(Some(0), None).expect("off").part_target, None);
        assert_eq!(
            load(Some(500), None).expect("500 ms").part_target,
            Some(Duration::from_millis(500))
        );
        let err = load(Some(50), None).expect_err("too short");
        assert!(format!("{err}").contains("--part-target-ms"), "{err}");
        let err = load(Some(1500), Some(1.0)).expect_err("longer than a segment");
        assert!(format!("{err}").contains("--segment-seconds"), "{err}");
    }

    #[test]
    fn livedto_version_defaults_to_1_and_accepts_only_1_or_2() {
        let load = |v: Option<u32>| {
            Config::load(Args {
                livedto_version: v,
                ..Args::default()
            })
        };
        assert_eq!(
            load(None).expect("default").livedto_version,
            common::SchemaVersion::V1
        );
        assert_eq!(
            load(Some(2)).expect("v2").livedto_version,
            common::SchemaVersion::V2
        );
        let err = load(Some(3)).expect_err("no version 3");
        assert!(format!("{err}").contains("--livedto-version"), "{err}");
    }
}
