/**
 * The expression syntax of Teleport's role templates (`{{...}}`) and of `db_labels_expression`. Teleport
 * parses both with Go's own expression parser (go/parser.ParseExpr, through github.com/vulcand/predicate and
 * lib/utils/typical), so this is the subset of Go expression syntax that predicate accepts: string and
 * integer literals, identifiers and selectors (`a.b.c`), index expressions (`m["k"]`), calls, parentheses,
 * `!`, `&&`, `||`, `==`, `!=`, with Go's precedence, comments and automatic semicolons.
 */

export type Node =
  | { type: 'string'; value: string }
  | { type: 'int'; value: number }
  | { type: 'ident'; path: string[] }
  | { type: 'index'; target: Node; key: Node }
  | { type: 'call'; name: string; args: Node[] }
  | { type: 'not'; operand: Node }
  | { type: 'binary'; op: '&&' | '||' | '==' | '!='; left: Node; right: Node };

/** An expression that does not parse, or does not type-check, or fails to evaluate. */
export class ExpressionError extends Error {
  override name = 'ExpressionError';
}

type Token =
  | { kind: 'ident'; text: string }
  | { kind: 'string'; value: string }
  | { kind: 'number'; text: string }
  | { kind: 'op'; text: string }
  | { kind: 'newline' };

const OPERATORS = ['&&', '||', '==', '!=', '<=', '>=', '!', '<', '>', '(', ')', '[', ']', ',', '.'];
const SIMPLE_ESCAPES: Record<string, string> = {
  a: '\u0007',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
  '\\': '\\',
  '"': '"',
};

/** Go's interpreted string literal body (strconv.Unquote): the escapes Go allows, and no others. */
function unquote(body: string): string {
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as string;
    if (c === '\n') throw new ExpressionError('newline in string literal');
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = body[++i] ?? '';
    if (e in SIMPLE_ESCAPES) out += SIMPLE_ESCAPES[e];
    else if (/[0-7]/.test(e)) {
      const oct = body.slice(i, i + 3);
      if (!/^[0-7]{3}$/.test(oct) || Number.parseInt(oct, 8) > 255)
        throw new ExpressionError(`invalid octal escape \\${oct}`);
      out += String.fromCharCode(Number.parseInt(oct, 8));
      i += 2;
    } else if (e === 'x' || e === 'u' || e === 'U') {
      const n = e === 'x' ? 2 : e === 'u' ? 4 : 8;
      const hex = body.slice(i + 1, i + 1 + n);
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(hex))
        throw new ExpressionError(`invalid escape \\${e}${hex}`);
      const code = Number.parseInt(hex, 16);
      if (e !== 'x' && (code > 0x10ffff || (code >= 0xd800 && code < 0xe000)))
        throw new ExpressionError(`escape \\${e}${hex} is not a valid Unicode code point`);
      out += e === 'x' ? String.fromCharCode(code) : String.fromCodePoint(code);
      i += n;
    } else throw new ExpressionError(`unknown escape sequence \\${e}`);
  }
  return out;
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    const space = /^[ \t\r]+/.exec(rest);
    if (space) {
      i += space[0].length;
      continue;
    }
    if (rest[0] === '\n' || rest.startsWith('//')) {
      const end = rest.indexOf('\n');
      tokens.push({ kind: 'newline' });
      i += end < 0 ? rest.length : end + 1;
      continue;
    }
    if (rest.startsWith('/*')) {
      const end = rest.indexOf('*/', 2);
      if (end < 0) throw new ExpressionError('comment not terminated');
      // A comment that spans lines acts like a newline (Go's scanner).
      if (rest.slice(0, end).includes('\n')) tokens.push({ kind: 'newline' });
      i += end + 2;
      continue;
    }
    const ident = /^[\p{L}_][\p{L}\p{Nd}_]*/u.exec(rest);
    if (ident) {
      tokens.push({ kind: 'ident', text: ident[0] });
      i += ident[0].length;
      continue;
    }
    const number = /^(?:\d|\.\d)[\w.]*/.exec(rest);
    if (number) {
      tokens.push({ kind: 'number', text: number[0] });
      i += number[0].length;
      continue;
    }
    if (rest[0] === '"') {
      const m = /^"((?:[^"\\\n]|\\.)*)"/s.exec(rest);
      if (!m) throw new ExpressionError('string literal not terminated');
      tokens.push({ kind: 'string', value: unquote(m[1] as string) });
      i += m[0].length;
      continue;
    }
    if (rest[0] === '`') {
      const end = rest.indexOf('`', 1);
      if (end < 0) throw new ExpressionError('raw string literal not terminated');
      tokens.push({ kind: 'string', value: rest.slice(1, end).replaceAll('\r', '') });
      i += end + 1;
      continue;
    }
    const op = OPERATORS.find((o) => rest.startsWith(o));
    if (!op) throw new ExpressionError(`unexpected character ${JSON.stringify(rest[0])}`);
    tokens.push({ kind: 'op', text: op });
    i += op.length;
  }
  return insertSemicolons(tokens);
}

/**
 * Go inserts a semicolon at a newline after an identifier, a literal, `)` or `]`; inside one expression that
 * ends it, so anything after it is an error. Other newlines are spacing.
 */
function insertSemicolons(tokens: Token[]): Token[] {
  const out: Token[] = [];
  for (const t of tokens) {
    if (t.kind !== 'newline') {
      out.push(t);
      continue;
    }
    const prev = out[out.length - 1];
    const ends =
      prev &&
      (prev.kind === 'ident' ||
        prev.kind === 'string' ||
        prev.kind === 'number' ||
        (prev.kind === 'op' && (prev.text === ')' || prev.text === ']')));
    if (ends) out.push({ kind: 'op', text: ';' });
  }
  // A semicolon at the very end is what ParseExpr accepts after a complete expression.
  while (
    out.length &&
    out[out.length - 1]?.kind === 'op' &&
    (out[out.length - 1] as { text: string }).text === ';'
  )
    out.pop();
  return out;
}

const PRECEDENCE: Record<string, number> = {
  '||': 1,
  '&&': 2,
  '==': 3,
  '!=': 3,
  '<': 3,
  '<=': 3,
  '>': 3,
  '>=': 3,
};

class Parser {
  private pos = 0;
  constructor(private readonly tokens: Token[]) {}

  parse(): Node {
    if (this.tokens.length === 0) throw new ExpressionError('empty expression');
    const node = this.binary(1);
    const extra = this.tokens[this.pos];
    if (extra) throw new ExpressionError(`unexpected ${describe(extra)} after the expression`);
    return node;
  }

  private peekOp(): string | undefined {
    const t = this.tokens[this.pos];
    return t?.kind === 'op' ? t.text : undefined;
  }

  private expect(op: string): void {
    if (this.peekOp() !== op)
      throw new ExpressionError(`expected ${op}, found ${describe(this.tokens[this.pos])}`);
    this.pos++;
  }

  private binary(minPrecedence: number): Node {
    let left = this.unary();
    for (;;) {
      const op = this.peekOp();
      const precedence = op ? PRECEDENCE[op] : undefined;
      if (!op || precedence === undefined || precedence < minPrecedence) return left;
      if (op !== '&&' && op !== '||' && op !== '==' && op !== '!=')
        throw new ExpressionError(`operator ${op} is not supported`);
      this.pos++;
      const right = this.binary(precedence + 1);
      left = { type: 'binary', op, left, right };
    }
  }

  private unary(): Node {
    if (this.peekOp() === '!') {
      this.pos++;
      return { type: 'not', operand: this.unary() };
    }
    return this.postfix(this.primary());
  }

  private primary(): Node {
    const t = this.tokens[this.pos++];
    if (!t) throw new ExpressionError('unexpected end of expression');
    if (t.kind === 'string') return { type: 'string', value: t.value };
    if (t.kind === 'number') {
      // predicate converts INT literals with strconv.Atoi: decimal only; anything else is not an int.
      if (!/^\d+$/.test(t.text) || !Number.isSafeInteger(Number(t.text)))
        throw new ExpressionError(`number ${t.text} is not supported`);
      return { type: 'int', value: Number(t.text) };
    }
    if (t.kind === 'ident') return { type: 'ident', path: [t.text] };
    if (t.kind === 'op' && t.text === '(') {
      const inner = this.binary(1);
      this.expect(')');
      return inner;
    }
    throw new ExpressionError(`unexpected ${describe(t)}`);
  }

  private postfix(node: Node): Node {
    for (;;) {
      const op = this.peekOp();
      if (op === '.') {
        this.pos++;
        const t = this.tokens[this.pos++];
        if (t?.kind !== 'ident') throw new ExpressionError(`expected a name after ".", found ${describe(t)}`);
        if (node.type !== 'ident') throw new ExpressionError(`cannot select .${t.text} of an expression`);
        node = { type: 'ident', path: [...node.path, t.text] };
      } else if (op === '[') {
        this.pos++;
        const key = this.binary(1);
        this.expect(']');
        node = { type: 'index', target: node, key };
      } else if (op === '(') {
        this.pos++;
        if (node.type !== 'ident') throw new ExpressionError('only named functions can be called');
        const args: Node[] = [];
        while (this.peekOp() !== ')') {
          args.push(this.binary(1));
          if (this.peekOp() !== ',') break;
          this.pos++;
        }
        this.expect(')');
        node = { type: 'call', name: node.path.join('.'), args };
      } else return node;
    }
  }
}

function describe(t: Token | undefined): string {
  if (!t) return 'end of expression';
  if (t.kind === 'op') return t.text === ';' ? 'newline' : JSON.stringify(t.text);
  if (t.kind === 'string') return `string ${JSON.stringify(t.value)}`;
  if (t.kind === 'newline') return 'newline';
  return JSON.stringify(t.text);
}

/** Parses one expression; throws ExpressionError with the reason. */
export function parseExpression(text: string): Node {
  return new Parser(tokenize(text)).parse();
}
