#!/usr/bin/env python3
"""The peer workload through Globus SDK's file token storages (plaintext on disk).

2,000 records over 10 namespaces (200 resource servers per namespace). Each record is a
realistic token: a 1 KiB access token, a refresh token, scopes, expiry, identity id and
resource server. Phase 1 stores them one record per call, as a token store is used (a login
or refresh stores one resource server's tokens); phase 2 reads each back once with
``get_token_data``. Each storage object is bound to one namespace at construction, as
``GlobusApp`` uses them, so there are 10 storage objects on one fresh file in a temp dir.
The storage objects are constructed (and the SQLite schema created) before timing.

Prints one JSON line with the numbers; never prints token values.

What each storage does per call (globus-sdk 4.x):
  sqlite  store: ``REPLACE INTO`` + ``commit()`` (journal_mode DELETE, synchronous FULL:
          several fsyncs per commit); get: ``SELECT`` of the whole namespace, JSON-decoding
          every row, then picks one resource server.
  json    store: reads and parses the whole file, adds the record, rewrites the whole file
          with ``open("w")`` + ``json.dump`` (no fsync); get: reads and parses the whole file.

A get costs the same for every record here (both storages read the whole namespace, or the
whole file, whatever the resource server), and at 2,000 records each get takes tens of
milliseconds, so ``--get-sample N`` times gets of N records drawn at random (seeded) from all
namespaces instead of all of them, to keep a run short; gets/s is then N / time. The store
phase always stores every record (a JSON store's cost grows with the file).

Usage: globus_bench.py [--storage sqlite|json|both] [--records N] [--namespaces N]
                       [--get-sample N]   (0, the default: get every record)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import string
import sys
import tempfile
import time

import globus_sdk
from globus_sdk.token_storage import JSONTokenStorage, SQLiteTokenStorage, TokenStorageData

ACCESS_TOKEN_LEN = 1024
REFRESH_TOKEN_LEN = 64
ALPHABET = string.ascii_letters + string.digits


def workload(records: int, namespaces: int):
    """The records as (namespace, resource_server, TokenStorageData), in store order.

    Record i goes to namespace i % namespaces, so consecutive calls change namespace, as
    they do when several users' tokens are refreshed. Deterministic (seeded).
    """
    rng = random.Random(7)
    ns_names = [f"user/{uuid_from(rng)}" for _ in range(namespaces)]
    identities = [uuid_from(rng) for _ in range(namespaces)]
    now = int(time.time())
    out = []
    for i in range(records):
        ns = i % namespaces
        rs = f"rs-{i // namespaces:03d}.api.example.org"
        data = TokenStorageData(
            resource_server=rs,
            identity_id=identities[ns],
            scope=f"openid profile email urn:globus:auth:scope:{rs}:all",
            access_token="".join(rng.choices(ALPHABET, k=ACCESS_TOKEN_LEN)),
            refresh_token="".join(rng.choices(ALPHABET, k=REFRESH_TOKEN_LEN)),
            expires_at_seconds=now + 172800,
            token_type="Bearer",
        )
        out.append((ns_names[ns], rs, data))
    return out


def uuid_from(rng: random.Random) -> str:
    h = "%032x" % rng.getrandbits(128)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def run(kind: str, records: list, tmp: str, get_sample: int) -> dict:
    path = os.path.join(tmp, f"tokens.{kind}")
    cls = SQLiteTokenStorage if kind == "sqlite" else JSONTokenStorage
    storages = {}
    for ns, _, _ in records:
        if ns not in storages:
            storages[ns] = cls(path, namespace=ns)

    start = time.perf_counter()
    for ns, rs, data in records:
        storages[ns].store_token_data_by_resource_server({rs: data})
    store_s = time.perf_counter() - start

    if 0 < get_sample < len(records):
        picked = sorted(random.Random(11).sample(range(len(records)), get_sample))
        to_get = [records[i] for i in picked]
    else:
        to_get = records
    start = time.perf_counter()
    found = 0
    for ns, rs, data in to_get:
        got = storages[ns].get_token_data(rs)
        # A cheap check that the right record came back (lengths only, never values).
        if got is not None and got.resource_server == rs and len(got.access_token) == ACCESS_TOKEN_LEN:
            found += 1
    get_s = time.perf_counter() - start

    settings = {}
    if kind == "sqlite":
        conn = next(iter(storages.values()))._connection
        settings = {
            "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0],
        }
    for s in storages.values():
        s.close()
    if found != len(to_get):
        sys.exit(f"globus {kind}: read back {found} of {len(to_get)} records")
    return {
        "store_s": round(store_s, 6),
        "get_s": round(get_s, 6),
        "stores_per_s": round(len(records) / store_s, 1),
        "gets_per_s": round(len(to_get) / get_s, 1),
        "gets_timed": len(to_get),
        "file_bytes": os.path.getsize(path),
        "fsync": kind == "sqlite",
        **settings,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", choices=["sqlite", "json", "both"], default="both")
    p.add_argument("--records", type=int, default=2000)
    p.add_argument("--namespaces", type=int, default=10)
    p.add_argument("--get-sample", type=int, default=0)
    args = p.parse_args()

    records = workload(args.records, args.namespaces)
    kinds = ["sqlite", "json"] if args.storage == "both" else [args.storage]
    results = {}
    for kind in kinds:
        # A fresh file in a fresh temp dir for each storage.
        with tempfile.TemporaryDirectory(prefix="globus-bench-") as tmp:
            results[kind] = run(kind, records, tmp, args.get_sample)
    print(json.dumps({
        "peer": "globus-sdk",
        "python": platform.python_version(),
        "globus_sdk": globus_sdk.__version__,
        "sqlite": sqlite3.sqlite_version,
        "records": args.records,
        "namespaces": args.namespaces,
        "results": results,
    }))


if __name__ == "__main__":
    main()
