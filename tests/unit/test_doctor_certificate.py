"""The doctor's certificate check: the proxy's certificate read with cryptography (no openssl), its verdicts
at CERT_WARN_DAYS and past the end, and a file that is no certificate."""

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from reconciler.cli.doctor import CERT_WARN_DAYS, FAIL, OK, WARN, check_certificate

NOW = datetime.datetime.now(datetime.UTC)


def self_signed(path, days: float, name: str = "hub.school.example"):
    """A self-signed certificate valid from an hour ago for ``days`` more; its key next to it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = path.with_suffix(".key")
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path, key_file


def test_a_certificate_valid_for_a_while_yet(tmp_path):
    cert, _ = self_signed(tmp_path / "cert.pem", days=90)
    (check,) = check_certificate(cert)
    ends = NOW + datetime.timedelta(days=90)
    assert check.verdict == OK and check.what == "certificate"
    assert check.detail == f"valid until {ends:%Y-%m-%d}"


def test_a_certificate_near_its_end_warns(tmp_path):
    cert, _ = self_signed(tmp_path / "cert.pem", days=3)
    (soon,) = check_certificate(cert)
    assert soon.verdict == WARN and f"{cert} expires in 2 day(s)" in soon.detail, soon  # 2 days 23 h and some
    assert soon.fix == "renew it (certbot renew), then restart the hub"
    edge, _ = self_signed(tmp_path / "edge.pem", days=CERT_WARN_DAYS + 1)
    assert check_certificate(edge)[0].verdict == OK  # CERT_WARN_DAYS whole days left: no warning yet
    assert check_certificate(edge, now=NOW + datetime.timedelta(days=2))[0].verdict == WARN


def test_an_expired_certificate_fails(tmp_path):
    cert, _ = self_signed(tmp_path / "cert.pem", days=3)
    later = NOW + datetime.timedelta(days=4)
    (expired,) = check_certificate(cert, now=later)
    ends = NOW + datetime.timedelta(days=3)
    assert expired.verdict == FAIL
    assert expired.detail == f"{cert} expired on {ends:%Y-%m-%d}: browsers refuse the hub"
    assert "certbot renew" in expired.fix


def test_the_server_certificate_of_a_chain_is_the_one_read(tmp_path):
    """fullchain.pem: the server's certificate first, then its issuer's (which lives longer)."""
    server, _ = self_signed(tmp_path / "server.pem", days=3)
    issuer, _ = self_signed(tmp_path / "issuer.pem", days=900, name="Example CA")
    chain = tmp_path / "fullchain.pem"
    chain.write_bytes(server.read_bytes() + issuer.read_bytes())
    assert check_certificate(chain)[0].verdict == WARN


@pytest.mark.parametrize("what", ["a key", "missing", "empty", "garbage"])
def test_a_file_that_is_no_certificate_fails(tmp_path, what):
    _, key = self_signed(tmp_path / "cert.pem", days=90)
    path = {"a key": key, "missing": tmp_path / "absent.pem"}.get(what, tmp_path / "other.pem")
    if what == "empty":
        path.write_bytes(b"")
    elif what == "garbage":
        path.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    (check,) = check_certificate(path)
    assert check.verdict == FAIL and check.detail.startswith(f"{path} cannot be read as a certificate: ")
    assert check.fix == "see HTTPS in docs/how-to/jupyterhub.md"
