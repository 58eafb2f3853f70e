// `bonsai profile`: the board profile `bonsai serve` would run with, and why it was chosen. The
// profile is resolved as the daemon resolves it (config file, BONSAI_PROFILE_*, flags), so what
// this prints is what the daemon and the systemd unit get.
import type { Command } from 'commander';
import { readConfig } from '../daemon/config.js';
import { formatCpuList } from '../profiles/cpu-list.js';
import { profileReport, type ProfileReport } from '../profiles/report.js';

interface ProfileFlags {
  config?: string;
  profile?: string;
  sysroot?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('profile')
    .description('show the board profile (threads, kernel path, memory budget, thermal limits, service limits) and why it was chosen')
    .option('-c, --config <file>', 'JSON config file, as `bonsai serve` reads it')
    .option('--profile <id>', 'this profile instead of the detected one (profile.id)')
    .option('--sysroot <dir>', 'detect the board from the /proc and /sys under this directory (profile.sysroot)')
    .option('--json', 'one JSON object')
    .action((flags: ProfileFlags) => {
      const { profile } = readConfig({ file: flags.config, env: process.env, flags: { 'profile.id': flags.profile, 'profile.sysroot': flags.sysroot } });
      const report = profileReport(profile);
      console.log(flags.json ? JSON.stringify(report) : describe(report));
    });
}

function describe(r: ProfileReport): string {
  const mb = (n: number) => (n >= 1024 ? `${(n / 1024).toFixed(1)} GiB` : `${n} MiB`);
  const s = r.service;
  const lines = [
    `profile   ${r.id}: ${r.name}, ${r.variant}`,
    `why       ${r.reason}`,
    `cpu       ${r.cores} CPUs${r.core_kinds ? ` (${r.core_kinds})` : ''}; ${r.threads} threads on CPUs ${formatCpuList(r.cpus)}; kernel path ${r.kernel_path}`,
    `memory    ${r.ram_mb === null ? 'RAM unknown' : `${mb(r.ram_mb)} RAM`}; budget ${mb(r.memory_budget_mb)} + ${r.prefix_cache_mb} MiB prompt cache; ${r.context_size}-token ${r.kv_type} KV cache${r.mlock ? '; locked in memory' : ''}`,
    `models    ${r.max_model ? `up to ${r.max_model}` : 'no Bonsai model fits'}; recommended ${r.recommended_model ?? 'none'}`,
    `thermal   fewer threads at ${r.thermal.throttle_c} °C, paused at ${r.thermal.pause_c} °C, full speed below ${r.thermal.resume_c} °C` +
      (r.thermal.zone ? ` (${r.thermal.zone}: ${r.thermal.celsius} °C now)` : ''),
    `pages     ${r.page_size === null ? 'unknown' : `${r.page_size / 1024} KiB`}`,
    `service   MemoryHigh=${s.memory_high_mb}M MemoryMax=${s.memory_max_mb}M${s.cpu_quota_percent === null ? '' : ` CPUQuota=${s.cpu_quota_percent}%`}${s.cpu_affinity === null ? '' : ` CPUAffinity=${s.cpu_affinity}`} Nice=${s.nice}`,
    ...r.warnings.map((w) => `warning   ${w}`),
  ];
  return lines.join('\n');
}
