"""Built operations packed into request bodies by Arrow (`connectors.customerio.packing`), and
sent by the client like any other items: limits kept, answers mapped back to each operation."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pytest
from support.scripted_server import (
    Collector,
    Reply,
    Script,
    ScriptedServer,
    Seen,
    run_with_server,
    settings,
)

from connectors.customerio.client import CustomerIOClient
from connectors.customerio.packing import Packed, packed
from engine.destination import DeliveryStats


def built(ops: dict[int, dict[str, Any]]) -> pa.Table:
    """A plan chunk's built operations, as `engine.diff.read_built` hands them over."""
    texts = [orjson.dumps(body) for body in ops.values()]
    return pa.table({"seq": pa.array(list(ops), pa.int64()), "operation": pa.array(texts)})


def person(seq: int, **attributes: Any) -> dict[str, Any]:
    identifiers = {"id": f"p{seq}"}
    return {"type": "person", "action": "identify", "identifiers": identifiers, **attributes}


def test_runs_of_max_ops_are_joined_whole_and_the_rest_goes_as_items() -> None:
    ops = {seq: person(seq) for seq in range(1, 2501)}
    table = built(ops)
    runs = packed(table, 1000, 10**9)
    assert [len(run) for run in runs[:2]] == [1000, 1000]
    assert all(isinstance(run, Packed) for run in runs[:2])
    assert runs[2:] == [(seq, orjson.dumps(ops[seq])) for seq in range(2001, 2501)]
    first = runs[0]
    assert isinstance(first, Packed)
    assert first.refs == list(range(1, 1001))
    assert first.joined == b",".join(orjson.dumps(ops[seq]) for seq in range(1, 1001))
    assert first[0] == (1, orjson.dumps(ops[1])) and first[-2:][1][0] == 1000
    led = packed(table, 1000, 10**9, lead=300)  # 300 complete the body before, then runs
    assert [type(item).__name__ for item in led[299:302]] == ["tuple", "Packed", "Packed"]
    assert len(led) == 300 + 2 + 200 and led[302] == (2301, orjson.dumps(ops[2301]))
    room = len(first.joined) - 1  # the first two runs no longer fit a body: their ops go alone
    loose = packed(table, 1000, room)
    assert [type(item).__name__ for item in loose[:2]] == ["tuple", "tuple"]
    assert len(loose) == 2500 and not any(isinstance(item, Packed) for item in loose)


def deliver_built(
    script: Script, ops: dict[int, dict[str, Any]], *, chunk: int | None = None, **overrides: Any
) -> Any:
    """Send `ops` as built plan chunks of `chunk` operations (all at once by default), each
    packed as the destination packs them, after the operations of the chunks before."""
    collector, stats = Collector(), DeliveryStats()
    seqs = list(ops)
    size = chunk or len(seqs)

    async def body(server: ScriptedServer) -> tuple[Collector, DeliveryStats]:
        async with CustomerIOClient(settings(server.url, **overrides)) as client:
            parts = [
                client.pack_built(built({s: ops[s] for s in seqs[at : at + size]}), at)
                for at in range(0, len(seqs), size)
            ]
            assert any(isinstance(item, Packed) for part in parts for item in part)
            await client.send_encoded(parts, collector, stats)
        return collector, stats

    server, _ = run_with_server(script, body)
    return server, collector


def test_a_packed_body_is_the_batch_its_operations_make() -> None:
    ops = {seq: person(seq, plan="pro") for seq in range(10, 35)}
    server, collector = deliver_built(lambda seen, n: Reply(), ops, max_batch_ops=10)
    sent = [seen.json["batch"] for seen in server.batch_requests]
    assert [len(batch) for batch in sent] == [10, 10, 5]
    assert [op for batch in sent for op in batch] == list(ops.values())
    assert collector.acked == list(range(10, 35)) and collector.rejected == {}


def test_chunks_that_end_mid_body_fill_whole_bodies_together() -> None:
    """Plan chunks of 15 with bodies of 10: the 5 a chunk leaves over and the 5 the next begins
    with make one body, not two half ones."""
    ops = {seq: person(seq) for seq in range(1, 46)}
    server, collector = deliver_built(lambda seen, n: Reply(), ops, chunk=15, max_batch_ops=10)
    sent = [seen.json["batch"] for seen in server.batch_requests]
    assert [len(batch) for batch in sent] == [10, 10, 10, 10, 5]
    assert [op for batch in sent for op in batch] == list(ops.values())
    assert collector.acked == list(range(1, 46))


def test_a_packed_bodys_207_names_its_operations_by_batch_index() -> None:
    errors = [{"batch_index": 2, "reason": "invalid", "field": "identifiers", "message": "bad"}]
    ops = {seq: person(seq) for seq in range(100, 105)}
    _, collector = deliver_built(
        lambda seen, n: Reply(207, {"errors": errors}), ops, max_batch_ops=5
    )
    assert collector.acked == [100, 101, 103, 104]
    assert collector.rejected == {102: "identifiers: bad"}


@pytest.mark.parametrize("status", [400, 413])
def test_a_refused_packed_body_is_split_down_to_its_bad_operations(status: int) -> None:
    def script(seen: Seen, n: int) -> Reply:
        if any(op["identifiers"]["id"] in ("p7", "p21") for op in seen.json["batch"]):
            return Reply(status, {"errors": [{"reason": "invalid", "message": "no"}]})
        return Reply()

    ops = {seq: person(seq) for seq in range(1, 31)}
    server, collector = deliver_built(script, ops, max_batch_ops=30)
    assert set(collector.rejected) == {7, 21}
    assert collector.acked == sorted(set(range(1, 31)) - {7, 21})
    assert len(server.batch_requests) < 30
