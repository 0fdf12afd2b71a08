"""Where the review service may listen, decided before uvicorn starts.

The service carries people's financial data and bearer tokens. On a loopback address only
this machine can reach it, so plain HTTP is acceptable there. Anywhere else it must be
served over TLS (a certificate and key file handed to uvicorn), unless the operator says
explicitly that something in front of it terminates TLS (``--allow-insecure-bind``), and
even then it starts with a warning. Pure: no I/O but checking that the TLS files exist.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class InsecureBindError(ValueError):
    """The service was asked to listen on a non-loopback address without TLS."""


@dataclass(frozen=True)
class BindDecision:
    host: str
    tls: bool
    certfile: str | None = None
    keyfile: str | None = None
    warning: str | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def uvicorn_kwargs(self) -> dict[str, str]:
        """The TLS settings for ``uvicorn.run`` (empty for plain HTTP)."""
        return {"ssl_certfile": self.certfile, "ssl_keyfile": self.keyfile} if self.tls else {}  # type: ignore[dict-item]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and the usual names for them. ``0.0.0.0`` and ``::`` mean every
    interface, so they are not loopback."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def decide_bind(host: str, *, certfile: str | Path | None = None, keyfile: str | Path | None = None,
                allow_insecure: bool = False) -> BindDecision:
    """May the service listen on ``host``? Raises :class:`InsecureBindError` saying what to do
    when it may not; the decision carries the TLS files to pass to uvicorn, or a warning."""
    if (certfile is None) != (keyfile is None):
        given, missing = ("certificate", "key") if certfile is not None else ("key", "certificate")
        raise InsecureBindError(f"a TLS {given} file was given without its {missing} file: pass both "
                                "--tls-certfile and --tls-keyfile")
    if certfile is not None and keyfile is not None:
        for what, path in (("certificate", certfile), ("key", keyfile)):
            if not Path(path).is_file():
                raise InsecureBindError(f"the TLS {what} file {path} does not exist or is not a file")
        return BindDecision(host, tls=True, certfile=str(certfile), keyfile=str(keyfile))
    if is_loopback(host):
        return BindDecision(host, tls=False)
    if allow_insecure:
        return BindDecision(host, tls=False, warning=(
            f"WARNING: serving the review service on {host} over plain HTTP (--allow-insecure-bind): tokens, "
            "session cookies and applicants' data cross the network unencrypted unless a proxy in front of it "
            "terminates TLS"))
    raise InsecureBindError(
        f"refusing to serve the review service on {host} over plain HTTP: that address is reachable from other "
        "machines, and tokens, session cookies and applicants' data would cross the network unencrypted. "
        "Pass --tls-certfile and --tls-keyfile to serve HTTPS, bind to 127.0.0.1, or, if a proxy in front of "
        "it terminates TLS, pass --allow-insecure-bind."
    )
