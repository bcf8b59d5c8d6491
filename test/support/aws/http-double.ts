/**
 * The HTTP plumbing the AWS doubles share: a double answers one parsed request with one response, and this
 * module carries both over either transport:
 *
 * - in-process, as a Smithy `HttpHandler` (the `requestHandler` option of an AWS SDK v3 client), so unit tests
 *   run the real SDK (serialisation, signing, retries, error parsing) without any socket;
 * - over a real HTTP listener on 127.0.0.1 (port 0), for integration tests and child processes, which reach
 *   it through `endpoint`.
 *
 * It also speaks the wire formats the doubles share: the AWS JSON 1.1 protocol (`POST /`,
 * `X-Amz-Target: <prefix>.<Operation>`, JSON bodies, errors as `{"__type", "Message"}`) and the error
 * documents of the Query (XML) and REST-JSON protocols, so each double holds only its service's semantics.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { type HttpHandler, type HttpRequest, HttpResponse } from '@smithy/protocol-http';

export const TEST_REGION = 'us-east-1';
/** Test credentials: no double checks them except the STS double, which has its own principals. */
export const TEST_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };

/** One request as a double sees it, whichever transport carried it. */
export interface DoubleRequest {
  method: string;
  /** Path and query string, e.g. `/2015-03-31/functions/f/invocations?Qualifier=%24LATEST`. */
  path: string;
  /** The host the request was meant for (the SDK's endpoint host, or the Host header). */
  host: string;
  /** Lower-case header names. */
  headers: Record<string, string>;
  body: Buffer;
}

export interface DoubleResponse {
  status: number;
  headers: Record<string, string>;
  body: string | Buffer;
}

/** An AWS error answer: its error code (`__type`, `<Code>` or `x-amzn-ErrorType`), message and status. */
export class AwsFault extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

/** A test double of an AWS service: answers parsed requests, in-process or over loopback HTTP. */
export abstract class HttpDouble {
  private server: http.Server | undefined;
  private url: string | undefined;

  /** Answers one request; never throws (errors are answered in the service's error shape). */
  protected abstract respond(request: DoubleRequest): Promise<DoubleResponse>;

  /** Runs before a listener closes (for example to let background work settle). */
  protected async settle(): Promise<void> {}

  /** The loopback endpoint (`http://127.0.0.1:<port>`); only after `listen()`. */
  get endpoint(): string {
    if (!this.url)
      throw new Error(`${this.constructor.name} is in-process only: call listen() for an endpoint`);
    return this.url;
  }

  /** True once `listen()` has started a loopback listener. */
  get listening(): boolean {
    return this.server !== undefined;
  }

  /** Starts serving on 127.0.0.1, a free port; resolves to the endpoint. */
  async listen(): Promise<string> {
    if (this.url) return this.url;
    const server = http.createServer((req, res) => {
      void this.serveHttp(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this.url;
  }

  /** Stops the listener, if any, after background work has settled. */
  async close(): Promise<void> {
    await this.settle();
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.url = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * The transport an SDK client uses: over the listener when one runs, else in-process. Spread it into a
   * client's options: `new KMSClient({ ...double.transport(), region, credentials })`.
   */
  transport(): { endpoint: string } | { requestHandler: HttpHandler } {
    return this.listening ? { endpoint: this.endpoint } : { requestHandler: this.requestHandler };
  }

  /** A Smithy HttpHandler answering in this process: the SDK runs unchanged, and no socket is opened. */
  readonly requestHandler: HttpHandler = {
    handle: async (request: HttpRequest, options?: { abortSignal?: { aborted: boolean } }) => {
      if (options?.abortSignal?.aborted)
        throw Object.assign(new Error('Request aborted'), { name: 'AbortError' });
      const query = new URLSearchParams();
      for (const [k, v] of Object.entries(request.query ?? {}))
        for (const value of Array.isArray(v) ? v : [v]) if (value !== null) query.append(k, value);
      const search = query.toString();
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(request.headers)) headers[k.toLowerCase()] = v;
      const answer = await this.respond({
        method: request.method,
        path: `${request.path}${search ? `?${search}` : ''}`,
        host: request.hostname,
        headers,
        body: await bodyBytes(request.body),
      });
      const body = typeof answer.body === 'string' ? Buffer.from(answer.body, 'utf8') : answer.body;
      return {
        response: new HttpResponse({
          statusCode: answer.status,
          headers: { ...answer.headers, 'content-length': String(body.length) },
          body: Readable.from([body]),
        }),
      };
    },
    updateHttpClientConfig: () => undefined,
    httpHandlerConfigs: () => ({}),
  };

  /**
   * A fetch answering in this process: for code that takes a `fetch` rather than an SDK client. `route`
   * decides which URLs this double stands for; any other URL is an error (nothing may reach the network).
   */
  protected inProcessFetch(route: (url: URL) => boolean): typeof globalThis.fetch {
    return async (input, init) => {
      const request = new Request(input, init);
      const url = new URL(request.url);
      if (!route(url)) throw new TypeError(`${this.constructor.name}'s fetch does not reach ${url.href}`);
      const headers: Record<string, string> = {};
      request.headers.forEach((value, name) => {
        headers[name] = value;
      });
      const answer = await this.respond({
        method: request.method,
        path: `${url.pathname}${url.search}`,
        host: url.host,
        headers,
        body: Buffer.from(await request.arrayBuffer()),
      });
      return new Response(answer.status === 204 ? null : answer.body, {
        status: answer.status,
        headers: answer.headers,
      });
    };
  }

  private async serveHttp(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers))
      if (typeof value === 'string') headers[name] = value;
      else if (Array.isArray(value)) headers[name] = value.join(', ');
    const answer = await this.respond({
      method: req.method ?? '',
      path: req.url ?? '/',
      host: headers.host ?? '',
      headers,
      body: Buffer.concat(chunks),
    });
    res.writeHead(answer.status, answer.headers);
    res.end(answer.body);
  }
}

async function bodyBytes(body: unknown): Promise<Buffer> {
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (body instanceof Readable || Symbol.asyncIterator in (body as object)) {
    const chunks: Buffer[] = [];
    for await (const chunk of body as AsyncIterable<Uint8Array | string>)
      chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk));
    return Buffer.concat(chunks);
  }
  throw new TypeError(`a request body of type ${typeof body} is not supported by the AWS doubles`);
}

// ---------------------------------------------------------------------------------------------------------
// The AWS JSON 1.1 protocol (Secrets Manager, KMS, ...)

export const AWS_JSON_1_1 = 'application/x-amz-json-1.1';

export interface AwsJsonProtocol {
  /** The X-Amz-Target prefix, e.g. `secretsmanager.` or `TrentService.`. */
  targetPrefix: string;
  /** The key of an error's message: Secrets Manager answers `Message`, KMS `message`. */
  messageKey: 'Message' | 'message';
  /** Refuse a Content-Type other than application/x-amz-json-1.1 with SerializationException. */
  requireContentType?: boolean;
  /** What an unexpected exception of the double becomes. */
  internalFault(message: string): AwsFault;
}

/**
 * Serves one AWS JSON 1.1 request: checks method and target, parses the body, calls `operation` with the
 * operation name and the parsed body, and answers its result as JSON or its AwsFault in the AWS error shape.
 */
export async function serveAwsJson(
  request: DoubleRequest,
  protocol: AwsJsonProtocol,
  operation: (name: string, body: Record<string, unknown>) => unknown,
): Promise<DoubleResponse> {
  const target = request.headers['x-amz-target'] ?? '';
  const { targetPrefix } = protocol;
  const name = target.startsWith(targetPrefix) ? target.slice(targetPrefix.length) : target;
  try {
    if (request.method !== 'POST' || !target.startsWith(targetPrefix))
      throw new AwsFault('UnknownOperationException', `unsupported target ${JSON.stringify(target)}`);
    if (protocol.requireContentType && !(request.headers['content-type'] ?? '').startsWith(AWS_JSON_1_1))
      throw new AwsFault('SerializationException', `Content-Type must be ${AWS_JSON_1_1}`);
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(request.body.toString('utf8') || '{}') as Record<string, unknown>;
    } catch {
      throw new AwsFault('SerializationException', 'the request body is not JSON');
    }
    return awsJsonResponse(200, await operation(name, body));
  } catch (err) {
    const fault = err instanceof AwsFault ? err : protocol.internalFault((err as Error).message);
    return awsJsonResponse(fault.status, { __type: fault.type, [protocol.messageKey]: fault.message });
  }
}

function awsJsonResponse(status: number, body: unknown): DoubleResponse {
  return {
    status,
    headers: { 'content-type': AWS_JSON_1_1, 'x-amzn-requestid': randomUUID() },
    body: JSON.stringify(body),
  };
}

// ---------------------------------------------------------------------------------------------------------
// The Query protocol (STS, ...): form-encoded requests, XML answers

export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The parameters of a Query protocol request (its form-encoded body). */
export function queryParameters(request: DoubleRequest): URLSearchParams {
  return new URLSearchParams(request.body.toString('utf8'));
}

/** An XML answer of the Query protocol. */
export function queryResponse(status: number, xml: string, requestId: string): DoubleResponse {
  return { status, headers: { 'content-type': 'text/xml', 'x-amzn-requestid': requestId }, body: xml };
}

/** The `<ErrorResponse>` document a Query protocol service answers for `fault`. */
export function queryErrorResponse(fault: AwsFault, xmlns: string, requestId: string): DoubleResponse {
  return queryResponse(
    fault.status,
    `<ErrorResponse xmlns="${xmlns}">
  <Error>
    <Type>Sender</Type>
    <Code>${fault.type}</Code>
    <Message>${xmlEscape(fault.message)}</Message>
  </Error>
  <RequestId>${requestId}</RequestId>
</ErrorResponse>
`,
    requestId,
  );
}

// ---------------------------------------------------------------------------------------------------------
// The REST-JSON protocol (Lambda, ...)

/** A REST-JSON error: the code in `x-amzn-ErrorType`, `{"Type": "User", "Message"}` as the body. */
export function restJsonErrorResponse(
  fault: AwsFault,
  requestId: string,
  headers: Record<string, string> = {},
): DoubleResponse {
  return {
    status: fault.status,
    headers: {
      'content-type': 'application/json',
      'x-amzn-requestid': requestId,
      ...headers,
      'x-amzn-errortype': fault.type,
    },
    body: JSON.stringify({ Type: 'User', Message: fault.message }),
  };
}
