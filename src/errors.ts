// Errors the engine raises on purpose, with a stable code that the CLI maps to a one-line message
// and the daemon maps to an MQTT error reply.
export type EngineErrorCode =
  | 'bad_request' // the request itself is malformed
  | 'too_large' // the prompt does not fit in the context
  | 'busy' // another generation is running on this model
  | 'model_error' // the model file is unusable (damaged, unsupported)
  | 'cancelled'
  | 'internal';

export class EngineError extends Error {
  constructor(
    readonly code: EngineErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}
