// Board profiles (firmware-profiles/, src/profiles/): every profile file passes its schema and
// contradicts neither itself nor the memory estimate; each board is recognised from a tree of the
// files its Linux shows (test/fixtures/boards/<id>); an unknown board falls back with a warning;
// --profile overrides; the profile is a config layer between the defaults and the file; and a
// model that does not fit the board's memory is refused with what would.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BUNDLED_MODEL } from '../src/bundled.js';
import { ConfigError, readConfig } from '../src/daemon/config.js';
import { synthesize } from '../src/gguf/synth.js';
import { native } from '../src/native.js';
import { KERNEL_PATHS, loadProfiles, parseProfile, PROFILES_DIR, ProfileError, type BoardProfile } from '../src/profiles/catalog.js';
import { formatCpuList, parseCpuList } from '../src/profiles/cpu-list.js';
import { chooseProfile } from '../src/profiles/detect.js';
import { BONSAI_MODELS, estimateMemory, largestBonsai, modelFits, readModelFacts, RUNTIME_BYTES } from '../src/profiles/memory.js';
import { runCli } from './helpers/cli.js';
import { fixture, HAVE_FIXTURES, REPO_ROOT } from './helpers/fixtures.js';
import { freePort } from './helpers/mosquitto.js';
import { serve } from './helpers/serve.js';

const BOARDS = path.join(REPO_ROOT, 'test', 'fixtures', 'boards');
const board = (id: string) => path.join(BOARDS, id);
const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-profiles-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const IDS = ['generic-aarch64', 'generic-x86_64', 'jetson-agx-orin', 'jetson-nano', 'jetson-orin-nano', 'rk3588', 'rpi-zero-2w', 'rpi3', 'rpi4', 'rpi5', 'rpi500'];
const MIB = 2 ** 20;

describe('kernel paths', () => {
  it('are one list for the profiles, the flags and the config, and the engine knows every name on it', async () => {
    const schema = JSON.parse(readFileSync(path.join(PROFILES_DIR, 'schema.json'), 'utf8')) as { $defs: { kernelPath: { enum: string[] } } };
    expect(schema.$defs.kernelPath.enum).toEqual([...KERNEL_PATHS]);
    expect([...KERNEL_PATHS]).toEqual(expect.arrayContaining(native.kernelPaths().supported));
    // a name the engine does not know is refused as unknown; one this CPU lacks, as unsupported
    for (const kernels of KERNEL_PATHS) {
      const loaded = await native.loadModel(BUNDLED_MODEL, { kernels }).then(
        (model) => (model.close(), 'loaded'),
        (err: Error) => err.message,
      );
      expect(loaded, kernels).toMatch(native.kernelPaths().supported.includes(kernels) ? /^loaded$/ : /not supported by this CPU/);
    }
    await expect(native.loadModel(BUNDLED_MODEL, { kernels: 'avx1024' })).rejects.toThrow(/unknown kernels/);
  });

  it('a kernel path that does not exist is refused by the flag and by the config, with the names that do', async () => {
    const flag = await runCli(['run', '--kernels', 'avx1024', '-p', 'Once', '-n', '1']);
    expect(flag.code).not.toBe(0);
    expect(flag.stderr).toContain(`Allowed choices are ${KERNEL_PATHS.join(', ')}`);
    const file = path.join(tmp, 'bad-kernels.json');
    writeFileSync(file, JSON.stringify({ model: { kernels: 'avx1024' } }));
    expect(() => readConfig({ file, env: {} })).toThrow(ConfigError);
    expect(() => readConfig({ file, env: {} })).toThrow(/model\.kernels/);
  });
});

describe('profile files', () => {
  it('every board has a profile that passes the schema and its own consistency checks', () => {
    expect(loadProfiles().map((p) => p.id)).toEqual(IDS);
  });

  const rpi4 = () => JSON.parse(readFileSync(path.join(PROFILES_DIR, 'rpi4.json'), 'utf8')) as BoardProfile & Record<string, unknown>;
  const refused = (profile: unknown, file = '/x/rpi4.json') => {
    try {
      parseProfile(JSON.stringify(profile), file);
    } catch (err) {
      expect(err).toBeInstanceOf(ProfileError);
      return (err as Error).message;
    }
    throw new Error('accepted');
  };

  it('refuses a broken profile, naming the file and the path of each fault', () => {
    const badType = rpi4();
    badType.variants[1]!.kv_type = 'q8' as 'f16';
    expect(refused(badType)).toMatch(/^\/x\/rpi4\.json: \/variants\/1\/kv_type: must be equal to one of the allowed values \(f32, f16\)$/);
    const extra = { ...rpi4(), threads: 4 };
    expect(refused(extra)).toMatch(/rpi4\.json: \/: must NOT have additional properties "threads"/);
    const missing = rpi4() as Record<string, unknown>;
    delete missing.thermal;
    expect(refused(missing)).toMatch(/rpi4\.json: \/: must have required property 'thermal'/);
    const hex = rpi4();
    hex.match!.cpu![0]!.part = 'd08';
    expect(refused(hex)).toMatch(/\/match\/cpu\/0\/part: must match pattern/);
  });

  it('refuses what the schema cannot see: thresholds out of order, variants out of order, a bad pattern, a wrong name', () => {
    const hot = rpi4();
    hot.thermal.pause_c = 70;
    expect(refused(hot)).toMatch(/rpi4\.json: \/thermal: resume_c < throttle_c < pause_c/);
    const order = rpi4();
    order.variants.reverse();
    expect(refused(order)).toMatch(/\/variants\/1\/ram_mb: variants go from the smallest RAM up/);
    const pattern = rpi4();
    pattern.match!.model![1] = '^Raspberry Pi (400';
    expect(refused(pattern)).toMatch(/\/match\/model\/1: Invalid regular expression/);
    expect(refused(rpi4(), '/x/rpi5.json')).toMatch(/\/id: "rpi4" must be the file name \("rpi5"\)/);
    const greedy = rpi4();
    greedy.variants[0]!.memory_budget_mb = 2000;
    expect(refused(greedy)).toMatch(/\/variants\/0\/memory_budget_mb: with prefix_cache_mb more than the RAM/);
  });

  it('refuses a catalog where an architecture has two fallbacks or none', () => {
    const dir = path.join(tmp, 'catalog');
    cpSync(PROFILES_DIR, dir, { recursive: true });
    const second = JSON.parse(readFileSync(path.join(dir, 'generic-aarch64.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(path.join(dir, 'generic-arm.json'), JSON.stringify({ ...second, id: 'generic-arm' }));
    expect(() => loadProfiles(dir)).toThrow(/aarch64 needs exactly one profile without "match" \(its fallback\), found generic-aarch64, generic-arm/);
  });

  it('recommends only what fits, and budgets what the service limits allow', () => {
    for (const p of loadProfiles()) {
      for (const v of p.variants) {
        const where = `${p.id} ${v.ram_mb} MB`;
        expect(v.service.memory_high_mb, where).toBeGreaterThanOrEqual(v.memory_budget_mb + v.prefix_cache_mb);
        const largest = largestBonsai(v);
        const names = BONSAI_MODELS.map((m) => m.name);
        if (v.recommended_model === null) continue;
        expect(largest, where).not.toBeNull();
        expect(names.indexOf(v.recommended_model), where).toBeLessThanOrEqual(names.indexOf(largest!));
      }
    }
    // The smallest boards hold no Bonsai model beside their system, and their profiles say so.
    const zero = loadProfiles().find((p) => p.id === 'rpi-zero-2w')!.variants[0]!;
    expect([largestBonsai(zero), zero.recommended_model]).toEqual([null, null]);
  });
});

interface Expected {
  variant: number;
  threads: number;
  cpus: number[];
  kernels: string;
  reason: RegExp;
  zone: string;
}

const EXPECTED: Record<string, Expected> = {
  'rpi-zero-2w': { variant: 512, threads: 4, cpus: [0, 1, 2, 3], kernels: 'neon', reason: /device-tree model "Raspberry Pi Zero 2 W Rev 1\.0"/, zone: 'cpu-thermal' },
  rpi3: { variant: 1024, threads: 4, cpus: [0, 1, 2, 3], kernels: 'neon', reason: /cpuinfo Model "Raspberry Pi 3 Model B Plus Rev 1\.3"/, zone: 'cpu-thermal' },
  rpi4: { variant: 4096, threads: 4, cpus: [0, 1, 2, 3], kernels: 'neon', reason: /device-tree model "Raspberry Pi 4 Model B Rev 1\.4".*MemTotal 3\.7 GiB: the 4 GB variant/, zone: 'cpu-thermal' },
  rpi5: { variant: 8192, threads: 4, cpus: [0, 1, 2, 3], kernels: 'dotprod', reason: /device-tree model "Raspberry Pi 5 Model B Rev 1\.0".*the 8 GB variant/, zone: 'cpu-thermal' },
  rpi500: { variant: 8192, threads: 4, cpus: [0, 1, 2, 3], kernels: 'dotprod', reason: /device-tree model "Raspberry Pi 500 Rev 1\.0"/, zone: 'cpu-thermal' },
  'jetson-nano': { variant: 4096, threads: 4, cpus: [0, 1, 2, 3], kernels: 'neon', reason: /device-tree model "NVIDIA Jetson Nano Developer Kit"/, zone: 'CPU-therm' },
  'jetson-orin-nano': { variant: 8192, threads: 6, cpus: [0, 1, 2, 3, 4, 5], kernels: 'dotprod', reason: /device-tree model "NVIDIA Jetson Orin Nano Developer Kit"/, zone: 'cpu-thermal' },
  'jetson-agx-orin': { variant: 65536, threads: 12, cpus: [...Array(12).keys()], kernels: 'dotprod', reason: /Jetson AGX Orin.*the 64 GB variant/, zone: 'cpu-thermal' },
  rk3588: { variant: 16384, threads: 4, cpus: [4, 5, 6, 7], kernels: 'dotprod', reason: /device-tree compatible "rockchip,rk3588" matches rk3588/, zone: 'bigcore0-thermal' },
  'generic-aarch64': { variant: 4096, threads: 4, cpus: [0, 1, 2, 3], kernels: 'dotprod', reason: /no board profile matches \(device-tree model "Hardkernel ODROID-C4", 4x Cortex-A55 \(0xd05\)\)/, zone: 'cpu-thermal' },
  'generic-x86_64': { variant: 16384, threads: 4, cpus: [0, 1, 2, 3], kernels: 'avx2', reason: /an x86_64 machine \(proc\/sys\/kernel\/arch\)/, zone: 'x86_pkg_temp' },
};

describe('detection from a board tree', () => {
  it('has a tree for every profile', () => {
    expect(readdirSync(BOARDS).sort()).toEqual(IDS);
  });

  for (const [id, want] of Object.entries(EXPECTED)) {
    it(`recognises ${id}: its RAM variant, threads on the right cores, kernel path, CPU thermal zone`, () => {
      const choice = chooseProfile({ sysroot: board(id) });
      expect(choice.profile.id).toBe(id);
      expect(choice.variant.ram_mb).toBe(want.variant);
      expect({ threads: choice.threads, cpus: choice.cpus, kernels: choice.kernelPath }).toEqual({ threads: want.threads, cpus: want.cpus, kernels: want.kernels });
      expect(choice.reason).toMatch(want.reason);
      expect(choice.cpuZone?.type).toBe(want.zone);
      expect(choice.cpuZone?.celsius).toBeGreaterThan(20);
      expect(choice.warnings).toEqual(id === 'generic-aarch64' ? [expect.stringMatching(/^no profile for this board .*generic-aarch64's generic limits apply; --profile ID names another$/)] : []);
    });
  }

  /** A copy of a board's tree with some files replaced. */
  const variantOf = (id: string, files: Record<string, string>) => {
    const dir = mkdtempSync(path.join(tmp, `${id}-`));
    cpSync(board(id), dir, { recursive: true });
    for (const [rel, text] of Object.entries(files)) writeFileSync(path.join(dir, rel), text);
    return dir;
  };
  const memTotal = (gib: number) => ({ 'proc/meminfo': `MemTotal:       ${Math.round(gib * 2 ** 20)} kB\nMemFree:          100000 kB\n` });

  it('takes the RAM variant Linux leaves room for, and says when a board fits none', () => {
    expect(chooseProfile({ sysroot: variantOf('rpi4', memTotal(1.8)) }).variant.ram_mb).toBe(2048);
    expect(chooseProfile({ sysroot: variantOf('rpi4', memTotal(7.6)) }).variant.ram_mb).toBe(8192);
    // A 4 GB Pi booted with mem=1400M: the 1 GB variant, and a warning.
    const limited = chooseProfile({ sysroot: variantOf('rpi4', memTotal(1.4)) });
    expect(limited.variant.ram_mb).toBe(1024);
    expect(limited.warnings).toEqual([expect.stringMatching(/MemTotal 1\.4 GiB fits no rpi4 variant \(is memory reserved elsewhere.*using 1 GB/)]);
    // A virtual machine of 24 GB is no 32 GB machine: the fallback takes the next size down, quietly.
    const vm = chooseProfile({ sysroot: variantOf('generic-x86_64', memTotal(23.5)) });
    expect([vm.variant.ram_mb, vm.warnings]).toEqual([16384, []]);
    const noMemory = chooseProfile({ sysroot: variantOf('rpi5', { 'proc/meminfo': 'MemFree: 12 kB\n' }) });
    expect(noMemory.variant.ram_mb).toBe(2048);
    expect(noMemory.warnings).toEqual(['MemTotal unreadable: assuming the smallest rpi5 variant (2 GB)']);
  });

  it('puts the threads on the fastest cores the cpuinfo names, wherever they are numbered', () => {
    // An RK3588 whose big cores come first: the threads follow them, and the profile's CPU list is corrected.
    const cpuinfo = readFileSync(path.join(board('rk3588'), 'proc/cpuinfo'), 'latin1').split('\n\n').filter((b) => b.trim());
    const swapped = [...cpuinfo.slice(4), ...cpuinfo.slice(0, 4)].map((block, i) => block.replace(/^processor\t: \d+/, `processor\t: ${i}`)).join('\n\n') + '\n';
    const choice = chooseProfile({ sysroot: variantOf('rk3588', { 'proc/cpuinfo': swapped }) });
    expect([choice.threads, choice.cpus]).toEqual([4, [0, 1, 2, 3]]);
    expect(choice.warnings).toEqual(['the fastest cores here are CPUs 0,1,2,3, not 4,5,6,7 as rk3588 has them']);
  });

  it('takes the x86 kernel path from the cpuinfo flags: avx512 needs F, BW, VL and VNNI, avx512vbmi VBMI too', () => {
    const cpuinfo = readFileSync(path.join(board('generic-x86_64'), 'proc/cpuinfo'), 'latin1');
    const withFlags = (extra: string) => chooseProfile({ sysroot: variantOf('generic-x86_64', { 'proc/cpuinfo': cpuinfo.replace(/^(flags\t: .*)$/gm, `$1 ${extra}`) }) }).kernelPath;
    // VBMI without VNNI (Cannon Lake), VNNI without VBMI (Cascade Lake), both (Ice Lake, Zen 4)
    expect(withFlags('avx512f avx512bw avx512vl avx512vbmi')).toBe('avx2');
    expect(withFlags('avx512f avx512bw avx512vl avx512_vnni')).toBe('avx512');
    expect(withFlags('avx512f avx512bw avx512vl avx512_vnni avx512vbmi avx512_vbmi2')).toBe('avx512vbmi');
  });

  it('falls back to its architecture when nothing of the board can be read, saying what is missing', () => {
    const empty = mkdtempSync(path.join(tmp, 'empty-'));
    mkdirSync(path.join(empty, 'proc/sys/kernel'), { recursive: true });
    writeFileSync(path.join(empty, 'proc/sys/kernel/arch'), 'x86_64\n');
    const choice = chooseProfile({ sysroot: empty });
    expect(choice.profile.match).toBeUndefined();
    expect(choice.warnings).toEqual([expect.stringMatching(/^MemTotal unreadable/), '/proc/cpuinfo unreadable: threads from the CPUs this process may use']);
  });

  it('takes a profile named by --profile, and says where the board contradicts it', () => {
    const named = chooseProfile({ sysroot: board('rpi4'), id: 'rpi5' });
    expect(named.profile.id).toBe('rpi5');
    expect(named.reason).toMatch(/^profile\.id is rpi5 \(set, not detected\); MemTotal 3\.7 GiB: the 4 GB variant$/);
    expect(named.warnings).toEqual([
      'the CPU is 4x Cortex-A72 (0xd08), not the 4x Cortex-A76 (0xd0b) of rpi5',
      'the cpuinfo features give the neon kernel path, not dotprod as rpi5 expects',
    ]);
    expect(chooseProfile({ sysroot: board('rpi4'), id: 'rpi4' }).warnings).toEqual([]);
    expect(chooseProfile({ sysroot: board('generic-x86_64'), id: 'rpi4' }).warnings[0]).toBe('this system runs x86_64 (proc/sys/kernel/arch); rpi4 is for aarch64');
    expect(() => chooseProfile({ sysroot: board('rpi4'), id: 'rpi9' })).toThrow(/unknown profile "rpi9": use one of generic-aarch64, .*rpi500/);
  });
});

describe('the profile as a config layer', () => {
  it('wins over the defaults and loses to the file, the environment and the flags', () => {
    const sysroot = board('rpi-zero-2w');
    const base = readConfig({ flags: { 'profile.sysroot': sysroot } });
    expect(base.config.model).toMatchObject({ threads: 4, cpus: '0-3', mlock: false, contextSize: 512, kvType: 'f16', kernels: 'neon' });
    expect(base.config.thermal).toEqual({ throttleC: 75, pauseC: 82, resumeC: 68, minThreads: 1, intervalSec: 5 });
    expect(base.config.cache.memoryMb).toBe(16);
    expect(base.config.sampling.maxTokens).toBe(256);
    expect(base.profile.profile.id).toBe('rpi-zero-2w');
    expect(base.profile.applied.sort()).toEqual(['cache.memoryMb', 'model.contextSize', 'model.cpus', 'model.kernels', 'model.kvType', 'model.mlock', 'model.threads', 'thermal.intervalSec', 'thermal.minThreads', 'thermal.pauseC', 'thermal.resumeC', 'thermal.throttleC']);

    const file = path.join(tmp, 'layers.json');
    writeFileSync(file, JSON.stringify({ version: 2, model: { contextSize: 1024, threads: 3 }, thermal: { throttleC: 70 } }));
    const layered = readConfig({ file, env: { BONSAI_MODEL_KV_TYPE: 'f32', BONSAI_MODEL_THREADS: '2' }, flags: { 'profile.sysroot': sysroot, 'model.threads': 1 } });
    expect(layered.config.model).toMatchObject({ contextSize: 1024, kvType: 'f32', threads: 1, kernels: 'neon' });
    expect(layered.config.thermal).toMatchObject({ throttleC: 70, pauseC: 82, resumeC: 68 });
    expect(layered.profile.applied).not.toContain('model.contextSize');
    expect(layered.profile.applied).toContain('model.kernels');

    // profile.id and profile.sysroot come from the layers above the profile, the environment included.
    const env = readConfig({ env: { BONSAI_PROFILE_ID: 'rpi5', BONSAI_PROFILE_SYSROOT: board('rpi5') } });
    expect(env.profile.profile.id).toBe('rpi5');
    expect(env.config.profile).toEqual({ id: 'rpi5', sysroot: board('rpi5') });
    expect(env.config.model).toMatchObject({ contextSize: 8192, kvType: 'f32', kernels: 'dotprod' });
  });

  it("holds the threads to the cores a board's profile names and locks the weights where its variant says so; a generic profile does neither", () => {
    // RK3588: the big cores, whichever CPU numbers the cpuinfo gives them; 16 GB variant: mlock.
    expect(readConfig({ flags: { 'profile.sysroot': board('rk3588') } }).config.model).toMatchObject({ cpus: '4-7', mlock: true });
    const generic = readConfig({ flags: { 'profile.sysroot': board('generic-x86_64') } });
    expect(generic.config.model).toMatchObject({ mlock: false });
    expect(generic.config.model.cpus).toBeUndefined();
    expect(generic.profile.applied).not.toContain('model.cpus');
    // The user's word wins, and a list that is not one is refused with its key.
    const own = readConfig({ env: { BONSAI_MODEL_CPUS: '0,2', BONSAI_MODEL_MLOCK: 'false' }, flags: { 'profile.sysroot': board('rk3588') } });
    expect(own.config.model).toMatchObject({ cpus: '0,2', mlock: false });
    expect(() => readConfig({ env: { BONSAI_MODEL_CPUS: '7-4' } })).toThrow(/model\.cpus: must be a CPU list such as 4-7 or 0,2,5 \(given: "7-4"\)/);
  });

  it('reads and writes CPU lists as CPUAffinity= does', () => {
    expect(formatCpuList([7, 4, 5, 6])).toBe('4-7');
    expect(formatCpuList([0, 2, 5, 6])).toBe('0,2,5-6');
    expect(parseCpuList('0,2,5-6')).toEqual([0, 2, 5, 6]);
    expect(parseCpuList(' 4-7 ')).toEqual([4, 5, 6, 7]);
    for (const bad of ['', '4-', 'a', '7-4', '1,,2', '4096']) expect(parseCpuList(bad), bad).toBeUndefined();
  });

  it('refuses an unknown profile and thermal limits out of order, naming the keys', () => {
    expect(() => readConfig({ flags: { 'profile.id': 'pi6' } })).toThrow(ConfigError);
    expect(() => readConfig({ flags: { 'profile.id': 'pi6' } })).toThrow(/profile\.id: unknown profile "pi6"/);
    expect(() => readConfig({ flags: { 'profile.sysroot': '' } })).toThrow(/profile\.sysroot/);
    expect(() => readConfig({ flags: { 'profile.sysroot': board('rpi4'), 'thermal.pauseC': 75 } })).toThrow(/thermal\.resumeC < thermal\.throttleC < thermal\.pauseC is required \(given: 72, 78, 75\)/);
  });
});

describe('the memory estimate', () => {
  const rpi = (id: string, ramMb: number) => {
    const profile = loadProfiles().find((p) => p.id === id)!;
    return { profile, variant: profile.variants.find((v) => v.ram_mb === ramMb)! };
  };

  it.skipIf(!HAVE_FIXTURES)('counts the tensors of the file and the KV cache the engine allocates', async () => {
    for (const [file, kvType] of [
      [fixture('qwen3-tiny/models/tiny-qwen3-q1_0.gguf'), 'f32'],
      [fixture('stories260K/stories260K.gguf'), 'f16'],
    ] as const) {
      const facts = readModelFacts(file);
      const model = await native.loadModel(file, {});
      const context = model.createContext({ nCtx: 256, kvType, threads: 1 });
      const estimate = estimateMemory(facts, 256, kvType);
      expect(estimate.kvBytes, file).toBe(context.kvBytes(256));
      const info = native.ggufRead(file);
      expect(estimate.weightsBytes).toBe(info.tensors.reduce((s, t) => s + t.bytes, 0));
      expect(estimate.weightsBytes).toBeLessThanOrEqual(info.fileSize - info.dataOffset);
      expect(estimate.totalBytes).toBe(estimate.weightsBytes + estimate.kvBytes + RUNTIME_BYTES);
      context.close();
      model.close();
      const fit = modelFits(rpi('rpi4', 1024).profile, rpi('rpi4', 1024).variant, file, undefined, kvType);
      expect(fit).toMatchObject({ fits: true, contextSize: Math.min(facts.trainedContext, 4096) });
    }
  });

  it.skipIf(!HAVE_FIXTURES)('reads a Bonsai shape from its metadata, and refuses Bonsai-8B on a 2 GB Pi 4 with what would fit', async () => {
    // One layer of Bonsai-8B's shape with a small vocabulary: its metadata and tensors at real width.
    const file = path.join(tmp, 'bonsai-8b-1layer.gguf');
    await synthesize(file, { shape: '8b', layers: 1, vocabFrom: fixture('stories260K/stories260K.gguf') });
    const oneLayer = readModelFacts(file);
    expect(oneLayer).toMatchObject({ layers: 1, kvHeads: 8, headDim: 128, trainedContext: 32768 });
    const model = await native.loadModel(file, {});
    const context = model.createContext({ nCtx: 64, kvType: 'f32', threads: 1 });
    expect(estimateMemory(oneLayer, 64, 'f32').kvBytes).toBe(context.kvBytes(64));
    context.close();
    model.close();

    // The real file: 36 such layers and 1.15 GB of tensors.
    const bonsai8b = { ...oneLayer, name: 'Bonsai-8B', layers: 36, weightsBytes: 1.15e9 };
    const small = rpi('rpi4', 2048);
    const refused = modelFits(small.profile, small.variant, bonsai8b, 4096, 'f32');
    expect(refused.fits).toBe(false);
    // 36 layers x 4096 positions x K and V x 8 heads x 128 x 4 bytes = 1152 MiB of KV cache.
    expect(refused.needBytes).toBe(1.15e9 + 1152 * MIB + RUNTIME_BYTES);
    expect(refused.budgetBytes).toBe(1472 * MIB);
    expect(refused.message).toBe(
      'Bonsai-8B needs ~2.3 GiB with a 4096-token f32 KV cache (1.1 GiB weights, 1.1 GiB KV cache, 144 MiB runtime); ' +
        'the rpi4 profile (2 GB) allows 1.4 GiB: use Bonsai-1.7B, or a context of at most 1536 tokens with an f16 KV cache',
    );
    const f16 = modelFits(small.profile, small.variant, bonsai8b, 1536, 'f16');
    expect(f16.fits).toBe(true);
    expect(modelFits(small.profile, small.variant, bonsai8b, 1792, 'f16').fits).toBe(false);
    const big = rpi('rpi5', 8192);
    expect(modelFits(big.profile, big.variant, bonsai8b, 8192, 'f32').fits).toBe(true);
    const zero = rpi('rpi-zero-2w', 512);
    expect(modelFits(zero.profile, zero.variant, bonsai8b, 512, 'f16').message).toMatch(/allows 288 MiB: nothing smaller fits this board$/);
  });
});

describe.skipIf(!HAVE_FIXTURES)('bonsai profile and bonsai serve on a board', () => {
  it('prints the effective profile as JSON with the fields the installer reads', async () => {
    const r = await runCli(['profile', '--json', '--sysroot', board('rk3588')]);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      id: 'rk3588',
      variant: '16 GB',
      ram_mb: 15715,
      cores: 8,
      kernel_path: 'dotprod',
      threads: 4,
      cpus: [4, 5, 6, 7],
      max_model: 'Bonsai-8B',
      context_size: 8192,
      kv_type: 'f32',
      mlock: true,
      thermal: { throttle_c: 80, pause_c: 88, resume_c: 74, min_threads: 1, interval_sec: 5, zone: 'bigcore0-thermal', celsius: 42.5 },
      page_size: null,
      service: { memory_high_mb: 14384, memory_max_mb: 15408, cpu_quota_percent: 400, cpu_affinity: '4-7', nice: 5 },
      recommended_model: 'Bonsai-8B',
      warnings: [],
    });
    expect(report.reason).toMatch(/rockchip,rk3588/);
    // The Pi 5's 16 KiB pages are read from its tree.
    const pi5 = JSON.parse((await runCli(['profile', '--json', '--sysroot', board('rpi5')])).stdout) as Record<string, unknown>;
    expect([pi5.page_size, pi5.warnings]).toEqual([16384, []]);
  });

  it('says why in words, takes --profile, and refuses an unknown one', async () => {
    const text = await runCli(['profile', '--sysroot', board('generic-aarch64')]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^profile {3}generic-aarch64: Another 64-bit ARM machine, 4 GB$/m);
    expect(text.stdout).toMatch(/^cpu {7}4 CPUs \(4x Cortex-A55 \(0xd05\)\); 4 threads on CPUs 0-3; kernel path dotprod$/m);
    expect(text.stdout).toMatch(/^warning {3}no profile for this board/m);
    // A generic profile holds the threads nowhere; a board's names its cores.
    expect(text.stdout).toMatch(/^service {3}MemoryHigh=\d+M MemoryMax=\d+M Nice=\d+$/m);
    expect((await runCli(['profile', '--sysroot', board('rk3588')])).stdout).toMatch(/^service {3}MemoryHigh=14384M MemoryMax=15408M CPUQuota=400% CPUAffinity=4-7 Nice=5$/m);
    const named = JSON.parse((await runCli(['profile', '--json', '--sysroot', board('rpi4'), '--profile', 'rpi5'])).stdout) as Record<string, unknown>;
    expect(named).toMatchObject({ id: 'rpi5', variant: '4 GB', kernel_path: 'dotprod' });
    expect(named.warnings).toHaveLength(2);
    const unknown = await runCli(['profile', '--profile', 'rpi9']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/profile\.id: unknown profile "rpi9": use one of/);
  });

  it('serve logs the profile and caps its context at what the model was trained for', async () => {
    const s = serve(['--sysroot', board('rpi4'), '--embedded-port', String(await freePort())]);
    const line = await s.waitLog('board profile rpi4');
    // rpi4's 4 GB variant says 4096 tokens; stories260K was trained for 2048.
    expect(line).toMatchObject({ profile: 'rpi4', variant: '4 GB', threads: 4, cpus: '0-3', mlock: true, context_size: 2048, kv_type: 'f32', kernels: 'detected' });
    await s.waitLog('online', 30_000);
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });

  it('serve refuses a model that does not fit the board, naming what would', async () => {
    const file = path.join(tmp, 'bonsai-8b-serve.gguf');
    await synthesize(file, { shape: '8b', layers: 1, vocabFrom: fixture('stories260K/stories260K.gguf') });
    const s = serve(['--sysroot', board('rpi-zero-2w'), '--embedded-port', String(await freePort())], { BONSAI_MODEL_CONTEXT_SIZE: '32768', BONSAI_MODEL_KV_TYPE: 'f32' }, file);
    expect(await s.exited).toBe(1);
    expect(s.stderr()).toMatch(/needs ~\d+ MiB with a 32768-token f32 KV cache .* the rpi-zero-2w profile \(512 MB\) allows 288 MiB: a context of at most \d+ tokens with an f16 KV cache \(model\.contextSize, model\.kvType: BONSAI_MODEL_CONTEXT_SIZE, BONSAI_MODEL_KV_TYPE\), or --profile ID/);
  });
});
