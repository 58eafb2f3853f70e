// A real mosquitto for tests: started on a free 127.0.0.1 port with a generated config (anonymous,
// or a password file + ACL, optionally TLS from a CA made here with openssl), restartable on the
// same port, and always stopped by its PID.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface MosquittoOptions {
  /** user → password; turns anonymous access off. */
  users?: Record<string, string>;
  /** mosquitto acl_file text (with users). */
  acl?: string;
  /** Serve TLS with a certificate signed by a CA made for this broker. */
  tls?: boolean;
  /** Keep retained messages and sessions across restarts, in the broker's own directory (Debian's default). */
  persistence?: boolean;
}

export interface Mosquitto {
  port: number;
  url: string;
  /** PEM file of the CA (tls only). */
  caFile?: string;
  stop(): Promise<void>;
  /** Stops and starts again on the same port (retained messages and sessions are lost without persistence). */
  restart(downMs?: number): Promise<void>;
}

export const HAVE_MOSQUITTO = await run('mosquitto', ['-h']).then(
  () => true,
  (err: { stdout?: string }) => /mosquitto version/i.test(err.stdout ?? ''),
);
if (!HAVE_MOSQUITTO) console.warn('mosquitto not found: broker tests are skipped (apt-get install -y mosquitto mosquitto-clients)');

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bonsai-mosq-'));
  // mosquitto started as root drops to its own user, which must still read these files (and
  // write its database there, with persistence).
  chmodSync(dir, options.persistence ? 0o777 : 0o755);
  const port = await freePort();
  const persistence = options.persistence ? ['persistence true', `persistence_location ${dir}/`] : ['persistence false'];
  const lines = [`listener ${port} 127.0.0.1`, ...persistence, 'log_dest none', 'max_queued_messages 10000', 'set_tcp_nodelay true'];
  if (options.users) {
    lines.push('allow_anonymous false', `password_file ${await passwordFile(dir, options.users)}`);
    if (options.acl) lines.push(`acl_file ${write(dir, 'acl', options.acl)}`);
  } else {
    lines.push('allow_anonymous true');
  }
  let caFile: string | undefined;
  if (options.tls) {
    const pki = await makePki(dir);
    caFile = pki.ca;
    lines.push(`cafile ${pki.ca}`, `certfile ${pki.cert}`, `keyfile ${pki.key}`);
  }
  const conf = write(dir, 'mosquitto.conf', lines.join('\n') + '\n');
  let child = await launch(conf, port);
  const stopChild = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };
  return {
    port,
    url: `${options.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    caFile,
    stop: async () => {
      await stopChild();
      rmSync(dir, { recursive: true, force: true });
    },
    restart: async (downMs = 300) => {
      await stopChild();
      await new Promise((r) => setTimeout(r, downMs));
      child = await launch(conf, port);
    },
  };
}

function write(dir: string, name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text, { mode: 0o644 });
  return file;
}

async function launch(conf: string, port: number): Promise<ChildProcess> {
  const child = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`mosquitto exited (${child.exitCode}): ${stderr}`);
    if (await canConnect(port)) return child;
    await new Promise((r) => setTimeout(r, 30));
  }
  child.kill('SIGKILL');
  throw new Error(`mosquitto did not listen on ${port} within 5 s: ${stderr}`);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function passwordFile(dir: string, users: Record<string, string>): Promise<string> {
  const file = path.join(dir, 'passwd');
  let first = true;
  for (const [user, password] of Object.entries(users)) {
    await run('mosquitto_passwd', [...(first ? ['-c'] : []), '-b', file, user, password]);
    first = false;
  }
  chmodSync(file, 0o644);
  return file;
}

/** A throwaway CA and a server certificate for 127.0.0.1 signed by it (P-256: fast to make). */
async function makePki(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const f = (name: string) => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=bonsai test CA']);
  await run('openssl', ['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1']);
  write(dir, 'san.cnf', 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await run('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.crt'), '-days', '2', '-extfile', f('san.cnf')]);
  for (const name of ['ca.crt', 'server.crt', 'server.key']) chmodSync(f(name), 0o644);
  return { ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key') };
}
