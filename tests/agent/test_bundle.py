"""The agent reads the bundle that provisioning writes, and refuses a wrong or altered one plainly."""

from __future__ import annotations

import json

import pytest

from agent.bundle import BundleError, load_bundle, parse_bundle
from provisioning import bundle as provisioning_bundle
from provisioning import certs


@pytest.fixture(scope="module")
def made() -> dict:
    ca = certs.make_ca("Hall A")
    return provisioning_bundle.build_bundle("Hall A", ca.cert_pem, ["https://10.20.0.1:8443"])


def test_reads_the_bundle_provisioning_writes(made, tmp_path):
    path = tmp_path / "hall.json"
    path.write_text(provisioning_bundle.dumps(made))
    bundle = load_bundle(path)
    assert bundle.hall == "Hall A" and bundle.server_urls == ("https://10.20.0.1:8443",)
    assert bundle.ca_sha256 == made["ca_sha256"] and "BEGIN CERTIFICATE" in bundle.ca_pem


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"protocol_version": 99}, "protocol 99 but this agent speaks 1"),
        ({"format": "something"}, "not an Invigil agent bundle"),
        ({"format_version": 2}, "format version 2"),
        ({"server_urls": []}, "names no hall server"),
        ({"server_urls": ["http://10.0.0.1"]}, "is not https"),
        ({"ca_sha256": "0" * 64}, "was altered"),
        ({"ca_pem": "not a certificate"}, "not a PEM certificate"),
    ],
)
def test_a_wrong_bundle_is_refused_by_name(made, change, problem):
    with pytest.raises(BundleError, match=problem):
        parse_bundle(json.dumps({**made, **change}))


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(BundleError, match="cannot read the bundle"):
        load_bundle(tmp_path / "nope.json")
    with pytest.raises(BundleError, match="not JSON"):
        parse_bundle("{")
