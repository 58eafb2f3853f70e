// The client side of one request: what `bonsai ask`, the tests and the latency benchmark use.
// It subscribes to the reply topic before publishing, follows the stream until done or error,
// and after a reconnect publishes the same request again: the daemon never runs an id twice, it
// replays the final reply of a finished one, so nothing is lost when the broker restarts.
import { randomUUID } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import type { MqttConnection } from '../protocol/connect.js';
import type { Reply } from '../protocol/messages.js';
import { topicsFor } from '../protocol/topics.js';

export interface AskOptions {
  base: string;
  /** Send to this node; undefined sends to the fleet topic (any node answers). */
  node?: string;
  /** Request fields (prompt or messages, max_tokens, ...); id is generated when absent. */
  request: Record<string, unknown> & { id?: string };
  timeoutMs: number;
  onReply?: (reply: Reply) => void;
}

export class AskTimeout extends Error {
  override name = 'AskTimeout';
}

export async function ask(connection: MqttConnection, options: AskOptions): Promise<Reply> {
  const { client } = connection;
  const id = options.request.id ?? randomUUID();
  const route = routeOf(options, id);
  const body = { ...options.request, id, ...(route.replyTo ? { reply_to: route.replyTo } : {}) };
  const payload = JSON.stringify(body);
  const publishOptions = connection.protocolVersion === 5
    ? { qos: 1 as const, properties: { responseTopic: route.replyTopic, correlationData: Buffer.from(id) } }
    : { qos: 1 as const };
  const send = () => client.publish(route.requestTopic, payload, publishOptions);

  return new Promise<Reply>((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      client.removeListener('message', onMessage);
      client.removeListener('connect', send);
      client.unsubscribe(route.replyTopic);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new AskTimeout(`no final reply for ${id} within ${options.timeoutMs} ms`));
    }, options.timeoutMs);
    const onMessage = (topic: string, message: Buffer) => {
      if (topic !== route.replyTopic) return;
      const reply = parseReply(message);
      if (!reply || reply.id !== id) return;
      options.onReply?.(reply);
      if (reply.type === 'done' || reply.type === 'error') {
        cleanup();
        resolve(reply);
      }
    };
    client.on('message', onMessage);
    client.on('connect', send);
    subscribeThenSend(client, route.replyTopic, send, (err) => {
      cleanup();
      reject(err);
    });
  });
}

function routeOf(options: AskOptions, id: string): { requestTopic: string; replyTopic: string; replyTo?: string } {
  if (options.node !== undefined) {
    const t = topicsFor(options.base, options.node);
    return { requestTopic: t.request, replyTopic: t.response(id) };
  }
  // A fleet request does not know which node answers, so it names its reply topic.
  const replyTo = `${options.base}/response/${id}`;
  return { requestTopic: `${options.base}/request`, replyTopic: replyTo, replyTo };
}

function subscribeThenSend(client: MqttClient, topic: string, send: () => void, fail: (err: Error) => void): void {
  client.subscribe(topic, { qos: 1 }, (err, granted) => {
    if (err) return fail(err);
    if (granted?.some((g) => g.qos >= 0x80)) return fail(new Error(`broker refused the subscription to ${topic} (check the ACL)`));
    send();
  });
}

function parseReply(message: Buffer): Reply | undefined {
  try {
    const value = JSON.parse(message.toString('utf8')) as Reply;
    return value && typeof value === 'object' && typeof value.id === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}
