/**
 * Which surviving mutants only change the text of a log line or an error message: a string mutated inside
 * the arguments of `new SomethingError(...)`, of a function whose name ends in `Error`, of a local throwing
 * helper (`refuse(...)`, `fail(...)`), or of a logger call (`log.info(...)`, `logger.warn(...)`). Those are reported apart from the survivors that change what the
 * code does, and do not count against the threshold.
 */
import ts from 'typescript';

const LOG_METHODS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);
const STRING_MUTATORS = new Set(['StringLiteral']);

function calleeName(node) {
  const e = node.expression;
  if (ts.isIdentifier(e)) return { name: e.text };
  if (ts.isPropertyAccessExpression(e)) return { name: e.name.text, object: e.expression.getText() };
  return {};
}

/** Local helpers that throw an error made of their argument (`const refuse = (why) => { throw ... }`). */
const THROWING_HELPERS = new Set(['refuse', 'fail']);

function isMessageCall(node) {
  if (!ts.isNewExpression(node) && !ts.isCallExpression(node)) return false;
  const { name, object } = calleeName(node);
  if (!name) return false;
  if (name.endsWith('Error')) return true;
  if (ts.isCallExpression(node) && object === undefined && THROWING_HELPERS.has(name)) return true;
  return ts.isCallExpression(node) && LOG_METHODS.has(name) && /(^|\.)(log|logger)$/i.test(object ?? '');
}

/** Offsets of each line start, for turning Stryker's 1-based line / 0-based column into an offset. */
function lineStarts(text) {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === '\n') starts.push(i + 1);
  return starts;
}

/** Returns a predicate over Stryker mutant results of one file's source text. */
export function messageOnlyClassifier(fileName, text) {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const starts = lineStarts(text);
  const offset = (pos) => starts[pos.line - 1] + pos.column;
  function innermost(start, end) {
    let found;
    const visit = (node) => {
      if (node.getStart(source) <= start && node.getEnd() >= end) {
        found = node;
        ts.forEachChild(node, visit);
      }
    };
    ts.forEachChild(source, visit);
    return found;
  }
  return (mutant) => {
    if (!STRING_MUTATORS.has(mutant.mutatorName)) return false;
    let node = innermost(offset(mutant.location.start), offset(mutant.location.end));
    while (node) {
      if (ts.isCallExpression(node) || ts.isNewExpression(node)) return isMessageCall(node);
      if (ts.isBlock(node) || ts.isSourceFile(node) || ts.isFunctionLike(node)) return false;
      node = node.parent;
    }
    return false;
  };
}
