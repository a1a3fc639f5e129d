"""Start and stop a local Milvus standalone server (the PyPI package ``milvus``) for tests and benchmarks.

The ``milvus`` package (2.3.x) ships ``milvus-server --data DIR``: a Python launcher that unpacks
and runs ``milvus run standalone`` (gRPC on 19530, health on http://127.0.0.1:9091/healthz),
ready in about 10 s, stopped with SIGINT to the launcher. It listens on all interfaces, so rsir
runs it inside a private network namespace (``unshare -n``, loopback brought up here), where
nothing outside can reach it::

    unshare -n python -m rsir_cli.milvus_server --data /tmp/milvus [--auth] -- rsir bench-milvus

The command runs with ``RSIR_MILVUS_URI`` (and, with ``--auth``, ``RSIR_MILVUS_TOKEN`` set to the
fresh server's default ``root:Milvus``) and ``RSIR_MILVUS_SERVER_PID`` (the server process, for
its memory); its exit code is returned. A developer tool: constructing :class:`LocalMilvusServer`
starts nothing, :meth:`LocalMilvusServer.start` does.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rsir_cli.errors import BackendError, MissingDependencyError

log = logging.getLogger(__name__)

GRPC_PORT = 19530
HEALTH_URL = "http://127.0.0.1:9091/healthz"
DEFAULT_ROOT_TOKEN = "root:Milvus"  # a fresh server's default credentials
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


def server_executable() -> str:
    """The ``milvus-server`` launcher of this environment.

    Raises:
        MissingDependencyError: the ``milvus`` package is not installed.
    """
    beside = Path(sys.executable).parent / "milvus-server"
    found = str(beside) if beside.exists() else shutil.which("milvus-server")
    if not found:
        raise MissingDependencyError("a local Milvus server needs the milvus package: pip install milvus")
    return found


def loopback_up() -> None:
    """Bring the loopback interface up (a fresh network namespace has it down).

    Asks netlink (``ip``), which sees the current namespace; /sys may still show the host's.
    """
    shown = subprocess.run(["ip", "-o", "link", "show", "lo"], capture_output=True, text=True, timeout=10)
    flags = shown.stdout.split("<", 1)[-1].split(">", 1)[0].split(",")
    if shown.returncode == 0 and "UP" in flags:
        return
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True, timeout=10)


def private_network_available() -> tuple[bool, str]:
    """Whether ``unshare -n`` works here (root, or unprivileged user namespaces), and why not."""
    if not shutil.which("unshare"):
        return False, "the unshare command is not installed (util-linux)"
    try:
        result = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, f"unshare -n failed: {error}"
    if result.returncode != 0:
        return False, f"unshare -n is not permitted here: {result.stderr.strip() or result.returncode}"
    return True, ""


def _port_open(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except OSError:
        return False


class LocalMilvusServer:
    """A Milvus standalone server in ``data_dir``, started by :meth:`start`, stopped by :meth:`stop`.

    Args:
        data_dir: where the server keeps its binaries, configuration, logs and data.
        auth: require authentication (user ``root``, password ``Milvus``).
    """

    def __init__(self, data_dir: str | Path, auth: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.auth = auth
        self.process: subprocess.Popen[bytes] | None = None
        self.server_pid: int | None = None  # the `milvus run standalone` process under the launcher

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{GRPC_PORT}"

    @property
    def token(self) -> str | None:
        return DEFAULT_ROOT_TOKEN if self.auth else None

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the server and wait until its health check answers OK.

        Raises:
            BackendError: it exited or did not become ready in time (the log's tail is in the message).
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [server_executable(), "--data", str(self.data_dir)]
        if self.auth:
            command += ["--authorization-enabled", "true"]
        log_path = self.data_dir / "launcher.log"
        with open(log_path, "wb") as log_file:
            self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BackendError(f"the Milvus server exited during start-up: {self._log_tail(log_path)}")
            try:
                with urllib.request.urlopen(HEALTH_URL, timeout=1) as answer:
                    healthy = b"OK" in answer.read()
                if healthy and _port_open(GRPC_PORT):
                    children = _children(self.process.pid)
                    self.server_pid = children[0] if children else None
                    log.info("Milvus server ready (launcher %d, server %s)", self.process.pid, self.server_pid)
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise BackendError(f"the Milvus server was not ready after {timeout:.0f} s: {self._log_tail(log_path)}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGINT to the launcher (it stops the server), then SIGKILL whatever is left after ``timeout``."""
        process, self.process = self.process, None
        if process is None:
            return
        server = self.server_pid or next(iter(_children(process.pid)), None)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if server is not None and _alive(server):
            try:
                os.kill(server, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def __enter__(self) -> LocalMilvusServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @staticmethod
    def _log_tail(path: Path) -> str:
        try:
            return path.read_text(errors="replace").strip()[-500:] or "(no output)"
        except OSError:
            return "(no log)"


def main(argv: list[str] | None = None) -> int:
    """``python -m rsir_cli.milvus_server --data DIR [--auth] -- COMMAND ...``: run COMMAND against a fresh server."""
    parser = argparse.ArgumentParser(prog="python -m rsir_cli.milvus_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="server data directory (created)")
    parser.add_argument("--auth", action="store_true", help="require authentication (root:Milvus)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ... to run while the server is up")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command after --")
    logging.basicConfig(level=logging.INFO, format="milvus_server: %(message)s", stream=sys.stderr)
    loopback_up()
    server = LocalMilvusServer(args.data, auth=args.auth)
    began = time.monotonic()
    try:
        server.start()
        log.info("ready after %.1f s", time.monotonic() - began)
        env = {**os.environ, "RSIR_MILVUS_URI": server.uri}
        if server.token:
            env["RSIR_MILVUS_TOKEN"] = server.token
        if server.server_pid:
            env["RSIR_MILVUS_SERVER_PID"] = str(server.server_pid)
        return subprocess.run(command, env=env).returncode
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
