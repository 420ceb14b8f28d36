#!/usr/bin/env node
import cluster from 'node:cluster';
import { runCli } from './cli.js';

runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }).then(
  (code) => {
    process.exitCode = code;
    // A cluster worker's IPC channel would keep it alive: leave once done.
    if (cluster.isWorker) process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`dancegate: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 70;
  },
);
