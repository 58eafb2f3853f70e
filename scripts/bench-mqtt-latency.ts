// Latency the MQTT path adds: publish → first chunk through a broker and the daemon, against the
// engine's own time to first text when called directly, over N requests on loopback.
//
//   npx vite-node scripts/bench-mqtt-latency.ts [-- --model FILE] [--broker URL] [--requests N]
//
// Without --broker it starts the embedded broker (MQTT 3.1.1) on a free 127.0.0.1 port; give a
// local mosquitto's URL to measure MQTT 5. Direct and MQTT requests alternate so that both see
// the same machine load. Prints one JSON object.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startEmbeddedBroker } from '../src/daemon/broker.js';
import { loadConfig } from '../src/daemon/config.js';
import { connectMqtt } from '../src/protocol/connect.js';
import { createLogger } from '../src/daemon/logger.js';
import { Controller } from '../src/daemon/controller.js';
import { Model } from '../src/engine/engine.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = process.env.BONSAI_FIXTURES ?? path.resolve(repoRoot, '../shared/fixtures');
const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: path.join(fixtures, 'stories260K/stories260K.gguf') },
    broker: { type: 'string' },
    requests: { type: 'string', default: '200' },
    warmup: { type: 'string', default: '20' },
  },
});
const requests = Number(args.requests);
const warmup = Number(args.warmup);
const request = { prompt: 'Once upon a time', maxTokens: 4, sampling: { temperature: 0 } };

const embedded = args.broker ? undefined : await startEmbeddedBroker({ host: '127.0.0.1', port: 0 });
const url = args.broker ?? embedded!.url;
const config = loadConfig({ flags: { 'mqtt.url': url, 'topics.node': 'bench', 'log.level': 'warn', 'homeassistant.discovery': false, 'topics.shared': 'never' } });
const model = await Model.load(args.model);
const daemon = new Controller({ config, logger: createLogger('warn', 'bench'), version: 'bench', loadEngine: async () => model });
await daemon.start();
const { client, protocolVersion } = await connectMqtt({ url, clientId: 'bench-client', timeoutMs: 10_000 });
await client.subscribeAsync(daemon.topics.response('+'), { qos: 1 });

/** ms from the call to the engine's first piece of text. */
async function direct(): Promise<number> {
  const t0 = performance.now();
  let first = NaN;
  await model.generate(request, { onText: () => (first = Number.isNaN(first) ? performance.now() - t0 : first) });
  return first;
}

/** ms from publishing a request to receiving its first chunk; resolves when its done arrives. */
function overMqtt(id: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let first = NaN;
    const timer = setTimeout(() => reject(new Error(`no answer for ${id}`)), 10_000);
    const onMessage = (_topic: string, payload: Buffer) => {
      const reply = JSON.parse(payload.toString()) as { id: string; type: string };
      if (reply.id !== id) return;
      if (reply.type === 'chunk' && Number.isNaN(first)) first = performance.now() - t0;
      if (reply.type === 'done' || reply.type === 'error') {
        clearTimeout(timer);
        client.removeListener('message', onMessage);
        if (reply.type === 'error') reject(new Error(payload.toString()));
        else resolve(first);
      }
    };
    client.on('message', onMessage);
    const t0 = performance.now();
    client.publish(daemon.topics.request, JSON.stringify({ id, prompt: request.prompt, max_tokens: request.maxTokens, temperature: 0 }), { qos: 1 });
  });
}

const directMs: number[] = [];
const mqttMs: number[] = [];
for (let i = 0; i < warmup + requests; i++) {
  const d = await direct();
  const m = await overMqtt(`b${i}`);
  if (i >= warmup) {
    directMs.push(d);
    mqttMs.push(m);
  }
}

const pct = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! * 1000) / 1000;
};
const added = mqttMs.map((m, i) => m - directMs[i]!);
console.log(
  JSON.stringify(
    {
      broker: args.broker ? url : 'embedded (aedes)',
      protocol: protocolVersion === 5 ? 'mqtt5' : 'mqtt3.1.1',
      requests,
      direct_first_text_ms: { p50: pct(directMs, 50), p99: pct(directMs, 99) },
      mqtt_first_chunk_ms: { p50: pct(mqttMs, 50), p99: pct(mqttMs, 99) },
      added_ms: { p50: pct(added, 50), p99: pct(added, 99) },
    },
    null,
    2,
  ),
);

await client.endAsync();
await daemon.stop();
await embedded?.close();
model.close();
