import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { JsonLogger as Logger } from '../../json-log.js';
import type { Dialer } from '../dialer.js';
import type { PacketReader } from '../packet-reader.js';

/** What a protocol's tunnel start hands back: the upstream to relay to, and bytes already read. */
export interface TunnelSetup {
  upstream: Duplex;
  /** Client bytes read past the handshake, to send upstream before relaying. */
  toUpstream?: Buffer;
  /** Upstream bytes read past the handshake, to send to the client before relaying. */
  toClient?: Buffer;
}

export interface TunnelContext {
  client: net.Socket;
  reader: PacketReader;
  /** The current credentials, and TCP and mutual TLS to the database with them. */
  dialer: Dialer;
  log: Logger;
  startupTimeoutMs: number;
  /** How long to wait for the database during the protocol's TLS start. */
  dialTimeoutMs: number;
}

/**
 * Starts one tunnelled connection: speaks the protocol's opening with the client, opens the upstream
 * mutual-TLS connection with the current certificate through the dialer, and returns it for relaying.
 * Returns undefined when the connection was fully handled (e.g. a PostgreSQL CancelRequest). On failure it
 * writes an error in the client's protocol where there is one, then throws.
 */
export type TunnelHandler = (ctx: TunnelContext) => Promise<TunnelSetup | undefined>;
