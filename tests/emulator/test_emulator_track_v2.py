"""Track v2 over HTTP: every person and object action, 207 partial application, 400s."""

from __future__ import annotations

from typing import Any

from emulator_client import Api, api_fixture, identify, server_fixture  # noqa: F401 (fixtures)


def person(action: str, pid: str = "42", **fields: Any) -> dict[str, Any]:
    return {"type": "person", "identifiers": {"id": pid}, "action": action, **fields}


def obj(action: str, object_id: str = "acme", **fields: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "identifiers": {"object_type_id": "1", "object_id": object_id},
        "action": action,
        **fields,
    }


ACME = {"object_type_id": "1", "object_id": "acme"}


def test_identify_and_null_removes(api: Api) -> None:
    assert api.batch(identify("42", plan="a", gone="x")).body == {}
    api.batch(identify("42", gone=None, seats=3))
    assert api.person(id="42")["attributes"] == {"plan": "a", "seats": 3}  # type: ignore[index]


def test_entity_single_op(api: Api) -> None:
    assert api.post("/api/v2/entity", identify("1", a=1)).body == {}
    reply = api.post("/api/v2/entity", person("bogus"))
    assert reply.status == 400 and reply.body["errors"][0]["field"] == "action"
    assert api.post("/api/v2/entity", raw=b"not json").status == 400


def test_every_person_action(api: Api) -> None:
    rel = [{"identifiers": ACME, "relationship_attributes": {"role": "admin"}}]
    device = {"token": "tok", "platform": "android"}
    reply = api.batch(
        identify("42", a=1),
        identify("43", b=2),
        person("event", name="purchase", id="01A", attributes={"p": 1}),
        person("page", name="/pricing"),
        person("screen", name="Home"),
        person("add_relationships", cio_relationships=rel),
        person("add_device", device=device),
        {"type": "person", "action": "merge", "primary": {"id": "42"}, "secondary": {"id": "43"}},
    )
    assert reply.status == 200, reply.body
    merged = api.person(id="42")
    assert merged is not None and merged["attributes"] == {"a": 1, "b": 2}
    assert [d["token"] for d in merged["devices"]] == ["tok"]
    assert [e["type"] for e in api.view("events")] == ["event", "page", "screen"]
    assert api.view("relationships")[0]["attributes"] == {"role": "admin"}
    api.batch(
        person("delete_device", device={"token": "tok"}),
        person("delete_relationships", cio_relationships=[{"identifiers": ACME}]),
    )
    assert api.person(id="42")["devices"] == [] and api.view("relationships") == []  # type: ignore[index]
    api.batch(person("suppress"))
    assert api.people() == [] and api.view("suppressions")[0]["id"] == "42"
    api.batch(person("unsuppress"), identify("42", fresh=True))
    assert api.person(id="42")["attributes"] == {"fresh": True}  # type: ignore[index]
    api.batch(person("delete"))
    assert api.people() == []


def test_every_object_action(api: Api) -> None:
    rels = [{"identifiers": {"id": "42"}, "relationship_attributes": {"role": "admin", "x": 1}}]
    api.batch(obj("identify", attributes={"name": "Acme", "plan": "e"}, cio_relationships=rels))
    objects = api.view("objects")
    assert objects[0]["attributes"] == {"name": "Acme", "plan": "e"}
    assert objects[0]["cio_object_id"]
    api.batch(
        obj("identify", attributes={"plan": None, "name": ""}),
        obj(
            "add_relationships",
            cio_relationships=[
                {"identifiers": {"id": "42"}, "relationship_attributes": {"x": None}}
            ],
        ),
    )
    assert api.view("objects")[0]["attributes"] == {}
    assert api.view("relationships")[0]["attributes"] == {"role": "admin"}
    by_cio = {
        "type": "object",
        "identifiers": {"cio_object_id": objects[0]["cio_object_id"]},
        "action": "identify",
        "attributes": {"v": 2},
    }
    api.batch(by_cio)
    assert api.view("objects")[0]["attributes"] == {"v": 2}
    api.batch(obj("delete_relationships", cio_relationships=[{"identifiers": {"id": "42"}}]))
    assert api.view("relationships") == []
    api.batch(
        obj("identify_anonymous", cio_relationships=[{"identifiers": {"anonymous_id": "anon-1"}}])
    )
    assert api.view("relationships")[0]["person"] == {"anonymous_id": "anon-1"}
    api.batch(identify("7", anonymous_id="anon-1"))
    assert api.view("relationships")[0]["person"]["id"] == "7"
    api.batch(
        obj("add_relationships", cio_relationships=[{"identifiers": {"id": "42"}}]), obj("delete")
    )
    assert api.view("objects") == [] and api.view("relationships") == []


def test_delivery_event_is_logged(api: Api) -> None:
    op = {
        "type": "delivery",
        "identifiers": {"id": "RPI="},
        "action": "event",
        "name": "opened",
        "attributes": {"device_token": "tok"},
    }
    assert api.batch(op).status == 200
    assert api.view("deliveries")[0]["delivery_id"] == "RPI="


def test_partial_batch_applies_valid_ops(api: Api) -> None:
    ops = [
        identify("1", a=1),
        {"type": "person", "identifiers": {"id": "2", "email": "x@y"}, "action": "identify"},
        identify("3", a=3),
        "not an op",
        person("event"),
    ]
    reply = api.batch(*ops)
    assert reply.status == 207
    assert [e["batch_index"] for e in reply.body["errors"]] == [1, 3, 4]
    assert all({"reason", "field", "message"} <= set(e) for e in reply.body["errors"])
    assert sorted(p["id"] for p in api.people()) == ["1", "3"]
    log = api.view("requests")[-1]
    assert log["status"] == 207 and log["ops"] == 5 and len(log["errors"]) == 3


def test_malformed_batches(api: Api) -> None:
    for raw in (b"{", b"[]", b'{"batch": {}}', b'{"batch": []}', b""):
        reply = api.post("/api/v2/batch", raw=raw)
        assert reply.status == 400, raw
        assert set(reply.body["errors"][0]) == {"reason", "field", "message"}


def test_event_id_deduplication_v2(api: Api) -> None:
    event = person("event", name="signup", id="01HX")
    api.batch(event, event)
    api.batch(event)
    assert len(api.view("events")) == 1


def test_cio_id_identifier_and_unknown_cio_id_dropped(api: Api) -> None:
    api.batch(identify("1", a=1))
    cio_id = api.person(id="1")["cio_id"]  # type: ignore[index]
    op = {
        "type": "person",
        "identifiers": {"cio_id": cio_id},
        "action": "identify",
        "attributes": {"email": "new@x.com", "b": 2},
    }
    api.batch(op, {**op, "identifiers": {"cio_id": "nobody"}})
    people = api.people()
    assert len(people) == 1 and people[0]["email"] == "new@x.com"


def test_update_only_v2(api: Api) -> None:
    api.batch(identify("1", _update=True, a=1))
    assert api.people() == []


def test_phone_identifier(api: Api) -> None:
    op = {
        "type": "person",
        "identifiers": {"phone": "+14155552671"},
        "action": "identify",
        "attributes": {"a": 1},
    }
    api.batch(op)
    assert api.person(phone="+14155552671") is not None
