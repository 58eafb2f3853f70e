// Terminal styling shared by the commands that show a model's reasoning dimmed.
export const DIM = '\x1b[2m';
export const RESET = '\x1b[0m';
