"""SROS2 keystores for a stack profile: DDS security with one enclave per node, made with openssl.

``perception security keystore --profile P --keystore DIR`` writes the layout SROS2's
``ros2 security create_keystore`` / ``create_enclave`` write (``enclaves/<enclave>/`` with
``identity_ca.cert.pem``, ``permissions_ca.cert.pem``, ``cert.pem``, ``key.pem``,
``governance.p7s``, ``permissions.p7s``), so ``ROS_SECURITY_KEYSTORE`` works with rcl unchanged:

- one ECDSA P-256 certificate authority (``private/ca.key.pem``, ``public/ca.cert.pem``), as
  SROS2 uses by default for both identity and permissions;
- governance: only authenticated participants join; discovery, liveliness and data are
  encrypted; read and write access control is on for every topic, so a participant may touch
  only what its permissions grant;
- permissions per node (enclave ``/perception/<node>``): its own topics (``rt/<node>/*``), its
  inputs (the profile's remappings, plus the relative defaults in its namespace), the shared ones
  (frame status, diagnostics, rosout, parameter events, TF, clock) and its own services
  (lifecycle, parameters); nothing else. The player and recorder get what replay needs (publish
  and subscribe to any topic). An ``/perception/operator`` enclave may call every service and read
  every topic (RViz, Foxglove bridge, ``ros2 lifecycle``).

``perception run --keystore DIR`` starts each node with ``ROS_SECURITY_ENABLE=true``,
``ROS_SECURITY_STRATEGY=Enforce`` and its enclave: a node whose enclave is missing or whose
middleware cannot do security fails to start instead of running open. The PyPI ROS 2 wheels'
Fast DDS is built without the security plugins, so on the no-ROS install path an enforced
stack does not start (docs/security.md): DDS security needs the ROS install path (apt Jazzy).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path
from typing import Iterable
from xml.sax.saxutils import escape

from .profile import NodeSpec, Profile

ENCLAVE_ROOT = "/perception"
OPERATOR = "operator"
#: the inputs a node subscribes to under their default (relative) names
INPUT_NAMES = ("image", "image1", "camera_info", "depth_reference")
#: topics every node of the stack publishes (DDS names)
SHARED_PUBLISH = (
    "rt/perception/frame_status",
    "rt/diagnostics",
    "rt/rosout",
    "rt/parameter_events",
    "rt/tf",
    "ros_discovery_info",
)
SHARED_SUBSCRIBE = ("rt/parameter_events", "rt/clock", "ros_discovery_info")
REPLAY_TOOLS = ("bag_player", "bag_recorder")


class SecurityError(RuntimeError):
    """A keystore that cannot be made (openssl failed, a path is taken)."""


def enclave_of(spec: NodeSpec) -> str:
    return f"{ENCLAVE_ROOT}/{spec.name}"


def _openssl(*args: str, cwd: Path | None = None) -> None:
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        raise SecurityError(f"openssl {' '.join(args[:2])} failed: {r.stderr.strip()[-400:]}")


def _dds_topic(name: str) -> str:
    return "rt/" + name.strip("/")


def node_grants(spec: NodeSpec) -> tuple[list[str], list[str]]:
    """(publish, subscribe) DDS topic expressions one node of the stack needs."""
    ns = "/" + spec.namespace.strip("/") if spec.namespace.strip("/") else ""
    own = _dds_topic(spec.fqn)
    if spec.executable in REPLAY_TOOLS:  # replays every bag topic / records any topic
        publish = ["rt/*", "ros_discovery_info"]
        subscribe = ["rt/*", "ros_discovery_info"]
    else:
        inputs = {_dds_topic(f"{ns}/{n}") for n in INPUT_NAMES}
        for src, dst in spec.remappings.items():
            if src in INPUT_NAMES:
                inputs.add(_dds_topic(dst))
                if src == "image":  # camera_info next to the image it describes (REP: same namespace)
                    inputs.add(_dds_topic(dst.rsplit("/", 1)[0] + "/camera_info"))
        publish = sorted({f"{own}/*", *SHARED_PUBLISH})
        if spec.executable == "camera_source":
            publish += [_dds_topic(spec.remappings.get(n, f"{ns}/{n}")) for n in ("image_raw", "camera_info")]
        subscribe = sorted({*inputs, *SHARED_SUBSCRIBE})
    # services: requests come in on rq/<fqn>/<service>Request, replies go out on rr/...Reply
    publish.append(f"rr{spec.fqn}/*")
    subscribe.append(f"rq{spec.fqn}/*")
    return publish, subscribe


def _rule(kind: str, topics: Iterable[str]) -> str:
    items = "".join(f"\n            <topic>{escape(t)}</topic>" for t in topics)
    return f"\n        <{kind}>\n          <topics>{items}\n          </topics>\n        </{kind}>"


def permissions_xml(enclave: str, publish: list[str], subscribe: list[str], days: int = 3650) -> str:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
    until = now + dt.timedelta(days=days)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
     xsi:noNamespaceSchemaLocation="http://www.omg.org/spec/DDS-Security/20170801/omg_shared_ca_permissions.xsd">
  <permissions>
    <grant name="{escape(enclave)}">
      <subject_name>CN={escape(enclave)}</subject_name>
      <validity>
        <not_before>{now.isoformat()}</not_before>
        <not_after>{until.isoformat()}</not_after>
      </validity>
      <allow_rule>
        <domains>
          <id_range><min>0</min><max>232</max></id_range>
        </domains>{_rule("publish", publish)}{_rule("subscribe", subscribe)}
      </allow_rule>
      <default>DENY</default>
    </grant>
  </permissions>
</dds>
"""


GOVERNANCE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
     xsi:noNamespaceSchemaLocation="http://www.omg.org/spec/DDS-Security/20170801/omg_shared_ca_governance.xsd">
  <domain_access_rules>
    <domain_rule>
      <domains>
        <id_range><min>0</min><max>232</max></id_range>
      </domains>
      <allow_unauthenticated_participants>false</allow_unauthenticated_participants>
      <enable_join_access_control>true</enable_join_access_control>
      <discovery_protection_kind>ENCRYPT</discovery_protection_kind>
      <liveliness_protection_kind>ENCRYPT</liveliness_protection_kind>
      <rtps_protection_kind>SIGN</rtps_protection_kind>
      <topic_access_rules>
        <topic_rule>
          <topic_expression>*</topic_expression>
          <enable_discovery_protection>true</enable_discovery_protection>
          <enable_liveliness_protection>true</enable_liveliness_protection>
          <enable_read_access_control>true</enable_read_access_control>
          <enable_write_access_control>true</enable_write_access_control>
          <metadata_protection_kind>ENCRYPT</metadata_protection_kind>
          <data_protection_kind>ENCRYPT</data_protection_kind>
        </topic_rule>
      </topic_access_rules>
    </domain_rule>
  </domain_access_rules>
</dds>
"""


def _sign(xml: Path, out: Path, ca_cert: Path, ca_key: Path) -> None:
    """S/MIME (PKCS#7, detached, text) signature as SROS2 and the DDS security plugins expect."""
    _openssl(
        "smime", "-sign", "-text", "-in", str(xml), "-out", str(out), "-signer", str(ca_cert), "-inkey", str(ca_key)
    )


def create_keystore(keystore: str | os.PathLike[str], profile: Profile, days: int = 3650) -> list[str]:
    """Write (or extend) a keystore with one enclave per node of ``profile`` plus the operator;
    returns the enclave names. An existing CA is reused, so enclaves of several profiles share
    one keystore."""
    root = Path(keystore)
    (root / "private").mkdir(parents=True, exist_ok=True)
    (root / "public").mkdir(parents=True, exist_ok=True)
    (root / "enclaves").mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = root / "private" / "ca.key.pem", root / "public" / "ca.cert.pem"
    if not ca_key.exists():
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key))
        os.chmod(ca_key, 0o600)
        _openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            str(ca_key),
            "-sha256",
            "-days",
            str(days),
            "-subj",
            "/CN=perception_keystore_ca",
            "-out",
            str(ca_cert),
        )
    for name in ("identity_ca.cert.pem", "permissions_ca.cert.pem"):
        (root / "public" / name).write_bytes(ca_cert.read_bytes())
    gov_xml, gov_p7s = root / "enclaves" / "governance.xml", root / "enclaves" / "governance.p7s"
    gov_xml.write_text(GOVERNANCE_XML)
    _sign(gov_xml, gov_p7s, ca_cert, ca_key)

    grants = {enclave_of(s): node_grants(s) for s in profile.nodes}
    grants[f"{ENCLAVE_ROOT}/{OPERATOR}"] = (
        ["rq/*", "rt/*", "ros_discovery_info"],
        ["rr/*", "rt/*", "ros_discovery_info"],
    )
    for enclave, (publish, subscribe) in grants.items():
        d = root / "enclaves" / enclave.strip("/")
        d.mkdir(parents=True, exist_ok=True)
        key, csr, cert = d / "key.pem", d / "req.csr", d / "cert.pem"
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
        os.chmod(key, 0o600)
        subject = "/CN=" + enclave.replace("/", "\\/")  # CN=/perception/<node>, as SROS2 names enclaves
        _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
        _openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_cert),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            str(days),
            "-sha256",
            "-out",
            str(cert),
        )
        csr.unlink()
        for name in ("identity_ca.cert.pem", "permissions_ca.cert.pem"):
            (d / name).write_bytes(ca_cert.read_bytes())
        (d / "governance.p7s").write_bytes(gov_p7s.read_bytes())
        perm = d / "permissions.xml"
        perm.write_text(permissions_xml(enclave, publish, subscribe, days))
        _sign(perm, d / "permissions.p7s", ca_cert, ca_key)
    return sorted(grants)


def secure_environment(env: dict[str, str], keystore: str | os.PathLike[str]) -> dict[str, str]:
    """The environment of a node started with DDS security enforced."""
    path = Path(keystore).resolve()
    if not (path / "enclaves").is_dir():
        raise SecurityError(
            f"'{path}' is not a keystore (no enclaves/): make one with "
            "`perception security keystore --profile P --keystore DIR`"
        )
    return {
        **env,
        "ROS_SECURITY_KEYSTORE": str(path),
        "ROS_SECURITY_ENABLE": "true",
        "ROS_SECURITY_STRATEGY": "Enforce",
    }
