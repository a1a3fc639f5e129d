"""URLs of downloads: ``--mirror``, credentials in a URL, and the redacted form that is shown.

A mirror may carry credentials (``https://user:password@mirror.example.org/data``). They are sent
as HTTP basic auth to that host only (never along a redirect), and every URL rsir shows or writes
down (progress, tables, JSON, error messages, markers, checksum records) is :func:`redact`-ed first:
``https://***@mirror.example.org/data/...``.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit, urlunsplit

from rsir_cli.errors import UsageError

REDACTED = "***"


def redact(url: str) -> str:
    """``url`` without the user name and password it may carry (they become ``***``)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"{REDACTED}@{host}", parts.path, parts.query, parts.fragment))


def host_of(url: str) -> str:
    """The ``host[:port]`` of ``url``, without credentials (for messages)."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1]


def hostname_of(url: str) -> str:
    """The bare host name of ``url`` (no credentials, no port)."""
    return urlsplit(url).hostname or host_of(url)


def split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without its credentials, and the ``Authorization`` header value they make (or None).

    ``https://user:p%40ss@host/x`` -> (``https://host/x``, ``Basic dXNlcjpwQHNz``); the user name and
    password are percent-decoded first, as RFC 3986 writes them.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), f"Basic {token}"


def check_mirror(mirror: str | None) -> str | None:
    """Validate ``--mirror``: an ``http(s)://[user:password@]host[:port][/prefix]`` URL, without a trailing slash.

    Raises:
        UsageError: not an http(s) URL with a host (the message shows the URL redacted).
    """
    if mirror is None:
        return None
    parts = urlsplit(mirror)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise UsageError(
            f"--mirror must be an http:// or https:// URL with a host (and maybe a path), not {redact(mirror)!r}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise UsageError(f"--mirror has an invalid port: {redact(mirror)!r}") from None
    return mirror.rstrip("/")


def apply_mirror(url: str, mirror: str | None) -> str:
    """Point ``url`` at ``mirror``: its scheme and host (and path prefix) replace the original's.

    ``https://zenodo.org/records/1/files/a.tar.gz?download=1`` with mirror
    ``http://127.0.0.1:8000/data`` becomes ``http://127.0.0.1:8000/data/records/1/files/a.tar.gz?download=1``.
    """
    mirror = check_mirror(mirror)
    if not mirror:
        return url
    target, source = urlsplit(mirror), urlsplit(url)
    return urlunsplit((target.scheme, target.netloc, target.path.rstrip("/") + source.path, source.query, ""))


__all__ = ["apply_mirror", "check_mirror", "host_of", "hostname_of", "redact", "split_credentials"]
