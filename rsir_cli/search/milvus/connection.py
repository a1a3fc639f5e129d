"""Where a Milvus lives and one client of it: URIs, tokens kept out of every message, the connection.

One URI picks where the vectors live:

- a local path ending in ``.db`` (default ``<store>/milvus.db``): **Milvus Lite**, embedded, nothing
  to start, no users (a token given for it is ignored, with one warning). Lite 2.5.1 imports
  ``pkg_resources``, which setuptools 81+ no longer ships; a two-name stand-in (from
  :mod:`importlib.metadata`) is installed when it is missing.
- ``http(s)://host:port``: a Milvus standalone server or a distributed cluster, with a token
  (``user:password`` or an API key) for authenticated servers. The token is never logged and is
  scrubbed from every error message.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from rsir_cli.errors import BackendError, MissingDependencyError, UsageError

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "pymilvus>=2.5.10,<2.6" milvus-lite==2.5.1'
DEFAULT_LITE_FILE = "milvus.db"
#: seconds to wait for a server to answer before calling it unreachable (env RSIR_MILVUS_TIMEOUT)
DEFAULT_TIMEOUT_S = 10.0


def _install_pkg_resources_stand_in() -> None:
    """milvus-lite 2.5.1 imports two names from ``pkg_resources`` (gone from setuptools 81+)."""
    import importlib.metadata as metadata

    module = types.ModuleType("pkg_resources")
    module.DistributionNotFound = metadata.PackageNotFoundError  # type: ignore[attr-defined]
    module.get_distribution = lambda name: types.SimpleNamespace(version=metadata.version(name))  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = module


def _quiet_pymilvus() -> None:
    # pymilvus logs every failed RPC on its own handlers (connection aliases included); rsir
    # reports errors once, scrubbed, through its error boundary instead.
    for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.decorators", "pymilvus.orm"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def import_pymilvus(lite: bool = False) -> ModuleType:
    """Import pymilvus (and Milvus Lite when ``lite``), or say how to install them."""
    try:
        pymilvus = importlib.import_module("pymilvus")
    except ImportError:
        raise MissingDependencyError(f"the Milvus backend needs pymilvus: {INSTALL_HINT}") from None
    _quiet_pymilvus()
    if lite:
        try:
            importlib.import_module("milvus_lite")
        except ModuleNotFoundError as error:
            if error.name != "pkg_resources":
                raise MissingDependencyError(
                    f"Milvus Lite (a local .db file) needs milvus-lite: {INSTALL_HINT}; "
                    "or use a Milvus server with --uri http://HOST:19530"
                ) from None
            _install_pkg_resources_stand_in()
            sys.modules.pop("milvus_lite", None)
            importlib.import_module("milvus_lite")
    return pymilvus


# ---------------------------------------------------------------------------------- target
@dataclass(frozen=True)
class MilvusTarget:
    """Where a collection lives: a Milvus Lite file or a server URI, and the token (never shown)."""

    uri: str
    token: str | None = field(default=None, repr=False)

    @property
    def lite(self) -> bool:
        return "://" not in self.uri

    @property
    def display(self) -> str:
        """The URI as it may be printed: credentials inside it are removed."""
        return re.sub(r"://[^/@]*@", "://", self.uri)

    @property
    def kind(self) -> str:
        return "Milvus Lite" if self.lite else "Milvus server"

    def secrets(self) -> list[str]:
        """Strings that must never appear in output: the token, its password part, its md5 (pymilvus' alias)."""
        found = []
        credentials = [self.token] if self.token else []
        match = re.search(r"://([^/@]*)@", self.uri)
        if match:
            credentials.append(match.group(1))
        for credential in credentials:
            found += [credential, hashlib.md5(credential.encode(), usedforsecurity=False).hexdigest()]
            password = credential.split(":", 1)[1] if ":" in credential else ""
            # A password alone only when it cannot be an ordinary word of a message (the default
            # root password is "Milvus").
            if len(password) >= 8:
                found.append(password)
        return [s for s in found if len(s) >= 3]


def default_lite_path(store_root: str | Path) -> Path:
    """The Milvus Lite file used when no URI is given: ``<store>/milvus.db``."""
    return Path(store_root).absolute() / DEFAULT_LITE_FILE


def resolve_target(uri: str | None, token: str | None, store_root: str | Path) -> MilvusTarget:
    """The Milvus to talk to: ``uri`` (a ``.db`` path or ``http(s)://host:port``) or ``<store>/milvus.db``.

    A token for Milvus Lite is dropped with one warning (Lite has no users).

    Raises:
        UsageError: an unknown scheme, a server URI without host, or a Lite path not ending in ``.db``.
    """
    if not uri:
        return _lite(default_lite_path(store_root), token)
    uri = uri.strip()
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        if scheme.lower() not in ("http", "https"):
            raise UsageError(
                f"--uri {MilvusTarget(uri).display}: use http(s)://HOST:PORT for a Milvus server or cluster, "
                "or a local file path ending in .db for Milvus Lite"
            )
        if not rest.split("@")[-1].split("/")[0]:
            raise UsageError(f"--uri {MilvusTarget(uri).display} names no host; for example http://localhost:19530")
        return MilvusTarget(uri, token or None)
    path = Path(uri).expanduser()
    if path.suffix != ".db":
        raise UsageError(
            f"--uri {uri}: a Milvus Lite file must end in .db (for example {path.with_suffix('.db')}); "
            "a server is http(s)://HOST:PORT"
        )
    if path.is_dir():
        raise UsageError(f"--uri {uri} is a folder; give a file path ending in .db")
    return _lite(path, token)


def _lite(path: Path, token: str | None) -> MilvusTarget:
    if token:  # often RSIR_MILVUS_TOKEN, set for a server and still in the environment
        log.warning(
            "the Milvus token (--token / RSIR_MILVUS_TOKEN) is ignored: Milvus Lite, a local file, has no users"
        )
    return MilvusTarget(str(path.absolute()), None)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _reason(error: BaseException) -> str:
    """The useful part of a pymilvus or gRPC error."""
    message = getattr(error, "message", None)
    if isinstance(message, str) and message:
        return message
    details = getattr(error, "details", None)
    if callable(details):
        try:
            text = details()
        except Exception:  # a gRPC error without details
            text = None
        if text:
            return str(text)
    return str(error).strip() or type(error).__name__


def _status(error: BaseException) -> str:
    code = getattr(error, "code", None)
    if callable(code):
        try:
            return str(code())
        except Exception:
            return ""
    return str(code or "")


#: open connections per Milvus Lite file in this process
_LITE_USERS: dict[str, int] = {}


class UnsupportedIndexError(BackendError):
    """This Milvus (Milvus Lite, typically) cannot build the index type asked for."""


# ------------------------------------------------------------------------------ connection
class MilvusConnection:
    """One client of one Milvus; every call's error becomes a one-line, token-free BackendError.

    Constructing it connects (Milvus Lite: starts the embedded server for the file).
    """

    def __init__(self, target: MilvusTarget, timeout: float | None = None) -> None:
        self.target = target
        self.timeout = float(timeout or os.environ.get("RSIR_MILVUS_TIMEOUT") or DEFAULT_TIMEOUT_S)
        self._closed = False
        pymilvus = import_pymilvus(lite=target.lite)
        self.data_type = pymilvus.DataType
        self._client_class = pymilvus.MilvusClient
        began = time.perf_counter()
        try:
            if target.lite:
                Path(target.uri).parent.mkdir(parents=True, exist_ok=True)
                self.client = pymilvus.MilvusClient(uri=target.uri)
                _LITE_USERS[target.uri] = _LITE_USERS.get(target.uri, 0) + 1
            else:
                self.client = pymilvus.MilvusClient(uri=target.uri, token=target.token or "", timeout=self.timeout)
        except Exception as error:  # pymilvus and gRPC raise many types
            raise self._connect_error(error, time.perf_counter() - began) from None
        log.debug("connected to %s %s", target.kind, target.display)

    def _connect_error(self, error: BaseException, seconds: float) -> BackendError:
        reason = scrub(_reason(error), self.target.secrets())
        where = self.target.display
        status = _status(error)
        if self.target.lite:
            return BackendError(
                f"cannot open the Milvus Lite file {where} ({reason}): another process (a running rsir index "
                "or rsir bench-milvus?) may hold it, or it is damaged; wait for it, or pass another --uri"
            )
        lowered = reason.lower()
        if "UNAUTHENTICATED" in status or "auth" in lowered or "credential" in lowered:
            if self.target.token:
                return BackendError(
                    f"Milvus at {where} refused the token ({reason}); pass the right one with --token or "
                    "RSIR_MILVUS_TOKEN (user:password, or an API key)"
                )
            return BackendError(
                f"Milvus at {where} needs a token ({reason}); pass --token or set RSIR_MILVUS_TOKEN "
                "(user:password, or an API key)"
            )
        return BackendError(
            f"cannot reach Milvus at {where} (no answer within {max(seconds, 0.1):.0f} s: {reason}); "
            "is the server running and the address right? For Milvus Lite give a .db file path instead"
        )

    def call(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one client call; any failure becomes a BackendError that names ``what`` and hides the token."""
        try:
            return function(*args, **kwargs)
        except (BackendError, UsageError):
            raise
        except Exception as error:  # pymilvus and gRPC raise many types
            reason = scrub(_reason(error), self.target.secrets())
            status = _status(error)
            log.debug("milvus %s failed: %s %s", what, type(error).__name__, reason)
            if "UNAVAILABLE" in status or "DEADLINE_EXCEEDED" in status:
                raise BackendError(
                    f"lost the connection to Milvus at {self.target.display} during {what} ({reason}); "
                    "is the server still running?"
                ) from None
            lowered = reason.lower()
            if "invalid index type" in lowered or "only support" in lowered or "not supported" in lowered:
                raise UnsupportedIndexError(
                    f"{self.target.kind} at {self.target.display} cannot build this index ({reason}); "
                    "use --index-type flat, or a Milvus server (--uri http://HOST:19530)"
                ) from None
            raise BackendError(f"Milvus {what} failed at {self.target.display}: {reason}") from None

    def server_version(self) -> str:
        """The server's version; for Milvus Lite (which does not answer it) the milvus-lite package's."""
        if self.target.lite:
            import importlib.metadata as metadata

            try:
                return metadata.version("milvus-lite")
            except metadata.PackageNotFoundError:
                return "unknown"
        try:
            return str(self.call("get_server_version", self.client.get_server_version))
        except BackendError:
            return "unknown"

    def has_collection(self, name: str) -> bool:
        return bool(self.call("has_collection", self.client.has_collection, name))

    def drop_collection(self, name: str) -> None:
        if self.has_collection(name):
            self.call("drop_collection", self.client.drop_collection, name)

    def close(self) -> None:
        """Close the client; for Milvus Lite, the last connection to a file also stops its embedded server."""
        if self._closed:
            return
        self._closed = True
        try:
            self.client.close()
        except Exception:  # a dead server
            pass
        if self.target.lite:
            # One embedded server per file serves every connection of this process to it.
            _LITE_USERS[self.target.uri] = _LITE_USERS.get(self.target.uri, 1) - 1
            if _LITE_USERS[self.target.uri] > 0:
                return
            del _LITE_USERS[self.target.uri]
            try:
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.target.uri)
            except Exception:
                pass

    def __enter__(self) -> MilvusConnection:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
