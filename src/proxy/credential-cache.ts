import { type Clock, systemClock } from '../clock.js';
import { BrokerError, errorMessage } from '../errors.js';
import { isoTime } from '../iso-time.js';
import type { JsonLogger as Logger } from '../json-log.js';
import { type LoadedCredentials, loadCredentials } from './loaded-credentials.js';
import type { BundleSource } from './sources/bundle-source.js';

/** No usable credentials: nothing loaded yet, or the newest bundle has expired. */
export class CredentialsUnavailableError extends BrokerError {
  override name = 'CredentialsUnavailableError';
  constructor(message: string) {
    super('credentials_unavailable', message);
  }
}

export interface RefreshStats {
  successes: number;
  failures: number;
}

/**
 * Keeps the newest valid credentials in memory. It re-reads the source periodically and well ahead of
 * expiry, and on demand (SIGHUP). A failed or partial read keeps the bundle it has and retries with
 * back-off; a bundle older than the one held is ignored.
 */
export class CredentialCache {
  private creds: LoadedCredentials | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  readonly stats: RefreshStats = { successes: 0, failures: 0 };
  private readonly clock: Clock;

  constructor(
    private readonly source: BundleSource,
    private readonly options: {
      log: Logger;
      clock?: Clock;
      pollMs?: number;
      onChange?: (c: LoadedCredentials) => void;
    },
  ) {
    this.clock = options.clock ?? systemClock;
  }

  /** The current credentials; throws CredentialsUnavailableError when there are none valid now. */
  current(): LoadedCredentials {
    const c = this.creds;
    if (!c)
      throw new CredentialsUnavailableError(
        `no credentials loaded yet from ${this.source.description}; is the bot running?`,
      );
    if (c.expiresAt <= this.clock.now())
      throw new CredentialsUnavailableError(
        `the database certificate (serial ${c.serial}) expired at ${isoTime(c.expiresAt)} and no fresh one has arrived from ${this.source.description}; check the bot`,
      );
    return c;
  }

  /** True when credentials are loaded and not expired. */
  get ready(): boolean {
    return this.creds !== undefined && this.creds.expiresAt > this.clock.now();
  }

  get loaded(): LoadedCredentials | undefined {
    return this.creds;
  }

  /** Reads the source once. Returns true when it now holds valid credentials. */
  async refresh(): Promise<boolean> {
    const { log } = this.options;
    try {
      const bundle = await this.source.load();
      if (!bundle) throw new CredentialsUnavailableError(`no bundle in ${this.source.description} yet`);
      if (bundle.serial !== this.creds?.serial) {
        const next = loadCredentials(bundle);
        if (this.creds && next.expiresAt < this.creds.expiresAt) {
          log.warn(
            { serial: next.serial, held: this.creds.serial },
            'ignoring a bundle older than the one in use',
          );
        } else {
          const previous = this.creds?.serial;
          this.creds = next;
          log.info(
            {
              serial: next.serial,
              previous,
              expires: isoTime(next.expiresAt),
              source: this.source.description,
            },
            'loaded database credentials',
          );
          this.options.onChange?.(next);
        }
      }
      this.failures = 0;
      this.stats.successes++;
      return this.ready;
    } catch (err) {
      this.failures++;
      this.stats.failures++;
      log.warn(
        { failures: this.failures, source: this.source.description, err },
        `credential refresh failed; keeping the current bundle: ${errorMessage(err)}`,
      );
      return this.ready;
    }
  }

  /** Next read: every pollMs (default 10 s) or a third of the time left, sooner while failing (back-off from 1 s). */
  private nextDelayMs(): number {
    const poll = this.options.pollMs ?? 10_000;
    if (this.failures > 0)
      return Math.min(poll, 1000 * 2 ** Math.min(this.failures - 1, 5)) * (0.5 + Math.random() / 2);
    if (!this.creds) return Math.min(poll, 1000);
    const left = this.creds.expiresAt.getTime() - this.clock.now().getTime();
    return Math.max(1000, Math.min(poll, left / 3));
  }

  /** Loads once and keeps refreshing until stop(). */
  async start(): Promise<void> {
    await this.refresh();
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(async () => {
      await this.refresh();
      this.schedule();
    }, this.nextDelayMs());
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
