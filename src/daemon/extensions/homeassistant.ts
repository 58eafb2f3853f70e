// Home Assistant MQTT discovery: one device per node with its sensors, a text entity that sends a
// prompt and a sensor with the last answer. Availability follows the retained status topic, so
// the entities go unavailable when the daemon stops or its last will fires. The discovery messages
// are published again when Home Assistant announces itself online (it may have lost them).
import { closeClient, connectMqtt } from '../../protocol/connect.js';
import { topicsFor, type Topics } from '../../protocol/topics.js';
import type { DaemonConfig } from '../config.js';
import { connectOptionsFrom, type RetainedMessage } from '../mqtt.js';
import type { Extension, ExtensionContext } from './extension.js';
import { cpuTemperature } from './health.js';

export interface DiscoveryContext {
  prefix: string;
  node: string;
  topics: Topics;
  model: string;
  version: string;
  hasTemperature: boolean;
}

type Component = 'sensor' | 'text';
interface Entity {
  component: Component;
  object: string;
  config: Record<string, unknown>;
}

/** HA sensor states are limited to 255 characters; the full answer goes into the attributes. */
const MAX_STATE = 255;

function entities(ctx: DiscoveryContext): Entity[] {
  const t = ctx.topics;
  const list: Entity[] = [
    { component: 'sensor', object: 'state', config: { name: 'State', state_topic: t.status, value_template: '{{ value_json.state }}', icon: 'mdi:robot' } },
    {
      component: 'sensor',
      object: 'tokens_per_s',
      config: { name: 'Tokens per second', state_topic: t.health, value_template: '{{ value_json.last_tokens_per_s }}', unit_of_measurement: 'tok/s', state_class: 'measurement', icon: 'mdi:speedometer' },
    },
    {
      component: 'sensor',
      object: 'queue_depth',
      config: { name: 'Queue depth', state_topic: t.health, value_template: '{{ value_json.queue_depth }}', state_class: 'measurement', icon: 'mdi:tray-full' },
    },
    {
      component: 'text',
      object: 'prompt',
      config: { name: 'Prompt', command_topic: t.haPrompt, mode: 'text', max: MAX_STATE, icon: 'mdi:message-text' },
    },
    {
      component: 'sensor',
      object: 'answer',
      config: {
        name: 'Last answer',
        state_topic: t.haAnswer,
        value_template: `{{ (value_json.text if value_json.type == 'done' else value_json.message)[:${MAX_STATE}] }}`,
        json_attributes_topic: t.haAnswer,
        icon: 'mdi:message-reply-text',
      },
    },
  ];
  if (ctx.hasTemperature) {
    list.push({
      component: 'sensor',
      object: 'cpu_temperature',
      config: { name: 'CPU temperature', state_topic: t.health, value_template: '{{ value_json.cpu_temp_c }}', device_class: 'temperature', unit_of_measurement: '°C', state_class: 'measurement' },
    });
  }
  return list;
}

function uniqueId(node: string): string {
  return `bonsai_${node.replace(/[^a-zA-Z0-9_-]/g, '_')}`;
}

function configTopic(prefix: string, node: string, e: Pick<Entity, 'component' | 'object'>): string {
  return `${prefix}/${e.component}/${uniqueId(node)}/${e.object}/config`;
}

export function discoveryMessages(ctx: DiscoveryContext): RetainedMessage[] {
  const id = uniqueId(ctx.node);
  const device = { identifiers: [id], name: `Bonsai ${ctx.node}`, manufacturer: 'bonsai-edge', model: ctx.model, sw_version: ctx.version };
  const availability = {
    availability_topic: ctx.topics.status,
    availability_template: "{{ 'online' if value_json.state == 'online' else 'offline' }}",
  };
  return entities(ctx).map((e) => ({
    topic: configTopic(ctx.prefix, ctx.node, e),
    payload: JSON.stringify({
      ...e.config,
      unique_id: `${id}_${e.object}`,
      object_id: `${id}_${e.object}`,
      ...availability,
      device,
      origin: { name: 'bonsai-edge', sw_version: ctx.version },
    }),
  }));
}

/** Empty retained payloads for every entity this node may have published (HA then deletes them). */
export function discoveryRemovals(ctx: Pick<DiscoveryContext, 'prefix' | 'node' | 'topics'>): RetainedMessage[] {
  return discoveryMessages({ ...ctx, model: '', version: '', hasTemperature: true }).map((m) => ({ topic: m.topic, payload: '' }));
}

export function homeAssistantExtension(ctx: ExtensionContext): Extension {
  const { config, topics, logger } = ctx;
  const ha = config.homeassistant;
  const publishDiscovery = () =>
    ctx.mqtt.publishRetained(
      discoveryMessages({
        prefix: ha.prefix,
        node: config.topics.node,
        topics,
        model: ctx.engine.name,
        version: ctx.version,
        hasTemperature: cpuTemperature() !== undefined,
      }),
    );
  return {
    name: 'homeassistant',
    async start() {
      // The text entity's prompts are requests whose answer goes to the last-answer sensor, whole.
      ctx.pipeline.addSource(topics.haPrompt, { replyTopic: topics.haAnswer, stream: false });
      const haStatus = `${ha.prefix}/status`;
      ctx.mqtt.handle(haStatus, (payload) => {
        if (payload.toString() !== 'online') return;
        publishDiscovery().catch((err: Error) => logger.warn({ err: err.message }, 'discovery publish failed'));
      });
      const refused = await ctx.mqtt.subscribe([haStatus]);
      if (refused.length) logger.error({ topics: refused }, 'broker refused subscriptions (check the ACL)');
    },
    online: publishDiscovery,
  };
}

/** Deletes this node's entities from Home Assistant (on the broker it uses); returns how many. */
export async function removeDiscoveryEntries(config: DaemonConfig): Promise<number> {
  if (!config.mqtt.url) throw new Error('--remove-discovery needs the broker Home Assistant uses: --broker URL (or mqtt.url)');
  const { topics, homeassistant } = config;
  const { client } = await connectMqtt({ ...connectOptionsFrom(config, config.mqtt.url, '-remove'), timeoutMs: 15_000 });
  const removals = discoveryRemovals({ prefix: homeassistant.prefix, node: topics.node, topics: topicsFor(topics.base, topics.node) });
  await Promise.all(removals.map((m) => client.publishAsync(m.topic, m.payload, { qos: 1, retain: true })));
  await closeClient(client, 3000);
  return removals.length;
}
