"""Scoring one large batch on several worker processes at once.

Why: the server's workers are processes, one busy core each under the GIL. A
large batch sent to an otherwise idle server keeps one core busy and leaves the
others idle; cut into chunks and scored side by side it is answered sooner
(docs/serving.md has the measurements and the command that took them).

How: with ``--workers`` above one, the parent process makes a directory that only
the server's user can enter. Every worker listens there on a Unix socket
(`scorer.ChunkScorer`) and publishes how many requests it is scoring, and since
when it has had none, in a small memory-mapped file (`load.LoadGauge`). A worker
that starts receiving a large batch looks for siblings that have had nothing in
flight for a moment (`load.QUIET_S`: a sibling with clients of its own is idle only
between their requests; `links.Siblings`) and cuts the body into chunks of whole
rows as it arrives (`batching.Cutter`, pure): each sibling is sent its chunk, with a
typed header (`frames.ChunkHeader`), as soon as that chunk's rows are in, and the
receiving worker keeps the last (`coordinator.FanOut`). A sibling decodes, checks
and scores its chunk exactly as it would a request, with the same package (it
refuses when it serves another version), encodes its rows of the response,
numbered from where the receiving worker guessed they start, and sends them back
with the scores (and the rows, when score hooks need them). The receiving worker
checks every guess, encodes again where one was wrong, joins the texts in order
and tells the score hooks once, with every row, as if it had scored the batch alone.

Whatever goes wrong ends in the ordinary path: a sibling that is gone, does not
answer in time or serves another version leaves its chunk to be scored here (and
is left alone for a while); a body that cannot be cut, or a chunk that fails to
decode or score anywhere, makes `FanOut.infer` raise `FanOutDeclined` with the
body, which the endpoint then scores whole, so an error names the same row and
column as it would without fan-out.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from shipmate.serving.dataplane import DataPlane
from shipmate.serving.deployments import Registry
from shipmate.serving.fanout.coordinator import FanOut, FanOutDeclined
from shipmate.serving.fanout.links import Siblings
from shipmate.serving.fanout.load import LoadGauge, load_file
from shipmate.serving.fanout.scorer import ChunkScorer

__all__ = ["FanOut", "FanOutDeclined", "LoadGauge", "Membership"]

log = logging.getLogger(__name__)


@dataclass
class Membership:
    """This worker among its siblings: its published load, the chunks it scores for them, its fan-out.

    Without a shared directory (one worker, or fan-out off) only the load gauge is
    there, counting this worker's requests for no one.
    """

    gauge: LoadGauge
    scorer: ChunkScorer | None = None
    fanout: FanOut | None = None

    @classmethod
    async def join(cls, peer_dir: Path | None, registry: Registry, dataplane: DataPlane) -> Membership:
        """Take chunks from sibling workers, and hand chunks to them."""
        if peer_dir is None:
            return cls(LoadGauge())
        own = peer_dir / f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        scorer = ChunkScorer(registry, dataplane, own)
        gauge = LoadGauge()
        try:
            gauge = LoadGauge(load_file(own))  # published before the socket: siblings map it first
            await scorer.start()
        except OSError as exc:  # fan-out is an optimisation: serve without it
            log.warning("batches will not be shared with sibling workers: %s", exc)
            gauge.close()
            return cls(LoadGauge())
        return cls(gauge, scorer, FanOut(dataplane, Siblings(peer_dir, own)))

    async def leave(self) -> None:
        if self.fanout is not None:
            self.fanout.siblings.close()
            self.fanout = None
        if self.scorer is not None:
            await self.scorer.close()
            self.scorer = None
        self.gauge.close()
