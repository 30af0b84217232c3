//! Apache Kafka for the end-to-end tests, run by `scripts/kafka/node.sh` (the jars come from
//! `scripts/install-deps.sh`): one single-node broker shared by all the tests of a test binary, each
//! test on a topic of its own, and brokers or three-node clusters of their own for the tests that kill
//! or restart them.
//!
//! Every topic gets the settings of `scripts/kafka/live-topic.properties`, the ones `run-local.sh` and
//! docker-compose.yml use, with only the partition count (and a test's own overrides) changed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::{free_ports, workspace_root, Proc};

/// Broker settings every test node gets on top of `node.sh`'s: retention is checked every second from
/// the start (the broker's defaults are every 5 minutes, from 30 s after start), so a test topic with a
/// short `retention.ms` really loses its old records while the test runs.
const TEST_NODE_SETTINGS: &[&str] = &[
    "log.initial.task.delay.ms=1000",
    "log.retention.check.interval.ms=1000",
    "log.segment.delete.delay.ms=1000",
];

/// The settings of `scripts/kafka/live-topic.properties`: the partition count and the topic configs.
pub struct TopicSettings {
    pub partitions: u32,
    pub configs: Vec<(String, String)>,
}

impl TopicSettings {
    /// Reads `scripts/kafka/live-topic.properties`.
    pub fn recommended() -> Result<Self> {
        let path = workspace_root().join("scripts/kafka/live-topic.properties");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// `key=value` lines; `#` starts a comment line; `partitions` is the partition count.
    pub fn parse(text: &str) -> Result<Self> {
        let mut partitions = None;
        let mut configs = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .with_context(|| format!("not key=value: {line}"))?;
            if k == "partitions" {
                partitions = Some(v.parse().context("partitions")?);
            } else {
                configs.push((k.to_owned(), v.to_owned()));
            }
        }
        Ok(Self {
            partitions: partitions.context("no partitions line")?,
            configs,
        })
    }
}

/// One Apache Kafka node: broker and KRaft controller in one JVM.
struct Node {
    id: u32,
    addr: SocketAddr,
    controller: SocketAddr,
    dir: PathBuf,
    proc: Option<Proc>,
}

impl Node {
    fn spawn(&mut self, voters: &str, heap: &str, log_dir: &Path, name: &str) -> Result<()> {
        // PR_SET_PDEATHSIG: the JVM dies with the thread that started it, even when the test process
        // is killed, so no broker outlives its test.
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--", "bash"])
            .arg(workspace_root().join("scripts/kafka/node.sh"))
            .arg(&self.dir)
            .arg(self.id.to_string())
            .arg(self.addr.to_string())
            .arg(self.controller.to_string())
            .arg(voters)
            .args(TEST_NODE_SETTINGS)
            .env("KAFKA_HEAP", heap);
        self.proc = Some(Proc::spawn(name, cmd, log_dir)?);
        Ok(())
    }
}

/// A set of nodes forming one cluster (one node, or three).
struct Cluster {
    nodes: Vec<Node>,
    voters: String,
    heap: &'static str,
    log_dir: PathBuf,
}

impl Cluster {
    /// Starts `n` nodes on fresh loopback ports under `dir`, and starts over (other ports, empty log
    /// directories) when one was taken before a node bound it, or when a node did not come up in time:
    /// on a 2-core machine running much else, a fresh node has been seen to wait for good for its own
    /// controller to acknowledge it ("Waiting for the controller to acknowledge that we are caught
    /// up"), while the next attempt started in seconds.
    fn start(dir: &Path, n: u32, heap: &'static str) -> Result<Self> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut cluster = Self::spawn_once(dir, n, heap)?;
            match cluster.wait_listening(Duration::from_secs(90)) {
                Ok(()) => return Ok(cluster),
                Err(e) if attempt < 3 => {
                    let why = if cluster.lost_a_port() {
                        "a port was taken"
                    } else {
                        "a node did not start in time"
                    };
                    eprintln!("Kafka: {e} ({why}); starting the cluster over");
                    // Dropping the old nodes kills them before the next attempt's JVMs start.
                    drop(cluster);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn spawn_once(dir: &Path, n: u32, heap: &'static str) -> Result<Self> {
        let cluster_dir = dir.join("kafka");
        // A fresh cluster id and fresh log directories for every attempt.
        let _ = std::fs::remove_dir_all(&cluster_dir);
        std::fs::create_dir_all(&cluster_dir)?;
        let ports = free_ports::<6>();
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                id: i + 1,
                addr: ([127, 0, 0, 1], ports[2 * i as usize]).into(),
                controller: ([127, 0, 0, 1], ports[2 * i as usize + 1]).into(),
                dir: cluster_dir.join(format!("node-{}", i + 1)),
                proc: None,
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|n| format!("{}@{}", n.id, n.controller))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            nodes,
            voters,
            heap,
            log_dir: dir.to_path_buf(),
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn_node(i, &Self::log_name(i, 1))?;
        }
        Ok(cluster)
    }

    fn log_name(i: usize, run: u32) -> String {
        match run {
            1 => format!("kafka-{}", i + 1),
            r => format!("kafka-{}-run{r}", i + 1),
        }
    }

    fn spawn_node(&mut self, i: usize, name: &str) -> Result<()> {
        let (voters, heap, log_dir) = (self.voters.clone(), self.heap, self.log_dir.clone());
        self.nodes[i].spawn(&voters, heap, &log_dir, name)
    }

    fn wait_listening(&mut self, timeout: Duration) -> Result<()> {
        for node in &mut self.nodes {
            let addr = node.addr;
            node.proc
                .as_mut()
                .context("node not running")?
                .listening(addr, timeout)?;
        }
        Ok(())
    }

    fn lost_a_port(&self) -> bool {
        self.nodes.iter().filter_map(|n| n.proc.as_ref()).any(|p| {
            let log = p.log_text().to_lowercase();
            log.contains("address already in use") || log.contains("bindexception")
        })
    }

    fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The broker every test of this test binary shares, started by the first test that asks for it. It
/// lives as long as the test process: started from a thread that never ends, with the JVM's parent-death
/// signal set, it dies when the process exits.
fn shared_bootstrap() -> Result<&'static str> {
    static SHARED: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            let keeper = std::thread::Builder::new()
                .name("shared-kafka".into())
                .spawn(move || {
                    let dir = crate::work_dir("kafka-shared");
                    match Cluster::start(&dir, 1, "512m") {
                        Ok(cluster) => {
                            let _ = tx.send(Ok(cluster.bootstrap()));
                            eprintln!("shared Apache Kafka broker: log in {}", dir.display());
                            // Keeps the cluster (and this thread, the JVM's parent) alive.
                            loop {
                                std::thread::park();
                                let _ = &cluster;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(format!("{e:#}")));
                        }
                    }
                });
            match keeper {
                Ok(_) => rx
                    .recv()
                    .unwrap_or_else(|_| Err("the broker thread died".into())),
                Err(e) => Err(e.to_string()),
            }
        })
        .as_deref()
        .map_err(|e| anyhow!("starting the shared Apache Kafka broker: {e}"))
}

/// A topic on Apache Kafka for one test: on the broker the test binary shares, or on a broker or cluster
/// of the test's own that it may kill and restart.
pub struct Broker {
    /// The test's topic (a unique name on a shared broker).
    pub topic: String,
    bootstrap: String,
    /// The test's own nodes; `None` on the shared broker.
    cluster: Option<Cluster>,
    runs: Vec<u32>,
}

impl Broker {
    /// A topic with `partitions` (and the recommended configs) on the broker this test binary shares.
    /// `topic` is a prefix: the name also carries the test's work directory, so tests never share one.
    pub fn start(dir: &Path, topic: &str, partitions: u32) -> Result<Self> {
        Self::start_with_configs(dir, topic, partitions, &[])
    }

    /// As [`Broker::start`], with some topic configs overridden (e.g. a short `retention.ms`).
    pub fn start_with_configs(
        dir: &Path,
        topic: &str,
        partitions: u32,
        overrides: &[(&str, &str)],
    ) -> Result<Self> {
        let bootstrap = shared_bootstrap()?.to_owned();
        let unique = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let broker = Self {
            topic: format!("{topic}-{unique}"),
            bootstrap,
            cluster: None,
            runs: Vec::new(),
        };
        broker.create_topic(partitions, 1, overrides)?;
        Ok(broker)
    }

    /// A single-node broker of this test's own (its log under `dir/kafka`), with `topic` created.
    pub fn dedicated(dir: &Path, topic: &str, partitions: u32) -> Result<Self> {
        Self::own_cluster(dir, topic, partitions, 1, "512m", &[])
    }

    /// A three-node KRaft cluster of this test's own, every node a broker and a controller voter, with
    /// `topic` replicated three times and `min.insync.replicas=2`: any one node can die without losing
    /// an acknowledged record or stopping producers that ask for `acks=all`.
    pub fn three_nodes(dir: &Path, topic: &str, partitions: u32) -> Result<Self> {
        Self::own_cluster(
            dir,
            topic,
            partitions,
            3,
            "256m",
            &[("min.insync.replicas", "2")],
        )
    }

    fn own_cluster(
        dir: &Path,
        topic: &str,
        partitions: u32,
        nodes: u32,
        heap: &'static str,
        overrides: &[(&str, &str)],
    ) -> Result<Self> {
        let cluster = Cluster::start(dir, nodes, heap)?;
        let broker = Self {
            topic: topic.into(),
            bootstrap: cluster.bootstrap(),
            runs: vec![1; cluster.nodes.len()],
            cluster: Some(cluster),
        };
        broker.create_topic(partitions, nodes as i32, overrides)?;
        Ok(broker)
    }

    /// `host:port[,host:port...]` for `--kafka-brokers`.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    fn cluster(&mut self) -> Result<&mut Cluster> {
        self.cluster
            .as_mut()
            .context("the shared broker is not the test's to stop or start")
    }

    /// Index (0-based) of the node whose id is `id`.
    fn index_of(&mut self, id: i32) -> Result<usize> {
        self.cluster()?
            .nodes
            .iter()
            .position(|n| n.id as i32 == id)
            .with_context(|| format!("no node {id}"))
    }

    /// SIGKILL to node `i` (0-based): no controlled shutdown, no flush.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let node = &mut self.cluster()?.nodes[i];
        let mut proc = node.proc.take().context("node not running")?;
        crate::faults::kill_hard(&mut proc)
    }

    /// SIGTERM to node `i` and waits for its controlled shutdown (leadership moved away first).
    pub fn stop(&mut self, i: usize) -> Result<()> {
        let node = &mut self.cluster()?.nodes[i];
        let mut proc = node.proc.take().context("node not running")?;
        let status = proc.terminate_status(Duration::from_secs(60))?;
        // The JVM exits 143 (128 + SIGTERM) once its shutdown hook, the controlled shutdown, is done.
        ensure!(
            status.success() || status.code() == Some(143),
            "node {} exited with {status} after SIGTERM: {}",
            node.id,
            proc.log_text().lines().last().unwrap_or_default()
        );
        Ok(())
    }

    /// Starts node `i` again on its ports and log directory, and waits for it to listen.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.runs[i] += 1;
        let name = Cluster::log_name(i, self.runs[i]);
        let cluster = self.cluster()?;
        ensure!(cluster.nodes[i].proc.is_none(), "node {i} is still running");
        cluster.spawn_node(i, &name)?;
        let node = &mut cluster.nodes[i];
        let addr = node.addr;
        node.proc
            .as_mut()
            .context("spawned")?
            .listening(addr, Duration::from_secs(120))
    }

    /// Index (0-based) of the node leading `partition` of the topic.
    pub fn leader_of(&mut self, partition: i32) -> Result<usize> {
        let (leader, _) = self.partition_state(partition)?;
        self.index_of(leader)
    }

    /// Waits until every partition of the topic has a leader and all `replicas` in sync.
    pub fn wait_in_sync(&self, replicas: usize, timeout: Duration) -> Result<()> {
        let mut last = None;
        crate::poll(timeout, Duration::from_millis(200), || {
            let ok = self.metadata().map(|parts| {
                !parts.is_empty() && parts.iter().all(|&(_, l, isr)| l >= 0 && isr >= replicas)
            });
            let done = matches!(ok, Ok(true));
            last = Some(ok);
            done.then_some(())
        })
        .with_context(|| {
            format!(
                "{} not fully in sync after {timeout:?}: {last:?}",
                self.topic
            )
        })
    }

    /// (leader id, in-sync replica count) of `partition`.
    fn partition_state(&self, partition: i32) -> Result<(i32, usize)> {
        self.metadata()?
            .into_iter()
            .find(|&(p, _, _)| p == partition)
            .map(|(_, l, isr)| (l, isr))
            .with_context(|| format!("no partition {partition} in {}", self.topic))
    }

    /// (partition, leader id, in-sync replica count) of every partition of the topic.
    fn metadata(&self) -> Result<Vec<(i32, i32, usize)>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()?;
        let md = consumer.fetch_metadata(Some(&self.topic), Duration::from_secs(5))?;
        let topic = md
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .context("topic missing from metadata")?;
        Ok(topic
            .partitions()
            .iter()
            .map(|p| (p.id(), p.leader(), p.isr().len()))
            .collect())
    }

    /// Creates the topic with the recommended configs and `overrides`, retrying while the broker
    /// finishes starting (a cluster accepts replication factor 3 once all three nodes registered), then
    /// waits until every partition has a leader.
    fn create_topic(
        &self,
        partitions: u32,
        replication: i32,
        overrides: &[(&str, &str)],
    ) -> Result<()> {
        let recommended = TopicSettings::recommended()?;
        let mut configs: Vec<(&str, &str)> = recommended
            .configs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .collect();
        configs.extend_from_slice(overrides);
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .context("admin client")?;
        let mut topic = NewTopic::new(
            &self.topic,
            partitions as i32,
            TopicReplication::Fixed(replication),
        );
        for (k, v) in &configs {
            topic = topic.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let mut error = String::new();
        crate::poll(Duration::from_secs(60), Duration::from_millis(250), || {
            let result = futures::executor::block_on(admin.create_topics([&topic], &opts));
            error = match result.as_deref() {
                Ok([Ok(_)]) | Ok([Err((_, RDKafkaErrorCode::TopicAlreadyExists))]) => {
                    return Some(())
                }
                Ok([Err((_, code))]) => code.to_string(),
                Ok(other) => format!("unexpected answer {other:?}"),
                Err(e) => e.to_string(),
            };
            None
        })
        .with_context(|| format!("creating topic {} failed: {error}", self.topic))?;
        self.wait_in_sync(1, Duration::from_secs(30))
    }
}
