// The client side of one request: what `bonsai ask`, the tests and the latency benchmark use.
// It subscribes to the reply topic before publishing, follows the stream until done or error,
// and publishes the same request again after a reconnect, or when the daemon comes back online
// after a restart: the daemon never runs an id twice, it replays the final reply of a finished
// one, so nothing is lost when the broker or the daemon restarts.
import { randomUUID } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import type { MqttConnection } from '../protocol/connect.js';
import { isFinalReply, type Reply } from '../protocol/messages.js';
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
  const restarts = new RestartWatch();

  return new Promise<Reply>((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      client.removeListener('message', onMessage);
      client.removeListener('connect', send);
      client.unsubscribe([route.replyTopic, route.statusTopic]);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new AskTimeout(`no final reply for ${id} within ${options.timeoutMs} ms`));
    }, options.timeoutMs);
    const onMessage = (topic: string, message: Buffer) => {
      if (topic !== route.replyTopic) {
        // A daemon that came back online may have lost the request with its queue: send it again
        // (ids are idempotent: a finished request is answered from its final reply, not re-run).
        if (restarts.cameOnline(topic, message)) send();
        return;
      }
      const reply = parseReply(message);
      if (!reply || reply.id !== id) return;
      options.onReply?.(reply);
      if (isFinalReply(reply)) {
        cleanup();
        resolve(reply);
      }
    };
    client.on('message', onMessage);
    // The broker may have lost the request with this client's connection: send it again.
    client.on('connect', send);
    subscribeThenSend(client, [route.replyTopic, route.statusTopic], send, (err) => {
      cleanup();
      reject(err);
    });
  });
}

/**
 * Follows the retained status of the nodes that may answer. The first status seen of a node is
 * how things stand; after that, `online` from a node that was not online, or that started again
 * (a new `since`), is a daemon back from a restart.
 */
class RestartWatch {
  private readonly nodes = new Map<string, { state: unknown; since: unknown }>();

  cameOnline(topic: string, message: Buffer): boolean {
    let status: { state?: unknown; since?: unknown };
    try {
      status = JSON.parse(message.toString('utf8')) as typeof status;
    } catch {
      return false;
    }
    const before = this.nodes.get(topic);
    this.nodes.set(topic, { state: status.state, since: status.since });
    return before !== undefined && status.state === 'online' && (before.state !== 'online' || before.since !== status.since);
  }
}

interface Route {
  requestTopic: string;
  replyTopic: string;
  /** The status of the node asked, or of every node for a fleet request. */
  statusTopic: string;
  replyTo?: string;
}

function routeOf(options: AskOptions, id: string): Route {
  if (options.node !== undefined) {
    const t = topicsFor(options.base, options.node);
    return { requestTopic: t.request, replyTopic: t.response(id), statusTopic: t.status };
  }
  // A fleet request does not know which node answers, so it names its reply topic.
  const replyTo = `${options.base}/response/${id}`;
  return { requestTopic: `${options.base}/request`, replyTopic: replyTo, statusTopic: topicsFor(options.base, '+').status, replyTo };
}

function subscribeThenSend(client: MqttClient, topics: string[], send: () => void, fail: (err: Error) => void): void {
  client.subscribe(topics, { qos: 1 }, (err, granted) => {
    if (err) return fail(err);
    const refused = granted?.find((g) => g.qos >= 0x80);
    if (refused) return fail(new Error(`broker refused the subscription to ${refused.topic} (check the ACL)`));
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
