//! `docker-compose.yml` cannot be run here (no Docker engine), so it is checked against what can be run:
//! the YAML parses, every service the README promises is there, every MEDIA_*/EDGE_* variable and flag it
//! sets is one the real binaries list in `--help`, listen addresses agree with the published ports, the
//! topic it creates is the one the binaries use, and the topic's `max.message.bytes` admits media's
//! largest record. Its Kafka release and topic settings are the ones every test, the benchmark and
//! `scripts/run-local.sh` run (`scripts/kafka/`). The Dockerfile is checked for the stages and packages
//! the binaries need.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use e2e::kafka::TopicSettings;
use e2e::{bin, workspace_root};
use yaml_rust2::{Yaml, YamlLoader};

/// What a binary's `--help` accepts: its `--flags`, its `[env: NAME=]` variables, and each flag's
/// `[default: ...]`.
struct Help {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
    defaults: BTreeMap<String, String>,
}

fn help(name: &str) -> Result<Help> {
    let path = bin(name);
    let out = Command::new(&path)
        .arg("--help")
        .env_clear()
        .output()
        .with_context(|| {
            format!(
                "running {} --help (cargo build --workspace --bins first)",
                path.display()
            )
        })?;
    ensure!(out.status.success(), "{name} --help failed");
    let text = String::from_utf8(out.stdout)?;
    let mut help = Help {
        flags: BTreeSet::new(),
        env: BTreeSet::new(),
        defaults: BTreeMap::new(),
    };
    let mut current = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(flag) = trimmed
            .split_whitespace()
            .find(|w| w.starts_with("--"))
            .filter(|_| trimmed.starts_with('-'))
        {
            let flag = flag.trim_end_matches(',').to_owned();
            help.flags.insert(flag.clone());
            current = Some(flag);
        }
        for part in line.split("[env: ").skip(1) {
            if let Some(name) = part.split('=').next() {
                help.env.insert(name.to_owned());
            }
        }
        if let (Some(flag), Some(rest)) = (&current, line.split("[default: ").nth(1)) {
            if let Some(value) = rest.split(']').next() {
                help.defaults.insert(flag.clone(), value.to_owned());
            }
        }
    }
    ensure!(
        !help.env.is_empty(),
        "{name} --help lists no environment variables"
    );
    Ok(help)
}

fn compose() -> Result<Yaml> {
    let text = std::fs::read_to_string(workspace_root().join("docker-compose.yml"))?;
    let mut docs =
        YamlLoader::load_from_str(&text).context("docker-compose.yml is not valid YAML")?;
    ensure!(docs.len() == 1, "one YAML document expected");
    Ok(docs.remove(0))
}

fn s(y: &Yaml) -> Option<&str> {
    y.as_str()
}

/// A service's `environment` as a map, whichever of the two compose spellings it uses.
fn environment(service: &Yaml) -> Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    match &service["environment"] {
        Yaml::Hash(h) => {
            for (k, v) in h {
                let key = s(k).context("environment key")?.to_owned();
                let value = match v {
                    Yaml::String(v) => v.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    other => bail!("environment {key}: unexpected value {other:?}"),
                };
                env.insert(key, value);
            }
        }
        Yaml::Array(items) => {
            for item in items {
                let (k, v) = s(item)
                    .and_then(|i| i.split_once('='))
                    .context("KEY=VALUE")?;
                env.insert(k.to_owned(), v.to_owned());
            }
        }
        Yaml::BadValue => {}
        other => bail!("environment: unexpected {other:?}"),
    }
    Ok(env)
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| v.iter().filter_map(s).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit(':').next()?.parse().ok()
}

/// `(host port, container port)` of every `ports` entry, written `HOST:CONTAINER` (a bare number would
/// publish the container port on a random host port).
fn ports(service: &Yaml) -> Result<Vec<(u16, u16)>> {
    let mut out = Vec::new();
    for p in service["ports"].as_vec().map(Vec::as_slice).unwrap_or(&[]) {
        let p = s(p).with_context(|| format!("port mapping {p:?} should be HOST:CONTAINER"))?;
        let mut parts: Vec<&str> = p.split(':').collect();
        let container = parts
            .pop()
            .and_then(|c| c.parse().ok())
            .context(p.to_owned())?;
        let host = parts
            .pop()
            .and_then(|h| h.parse().ok())
            .context(p.to_owned())?;
        out.push((host, container));
    }
    Ok(out)
}

/// `--config KEY=VALUE` settings of the topic-creating command.
fn topic_configs(command: &[String]) -> BTreeMap<String, String> {
    command
        .windows(2)
        .filter(|w| w[0] == "--config")
        .filter_map(|w| w[1].split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn arg_after<'a>(command: &'a [String], flag: &str) -> Option<&'a str> {
    command
        .windows(2)
        .find(|w| w[0] == flag)
        .map(|w| w[1].as_str())
}

#[test]
fn compose_services_use_only_settings_the_binaries_accept() -> Result<()> {
    let doc = compose()?;
    let services = doc["services"].as_hash().context("services")?;
    let names: BTreeSet<&str> = services.keys().filter_map(s).collect();
    for want in ["kafka", "create-topic", "media", "edge-1", "edge-2"] {
        ensure!(names.contains(want), "service {want} missing: {names:?}");
    }
    let media_help = help("media")?;
    let edge_help = help("cdn-edge")?;

    let mut binaries_seen = BTreeMap::new();
    for (name, service) in services {
        let name = s(name).context("service name")?;
        let command = strings(&service["command"]);
        let (help, prefix) = match command.first().map(String::as_str) {
            Some("media") => (&media_help, "MEDIA_"),
            Some("cdn-edge") => (&edge_help, "EDGE_"),
            _ => continue,
        };
        *binaries_seen.entry(command[0].clone()).or_insert(0) += 1;
        for flag in command.iter().skip(1).filter(|a| a.starts_with("--")) {
            let flag = flag.split('=').next().unwrap_or(flag);
            ensure!(
                help.flags.contains(flag),
                "{name}: {} has no flag {flag}",
                command[0]
            );
        }
        let env = environment(service)?;
        ensure!(!env.is_empty(), "{name} sets no environment");
        for key in env.keys() {
            ensure!(
                key.starts_with(prefix) && help.env.contains(key),
                "{name}: {key} is not an environment variable {} accepts ({:?})",
                command[0],
                help.env
            );
        }
        ensure!(
            service["image"].as_str() == Some("live-video:local"),
            "{name} should run the image the Dockerfile builds"
        );
    }
    ensure!(
        binaries_seen.get("media") == Some(&1) && binaries_seen.get("cdn-edge") == Some(&2),
        "one media and two edges expected: {binaries_seen:?}"
    );
    ensure!(
        services
            .values()
            .any(|sv| sv["build"].as_str() == Some(".")),
        "some service must build the image from the Dockerfile"
    );
    Ok(())
}

#[test]
fn compose_ports_brokers_and_topic_fit_together() -> Result<()> {
    let doc = compose()?;
    let sv = |name: &str| &doc["services"][name];

    // Kafka: the official image, KRaft (no ZooKeeper), advertised where the services look for it.
    let kafka = sv("kafka");
    ensure!(
        kafka["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("apache/kafka:")),
        "Apache Kafka's official image expected"
    );
    let kenv = environment(kafka)?;
    ensure!(
        kenv.get("KAFKA_PROCESS_ROLES").map(String::as_str) == Some("broker,controller"),
        "KRaft combined mode expected: {kenv:?}"
    );
    ensure!(
        !kenv.keys().any(|k| k.contains("ZOOKEEPER")),
        "no ZooKeeper in KRaft mode"
    );
    let advertised = kenv
        .get("KAFKA_ADVERTISED_LISTENERS")
        .and_then(|l| l.split("://").nth(1))
        .context("advertised listener")?
        .to_owned();
    ensure!(
        ports(kafka)?.is_empty(),
        "Kafka stays on the compose network"
    );

    // The topic both binaries use is the one created, with limits that admit media's records.
    let media = environment(sv("media"))?;
    let topic_cmd = strings(&sv("create-topic")["command"]);
    ensure!(
        topic_cmd
            .first()
            .is_some_and(|c| c.ends_with("kafka-topics.sh"))
            && topic_cmd.iter().any(|a| a == "--create"),
        "create-topic should run kafka-topics.sh --create: {topic_cmd:?}"
    );
    let topic = arg_after(&topic_cmd, "--topic").context("--topic")?;
    let partitions: u32 = arg_after(&topic_cmd, "--partitions")
        .context("--partitions")?
        .parse()?;
    ensure!(partitions >= 1);
    let configs = topic_configs(&topic_cmd);
    let topic_max: u64 = configs
        .get("max.message.bytes")
        .context("the topic should set max.message.bytes")?
        .parse()?;
    let retention: i64 = configs
        .get("retention.ms")
        .context("the topic should set retention.ms (the DVR window)")?
        .parse()?;
    let media_help = help("media")?;
    let media_max: u64 = match media.get("MEDIA_MAX_MESSAGE_BYTES") {
        Some(v) => v.parse()?,
        None => media_help
            .defaults
            .get("--max-message-bytes")
            .context("media --help shows the default --max-message-bytes")?
            .parse()?,
    };
    ensure!(
        topic_max >= media_max,
        "topic max.message.bytes {topic_max} < media's max message bytes {media_max}"
    );
    let edge_help = help("cdn-edge")?;
    // Unset, the lookback follows the window, at most 60 s (see `--help`).
    let lookback_s: i64 = match edge_help.defaults.get("--lookback-seconds") {
        Some(v) if v.starts_with("enough for") => {
            ensure!(v.contains("at most 60 s"), "lookback bound changed: {v}");
            60
        }
        Some(v) => v.parse()?,
        None => 30,
    };
    ensure!(
        retention > lookback_s * 1000,
        "retention.ms {retention} must cover the edges' lookback"
    );
    ensure!(
        sv("create-topic")["depends_on"]["kafka"]["condition"].as_str() == Some("service_healthy"),
        "the topic can only be created once Kafka answers"
    );

    ensure!(media.get("MEDIA_TOPIC").map(String::as_str) == Some(topic));
    ensure!(media.get("MEDIA_KAFKA_BROKERS") == Some(&advertised));
    let rtmp = media
        .get("MEDIA_RTMP_LISTEN")
        .and_then(|a| port_of(a))
        .context("rtmp")?;
    let media_http = media
        .get("MEDIA_HTTP_LISTEN")
        .and_then(|a| port_of(a))
        .context("http")?;
    let media_ports = ports(sv("media"))?;
    ensure!(
        media_ports.contains(&(1935, rtmp)),
        "RTMP on host port 1935: {media_ports:?}"
    );
    ensure!(
        media_ports.iter().any(|&(_, c)| c == media_http),
        "media's HTTP should be published (loopback): {media_ports:?}"
    );

    let mut host_ports = Vec::new();
    for name in ["edge-1", "edge-2"] {
        let env = environment(sv(name))?;
        ensure!(
            env.get("EDGE_TOPIC").map(String::as_str) == Some(topic),
            "{name}"
        );
        ensure!(env.get("EDGE_KAFKA_BROKERS") == Some(&advertised), "{name}");
        let http = env
            .get("EDGE_HTTP_LISTEN")
            .and_then(|a| port_of(a))
            .context("edge http")?;
        let edge_ports = ports(sv(name))?;
        ensure!(
            edge_ports.len() == 1 && edge_ports[0].1 == http,
            "{name} publishes its listen port: {edge_ports:?}"
        );
        host_ports.push(edge_ports[0].0);
        ensure!(
            sv(name)["depends_on"]["create-topic"]["condition"].as_str()
                == Some("service_completed_successfully"),
            "{name} should start after the topic exists"
        );
    }
    ensure!(
        host_ports == [8080, 8081],
        "edges on host ports 8080 and 8081: {host_ports:?}"
    );
    ensure!(
        sv("media")["depends_on"]["create-topic"]["condition"].as_str()
            == Some("service_completed_successfully")
    );
    Ok(())
}

/// The Kafka release the e2e suite, the benchmark and `run-local.sh` fetch (`scripts/kafka/pom.xml`).
fn tested_kafka_release() -> Result<String> {
    let pom = std::fs::read_to_string(workspace_root().join("scripts/kafka/pom.xml"))?;
    let version = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split("</kafka.version>").next())
        .context("scripts/kafka/pom.xml names no kafka.version")?;
    Ok(version.trim().to_owned())
}

/// docker-compose.yml runs the Apache Kafka release the tests run, and creates live-topic with the
/// partitions and configs every test topic gets (`scripts/kafka/live-topic.properties`).
#[test]
fn compose_runs_the_kafka_release_and_topic_settings_the_tests_run() -> Result<()> {
    let doc = compose()?;
    let release = tested_kafka_release()?;
    for service in ["kafka", "create-topic"] {
        let image = s(&doc["services"][service]["image"]).context("image")?;
        ensure!(
            image == format!("apache/kafka:{release}"),
            "{service} runs {image}, the tests run Apache Kafka {release} (move both together)"
        );
    }
    let tested = TopicSettings::recommended()?;
    let command = strings(&doc["services"]["create-topic"]["command"]);
    let partitions: u32 = arg_after(&command, "--partitions")
        .context("--partitions")?
        .parse()?;
    ensure!(
        partitions == tested.partitions,
        "compose creates {partitions} partitions, live-topic.properties says {}",
        tested.partitions
    );
    let tested_configs: BTreeMap<String, String> = tested.configs.into_iter().collect();
    let compose_configs = topic_configs(&command);
    ensure!(
        compose_configs == tested_configs,
        "compose's topic configs {compose_configs:?} differ from live-topic.properties {tested_configs:?}"
    );
    Ok(())
}

#[test]
fn dockerfile_builds_both_binaries_onto_a_slim_runtime() -> Result<()> {
    let text = std::fs::read_to_string(workspace_root().join("Dockerfile"))?;
    let froms: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    ensure!(froms.len() >= 2, "multi-stage build expected: {froms:?}");
    ensure!(
        froms.iter().any(|f| f.starts_with("rust:1.95")),
        "{froms:?}"
    );
    ensure!(
        froms
            .last()
            .is_some_and(|f| f.starts_with("debian:bookworm-slim")),
        "{froms:?}"
    );
    for needle in [
        "libssl-dev",
        "cmake",
        "ca-certificates",
        "libssl3",
        "web/package-lock.json",
        "npm ci",
        "--bin media",
        "--bin cdn-edge",
        "/usr/local/bin/media",
        "/usr/local/bin/cdn-edge",
    ] {
        ensure!(text.contains(needle), "Dockerfile lacks {needle}");
    }
    let ignore = std::fs::read_to_string(workspace_root().join(".dockerignore"))?;
    ensure!(
        ignore.lines().any(|l| l.trim() == "target/"),
        ".dockerignore should keep target/ out of the build context"
    );
    Ok(())
}
