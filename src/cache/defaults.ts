// The defaults of the caches: the daemon's cache.* keys and the commands' caches share them.
export const CACHE_DEFAULTS = Object.freeze({ enabled: true, memoryMb: 256, diskMb: 2048, answersMb: 16, blockTokens: 64 });
