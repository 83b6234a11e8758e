/**
 * The last line of defence for `srlora serve`: an exception or rejection that escaped every per-request guard is
 * logged and the server keeps serving its other dashboards and runs (each request is already isolated by the hub:
 * 400/500 for that request). Returns the function that removes the handlers.
 */
export function installProcessGuard(log: (line: string) => void): () => void {
  const onError = (e: unknown) => {
    try {
      log(`srlora serve: an internal error was caught and serving goes on: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`.slice(0, 2000));
    } catch { /* logging must not throw either */ }
  };
  process.on('uncaughtException', onError);
  process.on('unhandledRejection', onError);
  return () => {
    process.off('uncaughtException', onError);
    process.off('unhandledRejection', onError);
  };
}
