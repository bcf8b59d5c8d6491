/**
 * Vitest reporter for mutation runs: a test file that fails to load (a mutant that throws while a module is
 * imported, a syntax error) has no tests, and Stryker's vitest runner counts only tests, so the mutant would
 * pass as a survivor. This reporter adds one failed test, "<file> loads", to such a file, so the load
 * failure kills the mutant in a mutant run and fails the initial test run.
 */
export default class LoadFailureReporter {
  /** @param {import('vitest/node').TestModule} testModule */
  onTestModuleEnd(testModule) {
    const errors = testModule.errors();
    if (errors.length === 0) return;
    const file = testModule.task;
    file.tasks.push({
      type: 'test',
      id: `${file.id}_load`,
      name: `${file.name} loads`,
      fullName: `${file.name} loads`,
      mode: 'run',
      file,
      suite: undefined,
      meta: {},
      annotations: [],
      artifacts: [],
      timeout: 0,
      context: undefined,
      result: {
        state: 'fail',
        errors: errors.map((e) => ({ message: e.message, stack: e.stack })),
        duration: 0,
      },
    });
  }
}
