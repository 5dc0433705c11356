"""Staff read every observation kind of the wire contract under one label, on the reviewer's pages and in the
live hall alike."""

from __future__ import annotations

import json
import re
from html import unescape

from halls import PASSWORD

from dashboard.labels import OBSERVATION_LABELS, observation_label
from hall_server.app import create_app
from invigil.protocol import OBSERVATION_KINDS


def test_every_observation_kind_has_a_label_and_no_label_names_an_unknown_kind():
    assert set(OBSERVATION_LABELS) == set(OBSERVATION_KINDS)
    assert all(label.strip() and label != kind for kind, label in OBSERVATION_LABELS.items())
    assert observation_label("kind_from_a_newer_server") == "kind_from_a_newer_server"


def test_the_live_hall_page_hands_its_script_the_same_labels(halls):
    client = create_app({"data_dir": str(halls[0].data_dir)}).test_client()
    form = client.get("/dashboard/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    client.post("/dashboard/login", data={"csrf_token": token, "username": "anna", "password": PASSWORD})
    page = client.get(f"/dashboard/exams/{halls[0].exam_id}").get_data(as_text=True)
    attribute = re.search(r"<div id=\"hall\"[^>]* data-labels='([^']*)'", page).group(1)
    assert json.loads(unescape(attribute)) == OBSERVATION_LABELS
