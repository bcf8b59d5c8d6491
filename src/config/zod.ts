import { en } from 'zod/locales';
import { config } from 'zod/mini';

/**
 * The schema library every schema on a Lambda's cold-start path is written with (`import * as z from` this
 * module): zod's functional build, which starts in a fraction of the time of classic zod (no methods
 * attached to every schema). It carries no messages of its own, so English is set here, as classic zod
 * sets it: the same text in every error.
 */
if (!config().localeError) config(en());

export * from 'zod/mini';
