"""The fleet's certificate authority, for mutual TLS.

``edgebed-server ca init`` makes a CA and the server's certificate under
``<state-dir>/ca/``; ``edgebed-server ca issue NAME`` a device certificate
whose common name is the device's name (that name is then the only one the
device may act as); ``edgebed-server ca revoke NAME`` refuses every
certificate issued to NAME from then on (every call checks the revoked serials,
which the server rereads when their file changes, so a revocation applies to the
next call). Keys are EC P-256 and stay 0600.
"""
import datetime
import ipaddress
import os
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgebed.results.jsonable import read_json, write_json_atomic
from edgebed.server.identity import CredentialStore, check_device_name

CA_DIR = "ca"
ISSUED_FILE = "issued.json"
VALID_DAYS = 3650


def _write_private(path: Path, data: bytes) -> None:
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
        fh.write(data)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgebed fleet"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS)))


def _load_ca(ca_dir: Path):
    try:
        cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    except FileNotFoundError:
        raise ValueError(f"no fleet CA under {ca_dir}: run `edgebed-server ca init` first") from None
    return cert, key


def init_ca(state_dir: Path, hosts: Sequence[str] = ()) -> Dict[str, Path]:
    """The CA and the server's certificate (valid for ``hosts``, localhost and
    127.0.0.1). Refuses to replace an existing CA: its devices would all be cut off."""
    ca_dir = Path(state_dir) / CA_DIR
    if (ca_dir / "ca.pem").exists():
        raise ValueError(f"{ca_dir} already holds a fleet CA; remove it to start over")
    ca_dir.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("edgebed fleet CA")
    ca_cert = (_builder(ca_name, ca_name, ca_key.public_key())
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                            crl_sign=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    _write_private(ca_dir / "ca.key", _pem_key(ca_key))
    (ca_dir / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    names: List[x509.GeneralName] = [x509.DNSName("localhost"),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_key = _key()
    server_cert = (_builder(_name(hosts[0] if hosts else "localhost"), ca_name,
                            server_key.public_key())
                   .add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False)
                   .sign(ca_key, hashes.SHA256()))
    _write_private(ca_dir / "server.key", _pem_key(server_key))
    (ca_dir / "server.pem").write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    return {"ca": ca_dir / "ca.pem", "server_cert": ca_dir / "server.pem",
            "server_key": ca_dir / "server.key"}


def issue(state_dir: Path, name: str, out_dir: Path) -> Tuple[Path, Path]:
    """A certificate (common name ``name``) and its key for one device."""
    check_device_name(name)
    ca_dir = Path(state_dir) / CA_DIR
    ca_cert, ca_key = _load_ca(ca_dir)
    key = _key()
    cert = (_builder(_name(name), ca_cert.subject, key.public_key())
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out_dir / f"{name}.pem", out_dir / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, _pem_key(key))
    issued_path = ca_dir / ISSUED_FILE
    issued = read_json(issued_path, {})
    issued.setdefault(name, []).append(str(cert.serial_number))
    write_json_atomic(issued_path, issued)  # as the other state files: never half written
    return cert_path, key_path


def revoke(state_dir: Path, name: str) -> List[int]:
    """Refuse every certificate issued to ``name``; the serials revoked."""
    issued = read_json(Path(state_dir) / CA_DIR / ISSUED_FILE, {})
    serials = [int(s) for s in issued.get(name, [])]
    if not serials:
        raise ValueError(f"no certificate was issued to {name!r} by this CA")
    store = CredentialStore(Path(state_dir))
    for serial in serials:
        store.revoke_serial(serial, name)
    return serials
