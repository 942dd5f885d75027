"""The fleet's certificates: a CA, the broker's server certificate and one client certificate per
identity (a car, or a fleet-side service), written as PEM files with private keys readable by
their owner only.

The broker runs with `require_certificate true` and `use_identity_as_username true`: the client
certificate's common name becomes the MQTT user name, and the ACL (agent/fleet/acl.py) grants
topics by that name. So the CN is the security boundary, and the two namespaces never overlap:
a car's CN is its car id (`[A-Za-z0-9_-]{1,64}`, the same rule as the topic level it owns); a
fleet service's CN is `fleet.<name>`, which can never be a car id because of the dot.

Keys are EC P-256 (accepted by every OpenSSL mosquitto links against, and by Python's ssl).
A production fleet keeps its CA key in an HSM; this module serves tests, the HIL bench and
small deployments. Revocation: `revoke` adds a certificate to crl.pem, which the broker reads
as its `crlfile`. Command line: `python -m agent.fleet.pki --help`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.fleet.protocol import ProtocolError, check_id

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_NAME = "broker"
FLEET_PREFIX = "fleet."
RESERVED_NAMES = frozenset({"ca", SERVER_NAME})
DEFAULT_SERVER_HOSTS = ("localhost", "127.0.0.1", "::1")
CRL = "crl.pem"
REVOKED = "revoked.txt"
CA_DAYS = 3650
CRL_DAYS = 30
LEAF_DAYS = 397
# Clock skew between the issuing machine and a car that has just booted.
BACKDATE = dt.timedelta(minutes=5)

_FLEET_NAME = re.compile(r"[a-z0-9_-]{1,48}")


class PkiError(RuntimeError):
    """A certificate that cannot be made or loaded: bad name, missing or mismatched CA files."""


@dataclass(frozen=True)
class Identity:
    """A certificate and its private key on disk; `name` is the certificate's common name."""

    name: str
    cert: Path
    key: Path


def car_common_name(car_id: str) -> str:
    try:
        cn = check_id("car_id", car_id)
    except ProtocolError as e:
        raise PkiError(str(e)) from None
    if cn in RESERVED_NAMES:
        # Its files would overwrite the CA's or the broker's.
        raise PkiError(f"{cn!r} is reserved and cannot be a car id")
    return cn


def fleet_common_name(name: str) -> str:
    """`dispatch` -> `fleet.dispatch`; the dot keeps it out of the car id namespace."""
    name = name.removeprefix(FLEET_PREFIX)
    if not _FLEET_NAME.fullmatch(name):
        raise PkiError(f"fleet identity must match [a-z0-9_-]{{1,48}}, got {name!r:.80}")
    return FLEET_PREFIX + name


def common_name(cert_path: str | Path) -> str:
    """The CN of a PEM certificate: the user name mosquitto will see."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1:
        raise PkiError(f"{cert_path}: expected exactly one common name, found {len(attrs)}")
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode()


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the first byte (never chmod after the fact), then renamed into place so a
    # reader never sees half a key.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not re.fullmatch(r"[A-Za-z0-9.*-]{1,253}", host):
        raise PkiError(f"not an IP address or DNS name: {host!r:.80}")
    return x509.DNSName(host)


def _make_ca(d: Path, name: str, days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + dt.timedelta(days=days))
        # path_length 0: this CA signs leaf certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(d / CA_KEY, _key_pem(key))
    _write_public(d / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _read_ca(d: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((d / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((d / CA_KEY).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise PkiError(f"cannot load the CA from {d}: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{d / CA_KEY} is not an EC key")
    if cert.public_key() != key.public_key():
        raise PkiError(f"{d / CA_CERT} and {d / CA_KEY} do not belong together")
    return cert, key


class CertificateAuthority:
    """The CA's certificate and key, and the directory its issued files go to."""

    def __init__(self, directory: str | Path, name: str = "fleetnode fleet CA",
                 days: int = CA_DAYS) -> None:
        """Open the CA in `directory`, or make one there (`name`, valid `days`) if it has none.
        `create` and `load` are the strict forms."""
        self.dir = Path(directory)
        if (self.dir / CA_KEY).exists():
            self.cert, self._key = _read_ca(self.dir)
        else:
            self.cert, self._key = _make_ca(self.dir, name, days)
            self.write_crl()  # empty, so the broker can name its crlfile from the first day

    @property
    def cert_path(self) -> Path:
        return self.dir / CA_CERT

    @classmethod
    def create(cls, directory: str | Path, name: str = "fleetnode fleet CA",
               days: int = CA_DAYS) -> CertificateAuthority:
        """A new CA in `directory`. Refuses to replace an existing CA key: every certificate it
        issued would stop being accepted."""
        if (Path(directory) / CA_KEY).exists():
            raise PkiError(f"{Path(directory) / CA_KEY} exists; a new CA would orphan every "
                           "certificate it issued")
        return cls(directory, name, days)

    @classmethod
    def load(cls, directory: str | Path) -> CertificateAuthority:
        """The CA already in `directory`; PkiError if there is none."""
        if not (Path(directory) / CA_KEY).exists():
            raise PkiError(f"no CA in {directory} (run init-ca first)")
        return cls(directory)

    def _issue(self, cn: str, usage: x509.ObjectIdentifier, days: int,
               sans: Sequence[x509.GeneralName] = ()) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + dt.timedelta(days=days), self.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            # A car's certificate cannot serve as a broker's, nor the broker's as a client's.
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        cert = b.sign(self._key, hashes.SHA256())
        stem = self.dir / cn
        ident = Identity(cn, stem.with_name(cn + ".pem"), stem.with_name(cn + ".key"))
        _write_private(ident.key, _key_pem(key))
        _write_public(ident.cert, cert.public_bytes(serialization.Encoding.PEM))
        return ident

    def issue_car(self, car_id: str, days: int = LEAF_DAYS) -> Identity:
        """A client certificate whose CN is the car id: what the ACL knows the car by."""
        return self._issue(car_common_name(car_id), ExtendedKeyUsageOID.CLIENT_AUTH, days)

    def issue_fleet(self, name: str, days: int = LEAF_DAYS) -> Identity:
        """A client certificate for a fleet-side service (dispatcher, watcher): CN `fleet.<name>`."""
        return self._issue(fleet_common_name(name), ExtendedKeyUsageOID.CLIENT_AUTH, days)

    def issue(self, common_name: str, server: bool = False) -> Identity:
        """One entry point for all three kinds: the broker's certificate (`server=True`, valid
        for `common_name` and the loopback names), a fleet service's (`fleet.<name>`), a car's."""
        if server:
            hosts = dict.fromkeys([common_name, *DEFAULT_SERVER_HOSTS])
            return self.issue_server(hosts)
        if common_name.startswith(FLEET_PREFIX):
            return self.issue_fleet(common_name)
        return self.issue_car(common_name)

    def issue_server(self, hosts: Iterable[str] = DEFAULT_SERVER_HOSTS,
                     days: int = LEAF_DAYS) -> Identity:
        """The broker's certificate, valid for each host (IP or DNS name) in its SAN."""
        sans = [_san(h) for h in hosts]
        if not sans:
            raise PkiError("a server certificate needs at least one host name or address")
        return self._issue(SERVER_NAME, ExtendedKeyUsageOID.SERVER_AUTH, days, sans)

    # -- revocation --------------------------------------------------------------------------
    # A car that is sold, stolen or scrapped keeps a valid certificate until it expires; the
    # broker refuses it earlier through the CRL (mosquitto's `crlfile`). The list of revoked
    # serials is kept next to the CA as text, and crl.pem is rebuilt from it.

    @property
    def crl_path(self) -> Path:
        return self.dir / CRL

    def revoked(self) -> dict[int, str]:
        """Revoked serial number -> the common name it was issued to."""
        out: dict[int, str] = {}
        try:
            text = (self.dir / REVOKED).read_text()
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            serial, _, name = line.partition(" ")
            out[int(serial, 16)] = name
        return out

    def revoke(self, cert_path: str | Path, crl_days: int = CRL_DAYS) -> Path:
        """Add a certificate this CA issued to the revocation list; returns the new crl.pem."""
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        if not self.signed(cert_path):
            raise PkiError(f"{cert_path} was not issued by this CA")
        revoked = self.revoked()
        if cert.serial_number not in revoked:
            with (self.dir / REVOKED).open("a") as f:
                f.write(f"{cert.serial_number:x} {common_name(cert_path)}\n")
        return self.write_crl(crl_days)

    def write_crl(self, crl_days: int = CRL_DAYS, now: dt.datetime | None = None) -> Path:
        """Sign the current revocation list, valid from `now` (default: the current time). The
        broker refuses every client once the CRL's next update has passed, so it must be written
        again before `crl_days` run out."""
        now = now or dt.datetime.now(dt.UTC)
        b = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
             .last_update(now - BACKDATE).next_update(now + dt.timedelta(days=crl_days)))
        for serial in sorted(self.revoked()):
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
        crl = b.sign(self._key, hashes.SHA256())
        _write_public(self.crl_path, crl.public_bytes(serialization.Encoding.PEM))
        return self.crl_path

    def signed(self, cert_path: str | Path) -> bool:
        """True when the certificate at `cert_path` carries this CA's signature."""
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


# ---------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m agent.fleet.pki",
        description="Make the fleet's TLS certificates: a CA, the broker's certificate, one "
                    "client certificate per car (CN = car id) and per fleet service "
                    "(CN = fleet.<name>). Keys are written 0600.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser, days: int) -> None:
        p.add_argument("--out", type=Path, required=True,
                       help="the CA directory (ca.pem, ca.key); issued files go there too")
        p.add_argument("--days", type=int, default=days, help=f"validity in days (default {days})")

    p = sub.add_parser("init-ca", help="create a new CA (refuses to replace an existing one)")
    common(p, CA_DAYS)
    p.add_argument("--name", default="fleetnode fleet CA", help="the CA's common name")
    p = sub.add_parser("issue-car", help="issue a client certificate per car id")
    common(p, LEAF_DAYS)
    p.add_argument("car_ids", nargs="+", metavar="CAR_ID")
    p = sub.add_parser("issue-fleet", help="issue a client certificate for a fleet service")
    common(p, LEAF_DAYS)
    p.add_argument("names", nargs="+", metavar="NAME", help="e.g. dispatch -> CN fleet.dispatch")
    p = sub.add_parser("issue-server", help="issue the broker's server certificate")
    common(p, LEAF_DAYS)
    p.add_argument("--host", action="append", dest="hosts", metavar="HOST",
                   help="IP address or DNS name for the SAN, repeatable "
                        f"(default: {', '.join(DEFAULT_SERVER_HOSTS)})")
    p = sub.add_parser("revoke", help="revoke certificates and rewrite crl.pem")
    common(p, CRL_DAYS)
    p.add_argument("certs", nargs="+", type=Path, metavar="CERT", help="PEM certificate files")
    p = sub.add_parser("crl", help="sign crl.pem again (before its next update passes)")
    common(p, CRL_DAYS)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "init-ca":
            ca = CertificateAuthority.create(args.out, args.name, args.days)
            print(ca.cert_path)
            return 0
        ca = CertificateAuthority.load(args.out)
        if args.command == "issue-car":
            made = [ca.issue_car(c, args.days) for c in args.car_ids]
        elif args.command == "issue-fleet":
            made = [ca.issue_fleet(n, args.days) for n in args.names]
        elif args.command in ("revoke", "crl"):
            for cert in args.certs if args.command == "revoke" else ():
                ca.revoke(cert, args.days)
            print(ca.write_crl(args.days))
            return 0
        else:
            made = [ca.issue_server(args.hosts or DEFAULT_SERVER_HOSTS, args.days)]
    except (PkiError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for ident in made:
        print(f"{ident.name}\t{ident.cert}\t{ident.key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
