"""The server under gunicorn with TLS; the agent trusts only the hall CA from its bundle."""

from __future__ import annotations

import pytest

from agent.transport import HallClient, Unreachable
from invigil.payloads import Enrolment
from invigil.timeutil import utc_now
from provisioning import certs

from support import LiveServer


@pytest.fixture
def tls_files(tmp_path):
    ca = certs.make_ca("Hall A")
    server = certs.make_server_cert(ca, ["localhost", "127.0.0.1"])
    paths = {name: tmp_path / name for name in ("ca.pem", "server.pem", "server.key")}
    paths["ca.pem"].write_bytes(ca.cert_pem)
    certs.write_pair(server, paths["server.pem"], paths["server.key"])
    return paths


def test_agent_enrols_over_tls_verified_against_the_hall_ca(exam, tls_files):
    server = LiveServer(
        exam.data_dir, ("--tls-cert", str(tls_files["server.pem"]), "--tls-key", str(tls_files["server.key"]))
    )
    server.url = server.url.replace("http://", "https://")
    server.start(verify=str(tls_files["ca.pem"]))
    try:
        client = HallClient(server.url, ca_file=str(tls_files["ca.pem"]))
        answer = client.enrol(Enrolment("s0001", exam.join_code, "agent-0001", utc_now()))
        assert answer["exam"]["id"] == exam.exam_id

        impostor_ca = certs.make_ca("Somebody else")
        other = tls_files["ca.pem"].parent / "other-ca.pem"
        other.write_bytes(impostor_ca.cert_pem)
        with pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED"):
            HallClient(server.url, ca_file=str(other)).enrol(
                Enrolment("s0002", exam.join_code, "agent-0002", utc_now())
            )
    finally:
        server.stop()


def test_agent_without_a_bundle_refuses_to_connect():
    with pytest.raises(ValueError, match="--bundle"):
        HallClient("https://127.0.0.1:9")
