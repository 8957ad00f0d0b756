/**
 * Error catalogue. Every error carries a stable machine `code` (tests and logs match on it,
 * never on message text), after fastify's error codes and ws's (code, protocol code) pairs.
 */
export class GatewayError extends Error {
  override name = 'GatewayError';
  constructor(readonly code: string, message: string, opts?: ErrorOptions) {
    super(message, opts);
  }
}

/** RFC 6120 section 4.9.3 defined stream error conditions (plus the RFC 3920 spelling we may receive). */
export type StreamCondition =
  | 'bad-format' | 'bad-namespace-prefix' | 'conflict' | 'connection-timeout' | 'host-gone'
  | 'host-unknown' | 'improper-addressing' | 'internal-server-error' | 'invalid-from'
  | 'invalid-namespace' | 'invalid-xml' | 'not-authorized' | 'not-well-formed'
  | 'policy-violation' | 'remote-connection-failed' | 'reset' | 'resource-constraint'
  | 'restricted-xml' | 'see-other-host' | 'system-shutdown' | 'undefined-condition'
  | 'unsupported-encoding' | 'unsupported-feature' | 'unsupported-stanza-type'
  | 'unsupported-version';

/** An error that ends a stream with `<stream:error><condition/><text/></stream:error>`. */
export class StreamError extends GatewayError {
  override name = 'StreamError';
  constructor(readonly condition: StreamCondition, text?: string, opts?: ErrorOptions) {
    super(`GW_ERR_STREAM_${condition.toUpperCase().replaceAll('-', '_')}`, text ?? condition, opts);
  }
}

/** A configuration or partner-file problem: names the file, line and field. */
export class ConfigError extends GatewayError {
  override name = 'ConfigError';
  constructor(
    message: string,
    readonly file?: string,
    readonly line?: number,
    readonly field?: string,
  ) {
    super('GW_ERR_CONFIG', formatLocated(message, file, line, field));
  }
}

/** Bad input to the command line or the partner API (unknown parameter, bad value, ...). */
export class UsageError extends GatewayError {
  override name = 'UsageError';
  constructor(message: string, readonly field?: string) {
    super('GW_ERR_USAGE', message);
  }
}

function formatLocated(message: string, file?: string, line?: number, field?: string): string {
  const where = file ? `${file}${line ? `:${line}` : ''}: ` : '';
  const what = field ? `${field}: ` : '';
  return `${where}${what}${message}`;
}
