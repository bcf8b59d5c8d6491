/**
 * An AWS Lambda double for tests that implements the Lambda Invoke REST API the way `@aws-sdk/client-lambda`
 * calls it, and runs handler functions registered in this process. The real SDK talks to it unchanged
 * (`client()` below): in-process (`new LambdaDouble()`, no socket) or over loopback HTTP
 * (`LambdaDouble.start()`; then any LambdaClient whose endpoint is `endpoint`). See ./http-double.ts.
 *
 * What it models, after the AWS API reference for Invoke:
 * - `POST /2015-03-31/functions/{FunctionName}/invocations`, FunctionName given as a name, a full function
 *   ARN (`arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`) or a partial ARN
 *   (`<account>:function:<name>`), URL-encoded in the path; `?Qualifier=` and an ARN qualifier are accepted
 *   when they are `$LATEST` (there are no versions or aliases).
 * - `X-Amz-Invocation-Type`: RequestResponse (the default) runs the handler and answers 200 with the
 *   JSON-serialised result as the body (`null` for undefined), `Content-Type: application/json`,
 *   `X-Amz-Executed-Version: $LATEST` and `x-amzn-RequestId`; Event answers 202 with an empty body and
 *   runs the handler afterwards (its outcome is only recorded); DryRun answers 204 and runs nothing.
 * - The event the handler gets is the JSON request body parsed (an empty body is `{}`, as Lambda passes
 *   it); a body that is not JSON → 400 InvalidRequestContentException. The second argument is a minimal
 *   Lambda context (awsRequestId, functionName, invokedFunctionArn, getRemainingTimeInMillis, ...).
 * - A handler that throws (or rejects) is a function error, not an API error: status 200, header
 *   `X-Amz-Function-Error: Unhandled`, body `{"errorType", "errorMessage", "trace"}` as the Node.js
 *   runtime reports it (errorType is the error's name). The SDK returns it as `FunctionError` and `Payload`.
 * - An unknown function → 404 with header `x-amzn-ErrorType: ResourceNotFoundException` and body
 *   `{"Type": "User", "Message": "Function not found: <arn>"}`, which the SDK throws as
 *   ResourceNotFoundException.
 * - A request body over 6 MB (6,291,456 bytes) → 413 RequestTooLargeException; a result over the same size
 *   → the function error `Function.ResponseSizeTooLarge`, as Lambda reports it for synchronous invokes.
 * - An optional timeout (per double or per function): an invocation running longer answers the function
 *   error `Sandbox.Timedout` ("Task timed out after N seconds"). The handler itself cannot be stopped: it
 *   keeps running in the background, whereas Lambda would freeze or kill its execution environment.
 *
 * What it does not model: request signatures (SigV4 is not checked) and IAM (resource policies, execution
 * roles: anyone can invoke anything); execution environments (every invocation of a function shares one
 * handler instance and its module state in this process, so there are no cold starts, no isolation
 * between functions, and concurrent invocations run interleaved in one environment where AWS would give
 * each its own); concurrency limits, reserved or provisioned concurrency and throttling (inject
 * TooManyRequestsException with `fail(...)`); timeouts other than the optional one; the Event queue's
 * retries, destinations and dead-letter queues; `X-Amz-Log-Type: Tail` (no X-Amz-Log-Result),
 * ClientContext, tenancy and durable executions; versions, aliases and other Lambda APIs
 * (InvokeWithResponseStream, InvokeAsync, function management); the Event payload limit (1 MB) and
 * every other quota except the 6 MB synchronous payload check above.
 */
import { randomUUID } from 'node:crypto';
import { LambdaClient } from '@aws-sdk/client-lambda';
import {
  AwsFault,
  type DoubleRequest,
  type DoubleResponse,
  HttpDouble,
  TEST_REGION as REGION,
  restJsonErrorResponse,
  TEST_CREDENTIALS,
} from './http-double.js';

const ACCOUNT = '123456789012';
/** Synchronous invocation payload limit, request and response (Lambda quotas). */
export const LAMBDA_SYNC_PAYLOAD_MAX_BYTES = 6 * 1024 * 1024;
const INVOKE_PATH = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;

/** The context object a handler receives (the part of the Node.js runtime's context that is modelled). */
export interface LambdaContext {
  functionName: string;
  functionVersion: string;
  invokedFunctionArn: string;
  memoryLimitInMB: string;
  awsRequestId: string;
  logGroupName: string;
  logStreamName: string;
  callbackWaitsForEmptyEventLoop: boolean;
  getRemainingTimeInMillis(): number;
}

/** A function body: gets the parsed event and the context, returns (or resolves to) the result. */
export type LambdaHandler = (event: unknown, context: LambdaContext) => unknown;

/** One invocation the double received. */
export interface LambdaInvocationRecord {
  /** As resolved (the name, whatever form the caller used). */
  functionName: string;
  invocationType: string;
  /** The request body as received. */
  payload: string;
  requestId: string;
  /**
   * `Success`; `Unhandled: <errorType>` for a function error; the API error type (ResourceNotFoundException,
   * InvalidRequestContentException, ...) when the handler never ran; `Pending` while an Event invocation runs.
   */
  outcome: string;
}

/** A fault for the next invocation(s) of one function, instead of running its handler. */
export type LambdaFault =
  /** The handler "throws": status 200 with X-Amz-Function-Error: Unhandled. */
  (
    | { kind?: 'handler'; errorType?: string; errorMessage?: string }
    /** Lambda itself refuses, e.g. `{ kind: 'service', type: 'TooManyRequestsException', status: 429 }`. */
    | { kind: 'service'; type: string; status: number; message?: string }
  ) & {
    /** How many invocations fail (default 1). */
    times?: number;
    /** Only invocations whose parsed event this accepts fail (and count); default: every one. */
    when?: (event: unknown) => boolean;
  };

interface RegisteredFunction {
  name: string;
  arn: string;
  handler: LambdaHandler;
  timeoutMs?: number;
}

/** A Lambda API error (the handler never ran): status first, as the API reference lists them. */
const apiFault = (status: number, type: string, message: string) => new AwsFault(type, message, status);

/** What the Node.js runtime reports for a function error. */
interface FunctionError {
  errorType: string;
  errorMessage: string;
  trace?: string[];
}

class TimedOut extends Error {}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function functionErrorOf(err: unknown): FunctionError {
  if (err instanceof Error)
    return {
      errorType: err.name || 'Error',
      errorMessage: err.message,
      trace: (err.stack ?? '').split('\n'),
    };
  return { errorType: typeof err, errorMessage: String(err) };
}

export class LambdaDouble extends HttpDouble {
  /** Every invocation, in order of arrival. */
  readonly invocations: LambdaInvocationRecord[] = [];
  private readonly functions = new Map<string, RegisteredFunction>();
  private readonly faults: (LambdaFault & { functionName: string; remaining: number })[] = [];
  private readonly background = new Set<Promise<unknown>>();
  private readonly defaultTimeoutMs: number | undefined;

  /** `timeoutMs` is the default function timeout (none when absent). */
  constructor(options: { timeoutMs?: number } = {}) {
    super();
    this.defaultTimeoutMs = options.timeoutMs;
  }

  /** Starts the double on loopback HTTP (`endpoint`), for integration tests and child processes. */
  static async start(options: { timeoutMs?: number } = {}): Promise<LambdaDouble> {
    const double = new LambdaDouble(options);
    await double.listen();
    return double;
  }

  /** Registers (or replaces) a function. */
  register(name: string, handler: LambdaHandler, options: { timeoutMs?: number } = {}): void {
    if (!/^[a-zA-Z0-9_-]{1,64}$/.test(name))
      throw new Error(`${JSON.stringify(name)} is not a Lambda function name (1-64 of a-z A-Z 0-9 _ -)`);
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    this.functions.set(name, {
      name,
      arn: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${name}`,
      handler,
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    });
  }

  unregister(name: string): void {
    this.functions.delete(name);
  }

  /**
   * Makes the next `times` (default 1) invocations of `functionName` (those `when` accepts) fail as
   * described, without running the handler.
   */
  fail(functionName: string, fault: LambdaFault = {}): void {
    this.faults.push({ ...fault, functionName, remaining: fault.times ?? 1 });
  }

  /**
   * A real Lambda client for this double: in-process, or over loopback when it listens (test credentials;
   * one attempt, so faults surface at once).
   */
  client(options: { maxAttempts?: number } = {}): LambdaClient {
    return new LambdaClient({
      region: REGION,
      ...this.transport(),
      credentials: TEST_CREDENTIALS,
      maxAttempts: options.maxAttempts ?? 1,
    });
  }

  /** Invocations of one function. */
  invocationsOf(functionName: string): LambdaInvocationRecord[] {
    return this.invocations.filter((i) => i.functionName === functionName);
  }

  /** Event invocations still running settle before the listener stops. */
  protected override async settle(): Promise<void> {
    await Promise.allSettled([...this.background]);
  }

  /** The registered function a FunctionName (name, ARN or partial ARN) and qualifier refer to. */
  private resolve(raw: string, qualifier: string | null): RegisteredFunction {
    const arn = /^arn:aws[a-z-]*:lambda:([a-z0-9-]+):(\d{12}):function:([^:]+)(?::([^:]+))?$/.exec(raw);
    const partial = /^(\d{12}):function:([^:]+)(?::([^:]+))?$/.exec(raw);
    const name = arn?.[3] ?? partial?.[2] ?? raw;
    const fromArn = arn?.[4] ?? partial?.[3];
    const region = arn?.[1] ?? REGION;
    const account = arn?.[2] ?? partial?.[1] ?? ACCOUNT;
    const q = qualifier ?? fromArn;
    const fn = this.functions.get(name);
    if (!fn || region !== REGION || account !== ACCOUNT || (q !== undefined && q !== '$LATEST'))
      throw apiFault(
        404,
        'ResourceNotFoundException',
        `Function not found: arn:aws:lambda:${region}:${account}:function:${name}${q ? `:${q}` : ''}`,
      );
    return fn;
  }

  protected async respond(request: DoubleRequest): Promise<DoubleResponse> {
    const requestId = randomUUID();
    const url = new URL(request.path, 'http://lambda.local');
    const match = INVOKE_PATH.exec(url.pathname);
    const invocationType = request.headers['x-amz-invocation-type'] ?? 'RequestResponse';
    const size = request.body.length;
    // Keep no more than the limit (the whole body was read, so the client sees the answer).
    const payload = request.body.subarray(0, LAMBDA_SYNC_PAYLOAD_MAX_BYTES).toString('utf8');
    const record: LambdaInvocationRecord = {
      functionName: match ? safeDecode(match[1] ?? '') : '',
      invocationType,
      payload,
      requestId,
      outcome: 'Pending',
    };
    try {
      if (request.method !== 'POST' || !match)
        throw apiFault(
          404,
          'UnknownOperationException',
          `Unknown operation ${request.method} ${url.pathname}`,
        );
      this.invocations.push(record);
      const fn = this.resolve(record.functionName, url.searchParams.get('Qualifier'));
      record.functionName = fn.name;
      if (size > LAMBDA_SYNC_PAYLOAD_MAX_BYTES)
        throw apiFault(
          413,
          'RequestTooLargeException',
          `Request must be smaller than ${LAMBDA_SYNC_PAYLOAD_MAX_BYTES} bytes for the InvokeFunction operation`,
        );
      if (!['RequestResponse', 'Event', 'DryRun'].includes(invocationType))
        throw apiFault(
          400,
          'InvalidParameterValueException',
          `1 validation error detected: Value '${invocationType}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]`,
        );
      let event: unknown;
      try {
        event = payload.length === 0 ? {} : JSON.parse(payload);
      } catch (err) {
        throw apiFault(
          400,
          'InvalidRequestContentException',
          `Could not parse request body into json: ${(err as Error).message}`,
        );
      }
      const fault = this.takeFault(fn.name, event);
      if (fault?.kind === 'service') throw apiFault(fault.status, fault.type, fault.message ?? fault.type);
      if (invocationType === 'DryRun') {
        record.outcome = 'Success';
        return this.answer(204, requestId, '', {});
      }
      const run = () => this.run(fn, event, requestId, fault);
      if (invocationType === 'Event') {
        const done = run().then((r) => {
          record.outcome = r.error ? `Unhandled: ${r.error.errorType}` : 'Success';
        });
        this.background.add(done);
        void done.finally(() => this.background.delete(done));
        return this.answer(202, requestId, '', {});
      }
      const result = await run();
      record.outcome = result.error ? `Unhandled: ${result.error.errorType}` : 'Success';
      return this.answer(
        200,
        requestId,
        result.error ? JSON.stringify(result.error) : result.body,
        result.error ? { 'x-amz-function-error': 'Unhandled' } : {},
      );
    } catch (err) {
      const fault = err instanceof AwsFault ? err : apiFault(500, 'ServiceException', (err as Error).message);
      record.outcome = fault.type;
      return restJsonErrorResponse(fault, requestId);
    }
  }

  private takeFault(functionName: string, event: unknown): LambdaFault | undefined {
    const fault = this.faults.find(
      (f) => f.functionName === functionName && f.remaining > 0 && (f.when?.(event) ?? true),
    );
    if (fault) fault.remaining--;
    return fault;
  }

  /** Runs the handler (or the injected handler fault) under the timeout; returns the body or the error. */
  private async run(
    fn: RegisteredFunction,
    event: unknown,
    requestId: string,
    fault: LambdaFault | undefined,
  ): Promise<{ body: string; error?: undefined } | { body?: undefined; error: FunctionError }> {
    const started = Date.now();
    const context: LambdaContext = {
      functionName: fn.name,
      functionVersion: '$LATEST',
      invokedFunctionArn: fn.arn,
      memoryLimitInMB: '128',
      awsRequestId: requestId,
      logGroupName: `/aws/lambda/${fn.name}`,
      logStreamName: `double/[$LATEST]${requestId.replace(/-/g, '')}`,
      callbackWaitsForEmptyEventLoop: true,
      getRemainingTimeInMillis: () =>
        fn.timeoutMs === undefined ? 900_000 : Math.max(0, fn.timeoutMs - (Date.now() - started)),
    };
    let timer: NodeJS.Timeout | undefined;
    try {
      const invocation = (async () => {
        if (fault && fault.kind !== 'service') {
          const err = new Error(fault.errorMessage ?? 'injected handler error');
          err.name = fault.errorType ?? 'Error';
          throw err;
        }
        return fn.handler(event, context);
      })();
      const timeout =
        fn.timeoutMs === undefined
          ? undefined
          : new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new TimedOut()), fn.timeoutMs);
            });
      // A handler still running after a timeout must not surface as an unhandled rejection.
      invocation.catch(() => undefined);
      const result = await (timeout ? Promise.race([invocation, timeout]) : invocation);
      const body = JSON.stringify(result) ?? 'null';
      if (Buffer.byteLength(body, 'utf8') > LAMBDA_SYNC_PAYLOAD_MAX_BYTES)
        return {
          error: {
            errorType: 'Function.ResponseSizeTooLarge',
            errorMessage: `Response payload size exceeded maximum allowed payload size (${LAMBDA_SYNC_PAYLOAD_MAX_BYTES} bytes).`,
          },
        };
      return { body };
    } catch (err) {
      if (err instanceof TimedOut)
        return {
          error: {
            errorType: 'Sandbox.Timedout',
            errorMessage: `RequestId: ${requestId} Error: Task timed out after ${((fn.timeoutMs ?? 0) / 1000).toFixed(2)} seconds`,
          },
        };
      return { error: functionErrorOf(err) };
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  private answer(
    status: number,
    requestId: string,
    body: string,
    headers: Record<string, string>,
  ): DoubleResponse {
    return {
      status,
      headers: {
        'content-type': 'application/json',
        'x-amzn-requestid': requestId,
        ...(status === 200 ? { 'x-amz-executed-version': '$LATEST' } : {}),
        ...headers,
      },
      body,
    };
  }
}
