// Named `bonsai chat` conversations, kept per model so that a chat can be taken up again after the
// program (or the board) restarts; the prefix cache makes the resumed history cost no prefill.
import type { ChatMessage } from '../engine/engine.js';
import type { CacheDatabase } from './database.js';

export class ChatSessions {
  constructor(
    private readonly db: CacheDatabase,
    private readonly modelIdentity: string,
  ) {}

  load(name: string): ChatMessage[] {
    const row = this.db.use('session read', (db) => db.prepare('SELECT messages FROM chat_sessions WHERE name = ? AND model = ?').get(name, this.modelIdentity) as { messages: string } | undefined, undefined);
    return row ? (JSON.parse(row.messages) as ChatMessage[]) : [];
  }

  save(name: string, messages: ChatMessage[]): void {
    this.db.use(
      'session write',
      (db) => db.prepare('INSERT OR REPLACE INTO chat_sessions (name, model, messages, updated_at) VALUES (?, ?, ?, ?)').run(name, this.modelIdentity, JSON.stringify(messages), Date.now()),
      undefined,
    );
  }
}
