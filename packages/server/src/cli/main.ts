#!/usr/bin/env node
/** The `sluice` executable: see program.ts for the commands. */
import { runCli } from './program.js';

const code = await runCli(process.argv.slice(2), {
  io: {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
    env: process.env,
  },
  start: {
    exit: (exitCode) => process.exit(exitCode),
    onSignal: (signal, handler) => void process.on(signal, handler),
  },
  nowS: () => Math.floor(Date.now() / 1000),
});
// exitCode rather than exit(): lets stdout drain when it is a pipe. `start` keeps running.
if (code !== null) process.exitCode = code;
