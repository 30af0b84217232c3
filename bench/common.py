"""Shared pieces of the benchmarks (bench/ingest.py, bench/compare.py, bench/soak.py, bench/profile.py): the
test clip, process handling, /proc readings, the servers under test (this project: a single-node Apache
Kafka + media + one edge; nginx-rtmp; any other running server given as a peer) and wrk.

Stdlib only. Loopback only. Every process is started by us, in its own log file, and stopped by pid.
"""
import os, re, signal, shutil, socket, statistics, subprocess, sys, tempfile, time, urllib.parse, urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LIVE_CACHE_DIR", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "live-video"))
KAFKA_SCRIPTS = ROOT / "scripts/kafka"
LIVE_TOPIC_PROPERTIES = KAFKA_SCRIPTS / "live-topic.properties"
RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
CLK = os.sysconf("SC_CLK_TCK")
SEGMENT_SECONDS = 2



def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    return free_ports(1)[0]


def free_ports(n):
    """n distinct free loopback ports (asked for one at a time, the same port can come back twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds; 0 if it is gone."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / CLK


def rss_mb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_jiffies():
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + f[4]  # idle + iowait
    total = sum(f[:8])  # guest time is already counted in user
    return total - idle, total


def busy_fraction(j0, j1):
    """Share of all CPUs busy between two machine_jiffies() readings."""
    return (j1[0] - j0[0]) / max(1, j1[1] - j0[1])


def children(pid):
    """Direct children of pid (nginx's worker under its master)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == pid:
                out.append(int(d.name))
    return out


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else None


def clip():
    """The test clip, generated once: 30 s of 1280x720 30 fps H.264 at 2.5 Mbps (2 s GOP, CBR-ish) + AAC
    128 kbps, FLV."""
    out = CACHE / "bench-720p-2500k.flv"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        log(f"generating {out} once")
        subprocess.run(["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "30",
                        "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2500k", "-maxrate", "2500k",
                        "-bufsize", "5000k", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-bf", "2",
                        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(out)], check=True)
    return out


def bin_dir_default(bin_dir=None):
    """Where media and cdn-edge are: `bin_dir`, else BENCH_BIN_DIR, else ROOT/target/release."""
    return Path(bin_dir or os.environ.get("BENCH_BIN_DIR") or ROOT / "target/release")


def http_get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


class Procs:
    """Processes we started, each logging to out/<name>.log; stopped in reverse order by pid."""

    def __init__(self, out):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.list = []
        self.cleanups = []  # run after stop_all (temp directories of the servers)

    def spawn(self, name, cmd, env=None, cwd=None):
        logf = open(self.out / f"{name}.log", "w")
        p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                             env={**os.environ, **(env or {})})
        logf.close()
        p.bench_name = name
        self.list.append(p)
        return p

    def stop(self, procs, timeout=20):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = time.time() + timeout
        for p in procs:
            try:
                p.wait(max(0.1, end - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.list = [p for p in self.list if p not in procs]

    def stop_all(self):
        # The broker last, once its clients are gone (they would log its going away as errors).
        self.stop([p for p in reversed(self.list) if p.bench_name != "broker"])
        self.stop(list(reversed(self.list)))
        while self.cleanups:
            self.cleanups.pop()()


def start_publishers(procs, n, rtmp_base, src, name="bench", spread=SEGMENT_SECONDS):
    """n ffmpeg publishers of the clip, in real time, looped, remuxed only, to rtmp_base/<name><i>. Their
    starts are spread over `spread` seconds so segment cuts are not all at the same instant."""
    pubs = []
    t0 = time.time()
    for i in range(n):
        delay = t0 + spread * i / max(1, n) - time.time()
        if delay > 0:
            time.sleep(delay)
        pubs.append(procs.spawn(f"ffmpeg-{i}", ["ffmpeg", "-nostdin", "-v", "error", "-re", "-stream_loop", "-1",
                                                "-i", str(src), "-c", "copy", "-f", "flv",
                                                f"{rtmp_base}/{name}{i}"]))
    return pubs


def mem_available_mb():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pss_mb(pid):
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# ---------------------------------------------------------------------------------------------- ours

def live_topic_settings():
    """(partitions, {config: value}) of scripts/kafka/live-topic.properties, the settings the README
    recommends and scripts/run-local.sh uses."""
    partitions, configs = None, {}
    for line in LIVE_TOPIC_PROPERTIES.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        k, _, v = line.partition("=")
        if k == "partitions":
            partitions = int(v)
        else:
            configs[k] = v
    return partitions, configs


def dir_bytes(path):
    """Disk usage of a directory tree (allocated blocks, like du), 0 if it is gone."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


class Kafka:
    """A single-node Apache Kafka (KRaft, broker + controller in one JVM) by scripts/kafka/node.sh, its log
    dir in a fresh temp directory under /tmp (disk, as a deployment would have; removed by cleanup()), and
    live-topic created with topics.sh from scripts/kafka/live-topic.properties.

    node.sh execs the JVM, so the spawned pid is java's: its /proc CPU and RSS are the broker's (the one-off
    StorageTool format before it is a child and not counted). KAFKA_HEAP is BENCH_KAFKA_HEAP or 1g;
    BENCH_PARTITIONS overrides the topic's partition count. `node_options` are extra server.properties
    lines (KEY=VALUE), `topic_configs` override the topic configs of live-topic.properties."""

    def __init__(self, procs, node_options=(), topic_configs=None, partitions=None, topic="live-topic"):
        self.procs = procs
        self.dir = Path(tempfile.mkdtemp(prefix="bench-kafka-", dir=os.environ.get("BENCH_KAFKA_TMP", "/tmp")))
        self.log_dir = self.dir / "node-1" / "data"
        self.port, cport = free_ports(2)
        self.addr = f"127.0.0.1:{self.port}"
        self.topic = topic
        heap = os.environ.get("BENCH_KAFKA_HEAP", "1g")
        self.proc = procs.spawn("broker", ["bash", str(KAFKA_SCRIPTS / "node.sh"), str(self.dir / "node-1"), "1",
                                           self.addr, f"127.0.0.1:{cport}", f"1@127.0.0.1:{cport}",
                                           *node_options], {"KAFKA_HEAP": heap})
        self.pid = self.proc.pid
        try:
            wait_port(self.port, 90)
        except RuntimeError:
            raise RuntimeError(f"Apache Kafka did not listen on {self.addr}; see {procs.out / 'broker.log'}")
        n, configs = live_topic_settings()
        n = int(os.environ.get("BENCH_PARTITIONS") or partitions or n)
        configs.update(topic_configs or {})
        self.partitions, self.topic_configs = n, configs
        cmd = ["bash", str(KAFKA_SCRIPTS / "topics.sh"), "--bootstrap-server", self.addr, "--create",
               "--if-not-exists", "--topic", topic, "--partitions", str(n), "--replication-factor", "1"]
        cmd += [x for k, v in configs.items() for x in ("--config", f"{k}={v}")]
        for _ in range(10):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if r.returncode == 0:
                break
            time.sleep(1)
        else:
            raise RuntimeError(f"could not create {topic} on Apache Kafka: {r.stderr[-2000:]}")

    def disk_bytes(self):
        return dir_bytes(self.log_dir)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Ours:
    """A single-node Apache Kafka (class Kafka: live-topic as scripts/kafka/live-topic.properties says,
    12 partitions unless BENCH_PARTITIONS) + media (2 s segments) + one edge, release builds, every one
    with its defaults (no broker-specific options).

    The binaries come from `bin_dir`, else BENCH_BIN_DIR, else ROOT/target/release. `kafka_options` are
    extra server.properties lines of the broker, `topic_configs` override live-topic's configs (the soak
    shortens retention with them)."""

    def __init__(self, procs, edge_options=None, cache_bytes=None, edge_log="info,cdn_edge=debug", env=None,
                 bin_dir=None, kafka_options=(), topic_configs=None):
        self.procs = procs
        self.bin_dir = bin_dir_default(bin_dir)
        self.env = dict(env or {})  # extra environment of media and the edge (not the broker)
        self.kafka = Kafka(procs, kafka_options, topic_configs)
        self.broker = self.kafka.proc
        self.bport = self.kafka.port
        self.rport, self.hport, self.eport = free_ports(3)
        self.media = procs.spawn("media", [str(self.bin_dir / "media"), "--rtmp-listen", f"127.0.0.1:{self.rport}",
                                           "--http-listen", f"127.0.0.1:{self.hport}",
                                           "--kafka-brokers", self.kafka.addr, "--segment-seconds",
                                           str(SEGMENT_SECONDS)],
                                 # media::producer at debug: one "segment delivered" line per segment, which
                                 # splits the availability latency into its origin -> broker leg.
                                 {"RUST_LOG": "info,media::producer=debug", **self.env})
        self.edge_options = list(edge_options or [])
        self.cache_bytes = cache_bytes
        self.edge = self.start_edge("edge", self.eport, edge_log)
        wait_port(self.rport)
        wait_port(self.hport)
        wait_port(self.eport)
        self.rtmp_base = f"rtmp://127.0.0.1:{self.rport}/live"
        procs.cleanups.append(self.kafka.cleanup)

    def start_edge(self, name, port, rust_log="info"):
        cmd = [str(self.bin_dir / "cdn-edge"), "--http-listen", f"127.0.0.1:{port}",
               "--kafka-brokers", self.kafka.addr]
        if self.cache_bytes:
            cmd += ["--cache-bytes", str(self.cache_bytes)]
        cmd += [x for o in self.edge_options for x in ("--kafka-option", o)]
        return self.procs.spawn(name, cmd, {"RUST_LOG": rust_log, **self.env})

    def pids(self):
        return {"media": self.media.pid, "broker": self.broker.pid, "edge": self.edge.pid}

    def media_metrics(self):
        return parse_prometheus(http_get(f"http://127.0.0.1:{self.hport}/metrics").decode())

    def edge_metrics(self):
        return parse_prometheus(http_get(f"http://127.0.0.1:{self.eport}/metrics").decode())

    def stream_segments(self):
        """Segments closed per stream of the current broadcasts, from media's /metrics."""
        m = self.media_metrics()
        return {labels["stream"]: v for name, labels, v in m if name == "media_stream_segments_total"}

    def playlist(self, stream, port=None):
        return http_get(f"http://127.0.0.1:{port or self.eport}/live/{stream}/index.m3u8")

    def all_live(self, n):
        """Whether n streams are live, each with its first segment closed (False while media does not answer)."""
        try:
            live = self.stream_segments()
        except OSError:
            return False
        return len(live) >= n and all(v >= 1 for v in live.values())


def parse_prometheus(text):
    """[(name, {labels}, value)] from Prometheus text format."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)', line)
        if m:
            out.append((m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")), float(m.group(3))))
    return out


def metric(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items()))


MEDIA_DELIVERED_LINE = re.compile(r"^(\S+)\s+DEBUG.*segment delivered.*?stream=(\S+)\s+seq=(\d+).*?ms=(\d+)")
EDGE_LINE = re.compile(r"^(\S+)\s+DEBUG.*segment available.*?stream=(\S+)\s+seq=(\d+).*?latency_ms=(-?\d+)")
PART_LINE = re.compile(r"^(\S+)\s+DEBUG.*part available.*?stream=(\S+)\s+seq=(\d+)\s+part=(\d+).*?latency_ms=(-?\d+)")


def log_lines(pattern, log_text):
    """[(unix_time, stream, int, ...)] from the lines `pattern` matches: its first group is tracing's RFC 3339
    time, its second the stream, every further group an integer."""
    out = []
    for line in log_text.splitlines():
        m = pattern.match(line)
        if m:
            out.append((parse_rfc3339(m.group(1)), m.group(2), *(int(g) for g in m.groups()[2:])))
    return out


def media_delivered_lines(log_text):
    """[(unix_time, stream, seq, ms)] from media's `segment delivered` debug lines: ms is segment queued ->
    the broker acknowledged its last chunk."""
    return log_lines(MEDIA_DELIVERED_LINE, log_text)


def edge_part_lines(log_text):
    """[(unix_time, stream, seq, part, latency_ms)] from the edge's `part available` debug lines (LL-HLS)."""
    return log_lines(PART_LINE, log_text)


def edge_segment_lines(log_text):
    """[(unix_time, stream, seq, latency_ms)] from the edge's `segment available` debug lines."""
    return log_lines(EDGE_LINE, log_text)


def parse_rfc3339(s):
    # 2026-11-24T02:59:42.123456Z (tracing's default, UTC)
    import calendar
    m = re.match(r"(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)(\.\d+)?Z", s)
    if not m:
        return 0.0
    y, mo, d, h, mi, se = (int(x) for x in m.groups()[:6])
    return calendar.timegm((y, mo, d, h, mi, se)) + float(m.group(7) or 0)


# --------------------------------------------------------------------------------------------- nginx

class Nginx:
    """nginx with Debian's nginx-rtmp: master + `workers` worker(s), its own config in a temp dir, HLS on
    tmpfs. Optionally an http {} server with sendfile serving www_dir (also tmpfs)."""

    def __init__(self, procs, rtmp=True, http_root=None, workers=1, hls_http=False):
        if not RTMP_MODULE.exists():
            raise RuntimeError(f"{RTMP_MODULE} missing: run scripts/install-deps.sh")
        self.procs = procs
        self.dir = Path(tempfile.mkdtemp(prefix="bench-nginx-", dir="/dev/shm"))
        self.hls = self.dir / "hls"
        self.hls.mkdir()
        self.rport, self.hport = free_ports(2)
        conf = [f"load_module {RTMP_MODULE};",
                "daemon off;",
                # As root the workers would run as nobody and could not write the HLS dir we created.
                *(["user root;"] if os.geteuid() == 0 else []),
                f"worker_processes {workers};",
                f"pid {self.dir}/nginx.pid;",
                f"error_log {self.dir}/error.log warn;",
                "events { worker_connections 4096; }"]
        if rtmp:
            conf.append(f"rtmp {{ server {{ listen 127.0.0.1:{self.rport}; chunk_size 4096;\n"
                        f"  application live {{ live on; hls on; hls_path {self.hls}; hls_fragment {SEGMENT_SECONDS}s; }} }} }}")
        if http_root:
            conf.append("http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;\n"
                        "  types { video/mp2t ts; application/vnd.apple.mpegurl m3u8; }\n"
                        f"  server {{ listen 127.0.0.1:{self.hport}; root {http_root}; }} }}")
        elif hls_http:
            # nginx-rtmp's HLS as its README serves it (http://HOST/hls/<stream>.m3u8), with the CORS header a
            # browser page of another origin needs (the latency run's page is about:blank).
            conf.append("http { access_log off; sendfile on; tcp_nopush on;\n"
                        "  types { video/mp2t ts; application/vnd.apple.mpegurl m3u8; }\n"
                        f"  server {{ listen 127.0.0.1:{self.hport}; location /hls/ {{ alias {self.hls}/;\n"
                        "    add_header Cache-Control no-cache; add_header Access-Control-Allow-Origin * always; } } }")
        (self.dir / "nginx.conf").write_text("\n".join(conf) + "\n")
        self.master = procs.spawn("nginx", ["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")])
        wait_port(self.rport if rtmp else self.hport)
        self.rtmp_base = f"rtmp://127.0.0.1:{self.rport}/live"
        time.sleep(0.2)

    def pids(self):
        pids = {"master": self.master.pid}
        for i, c in enumerate(sorted(children(self.master.pid))):
            pids[f"worker{i}"] = c
        return pids

    def last_fragment(self, stream):
        """Number of the last fragment listed in the stream's playlist, or None."""
        try:
            text = (self.hls / f"{stream}.m3u8").read_text()
        except OSError:
            return None
        nums = [int(n) for n in re.findall(rf"^{re.escape(stream)}-(\d+)\.ts$", text, re.M)]
        return max(nums) if nums else None

    def all_live(self, streams):
        """Whether every one of `streams` has a fragment in its playlist."""
        return all(self.last_fragment(s) is not None for s in streams)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- peer

class Peer:
    """Any RTMP-in, HLS-out server already running (started by hand, e.g. MediaMTX): publishers go to
    `rtmp_base`/<stream>, its playlists are read at `hls`, a template with {stream} or a base URL
    (then <base>/<stream>/index.m3u8); `ll` (template, optional) is its LL-HLS playlist for the browser
    latency run (else `hls` is played in low-latency mode too). `pid`, if given, is read in /proc for CPU and
    RSS (its children too, as nginx's workers). A multivariant playlist is followed to its first variant."""

    def __init__(self, name, rtmp_base, hls, pid=None, ll=None):
        self.name, self.rtmp_base, self.pid = name, rtmp_base.rstrip("/"), pid
        self.hls = hls if "{stream}" in hls else hls.rstrip("/") + "/{stream}/index.m3u8"
        self.ll = ll if ll is None or "{stream}" in ll else ll.rstrip("/") + "/{stream}/index.m3u8"

    @staticmethod
    def parse(spec, pids=None):
        """NAME=RTMP_BASE,HLS[,LL] (see --peer in compare.py)."""
        name, _, rest = spec.partition("=")
        parts = rest.split(",")
        if not name or len(parts) < 2:
            raise ValueError(f"--peer {spec!r}: expected NAME=RTMP_BASE,HLS_BASE_OR_TEMPLATE[,LL_TEMPLATE]")
        return Peer(name, parts[0], parts[1], (pids or {}).get(name), parts[2] if len(parts) > 2 else None)

    def url(self, stream, ll=False):
        return ((self.ll or self.hls) if ll else self.hls).format(stream=stream)

    def pids(self):
        if not self.pid:
            return {}
        pids = {self.name: self.pid}
        for i, c in enumerate(sorted(children(self.pid))):
            pids[f"{self.name}-child{i}"] = c
        return pids

    def media_playlist(self, stream):
        """(url, text) of the stream's media playlist, or None."""
        url = self.url(stream)
        for _ in range(2):
            try:
                text = http_get(url).decode(errors="replace")
            except OSError:
                return None
            if "#EXT-X-STREAM-INF" not in text:
                return url, text
            lines = text.splitlines()
            nxt = next((lines[i + 1] for i, l in enumerate(lines[:-1]) if l.startswith("#EXT-X-STREAM-INF")), None)
            if not nxt:
                return None
            url = urllib.parse.urljoin(url, nxt.strip())
        return None

    def last_segment(self, stream):
        """Media sequence number of the last full segment the stream's playlist lists, or None."""
        got = self.media_playlist(stream)
        if not got:
            return None
        text = got[1]
        m = re.search(r"^#EXT-X-MEDIA-SEQUENCE:(\d+)", text, re.M)
        n = len(re.findall(r"^#EXTINF", text, re.M))
        if not n:
            return None
        return (int(m.group(1)) if m else 0) + n - 1


# ----------------------------------------------------------------------------------------------- wrk

def wrk(url, threads=2, connections=50, seconds=20):
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    res = {"url": url, "raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else None
    m = re.search(r"Transfer/sec:\s+(\S+)", out)
    res["transfer_per_s"] = m.group(1) if m else None
    for p in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{p}%\s+(\S+)", out, re.M)
        res[f"p{p}_ms"] = to_ms(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors:.*", out)
    res["socket_errors"] = m.group(0) if m else None
    return res


def to_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        return None
    v = float(m.group(1))
    return round(v * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[m.group(2)], 3)


# ------------------------------------------------------------------------------------------ ingest run

def measure_ingest(side, n, seconds, settle, out, src, cold_start=False, edge_options=None, cache_bytes=None,
                   our_env=None):
    """One ingest run of `side` ("ours", "nginx" or a running Peer) with n publishers: start the server(s)
    (a peer is already running), n publishers, wait until every stream is live, settle, then measure for
    `seconds`. Everything we started is stopped before returning. Returns a dict of figures (see compare.py
    for their meaning)."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    procs = Procs(out)
    peer = side if isinstance(side, Peer) else None
    if peer:
        side = peer.name
    res = {"side": side, "publishers": n, "cores": os.cpu_count()}
    ng = None
    # A peer keeps running between runs: every run publishes under names of its own.
    prefix = f"bench{int(time.time()) % 100000}x" if peer else "bench"
    try:
        if peer:
            srv = peer
            server_pids = peer.pids()
            res["peer"] = {"rtmp": peer.rtmp_base, "hls": peer.hls, "ll": peer.ll, "pid": peer.pid}
        elif side == "ours":
            srv = Ours(procs, edge_options=edge_options, cache_bytes=cache_bytes, env=our_env)
            res["edge_kafka_options"] = srv.edge_options
            res["our_env"] = srv.env
            res["edge_cache_bytes"] = cache_bytes or 536870912
            server_pids = srv.pids()
        else:
            srv = ng = Nginx(procs, rtmp=True, workers=1)
            server_pids = ng.pids()
        time.sleep(0.5)
        idle_rss = {k: rss_mb(p) for k, p in server_pids.items()}
        log(f"{side}: starting {n} publishers")
        pubs = start_publishers(procs, n, srv.rtmp_base, src, name=prefix)
        streams = [f"{prefix}{i}" for i in range(n)]

        # Every stream live (its first segment out) before the clock starts.
        deadline = time.time() + 30 + n * 0.15
        while time.time() < deadline:
            if peer:
                ready = all(peer.last_segment(s) is not None for s in streams)
            elif side == "ours":
                ready = srv.all_live(n)
            else:
                ready = ng.all_live(streams)
            if ready:
                break
            time.sleep(0.5)
        res["all_live_before_window"] = ready
        time.sleep(settle)

        def snapshot():
            snap = {"t": time.time(), "cpu": {k: cpu_seconds(p) for k, p in server_pids.items()},
                    "pub_cpu": sum(cpu_seconds(p.pid) for p in pubs), "jiffies": machine_jiffies()}
            if side == "ours":
                m = srv.media_metrics()
                snap["produced"] = metric(m, "media_segments_produced_total")
                snap["dropped"] = metric(m, "media_segments_dropped_total")
                snap["errors"] = metric(m, "media_kafka_produce_errors_total")
                snap["per_stream"] = {l["stream"]: v for nm, l, v in m if nm == "media_stream_segments_total"}
            elif peer:
                snap["per_stream"] = {s: peer.last_segment(s) for s in streams}
            else:
                snap["per_stream"] = {s: ng.last_fragment(s) for s in streams}
            return snap

        s0 = snapshot()
        peak = dict(idle_rss)
        min_avail = mem_available_mb()
        while time.time() - s0["t"] < seconds:
            time.sleep(1)
            for k, p in server_pids.items():
                peak[k] = max(peak[k], rss_mb(p))
            min_avail = min(min_avail, mem_available_mb())
            if min_avail < 1500:
                raise RuntimeError(f"memory nearly exhausted ({min_avail:.0f} MB available): run stopped")
        s1 = snapshot()
        el = s1["t"] - s0["t"]
        res["seconds"] = round(el, 1)
        sm = n * el / 60
        cpu = {k: s1["cpu"][k] - s0["cpu"][k] for k in server_pids}
        busy = busy_fraction(s0["jiffies"], s1["jiffies"])
        res["cpu_s"] = {k: round(v, 2) for k, v in cpu.items()}
        res["cpu_s_per_stream_min"] = {k: round(v / sm, 4) for k, v in cpu.items()}
        res["server_cpu_s_per_stream_min"] = round(sum(cpu.values()) / sm, 4) if server_pids else None
        if side == "ours":
            res["media_cpu_s_per_stream_min"] = round(cpu["media"] / sm, 4)
        res["publishers_cpu_s_per_stream_min"] = round((s1["pub_cpu"] - s0["pub_cpu"]) / sm, 4)
        res["publishers_pss_mb_each"] = round(statistics.mean(pss_mb(p.pid) for p in pubs[:5]), 1)
        res["machine_cpu_busy_pct"] = round(100 * busy, 1)
        # CPU nobody here accounts for (other processes, the kernel's own threads, this script): a few
        # percent is normal; more means something else ran and the run should be repeated.
        ours_cpu = sum(cpu.values()) + s1["pub_cpu"] - s0["pub_cpu"]
        other = 100 * busy - 100 * ours_cpu / (el * (os.cpu_count() or 1))
        res["other_cpu_pct"] = round(other, 1)
        if other > 5:
            log(f"WARNING: {other:.0f}% of the machine's CPU went to other processes during this run; "
                "the figures are not clean")
        res["min_mem_available_mb"] = round(min_avail)
        res["idle_rss_mb"] = {k: round(v, 1) for k, v in idle_rss.items()}
        res["peak_rss_mb"] = {k: round(v, 1) for k, v in peak.items()}
        total_peak = sum(peak.values())
        res["peak_rss_mb_total"] = round(total_peak, 1)
        main = "media" if side == "ours" else "nginx" if side == "nginx" else "server"
        main_peak = peak["media"] if side == "ours" else total_peak
        main_idle = idle_rss["media"] if side == "ours" else sum(idle_rss.values())
        res[f"{main}_rss_mb_per_publisher"] = round(main_peak / n, 3) if server_pids else None
        res[f"{main}_rss_mb_per_publisher_marginal"] = round((main_peak - main_idle) / n, 3) if server_pids else None
        res["publishers_died"] = [p.bench_name for p in pubs if p.poll() is not None]

        # Segments per stream in the window vs expected (one per SEGMENT_SECONDS; +-1 at the edges).
        expected = el / SEGMENT_SECONDS
        floor_ok = int(expected) - 1

        def judge(counts, what):
            vals = [counts.get(s, 0) for s in streams]
            short = {s: counts.get(s, 0) for s in streams if counts.get(s, 0) < floor_ok}
            res[what] = {"total": sum(vals), "expected": round(expected * n, 1), "per_stream_min": min(vals),
                         "per_stream_max": max(vals), "expected_per_stream": round(expected, 2),
                         "streams_short": len(short), "short_examples": dict(list(short.items())[:5])}
            return not short

        ok = True
        if side == "ours":
            counts = {s: s1["per_stream"].get(s, 0) - s0["per_stream"].get(s, 0) for s in streams}
            ok &= judge(counts, "segments_closed_at_media")
            res["segments_acked_by_broker"] = int(s1["produced"] - s0["produced"])
            res["segments_dropped"] = int(s1["dropped"] - s0["dropped"])
            res["produce_errors"] = int(s1["errors"] - s0["errors"])
            ok &= res["segments_dropped"] == 0 and res["produce_errors"] == 0
            if cold_start:
                res["edge_cold_start"] = measure_cold_start(srv, streams)
            edge_m = srv.edge_metrics()
            res["edge_cache_bytes_used"] = int(metric(edge_m, "cdn_edge_cache_bytes"))
        else:
            counts = {s: (s1["per_stream"][s] or 0) - (s0["per_stream"][s] or 0) if s0["per_stream"][s] is not None
                      else 0 for s in streams}
            ok &= judge(counts, "segments_written")
    finally:
        procs.stop_all()
        if ng:
            ng.cleanup()

    if side == "ours":
        edge_log = (out / "edge.log").read_text()
        lines = edge_segment_lines(edge_log)
        plat = [x[4] for x in edge_part_lines(edge_log) if s0["t"] <= x[0] <= s1["t"]]
        res["part_availability_latency_ms"] = {"parts": len(plat), "p50": pct(plat, 50), "p99": pct(plat, 99),
                                               "max": max(plat) if plat else None}
        inwin = [x for x in lines if s0["t"] <= x[0] <= s1["t"]]
        counts = {}
        for _, s, _, _ in inwin:
            counts[s] = counts.get(s, 0) + 1
        ok &= judge(counts, "segments_listed_at_edge")
        # No sequence number may be skipped at the edge, over the whole run.
        seqs = {}
        for _, s, q, _ in lines:
            seqs.setdefault(s, []).append(q)
        gaps = sum(sum(1 for a, b in zip(sorted(v), sorted(v)[1:]) if b - a != 1) for v in seqs.values())
        res["edge_sequence_gaps"] = gaps
        ok &= gaps == 0
        lat = [x[3] for x in inwin]
        res["availability_latency_ms"] = {"segments": len(lat), "p50": pct(lat, 50), "p99": pct(lat, 99),
                                          "max": max(lat) if lat else None}
        text = (out / "media.log").read_text()
        res["media_warnings"] = len(re.findall(r" WARN ", text))
        # The two legs of the availability latency: media queued -> broker acknowledged, then
        # acknowledged -> listed at the edge (same clock: one machine).
        acked = {(s, q): (t, ms) for t, s, q, ms in media_delivered_lines(text)}
        legs = [(acked[(s, q)], t) for t, s, q, _ in inwin if (s, q) in acked]
        prod = [ms for (_, ms), _ in legs]
        after = [round((t - t_acked) * 1000, 1) for (t_acked, _), t in legs]
        res["produce_latency_ms"] = {"segments": len(prod), "p50": pct(prod, 50), "p99": pct(prod, 99),
                                     "max": max(prod) if prod else None}
        res["acked_to_edge_ms"] = {"p50": pct(after, 50), "p99": pct(after, 99), "max": max(after) if after else None}
    res["no_segment_missing"] = bool(ok and not res["publishers_died"])
    return res


def measure_cold_start(srv, streams, timeout=30):
    """Starts a second edge and times process start -> every stream's playlist served with as many segments
    as the running edge lists (the full window), up to the same last segment or a newer one."""
    import http.client
    port = free_port()
    t0 = time.time()
    edge2 = srv.start_edge("edge-cold", port)
    try:
        conn = None
        first_ok = None
        pending = list(streams)
        while pending and time.time() - t0 < timeout:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                s = pending[0]
                conn.request("GET", f"/live/{s}/index.m3u8")
                r = conn.getresponse()
                body = r.read().decode()
                segs = re.findall(r"^(\d+)\.ts$", body, re.M)
                if r.status == 200 and segs:
                    ref = re.findall(r"^(\d+)\.ts$", srv.playlist(s).decode(), re.M)
                    if len(segs) >= len(ref) and int(segs[-1]) >= int(ref[-1]):
                        if first_ok is None:
                            first_ok = time.time() - t0
                        pending.pop(0)
                        continue
            except (OSError, http.client.HTTPException):
                conn = None
            time.sleep(0.005)
        done = time.time() - t0
        return {"first_stream_s": round(first_ok, 3) if first_ok else None,
                "all_streams_s": round(done, 3) if not pending else None, "streams": len(streams),
                "timed_out": bool(pending)}
    finally:
        srv.procs.stop([edge2])
