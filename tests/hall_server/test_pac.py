"""``/proxy.pac`` names the proxy at the address the laptop used, and the appliance itself goes direct."""

from __future__ import annotations

from hall_server.app import create_app
from hall_server.pac import PAC_TYPE


def test_the_pac_file_points_at_this_appliances_proxy(exam) -> None:
    client = create_app({"data_dir": str(exam.data_dir), "proxy_port": 8080}).test_client()
    answer = client.get("/proxy.pac", base_url="https://10.20.0.1:8443")
    assert answer.status_code == 200 and answer.content_type == PAC_TYPE
    text = answer.get_data(as_text=True)
    assert 'if (host == "10.20.0.1") return "DIRECT";' in text
    assert 'return "PROXY 10.20.0.1:8080";' in text and "DIRECT;\n}" not in text
    assert (
        client.get("/wpad.dat", base_url="https://invigil.hall-a.lan:8443")
        .get_data(as_text=True)
        .count("invigil.hall-a.lan:8080")
        == 1
    )


def test_no_pac_file_without_a_proxy_port_or_with_a_strange_host(exam) -> None:
    assert create_app({"data_dir": str(exam.data_dir)}).test_client().get("/proxy.pac").status_code == 404
    client = create_app({"data_dir": str(exam.data_dir), "proxy_port": 8080}).test_client()
    assert client.get("/proxy.pac", headers={"Host": 'evil";alert(1)//'}).status_code == 400
