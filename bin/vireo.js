#!/usr/bin/env node
// The `vireo` command. The TypeScript sources are compiled to dist/ by the
// set-up step (scripts/setup.sh); this shim only loads them.
'use strict';
const path = require('path');
const fs = require('fs');
const entry = path.join(__dirname, '..', 'dist', 'electron', 'cli', 'main.js');
if (!fs.existsSync(entry)) {
  console.error('vireo: not built yet. Run `npm start` or `bash scripts/setup.sh` once in ' + path.join(__dirname, '..'));
  process.exit(2);
}
require(entry).main(process.argv.slice(2)).then(
  (code) => process.exit(code ?? 0),
  (err) => {
    console.error('vireo: ' + (err && err.message ? err.message : String(err)));
    process.exit(1);
  },
);
