"""What keeping the association id column costs the JSON fast path of an all-numeric model.

Decodes the same 1,000-row x 20-feature JSON body with the fast path alone (the peer, as
before association ids were kept) and with the id column kept (a second msgspec pass over
the body), in alternating rounds in one process; prints wall and CPU time per body.

    python3 bench/association_ids_bench.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import orjson

from shipmate.serving.codecs.json import decode_json_matrix


def body(rows: int, features: tuple[str, ...]) -> bytes:
    records = [{"rid": f"req-{i:08d}", **{f: float(i % 97) / 7 for f in features}} for i in range(rows)]
    return orjson.dumps(records)


def timed(fn, rounds: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    wall, cpu = [], []
    for _ in range(rounds):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall) * 1000, sum(cpu) / rounds * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    features = tuple(f"x{i}" for i in range(20))
    payload = body(args.rows, features)
    assert decode_json_matrix(payload, features, "rid").association_ids[0] == "req-00000000"  # type: ignore[index]
    results: dict[str, list[tuple[float, float]]] = {"fast path alone": [], "with the id column": []}
    for _ in range(5):  # alternate, so the machine's load falls on both alike
        results["fast path alone"].append(timed(lambda: decode_json_matrix(payload, features), args.rounds))
        results["with the id column"].append(
            timed(lambda: decode_json_matrix(payload, features, "rid"), args.rounds)
        )
    print(f"{args.rows} rows x {len(features)} features, {len(payload):,} bytes of JSON; median of 5 turns")
    for name, turns in results.items():
        wall = statistics.median(t[0] for t in turns)
        cpu = statistics.median(t[1] for t in turns)
        print(f"  {name:20s} {wall:7.3f} ms per body (wall, median)  {cpu:7.3f} ms CPU per body (mean)")


if __name__ == "__main__":
    main()
