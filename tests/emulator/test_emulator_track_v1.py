"""Track v1 over HTTP: people, events, devices, suppression, merge, segments, region, auth."""

from __future__ import annotations

from emulator_client import Api, api_fixture, server_fixture  # noqa: F401 (fixtures)

from cio_emulator import EmulatorHandle


def test_identify_creates_then_updates_and_null_removes(api: Api) -> None:
    assert api.put("/api/v1/customers/42", {"email": "Jane@x.com", "plan": "a", "n": 1}).body == {}
    api.put("/api/v1/customers/42", {"plan": "b", "n": None})
    person = api.person(id="42")
    assert person is not None
    assert person["email"] == "Jane@x.com"
    assert person["attributes"] == {"plan": "b"}
    assert len(api.people()) == 1


def test_identifier_type_from_shape(api: Api) -> None:
    api.put("/api/v1/customers/a%40b.com", {"x": 1})
    person = api.person(email="a@b.com")
    assert person is not None and person["id"] is None
    api.put(f"/api/v1/customers/cio_{person['cio_id']}", {"id": "7"})
    assert api.person(email="a@b.com")["id"] == "7"  # type: ignore[index]
    api.put("/api/v1/customers/cio_unknown", {"x": 2})
    assert len(api.people()) == 1


def test_update_only_does_not_create(api: Api) -> None:
    assert api.put("/api/v1/customers/9", {"_update": True, "x": 1}).status == 200
    assert api.people() == []
    api.put("/api/v1/customers/9", {"x": 1})
    api.put("/api/v1/customers/9", {"_update": True, "x": 2})
    assert api.person(id="9")["attributes"] == {"x": 2}  # type: ignore[index]


def test_body_identifier_matches_existing_person(api: Api) -> None:
    api.put("/api/v1/customers/a%40b.com", {"plan": "x"})
    api.put("/api/v1/customers/new-id", {"email": "a@b.com", "seats": 3})
    people = api.people()
    assert len(people) == 1
    assert people[0]["id"] == "new-id" and people[0]["attributes"] == {"plan": "x", "seats": 3}


def test_conflicting_path_and_body_is_ignored_with_200(api: Api) -> None:
    api.put("/api/v1/customers/1", {"email": "one@x.com"})
    api.put("/api/v1/customers/2", {"email": "two@x.com"})
    assert api.put("/api/v1/customers/1", {"email": "two@x.com", "z": 1}).status == 200
    assert api.person(id="1")["attributes"] == {}  # type: ignore[index]


def test_timestamp_orders_updates(api: Api) -> None:
    api.put("/api/v1/customers/1", {"plan": "new", "_timestamp": 200})
    api.put("/api/v1/customers/1", {"plan": "old", "_timestamp": 100})
    assert api.person(id="1")["attributes"] == {"plan": "new"}  # type: ignore[index]


def test_a_timestamp_that_is_not_an_integer_orders_nothing(api: Api) -> None:
    api.put("/api/v1/customers/1", {"plan": "new", "_timestamp": 200})
    api.put("/api/v1/customers/1", {"plan": "newer", "_timestamp": "yesterday"})
    assert api.person(id="1")["attributes"] == {"plan": "newer"}  # type: ignore[index]


def test_subscription_preference_dot_path(api: Api) -> None:
    prefs = {"topics": {"topic_1": True, "topic_2": False}}
    api.put("/api/v1/customers/1", {"cio_subscription_preferences": prefs})
    api.put("/api/v1/customers/1", {"cio_subscription_preferences.topics.topic_2": True})
    attrs = api.person(id="1")["attributes"]  # type: ignore[index]
    assert attrs["cio_subscription_preferences"]["topics"] == {"topic_1": True, "topic_2": True}


def test_v1_relationships(api: Api) -> None:
    rel = {
        "identifiers": {"object_type_id": "1", "object_id": "acme"},
        "relationship_attributes": {"role": "admin"},
    }
    api.put(
        "/api/v1/customers/1",
        {"cio_relationships": {"action": "add_relationships", "relationships": [rel]}},
    )
    assert [r["attributes"] for r in api.view("relationships")] == [{"role": "admin"}]
    api.put(
        "/api/v1/customers/1",
        {"cio_relationships": {"action": "delete_relationships", "relationships": [rel]}},
    )
    assert api.view("relationships") == []


def test_delete_person(api: Api) -> None:
    api.put("/api/v1/customers/1", {"x": 1})
    assert api.delete("/api/v1/customers/1").body == {}
    assert api.people() == []


def test_events_with_id_deduplication(api: Api) -> None:
    event = {"name": " purchase ", "id": "01HZZZ", "data": {"price": 3}, "timestamp": 1700000000}
    assert api.post("/api/v1/customers/1/events", event).status == 200
    assert api.post("/api/v1/customers/1/events", event).status == 200
    api.post("/api/v1/customers/1/events", {"name": "/home", "type": "page"})
    events = api.view("events")
    assert [(e["type"], e["name"]) for e in events] == [("event", "purchase"), ("page", "/home")]
    assert events[0] == {
        "person": {"id": "1"},
        "type": "event",
        "name": "purchase",
        "id": "01HZZZ",
        "timestamp": 1700000000,
        "data": {"price": 3},
    }


def test_event_errors(api: Api) -> None:
    reply = api.post("/api/v1/customers/1/events", {"data": {}})
    assert reply.status == 400 and reply.body["meta"]["errors"]
    assert api.post("/api/v1/customers/1/events", {"name": "x", "type": "bogus"}).status == 400
    assert api.post("/api/v1/customers/1/events", raw=b"{nope").status == 400


def test_anonymous_event(api: Api) -> None:
    api.post("/api/v1/events", {"name": "visit", "anonymous_id": "anon-1"})
    assert api.view("events")[0]["person"] == {"anonymous_id": "anon-1"}


def test_devices(api: Api) -> None:
    device = {
        "id": "tok",
        "platform": "ios",
        "last_used": 1700000000,
        "attributes": {"app_version": "1"},
    }
    assert api.put("/api/v1/customers/1/devices", {"device": device}).status == 200
    assert api.person(id="1")["devices"] == [
        {
            "token": "tok",
            "platform": "ios",  # type: ignore[index]
            "last_used": 1700000000,
            "attributes": {"app_version": "1"},
        }
    ]
    assert api.view("devices")[0]["person"]["id"] == "1"
    assert api.delete("/api/v1/customers/1/devices/tok").status == 200
    assert api.person(id="1")["devices"] == []  # type: ignore[index]
    assert api.put("/api/v1/customers/1/devices", {"device": {"id": "t"}}).status == 400


def test_suppress_blocks_then_unsuppress_frees(api: Api) -> None:
    api.put("/api/v1/customers/1", {"email": "a@x.com", "x": 1})
    assert api.post("/api/v1/customers/1/suppress").status == 200
    assert api.people() == []
    suppressed = [p for p in api.view("people") if p["suppressed"]]
    assert suppressed[0]["id"] == "1" and suppressed[0]["email"] == "a@x.com"
    assert api.put("/api/v1/customers/1", {"x": 2}).status == 200
    assert api.put("/api/v1/customers/A%40x.com", {"x": 2}).status == 200
    api.post("/api/v1/customers/1/events", {"name": "e"})
    assert api.people() == [] and api.view("events") == []
    api.post("/api/v1/customers/1/unsuppress")
    assert api.view("suppressions") == []
    api.put("/api/v1/customers/1", {"y": 3})
    assert api.person(id="1")["attributes"] == {"y": 3}  # type: ignore[index]


def test_merge(api: Api) -> None:
    api.put("/api/v1/customers/1", {"a": 1, "b": 1})
    api.put("/api/v1/customers/2", {"b": 2, "c": 2})
    reply = api.post("/api/v1/merge_customers", {"primary": {"id": "1"}, "secondary": {"id": "2"}})
    assert reply.status == 200
    assert [p["attributes"] for p in api.people()] == [{"a": 1, "b": 1, "c": 2}]
    bad = api.post(
        "/api/v1/merge_customers", {"primary": {"id": "1", "email": "x"}, "secondary": {"id": "2"}}
    )
    assert bad.status == 400 and "error" in bad.body["meta"]


def test_merge_missing_primary_is_noop(api: Api) -> None:
    api.put("/api/v1/customers/2", {"b": 2})
    api.post("/api/v1/merge_customers", {"primary": {"id": "1"}, "secondary": {"id": "2"}})
    assert [p["id"] for p in api.people()] == ["2"]


def test_segment_add_remove_by_id_type(api: Api) -> None:
    seg = api.post("/v1/segments", {"segment": {"name": "vip"}}).body["segment"]
    api.put("/api/v1/customers/1", {"email": "one@x.com"})
    api.put("/api/v1/customers/2", {})
    path = f"/api/v1/segments/{seg['id']}"
    assert api.post(f"{path}/add_customers", {"ids": ["1", "2", "ghost"]}).status == 200
    assert api.get(f"/v1/segments/{seg['id']}/customer_count").body == {"count": 2}
    api.post(f"{path}/remove_customers?id_type=email", {"ids": ["one@x.com"]})
    members = api.view("segments")[0]["members"]
    assert [m["id"] for m in members] == ["2"]
    assert api.post("/api/v1/segments/999/add_customers", {"ids": ["2"]}).status == 200
    assert api.post(f"{path}/add_customers?id_type=phone", {"ids": ["2"]}).status == 400
    assert api.post(f"{path}/add_customers", {"ids": []}).status == 400
    assert api.view("requests")[3]["ops"] == 3


def test_region(api: Api, server: EmulatorHandle) -> None:
    body = api.get("/api/v1/accounts/region").body
    assert body["url"] == server.url and body["region"] == "us"
    assert isinstance(body["environment_id"], int)
    assert api.get("/api/v1/accounts/region").body == body


def test_track_auth_failures(api: Api) -> None:
    unauthorized = {"meta": {"error": "Unauthorized request"}}
    assert api.put("/api/v1/customers/1", {}, auth=None).body == unauthorized
    assert api.put("/api/v1/customers/1", {}, auth=None).status == 401
    assert api.get("/api/v1/accounts/region", auth="Basic c2l0ZTp3cm9uZw==").status == 401
    assert api.post("/api/v2/batch", {"batch": []}, auth="Bearer app-key").status == 401
    assert api.people() == []
