#!/usr/bin/env python3
"""An independent decoder for tokenvault format versions 2 and 1, written from docs/format.md.

It does not share code with the Rust library: it follows the specification, so that
tests/engine/format_spec.rs checks the specification against what the library writes.
The header's `format_version` decides which format the job is read in.

Input (stdin): one JSON object
    {"header_hex": "...",
     "passphrase": "..."  or  "raw_key_hex": "..."  or  "recovery_key": "DDDDDD-..."
       or  "keyring": {"service": "...", "account": "...", "key_hex": "..."},
                                    # the last: the 32-byte slot key the OS keyring holds
                                    # under those names (section 4.2.2)
     "namespace": "...",
     "key": "...",                  # the record key (ignored when "manifest" is true)
     "record_hex": "...",
     "manifest": false}             # optional: decode the namespace manifest instead

Format 1 (section 11): the header lists the namespaces, and the fields above are all required.

Format 2 adds these fields (the storage of section 7: trees `e`, `r`, `m`):
     "entry_hex": "..." or null,    # the namespace entry: value in tree `e` under the
                                    # namespace id (null: storage holds none, "not_found")
     "entry_key_hex": "...",        # optional: the key the entry was found under in `e`
     "record_key_hex": "...",       # optional: the key the record (manifest) was found under
                                    # in `r` (`m`); a record stored elsewhere is refused
     "anchor_hex": "..." or null,   # optional: the anchor, tree `m` key 00 (null: absent)
     "marker_hex": "...",           # optional: the entry-key marker, tree `e` key 00
     "accept_rollback": false       # optional: report an anchor below the header's epoch
                                    # instead of refusing it
and in format 2 only `header_hex` and a key source are required: without "namespace" the job
checks the header (and the anchor and marker, if given); with "namespace" and "entry_hex" but
no "record_hex" it opens the namespace entry; with "record_hex" too it decodes the record (or
the manifest). The incarnation a record is bound to is read from the entry.

Output (stdout): one JSON object. On success: the record type, key id, generation, the
decoded record, and what was verified on the way (format 2: also the entry, the storage key
the record belongs under, the anchor). On any failed check:
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
FORMAT_V1 = 1
FORMAT_V2 = 2
FORMAT_VERSION = FORMAT_V2  # the newest version this decoder reads
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
MAX_NAME_LEN = 1024

KIND_PASSPHRASE = 1
KIND_RAW_KEY = 2
KIND_RECOVERY_KEY = 3
KIND_KEYRING = 4
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

# format 2 (sections 3.2, 3.5, 3.6, 4.7, 4.8, 7.1)
MAX_EWKS = 2
INCARNATION_LEN = 16
ENTRY_PREFIX_LEN = 1 + 4 + INCARNATION_LEN          # version, ewk_id, incarnation
ENTRY_SEALED_LEN = ENTRY_PREFIX_LEN + 24              # ... and the nonce
ENTRY_MIN = ENTRY_SEALED_LEN + 64 + TAG_LEN           # one 64-byte plaintext block
ENTRY_MAX = 64 * 1024                                 # the whole stored entry
ANCHOR_LEN = 1 + 8 + 32
MARKER_LEN = 1 + 4

L_KEYSLOT = b"tokenvault/v1/keyslot"
L_RAW_KEY = b"tokenvault/v1/keyslot/raw-key"
L_RECOVERY_KEY = b"tokenvault/v2/keyslot/recovery-key"
L_KEYRING = b"tokenvault/v2/keyslot/keyring"
L_HEADER_MAC = b"tokenvault/v1/header-mac"
L_WRAP = b"tokenvault/v1/wrap"
L_INDEX_KEY = b"tokenvault/v1/index-key"
L_NAMESPACE = b"tokenvault/v1/namespace"
L_NAMESPACE_ID = b"tokenvault/v1/namespace-id"
L_RECORD_ID = b"tokenvault/v1/record-id"
L_RECORD = b"tokenvault/v1/record"
L_ENTRY_KEY = b"tokenvault/v2/entry-key"
L_ENTRY = b"tokenvault/v2/entry"
L_RECORD_V2 = b"tokenvault/v2/record"
L_ANCHOR = b"tokenvault/v2/anchor"


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
    if version not in (FORMAT_V1, FORMAT_V2):
        raise Fail(f"header: unknown format version {version}")
    body_len = struct.unpack("<I", header[10:14])[0]
    if HEADER_FIXED + body_len + HEADER_TRAILER != len(header):
        raise Fail("header: length does not match body_len")
    if hashlib.sha256(header[:-32]).digest() != header[-32:]:
        raise Fail("header: checksum mismatch")

    r = Reader(header[HEADER_FIXED:HEADER_FIXED + body_len], "header: truncated inside a field")
    h = {"version": version, "body_len": body_len}
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
    if version == FORMAT_V1:
        parse_v1_namespaces(r, h)
    else:
        parse_v2_tail(r, h)
    if not r.at_end():
        raise Fail("header: trailing bytes in the body")
    return h


def parse_v1_namespaces(r, h):
    """Format 1: the namespace entries in the header (section 11.2)."""
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
    h["namespaces"] = entries


def parse_v2_tail(r, h):
    """Format 2: the epoch and the wrapped entry-wrapping keys (sections 3.2, 3.5)."""
    h["epoch"] = r.u64()
    h["active_ewk"] = r.u32()
    ewk_count = r.u8()
    if not 1 <= ewk_count <= MAX_EWKS:
        raise Fail("header: entry-wrapping key count out of bounds")
    ewks = {}
    for _ in range(ewk_count):
        ewk_id = r.u32()
        wrapped = r.take(WRAPPED_KEY_LEN)
        if ewks and ewk_id <= max(ewks):
            raise Fail("header: entry-wrapping key ids not strictly ascending")
        ewks[ewk_id] = wrapped
    if h["active_ewk"] not in ewks:
        raise Fail("header: the active entry-wrapping key is not in the header")
    h["wrapped_ewks"] = ewks


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
    elif slot["kind"] in (KIND_RAW_KEY, KIND_RECOVERY_KEY):
        out = {"salt": r.take(r.u8())}
    elif slot["kind"] == KIND_KEYRING:
        out = {"salt": r.take(r.u8())}
        for name in ("service", "account"):
            raw = r.take(r.u8())
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise Fail("keyslot parameters: keyring entry name is not UTF-8")
            if not text or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
                raise Fail("keyslot parameters: bad keyring entry name")
            out[name] = text
    else:
        raise Fail("keyslot parameters: unknown kind")
    if not MIN_SALT <= len(out["salt"]) <= MAX_SALT:
        raise Fail("keyslot parameters: salt length out of bounds")
    if not r.at_end():
        raise Fail("keyslot parameters: trailing bytes")
    return out


def parse_recovery_key(text):
    """Section 4.2.1: 48 digits in 8 groups of 6, each 11 times a little-endian 16-bit share."""
    digits = []
    for c in text:
        if c.isdigit() and c.isascii():
            digits.append(c)
        elif c not in "- \t\r\n":
            raise Fail("recovery key: a character that is not a digit", "typo")
    if len(digits) != 48:
        raise Fail("recovery key: not 48 digits", "typo")
    key = b""
    for g in range(8):
        value = int("".join(digits[6 * g:6 * g + 6]))
        if value % 11 != 0 or value // 11 >= 65536:
            raise Fail("recovery key: typo in group %d" % (g + 1), "typo")
        key += (value // 11).to_bytes(2, "little")
    return key


def unlock(h, passphrase, raw_key, recovery_key=None, keyring=None):
    """Section 8.1 steps 8-10: returns (slot info, VMK)."""
    if keyring is not None:
        kind = KIND_KEYRING
    elif recovery_key is not None:
        kind = KIND_RECOVERY_KEY
    else:
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
        elif kind == KIND_RECOVERY_KEY:
            kek = hkdf_sha256(params["salt"], recovery_key, L_RECOVERY_KEY)
        elif kind == KIND_KEYRING:
            # Section 4.2.2: the key held under this slot's own service and account.
            if (params["service"], params["account"]) != (keyring["service"], keyring["account"]):
                continue
            kek = hkdf_sha256(params["salt"], keyring["key"], L_KEYRING)
        else:
            kek = hkdf_sha256(params["salt"], raw_key, L_RAW_KEY)
        aad = (lp(L_KEYSLOT) + lp(h["vault_id"]) + le32(slot["id"]) + bytes([slot["kind"]])
               + lp(slot["params"]))
        vmk = unwrap(kek, aad, slot["wrapped_vmk"])
        if vmk is not None:
            info = {"id": slot["id"], "kind": slot["kind"], "salt_len": len(params["salt"])}
            for k in ("m_kib", "t", "p", "service", "account"):
                if k in params:
                    info[k] = params[k]
            return info, vmk
    raise Fail("keyslot: unwrap failed (wrong passphrase or key)", "wrong_key")


def open_namespace(h, k_wrap, ns_id, name):
    """Format 1: sections 11.2 and 11.3."""
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
    r.u64()  # floor: the namespace's generation at the last checkpoint (section 11.2)
    if len(plain) % 64 != 0 or any(plain[r.pos:]):
        raise Fail("namespace entry: padding is malformed")
    if active not in keys:
        raise Fail("namespace entry: active key missing")
    if stored_name != name:
        raise Fail("namespace entry: holds another namespace's name")
    return active, keys


# ---------------------------------------------------------------- record (section 5, 8.3)

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


def open_record(stored, version, keys, make_aad):
    """Section 8.3 steps 3-8 for a vault of format `version`: returns the record type, key
    id, generation and plaintext. `make_aad(record_type, key_id, generation)` is the record
    AAD of that format (5.2; 11.4 for format 1)."""
    if len(stored) < RECORD_MIN:
        raise Fail("record: truncated")
    if len(stored) > RECORD_MAX:
        raise Fail("record: oversized")
    if stored[0] > version:
        raise Fail(f"record: unsupported format version {stored[0]}", "unsupported_version")
    if stored[0] != version:
        if stored[0] == 0:
            raise Fail("record: unknown format version")
        raise Fail(f"record: format version {stored[0]} in a format {version} vault")
    record_type = stored[1]
    if record_type not in TYPES:
        raise Fail("record: unknown record type")
    key_id = struct.unpack("<I", stored[2:6])[0]
    generation = struct.unpack("<Q", stored[6:14])[0]
    if key_id not in keys:
        raise Fail("record: sealed under a key the namespace does not have")
    if (len(stored) - RECORD_HEADER_LEN - TAG_LEN) % PAD_BUCKET != 0:
        raise Fail("record: length is not a whole number of buckets")
    aad = make_aad(record_type, key_id, generation)
    plain = aead_open(keys[key_id], stored[RECORD_PREFIX_LEN:RECORD_HEADER_LEN], aad,
                      stored[RECORD_HEADER_LEN:])
    if plain is None:
        raise Fail("record: authentication failed (AAD or ciphertext)")
    return record_type, key_id, generation, plain


def decode_payload(plain, record_type, generation, manifest, job_key, out):
    """Sections 5.3-5.5 (8.3 steps 9-12): fills `out` with the decoded record."""
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
    out["padded_len"] = len(plain)
    out["body_len"] = body_len

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
    if key != job_key:
        raise Fail("body: holds another key's value")
    out["key"] = key
    out["record"] = rec
    return out


def record_id_of(index_key, ns, key):
    """Section 4.6."""
    return hmac_sha256(index_key, lp(L_RECORD_ID) + lp(ns) + lp(key.encode("utf-8")))


def decode_record(job, h, k_wrap, index_key):
    """Format 1 (section 11): the namespace entry is in the header (11.2, 11.3)."""
    namespace = job["namespace"]
    ns = namespace.encode("utf-8")
    manifest = bool(job.get("manifest", False))
    stored = bytes.fromhex(job["record_hex"])

    ns_id = hmac_sha256(index_key, lp(L_NAMESPACE_ID) + lp(ns))
    active, keys = open_namespace(h, k_wrap, ns_id, namespace)
    record_id = MANIFEST_ID if manifest else record_id_of(index_key, ns, job["key"])

    def make_aad(record_type, key_id, generation):
        return (lp(L_RECORD) + bytes([FORMAT_V1]) + lp(h["vault_id"]) + lp(ns) + lp(record_id)
                + bytes([record_type]) + le32(key_id) + le64(generation))

    record_type, key_id, generation, plain = open_record(stored, FORMAT_V1, keys, make_aad)
    out = {
        "record_type": TYPES[record_type],
        "key_id": key_id,
        "generation": generation,
        "namespace_id": ns_id.hex(),
        "record_id": record_id.hex(),
        "active_key_id": active,
        "namespace_key_ids": sorted(keys),
    }
    return decode_payload(plain, record_type, generation, manifest, job.get("key"), out)


# ---------------------------------------------------------------- format 2 (sections 3.5, 3.6, 4.7, 4.8, 7)

def unwrap_entry_keys(h, k_wrap):
    """Section 4.7 (8.1 step 13): unwraps every entry-wrapping key of the header and derives
    its K_entry. Returns {ewk_id: K_entry}."""
    k_entry = {}
    for ewk_id, wrapped in h["wrapped_ewks"].items():
        aad = lp(L_ENTRY_KEY) + lp(h["vault_id"]) + le32(ewk_id)
        ewk = unwrap(k_wrap, aad, wrapped)
        if ewk is None:
            raise Fail(f"header: entry-wrapping key {ewk_id} does not unwrap")
        k_entry[ewk_id] = hkdf_sha256(h["vault_id"], ewk, L_ENTRY)
    return k_entry


def check_marker(h, marker):
    """Section 7.1: the entry-key marker, tree `e` key 00."""
    if len(marker) != MARKER_LEN:
        raise Fail("entry-key marker: wrong length")
    if marker[0] > FORMAT_V2:
        raise Fail(f"entry-key marker: unsupported format version {marker[0]}",
                   "unsupported_version")
    if marker[0] != FORMAT_V2:
        raise Fail("entry-key marker: unknown format version")
    ewk_id = struct.unpack("<I", marker[1:5])[0]
    if ewk_id not in h["wrapped_ewks"]:
        raise Fail("entry-key marker: names an entry-wrapping key the header does not have")
    return {"ewk_id": ewk_id}


def check_anchor(h, index_key, anchor, accept_rollback):
    """Section 4.8 (8.1 step 14): the anchor, tree `m` key 00, and the rollback check.
    `anchor` is None when storage holds none."""
    if anchor is None:
        # No anchor reads as epoch 0: fine before the first checkpoint, a rollback after it.
        rolled_back = h["epoch"] > 0
        if rolled_back and not accept_rollback:
            raise Fail("anchor: missing, but the header's epoch is "
                       f"{h['epoch']} (storage rolled back past a checkpoint)")
        return {"present": False, "epoch": 0, "rolled_back": rolled_back}
    if len(anchor) != ANCHOR_LEN:
        raise Fail("anchor: wrong length")
    if anchor[0] > FORMAT_V2:
        raise Fail(f"anchor: unsupported format version {anchor[0]}", "unsupported_version")
    if anchor[0] != FORMAT_V2:
        raise Fail("anchor: unknown format version")
    epoch = struct.unpack("<Q", anchor[1:9])[0]
    k_anchor = hkdf_sha256(h["vault_id"], index_key, L_ANCHOR)
    mac = hmac_sha256(k_anchor, lp(L_ANCHOR) + lp(h["vault_id"]) + lp(le64(epoch)))
    if not hmac.compare_digest(mac, anchor[9:]):
        raise Fail("anchor: MAC mismatch")
    rolled_back = epoch < h["epoch"]
    if rolled_back and not accept_rollback:
        raise Fail(f"anchor: epoch {epoch} is below the header's epoch {h['epoch']} "
                   "(storage rolled back past a checkpoint)")
    return {"present": True, "epoch": epoch, "rolled_back": rolled_back}


def check_storage_key(found, parts, what):
    """Section 7.1: `found` (where the job says the bytes were stored) must be the
    concatenation of `parts`, a list of (name, bytes)."""
    expected = b"".join(part for _, part in parts)
    if found == expected:
        return
    if len(found) != len(expected):
        raise Fail(f"misplaced: {what} stored under a key of the wrong length")
    pos = 0
    for name, part in parts:
        if found[pos:pos + len(part)] != part:
            raise Fail(f"misplaced: {what} stored under another {name}")
        pos += len(part)


def open_entry(h, k_entry, index_key, ns_id, name, entry):
    """Sections 3.6, 4.7 and 8.2: the namespace entry stored in tree `e` under `ns_id`,
    looked up for the namespace `name`."""
    if entry is None:
        raise Fail("namespace: no entry with this namespace id", "not_found")
    if len(entry) < ENTRY_MIN:
        raise Fail("namespace entry: truncated")
    if len(entry) > ENTRY_MAX:
        raise Fail("namespace entry: oversized")
    if entry[0] > FORMAT_V2:
        raise Fail(f"namespace entry: unsupported format version {entry[0]}",
                   "unsupported_version")
    if entry[0] != FORMAT_V2:
        raise Fail("namespace entry: unknown format version")
    ewk_id = struct.unpack("<I", entry[1:5])[0]
    incarnation = entry[5:ENTRY_PREFIX_LEN]
    if ewk_id not in k_entry:
        raise Fail("namespace entry: sealed under an entry-wrapping key the header does not have")
    aad = (lp(L_ENTRY) + lp(h["vault_id"]) + lp(ns_id) + le32(ewk_id) + lp(incarnation))
    plain = aead_open(k_entry[ewk_id], entry[ENTRY_PREFIX_LEN:ENTRY_SEALED_LEN], aad,
                      entry[ENTRY_SEALED_LEN:])
    if plain is None:
        raise Fail("namespace entry: authentication failed")
    r = Reader(plain, "namespace entry: malformed")
    stored_name = r.take(r.u16())
    try:
        stored_name.decode("utf-8")
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
    if len(plain) % 64 != 0 or any(plain[r.pos:]):
        raise Fail("namespace entry: padding is malformed")
    if active not in keys:
        raise Fail("namespace entry: active key missing")
    if not 1 <= len(stored_name) <= MAX_NAME_LEN:
        raise Fail("namespace entry: name length out of bounds")
    # The name/ns_id binding (4.7): the entry's name must hash to the id it is stored under.
    if hmac_sha256(index_key, lp(L_NAMESPACE_ID) + lp(stored_name)) != ns_id:
        raise Fail("namespace entry: holds another namespace's name")
    if stored_name != name.encode("utf-8"):  # implied by the check above; kept explicit
        raise Fail("namespace entry: holds another namespace's name")
    return {
        "version": entry[0],
        "ewk_id": ewk_id,
        "incarnation": incarnation,
        "active": active,
        "keys": keys,
        "plaintext_len": len(plain),
    }


def decode_v2(job, h, k_wrap, index_key):
    """Format 2: header checks, then (as the job asks) the entry, the record or manifest."""
    out = {}
    k_entry = unwrap_entry_keys(h, k_wrap)
    if "marker_hex" in job:
        out["marker"] = check_marker(h, bytes.fromhex(job["marker_hex"]))
    if "anchor_hex" in job:
        anchor = job["anchor_hex"]
        anchor = None if anchor is None else bytes.fromhex(anchor)
        out["anchor"] = check_anchor(h, index_key, anchor, bool(job.get("accept_rollback")))
    namespace = job.get("namespace")
    if namespace is None:
        return out
    ns = namespace.encode("utf-8")
    ns_id = hmac_sha256(index_key, lp(L_NAMESPACE_ID) + lp(ns))
    out["namespace_id"] = ns_id.hex()
    if job.get("entry_key_hex") is not None:
        check_storage_key(bytes.fromhex(job["entry_key_hex"]), [("namespace id", ns_id)],
                          "namespace entry")
    entry_hex = job["entry_hex"]
    entry = open_entry(h, k_entry, index_key, ns_id, namespace,
                       None if entry_hex is None else bytes.fromhex(entry_hex))
    incarnation, keys = entry["incarnation"], entry["keys"]
    out["incarnation"] = incarnation.hex()
    out["active_key_id"] = entry["active"]
    out["namespace_key_ids"] = sorted(keys)
    out["entry"] = {
        "version": entry["version"],
        "ewk_id": entry["ewk_id"],
        "incarnation": incarnation.hex(),
        "plaintext_len": entry["plaintext_len"],
    }
    if job.get("record_hex") is None:
        return out

    manifest = bool(job.get("manifest", False))
    stored = bytes.fromhex(job["record_hex"])
    record_id = MANIFEST_ID if manifest else record_id_of(index_key, ns, job["key"])
    if manifest:
        tree, parts = "m", [("namespace id", ns_id), ("incarnation", incarnation)]
    else:
        tree, parts = "r", [("namespace id", ns_id), ("incarnation", incarnation),
                            ("record id", record_id)]
    if job.get("record_key_hex") is not None:
        check_storage_key(bytes.fromhex(job["record_key_hex"]), parts,
                          "manifest" if manifest else "record")

    def make_aad(record_type, key_id, generation):
        return (lp(L_RECORD_V2) + bytes([FORMAT_V2]) + lp(h["vault_id"]) + lp(ns)
                + lp(incarnation) + lp(record_id) + bytes([record_type]) + le32(key_id)
                + le64(generation))

    record_type, key_id, generation, plain = open_record(stored, FORMAT_V2, keys, make_aad)
    out.update({
        "record_type": TYPES[record_type],
        "key_id": key_id,
        "generation": generation,
        "record_id": record_id.hex(),
        "storage": {"tree": tree, "key": b"".join(p for _, p in parts).hex()},
    })
    return decode_payload(plain, record_type, generation, manifest, job.get("key"), out)


# ---------------------------------------------------------------- the job

def run(job):
    header = bytes.fromhex(job["header_hex"])
    passphrase = raw_key = recovery_key = keyring = None
    if job.get("keyring") is not None:
        keyring = dict(job["keyring"])
        keyring["key"] = bytes.fromhex(keyring.pop("key_hex"))
        if len(keyring["key"]) != 32:
            raise Fail("job: a keyring slot key must be 32 bytes", "key_source")
    elif job.get("recovery_key") is not None:
        recovery_key = parse_recovery_key(job["recovery_key"])
    elif job.get("passphrase") is not None:
        passphrase = job["passphrase"].encode("utf-8")
        if not passphrase:
            raise Fail("job: empty passphrase", "key_source")
    elif job.get("raw_key_hex") is not None:
        raw_key = bytes.fromhex(job["raw_key_hex"])
        if len(raw_key) != 32:
            raise Fail("job: raw key must be 32 bytes", "key_source")
    else:
        raise Fail("job: no passphrase, raw_key_hex, recovery_key or keyring", "bad_job")

    h = parse_header(header)
    slot, vmk = unlock(h, passphrase, raw_key, recovery_key, keyring)
    k_mac = hkdf_sha256(h["vault_id"], vmk, L_HEADER_MAC)
    k_wrap = hkdf_sha256(h["vault_id"], vmk, L_WRAP)
    macd = HEADER_FIXED + h["body_len"]
    if not hmac.compare_digest(hmac_sha256(k_mac, header[:macd]), header[macd:macd + 32]):
        raise Fail("header: MAC mismatch")
    index_key = unwrap(k_wrap, lp(L_INDEX_KEY) + lp(h["vault_id"]), h["wrapped_index_key"])
    if index_key is None:
        raise Fail("header: index key does not unwrap")

    if h["version"] == FORMAT_V1:
        out = decode_record(job, h, k_wrap, index_key)
        out["header"] = {
            "format_version": FORMAT_V1,
            "vault_id": h["vault_id"].hex(),
            "seqid": h["seqid"],
            "slot_count": len(h["slots"]),
            "namespace_count": len(h["namespaces"]),
        }
    else:
        out = decode_v2(job, h, k_wrap, index_key)
        out["header"] = {
            "format_version": FORMAT_V2,
            "vault_id": h["vault_id"].hex(),
            "seqid": h["seqid"],
            "slot_count": len(h["slots"]),
            "epoch": h["epoch"],
            "active_ewk": h["active_ewk"],
            "ewk_ids": sorted(h["wrapped_ewks"]),
        }
    out["slot"] = slot
    return out


def header_version(header_hex):
    """The job's format version, from the header's bytes 8..10 (None if unreadable: the
    header checks report that)."""
    try:
        prefix = bytes.fromhex(header_hex[:20])
    except ValueError:
        return None
    return struct.unpack("<H", prefix[8:10])[0] if len(prefix) == 10 else None


def check_job(job):
    """The fields a job needs (raises ValueError): format 1 as always; format 2 as the
    docstring says."""
    if not isinstance(job, dict):
        raise ValueError("not a JSON object")
    if not isinstance(job.get("header_hex"), str):
        raise ValueError("missing field header_hex")
    if header_version(job["header_hex"]) != FORMAT_V2:
        for field in ("namespace", "record_hex"):
            if not isinstance(job.get(field), str):
                raise ValueError(f"missing field {field}")
        if not job.get("manifest") and not isinstance(job.get("key"), str):
            raise ValueError("missing field key")
        return
    for field in ("namespace", "record_hex", "entry_key_hex", "record_key_hex", "anchor_hex"):
        if job.get(field) is not None and not isinstance(job[field], str):
            raise ValueError(f"field {field} is not a string")
    if "marker_hex" in job and not isinstance(job["marker_hex"], str):
        raise ValueError("field marker_hex is not a string")
    has_record = job.get("record_hex") is not None
    if (has_record or "entry_hex" in job) and job.get("namespace") is None:
        raise ValueError("missing field namespace")
    if job.get("namespace") is not None:
        if "entry_hex" not in job:
            raise ValueError("missing field entry_hex (format 2)")
        if job["entry_hex"] is not None and not isinstance(job["entry_hex"], str):
            raise ValueError("field entry_hex is not a string")
    if has_record and not job.get("manifest") and not isinstance(job.get("key"), str):
        raise ValueError("missing field key")


def main():
    try:
        job = json.load(sys.stdin)
        check_job(job)
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
