// Answers of deterministic requests (greedy, or sampled with an explicit seed), kept so the same
// request on the same model is answered again without running: the key covers the model, the
// rendered prompt's tokens and every parameter that shapes the output. Byte budget, least
// recently used out first.
import { createHash } from 'node:crypto';
import type { DoneBody } from '../protocol/messages.js';
import type { CacheDatabase } from './database.js';
import { evictOldest } from './prefix.js';

export interface StoredAnswer {
  text: string;
  thinking?: string;
  finish_reason: DoneBody['finish_reason'];
  completion_tokens: number;
}

export class AnswerCache {
  hits = 0;
  misses = 0;

  constructor(
    private readonly db: CacheDatabase | undefined,
    private readonly budgetBytes: number,
  ) {}

  static key(parts: unknown): string {
    return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
  }

  get(key: string): StoredAnswer | undefined {
    const row = this.db?.use(
      'answer read',
      (db) => {
        const found = db.prepare('SELECT reply FROM answers WHERE key = ?').get(key) as { reply: string } | undefined;
        if (found) db.prepare('UPDATE answers SET used = ? WHERE key = ?').run(Date.now(), key);
        return found;
      },
      undefined,
    );
    if (!row) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    return JSON.parse(row.reply) as StoredAnswer;
  }

  put(key: string, answer: StoredAnswer): void {
    const reply = JSON.stringify(answer);
    const bytes = Buffer.byteLength(reply);
    if (bytes > this.budgetBytes) return;
    this.db?.use(
      'answer write',
      (db) =>
        db.transaction(() => {
          db.prepare('INSERT OR REPLACE INTO answers (key, bytes, reply, used) VALUES (?, ?, ?, ?)').run(key, bytes, reply, Date.now());
          evictOldest(db, 'answers', this.budgetBytes);
        })(),
      undefined,
    );
  }

  stats(): { entries: number; bytes: number; budget: number; hits: number; misses: number } {
    const totals = this.db?.use('stats', (db) => db.prepare('SELECT count(*) AS entries, coalesce(sum(bytes), 0) AS bytes FROM answers').get() as { entries: number; bytes: number }, undefined);
    return { entries: totals?.entries ?? 0, bytes: totals?.bytes ?? 0, budget: this.budgetBytes, hits: this.hits, misses: this.misses };
  }
}
