/**
 * Object identifiers the broker owns. The arc is the broker's UUID (ba46c2b0-b9e0-21cb-44a4-ec1be0217c6f) under
 * `1.2.840.113556.1.8000.2554`, the arc set aside for OIDs minted from a GUID without registration: the GUID
 * `aaaabbbb-cccc-dddd-eeee-ffffffgggggg` becomes `…2554.A.B.C.D.E.F.G` (16-bit A–E, 24-bit F and G). Every arc
 * stays below 2^28, which RFC 5280 asks every implementation to read; Go's crypto/x509 (FerretDB, CockroachDB)
 * refuses arcs over 31 bits, so the same UUID as one `2.25.<uuid>` arc would lock those servers out.
 */
export const BROKER_ARC = '1.2.840.113556.1.8000.2554.47686.49840.47584.8651.17572.15473632.2194543';

/**
 * The arc certificates carried before: the same UUID as a `2.25` arc. Read (never written) so that bot
 * identities issued under it still renew; parse.ts maps each of its OIDs to the current one.
 */
export const LEGACY_BROKER_ARC = '2.25.247603816785237187016962744391452163183';

/** Route of a database client certificate: which service, protocol and database it is for. */
export const OID_DB_SERVICE = `${BROKER_ARC}.1.1`;
export const OID_DB_PROTOCOL = `${BROKER_ARC}.1.2`;
export const OID_DB_DATABASE = `${BROKER_ARC}.1.3`;
export const OID_DB_USERNAME = `${BROKER_ARC}.1.4`;
/** The bot a certificate (identity or database) was issued to. */
export const OID_BOT_NAME = `${BROKER_ARC}.2.1`;
/** The identity's generation counter; see the renewal rules in src/authority/identity.ts. */
export const OID_BOT_GENERATION = `${BROKER_ARC}.2.2`;
/** The identity's lineage: a random 128-bit id (hex) a join starts and renewals keep; see identity.ts. */
export const OID_BOT_LINEAGE = `${BROKER_ARC}.2.3`;
/** The roles a database client certificate was issued under (comma-separated): the bot's, or the subset asked for. */
export const OID_CERT_ROLES = `${BROKER_ARC}.2.4`;
/** Marks which kind of certificate this is (bot-identity, db-client, db-server, authority-server). */
export const OID_CERT_ROLE = `${BROKER_ARC}.3.1`;
