// Every topic the daemon uses, derived from the base topic and node id in one place.
export interface Topics {
  status: string;
  health: string;
  request: string;
  /** The fleet topic, before any $share/<group>/ prefix. */
  fleetRequest: string;
  cancel: string;
  fleetCancel: string;
  haPrompt: string;
  haAnswer: string;
  response(id: string): string;
}

export function topicsFor(base: string, node: string): Topics {
  const own = `${base}/${node}`;
  return {
    status: `${own}/status`,
    health: `${own}/health`,
    request: `${own}/request`,
    fleetRequest: `${base}/request`,
    cancel: `${own}/cancel`,
    fleetCancel: `${base}/cancel`,
    haPrompt: `${own}/ha/prompt`,
    haAnswer: `${own}/ha/answer`,
    response: (id) => `${own}/response/${id}`,
  };
}
