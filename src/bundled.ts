// The 1-bit model that ships in the package (models/, its card in models/README.md): what every
// command runs when no model is given. One level up from src/ and dist/, as package.json is.
import { fileURLToPath } from 'node:url';

export const BUNDLED_MODEL = fileURLToPath(new URL('../models/tinystories-xs-q1_0.gguf', import.meta.url));
