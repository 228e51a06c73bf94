// The one error `lmi bench` raises for bad input: it names the flag at fault so the CLI can print
// "error: --flag: reason" and exit 2. Failures of the server under test are results, not errors.

export class BenchError extends Error {
  constructor(
    message: string,
    readonly flag: string,
  ) {
    super(`${flag}: ${message}`);
    this.name = "BenchError";
  }
}
