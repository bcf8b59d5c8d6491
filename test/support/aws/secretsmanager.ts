/**
 * An AWS Secrets Manager double for tests that speaks the Secrets Manager JSON 1.1 protocol (`POST /`,
 * `X-Amz-Target: secretsmanager.<Operation>`, `application/x-amz-json-1.1`, timestamps as epoch seconds,
 * errors as `{"__type": ..., "Message": ...}`), so the real `@aws-sdk/client-secrets-manager` talks to it
 * unchanged: in-process (`new SecretsManagerDouble()`, no socket) or over loopback HTTP
 * (`SecretsManagerDouble.start()`, for integration tests and child processes). See ./http-double.ts.
 *
 * What it models, after the AWS API reference:
 * - CreateSecret (with or without an initial SecretString/SecretBinary; the first version gets AWSCURRENT; a
 *   retry with the same ClientRequestToken and value is ignored and answers as the first call did),
 *   PutSecretValue, GetSecretValue, DescribeSecret, UpdateSecretVersionStage, ListSecretVersionIds; secrets
 *   are found by name or by full ARN.
 * - Version stages: one version per label. PutSecretValue without VersionStages moves AWSCURRENT to the new
 *   version; with VersionStages it attaches only those labels (taking each off whichever version had it),
 *   except that the very first version of a secret always gets AWSCURRENT too. Whenever AWSCURRENT moves
 *   (PutSecretValue or UpdateSecretVersionStage), AWSPREVIOUS moves to the version it left.
 * - ClientRequestToken idempotency: a token equal to an existing version id with the same value succeeds
 *   and changes nothing (no labels move); with another value → ResourceExistsException. Tokens must be
 *   32-64 characters (ValidationException).
 * - UpdateSecretVersionStage: moving a label that another version holds needs RemoveFromVersionId naming
 *   exactly that version (else InvalidParameterException); RemoveFromVersionId alone takes the label off
 *   (it must be there; AWSCURRENT cannot be removed without moving it).
 * - GetSecretValue by VersionId and/or VersionStage (both must name the same version; AWSCURRENT when
 *   neither is given); deprecated versions (no labels) stay readable by VersionId.
 * - Limits: SecretString/SecretBinary over 65,536 bytes → ValidationException; at most 100 versions per
 *   secret, the oldest deprecated ones are dropped beyond that.
 * - Errors: ResourceNotFoundException (unknown secret, version or label), ResourceExistsException,
 *   InvalidParameterException, InvalidRequestException, ValidationException, UnknownOperationException.
 *
 * What it does not model: request signatures (SigV4 is not checked) and IAM or resource policies; KMS
 * encryption (KmsKeyId is stored and echoed only); rotation (RotateSecret, rotation Lambdas, the
 * AWSPENDING rotation protocol's own checks); replication and multi-region secrets; DeleteSecret and the
 * recovery window; tags and other operations; partial ARNs; the rule that versions younger than 24 hours
 * are never removed; quotas, throttling and latency (inject faults with `fail(...)` or with
 * aws-sdk-client-mock); pagination of ListSecretVersionIds (everything comes back in one page).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import {
  AwsFault,
  type AwsJsonProtocol,
  type DoubleRequest,
  type DoubleResponse,
  HttpDouble,
  TEST_REGION as REGION,
  serveAwsJson,
  TEST_CREDENTIALS,
} from './http-double.js';

const ACCOUNT = '111122223333';
const MAX_VALUE_BYTES = 65_536;
const MAX_VERSIONS = 100;
const CURRENT = 'AWSCURRENT';
const PREVIOUS = 'AWSPREVIOUS';

/** One request the double received: its operation and its JSON body. */
export interface SecretsManagerRequestRecord {
  operation: string;
  body: Record<string, unknown>;
}

/** A version as the double stores it (a copy is handed out). */
export interface StoredVersion {
  versionId: string;
  secretString?: string;
  /** base64, as on the wire. */
  secretBinary?: string;
  stages: string[];
  created: Date;
}

interface StoredSecret {
  name: string;
  arn: string;
  description?: string;
  kmsKeyId?: string;
  created: Date;
  lastChanged: Date;
  /** In creation order. */
  versions: Map<string, StoredVersion>;
}

const PROTOCOL: AwsJsonProtocol = {
  targetPrefix: 'secretsmanager.',
  messageKey: 'Message',
  requireContentType: true,
  internalFault: (message) => new AwsFault('InternalServiceError', message, 500),
};

interface InjectedFault {
  operation: string;
  type: string;
  message: string;
  status: number;
  remaining: number;
}

const epochSeconds = (d: Date) => d.getTime() / 1000;

export class SecretsManagerDouble extends HttpDouble {
  /** Every request, in order of arrival (faulted ones included). */
  readonly requests: SecretsManagerRequestRecord[] = [];
  private readonly secrets = new Map<string, StoredSecret>();
  private readonly faults: InjectedFault[] = [];

  /** A double serving over loopback HTTP (`endpoint`), for integration tests and child processes. */
  static async start(): Promise<SecretsManagerDouble> {
    const double = new SecretsManagerDouble();
    await double.listen();
    return double;
  }

  /**
   * A real SDK client for this double: in-process, or over loopback when it listens (test credentials; one
   * attempt, so faults surface at once).
   */
  client(options: { maxAttempts?: number } = {}): SecretsManagerClient {
    return new SecretsManagerClient({
      region: REGION,
      ...this.transport(),
      credentials: TEST_CREDENTIALS,
      maxAttempts: options.maxAttempts ?? 1,
    });
  }

  /** Makes the next `times` calls of `operation` fail with the given AWS error type. */
  fail(
    operation: string,
    fault: { type?: string; message?: string; status?: number; times?: number } = {},
  ): void {
    this.faults.push({
      operation,
      type: fault.type ?? 'InternalServiceError',
      message: fault.message ?? `injected ${fault.type ?? 'InternalServiceError'}`,
      status: fault.status ?? (fault.type && fault.type !== 'InternalServiceError' ? 400 : 500),
      remaining: fault.times ?? 1,
    });
  }

  /** Requests of one operation, e.g. `GetSecretValue`. */
  requestsOf(operation: string): SecretsManagerRequestRecord[] {
    return this.requests.filter((r) => r.operation === operation);
  }

  /** Copies of a secret's versions in creation order (deprecated ones included); [] for unknown secrets. */
  versions(secretId: string): StoredVersion[] {
    const secret = this.find(secretId);
    return secret ? [...secret.versions.values()].map((v) => ({ ...v, stages: [...v.stages] })) : [];
  }

  /** The version holding `stage`, or undefined. */
  holder(secretId: string, stage: string): StoredVersion | undefined {
    return this.versions(secretId).find((v) => v.stages.includes(stage));
  }

  protected respond(request: DoubleRequest): Promise<DoubleResponse> {
    return serveAwsJson(request, PROTOCOL, (operation, body) => {
      this.requests.push({ operation, body });
      const injected = this.faults.find((f) => f.operation === operation && f.remaining > 0);
      if (injected) {
        injected.remaining--;
        throw new AwsFault(injected.type, injected.message, injected.status);
      }
      return this.dispatch(operation, body);
    });
  }

  private dispatch(operation: string, body: Record<string, unknown>): unknown {
    switch (operation) {
      case 'CreateSecret':
        return this.createSecret(body);
      case 'PutSecretValue':
        return this.putSecretValue(body);
      case 'GetSecretValue':
        return this.getSecretValue(body);
      case 'DescribeSecret':
        return this.describeSecret(body);
      case 'UpdateSecretVersionStage':
        return this.updateSecretVersionStage(body);
      case 'ListSecretVersionIds':
        return this.listSecretVersionIds(body);
      default:
        throw new AwsFault(
          'UnknownOperationException',
          `operation ${operation} is not modelled by the double`,
        );
    }
  }

  // ---- lookups and validation ----

  private find(secretId: unknown): StoredSecret | undefined {
    if (typeof secretId !== 'string') return undefined;
    const byName = this.secrets.get(secretId);
    if (byName) return byName;
    for (const s of this.secrets.values()) if (s.arn === secretId) return s;
    return undefined;
  }

  private secret(secretId: unknown): StoredSecret {
    if (typeof secretId !== 'string' || secretId.length === 0 || secretId.length > 2048)
      throw new AwsFault(
        'ValidationException',
        "1 validation error detected: Value at 'secretId' failed to satisfy constraint: Member must have length between 1 and 2048",
      );
    const s = this.find(secretId);
    if (!s)
      throw new AwsFault('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
    return s;
  }

  private token(value: unknown): string | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || value.length < 32 || value.length > 64)
      throw new AwsFault(
        'ValidationException',
        "1 validation error detected: Value at 'clientRequestToken' failed to satisfy constraint: Member must have length between 32 and 64",
      );
    return value;
  }

  /** The value fields of a request, checked against the size limit; undefined when neither is given. */
  private value(body: Record<string, unknown>): { secretString?: string; secretBinary?: string } | undefined {
    const { SecretString: str, SecretBinary: bin } = body;
    if (str !== undefined && bin !== undefined)
      throw new AwsFault(
        'InvalidParameterException',
        'You can provide SecretString or SecretBinary, not both.',
      );
    if (typeof str === 'string') {
      if (Buffer.byteLength(str, 'utf8') > MAX_VALUE_BYTES)
        throw new AwsFault(
          'ValidationException',
          `1 validation error detected: Value at 'secretString' failed to satisfy constraint: Member must have length less than or equal to ${MAX_VALUE_BYTES}`,
        );
      return { secretString: str };
    }
    if (typeof bin === 'string') {
      if (Buffer.from(bin, 'base64').length > MAX_VALUE_BYTES)
        throw new AwsFault(
          'ValidationException',
          `1 validation error detected: Value at 'secretBinary' failed to satisfy constraint: Member must have length less than or equal to ${MAX_VALUE_BYTES}`,
        );
      return { secretBinary: bin };
    }
    return undefined;
  }

  private stageList(value: unknown): string[] | undefined {
    if (value === undefined) return undefined;
    if (
      !Array.isArray(value) ||
      value.length < 1 ||
      value.length > 20 ||
      !value.every((s) => typeof s === 'string' && s.length >= 1 && s.length <= 256)
    )
      throw new AwsFault(
        'ValidationException',
        "1 validation error detected: Value at 'versionStages' failed to satisfy constraint: 1-20 labels of 1-256 characters",
      );
    return [...new Set(value as string[])];
  }

  // ---- stage bookkeeping ----

  private holderOf(secret: StoredSecret, stage: string): StoredVersion | undefined {
    for (const v of secret.versions.values()) if (v.stages.includes(stage)) return v;
    return undefined;
  }

  /** Puts `stage` on `version` and takes it off every other version; AWSCURRENT drags AWSPREVIOUS along. */
  private attach(secret: StoredSecret, stage: string, version: StoredVersion): void {
    const old = this.holderOf(secret, stage);
    if (old === version) return;
    if (old) old.stages = old.stages.filter((s) => s !== stage);
    version.stages.push(stage);
    if (stage === CURRENT && old) this.attach(secret, PREVIOUS, old);
    secret.lastChanged = new Date();
  }

  /** Drops the oldest deprecated (unlabelled) versions while there are more than 100. */
  private prune(secret: StoredSecret): void {
    for (const v of [...secret.versions.values()]) {
      if (secret.versions.size <= MAX_VERSIONS) return;
      if (v.stages.length === 0) secret.versions.delete(v.versionId);
    }
  }

  private addVersion(
    secret: StoredSecret,
    versionId: string,
    value: { secretString?: string; secretBinary?: string },
    stages: readonly string[],
  ): StoredVersion {
    const first = secret.versions.size === 0;
    const version: StoredVersion = { versionId, ...value, stages: [], created: new Date() };
    secret.versions.set(versionId, version);
    // The first version of a secret is always AWSCURRENT, whatever labels the request names.
    for (const stage of first && !stages.includes(CURRENT) ? [...stages, CURRENT] : stages)
      this.attach(secret, stage, version);
    secret.lastChanged = new Date();
    this.prune(secret);
    return version;
  }

  // ---- operations ----

  private createSecret(body: Record<string, unknown>): unknown {
    const name = body.Name;
    if (typeof name !== 'string' || !/^[A-Za-z0-9/_+=.@-]{1,512}$/.test(name))
      throw new AwsFault(
        'ValidationException',
        "1 validation error detected: Value at 'name' failed to satisfy constraint: 1-512 characters of letters, digits and /_+=.@-",
      );
    const token = this.token(body.ClientRequestToken) ?? randomUUID();
    const value = this.value(body);
    const existing = this.secrets.get(name);
    if (existing) {
      // A retried CreateSecret: "If a version with this value already exists and the version SecretString
      // and SecretBinary values are the same as those in the request, then the request is ignored" (API
      // reference, CreateSecret, ClientRequestToken). Anything else names a secret that exists.
      const retried = value ? existing.versions.get(token) : undefined;
      if (
        retried &&
        retried.secretString === value?.secretString &&
        retried.secretBinary === value?.secretBinary
      )
        return { ARN: existing.arn, Name: name, VersionId: token };
      throw new AwsFault(
        'ResourceExistsException',
        `The operation failed because the secret ${name} already exists.`,
      );
    }
    const now = new Date();
    const secret: StoredSecret = {
      name,
      arn: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${name}-${randomBytes(3).toString('hex')}`,
      ...(typeof body.Description === 'string' ? { description: body.Description } : {}),
      ...(typeof body.KmsKeyId === 'string' ? { kmsKeyId: body.KmsKeyId } : {}),
      created: now,
      lastChanged: now,
      versions: new Map(),
    };
    this.secrets.set(name, secret);
    if (!value) return { ARN: secret.arn, Name: name };
    this.addVersion(secret, token, value, [CURRENT]);
    return { ARN: secret.arn, Name: name, VersionId: token };
  }

  private putSecretValue(body: Record<string, unknown>): unknown {
    const secret = this.secret(body.SecretId);
    const token = this.token(body.ClientRequestToken) ?? randomUUID();
    const value = this.value(body);
    if (!value)
      throw new AwsFault(
        'InvalidParameterException',
        'You must provide either SecretString or SecretBinary.',
      );
    const stages = this.stageList(body.VersionStages) ?? [CURRENT];
    const existing = secret.versions.get(token);
    if (existing) {
      if (existing.secretString !== value.secretString || existing.secretBinary !== value.secretBinary)
        throw new AwsFault(
          'ResourceExistsException',
          "You can't modify an existing version, you can only create a new version.",
        );
      // Idempotent repeat: succeeds and does nothing (no label moves).
      return { ARN: secret.arn, Name: secret.name, VersionId: token, VersionStages: [...existing.stages] };
    }
    const version = this.addVersion(secret, token, value, stages);
    return { ARN: secret.arn, Name: secret.name, VersionId: token, VersionStages: [...version.stages] };
  }

  private getSecretValue(body: Record<string, unknown>): unknown {
    const secret = this.secret(body.SecretId);
    const versionId = body.VersionId as string | undefined;
    const stage = (body.VersionStage as string | undefined) ?? (versionId ? undefined : CURRENT);
    let version: StoredVersion | undefined;
    if (versionId !== undefined) {
      version = secret.versions.get(versionId);
      if (!version || (stage !== undefined && !version.stages.includes(stage)))
        throw new AwsFault(
          'ResourceNotFoundException',
          `Secrets Manager can't find the specified secret value for VersionId: ${versionId}${stage ? ` and staging label: ${stage}` : ''}`,
        );
    } else {
      version = this.holderOf(secret, stage as string);
      if (!version)
        throw new AwsFault(
          'ResourceNotFoundException',
          `Secrets Manager can't find the specified secret value for staging label: ${stage}`,
        );
    }
    return {
      ARN: secret.arn,
      Name: secret.name,
      VersionId: version.versionId,
      ...(version.secretString !== undefined ? { SecretString: version.secretString } : {}),
      ...(version.secretBinary !== undefined ? { SecretBinary: version.secretBinary } : {}),
      VersionStages: [...version.stages],
      CreatedDate: epochSeconds(version.created),
    };
  }

  private describeSecret(body: Record<string, unknown>): unknown {
    const secret = this.secret(body.SecretId);
    const stages: Record<string, string[]> = {};
    for (const v of secret.versions.values()) if (v.stages.length > 0) stages[v.versionId] = [...v.stages];
    return {
      ARN: secret.arn,
      Name: secret.name,
      ...(secret.description ? { Description: secret.description } : {}),
      ...(secret.kmsKeyId ? { KmsKeyId: secret.kmsKeyId } : {}),
      RotationEnabled: false,
      CreatedDate: epochSeconds(secret.created),
      LastChangedDate: epochSeconds(secret.lastChanged),
      VersionIdsToStages: stages,
    };
  }

  private updateSecretVersionStage(body: Record<string, unknown>): unknown {
    const secret = this.secret(body.SecretId);
    const stage = body.VersionStage;
    if (typeof stage !== 'string' || stage.length < 1 || stage.length > 256)
      throw new AwsFault(
        'ValidationException',
        "1 validation error detected: Value at 'versionStage' failed to satisfy constraint: Member must have length between 1 and 256",
      );
    const moveTo = body.MoveToVersionId as string | undefined;
    const removeFrom = body.RemoveFromVersionId as string | undefined;
    if (moveTo === undefined && removeFrom === undefined)
      throw new AwsFault(
        'InvalidParameterException',
        'You must specify MoveToVersionId, RemoveFromVersionId, or both.',
      );
    const version = (id: string) => {
      const v = secret.versions.get(id);
      if (!v)
        throw new AwsFault(
          'ResourceNotFoundException',
          `Secrets Manager can't find the specified secret version: ${id}`,
        );
      return v;
    };
    const holder = this.holderOf(secret, stage);
    if (removeFrom !== undefined) {
      version(removeFrom);
      if (holder?.versionId !== removeFrom)
        throw new AwsFault(
          'InvalidParameterException',
          `The staging label ${stage} is not attached to version ${removeFrom}${holder ? `; it is attached to ${holder.versionId}` : ''}.`,
        );
    }
    if (moveTo === undefined) {
      if (stage === CURRENT)
        throw new AwsFault(
          'InvalidParameterException',
          `You can't remove the staging label ${CURRENT} from a version without moving it to another version (MoveToVersionId).`,
        );
      (holder as StoredVersion).stages = (holder as StoredVersion).stages.filter((s) => s !== stage);
      secret.lastChanged = new Date();
      return { ARN: secret.arn, Name: secret.name };
    }
    const target = version(moveTo);
    if (holder && holder !== target && removeFrom === undefined)
      throw new AwsFault(
        'InvalidParameterException',
        `The parameter RemoveFromVersionId can't be empty. Staging label ${stage} is currently attached to version ${holder.versionId}, so you must explicitly reference that version in RemoveFromVersionId.`,
      );
    this.attach(secret, stage, target);
    this.prune(secret);
    return { ARN: secret.arn, Name: secret.name };
  }

  private listSecretVersionIds(body: Record<string, unknown>): unknown {
    const secret = this.secret(body.SecretId);
    const all = body.IncludeDeprecated === true;
    return {
      ARN: secret.arn,
      Name: secret.name,
      Versions: [...secret.versions.values()]
        .filter((v) => all || v.stages.length > 0)
        .map((v) => ({
          VersionId: v.versionId,
          VersionStages: [...v.stages],
          CreatedDate: epochSeconds(v.created),
        })),
    };
  }
}
