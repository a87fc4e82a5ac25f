"""App API over HTTP: collections, manual segments and membership paging, lookups, auth."""

from __future__ import annotations

from emulator_client import Api, api_fixture, identify, server_fixture  # noqa: F401 (fixtures)


def test_collection_lifecycle_and_replacement(api: Api) -> None:
    created = api.post("/v1/collections", {"name": "plans", "data": [{"a": 1}, {"b": "x"}]})
    coll = created.body["collection"]
    assert coll["name"] == "plans" and coll["rows"] == 2 and coll["schema"] == ["a", "b"]
    assert coll["bytes"] == len(b'[{"a":1},{"b":"x"}]')
    assert set(coll) == {"id", "name", "bytes", "rows", "schema", "created_at", "updated_at"}
    cid = coll["id"]
    assert api.get("/v1/collections").body["collections"][0]["id"] == cid
    assert api.get(f"/v1/collections/{cid}/content").body == [{"a": 1}, {"b": "x"}]
    updated = api.put(f"/v1/collections/{cid}", {"data": [{"c": 3}]}).body["collection"]
    assert updated["rows"] == 1 and updated["name"] == "plans"
    assert api.get(f"/v1/collections/{cid}/content").body == [{"c": 3}]
    api.put(f"/v1/collections/{cid}", {"name": "renamed"})
    assert api.get(f"/v1/collections/{cid}").body["collection"]["name"] == "renamed"
    assert api.get(f"/v1/collections/{cid}/content").body == [{"c": 3}]
    api.put(f"/v1/collections/{cid}/content", [{"d": 4}, {"d": 5}])
    assert api.get(f"/v1/collections/{cid}/content").body == [{"d": 4}, {"d": 5}]
    assert api.view("collections")[0]["data"] == [{"d": 4}, {"d": 5}]
    assert api.delete(f"/v1/collections/{cid}").status == 204
    missing = api.get(f"/v1/collections/{cid}")
    assert missing.status == 404 and missing.body["meta"]["error"]


def test_collection_bad_requests(api: Api) -> None:
    assert api.post("/v1/collections", {"data": []}).status == 400
    assert api.post("/v1/collections", {"name": "x", "data": "nope"}).status == 400
    assert api.get("/v1/collections/abc").status == 404


def test_segment_lifecycle(api: Api) -> None:
    body = api.post("/v1/segments", {"segment": {"name": "vip", "description": "d"}}).body
    seg = body["segment"]
    assert seg["type"] == "manual" and seg["name"] == "vip" and seg["description"] == "d"
    assert set(seg) >= {
        "id",
        "deduplicate_id",
        "state",
        "progress",
        "tags",
        "created_at",
        "updated_at",
    }
    assert api.get(f"/v1/segments/{seg['id']}").body == {"segment": seg}
    assert api.get("/v1/segments").body == {"segments": [seg]}
    assert api.delete(f"/v1/segments/{seg['id']}").status == 204
    assert api.get(f"/v1/segments/{seg['id']}").status == 404
    assert api.post("/v1/segments", {"name": "flat"}).status == 400


def test_membership_paging(api: Api) -> None:
    seg = api.post("/v1/segments", {"segment": {"name": "s"}}).body["segment"]["id"]
    api.batch(*[identify(str(i)) for i in range(7)])
    api.put("/api/v1/customers/only%40email.com", {})
    ids = [str(i) for i in range(7)]
    api.post(f"/api/v1/segments/{seg}/add_customers", {"ids": ids})
    api.post(f"/api/v1/segments/{seg}/add_customers?id_type=email", {"ids": ["only@email.com"]})
    seen, start, pages = [], "", 0
    while True:
        query = f"?limit=3&start={start}" if start else "?limit=3"
        page = api.get(f"/v1/segments/{seg}/membership{query}").body
        seen += page["identifiers"]
        pages += 1
        assert page["ids"] == [i["id"] for i in page["identifiers"]]
        start = page.get("next")
        if not start:
            break
    assert pages == 3
    assert [i["id"] for i in seen] == [*ids, ""]
    assert seen[-1]["email"] == "only@email.com" and all(i["cio_id"] for i in seen)
    assert api.get(f"/v1/segments/{seg}/membership?limit=30001").status == 400
    assert api.get(f"/v1/segments/{seg}/membership?limit=30000").status == 200
    assert api.get(f"/v1/segments/{seg}/customer_count").body == {"count": 8}


def test_customer_lookups(api: Api) -> None:
    api.put("/api/v1/customers/42", {"email": "a+b@x.com", "n": 5, "ok": True, "o": {"k": 1}})
    api.put("/api/v1/customers/42/devices", {"device": {"id": "tok", "platform": "ios"}})
    found = api.get("/v1/customers?email=a%2Bb%40x.com").body["results"]
    assert found[0]["id"] == "42" and found[0]["email"] == "a+b@x.com" and found[0]["cio_id"]
    assert api.get("/v1/customers?email=none%40x.com").body == {"results": []}
    customer = api.get("/v1/customers/42/attributes").body["customer"]
    assert customer["attributes"]["n"] == "5" and customer["attributes"]["ok"] == "true"
    assert customer["attributes"]["o"] == '{"k":1}'
    assert customer["identifiers"]["email"] == "a+b@x.com"
    assert customer["devices"][0]["id"] == "tok"
    by_email = api.get("/v1/customers/a%2Bb%40x.com/attributes?id_type=email").body
    by_cio = api.get(f"/v1/customers/cio_{found[0]['cio_id']}/attributes?id_type=cio_id").body
    assert by_email == by_cio == {"customer": customer}
    assert api.get("/v1/customers/nobody/attributes").status == 404
    assert api.get("/v1/customers/42/attributes?id_type=bogus").status == 400


def test_bulk_attributes(api: Api) -> None:
    api.batch(identify("1", a=1), identify("2", b=2))
    customers = api.post("/v1/customers/attributes", {"ids": ["1", "2", "3"]}).body["customers"]
    assert [c["id"] for c in customers] == ["1", "2"]
    too_many = {"ids": [str(i) for i in range(101)]}
    assert api.post("/v1/customers/attributes", too_many).status == 400
    assert api.post("/v1/customers/attributes", {"ids": ["1"] * 100}).status == 200


def test_object_attributes(api: Api) -> None:
    api.batch(
        {
            "type": "object",
            "identifiers": {"object_type_id": "1", "object_id": "acme"},
            "action": "identify",
            "attributes": {"seats": 50},
        }
    )
    body = api.get("/v1/objects/1/acme/attributes").body["object"]
    assert body["attributes"] == {"seats": "50"} and body["identifiers"]["object_id"] == "acme"
    cio = body["identifiers"]["cio_object_id"]
    assert api.get(f"/v1/objects/1/{cio}/attributes?id_type=cio_object_id").body["object"] == body
    assert api.get("/v1/objects/1/nope/attributes").status == 404
    assert api.get("/v1/objects/2/acme/attributes").status == 404


def test_app_auth_failures(api: Api) -> None:
    for auth in (None, "Bearer wrong", "Basic c2l0ZTp0cmFjay1rZXk="):
        reply = api.get("/v1/segments", auth=auth)
        assert reply.status == 401 and reply.body == {"meta": {"error": "Unauthorized request"}}


def test_unknown_route_is_json_404(api: Api) -> None:
    reply = api.get("/v1/nothing-here")
    assert reply.status == 404 and "error" in reply.body["meta"]
