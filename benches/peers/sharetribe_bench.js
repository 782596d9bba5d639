#!/usr/bin/env node
// The peer workload through the Sharetribe integration SDK's `tokenStore.fileStore()`
// (plaintext on disk).
//
// How the store works (sharetribe-flex-integration-sdk 1.14.x, src/file_store.js): it holds ONE
// token, in a file whose path is fixed when the module loads:
// `envPaths('flex-integration-sdk').config + '/file-store-token.json'`, i.e.
// `$XDG_CONFIG_HOME/flex-integration-sdk-nodejs/file-store-token.json` on Linux (falling back to
// `$HOME/.config`). `fileStore()` takes no options, so there is no way to point it elsewhere
// except the environment: this script sets XDG_CONFIG_HOME and HOME to a fresh temp dir
// *before* requiring the SDK (env-paths reads both at load time), and checks that the token
// file appeared there, so a user's real token file is never touched. `setToken` is
// `fs.promises.writeFile(path, JSON.stringify(token), {mode: 0o600})` (truncate + write, no
// fsync); `getToken` is `readFile` + `JSON.parse`.
//
// The workload: 2,000 records over 10 namespaces, as for the other peers. Since every
// `fileStore()` in a process (indeed every process of the user) shares that one file, an
// application holding 2,000 (namespace, key) tokens through it can only rewrite the single
// file each time: that is what we measure. Phase 1: 2,000 `setToken` calls, each storing that
// record's token (the raw token response the SDK stores: 1 KiB access token, refresh token,
// scope, expires_in, token_type). Phase 2: 2,000 `getToken` calls, one per record, each
// reading and parsing the file, as the SDK does before every API call. (The store cannot give
// back record i's token once record i+1 is written; each get returns the last token, whose
// size is that of any record, so the work per call is the same.) Calls are awaited one at a
// time, as the SDK makes them. One file per record would need one module instance per
// record (a fresh `require` with a different environment), which no application does.
//
// Prints one JSON line with the numbers; never prints token values.
// Usage: sharetribe_bench.js [--records N] [--namespaces N]   (NODE_PATH or run from run.sh)

'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

const ACCESS_TOKEN_LEN = 1024;
const REFRESH_TOKEN_LEN = 64;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

// Deterministic pseudo-random (xorshift32), so every run stores the same bytes.
let state = 7;
function rand() {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return (state >>> 0) / 4294967296;
}
function randomString(len) {
  let s = '';
  for (let i = 0; i < len; i += 1) s += ALPHABET[Math.floor(rand() * ALPHABET.length)];
  return s;
}

function workload(records, namespaces) {
  const out = [];
  for (let i = 0; i < records; i += 1) {
    const ns = `tenant-${i % namespaces}`;
    const rs = `rs-${String(Math.floor(i / namespaces)).padStart(3, '0')}.api.example.org`;
    out.push({
      ns,
      rs,
      token: {
        access_token: randomString(ACCESS_TOKEN_LEN),
        token_type: 'bearer',
        expires_in: 86400,
        scope: `integ openid profile email urn:example:scope:${rs}:all`,
        refresh_token: randomString(REFRESH_TOKEN_LEN),
      },
    });
  }
  return out;
}

async function main() {
  const records = arg('--records', 2000);
  const namespaces = arg('--namespaces', 10);
  const work = workload(records, namespaces);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sharetribe-bench-'));
  process.env.XDG_CONFIG_HOME = path.join(tmp, 'config');
  process.env.HOME = tmp;
  const expectedFile = path.join(tmp, 'config', 'flex-integration-sdk-nodejs', 'file-store-token.json');
  // Required only now, so that the store's fixed path lands in the temp dir.
  // eslint-disable-next-line global-require
  const sdk = require('sharetribe-flex-integration-sdk');
  const sdkVersion = require('sharetribe-flex-integration-sdk/package.json').version;
  const store = sdk.tokenStore.fileStore();

  try {
    // The first call creates the config dir; do it (untimed) and check where the file went.
    await store.setToken(work[0].token);
    if (!fs.existsSync(expectedFile)) {
      throw new Error(`fileStore did not write under the temp dir (expected ${expectedFile})`);
    }
    await store.removeToken();

    let start = process.hrtime.bigint();
    for (const r of work) {
      // eslint-disable-next-line no-await-in-loop
      await store.setToken(r.token);
    }
    const setS = Number(process.hrtime.bigint() - start) / 1e9;

    let found = 0;
    start = process.hrtime.bigint();
    for (let i = 0; i < work.length; i += 1) {
      // eslint-disable-next-line no-await-in-loop
      const t = await store.getToken();
      if (t && typeof t.access_token === 'string' && t.access_token.length === ACCESS_TOKEN_LEN) found += 1;
    }
    const getS = Number(process.hrtime.bigint() - start) / 1e9;
    if (found !== work.length) throw new Error(`read back ${found} of ${work.length} tokens`);

    const fileBytes = fs.statSync(expectedFile).size;
    console.log(JSON.stringify({
      peer: 'sharetribe-flex-integration-sdk',
      node: process.version,
      sharetribe_sdk: sdkVersion,
      records,
      namespaces,
      results: {
        file_store: {
          store_s: Number(setS.toFixed(6)),
          get_s: Number(getS.toFixed(6)),
          stores_per_s: Number((records / setS).toFixed(1)),
          gets_per_s: Number((records / getS).toFixed(1)),
          file_bytes: fileBytes,
          fsync: false,
        },
      },
    }));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`sharetribe_bench: ${e.message}`);
  process.exit(1);
});
