/**
 * The email.local template function: the local part of an address, parsed as Go's net/mail.ParseAddress
 * parses it (RFC 5322 address or `Name <address>`), which Teleport's EmailLocal (lib/utils/parse/parse.go)
 * relies on. An address Go would refuse is refused here too, so a template never yields a value Teleport's
 * would not.
 */
import { ExpressionError } from './syntax.js';

// atext of RFC 5322, plus non-ASCII (RFC 6532), as Go's isAtext accepts.
const ATEXT = /[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10FFFF}]/u;

class AddressReader {
  i = 0;
  constructor(readonly s: string) {}

  fail(reason: string): never {
    throw new ExpressionError(`failed to parse "email.local" argument ${JSON.stringify(this.s)}: ${reason}`);
  }

  /** Whitespace and (nested) comments. */
  skipCFWS(): void {
    for (;;) {
      while (/[ \t\r\n]/.test(this.s[this.i] ?? '')) this.i++;
      if (this.s[this.i] !== '(') return;
      let depth = 0;
      do {
        const c = this.s[this.i++];
        if (c === undefined) this.fail('unclosed comment');
        if (c === '\\') this.i++;
        else if (c === '(') depth++;
        else if (c === ')') depth--;
      } while (depth > 0);
    }
  }

  /** An atom; with `dot`, a dot-atom. `permissive` allows the stray dots Go tolerates in local parts. */
  atom(dot: boolean, permissive: boolean): string {
    const start = this.i;
    while (this.i < this.s.length) {
      const c = String.fromCodePoint(this.s.codePointAt(this.i) as number);
      if (!(ATEXT.test(c) || (dot && c === '.'))) break;
      this.i += c.length;
    }
    const atom = this.s.slice(start, this.i);
    if (atom === '') this.fail('invalid string');
    if (dot && !permissive && (atom.startsWith('.') || atom.endsWith('.') || atom.includes('..')))
      this.fail(`invalid dot-atom ${JSON.stringify(atom)}`);
    return atom;
  }

  quoted(): string {
    this.i++; // opening quote
    let out = '';
    for (;;) {
      const c = this.s[this.i++];
      if (c === undefined) this.fail('unclosed quoted-string');
      if (c === '"') break;
      if (c === '\\') {
        const next = this.s[this.i++];
        if (next === undefined) this.fail('unclosed quoted-string');
        out += next;
      } else out += c;
    }
    if (out === '') this.fail('empty quoted-string');
    return out;
  }

  /** addr-spec: local-part "@" domain; returns the local part. */
  addrSpec(): string {
    this.skipCFWS();
    const local = this.s[this.i] === '"' ? this.quoted() : this.atom(true, true);
    this.skipCFWS();
    if (this.s[this.i] !== '@') this.fail('missing @ in addr-spec');
    this.i++;
    this.skipCFWS();
    if (this.s[this.i] === '[') {
      const end = this.s.indexOf(']', this.i);
      if (end < 0) this.fail('unclosed domain-literal');
      this.i = end + 1;
    } else this.atom(true, false);
    this.skipCFWS();
    return local;
  }

  /** The optional display name before `<`: words (atoms or quoted strings), dots allowed (obs-phrase). */
  phrase(): void {
    let words = 0;
    for (;;) {
      this.skipCFWS();
      const c = this.s[this.i];
      if (c === '<' || c === undefined) break;
      if (c === '"') this.quoted();
      else this.atom(true, true);
      words++;
    }
    if (words === 0 && this.s[this.i] !== '<') this.fail('no address');
  }
}

/** The local part of an email address, or an ExpressionError when Go's ParseAddress would refuse it. */
export function parseEmailLocalPart(value: string): string {
  if (value === '') throw new ExpressionError('found empty "email.local" argument');
  // Without angle brackets the whole value is an addr-spec; with them, a display name comes first.
  const r = new AddressReader(value);
  let local: string;
  if (value.includes('<')) {
    r.phrase();
    r.i++; // '<'
    local = r.addrSpec();
    if (r.s[r.i] !== '>') r.fail('unclosed angle-addr');
    r.i++;
  } else local = r.addrSpec();
  r.skipCFWS();
  if (r.i !== value.length) r.fail(`expected single address, got ${JSON.stringify(value.slice(r.i))}`);
  // Teleport splits mail.Address.Address at its first "@".
  return local.split('@')[0] as string;
}
