"""The broker's access control list for protocol v1, generated from the topic tree itself.

Owns the mapping from identities to topics. The broker takes the client certificate's common
name as the user name (`use_identity_as_username true`, see agent/fleet/pki.py), and mosquitto
substitutes it for `%u` in `pattern` lines, so one set of lines serves every car:

- a car writes only under `fleetnode/v1/cars/<its id>/`: state (and its last will, which is the
  same topic), telemetry, errors, results to any submitter;
- a car reads only its own acks, the pools' job topics (or only its own pool's, given
  `car_pools`) and the models. It takes jobs through the shared subscription
  `$share/<pool>/fleetnode/v1/pools/<pool>/jobs`. mosquitto 2.0's acl_file grants every
  SUBSCRIBE and checks read access on each message it delivers, against the message's topic, so
  the `$share/<group>/` prefix neither helps nor hinders (pinned by tests/fleet/test_security.py
  on the real broker);
- a fleet service (`fleet.<name>`) reads every car's state, telemetry, errors and results, and
  writes jobs, acks and models. It cannot write a car's state: no one can speak for a car.

Nothing is granted that is not listed: mosquitto denies by default once an ACL file is set.
Command line: `python -m agent.fleet.acl --fleet dispatch > acl`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from agent.fleet import protocol as p
from agent.fleet.pki import CertificateAuthority, PkiError, fleet_common_name

# The broker's largest packet: the largest job or result payload, plus room for the topic and the
# MQTT 5 properties (correlation data, response topic, user properties). A bigger packet is refused
# and its connection closed (DISCONNECT 0x95) before any subscriber sees a byte of it.
MAX_PACKET_BYTES = max(p.MAX_JOB_BYTES, p.MAX_RESULT_BYTES) + (64 << 10)

# This ACL relies on agent/fleet/broker.py's TLS listener settings: require_certificate,
# use_identity_as_username, and use_username_as_clientid, which binds the MQTT client id to the
# certificate (without it car-b may connect with car-a's client id, disconnect car-a and take
# over its persistent session and the messages queued there).

# A car id, or a fleet service's `fleet.<name>`: what may follow `user` in the file.
_CN = re.compile(r"[A-Za-z0-9_-]{1,64}|fleet\.[a-z0-9_-]{1,48}")

# Valid ids that stand in for the placeholders while Topics builds (and checks) the topics.
_CAR = "ACLcarPLACEHOLDER"
_ANY = "ACLanyPLACEHOLDER"
_SHA = "0" * 64


def _topic(t: str) -> str:
    return t.replace(_CAR, "%u").replace(_ANY, "+").replace(_SHA, "+")


def car_rules() -> list[tuple[str, str]]:
    """(access, topic pattern) for every car; `%u` is the car id from its certificate."""
    T = p.Topics
    return [
        ("write", _topic(T.state(_CAR))),
        ("write", _topic(T.telemetry(_CAR))),
        ("write", _topic(T.errors(_CAR))),
        ("write", _topic(T.results(_CAR, _ANY))),
        ("read", _topic(T.acks(_CAR))),
        ("read", _topic(T.credits(_CAR))),
        ("read", _topic(T.jobs(_ANY))),
        ("read", _topic(T.model_all(_SHA))),
        ("read", _topic(T.grid(_ANY))),
    ]


def fleet_rules() -> list[tuple[str, str]]:
    """(access, topic) for a fleet service."""
    T = p.Topics
    return [
        ("read", T.ALL_STATES),
        ("read", T.ALL_TELEMETRY),
        ("read", T.ALL_ERRORS),
        ("read", _topic(T.all_results(_ANY))),
        ("write", _topic(T.acks(_ANY))),
        ("write", _topic(T.credits(_ANY))),
        ("write", _topic(T.jobs(_ANY))),
        ("readwrite", _topic(T.model_all(_SHA))),
        ("write", _topic(T.grid(_ANY))),
    ]


def acl_text(fleet: Iterable[str] = ("dispatch",), exact: bool = False,
             car_pools: Mapping[str, str] | None = None, revoked: Iterable[str] = ()) -> str:
    """The mosquitto acl_file. `fleet` names the fleet services: `dispatch` or `fleet.dispatch`
    both mean the CN `fleet.dispatch`; with `exact`, a name without a dot is taken as the CN
    itself (a certificate issued under a plain id, which a car id could collide with).

    With `car_pools` (car id -> pool), a car reads the jobs of its own pool only, and a car not
    listed reads no jobs at all; the ACL must then be rewritten when a car changes pool.

    `revoked` names certificates (CNs) that may do nothing at all: the CRL keeps them from
    connecting again, and this cuts off a connection they already hold once the broker reloads
    (SIGHUP), since mosquitto checks the ACL on every message but the CRL only at the handshake.
    A `deny` line outweighs every grant, the `pattern` lines included."""
    cut = sorted(set(revoked))
    names = sorted({_fleet_user(n, exact) for n in fleet} - set(cut))
    jobs = _topic(p.Topics.jobs(_ANY))
    rules = car_rules()
    if car_pools is not None:
        rules = [r for r in rules if r != ("read", jobs)]
    lines = [
        f"# fleetnode protocol v{p.VERSION} ACL, generated by agent/fleet/acl.py. The user name is",
        "# the client certificate's common name (use_identity_as_username true).",
        "",
        "# Every identity, %u = its common name. For a fleet service (fleet.<name>) these lines",
        "# name topics that no car can ever own: a car id has no dot.",
    ]
    lines += [f"pattern {access} {topic}" for access, topic in rules]
    for name in names:
        lines += ["", f"user {name}"]
        lines += [f"topic {access} {topic}" for access, topic in fleet_rules()]
    for car, pool in sorted((car_pools or {}).items()):
        if car not in cut:
            lines += ["", f"user {p.check_id('car_id', car)}", f"topic read {p.Topics.jobs(pool)}"]
    for name in cut:
        if not _CN.fullmatch(name):
            raise PkiError(f"not a certificate name this fleet issues: {name!r:.80}")
        lines += ["", "# revoked", f"user {name}", f"topic deny {p.ROOT}/#"]
    return "\n".join(lines) + "\n"


def _fleet_user(name: str, exact: bool) -> str:
    if exact and "." not in name:
        try:
            return p.check_id("fleet user", name)
        except p.ProtocolError as e:
            raise PkiError(str(e)) from None
    return fleet_common_name(name)


def write_acl(path: str | Path, fleet: Iterable[str] = ("dispatch",)) -> Path:
    out = Path(path)
    out.write_text(acl_text(fleet))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m agent.fleet.acl",
        description="Print the mosquitto ACL for fleetnode protocol v1: each car (certificate "
                    "CN = car id) writes only its own topics; fleet services read all cars and "
                    "write jobs, acks and models.")
    ap.add_argument("--fleet", action="append", metavar="NAME",
                    help="a fleet service identity, repeatable (default: dispatch)")
    ap.add_argument("--pki", type=Path, metavar="DIR",
                    help="the CA directory: deny everything to the certificates revoked there")
    ap.add_argument("--out", type=Path, help="write to this file instead of standard output")
    args = ap.parse_args(argv)
    try:
        revoked = CertificateAuthority.load(args.pki).revoked().values() if args.pki else ()
        text = acl_text(args.fleet or ("dispatch",), revoked=revoked)
    except PkiError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.out is not None:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
