// `bonsai serve`: load the model once, keep it resident, answer over MQTT until SIGTERM/SIGINT.
// This module only reads the flags; the daemon's lifecycle is daemon/controller.ts.
import type { Command } from 'commander';
import { describeConfig, readConfig, type DaemonConfig } from '../daemon/config.js';
import { fitToBoard } from '../daemon/board.js';
import { Controller } from '../daemon/controller.js';
import { removeDiscoveryEntries } from '../daemon/extensions/homeassistant.js';
import { createLogger } from '../daemon/logger.js';
import { ramLabel } from '../profiles/catalog.js';
import { intOption } from './options.js';

interface ServeFlags {
  config?: string;
  model?: string;
  broker?: string;
  embeddedPort?: number;
  node?: string;
  baseTopic?: string;
  profile?: string;
  sysroot?: string;
  removeDiscovery?: boolean;
  printConfig?: boolean;
}

export function register(program: Command): void {
  program
    .command('serve')
    .description('answer prompts over MQTT (starts an embedded broker on 127.0.0.1 when no broker is configured)')
    .option('-c, --config <file>', 'JSON config file (see --print-config for every key)')
    .option('--model <file>', 'GGUF model (model.path)')
    .option('--broker <url>', 'broker URL, e.g. mqtt://host:1883 or mqtts://host:8883 (mqtt.url)')
    .option('--embedded-port <n>', 'port of the embedded broker (embedded.port)', intOption('embedded-port', 0, 65535))
    .option('--node <name>', 'node id in topics (topics.node, default: host name)')
    .option('--base-topic <topic>', 'base topic (topics.base, default: bonsai)')
    .option('--profile <id>', 'board profile, e.g. rpi5 (profile.id; default: detected, see `bonsai profile`)')
    .option('--sysroot <dir>', 'detect the board from the /proc and /sys under this directory (profile.sysroot)')
    .option('--remove-discovery', 'remove this node from Home Assistant discovery and exit')
    .option('--print-config', 'list every config key with its environment variable and default, and exit')
    .action(async (flags: ServeFlags) => {
      if (flags.printConfig) return printConfig();
      const { config, warnings, profile } = readConfig({
        file: flags.config,
        env: process.env,
        flags: {
          'model.path': flags.model,
          'mqtt.url': flags.broker,
          'embedded.port': flags.embeddedPort,
          'topics.node': flags.node,
          'topics.base': flags.baseTopic,
          'profile.id': flags.profile,
          'profile.sysroot': flags.sysroot,
        },
      });
      if (flags.removeDiscovery) return removeDiscovery(config);
      const fitted = fitToBoard(config, profile);
      if (fitted.fit && !fitted.fit.fits) {
        throw new Error(`${fitted.fit.message} (model.contextSize, model.kvType: BONSAI_MODEL_CONTEXT_SIZE, BONSAI_MODEL_KV_TYPE), or --profile ID if this is not a ${profile.profile.name}`);
      }
      const logger = createLogger(fitted.config.log.level, fitted.config.topics.node);
      const { model } = fitted.config;
      logger.info(
        {
          profile: profile.profile.id,
          variant: ramLabel(profile.variant.ram_mb),
          threads: model.threads,
          cpus: model.cpus ?? 'any',
          mlock: model.mlock,
          context_size: model.contextSize,
          kv_type: model.kvType,
          kernels: model.kernels ?? 'detected',
          reason: profile.reason,
        },
        `board profile ${profile.profile.id}`,
      );
      process.exit(await Controller.run({ config: fitted.config, warnings: [...warnings, ...profile.warnings, ...fitted.warnings], logger }));
    });
}

function printConfig(): void {
  for (const k of describeConfig()) {
    console.log(`${k.key.padEnd(28)} ${k.env.padEnd(36)} ${(k.default || '-').padEnd(16)} ${k.description}`);
  }
}

async function removeDiscovery(config: DaemonConfig): Promise<void> {
  const removed = await removeDiscoveryEntries(config);
  console.log(`removed ${removed} Home Assistant discovery entries for node ${config.topics.node}`);
}
