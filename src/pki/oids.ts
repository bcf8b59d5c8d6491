/**
 * Object identifiers the broker owns. The arc is a `2.25.<uuid>` arc (ITU-T X.667): any party may mint one
 * from a random UUID without registration, so our private extensions never collide with anyone else's.
 */
export const BROKER_ARC = '2.25.247603816785237187016962744391452163183';

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
/** Marks which kind of certificate this is (bot-identity, db-client, db-server, authority-server). */
export const OID_CERT_ROLE = `${BROKER_ARC}.3.1`;
