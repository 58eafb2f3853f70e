// The caches a command or the daemon uses, opened from one set of settings: the database file, the
// prompt-prefix blocks, the answers and the runtime images. With the cache off (or its file unusable) everything still
// works, only without reuse.
import type { LoadInfo, Model } from '../engine/engine.js';
import { AnswerCache } from './answers.js';
import { CacheDatabase, defaultCachePath, type CacheLog } from './database.js';
import { modelIdentity } from './identity.js';
import { imageFor, noteImage, type ImageChoice } from './images.js';
import { PrefixCache } from './prefix.js';

export interface CacheSettings {
  enabled: boolean;
  /** Default: defaultCachePath(). */
  path?: string;
  memoryMb: number;
  diskMb: number;
  answersMb: number;
  blockTokens: number;
}

const MB = 2 ** 20;

export class Caches {
  readonly db: CacheDatabase | undefined;
  readonly prefix: PrefixCache;
  readonly answers: AnswerCache;
  /** The model's identity once attach() has run. */
  modelIdentity: string | undefined;

  constructor(
    readonly settings: CacheSettings,
    private readonly log?: CacheLog,
  ) {
    this.db = settings.enabled ? new CacheDatabase(settings.path ?? defaultCachePath(), { log }) : undefined;
    this.prefix = new PrefixCache(this.db, { memoryBytes: settings.memoryMb * MB, diskBytes: settings.diskMb * MB });
    this.answers = new AnswerCache(this.db, settings.answersMb * MB);
  }

  /** Lets the model reuse and store prompt prefixes (a no-op with the cache off). */
  async attach(model: Model): Promise<void> {
    if (!this.settings.enabled) return;
    this.modelIdentity = await modelIdentity(model.file, this.db);
    model.usePrefixCache({ store: this.prefix, modelIdentity: this.modelIdentity, blockTokens: this.settings.blockTokens });
  }

  /** The runtime image to load `file` from (undefined with the cache off or unusable). */
  imageFor(file: string, kernels?: string): Promise<ImageChoice | undefined> {
    return imageFor(this.db, file, kernels);
  }

  /** After a load with `image`: indexes it (evicting the least recently used), warns when it could not be written. */
  noteImage(image: ImageChoice | undefined, info: LoadInfo): void {
    if (!image) return;
    if (info.image === 'not-written') this.log?.warn({ file: image.path, err: info.imageNote }, 'runtime image not written: the next start decodes and repacks again');
    noteImage(this.db, image, info);
  }

  /** Writes what is queued and closes the file. */
  close(): void {
    this.prefix.flush();
    this.db?.close();
  }

  stats(): Record<string, unknown> {
    return { file: this.db?.file ?? null, available: this.db?.available ?? false, off_reason: this.db?.reason ?? null, prefix: this.prefix.stats(), answers: this.answers.stats() };
  }
}
