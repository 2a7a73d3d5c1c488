#!/usr/bin/env -S node --max-semi-space-size=64 --initial-old-space-size=256
// The flags are the server's (src/cli/node-flags.ts); a test checks they match.
// The `sluice` command. A committed shim, so npm links it even before `tsc` has built
// dist/ (npm skips bins whose target is missing at install time).
try {
  await import('../dist/cli/main.js');
} catch (error) {
  if (error?.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/cli/main.js')) {
    process.stderr.write('sluice is not built yet: run `npm run build` (or `npm start`) in the repository first\n');
    process.exit(2);
  }
  throw error;
}
