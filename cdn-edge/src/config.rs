//! Settings: flags, environment variables and an optional TOML file, in that order of precedence,
//! over defaults that run on one machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Largest accepted `--window-segments`: a playlist is re-rendered on every segment, so its length is
/// bounded; a thousand segments is over half an hour of 2 s segments.
const MAX_WINDOW_SEGMENTS: usize = 1000;

/// Target durations of silence before a live playlist is ended. A healthy origin delivers a segment
/// every target duration at most; 4 leaves room for one late segment plus broker jitter without ending a
/// live stream by mistake (which stops every player), and is still about when a player's own buffer (3
/// target durations in hls.js) has run dry.
const DEFAULT_STALE_AFTER: u32 = 4;

/// Command line of `cdn-edge`. Every flag can also come from its environment variable or, under the
/// same name in snake_case, from the `--config` TOML file.
#[derive(Parser, Debug, Default, Deserialize)]
#[command(
    name = "cdn-edge",
    version,
    about = "CDN edge: reads every partition of the live Kafka topic into memory and serves HLS \
             playlists and MPEG-TS segments to viewers over HTTP.",
    after_help = "Watch with: ffplay http://HOST:8080/live/STREAM/index.m3u8\n\
                  Precedence: flag > environment variable > --config file > default."
)]
#[serde(deny_unknown_fields, default)]
pub struct Args {
    /// TOML file with any of these settings (keys are the flag names in snake_case, e.g.
    /// `http_listen = "0.0.0.0:8080"`); an unknown key is an error.
    #[arg(long, env = "EDGE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address viewers connect to. All interfaces by default, because an edge exists to serve
    /// viewers on other machines [default: 0.0.0.0:8080].
    #[arg(long, env = "EDGE_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Kafka bootstrap servers, comma-separated [default: 127.0.0.1:9092].
    #[arg(long, env = "EDGE_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Topic the origins produce segments to; every partition of it is read [default: live-topic].
    #[arg(long, env = "EDGE_TOPIC")]
    pub topic: Option<String>,
    /// Segments listed in each live playlist, 1 to 1000 [default: 6].
    #[arg(long, env = "EDGE_WINDOW_SEGMENTS")]
    pub window_segments: Option<usize>,
    /// Bytes of segments kept in memory; the least recently used are dropped beyond it
    /// [default: 536870912 (512 MiB)].
    #[arg(long, env = "EDGE_CACHE_BYTES")]
    pub cache_bytes: Option<u64>,
    /// On start, read the topic from this many seconds ago, so a new or restarted edge serves a full
    /// live window at once [default: enough for --window-segments: (window + 1) x the longest target
    /// duration the newest records name, at most 60 s; 30 if they name none].
    #[arg(long, env = "EDGE_LOOKBACK_SECONDS")]
    pub lookback_seconds: Option<u64>,
    /// Seconds a segment stays servable after it arrived, and a stream without any message keeps its
    /// playlist. Keep it above the window's duration [default: 120].
    #[arg(long, env = "EDGE_SEGMENT_TTL_SECONDS")]
    pub segment_ttl_seconds: Option<u64>,
    /// End a live stream's playlist (`#EXT-X-ENDLIST`) when no segment of it arrived for this many
    /// target durations while this edge is caught up with a reachable broker: its origin died without
    /// saying so. 0 never ends a playlist on silence [default: 4].
    #[arg(long, env = "EDGE_STALE_AFTER_TARGET_DURATIONS")]
    pub stale_after_target_durations: Option<u32>,
    /// Extra librdkafka consumer setting KEY=VALUE (repeatable), e.g. for TLS/SASL:
    /// `--kafka-option security.protocol=SASL_SSL`. Env: comma-separated.
    #[arg(
        long = "kafka-option",
        env = "EDGE_KAFKA_OPTIONS",
        value_delimiter = ','
    )]
    #[serde(alias = "kafka_option")]
    pub kafka_options: Vec<String>,
    /// Log format: `text` for people, `json` for log shippers [default: text]. Verbosity: RUST_LOG.
    #[arg(long, env = "EDGE_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// Resolved settings with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// Kafka bootstrap servers.
    pub kafka_brokers: String,
    /// Topic to consume.
    pub topic: String,
    /// Segments per live playlist.
    pub window_segments: usize,
    /// Byte bound of the segment cache.
    pub cache_bytes: u64,
    /// How far back to start reading on start.
    /// `None`: derived from the window and the streams' target durations.
    pub lookback: Option<Duration>,
    /// Segment (and idle stream) lifetime.
    pub segment_ttl: Duration,
    /// Target durations of silence after which a live playlist is ended; 0: never.
    pub stale_after_target_durations: u32,
    /// Extra librdkafka settings.
    pub kafka_options: Vec<(String, String)>,
    /// Whether logs are JSON.
    pub log_json: bool,
}

/// Why the settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML of the expected shape (names an unknown key). One line, where
    /// toml's own message would draw a multi-line excerpt of the file.
    #[error("config file {path}, line {line}, column {column}: {message} (see config/cdn-edge.toml for every key)")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong (names an unknown key), on one line.
        message: String,
    },
    /// A value is out of range.
    #[error("--{flag} {why}")]
    Invalid {
        /// The flag, as written on the command line.
        flag: &'static str,
        /// What is wrong.
        why: String,
    },
}

impl Config {
    /// Merges flags and environment (already merged by clap) over the config file over defaults, and
    /// checks the result.
    pub fn load(cli: Args) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<Args>(&text).map_err(|e| parse_error(path, &text, &e))?
            }
            None => Args::default(),
        };
        let invalid = |flag, why: String| ConfigError::Invalid { flag, why };

        let window_segments = cli.window_segments.or(file.window_segments).unwrap_or(6);
        if !(1..=MAX_WINDOW_SEGMENTS).contains(&window_segments) {
            return Err(invalid(
                "window-segments",
                format!("must be between 1 and {MAX_WINDOW_SEGMENTS}, got {window_segments}"),
            ));
        }
        let cache_bytes = cli.cache_bytes.or(file.cache_bytes).unwrap_or(512 << 20);
        if cache_bytes == 0 {
            return Err(invalid("cache-bytes", "must be above 0".into()));
        }
        let ttl = cli
            .segment_ttl_seconds
            .or(file.segment_ttl_seconds)
            .unwrap_or(120);
        if ttl == 0 {
            return Err(invalid("segment-ttl-seconds", "must be above 0".into()));
        }
        let lookback = cli.lookback_seconds.or(file.lookback_seconds);
        let stale_after_target_durations = cli
            .stale_after_target_durations
            .or(file.stale_after_target_durations)
            .unwrap_or(DEFAULT_STALE_AFTER);
        let kafka_brokers = cli
            .kafka_brokers
            .or(file.kafka_brokers)
            .unwrap_or_else(|| "127.0.0.1:9092".into());
        if kafka_brokers.trim().is_empty() {
            return Err(invalid("kafka-brokers", "must not be empty".into()));
        }
        let topic = cli
            .topic
            .or(file.topic)
            .unwrap_or_else(|| "live-topic".into());
        if topic.trim().is_empty() {
            return Err(invalid("topic", "must not be empty".into()));
        }
        let log_json = match cli
            .log_format
            .or(file.log_format)
            .as_deref()
            .unwrap_or("text")
        {
            "text" => false,
            "json" => true,
            other => {
                return Err(invalid(
                    "log-format",
                    format!("must be `text` or `json`, got `{other}`"),
                ))
            }
        };
        let kafka_options = if cli.kafka_options.is_empty() {
            file.kafka_options
        } else {
            cli.kafka_options
        };
        Ok(Self {
            http_listen: cli
                .http_listen
                .or(file.http_listen)
                .unwrap_or_else(|| ([0, 0, 0, 0], 8080).into()),
            kafka_brokers,
            topic,
            window_segments,
            cache_bytes,
            lookback: lookback.map(Duration::from_secs),
            segment_ttl: Duration::from_secs(ttl),
            stale_after_target_durations,
            kafka_options: parse_kafka_options(&kafka_options)?,
            log_json,
        })
    }
}

fn parse_error(path: &std::path::Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |span| span.start).min(text.len());
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ConfigError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        message: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

fn parse_kafka_options(raw: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    raw.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(ConfigError::Invalid {
                flag: "kafka-option",
                why: format!("expects KEY=VALUE, got `{s}`"),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::sync::Mutex;

    /// clap reads the process environment; tests that set it must not overlap with tests that parse.
    static ENV: Mutex<()> = Mutex::new(());

    const VARS: [&str; 11] = [
        "EDGE_CONFIG",
        "EDGE_HTTP_LISTEN",
        "EDGE_KAFKA_BROKERS",
        "EDGE_TOPIC",
        "EDGE_WINDOW_SEGMENTS",
        "EDGE_CACHE_BYTES",
        "EDGE_LOOKBACK_SECONDS",
        "EDGE_SEGMENT_TTL_SECONDS",
        "EDGE_STALE_AFTER_TARGET_DURATIONS",
        "EDGE_KAFKA_OPTIONS",
        "EDGE_LOG_FORMAT",
    ];

    fn load(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["cdn-edge"];
        argv.extend_from_slice(args);
        Config::load(Args::try_parse_from(argv).expect("flags parse"))
    }

    fn with_env<T>(vars: &[(&str, &str)], f: impl FnOnce() -> T) -> T {
        let _guard = ENV
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for v in VARS {
            std::env::remove_var(v);
        }
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        let out = f();
        for (k, _) in vars {
            std::env::remove_var(k);
        }
        out
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn defaults_run_on_localhost_and_serve_every_interface() {
        let cfg = with_env(&[], || load(&[])).expect("defaults are valid");
        assert_eq!(
            cfg,
            Config {
                http_listen: ([0, 0, 0, 0], 8080).into(),
                kafka_brokers: "127.0.0.1:9092".into(),
                topic: "live-topic".into(),
                window_segments: 6,
                cache_bytes: 536_870_912,
                lookback: None,
                segment_ttl: Duration::from_secs(120),
                stale_after_target_durations: 4,
                kafka_options: vec![],
                log_json: false,
            }
        );
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let f = file(
            "topic = \"from-file\"\nwindow_segments = 9\ncache_bytes = 1000\n\
             lookback_seconds = 5\nkafka_options = [\"a=1\"]\nlog_format = \"json\"\n\
             stale_after_target_durations = 6\n",
        );
        let path = f.path().to_str().expect("utf8 path");
        let cfg = with_env(
            &[
                ("EDGE_CONFIG", path),
                ("EDGE_TOPIC", "from-env"),
                ("EDGE_WINDOW_SEGMENTS", "8"),
                ("EDGE_KAFKA_OPTIONS", "b=2,c=3"),
                ("EDGE_STALE_AFTER_TARGET_DURATIONS", "5"),
            ],
            || load(&["--window-segments", "7", "--segment-ttl-seconds", "60"]),
        )
        .expect("valid");
        assert_eq!(cfg.topic, "from-env");
        assert_eq!(cfg.window_segments, 7);
        assert_eq!(cfg.cache_bytes, 1000);
        assert_eq!(cfg.lookback, Some(Duration::from_secs(5)));
        assert_eq!(cfg.segment_ttl, Duration::from_secs(60));
        assert_eq!(cfg.stale_after_target_durations, 5);
        assert!(cfg.log_json);
        assert_eq!(
            cfg.kafka_options,
            [("b".into(), "2".into()), ("c".into(), "3".into())]
        );
        assert_eq!(cfg.kafka_brokers, "127.0.0.1:9092");

        let cfg = with_env(&[], || {
            load(&[
                "--config",
                path,
                "--kafka-option",
                "security.protocol=SASL_SSL",
                "--kafka-option",
                "sasl.mechanism=PLAIN",
                "--http-listen",
                "127.0.0.1:9",
            ])
        })
        .expect("valid");
        assert_eq!(cfg.topic, "from-file");
        assert_eq!(cfg.window_segments, 9);
        assert_eq!(cfg.http_listen, ([127, 0, 0, 1], 9).into());
        assert_eq!(cfg.kafka_options.len(), 2);
    }

    #[test]
    fn unknown_file_keys_are_named() {
        let f = file("http_listen = \"127.0.0.1:1\"\nwindow_segmnets = 3\n");
        let path = f.path().to_str().expect("utf8 path");
        let err = with_env(&[], || load(&["--config", path])).expect_err("unknown key");
        assert!(err.to_string().contains("window_segmnets"), "{err}");
        assert!(err.to_string().contains("line 2, column 1"), "{err}");
        assert_eq!(err.to_string().lines().count(), 1, "{err}");
        // The config path itself is not a file key.
        let f = file("config = \"other.toml\"\n");
        let path = f.path().to_str().expect("utf8 path");
        assert!(with_env(&[], || load(&["--config", path])).is_err());
        // `kafka_option`, the flag's own spelling, is accepted too.
        let f = file("kafka_option = [\"a=b\"]\n");
        let path = f.path().to_str().expect("utf8 path");
        let cfg = with_env(&[], || load(&["--config", path])).expect("valid");
        assert_eq!(cfg.kafka_options, [("a".into(), "b".into())]);
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_flag_name() {
        for (args, flag) in [
            (&["--window-segments", "0"][..], "--window-segments"),
            (&["--window-segments", "100000"][..], "--window-segments"),
            (&["--cache-bytes", "0"][..], "--cache-bytes"),
            (&["--segment-ttl-seconds", "0"][..], "--segment-ttl-seconds"),
            (&["--log-format", "xml"][..], "--log-format"),
            (&["--kafka-option", "novalue"][..], "--kafka-option"),
            (&["--topic", ""][..], "--topic"),
        ] {
            let err = with_env(&[], || load(args)).expect_err("invalid");
            assert!(err.to_string().starts_with(flag), "{args:?}: {err}");
        }
        let _guard = ENV
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        assert!(Args::try_parse_from(["cdn-edge", "--http-listen", "nope"]).is_err());
        assert!(Args::try_parse_from(["cdn-edge", "--bogus"]).is_err());
    }

    /// `config/cdn-edge.toml` is documentation that must not drift: it loads, it sets every key the
    /// flags have, and its values are the defaults.
    #[test]
    fn example_config_covers_every_key_with_its_default() {
        use clap::CommandFactory as _;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/cdn-edge.toml");
        let text = std::fs::read_to_string(path).expect("config/cdn-edge.toml");
        let table: toml::Table = toml::from_str(&text).expect("valid TOML");
        let keys: Vec<String> = Args::command()
            .get_arguments()
            .map(|a| a.get_id().as_str().to_owned())
            .filter(|id| !matches!(id.as_str(), "config" | "help" | "version"))
            .collect();
        // A setting whose default is computed (the lookback) is shown commented out.
        let commented = |key: &str| text.contains(&format!("\n# {key} = "));
        for key in &keys {
            assert!(
                table.contains_key(key) || commented(key),
                "config/cdn-edge.toml lacks `{key}`"
            );
        }
        let in_file: Vec<&String> = table.keys().collect();
        let shown = keys
            .iter()
            .filter(|k| !table.contains_key(k.as_str()) && commented(k))
            .count();
        assert_eq!(table.len() + shown, keys.len(), "{in_file:?} vs {keys:?}");
        let from_file = with_env(&[], || load(&["--config", path])).expect("example loads");
        let defaults = with_env(&[], || load(&[])).expect("defaults");
        assert_eq!(from_file, defaults);
    }

    #[test]
    fn missing_config_file_is_reported() {
        let err = with_env(&[], || load(&["--config", "/nonexistent/edge.toml"])).expect_err("");
        assert!(err.to_string().contains("/nonexistent/edge.toml"), "{err}");
    }
}
