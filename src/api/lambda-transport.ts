import { InvokeCommand, type InvokeCommandOutput, type LambdaClient } from '@aws-sdk/client-lambda';
import type { AuthorityTransport } from './client.js';
import { AuthorityUnavailableError } from './errors.js';
import type { ApiRequest, ApiResponse } from './protocol.js';

/**
 * The authority API over AWS Lambda `Invoke` (RequestResponse). Invoke tells the authority nothing about
 * the caller, which is why every request carries its own proof. The SDK client is injected; build it with
 * a small `maxAttempts` (issuance is not idempotent by itself: the authority de-duplicates by request id,
 * so a retried request gets the first answer rather than a second certificate or a second renewal).
 */
export class LambdaInvokeTransport implements AuthorityTransport {
  readonly description: string;
  constructor(
    private readonly client: LambdaClient,
    private readonly functionName: string,
  ) {
    this.description = `lambda ${functionName}`;
  }

  async send(request: ApiRequest): Promise<ApiResponse> {
    let out: InvokeCommandOutput;
    try {
      out = await this.client.send(
        new InvokeCommand({
          FunctionName: this.functionName,
          InvocationType: 'RequestResponse',
          Payload: Buffer.from(JSON.stringify(request)),
        }),
      );
    } catch (err) {
      throw new AuthorityUnavailableError(
        `cannot invoke the authority function ${this.functionName}: ${(err as Error).name}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    const text = out.Payload ? Buffer.from(out.Payload).toString('utf8') : '';
    if (out.FunctionError)
      throw new AuthorityUnavailableError(
        `the authority function ${this.functionName} failed (${out.FunctionError}); see its CloudWatch logs (request id ${request.requestId})`,
      );
    try {
      return JSON.parse(text) as ApiResponse;
    } catch {
      throw new AuthorityUnavailableError(
        `the authority function ${this.functionName} returned something that is not JSON`,
      );
    }
  }
}
