// `bonsai serve`: load the model once, keep it resident, answer over MQTT until SIGTERM/SIGINT.
import type { Command } from 'commander';
import { startEmbeddedBroker, type EmbeddedBroker } from '../daemon/broker.js';
import { describeConfig, loadConfig, type DaemonConfig } from '../daemon/config.js';
import { connectMqtt, connectOptionsFrom } from '../daemon/connect.js';
import { discoveryRemovals } from '../daemon/discovery.js';
import { createLogger } from '../daemon/logger.js';
import { Daemon, publishRetained } from '../daemon/server.js';
import { topicsFor } from '../daemon/topics.js';
import { packageVersion } from '../daemon/version.js';

interface ServeFlags {
  config?: string;
  model?: string;
  broker?: string;
  embeddedPort?: number;
  node?: string;
  baseTopic?: string;
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
    .option('--embedded-port <n>', 'port of the embedded broker (embedded.port)', parsePort)
    .option('--node <name>', 'node id in topics (topics.node, default: host name)')
    .option('--base-topic <topic>', 'base topic (topics.base, default: bonsai)')
    .option('--remove-discovery', 'remove this node from Home Assistant discovery and exit')
    .option('--print-config', 'list every config key with its environment variable and default, and exit')
    .action(async (flags: ServeFlags) => {
      if (flags.printConfig) return printConfig();
      const config = loadConfig({
        file: flags.config,
        env: process.env,
        flags: {
          'model.path': flags.model,
          'mqtt.url': flags.broker,
          'embedded.port': flags.embeddedPort,
          'topics.node': flags.node,
          'topics.base': flags.baseTopic,
        },
      });
      if (flags.removeDiscovery) return removeDiscovery(config);
      await serve(config);
    });
}

function parsePort(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`not a port number: ${value}`);
  return n;
}

function printConfig(): void {
  for (const k of describeConfig()) {
    console.log(`${k.key.padEnd(28)} ${k.env.padEnd(36)} ${(k.default || '-').padEnd(16)} ${k.description}`);
  }
}

async function serve(config: DaemonConfig): Promise<void> {
  const modelPath = config.model.path;
  if (!modelPath) throw new Error('serve needs a model: --model FILE (or model.path / BONSAI_MODEL_PATH)');
  const logger = createLogger(config.log.level, config.topics.node);
  let broker: EmbeddedBroker | undefined;
  if (!config.mqtt.url) {
    broker = await startEmbeddedBroker(config.embedded);
    logger.info({ url: broker.url }, 'embedded broker listening');
  }
  let model: { close(): void } | undefined;
  let daemon: Daemon;
  try {
    daemon = await Daemon.start({
      config,
      brokerUrl: config.mqtt.url ?? broker!.url,
      logger,
      version: packageVersion(),
      loadEngine: async () => {
        // Imported here so that the rest of the CLI works where the native addon is not built.
        const { Model } = await import('../engine.js');
        const loaded = await Model.load(modelPath, { threads: config.model.threads, contextSize: config.model.contextSize });
        model = loaded;
        return loaded;
      },
    });
  } catch (err) {
    // An open embedded broker would keep the process alive after the error is reported.
    await broker?.close();
    throw err;
  }
  const stop = async (signal: string) => {
    logger.info({ signal }, 'signal received');
    await daemon.stop();
    await broker?.close();
    model?.close();
    logger.flush();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}

async function removeDiscovery(config: DaemonConfig): Promise<void> {
  if (!config.mqtt.url) throw new Error('--remove-discovery needs the broker Home Assistant uses: --broker URL (or mqtt.url)');
  const { topics, homeassistant } = config;
  const { client } = await connectMqtt({ ...connectOptionsFrom(config, config.mqtt.url, '-remove'), timeoutMs: 15_000 });
  const removals = discoveryRemovals({ prefix: homeassistant.prefix, node: topics.node, topics: topicsFor(topics.base, topics.node) });
  await publishRetained(client, removals);
  await client.endAsync();
  console.log(`removed ${removals.length} Home Assistant discovery entries for node ${topics.node}`);
}
