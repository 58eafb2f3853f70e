// Structured logs (JSON lines) for the daemon: pino is fast enough to log every request on a Pi
// without slowing generation, and its lines are easy to ship and filter (journald, Loki, jq).
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

export function createLogger(level: string, node: string, destination?: DestinationStream): Logger {
  const options = { level, base: { node }, timestamp: pino.stdTimeFunctions.isoTime };
  return destination ? pino(options, destination) : pino(options);
}
