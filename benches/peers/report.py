#!/usr/bin/env python3
"""Turns the JSON lines of benches/peers/run.sh into one Markdown table.

Input: a file of JSON lines, one per benchmark process (see globus_bench.py,
sharetribe_bench.js, examples/bench_peers.rs), several repetitions of each. Output: the
median ops/s of each store for store and get, and ours as a multiple of theirs. A durable
tokenvault put fsyncs, so it is compared with the peers that fsync, and a buffered one with
the peers that do not.

Usage: report.py RESULTS.jsonl
"""

from __future__ import annotations

import json
import statistics
import sys

# (source key, result key) -> how the table names it and what it does for durability.
STORES = {
    ("globus-sdk", "sqlite"): ("Globus `SQLiteTokenStorage`", True,
                               "yes: `commit()`, SQLite journal_mode=DELETE, synchronous=FULL"),
    ("globus-sdk", "json"): ("Globus `JSONTokenStorage`", False,
                             "no: `open(\"w\")` + `json.dump`"),
    ("sharetribe-flex-integration-sdk", "file_store"): ("Sharetribe `fileStore`", False,
                                                        "no: `fs.promises.writeFile`"),
}
OURS = {
    True: ("tokenvault, durable", "durable", "yes: sled flush + `fdatasync` per put"),
    False: ("tokenvault, buffered", "buffered", "no: in memory, one `flush()` at the end (counted)"),
}


def main() -> None:
    runs: dict[tuple[str, str], list[dict]] = {}
    meta: dict[str, dict] = {}
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            doc = json.loads(line)
            meta[doc["peer"]] = doc
            for name, result in doc["results"].items():
                runs.setdefault((doc["peer"], name), []).append(result)

    def stat(key: tuple[str, str], field: str) -> tuple[float, float, float, int]:
        values = [r[field] for r in runs[key]]
        return statistics.median(values), min(values), max(values), len(values)

    def fmt(value: float) -> str:
        return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"

    def multiple(ours: float, theirs: float) -> str:
        m = ours / theirs
        return f"{m:,.0f}×" if m >= 100 else f"{m:,.1f}×" if m >= 10 else f"{m:.2f}×"

    reps = {len(v) for v in runs.values()}
    sampled = {key for key in runs
               if runs[key][0].get("gets_timed", meta[key[0]]["records"]) < meta[key[0]]["records"]}
    tv = meta.get("tokenvault", {})
    print(f"### Against the peers: {tv.get('records', '?')} records over "
          f"{tv.get('namespaces', '?')} namespaces, median of {'/'.join(map(str, sorted(reps)))} runs")
    print()
    for op, field, title in (("store", "stores_per_s", "Store (one record per call)"),
                             ("get", "gets_per_s", "Get (each record read back once)")):
        print(f"**{title}**")
        print()
        print("| store | fsyncs on store? | ops/s (median; min–max) | compared with | our ops/s "
              "| ours / theirs | (ours in the other mode / theirs) |")
        print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
        for fsyncs in (True, False):
            our_name, our_key, _ = OURS[fsyncs]
            _, other_key, _ = OURS[not fsyncs]
            ours = stat(("tokenvault", our_key), field)
            other = stat(("tokenvault", other_key), field)
            for key, (name, peer_fsyncs, sync) in STORES.items():
                if peer_fsyncs != fsyncs or key not in runs:
                    continue
                theirs = stat(key, field)
                first = runs[key][0]
                if "synchronous" in first:  # what SQLite reported, not what we assume
                    level = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(first["synchronous"])
                    sync = (f"{'yes' if first['synchronous'] >= 1 else 'no'}: `commit()`, SQLite "
                            f"journal_mode={first['journal_mode'].upper()}, synchronous={level}")
                note = ""
                if op == "get" and key in sampled:
                    note = " ¹"
                print(f"| {name}{note} | {sync} | {fmt(theirs[0])}; {fmt(theirs[1])}–{fmt(theirs[2])} "
                      f"| {our_name} | {fmt(ours[0])} | **{multiple(ours[0], theirs[0])}** "
                      f"| ({other_key}: {multiple(other[0], theirs[0])}) |")
        for fsyncs in (True, False):
            our_name, our_key, our_sync = OURS[fsyncs]
            ours = stat(("tokenvault", our_key), field)
            print(f"| {our_name} (ours) | {our_sync} | {fmt(ours[0])}; {fmt(ours[1])}–{fmt(ours[2])} "
                  f"| | | | |")
        print()

    if sampled:
        n = runs[next(iter(sampled))][0]["gets_timed"]
        print(f"¹ Gets timed on {n} of the {meta['globus-sdk']['records']} records (drawn at random "
              "from all namespaces, after all were stored): every Globus get reads and decodes the "
              "whole namespace (SQLite) or the whole file (JSON), so each costs the same.")
    print("Durable tokenvault is compared with the peers that fsync, buffered with those that "
          "do not; every peer stores plaintext, tokenvault seals each record "
          "(ChaCha20-Poly1305).")
    print()
    versions = []
    if "globus-sdk" in meta:
        g = meta["globus-sdk"]
        versions.append(f"globus-sdk {g['globus_sdk']} (Python {g['python']}, SQLite {g['sqlite']})")
    if "sharetribe-flex-integration-sdk" in meta:
        s = meta["sharetribe-flex-integration-sdk"]
        versions.append(f"sharetribe-flex-integration-sdk {s['sharetribe_sdk']} (Node {s['node']})")
    if tv:
        versions.append(f"tokenvault {tv['tokenvault']} (release build)")
    print("Versions: " + "; ".join(versions) + ".")


if __name__ == "__main__":
    main()
