import { runCli } from './main.js';

// The `broker` executable. Kept apart from main.ts so other entry points can bundle the CLI without
// running it on import.
// `broker ... | head` closes stdout early; that is not an error worth a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
});
runCli(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
