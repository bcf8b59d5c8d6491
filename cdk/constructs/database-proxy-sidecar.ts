import { existsSync } from 'node:fs';
import path from 'node:path';
import { Aspects, Duration, type IAspect, IgnoreMode } from 'aws-cdk-lib';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct, type IConstruct } from 'constructs';
import type { DbProtocol } from '../../src/credentials/route.js';
import type { BotOutput } from './bot-output.js';
import { REPO_ROOT } from './broker-function.js';
import { badProp, checkDuration, checkInteger } from './props.js';
import { ProxySidecarFindings } from './sidecar-findings.js';

/**
 * The only directory the proxy's unix socket may live in: proxy-container/Dockerfile creates it owned by the
 * image's `node` user (mode 0700) and declares it a VOLUME, so the task volume mounted here starts with that
 * owner. Any other directory would be a root-owned 0755 bind mount the proxy cannot create a socket in.
 */
export const PROXY_SOCKET_DIRECTORY = '/var/run/broker';

/** The port a protocol's clients expect, the proxy's default listening port for an output. */
export const DEFAULT_PORTS: Record<DbProtocol, number> = {
  postgres: 5432,
  cockroachdb: 26257,
  mysql: 3306,
  mongodb: 27017,
  redis: 6379,
};

/** What proxy-container/Dockerfile copies from the repository root; nothing else enters the build context. */
const SOURCE_BUILD_CONTEXT = [
  'package.json',
  'package-lock.json',
  'tsconfig.json',
  'scripts',
  'src',
  'functions',
  'proxy-container',
  'examples',
];
/** What it copies from an installed package (PROXY_BUNDLE=prebuilt): the bundle `npm run build` made. */
const PREBUILT_BUILD_CONTEXT = [
  'proxy-container/Dockerfile',
  'proxy-container/healthcheck.mjs',
  'dist/proxy-container',
];

/**
 * The proxy image built from this package: from the sources in the repository, or from the prebuilt bundle
 * in an installed package (which ships no sources).
 */
function proxyImageAsset(architecture: ecs.CpuArchitecture | undefined): ecs.ContainerImage {
  const fromSources = existsSync(path.join(REPO_ROOT, 'src', 'cli', 'main.ts'));
  const context = fromSources ? SOURCE_BUILD_CONTEXT : PREBUILT_BUILD_CONTEXT;
  return ecs.ContainerImage.fromAsset(REPO_ROOT, {
    file: 'proxy-container/Dockerfile',
    ignoreMode: IgnoreMode.DOCKER,
    exclude: ['*', ...context.map((p) => `!${p}`)],
    buildArgs: { PROXY_BUNDLE: fromSources ? 'build' : 'prebuilt' },
    platform: architecture === ecs.CpuArchitecture.ARM64 ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
  });
}

export interface DatabaseProxySidecarProps {
  /**
   * The proxy container image. Tests inject one (e.g. ecs.ContainerImage.fromRegistry) to skip the build.
   * @default - built at deploy time from proxy-container/Dockerfile with the repository root as context
   */
  readonly image?: ecs.ContainerImage;
  /**
   * The CPU architecture the default image is built for; it must match the task definition's runtime
   * platform.
   * @default ecs.CpuArchitecture.X86_64 (the Fargate default)
   */
  readonly cpuArchitecture?: ecs.CpuArchitecture;
}

export interface AddProxySidecarOptions {
  /**
   * The bot output whose bundle the proxy serves (it reads that secret only).
   * @default - none: required
   */
  readonly output: BotOutput;
  /**
   * TCP port on 127.0.0.1 the proxy listens on. Give either `port` or `unixSocket`.
   * @default - the default port of the output's protocol (5432 when the protocol is unknown)
   */
  readonly port?: number;
  /**
   * Listen on this unix socket instead: a file name in `/var/run/broker` (PROXY_SOCKET_DIRECTORY), e.g.
   * `/var/run/broker/db.sock`; any other path is refused. The socket is mode 0600, owned by the image's
   * `node` user (uid 1000); the directory is a task volume mounted into every container of the task at the
   * same path, so the application must run as uid 1000 to connect.
   * @default - a TCP port
   */
  readonly unixSocket?: string;
  /**
   * Tunnel mode: the application connects without TLS and the proxy opens the mutual-TLS connection with
   * the current certificate. With `false` the proxy relays bytes and the application does TLS itself.
   * @default true
   */
  readonly tunnel?: boolean;
  /**
   * Whether the task stops when the proxy stops.
   * @default true
   */
  readonly essential?: boolean;
  /**
   * How long ECS waits after SIGTERM before it kills the proxy (Fargate allows up to 2 minutes).
   * @default Duration.seconds(30)
   */
  readonly stopTimeout?: Duration;
  /**
   * How long the proxy lets open connections drain after SIGTERM; must end before `stopTimeout`.
   * @default stopTimeout less 5 seconds
   */
  readonly maxSigtermDelay?: Duration;
  /**
   * Where /livez, /readyz and /metrics listen (loopback; the health check calls /readyz there).
   * @default '127.0.0.1:9090'
   */
  readonly diagAddr?: string;
  /**
   * Most client connections the proxy accepts at once.
   * @default - unlimited
   */
  readonly maxConnections?: number;
  /**
   * The container's name in the task definition.
   * @default 'broker-proxy'
   */
  readonly containerName?: string;
  /**
   * Soft memory limit in MiB.
   * @default 128
   */
  readonly memoryReservationMiB?: number;
  /**
   * Log retention of the container's own log group.
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: logs.RetentionDays;
}

/** Broker proxy containers per task definition: they never wait for each other. */
const proxiesOf = new WeakMap<ecs.TaskDefinition, Set<ecs.ContainerDefinition>>();
/** The socket volumes added to each task definition. */
const socketVolumes = new WeakMap<ecs.TaskDefinition, Set<string>>();

/**
 * Makes every container of a task definition that is not a broker proxy wait until the proxy is HEALTHY
 * (its /readyz says a valid bundle is loaded), and mounts the socket volume when there is one. An aspect,
 * so that containers added after `addTo` are covered too.
 */
class WaitForProxy implements IAspect {
  constructor(
    private readonly taskDefinition: ecs.TaskDefinition,
    private readonly proxy: ecs.ContainerDefinition,
    private readonly socketMount: ecs.MountPoint | undefined,
  ) {}

  visit(node: IConstruct): void {
    if (!(node instanceof ecs.ContainerDefinition) || node.taskDefinition !== this.taskDefinition) return;
    if (proxiesOf.get(this.taskDefinition)?.has(node)) return;
    if (!node.containerDependencies.some((d) => d.container === this.proxy))
      node.addContainerDependencies({
        container: this.proxy,
        condition: ecs.ContainerDependencyCondition.HEALTHY,
      });
    if (this.socketMount && !node.mountPoints.some((m) => m.sourceVolume === this.socketMount?.sourceVolume))
      node.addMountPoints(this.socketMount);
  }
}

/**
 * The broker's database proxy as an ECS sidecar (proxy-container/): it reads one output's bundle from
 * Secrets Manager, listens on loopback (or a unix socket) and opens mutual-TLS connections to the database
 * with the current certificate. `addTo` adds it to a task definition with a health check on its readiness,
 * makes the other containers start only once it is healthy, sizes the stop timeout to its drain, and grants
 * the task role read on that one secret.
 */
export class DatabaseProxySidecar extends Construct {
  readonly image: ecs.ContainerImage;

  constructor(scope: Construct, id: string, props: DatabaseProxySidecarProps = {}) {
    super(scope, id);
    this.image = props.image ?? proxyImageAsset(props.cpuArchitecture);
  }

  /** Adds the proxy for `options.output` to `taskDefinition` and returns its container. */
  addTo(taskDefinition: ecs.TaskDefinition, options: AddProxySidecarOptions): ecs.ContainerDefinition {
    const { output } = options;
    const containerName = options.containerName ?? 'broker-proxy';
    if (options.port !== undefined && options.unixSocket !== undefined)
      badProp(
        this,
        'port and unixSocket',
        `${options.port} and ${options.unixSocket}`,
        'both given',
        'give one',
      );
    const tunnel = options.tunnel ?? true;
    const stopTimeout = options.stopTimeout ?? Duration.seconds(30);
    checkDuration(this, 'stopTimeout', stopTimeout, { min: Duration.seconds(5), max: Duration.seconds(120) });
    const maxSigtermDelay = options.maxSigtermDelay ?? Duration.seconds(stopTimeout.toSeconds() - 5);
    checkDuration(this, 'maxSigtermDelay', maxSigtermDelay, { min: Duration.seconds(0) });
    if (maxSigtermDelay.toSeconds() >= stopTimeout.toSeconds())
      badProp(
        this,
        'maxSigtermDelay',
        maxSigtermDelay,
        `not shorter than stopTimeout (${stopTimeout.toHumanString()}): ECS would kill the proxy mid-drain`,
        'leave a few seconds between them, e.g. 25 seconds with a 30 second stopTimeout',
      );
    if (options.maxConnections !== undefined)
      checkInteger(this, 'maxConnections', options.maxConnections, 1, 1_000_000);
    const diagAddr = options.diagAddr ?? '127.0.0.1:9090';
    if (!/^(127\.\d+\.\d+\.\d+|\[::1\]|localhost):\d{1,5}$/.test(diagAddr))
      badProp(
        this,
        'diagAddr',
        diagAddr,
        'not a loopback host:port (the diagnostics endpoint stays inside the task)',
        'use e.g. 127.0.0.1:9090',
      );

    const environment: Record<string, string> = {
      BROKER_BUNDLE_SECRET_ID: output.secretArn,
      BROKER_SERVICE: output.route.service,
      BROKER_PROXY_TUNNEL: String(tunnel),
      BROKER_DIAG_ADDR: diagAddr,
      BROKER_MAX_SIGTERM_DELAY: `${maxSigtermDelay.toSeconds()}s`,
      ...(options.maxConnections !== undefined
        ? { BROKER_MAX_CONNECTIONS: String(options.maxConnections) }
        : {}),
    };
    let socketMount: ecs.MountPoint | undefined;
    if (options.unixSocket !== undefined) {
      const socket = options.unixSocket;
      // The directory must be the image's VOLUME (owned by `node`); a socket file name, no subdirectory.
      const name = path.posix.basename(socket);
      if (
        path.posix.dirname(socket) !== PROXY_SOCKET_DIRECTORY ||
        path.posix.normalize(socket) !== socket ||
        !/^[A-Za-z0-9._-]{1,80}$/.test(name) ||
        name.startsWith('.')
      )
        badProp(
          this,
          'unixSocket',
          socket,
          `not a socket file directly in ${PROXY_SOCKET_DIRECTORY}, the one directory the proxy image owns (any other path is a root-owned bind mount on Fargate, where the proxy cannot create its socket)`,
          `use e.g. ${PROXY_SOCKET_DIRECTORY}/db.sock`,
        );
      // One volume per task, whichever proxies put their sockets in it.
      const volume = 'broker-proxy-socket';
      const volumes = socketVolumes.get(taskDefinition) ?? new Set<string>();
      if (!volumes.has(volume)) taskDefinition.addVolume({ name: volume });
      socketVolumes.set(taskDefinition, volumes.add(volume));
      socketMount = { sourceVolume: volume, containerPath: PROXY_SOCKET_DIRECTORY, readOnly: false };
      environment.BROKER_PROXY_UNIX_SOCKET = socket;
    } else {
      const port = options.port ?? DEFAULT_PORTS[output.protocol ?? 'postgres'];
      checkInteger(this, 'port', port, 1, 65_535);
      // The proxy listens on 127.0.0.1: only containers sharing the task's network namespace reach it.
      if (taskDefinition.networkMode !== ecs.NetworkMode.AWS_VPC)
        badProp(
          this,
          'port',
          port,
          `the task definition's network mode is ${taskDefinition.networkMode}, where containers do not share 127.0.0.1`,
          'use NetworkMode.AWS_VPC (Fargate always does) or a unixSocket',
        );
      environment.BROKER_PROXY_PORT = String(port);
    }

    const logGroup = new logs.LogGroup(taskDefinition, `${containerName}-logs`, {
      retention: options.logRetention ?? logs.RetentionDays.THREE_MONTHS,
    });
    const container = taskDefinition.addContainer(containerName, {
      image: this.image,
      essential: options.essential ?? true,
      environment,
      memoryReservationMiB: options.memoryReservationMiB ?? 128,
      readonlyRootFilesystem: true,
      stopTimeout,
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: containerName, logGroup }),
      healthCheck: {
        // No curl in the image: a few lines of Node.js (proxy-container/healthcheck.mjs) ask the proxy's own
        // /readyz (200 once a valid bundle is loaded), without loading the proxy bundle every 10 seconds.
        command: ['CMD', 'node', '/app/healthcheck.mjs'],
        interval: Duration.seconds(10),
        timeout: Duration.seconds(5),
        retries: 3,
        startPeriod: Duration.seconds(30),
      },
    });
    if (socketMount) container.addMountPoints(socketMount);
    const proxies = proxiesOf.get(taskDefinition) ?? new Set();
    if (proxies.size === 0)
      Aspects.of(taskDefinition).add(
        new ProxySidecarFindings(taskDefinition, (name) =>
          [...proxies].some((p) => p.containerName === name),
        ),
      );
    proxies.add(container);
    proxiesOf.set(taskDefinition, proxies);
    Aspects.of(taskDefinition).add(new WaitForProxy(taskDefinition, container, socketMount));
    output.grantRead(taskDefinition.taskRole);
    // Created after the bot's first run (see BotProps.runOnDeploy): a service's first task finds a bundle.
    taskDefinition.node.addDependency(output.firstRun);
    return container;
  }
}
