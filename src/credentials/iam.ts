/** The wire vocabulary of the `iam` join method, shared by the bot that signs and the authority that checks. Pure. */

/** The only body accepted: GetCallerIdentity has no parameters, so nothing else may ride along. */
export const GET_CALLER_IDENTITY_BODY = 'Action=GetCallerIdentity&Version=2011-06-15';

/** The signed header that carries the challenge; it must be listed in SignedHeaders. */
export const CHALLENGE_HEADER = 'x-broker-challenge';

/** A signed HTTP request as the bot built it and the authority receives it. Header names are lowercase. */
export interface SignedStsRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * The regional STS endpoint of `region`, signed with that region: `sts.<region>.amazonaws.com`, or
 * `.amazonaws.com.cn` in the China partition (`cn-*` regions).
 */
export function stsHostOf(region: string): string {
  return `sts.${region}.amazonaws.com${region.startsWith('cn-') ? '.cn' : ''}`;
}
