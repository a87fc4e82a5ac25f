"""Operations the state database built, packed into request bodies by Arrow (SPEC §7.1).

A plan chunk's built operations arrive as two Arrow columns, their sequence numbers and their
compact JSON texts. `packed` cuts them into runs of `max_batch_ops` and joins each run's texts
with commas in one Arrow kernel: a request's body is made without a Python object per
operation. A run the body limit cannot take whole (its texts and commas over the bytes a body
has room for) is left to the client's item-by-item packing, which cuts it by size.

A `Packed` run is also a sequence of (seq, text) items, made only when needed: a 400 or 413
answer splits the request, and a single operation's rejection names it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import overload

import pyarrow as pa
import pyarrow.compute as pc

Item = tuple[int, bytes]


class Packed(Sequence[Item]):
    """Consecutive built operations joined for one request body (`joined`: texts, commas)."""

    def __init__(self, seqs: pa.Array, texts: pa.Array, joined: bytes) -> None:
        self.seqs, self.texts, self.joined = seqs, texts, joined

    @cached_property
    def refs(self) -> list[int]:
        refs: list[int] = self.seqs.to_pylist()
        return refs

    @cached_property
    def items(self) -> list[Item]:
        return list(zip(self.refs, self.texts.to_pylist(), strict=True))

    def __len__(self) -> int:
        return len(self.seqs)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    @overload
    def __getitem__(self, index: int) -> Item: ...

    @overload
    def __getitem__(self, index: slice) -> list[Item]: ...

    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        return self.items[index]


def packed(built: pa.Table, max_ops: int, room: int, lead: int = 0) -> list[Packed | Item]:
    """`built` (columns seq, operation: binary) as runs of `max_ops` operations joined for a body
    with `room` bytes for them. The first `lead` operations (those that complete the body the
    chunk before left short), the last ones that do not fill a run, and the operations of a run
    too large for a body go as items, which the client packs with its neighbours."""
    rows = built.num_rows
    if rows == 0:
        return []
    seqs, texts = built.column("seq").combine_chunks(), built.column("operation").combine_chunks()
    start = min(lead, rows)
    whole = (rows - start) // max_ops
    bounds = [start + n * max_ops for n in range(whole + 1)]
    out: list[Packed | Item] = list(_items(seqs, texts, 0, start))
    if whole:
        runs = pa.ListArray.from_arrays(pa.array(bounds, pa.int32()), texts)
        joined = pc.binary_join(runs, b",")
        sizes = pc.binary_length(joined).to_pylist()
        for n, (low, high) in enumerate(itertools.pairwise(bounds)):
            run = Packed(seqs[low:high], texts[low:high], b"")
            if sizes[n] > room:
                out.extend(run.items)
            else:
                run.joined = joined[n].as_py()
                out.append(run)
    out.extend(_items(seqs, texts, bounds[-1], rows))
    return out


def _items(seqs: pa.Array, texts: pa.Array, low: int, high: int) -> list[Item]:
    if low >= high:
        return []
    return list(zip(seqs[low:high].to_pylist(), texts[low:high].to_pylist(), strict=True))
