#!/usr/bin/env node
import cluster from 'node:cluster';
import { runCli } from './cli.js';

const argv = process.argv.slice(2);
runCli(argv, { stdout: process.stdout, stderr: process.stderr }).then(
  (code) => {
    process.exitCode = code;
    // `serve` has drained (or failed to start) when runCli returns: nothing it opened may keep
    // the process alive (a cluster worker's IPC channel would, for one).
    if (cluster.isWorker || argv[0] === 'serve') process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`dancegate: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(70);
  },
);
