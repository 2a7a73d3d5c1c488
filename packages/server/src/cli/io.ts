/**
 * What the CLI needs from its surroundings, passed in so the commands can be run in a test
 * without a child process: where text goes, the environment, and the exit code.
 */
export interface CliIo {
  /** Text for people or, with --json, for scripts. Lines end with "\n" (the caller adds it). */
  stdout(text: string): void;
  /** Errors, warnings and notes that must not mix into the JSON on stdout. */
  stderr(text: string): void;
  env: Record<string, string | undefined>;
}

/** Exit codes, documented in `sluice --help`. */
export const EXIT = {
  ok: 0,
  /** A request or a command failed; stderr says `error <code>: <message>`. */
  error: 1,
  /** Bad usage (unknown option, missing argument) or bad configuration. */
  usage: 2,
  /** `sluice pay`: the payment is still pending; its outcome is not known yet. */
  pending: 3,
} as const;

/**
 * A failure the CLI finds itself (before or without asking the server). `code` is one of
 * the server's codes when one fits (invalid_amount, invoice_invalid), else a CLI code.
 */
export class CliError extends Error {
  readonly code: string;
  readonly exitCode: number;

  constructor(code: string, message: string, exitCode: number = EXIT.error) {
    super(message);
    this.name = 'CliError';
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** Ends a command with an exit code after it has printed what it had to say. */
export class CliExit {
  readonly exitCode: number;

  constructor(exitCode: number) {
    this.exitCode = exitCode;
  }
}
