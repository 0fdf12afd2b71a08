"""`aios review serve` listens on loopback over HTTP, elsewhere only with TLS or an explicit flag."""

from __future__ import annotations

import pytest

from aios_pipelines import cli
from aios_pipelines.review import app as review_app
from aios_pipelines.review.serving import InsecureBindError, decide_bind, is_loopback


@pytest.fixture()
def tls_files(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    return str(cert), str(key)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_is_served_over_plain_http(host):
    decision = decide_bind(host)
    assert is_loopback(host)
    assert decision.tls is False and decision.warning is None and decision.uvicorn_kwargs() == {}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.7", "review.example.org"])
def test_other_addresses_are_refused_without_tls(host):
    assert not is_loopback(host)
    with pytest.raises(InsecureBindError) as refused:
        decide_bind(host)
    message = str(refused.value)
    assert host in message and "--tls-certfile" in message and "--allow-insecure-bind" in message


def test_tls_files_that_exist_allow_any_address(tls_files):
    cert, key = tls_files
    decision = decide_bind("0.0.0.0", certfile=cert, keyfile=key)
    assert decision.tls and decision.scheme == "https" and decision.warning is None
    assert decision.uvicorn_kwargs() == {"ssl_certfile": cert, "ssl_keyfile": key}


def test_missing_or_half_tls_settings_are_refused(tls_files, tmp_path):
    cert, key = tls_files
    with pytest.raises(InsecureBindError, match="does not exist"):
        decide_bind("0.0.0.0", certfile=str(tmp_path / "nope.pem"), keyfile=key)
    with pytest.raises(InsecureBindError, match="without its key"):
        decide_bind("0.0.0.0", certfile=cert)
    with pytest.raises(InsecureBindError, match="without its certificate"):
        decide_bind("127.0.0.1", keyfile=key)


def test_the_explicit_flag_allows_plain_http_with_a_warning():
    decision = decide_bind("192.168.1.20", allow_insecure=True)
    assert decision.tls is False
    assert decision.warning and "WARNING" in decision.warning and "192.168.1.20" in decision.warning


@pytest.fixture()
def served(aios_paths, monkeypatch):
    """Replace uvicorn: record what the CLI would have served."""
    calls: list[dict] = []
    monkeypatch.setattr(review_app, "serve", lambda store, **kwargs: calls.append(kwargs))
    return calls


def test_cli_refuses_a_lan_address_with_a_clear_error_and_never_starts(served, capsys):
    code = cli.main(["review", "serve", "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert code == 2 and served == []
    assert err.startswith("error: refusing to serve the review service on 0.0.0.0 over plain HTTP")


def test_cli_serves_loopback_tls_and_flagged_addresses(served, tls_files, capsys):
    cert, key = tls_files
    assert cli.main(["review", "serve"]) == 0
    assert cli.main(["review", "serve", "--host", "0.0.0.0", "--tls-certfile", cert, "--tls-keyfile", key]) == 0
    assert cli.main(["review", "serve", "--host", "10.1.2.3", "--allow-insecure-bind"]) == 0
    out = capsys.readouterr()
    assert [(c["host"], c["ssl_certfile"], c["ssl_keyfile"]) for c in served] == [
        ("127.0.0.1", None, None), ("0.0.0.0", cert, key), ("10.1.2.3", None, None)]
    assert "https://0.0.0.0:8000" in out.out
    assert "WARNING" in out.err and "10.1.2.3" in out.err


def test_dev_refuses_a_lan_address_before_starting_anything(aios_paths, monkeypatch, capsys):
    import subprocess

    started: list = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a) or pytest.fail("started a process"))
    assert cli.main(["dev", "--host", "0.0.0.0"]) == 2
    assert started == [] and "--allow-insecure-bind" in capsys.readouterr().err
