"""DDS security (SROS2): `perception security keystore` writes a keystore rcl accepts (one enclave
per node, certificates and signed governance/permissions that verify against its CA), the
permissions grant each node only its own topics, inputs and services, and `perception run
--keystore` enforces security: where the middleware cannot do it (the PyPI wheels' Fast DDS),
the nodes refuse to start instead of running open."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from perception_nodes.profile import NodeSpec, Profile
from perception_nodes.security import SecurityError, create_keystore, node_grants, secure_environment
from perception_nodes.tools.cli import perception_argv

ROOT = Path(__file__).resolve().parents[2]
RCL_FILES = {
    "identity_ca.cert.pem",
    "cert.pem",
    "key.pem",
    "permissions_ca.cert.pem",
    "governance.p7s",
    "permissions.p7s",
}


def _profile() -> Profile:
    return Profile(
        "p",
        "",
        [
            NodeSpec(
                "camera",
                "camera_source",
                parameters={"source": "/dev/video0"},
                remappings={"image_raw": "/camera/image_raw"},
            ),
            NodeSpec("detector", "detection_node", remappings={"image": "/camera/image_raw"}),
            NodeSpec("player", "bag_player"),
        ],
    )


def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def keystore(tmp_path_factory):
    ks = tmp_path_factory.mktemp("keystore")
    assert create_keystore(ks, _profile()) == [
        "/perception/camera",
        "/perception/detector",
        "/perception/operator",
        "/perception/player",
    ]
    return ks


def test_every_enclave_has_what_rcl_needs_and_verifies_against_the_ca(keystore):
    ca = keystore / "public" / "ca.cert.pem"
    for enclave in ("camera", "detector", "operator", "player"):
        d = keystore / "enclaves" / "perception" / enclave
        assert RCL_FILES <= {p.name for p in d.iterdir()}, enclave
        assert _openssl("verify", "-CAfile", str(ca), str(d / "cert.pem")).returncode == 0
        subject = _openssl("x509", "-in", str(d / "cert.pem"), "-noout", "-subject").stdout
        assert f"CN = /perception/{enclave}" in subject
        for signed in ("permissions.p7s", "governance.p7s"):
            r = _openssl("smime", "-verify", "-in", str(d / signed), "-CAfile", str(ca), "-text")
            assert r.returncode == 0 and "<dds" in r.stdout, (enclave, signed, r.stderr)
        assert (d / "key.pem").stat().st_mode & 0o077 == 0  # private keys readable by the owner only


def test_governance_admits_only_authenticated_participants_with_access_control_on_every_topic(keystore):
    g = ET.parse(keystore / "enclaves" / "governance.xml").getroot()
    rule = g.find(".//domain_rule")
    assert rule.findtext("allow_unauthenticated_participants") == "false"
    assert rule.findtext("enable_join_access_control") == "true"
    topic = rule.find(".//topic_rule")
    assert topic.findtext("topic_expression") == "*"
    assert topic.findtext("enable_read_access_control") == topic.findtext("enable_write_access_control") == "true"
    assert topic.findtext("data_protection_kind") == "ENCRYPT"


def _grants(keystore, enclave):
    p = ET.parse(keystore / "enclaves" / "perception" / enclave / "permissions.xml").getroot()
    grant = p.find(".//grant")
    pub = [t.text for t in grant.findall(".//publish//topic")]
    sub = [t.text for t in grant.findall(".//subscribe//topic")]
    return grant, pub, sub


def test_a_node_may_touch_only_its_topics_inputs_and_services(keystore):
    grant, pub, sub = _grants(keystore, "detector")
    assert grant.findtext("subject_name") == "CN=/perception/detector" and grant.findtext("default") == "DENY"
    assert "rt/detector/*" in pub and "rt/perception/frame_status" in pub and "rr/detector/*" in pub
    assert "rt/camera/image_raw" in sub and "rt/camera/camera_info" in sub and "rq/detector/*" in sub
    assert not any(t in ("rt/*", "rq/*") or t.startswith("rt/camera") for t in pub)  # cannot fake camera frames
    assert not any(t.startswith("rq/") and t != "rq/detector/*" for t in sub)  # serves only its own services
    _g, pub, _s = _grants(keystore, "camera")
    assert "rt/camera/image_raw" in pub and "rt/detector/*" not in pub
    _g, pub, sub = _grants(keystore, "operator")
    assert "rq/*" in pub and "rr/*" in sub  # ros2 lifecycle / param from the operator's enclave


def test_node_grants_follow_remappings_and_namespaces():
    pub, sub = node_grants(NodeSpec("seg", "segmentation_node", namespace="front", remappings={"image": "/cam0/rgb"}))
    assert "rt/front/seg/*" in pub and "rr/front/seg/*" in pub
    assert {"rt/cam0/rgb", "rt/cam0/camera_info", "rt/front/image", "rq/front/seg/*"} <= set(sub)


def test_secure_environment_enforces_and_needs_a_keystore(keystore, tmp_path):
    env = secure_environment({}, keystore)
    assert env["ROS_SECURITY_ENABLE"] == "true" and env["ROS_SECURITY_STRATEGY"] == "Enforce"
    with pytest.raises(SecurityError, match="not a keystore"):
        secure_environment({}, tmp_path)


def test_an_enforced_stack_does_not_run_open_where_the_middleware_has_no_security(tmp_path, demo_model):
    """On the PyPI wheels (no Fast DDS security plugins), each node refuses to start with one line
    saying why, and `perception run` stops the stack (exit 10) rather than running unprotected."""
    profile = tmp_path / "p.yaml"
    profile.write_text(
        json.dumps(
            {
                "nodes": {
                    "gen": {
                        "executable": "generic_onnx_node",
                        "parameters": {"model_path": str(demo_model), "backend": "onnxruntime"},
                    }
                }
            }
        )
    )
    ks = tmp_path / "ks"
    made = subprocess.run(
        perception_argv(
            "security",
            "keystore",
            "--profile",
            str(profile),
            "--keystore",
            str(ks),
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert made.returncode == 0, made.stderr
    run = subprocess.run(
        perception_argv(
            "run",
            "--profile",
            str(profile),
            "--keystore",
            str(ks),
            "--log-dir",
            str(tmp_path / "logs"),
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 10, run.stderr
    log = (tmp_path / "logs" / "gen.log").read_text()
    assert "Found security directory" in log and log.rstrip().endswith("see docs/security.md)")
    assert "cannot start: error creating node: This Fast DDS version doesn't have the security libraries" in log
    assert "died (exit code 2)" in run.stderr
