// Runs the suites and adds up their cases.
//   native: ctest over native/out/core (each test binary prints "N passed, N failed, N skipped")
//   sanitize: the native unit and device tests (not the KVM ones) again, built with clang and
//           ASan + UBSan in native/out/fuzz (any report fails the test; gcc in native/out/asan
//           when clang is missing)
//   fuzz:   each libFuzzer target in native/fuzz (the same native/out/fuzz build) for a few
//           seconds from its seeds and regression inputs (skipped when clang is missing)
//   unit:   vitest (electron/**, renderer/src/**)
//   e2e:    vitest with e2e/vitest.config.mts (real `vireo serve`, real engine, Chromium)
// `node scripts/run-tests.mjs native unit` runs a subset, one suite after another.
// The whole run (no names) puts sanitize + fuzz in a second run of this script in the
// background, at nice 19 and one job, from the KVM tests on: the KVM tests and most of the
// end-to-end tests keep one vCPU thread busy on one core, and the other core was mostly idle
// (a whole run used ~1.06 of the 2 cores on average). The unit tests (two workers) then come
// last, after it. Its output is printed at the end and its cases are added to the total.
// VIREO_TEST_SERIAL=1 runs everything one after another.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const want = process.argv.slice(2);
const total = { passed: 0, failed: 0, skipped: 0 };
const broken = [];
// Every failed case, named again at the very end, where a truncated CI log still shows it.
const failedTests = [];

function run(name, cmd, args, opts = {}) {
  if (want.length && !want.includes(name)) return null;
  console.log(`\n==== ${name}: ${cmd} ${args.join(' ')}`);
  const t0 = Date.now();
  const r = spawnSync(cmd, args, { cwd: root, stdio: opts.capture ? ['ignore', 'pipe', 'inherit'] : 'inherit', encoding: 'utf8', maxBuffer: 1 << 28, env: { ...process.env, ...opts.env } });
  if (opts.capture) process.stdout.write(r.stdout ?? '');
  console.log(`==== ${name}: exit ${r.status} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return r;
}

function ctest(name, dir, extra = [], env = {}) {
  const r = run(name, 'ctest', ['--test-dir', dir, '-V', '--timeout', '600', ...extra], { capture: true, env });
  if (!r) return;
  let seen = 0;
  for (const m of (r.stdout ?? '').matchAll(/^\d+: (\d+) passed, (\d+) failed, (\d+) skipped$/gm)) {
    total.passed += +m[1];
    total.failed += +m[2];
    total.skipped += +m[3];
    seen++;
  }
  // Each binary repeats its failures last (tests/check.h), "failed: case: why"; ctest -V prefixes
  // the line with the test's number, which its "N/M Test #N: name" line names.
  const names = new Map();
  for (const m of (r.stdout ?? '').matchAll(/^\s*\d+\/\d+ Test\s+#(\d+): (\S+)/gm)) names.set(m[1], m[2]);
  for (const m of (r.stdout ?? '').matchAll(/^(\d+): failed: (\S+): (.*)$/gm)) {
    failedTests.push(`${name}: ${names.get(m[1]) ?? `test ${m[1]}`} > ${m[2]}: ${m[3].slice(0, 300)}`);
  }
  if (r.status !== 0) broken.push(name);
  if (seen === 0) broken.push(`${name} (no results)`);
}

// ---- native ----
// The unit and device tests two at a time; the KVM tests one at a time (on a kvm_pvm host two
// firmware boots side by side slow each other several times over, and timing cases fail).
const KVM_RE = /^(kvm_|qemu_compare)/;
const JOBS = process.env.VIREO_TEST_JOBS || String(Math.max(1, os.cpus().length));
const has = (p) => spawnSync('sh', ['-c', `command -v ${p}`], { encoding: 'utf8' }).stdout.trim();
const launcher = has('ccache');
const ccache = launcher ? [`-DCMAKE_CXX_COMPILER_LAUNCHER=${launcher}`, `-DCMAKE_C_COMPILER_LAUNCHER=${launcher}`] : [];

// ---- the sanitizer build: one clang build (native/out/fuzz) serves both the sanitize suite
// and the libFuzzer smoke runs. With -DVIREO_FUZZ=ON, vireo_core and everything linked to it
// is built with ASan + UBSan (and libFuzzer's coverage hooks, which cost the tests little).
const SAN_DIR = 'native/out/fuzz';
const wantSan = !want.length || want.includes('sanitize');
const wantFuzz = !want.length || want.includes('fuzz');
const clang = has('clang++');
const fuzzCmake = fs.readFileSync(path.join(root, 'native/fuzz/extra.cmake'), 'utf8');
const FUZZ_TARGETS = fuzzCmake.match(/set\(VIREO_FUZZ_TARGETS([^)]*)\)/)[1].trim().split(/\s+/);

/** The sanitize + fuzz suites as a second run of this script, niced, one job; see the top. */
function startBackground() {
  const log = path.join(os.tmpdir(), `vireo-background-${process.pid}.log`);
  const fd = fs.openSync(log, 'w');
  const t0 = Date.now();
  console.log('\n==== sanitize + fuzz: started in the background (nice 19, one job); their output comes at the end');
  const child = spawn('nice', ['-n', '19', process.execPath, fileURLToPath(import.meta.url), 'sanitize', 'fuzz'],
    { cwd: root, stdio: ['ignore', fd, fd], env: { ...process.env, VIREO_TEST_JOBS: '1' } });
  fs.closeSync(fd);
  const done = new Promise((resolve) => child.on('exit', (code, signal) => resolve(signal ? 128 : code)));
  return async () => {
    const code = await done;
    const out = fs.readFileSync(log, 'utf8');
    fs.rmSync(log, { force: true });
    console.log(`\n==== sanitize + fuzz (ran in the background): exit ${code} after ${((Date.now() - t0) / 1000).toFixed(1)} s; their output:`);
    process.stdout.write(out);
    const sum = [...out.matchAll(/^(\d+) passed, (\d+) failed, (\d+) skipped$/gm)].pop();
    if (sum) {
      total.passed += +sum[1];
      total.failed += +sum[2];
      total.skipped += +sum[3];
    }
    for (const m of out.matchAll(/^FAILED (.*)$/gm)) failedTests.push(m[1]);
    const suites = out.match(/^suites that failed: (.*)$/m);
    if (suites) broken.push(...suites[1].split(', '));
    if (!sum) broken.push('sanitize + fuzz (no results)');
    else if (code !== 0 && !suites && !+sum[2]) broken.push(`sanitize + fuzz (exit ${code})`);
  };
}

const background = !want.length && process.env.VIREO_TEST_SERIAL !== '1';
ctest('native', 'native/out/core', ['-j', JOBS, '-E', KVM_RE.source]);
const waitBackground = background ? startBackground() : null;
ctest('native', 'native/out/core', ['-R', KVM_RE.source]);
let sanBuilt = false;
if (!waitBackground && clang && (wantSan || wantFuzz)) {
  const targets = [...(wantSan ? ['unit_tests'] : []), ...(wantFuzz ? ['fuzzers'] : [])];
  const steps = [
    fs.existsSync(path.join(root, SAN_DIR, 'CMakeCache.txt')) ? null
      : ['cmake', '-S', 'native', '-B', SAN_DIR, '-DCMAKE_BUILD_TYPE=RelWithDebInfo', '-DCMAKE_C_COMPILER=clang',
        '-DCMAKE_CXX_COMPILER=clang++', '-DVIREO_FUZZ=ON', ...ccache],
    ['cmake', '--build', SAN_DIR, '-j', JOBS, ...targets.flatMap((t) => ['--target', t])],
  ].filter(Boolean).map((a) => a.map((w) => `'${w}'`).join(' ')).join(' && ');
  console.log(`\n==== sanitizer build: ${steps}`);
  const t0 = Date.now();
  const r = spawnSync('sh', ['-c', steps], { cwd: root, stdio: 'inherit' });
  console.log(`==== sanitizer build: exit ${r.status} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  sanBuilt = r.status === 0;
}

// ---- the device and block tests again under ASan + UBSan (in the background run when there is one) ----
if (wantSan && !waitBackground) {
  let dir = SAN_DIR;
  let built = sanBuilt;
  if (!clang) {
    dir = 'native/out/asan';
    const flags = '-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer';
    const cfg = run('sanitize', 'cmake', [
      '-S', 'native', '-B', dir, '-DCMAKE_BUILD_TYPE=Debug', `-DCMAKE_CXX_FLAGS=${flags}`, `-DCMAKE_C_FLAGS=${flags}`,
      `-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined`, ...ccache,
    ], { capture: true });
    // Only what the run below needs (the unit_tests target: the unit and device tests and
    // vireo-img, which they run); not the KVM tests, test guests, benches and boot media.
    built = cfg.status === 0 && run('sanitize', 'cmake', ['--build', dir, '-j', JOBS, '--target', 'unit_tests']).status === 0;
  }
  if (!built) broken.push('sanitize (build)');
  // The KVM tests boot firmware for minutes; they run in the native suite above.
  else ctest('sanitize', dir, ['-j', JOBS, '-E', KVM_RE.source], { ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1', UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1' });
}

// ---- libFuzzer smoke runs (docs/fuzzing.md; scripts/fuzz.sh runs them for hours) ----
if (wantFuzz && !waitBackground) {
  const dir = SAN_DIR;
  const targets = FUZZ_TARGETS;
  if (!clang) {
    console.log(`\n==== fuzz: skipped (${targets.length} targets): clang is not installed (scripts/setup.sh installs clang and libclang-rt-NN-dev)`);
    total.skipped += targets.length;
  } else {
    const guests = path.join(root, 'native/out/core/guests');
    const kernels = fs.existsSync(guests) ? fs.readdirSync(guests).filter((f) => f.endsWith('.elf')).map((f) => path.join(guests, f)) : [];
    const corpus = sanBuilt ? run('fuzz', 'sh', ['native/fuzz/make-corpus.sh', `${dir}/corpus`, `${dir}/fuzz_seeds`, ...kernels]) : null;
    if (!corpus || corpus.status !== 0) {
      broken.push('fuzz (build)');
    } else {
      // Each target: its seeds and regression inputs, then fresh inputs for up to
      // 5 s or 20000 runs. Any crash, leak, timeout or sanitizer report fails it.
      for (const t of targets) {
        const work = fs.mkdtempSync(path.join(os.tmpdir(), `vireo-fuzz-${t}-`));
        const dirs = [work, `${dir}/corpus/${t}`];
        if (fs.existsSync(path.join(root, 'native/fuzz/regress', t))) dirs.push(`native/fuzz/regress/${t}`);
        const t0 = Date.now();
        const r = spawnSync(`${dir}/${t}`, ['-runs=20000', '-max_total_time=5', '-timeout=20', '-rss_limit_mb=2048', '-max_len=131072',
          `-artifact_prefix=${work}/`, ...dirs], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 26,
          env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1', UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1' } });
        const out = (r.stdout ?? '') + (r.stderr ?? '');
        const done = out.match(/Done (\d+) runs in/);
        const cov = [...out.matchAll(/cov: (\d+)/g)].pop();
        if (r.status === 0 && done) {
          console.log(`fuzz ${t}: passed, ${done[1]} runs in ${((Date.now() - t0) / 1000).toFixed(1)} s, cov ${cov ? cov[1] : '?'}`);
          total.passed++;
          fs.rmSync(work, { recursive: true, force: true });
        } else {
          console.log(out.split('\n').slice(-60).join('\n'));
          console.log(`fuzz ${t}: FAILED (exit ${r.status}); the input is in ${work}`);
          total.failed++;
          broken.push(`fuzz ${t}`);
        }
      }
    }
  }
}

function vitest(name, extra) {
  const out = path.join(os.tmpdir(), `vireo-${name}-${process.pid}.json`);
  const r = run(name, 'npx', ['--no-install', 'vitest', 'run', ...extra, '--reporter=default', '--reporter=json', `--outputFile=${out}`]);
  if (!r) return;
  try {
    const j = JSON.parse(fs.readFileSync(out, 'utf8'));
    total.passed += j.numPassedTests;
    total.failed += j.numFailedTests;
    total.skipped += j.numPendingTests + (j.numTodoTests ?? 0);
    // Name every failed test again at the end, where a truncated CI log still shows it.
    for (const f of j.testResults ?? []) {
      for (const a of f.assertionResults ?? []) {
        if (a.status !== 'failed') continue;
        const why = (a.failureMessages ?? []).join(' ').split('\n')[0].slice(0, 300);
        failedTests.push(`${name}: ${path.relative(root, f.name)} > ${a.fullName}: ${why}`);
      }
    }
    fs.rmSync(out, { force: true });
  } catch {
    broken.push(`${name} (no results)`);
  }
  if (r.status !== 0) broken.push(name);
}

const e2e = () => fs.existsSync(path.join(root, 'e2e/vitest.config.mts')) && vitest('e2e', ['--config', 'e2e/vitest.config.mts']);
if (waitBackground) {
  // The end-to-end tests leave the background most of a core; the unit tests (two workers)
  // would leave it none, so they come once it is done.
  e2e();
  await waitBackground();
  vitest('unit', []);
} else {
  vitest('unit', []);
  e2e();
}

console.log('');
for (const t of failedTests) console.log(`FAILED ${t}`);
if (broken.length) console.log(`suites that failed: ${broken.join(', ')}`);
console.log(`${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
process.exit(broken.length || total.failed ? 1 : 0);
