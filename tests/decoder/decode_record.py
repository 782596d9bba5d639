#!/usr/bin/env python3
"""An independent decoder for tokenvault format version 1, written from docs/format.md.

It does not share code with the Rust library: it follows the specification, so that
tests/engine/format_spec.rs checks the specification against what the library writes.

Input (stdin): one JSON object
    {"header_hex": "...",
     "passphrase": "..."  or  "raw_key_hex": "...",
     "namespace": "...",
     "key": "...",                  # the record key (ignored when "manifest" is true)
     "record_hex": "...",
     "manifest": false}             # optional: decode the namespace manifest instead

Output (stdout): one JSON object. On success: the record type, key id, generation, the
decoded record, and what was verified on the way. On any failed check:
    {"error": "<which check failed>", "class": "damaged" | "wrong_key" | ...}
and the exit status is 1 (2 for a malformed job).

Needs: PyNaCl (XChaCha20-Poly1305) and argon2-cffi (Argon2id). HKDF, HMAC and SHA-256 come
from the standard library.
"""

import hashlib
import hmac
import json
import struct
import sys

try:
    from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt
    from nacl.exceptions import CryptoError
    from argon2.low_level import Type as Argon2Type
    from argon2.low_level import hash_secret_raw
except ImportError as e:  # pragma: no cover - reported to the caller
    print(json.dumps({"error": f"missing Python module: {e.name}", "class": "environment"}))
    sys.exit(3)


# ---------------------------------------------------------------- spec constants (section 2, 3)

MAGIC = bytes.fromhex("89545641554c540a")
FORMAT_VERSION = 1
MAX_HEADER_LEN = 256 * 1024 * 1024
HEADER_FIXED = 8 + 2 + 4
HEADER_TRAILER = 32 + 32
MAX_KEYSLOTS = 32
MAX_PARAMS_LEN = 1024
NS_ID_LEN = 32
NS_BLOB_MIN = 24 + 64 + 16
NS_BLOB_MAX = 64 * 1024
NS_ENTRY_MIN = NS_ID_LEN + 4 + NS_BLOB_MIN
MAX_NS_KEYS = 64
WRAPPED_KEY_LEN = 72

KIND_PASSPHRASE = 1
KIND_RAW_KEY = 2
ARGON2_VERSION = 0x13
MAX_M_KIB = 4 * 1024 * 1024
MAX_T = 64
MAX_P = 16
MIN_SALT = 16
MAX_SALT = 64

RECORD_PREFIX_LEN = 14
RECORD_HEADER_LEN = RECORD_PREFIX_LEN + 24
TAG_LEN = 16
PAD_BUCKET = 256
MAX_RECORD_LEN = 64 * 1024
RECORD_MIN = RECORD_HEADER_LEN + PAD_BUCKET + TAG_LEN
RECORD_MAX = RECORD_HEADER_LEN + MAX_RECORD_LEN + TAG_LEN
PAYLOAD_VERSION = 1
TYPES = {1: "token", 2: "secret", 3: "manifest"}
MANIFEST_ID = b"\x00"

L_KEYSLOT = b"tokenvault/v1/keyslot"
L_RAW_KEY = b"tokenvault/v1/keyslot/raw-key"
L_HEADER_MAC = b"tokenvault/v1/header-mac"
L_WRAP = b"tokenvault/v1/wrap"
L_INDEX_KEY = b"tokenvault/v1/index-key"
L_NAMESPACE = b"tokenvault/v1/namespace"
L_NAMESPACE_ID = b"tokenvault/v1/namespace-id"
L_RECORD_ID = b"tokenvault/v1/record-id"
L_RECORD = b"tokenvault/v1/record"


class Fail(Exception):
    """A failed check: `check` says which, `cls` is the error class of section 8."""

    def __init__(self, check, cls="damaged"):
        super().__init__(check)
        self.check = check
        self.cls = cls


# ---------------------------------------------------------------- primitives (section 1)

def le16(x):
    return struct.pack("<H", x)


def le32(x):
    return struct.pack("<I", x)


def le64(x):
    return struct.pack("<Q", x)


def lp(b):
    return le32(len(b)) + b


def hmac_sha256(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


def hkdf_sha256(salt, ikm, info, length=32):
    """RFC 5869."""
    prk = hmac_sha256(salt, ikm)
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac_sha256(prk, block + info + bytes([counter]))
        out += block
        counter += 1
    return out[:length]


def aead_open(key, nonce, aad, ct_tag):
    """XChaCha20-Poly1305; None when authentication fails."""
    if len(nonce) != 24 or len(ct_tag) < TAG_LEN:
        return None
    try:
        return crypto_aead_xchacha20poly1305_ietf_decrypt(ct_tag, aad, nonce, key)
    except CryptoError:
        return None


def unwrap(kek, aad, wrapped):
    """Section 1.2: nonce [24] || ct [32] || tag [16], length checked first."""
    if len(wrapped) != WRAPPED_KEY_LEN:
        return None
    key = aead_open(kek, wrapped[:24], aad, wrapped[24:])
    if key is None or len(key) != 32:
        return None
    return key


class Reader:
    """A bounded little-endian reader; reading past the end raises Fail(what)."""

    def __init__(self, data, what):
        self.data = data
        self.pos = 0
        self.what = what

    def remaining(self):
        return len(self.data) - self.pos

    def take(self, n):
        if n < 0 or n > self.remaining():
            raise Fail(self.what)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def i64(self):
        return struct.unpack("<q", self.take(8))[0]

    def at_end(self):
        return self.pos == len(self.data)


# ---------------------------------------------------------------- header (section 3, 8.1)

def parse_header(header):
    if len(header) > MAX_HEADER_LEN:
        raise Fail("header: file too large")
    if len(header) < HEADER_FIXED + HEADER_TRAILER:
        raise Fail("header: truncated")
    if header[0:8] != MAGIC:
        raise Fail("header: bad magic")
    version = struct.unpack("<H", header[8:10])[0]
    if version > FORMAT_VERSION:
        raise Fail(f"header: unsupported format version {version}", "unsupported_version")
    if version != FORMAT_VERSION:
        raise Fail(f"header: unknown format version {version}")
    body_len = struct.unpack("<I", header[10:14])[0]
    if HEADER_FIXED + body_len + HEADER_TRAILER != len(header):
        raise Fail("header: length does not match body_len")
    if hashlib.sha256(header[:-32]).digest() != header[-32:]:
        raise Fail("header: checksum mismatch")

    r = Reader(header[HEADER_FIXED:HEADER_FIXED + body_len], "header: truncated inside a field")
    h = {"body_len": body_len}
    h["vault_id"] = r.take(16)
    h["seqid"] = r.u64()
    h["next_slot_id"] = r.u32()
    slot_count = r.u16()
    if not 1 <= slot_count <= MAX_KEYSLOTS:
        raise Fail("header: keyslot count out of bounds")
    slots, ids = [], set()
    for _ in range(slot_count):
        sid = r.u32()
        kind = r.u8()
        params_len = r.u16()
        if params_len > MAX_PARAMS_LEN:
            raise Fail("header: keyslot parameters too long")
        params = r.take(params_len)
        wrapped = r.take(WRAPPED_KEY_LEN)
        if sid >= h["next_slot_id"] or sid in ids:
            raise Fail("header: keyslot ids inconsistent")
        ids.add(sid)
        slots.append({"id": sid, "kind": kind, "params": params, "wrapped_vmk": wrapped})
    h["slots"] = slots
    h["wrapped_index_key"] = r.take(WRAPPED_KEY_LEN)
    ns_count = r.u32()
    if ns_count > r.remaining() // NS_ENTRY_MIN:
        raise Fail("header: namespace count exceeds the header's size")
    entries = {}
    for _ in range(ns_count):
        ns_id = r.take(NS_ID_LEN)
        blob_len = r.u32()
        if not NS_BLOB_MIN <= blob_len <= NS_BLOB_MAX:
            raise Fail("header: namespace entry length out of bounds")
        blob = r.take(blob_len)
        if ns_id in entries:
            raise Fail("header: duplicate namespace entries")
        entries[ns_id] = blob
    if not r.at_end():
        raise Fail("header: trailing bytes in the body")
    h["namespaces"] = entries
    return h


def parse_slot_params(slot):
    """Section 3.4, with the bounds enforced before any derivation."""
    r = Reader(slot["params"], "keyslot parameters: malformed")
    if slot["kind"] == KIND_PASSPHRASE:
        version, m, t, p = r.u32(), r.u32(), r.u32(), r.u32()
        salt = r.take(r.u8())
        if version != ARGON2_VERSION:
            raise Fail("keyslot parameters: unknown Argon2 version")
        if not (1 <= t <= MAX_T and 1 <= p <= MAX_P and 8 * p <= m <= MAX_M_KIB):
            raise Fail("keyslot parameters: Argon2 bounds")
        out = {"m_kib": m, "t": t, "p": p, "salt": salt}
    elif slot["kind"] == KIND_RAW_KEY:
        out = {"salt": r.take(r.u8())}
    else:
        raise Fail("keyslot parameters: unknown kind")
    if not MIN_SALT <= len(out["salt"]) <= MAX_SALT:
        raise Fail("keyslot parameters: salt length out of bounds")
    if not r.at_end():
        raise Fail("keyslot parameters: trailing bytes")
    return out


def unlock(h, passphrase, raw_key):
    """Section 8.1 steps 8-10: returns (slot info, VMK)."""
    kind = KIND_PASSPHRASE if passphrase is not None else KIND_RAW_KEY
    candidates = [s for s in h["slots"] if s["kind"] == kind]
    if not candidates:
        raise Fail("keyslot: no slot of this kind", "wrong_key")
    for slot in candidates:
        params = parse_slot_params(slot)
        if kind == KIND_PASSPHRASE:
            kek = hash_secret_raw(
                secret=passphrase,
                salt=params["salt"],
                time_cost=params["t"],
                memory_cost=params["m_kib"],
                parallelism=params["p"],
                hash_len=32,
                type=Argon2Type.ID,
                version=ARGON2_VERSION,
            )
        else:
            kek = hkdf_sha256(params["salt"], raw_key, L_RAW_KEY)
        aad = (lp(L_KEYSLOT) + lp(h["vault_id"]) + le32(slot["id"]) + bytes([slot["kind"]])
               + lp(slot["params"]))
        vmk = unwrap(kek, aad, slot["wrapped_vmk"])
        if vmk is not None:
            info = {"id": slot["id"], "kind": slot["kind"], "salt_len": len(params["salt"])}
            for k in ("m_kib", "t", "p"):
                if k in params:
                    info[k] = params[k]
            return info, vmk
    raise Fail("keyslot: unwrap failed (wrong passphrase or key)", "wrong_key")


def open_namespace(h, k_wrap, ns_id, name):
    """Sections 3.5 and 4.7."""
    blob = h["namespaces"].get(ns_id)
    if blob is None:
        raise Fail("namespace: no entry with this namespace id", "not_found")
    aad = lp(L_NAMESPACE) + lp(h["vault_id"]) + lp(ns_id)
    plain = aead_open(k_wrap, blob[:24], aad, blob[24:])
    if plain is None:
        raise Fail("namespace entry: authentication failed")
    r = Reader(plain, "namespace entry: malformed")
    try:
        stored_name = r.take(r.u16()).decode("utf-8")
    except UnicodeDecodeError:
        raise Fail("namespace entry: name is not UTF-8")
    active = r.u32()
    key_count = r.u16()
    if not 1 <= key_count <= MAX_NS_KEYS:
        raise Fail("namespace entry: key count out of bounds")
    keys = {}
    for _ in range(key_count):
        kid = r.u32()
        if kid in keys:
            raise Fail("namespace entry: duplicate key ids")
        keys[kid] = r.take(32)
    r.u64()  # floor: the namespace's generation at the last checkpoint (section 3.5)
    if len(plain) % 64 != 0 or any(plain[r.pos:]):
        raise Fail("namespace entry: padding is malformed")
    if active not in keys:
        raise Fail("namespace entry: active key missing")
    if stored_name != name:
        raise Fail("namespace entry: holds another namespace's name")
    return active, keys


# ---------------------------------------------------------------- record (section 5, 8.2)

class Body(Reader):
    """bincode 2 (fixint, little-endian) as in section 5.4."""

    def __init__(self, data):
        super().__init__(data, "body: read past body_len")

    def str(self):
        n = self.u64()
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise Fail("body: string is not UTF-8")

    def bytes(self):
        return self.take(self.u64())

    def opt(self, read):
        tag = self.u8()
        if tag == 0:
            return None
        if tag == 1:
            return read()
        raise Fail("body: bad Option tag")

    def seq(self, read):
        n = self.u64()
        if n > self.remaining():  # every element takes at least one byte
            raise Fail(self.what)
        return [read() for _ in range(n)]


def decode_record(job, h, k_wrap, index_key):
    namespace = job["namespace"]
    ns = namespace.encode("utf-8")
    manifest = bool(job.get("manifest", False))
    stored = bytes.fromhex(job["record_hex"])

    ns_id = hmac_sha256(index_key, lp(L_NAMESPACE_ID) + lp(ns))
    active, keys = open_namespace(h, k_wrap, ns_id, namespace)
    if manifest:
        record_id = MANIFEST_ID
    else:
        record_id = hmac_sha256(index_key, lp(L_RECORD_ID) + lp(ns) + lp(job["key"].encode("utf-8")))

    if len(stored) < RECORD_MIN:
        raise Fail("record: truncated")
    if len(stored) > RECORD_MAX:
        raise Fail("record: oversized")
    if stored[0] > FORMAT_VERSION:
        raise Fail(f"record: unsupported format version {stored[0]}", "unsupported_version")
    if stored[0] != FORMAT_VERSION:
        raise Fail("record: unknown format version")
    record_type = stored[1]
    if record_type not in TYPES:
        raise Fail("record: unknown record type")
    key_id = struct.unpack("<I", stored[2:6])[0]
    generation = struct.unpack("<Q", stored[6:14])[0]
    if key_id not in keys:
        raise Fail("record: sealed under a key the namespace does not have")
    if (len(stored) - RECORD_HEADER_LEN - TAG_LEN) % PAD_BUCKET != 0:
        raise Fail("record: length is not a whole number of buckets")
    aad = (lp(L_RECORD) + bytes([FORMAT_VERSION]) + lp(h["vault_id"]) + lp(ns) + lp(record_id)
           + bytes([record_type]) + le32(key_id) + le64(generation))
    plain = aead_open(keys[key_id], stored[RECORD_PREFIX_LEN:RECORD_HEADER_LEN], aad,
                      stored[RECORD_HEADER_LEN:])
    if plain is None:
        raise Fail("record: authentication failed (AAD or ciphertext)")

    # framing (5.3)
    if len(plain) < 5:
        raise Fail("framing: truncated")
    if plain[0] != PAYLOAD_VERSION:
        raise Fail("framing: unknown payload version")
    body_len = struct.unpack("<I", plain[1:5])[0]
    if 5 + body_len > len(plain):
        raise Fail("framing: body length past the end")
    if any(plain[5 + body_len:]):
        raise Fail("framing: non-zero padding")
    body = Body(plain[5:5 + body_len])

    out = {
        "record_type": TYPES[record_type],
        "key_id": key_id,
        "generation": generation,
        "namespace_id": ns_id.hex(),
        "record_id": record_id.hex(),
        "active_key_id": active,
        "namespace_key_ids": sorted(keys),
        "padded_len": len(plain),
        "body_len": body_len,
    }
    if manifest:
        if record_type != 3:
            raise Fail("manifest: wrong record type")
        count, mgen = body.u64(), body.u64()
        if not body.at_end():
            raise Fail("body: not consumed exactly")
        if mgen != generation:
            raise Fail("manifest: generation differs from the prefix")
        out["record"] = {"count": count, "generation": mgen}
        return out
    if record_type == 1:
        key = body.str()
        rec = {
            "access_token": body.str(),
            "refresh_token": body.opt(body.str),
            "token_type": body.str(),
            "expires_at": body.opt(body.i64),
            "scopes": body.seq(body.str),
            "identity": body.opt(body.str),
            "resource_server": body.opt(body.str),
            "extra_json": body.opt(body.str),
        }
    elif record_type == 2:
        key = body.str()
        rec = {"value_hex": body.bytes().hex()}
    else:
        raise Fail("record: a manifest presented as a record")
    if not body.at_end():
        raise Fail("body: not consumed exactly")
    if key != job["key"]:
        raise Fail("body: holds another key's value")
    out["key"] = key
    out["record"] = rec
    return out


def run(job):
    header = bytes.fromhex(job["header_hex"])
    passphrase = raw_key = None
    if job.get("passphrase") is not None:
        passphrase = job["passphrase"].encode("utf-8")
        if not passphrase:
            raise Fail("job: empty passphrase", "key_source")
    elif job.get("raw_key_hex") is not None:
        raw_key = bytes.fromhex(job["raw_key_hex"])
        if len(raw_key) != 32:
            raise Fail("job: raw key must be 32 bytes", "key_source")
    else:
        raise Fail("job: neither passphrase nor raw_key_hex", "bad_job")

    h = parse_header(header)
    slot, vmk = unlock(h, passphrase, raw_key)
    k_mac = hkdf_sha256(h["vault_id"], vmk, L_HEADER_MAC)
    k_wrap = hkdf_sha256(h["vault_id"], vmk, L_WRAP)
    macd = HEADER_FIXED + h["body_len"]
    if not hmac.compare_digest(hmac_sha256(k_mac, header[:macd]), header[macd:macd + 32]):
        raise Fail("header: MAC mismatch")
    index_key = unwrap(k_wrap, lp(L_INDEX_KEY) + lp(h["vault_id"]), h["wrapped_index_key"])
    if index_key is None:
        raise Fail("header: index key does not unwrap")

    out = decode_record(job, h, k_wrap, index_key)
    out["slot"] = slot
    out["header"] = {
        "vault_id": h["vault_id"].hex(),
        "seqid": h["seqid"],
        "slot_count": len(h["slots"]),
        "namespace_count": len(h["namespaces"]),
    }
    return out


def main():
    try:
        job = json.load(sys.stdin)
        for field in ("header_hex", "namespace", "record_hex"):
            if not isinstance(job.get(field), str):
                raise ValueError(f"missing field {field}")
        if not job.get("manifest") and not isinstance(job.get("key"), str):
            raise ValueError("missing field key")
    except ValueError as e:
        print(json.dumps({"error": f"job: {e}", "class": "bad_job"}))
        return 2
    try:
        out = run(job)
    except Fail as e:
        print(json.dumps({"error": e.check, "class": e.cls}))
        return 1
    except ValueError as e:  # bad hex in the job
        print(json.dumps({"error": f"job: {e}", "class": "bad_job"}))
        return 2
    print(json.dumps(out, ensure_ascii=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
